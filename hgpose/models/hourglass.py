"""One hourglass: pool down to 4x4, come back up, adding a skip branch at every scale.

Both networks use this class. Written out for depth 4 and a 64x64 input:

    level  resolution  going down                      going up
    0      64x64       skips.0 ; pool ; down.0 (32)    upsample ; + skips.0        (no Residual)
    1      32x32       skips.1 ; pool ; down.1 (16)    upsample ; + skips.1 ; up.2
    2      16x16       skips.2 ; pool ; down.2 (8)     upsample ; + skips.2 ; up.1
    3       8x8        skips.3 ; pool ; down.3 (4)     upsample ; + skips.3 ; up.0
    bottom  4x4        bottleneck.0 .. bottleneck.{n-1}   [autoencoder]

The thesis describes exactly this, with n = 3 bottleneck Residuals. Newell's recursive
hourglass (up1 ; pool ; low1 ; low2 = inner hourglass ; low3 ; upsample ; + up1) runs the
same sequence of operations once unrolled: his up1 is our `skips`, low1 is `down`, and
low3 of level k runs on the output of level k+1 -- that is, after the upsample-and-add of
the level below -- which is our `up`. Only the bottom differs: Newell has low2 (one
Residual) followed by the deepest low3, i.e. n = 2 bottleneck Residuals, and the thesis
has n = 3. The other difference is in the Residual's skip branch (see blocks.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Residual


class Hourglass(nn.Module):
    """Hourglass of `depth` levels at `channels` width; output has the input's shape.

    `use_skips` switches the skip additions off (the ablation of SPEC section 6, on a
    trained model, no retraining). When off, the skip Residuals are not run at all.
    Prefer the `skips_disabled(model)` context manager, which restores the flag.

    `autoencoder`, if given, runs on the bottleneck output and its output replaces the
    latent on the way up (the thesis' SHG+AE variant).
    """

    def __init__(
        self,
        channels: int,
        depth: int = 4,
        bottleneck_blocks: int = 3,
        skip: str = "conv3x3",
        autoencoder: nn.Module | None = None,
    ):
        super().__init__()
        self.depth = depth
        self.use_skips = True
        # skips.i runs at level i's resolution (skips.0 at full size).
        self.skips = nn.ModuleList(Residual(channels, channels, skip) for _ in range(depth))
        # down.i runs right after the pool of level i.
        self.down = nn.ModuleList(Residual(channels, channels, skip) for _ in range(depth))
        self.bottleneck = nn.Sequential(
            *(Residual(channels, channels, skip) for _ in range(bottleneck_blocks))
        )
        self.autoencoder = autoencoder
        # In the order they run: up.0 at the deepest skip's resolution (8x8 for a 64 input).
        # There is no Residual after the last (full-resolution) addition.
        self.up = nn.ModuleList(Residual(channels, channels, skip) for _ in range(depth - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2**self.depth
        if x.shape[-2] % multiple != 0 or x.shape[-1] % multiple != 0:
            raise ValueError(
                f"hourglass input of {x.shape[-2]}x{x.shape[-1]} is not divisible by "
                f"{multiple}; network inputs must be multiples of {4 * multiple} pixels"
            )

        skips: list[torch.Tensor] = []
        for skip, down in zip(self.skips, self.down):
            if self.use_skips:
                skips.append(skip(x))
            x = down(F.max_pool2d(x, 2))

        x = self.bottleneck(x)
        if self.autoencoder is not None:
            x = self.autoencoder(x)

        for up in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            if self.use_skips:
                x = x + skips.pop()
            x = up(x)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.use_skips:
            x = x + skips.pop()
        return x


@contextmanager
def skips_disabled(model: nn.Module):
    """Run every hourglass in `model` without its skip additions; restore them on exit.

        with skips_disabled(model):
            heatmaps = model(images)
    """
    hourglasses = [m for m in model.modules() if isinstance(m, Hourglass)]
    if not hourglasses:
        raise ValueError(f"{type(model).__name__} has no Hourglass module to switch skips off in")
    saved = [hourglass.use_skips for hourglass in hourglasses]
    for hourglass in hourglasses:
        hourglass.use_skips = False
    try:
        yield model
    finally:
        for hourglass, use_skips in zip(hourglasses, saved):
            hourglass.use_skips = use_skips
