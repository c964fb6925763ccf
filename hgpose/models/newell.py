"""Newell et al. 2016 stacked hourglass (as in princeton-vl's pytorch_stacked_hourglass).

Full size (8 stacks, 256 features, 17 joints): 25,437,960 parameters, about 27.4 GMAC
per 256x256 image; 2 stacks: 6,571,170. See docs/models.md.

Differences from the thesis network: identity skips in the Residuals where the widths
match, a narrower stem (64/128 channels before reaching `features`), 2 bottleneck
Residuals per hourglass instead of 3 (see hourglass.py), a 1x1 conv-BN-ReLU before the
prediction, and intermediate supervision with the features/predictions fed back between
stacks. The reference code builds a skip conv in every Residual and merge convs for the
last stack that never run; here only modules that run exist, so every parameter trains.
Default PyTorch init, as the reference.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .blocks import Residual, to_heatmap_grid, to_resolution
from .hourglass import Hourglass



class StackedHourglass(nn.Module):
    """forward: [B, 3, H, W] -> [B, num_stacks, num_joints, H/4, W/4] (H, W multiples of 64).

    Every stack's heatmaps are returned: the loss supervises all of them, inference uses
    `out[:, -1]`. `latent_layer` is the last stack's deepest Residual (Fx4x4 for a 256 input).
    `resolution`: the size the network works at (see ThesisNetwork); 256 = Newell's.
    """

    name = "newell"

    @classmethod
    def from_config(cls, config) -> "StackedHourglass":
        return cls(num_stacks=config.stacks, features=config.features, resolution=config.resolution)

    @staticmethod
    def config_problem(config) -> str | None:
        if config.stacks < 1:
            return f"model.stacks={config.stacks}: must be at least 1"
        if config.autoencoder:
            return "model.autoencoder=true needs model.name=thesis (the AE sits in the thesis's bottleneck)"
        return None

    def __init__(self, num_stacks: int = 8, features: int = 256, num_joints: int = 17,
                 resolution: int = 256):
        super().__init__()
        self.resolution = resolution
        if num_stacks < 1:
            raise ValueError(f"num_stacks must be >= 1, got {num_stacks}")
        self.num_stacks = num_stacks
        self.num_joints = num_joints
        self.features = features
        self.latent_layer = f"hourglasses.{num_stacks - 1}.bottleneck.1"

        # 3x256x256 -> 64x128x128 -> 128x128x128 -> (pool) 128x64x64 -> Fx64x64
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3),
                bn=nn.BatchNorm2d(64),
                relu=nn.ReLU(),
                res1=Residual(64, 128, skip="identity"),
                pool=nn.MaxPool2d(2),
                res2=Residual(128, 128, skip="identity"),
                res3=Residual(128, features, skip="identity"),
            )
        )
        self.hourglasses = nn.ModuleList(
            Hourglass(features, depth=4, bottleneck_blocks=2, skip="identity")
            for _ in range(num_stacks)
        )
        # Residual, then Newell's "lin" layer: 1x1 conv-BN-ReLU.
        self.features_out = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    res=Residual(features, features, skip="identity"),
                    conv=nn.Conv2d(features, features, kernel_size=1),
                    bn=nn.BatchNorm2d(features),
                    relu=nn.ReLU(),
                )
            )
            for _ in range(num_stacks)
        )
        self.predictions = nn.ModuleList(
            nn.Conv2d(features, num_joints, kernel_size=1) for _ in range(num_stacks)
        )
        # Feed stack i's features and heatmaps into stack i+1: none after the last stack.
        self.merge_features = nn.ModuleList(
            nn.Conv2d(features, features, kernel_size=1) for _ in range(num_stacks - 1)
        )
        self.merge_predictions = nn.ModuleList(
            nn.Conv2d(num_joints, features, kernel_size=1) for _ in range(num_stacks - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2] // 4, x.shape[-1] // 4)
        x = self.stem(to_resolution(x, self.resolution))
        heatmaps: list[torch.Tensor] = []
        # Every stack but the last feeds its features and heatmaps into the next one.
        # (zip stops at the shortest list: the num_stacks - 1 merges.)
        for hourglass, features_out, predict, merge_features, merge_predictions in zip(
            self.hourglasses,
            self.features_out,
            self.predictions,
            self.merge_features,
            self.merge_predictions,
        ):
            features = features_out(hourglass(x))
            prediction = predict(features)
            # The slice is a no-op here; ONNX Runtime's copy pads this head with zero
            # channels (inference/onnx_runtime.py, with_blocked_heads).
            heatmaps.append(prediction[:, : self.num_joints])
            x = x + merge_features(features) + merge_predictions(prediction)
        features = self.features_out[-1](self.hourglasses[-1](x))
        heatmaps.append(self.predictions[-1](features))
        return to_heatmap_grid(torch.stack(heatmaps, dim=1), grid)
