"""The resumable training state (RUN_DIR/checkpoints/state.pt) and the RNG states it carries.

state.pt holds everything `--resume` needs: weights, optimizer, scheduler, epoch and step
within it, history, best metric, RNG states, and the config it was saved under (what a
resumed run's changes are compared with: hgpose.train.resume). The weights files beside it are `weights.py`'s.
Every write is atomic (temporary file + rename). Loading never unpickles code: the state goes through `torch.load(weights_only=True)`, which
only accepts tensors and plain containers (the numpy RNG state is stored as a tensor for
that reason).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from hgpose.errors import HgposeError
from hgpose.io import atomic_path

FORMAT_VERSION = 1


# --- training state ------------------------------------------------------------------------

def save_state(path: str | Path, state: dict) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        write_state(tmp, state)


def write_state(path: str | Path, state: dict) -> None:
    """`save_state` without the rename, for the last file of an epoch's set (loop.py)."""
    torch.save({"format_version": FORMAT_VERSION, **state}, path)


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
