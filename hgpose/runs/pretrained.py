"""Trained networks with a name: `hgpose.load("lspet-cpu")`, `hgpose predict lspet-cpu ...`.

`PRETRAINED` maps a name to where its weights file is and its sha256:

- shipped with hgpose, inside the package (`hgpose/weights/`): ready on a fresh machine;
- or downloaded on first use from a URL into a cache (HGPOSE_CACHE, default
  ~/.cache/hgpose), checked against its sha256 before it is used, written atomically. A
  machine that cannot download is told which file to place by hand, and where.

Every command that takes a RUN_DIR takes a registered name as well (`hgpose.runs.
resolve_checkpoint`); a folder or file of that name in the current directory wins. Each
model's card (data, command, machine, held-out figures, joints, the data's licence) is in
docs/models/<name>.md.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hgpose.errors import HgposeError
from hgpose.io import atomic_path, file_sha256

SHIPPED = Path(__file__).resolve().parents[1] / "weights"


@dataclass(frozen=True)
class Pretrained:
    file: str               # the weights file's name (in the package, or in the cache)
    sha256: str
    url: str | None = None  # None: shipped with hgpose
    card: str = ""          # its model card, under docs/models/


PRETRAINED: dict[str, Pretrained] = {
    # the cpu preset trained on LSPET on a 2-core CPU, stored at fp16 (benchmarks/ship_model.py)
    "lspet-cpu": Pretrained("lspet-cpu.safetensors",
                            "e748e42936ea497fa505db83406ad3d55692f05bc58022d22c4624b68c6a7407",
                            card="lspet-cpu.md"),
}


HALF = {"fp16": "float16", "bf16": "bfloat16"}


def pack(weights: str | Path, out: str | Path, dtype: str = "fp16") -> Path:
    """A trained network's weights file stored at half precision (half the size), its
    metadata kept and marked: how a model is made ready to ship or to upload. Loading casts
    it back to fp32 (`load_state_dict` copies into the network's own dtype)."""
    import torch

    from hgpose.runs.weights import load_weights, save_tensors

    if dtype not in HALF:
        raise HgposeError(f"--dtype {dtype}: choose one of {', '.join(HALF)}")
    tensors, metadata = load_weights(weights)
    half = getattr(torch, HALF[dtype])
    packed = {k: v.to(half) if v.is_floating_point() else v for k, v in tensors.items()}
    save_tensors(out, packed, dict(metadata, stored_as=dtype))
    return Path(out)


def cache_dir() -> Path:
    return Path(os.environ.get("HGPOSE_CACHE") or Path.home() / ".cache" / "hgpose")


def weights_of(name: str, registry: dict[str, Pretrained] | None = None) -> Path:
    """The checked weights file of a registered model (downloaded first when needed)."""
    registry = PRETRAINED if registry is None else registry
    entry = registry[name]
    path = SHIPPED / entry.file if entry.url is None else cache_dir() / entry.file
    if entry.url is not None and not path.is_file():
        _download(name, entry, path)
    if not path.is_file():
        raise HgposeError(f"model {name!r}: its weights file {path} is missing from this installation; "
                          "reinstall hgpose")
    digest = file_sha256(path)
    if digest != entry.sha256:
        raise HgposeError(f"{path}: sha256 {digest[:16]}… is not the one registered for model {name!r} "
                          f"({entry.sha256[:16]}…): the file "
                          "is damaged or another one; delete it" + (" to download it again" if entry.url else
                                                                     " and reinstall hgpose"))
    return path


def _download(name: str, entry: Pretrained, path: Path) -> None:
    """The file from its URL into the cache, kept only when its sha256 is the registered one."""
    try:
        with urllib.request.urlopen(entry.url, timeout=60) as response, atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
            digest = file_sha256(tmp)
            if digest != entry.sha256:
                raise HgposeError(f"model {name!r}: {entry.url} gave a file whose sha256 {digest[:16]}… is not "
                                  f"the registered {entry.sha256[:16]}…; nothing was kept")
    except (OSError, ValueError) as e:   # URLError is an OSError
        why = getattr(e, "reason", None) or e
        raise HgposeError(f"model {name!r}: cannot download {entry.url} ({why}); on a machine without "
                          f"access, download it elsewhere and place it at {path} (sha256 {entry.sha256})") from None
