"""A trained network and its codec, from a run folder or a weights file.

Every reader of a run builds it the same way: the weights file by the run's best/last rule
(`hgpose.runs.resolve_checkpoint`), the network from the model config stored in the file
(`hgpose.models.build_model`), the codec from the run's config.json, else from the file's
own metadata (`hgpose.codecs.build_codec`), so a run is always decoded the way it was trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hgpose import config as cfg
from hgpose.codecs import HeatmapCodec, build_codec, refine_problem
from hgpose.errors import HgposeError
from hgpose.models import build_model
from hgpose.runs import RunDir, resolve_checkpoint
from hgpose.runs.weights import load_into, load_weights


def load_network(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network a weights file was saved from; returns (model in eval mode, metadata).

    metadata holds "model" (ModelConfig fields), "mean_rgb", "epoch", "metrics", "preset",
    and in newer files "target" (the codec config) and "joints" (those trained on).
    """
    state, metadata = load_weights(path)
    for key in ("model", "mean_rgb"):  # the network, and how its input is normalised
        if key not in metadata:
            raise HgposeError(f"{path}: has no {key!r} in its hgpose metadata; "
                              "it was not written by `hgpose train`")
    model = build_model(cfg.from_dict(metadata["model"], cfg.ModelConfig, f"{path} model"))
    load_into(model, state, path)
    return model.to(device).eval(), metadata


@dataclass
class LoadedRun:
    """A weights file loaded with everything needed to run and decode it."""

    weights: Path            # the file read
    run: RunDir | None       # its run folder, when it has one
    model: nn.Module         # in eval mode, on the device asked for
    metadata: dict           # the file's metadata (model config, mean RGB, epoch, joints, ...)
    codec: HeatmapCodec      # how its heatmaps are decoded

    @property
    def mean_rgb(self) -> list[float]:
        return self.metadata["mean_rgb"]


def load_run(source: str | Path, checkpoint: str | Path | None = None, device: str | torch.device = "cpu",
             refine: str | None = None) -> LoadedRun:
    """The network, metadata and codec of a run folder (best, else last; or `checkpoint`)
    or of a weights file. `refine` decodes with another refinement than the run's own."""
    weights, run = resolve_checkpoint(source, checkpoint)
    model, metadata = load_network(weights, device)
    return LoadedRun(weights, run, model, metadata, codec_of(run, metadata, weights, refine))


def codec_of(run: RunDir | None, metadata: dict, weights: Path, refine: str | None = None) -> HeatmapCodec:
    """The codec the network was trained with: it decides how heatmaps are decoded.

    The run's config.json is authoritative; a weights file on its own carries its target
    config (newer files) or at least its preset, whose default codec is then used.
    refine: decode with this refinement instead of the run's target.refine (auto, none,
    quarter, dark; each codec knows some of them).
    """
    target = _target_of(run, metadata, weights)
    if refine is not None:
        if refine not in cfg.REFINEMENTS:
            raise HgposeError(f"--refine {refine}: choose one of {', '.join(cfg.REFINEMENTS)}")
        problem = refine_problem(target.codec, refine)
        if problem:
            raise HgposeError(f"--refine {refine}: this run uses the {target.codec} codec, which {problem}")
        target = dataclasses.replace(target, refine=refine)
    return build_codec(target)


def _target_of(run: RunDir | None, metadata: dict, weights: Path) -> cfg.TargetConfig:
    if run is not None and run.is_run():
        return run.load_config().target
    if "target" in metadata:
        return cfg.from_dict(metadata["target"], cfg.TargetConfig, f"{weights} target")
    preset = metadata.get("preset", "thesis")
    if preset not in cfg.PRESETS:
        raise HgposeError(f"{weights}: unknown preset {preset!r} in its metadata and no config.json beside it")
    return cfg.PRESETS[preset]().target
