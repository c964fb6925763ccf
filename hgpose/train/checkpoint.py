"""Checkpoints: weights as safetensors, the resumable training state as a tensor-only file.

RUN_DIR/checkpoints/
    state.pt                 everything `--resume` needs: weights, optimizer, scheduler,
                             epoch and step within it, history, best metric, RNG states
    last.safetensors         weights after the latest finished epoch
    best.safetensors         weights of the best validation metric so far
    epoch_NNN.safetensors    weights after epoch NNN (1-based), if kept

Weight files carry their model config, mean RGB and epoch/metric as safetensors metadata,
so `load_model(path)` rebuilds the network without the run directory. Every write is
atomic (temporary file + rename). Loading never unpickles code: weights go through
safetensors, and the state through `torch.load(weights_only=True)`, which only accepts
tensors and plain containers (the numpy RNG state is stored as a tensor for that reason).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hgpose.errors import HgposeError
from hgpose.io import atomic_path

FORMAT_VERSION = 1
WEIGHTS_FORMAT = "hgpose-weights"


# --- weights -------------------------------------------------------------------------------

def save_weights(path: str | Path, model: nn.Module, metadata: dict) -> None:
    """Model weights (and BN buffers) as safetensors; `metadata` must be JSON-serialisable."""
    from safetensors.torch import save_file

    # contiguous(): channels-last parameters are not, and safetensors stores flat buffers.
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {"format": WEIGHTS_FORMAT, "format_version": str(FORMAT_VERSION),
              "hgpose": json.dumps(metadata)}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=header)


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict on the CPU, metadata) of a weights file; HgposeError if missing or corrupt."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise HgposeError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = json.loads(header.get("hgpose", "{}"))
    except Exception as e:  # safetensors raises its own error types for truncated/garbled files
        kind = _foreign_kind(path)  # only now: a valid file's first bytes may look like anything
        if kind:
            raise HgposeError(f"{path}: {kind}, not a safetensors weights file; hgpose reads weights only "
                              "from .safetensors files written by `hgpose train` (it never unpickles)") from None
        raise HgposeError(
            f"{path}: not a readable safetensors checkpoint ({e}); it may be truncated — "
            "use another checkpoint (e.g. best.safetensors or an epoch_NNN one)"
        ) from None
    if not isinstance(metadata, dict):
        raise HgposeError(f"{path}: its hgpose metadata is not a JSON object; it was not written by `hgpose train`")
    bad = non_finite(tensors)
    if bad:
        raise HgposeError(
            f"{path}: holds NaN/inf weights ({len(bad)} tensor(s), e.g. {bad[0]}): the training "
            "diverged before it was saved; use an earlier checkpoint (epoch_NNN.safetensors)")
    return tensors, metadata


def _foreign_kind(path: Path) -> str | None:
    """What a file that cannot be safetensors is, from its first bytes (for the message)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(b"PK\x03\x04"):
        return "a PyTorch (torch.save) file"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    return None


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path,
              allow_missing: tuple[str, ...] = ()) -> None:
    """Load a state dict strictly, with an error naming every key/shape that does not fit.

    `allow_missing`: key prefixes the model may have and the file may lack (e.g. the
    autoencoder when a thesis checkpoint initialises SHG+AE).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(allow_missing)]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        problems = []
        for label, items in (("shape mismatch (file vs model)", mismatched),
                             ("missing in file", missing), ("not in model", unexpected)):
            if items:
                shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
                problems.append(f"{label}: {shown}")
        raise HgposeError(
            f"{source}: weights do not fit this model ({'; '.join(problems)}); "
            "check model.name/model.features/model.stacks against the checkpoint's config"
        )
    model.load_state_dict(state, strict=not allow_missing)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network a weights file was saved from; returns (model in eval mode, metadata).

    metadata holds "model" (ModelConfig fields), "mean_rgb", "epoch", "metrics", "preset".
    """
    from hgpose.train.recipes import build_network
    from hgpose.config import ModelConfig, from_dict

    state, metadata = load_weights(path)
    if "model" not in metadata:
        raise HgposeError(f"{path}: has no hgpose model config in its metadata; "
                          "it was not written by `hgpose train`")
    model = build_network(from_dict(metadata["model"], ModelConfig, f"{path} model"))
    load_into(model, state, path)
    return model.to(device).eval(), metadata


def weights_metadata(model_config, mean_rgb, epoch: int, metrics: dict, preset: str,
                     target_config=None, joints: list[str] | None = None) -> dict:
    """What a weights file needs to be used on its own: the network, the input
    normalisation, the codec that decodes its heatmaps and the joints it was trained on
    (a network that never saw a joint, e.g. LSP's absent face, predicts noise there)."""
    meta = {"model": asdict(model_config), "mean_rgb": [float(v) for v in mean_rgb],
            "epoch": epoch, "metrics": metrics, "preset": preset}
    if joints is not None:
        meta["joints"] = list(joints)
    if target_config is not None:
        meta["target"] = asdict(target_config)
    return meta


# --- training state ------------------------------------------------------------------------

def save_state(path: str | Path, state: dict) -> None:
    state = {"format_version": FORMAT_VERSION, **state}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise HgposeError(f"{path}: no training state to resume from; drop --resume to start a new run")
    try:
        if path.stat().st_size == 0:
            raise EOFError("empty file (0 bytes)")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first_line = (str(e).splitlines() or [""])[0]  # some errors have an empty message
        raise HgposeError(
            f"{path}: not a readable training state ({type(e).__name__}: {first_line}); "
            "delete it to restart from scratch, or start a new run with --init last.safetensors"
        ) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise HgposeError(f"{path}: not an hgpose training state of format {FORMAT_VERSION}")
    return state


# --- RNG -----------------------------------------------------------------------------------

def rng_state() -> dict:
    """RNG states of python, numpy, torch and CUDA, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
