"""The weights file: a network's tensors as safetensors, with what is needed to use it alone.

RUN_DIR/checkpoints/{best,last,epoch_NNN}.safetensors are weights files. Their metadata
(safetensors header, key "hgpose") holds the model config, the mean RGB of the training
crops, the epoch and metrics, the preset, the codec config ("target") and the joints the
network was trained on, so `hgpose.inference.load_network(path)` rebuilds the network
without the run directory. Training writes these files, everything else reads them.
Loading never unpickles code. Every write is atomic (temporary file + rename).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from hgpose.errors import HgposeError
from hgpose.io import atomic_path

FORMAT_VERSION = 1
WEIGHTS_FORMAT = "hgpose-weights"


def save_weights(path: str | Path, model: nn.Module, metadata: dict) -> None:
    """Model weights (and BN buffers) as safetensors; `metadata` must be JSON-serialisable."""
    with atomic_path(path, suffix=".safetensors") as tmp:
        write_weights(tmp, model, metadata)


def write_weights(path: str | Path, model: nn.Module, metadata: dict) -> None:
    """`save_weights` without the rename: for a file that is one of a set written together
    (an epoch's end: `hgpose.train.loop`), which renames them all at the end."""
    from safetensors.torch import save_file

    # contiguous(): channels-last parameters are not, and safetensors stores flat buffers.
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=_header(metadata))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """A state dict (not a network) as a weights file, atomically."""
    from safetensors.torch import save_file

    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=_header(metadata))


def _header(metadata: dict) -> dict[str, str]:
    return {"format": WEIGHTS_FORMAT, "format_version": str(FORMAT_VERSION), "hgpose": json.dumps(metadata)}


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
