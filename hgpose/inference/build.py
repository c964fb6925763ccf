"""What a run's config builds: the network (ModelConfig) and the heatmap codec (TargetConfig).

Training builds them from its config; every reader of a run builds them the same way from
the config saved with it (config.json, or the copy in a weights file's metadata).
"""

from __future__ import annotations

from torch import nn

from hgpose.codec import GaussianCodec, ThesisCodec
from hgpose.config import ModelConfig, TargetConfig
from hgpose.models import build_model


def build_network(config: ModelConfig) -> nn.Module:
    if config.name == "thesis":
        return build_model("thesis", features=config.features, autoencoder=config.autoencoder,
                           resolution=config.resolution)
    return build_model("newell", num_stacks=config.stacks, features=config.features,
                       resolution=config.resolution)


def build_codec(config: TargetConfig):
    if config.codec == "thesis":
        return ThesisCodec()
    return GaussianCodec(sigma=config.sigma, refine="quarter" if config.refine == "auto" else config.refine)
