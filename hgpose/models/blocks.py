"""Building blocks shared by the thesis network and Newell's stacked hourglass."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """Pre-activation bottleneck residual: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1.

    The main branch narrows to `out_channels // 2` for the 3x3 conv and widens back.
    The skip branch is where the two networks differ:

    - ``skip="conv3x3"`` (thesis): always a 3x3 conv to `out_channels`, even when the
      channel counts match. It costs 9*in*out weights per block -- most of the thesis
      network's parameters are in these skips.
    - ``skip="identity"`` (Newell): the input itself when the channel counts match, a
      1x1 conv otherwise (the only way to add tensors of different widths).

    Convs keep PyTorch's default bias=True, as both reference implementations do; the
    parameter counts in docs/models.md include those biases.
    """

    # (conv, bn) pairs where forward feeds the conv's output straight into the BN: the
    # ones inference folds (hgpose.inference.fast.fold_batchnorm). bn1 acts on the block's
    # input, a sum, and cannot be folded.
    FOLDABLE = (("conv1", "bn2"), ("conv2", "bn3"))

    def __init__(self, in_channels: int, out_channels: int, skip: str = "conv3x3"):
        super().__init__()
        mid = out_channels // 2
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, kernel_size=1)

        if skip == "conv3x3":
            self.skip = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        elif skip == "identity":
            if in_channels == out_channels:
                self.skip = nn.Identity()
            else:
                self.skip = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        else:
            raise ValueError(f"skip must be 'conv3x3' or 'identity', got {skip!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + self.skip(x)


def xavier_init(model: nn.Module) -> None:
    """Xavier-normal for every weight tensor with more than one dimension, zero biases.

    This is the thesis' initialisation. It covers Conv2d, ConvTranspose2d and Linear
    weights; BatchNorm keeps its own init (weight 1, bias 0), as its weight is 1-D.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


CROP_SIZE = 256  # the crop every network is fed (data/crop.py)
# The working sizes a network may have (model.resolution): the hourglass halves its input
# five times (stem /4, then four levels), so it must stay a multiple of 64 ... and divide
# into the 64x64 heatmap grid cleanly.
RESOLUTIONS = (64, 128, 192, 256)


def to_resolution(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """An input [B, 3, H, W] brought to the network's working size by area averaging: a
    network with `resolution` r works at r/256 of its input (exact 2x2 means for 128), so it
    can run cheaper than the 256x256 crop it is fed. r = 256 is the identity."""
    if resolution == CROP_SIZE:
        return x
    if CROP_SIZE % resolution == 0:
        # the same means as "area" for a whole factor, but with a static kernel: ONNX
        # export cannot express area interpolation to a size computed from the input
        return F.avg_pool2d(x, CROP_SIZE // resolution)
    h, w = x.shape[-2] * resolution // CROP_SIZE, x.shape[-1] * resolution // CROP_SIZE
    return F.interpolate(x, size=(h, w), mode="area")


def to_heatmap_grid(heatmaps: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Heatmaps [B, S, J, h, w] of a network run at a lower resolution, bilinearly brought
    to the input's grid [B, S, J, H/4, W/4], so codecs, losses and metrics see one grid
    whatever the network's working size (training learns through the resampling)."""
    if tuple(heatmaps.shape[-2:]) == tuple(grid):
        return heatmaps
    b, s, j, h, w = heatmaps.shape
    up = F.interpolate(heatmaps.reshape(b * s, j, h, w), size=tuple(grid), mode="bilinear",
                       align_corners=False)
    return up.reshape(b, s, j, *grid)
