"""Where a network runs and in which precision: one rule for training and inference.

Device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".

Precision (`hgpose.config.PRECISIONS`, the same words for `hgpose train --precision`, the
config's `precision` and `--precision` of every command that runs a trained network) is the
autocast dtype of the forward passes; weights stay fp32:

    auto  bf16 where the device computes it natively: a CPU with AMX or AVX-512-BF16 (read
          at run time, `hgpose.cpu.native_bf16`; HGPOSE_CPU_BF16=0/1 overrides), a CUDA GPU
          with bf16; fp32 elsewhere (emulated bf16 is slower than fp32 and only adds rounding)
    bf16  bf16, and an error where it is not native (never a silent emulation or fallback)
    fp16  CUDA only (training scales the loss against underflow)
    fp32  no autocast
"""

from __future__ import annotations

import contextlib
import re
from typing import Callable

import torch

from hgpose.config import PRECISIONS
from hgpose.cpu import native_bf16
from hgpose.errors import HgposeError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" (CUDA when available), "cpu", "cuda" or "cuda:N" -> a device that exists here."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):  # torch.device would also take "meta", "mps", ...
        raise HgposeError(f"--device {device}: choose auto, cpu, cuda or cuda:N")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HgposeError(f"device {device}: CUDA is not available here; use device cpu or auto "
                          "(--device, or --set device=cpu for train)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise HgposeError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def native_bf16_on(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively (see the module docstring)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return native_bf16()


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device`; None = fp32 (no autocast). Raises a
    one-line HgposeError for a precision the device cannot run."""
    if precision not in PRECISIONS:
        raise HgposeError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise HgposeError("precision fp16: runs on CUDA only; on a CPU use auto (bf16 where native) or fp32")
        return torch.float16
    if native_bf16_on(device):
        return torch.bfloat16
    if precision == "bf16":
        where = ("this CPU has no native bf16 (AMX or AVX-512-BF16), where bf16 is slower than fp32"
                 if device.type == "cpu" else f"{device} does not support bf16")
        raise HgposeError(f"precision bf16: {where}; use auto or fp32")
    return None


def describe_precision(precision: str, device: torch.device | str) -> str:
    """What runs and why, in a few words: "bf16 (native: avx512_bf16)", "fp32 (auto: this CPU
    has no native bf16)", "fp32 (asked)"."""
    from hgpose.cpu import bf16_features

    device = torch.device(device)
    name = precision_name(autocast_dtype(precision, device))
    if precision != "auto":
        return f"{name} (asked)"
    if device.type == "cuda":
        return f"{name} (auto: {'native' if name == 'bf16' else 'no bf16'} on {device})"
    if name == "bf16":
        return f"bf16 (auto: native on this CPU, {', '.join(bf16_features()) or 'HGPOSE_CPU_BF16=1'})"
    return "fp32 (auto: this CPU has no native bf16; HGPOSE_CPU_BF16=1 would emulate it, slower)"


def precision_name(dtype: torch.dtype | None) -> str:
    """What runs, in the precision vocabulary: "bf16", "fp16" or "fp32"."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def autocast_context(device: torch.device | str, dtype: torch.dtype | None) -> Callable:
    """A zero-argument factory of the autocast context for `dtype` (None: a no-op context)."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=torch.device(device).type, dtype=dtype)
