"""The fast inference path, on by default: BatchNorm folded into the convolutions,
channels-last, `inference_mode`, and bf16 autocast where the hardware computes bf16 natively.

Every command that runs a trained network (predict, evaluate, explain, `hgpose.load`) goes
through `prepare_network`; `--precision fp32` turns bf16 off. Folding is exact arithmetic up
to float rounding, so it stays on under fp32 as well.

Why each piece pays on a CPU (benchmarks/inference.py; docs/evaluate.md, "Speed"):
- channels-last: oneDNN's convolutions run NHWC natively; NCHW costs a reorder per layer.
- folding: in eval mode a BatchNorm after a convolution is one more pass over the whole
  feature map; folded, it is the convolution's own weights and bias. In the pre-activation
  Residual the BN after conv1 and conv2 fold; the first BN (on the sum) cannot.
- bf16: AMX / AVX-512-BF16 run bf16 convolutions at about twice the fp32 rate and halve the
  memory traffic. Without them bf16 is emulated and slower than fp32, so "auto" means fp32
  there (`hgpose.inference.device`, the one precision rule of training and inference).
- memory kept for reuse: activations above 32 MiB would each be a fresh mmap that the kernel
  zeroes page by page (`hgpose.cpu.keep_freed_memory`, which training uses too).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from hgpose.cpu import keep_freed_memory
from hgpose.inference.device import autocast_context, autocast_dtype, precision_name


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Folds every BatchNorm2d that directly follows a Conv2d into that conv, in place; the
    folded BatchNorm becomes an Identity (so its name, and a capture hook on it, still give
    the same values). Inference only: the model must be in eval mode."""
    if model.training:
        raise ValueError("fold_batchnorm: put the model in eval mode first (model.eval())")
    for module in model.modules():
        for conv_name, bn_name in _conv_bn_pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
    return model


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) attribute names where the BN's input is the conv's output.

    Two places hold such pairs: a Sequential's consecutive children (the stems, Newell's
    features_out) and the pre-activation Residual, whose forward runs conv1 -> bn2 and
    conv2 -> bn3 (models/blocks.py). A Residual's order is read from its forward, which
    `Residual.FOLDABLE` states, not guessed from the order its modules were built in.
    """
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        return [(a, b) for a, b in zip(names, names[1:])
                if isinstance(module._modules[a], nn.Conv2d) and isinstance(module._modules[b], nn.BatchNorm2d)]
    pairs = getattr(type(module), "FOLDABLE", ())
    return [(c, b) for c, b in pairs
            if isinstance(getattr(module, c), nn.Conv2d) and isinstance(getattr(module, b), nn.BatchNorm2d)]


def prepare_network(model: nn.Module, device: torch.device | str, precision: str = "auto"
                    ) -> tuple[nn.Module, Callable, str]:
    """A loaded network made ready for fast inference, in place: eval mode, BatchNorm folded,
    channels-last on `device`. Returns (model, autocast factory, the precision that runs:
    "bf16", "fp16" or "fp32"; `hgpose.inference.device` says how `precision` is chosen)."""
    device = torch.device(device)
    if device.type == "cpu":
        keep_freed_memory()   # the activations outgrow malloc's mmap threshold (hgpose.cpu)
    dtype = autocast_dtype(precision, device)
    model = fold_batchnorm(model.eval())
    model = model.to(device, memory_format=torch.channels_last)
    return model, autocast_context(device, dtype), precision_name(dtype)
