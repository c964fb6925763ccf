"""Finding what a run left behind: which weights file, which device, which codec.

One rule for every command that reads a run (evaluate, predict, export, explain, the
Python API, and thesis-ae reading its own autoencoder run):

    RUN_DIR                     best.safetensors, or last.safetensors while the run has no
                                best yet (no finite validation metric so far)
    RUN_DIR + "best" / "last"   that file ("best" falls back to last as above)
    RUN_DIR + FILE              a path, or a file name inside RUN_DIR/checkpoints
    WEIGHTS.safetensors         that file; its run is RUN_DIR when it lies in RUN_DIR/checkpoints
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from hgpose import config as cfg
from hgpose.errors import HgposeError
from hgpose.inference.build import build_codec

CHECKPOINT_NAMES = ("best", "last")


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


def resolve_checkpoint(source: str | Path, checkpoint: str | Path | None = None) -> tuple[Path, Path | None]:
    """(weights file, run directory or None) by the rule in this module's docstring."""
    source = Path(source)
    if source.is_file():
        if checkpoint is not None:
            raise HgposeError(f"{source} is a weights file; --checkpoint only applies to a run directory")
        # A file inside RUN_DIR/checkpoints still knows its run (and thus its codec).
        run_dir = source.parent.parent
        return source, run_dir if (run_dir / "config.json").is_file() else None
    if not source.is_dir():
        raise HgposeError(f"{source}: not found — give a run directory of `hgpose train` "
                          "or a .safetensors weights file")
    folder = source / "checkpoints"
    which = "best" if checkpoint is None else str(checkpoint)
    if which in CHECKPOINT_NAMES:
        names = ("best", "last") if which == "best" else ("last",)
        for name in names:
            if (folder / f"{name}.safetensors").is_file():
                return folder / f"{name}.safetensors", source
        tried = " or ".join(f"{name}.safetensors" for name in names)
        raise HgposeError(f"{folder}: no {tried} — is {source} a run directory of "
                          "`hgpose train` that finished at least one epoch?")
    for path in (Path(which), folder / which):
        if path.is_file():
            return path, source
    raise HgposeError(f"--checkpoint {which}: not found (as a path, or in {folder})")


def codec_of(run_dir: Path | None, metadata: dict, weights: Path, refine: str | None = None):
    """The codec the network was trained with: it decides how heatmaps are decoded.

    The run's config.json is authoritative; a weights file on its own carries its target
    config (newer files) or at least its preset, whose default codec is then used.
    refine: decode with this refinement instead of the run's target.refine (auto, none,
    quarter, dark; the thesis codec knows only plain argmax).
    """
    target = _target_of(run_dir, metadata, weights)
    if refine is not None:
        if refine not in cfg.CHOICES["target.refine"]:
            raise HgposeError(f"--refine {refine}: choose one of {', '.join(cfg.CHOICES['target.refine'])}")
        problem = cfg.refine_problem(target.codec, refine)
        if problem:
            raise HgposeError(f"--refine {refine}: this run uses the thesis codec, which {problem}")
        target = dataclasses.replace(target, refine=refine)
    return build_codec(target)


def _target_of(run_dir: Path | None, metadata: dict, weights: Path) -> cfg.TargetConfig:
    if run_dir is not None and (run_dir / "config.json").is_file():
        return cfg.load(run_dir / "config.json").target
    if "target" in metadata:
        return cfg.from_dict(metadata["target"], cfg.TargetConfig, f"{weights} target")
    preset = metadata.get("preset", "thesis")
    if preset not in cfg.PRESETS:
        raise HgposeError(f"{weights}: unknown preset {preset!r} in its metadata and no config.json beside it")
    return cfg.PRESETS[preset]().target
