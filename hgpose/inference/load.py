"""A trained network and its codec, from a run folder or a weights file.

Every reader of a run builds it the same way: the weights file by the run's best/last rule
(`hgpose.runs.resolve_checkpoint`), the network from the model config stored in the file
(`hgpose.models.build_model`), the codec from the run's config.json, else from the file's
own metadata (`hgpose.codecs.build_codec`), so a run is always decoded the way it was trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
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
from hgpose.skeleton import JOINTS


def load_network(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network a weights file was saved from; returns (model in eval mode, metadata).

    metadata holds "model" (ModelConfig fields), "mean_rgb", "epoch", "metrics", "preset",
    and in newer files "target" (the codec config) and "joints" (those trained on); each is
    checked here, where it enters, so a damaged or hand-edited file is one line naming the
    file and the field.
    """
    state, metadata = load_weights(path)
    model_config = check_metadata(path, metadata)
    model = build_model(model_config)
    load_into(model, state, path)
    return model.to(device).eval(), metadata


def check_metadata(path: str | Path, metadata: dict) -> cfg.ModelConfig:
    """The model config of a weights file's metadata, after checking every field a reader
    uses: the model and target sections by the typed config's own rules, the mean RGB
    (3 numbers in [0, 1], as a store's), the joints (COCO-17 names), epoch, metrics, preset."""
    for key in ("model", "mean_rgb"):  # the network, and how its input is normalised
        if key not in metadata:
            raise HgposeError(f"{path}: has no {key!r} in its hgpose metadata; "
                              "it was not written by `hgpose train`")
    model = cfg.section_from_dict("model", metadata["model"], f"{path}: metadata")
    if "target" in metadata:
        cfg.section_from_dict("target", metadata["target"], f"{path}: metadata")
    problem = _metadata_problem(metadata)
    if problem:
        raise HgposeError(f"{path}: metadata {problem}")
    return model


def _metadata_problem(metadata: dict) -> str | None:
    """Why a plain field of the metadata is unusable ("field=value: what it must be"), or None."""
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    mean = metadata["mean_rgb"]
    if not (isinstance(mean, list) and len(mean) == 3 and all(number(v) and 0 <= v <= 1 for v in mean)):
        return f"mean_rgb={_shown(mean)}: must be 3 numbers between 0 and 1 (the training crops' mean RGB)"
    joints = metadata.get("joints")
    if joints is not None and not (isinstance(joints, list) and all(j in JOINTS for j in joints)):
        return f"joints={_shown(joints)}: must be a list of COCO-17 joint names ({', '.join(JOINTS[:3])}, ...)"
    epoch = metadata.get("epoch")
    if epoch is not None and not (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0):
        return f"epoch={_shown(epoch)}: must be a whole number of at least 0"
    if not isinstance(metadata.get("metrics", {}), dict):
        return f"metrics={_shown(metadata['metrics'])}: must be an object"
    if not isinstance(metadata.get("preset", ""), str):
        return f"preset={_shown(metadata['preset'])}: must be a string"
    return None


def _shown(value) -> str:
    """A metadata value as the message shows it: JSON, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
        return cfg.section_from_dict("target", metadata["target"], f"{weights}: metadata")
    preset = metadata.get("preset", "thesis")
    if preset not in cfg.PRESETS:
        raise HgposeError(f"{weights}: unknown preset {preset!r} in its metadata and no config.json beside it")
    return cfg.PRESETS[preset]().target
