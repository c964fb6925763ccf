"""Pose networks: the thesis' single hourglass (+ optional latent autoencoder) and
Newell's stacked hourglass.

Every network maps [B, 3, H, W] to heatmaps [B, S, J, H/4, W/4] (S stacks, J joints;
S = 1 for the thesis network) and has `num_stacks`, `num_joints` and `latent_layer`
(a name for `capture`). See docs/models.md.
"""

from __future__ import annotations

from torch import nn

from .autoencoder import LatentAutoencoder
from .blocks import Residual
from .capture import UnknownNameError, capture
from .hourglass import Hourglass, skips_disabled
from .newell import StackedHourglass
from .thesis import ThesisNetwork

MODEL_NAMES = ("thesis", "newell")


def build_model(name: str, **kwargs) -> nn.Module:
    """build_model("thesis", autoencoder=True) or build_model("newell", num_stacks=2)."""
    if name == "thesis":
        return ThesisNetwork(**kwargs)
    if name == "newell":
        return StackedHourglass(**kwargs)
    raise UnknownNameError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")


__all__ = [
    "MODEL_NAMES",
    "Hourglass",
    "LatentAutoencoder",
    "Residual",
    "StackedHourglass",
    "ThesisNetwork",
    "UnknownNameError",
    "build_model",
    "capture",
    "skips_disabled",
]
