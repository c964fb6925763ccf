"""Pose networks: the thesis' single hourglass (+ optional latent autoencoder) and
Newell's stacked hourglass.

Every network maps [B, 3, H, W] to heatmaps [B, S, J, H/4, W/4] (S stacks, J joints;
S = 1 for the thesis network) and has `num_stacks`, `num_joints` and `latent_layer`
(a name for `capture`). See docs/models.md.

`MODELS` is the registry: the `model.name` config value -> the class. Every class has
`name`, `from_config(ModelConfig)` and `config_problem(ModelConfig)` (why a config cannot
build it, or None). Adding a network is one module and one line in `MODELS`: config
validation, training and every reader of a weights file build through `build_model`. The
`config` arguments are `hgpose.config.ModelConfig`s, read by field: this package does not
import hgpose.config, which validates through it.
"""

from __future__ import annotations


from torch import nn

from .autoencoder import LatentAutoencoder
from .blocks import RESOLUTIONS, Residual
from .capture import UnknownNameError, capture
from .hourglass import Hourglass, skips_disabled
from .newell import StackedHourglass
from .thesis import ThesisNetwork


MODELS: dict[str, type[nn.Module]] = {"thesis": ThesisNetwork, "newell": StackedHourglass}


def model_problem(config) -> str | None:
    """Why `config` cannot build a network (a "key=value: what to do" line), None when it can."""
    if config.name not in MODELS:
        return f"model.name={config.name!r}: choose one of {', '.join(MODELS)}"
    if config.resolution not in RESOLUTIONS:
        return (f"model.resolution={config.resolution}: choose {', '.join(map(str, RESOLUTIONS[:-1]))} "
                f"or {RESOLUTIONS[-1]} (the hourglass halves it five times)")
    return MODELS[config.name].config_problem(config)


def build_model(config) -> nn.Module:
    """The network a model config describes (training builds it so, and so does every reader
    of a weights file, from the config stored in it)."""
    problem = model_problem(config)
    if problem:
        raise UnknownNameError(f"cannot build the network: {problem}")
    return MODELS[config.name].from_config(config)


__all__ = [
    "MODELS",
    "Hourglass",
    "LatentAutoencoder",
    "Residual",
    "StackedHourglass",
    "ThesisNetwork",
    "UnknownNameError",
    "build_model",
    "capture",
    "model_problem",
    "skips_disabled",
]
