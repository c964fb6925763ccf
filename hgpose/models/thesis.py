"""The thesis network: a stem, ONE hourglass, a heatmap head (SPEC section 3).

Full size (features=256, 17 joints, 256x256 input): 14,526,053 parameters and about
30.3 GMAC; the thesis reports 14.5 M and ~30 GMAC. See docs/models.md.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .autoencoder import LatentAutoencoder
from .blocks import Residual, to_heatmap_grid, to_resolution, xavier_init
from .hourglass import Hourglass


# Output of the 3rd bottleneck Residual: 256x4x4 = 4,096 values for a 256x256 input.
BOTTLENECK_LAYER = "hourglass.bottleneck.2"
# The 50-dim code of the SHG+AE variant.
CODE_LAYER = "hourglass.autoencoder.code"


class ThesisNetwork(nn.Module):
    """Single-hourglass network of the thesis; every Residual has a 3x3 conv skip.

    forward: [B, 3, H, W] -> [B, 1, num_joints, H/4, W/4] (H, W multiples of 64).

    `latent_layer` names the module whose output the explain tools analyse: the 3rd
    bottleneck Residual (4,096 values), or, with `autoencoder=True`, the AE's 50-dim code
    (the thesis compares the PCA of those two). `bottleneck_layer` is always the former;
    it is what the AE is pre-trained on. `input_size` only matters for the autoencoder,
    whose Linear layers fix the bottleneck size (input_size · resolution / 256 / 64).

    `resolution` (beyond the thesis, default 256 = the thesis): the size the network works
    at for a 256x256 crop (r/256 of any input). The input is area-downscaled first and the
    heatmaps are brought back to the input's H/4 grid, so at 128 the network costs a quarter
    and everything around it (codecs, losses, metrics) is unchanged.
    """

    name = "thesis"
    num_stacks = 1

    @classmethod
    def from_config(cls, config) -> "ThesisNetwork":
        return cls(features=config.features, autoencoder=config.autoencoder, resolution=config.resolution)

    @staticmethod
    def config_problem(config) -> str | None:
        return None   # every width, resolution and AE choice builds; stacks is not its setting

    def __init__(
        self,
        num_joints: int = 17,
        features: int = 256,
        autoencoder: bool = False,
        input_size: int = 256,
        resolution: int = 256,
    ):
        super().__init__()
        self.resolution = resolution
        self.num_joints = num_joints
        self.features = features
        self.bottleneck_layer = BOTTLENECK_LAYER
        self.latent_layer = CODE_LAYER if autoencoder else BOTTLENECK_LAYER

        # 3x256x256 -> Fx128x128 -> (pool) Fx64x64
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, features, kernel_size=7, stride=2, padding=3),
                bn=nn.BatchNorm2d(features),
                relu=nn.ReLU(),
                res1=Residual(features, features, skip="conv3x3"),
                pool=nn.MaxPool2d(2),
                res2=Residual(features, features, skip="conv3x3"),
                res3=Residual(features, features, skip="conv3x3"),
            )
        )
        ae = LatentAutoencoder(features, spatial=input_size * resolution // 256 // 64) if autoencoder else None
        self.hourglass = Hourglass(
            features, depth=4, bottleneck_blocks=3, skip="conv3x3", autoencoder=ae
        )
        self.head = nn.Sequential(
            OrderedDict(
                res=Residual(features, features, skip="conv3x3"),
                conv1=nn.Conv2d(features, num_joints, kernel_size=1),
                bn=nn.BatchNorm2d(num_joints),
                relu=nn.ReLU(),
                conv2=nn.Conv2d(num_joints, num_joints, kernel_size=1),
            )
        )
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2] // 4, x.shape[-1] // 4)
        heatmaps = self.head(self.hourglass(self.stem(to_resolution(x, self.resolution))))
        return to_heatmap_grid(heatmaps.unsqueeze(1), grid)  # one stack
