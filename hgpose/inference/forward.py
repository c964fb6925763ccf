"""From crops to heatmaps: the network's input normalisation and the flip test, written once.

Training (its input batches and validation), the estimator, explain and the ONNX export all
feed the network through these functions, so a crop means the same thing everywhere:

    input = crop / 255 - mean RGB of the training crops     float32 [B, 3, H, W], std 1 (thesis)

The flip test averages a crop's heatmaps with the flipped-back heatmaps of its mirror image
(`hgpose.codecs.flip_back` undoes the mirror in heatmap space).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch

from hgpose.codecs import flip_back


def to_unit(crops: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 crops [B, H, W, 3] -> float32 [B, 3, H, W] in [0, 1] on the device.

    NHWC -> NCHW as a view: its strides already are channels-last, the layout the
    convolutions run fastest in.
    """
    return crops.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)


def normalise(x: torch.Tensor, mean_rgb: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] colours in [0, 1] -> network input: minus the training crops' mean RGB."""
    return x - mean_rgb.to(x.device, x.dtype).view(1, 3, 1, 1)


def to_input(crops: torch.Tensor, mean_rgb: torch.Tensor, device: torch.device | str,
             channels_last: bool = True) -> torch.Tensor:
    """uint8 crops [B, H, W, 3] -> the network's input on the device."""
    x = normalise(to_unit(crops, device), mean_rgb)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def flip_test(model: Callable, x: torch.Tensor, heatmaps: torch.Tensor,
              autocast: Callable = nullcontext) -> torch.Tensor:
    """The last stack's heatmaps of x, averaged with those of x mirrored (then flipped back)."""
    with autocast():
        mirrored = model(x.flip(-1))[:, -1].float()
    stride = x.shape[-1] // heatmaps.shape[-1]
    return (heatmaps + flip_back(mirrored, stride)) / 2


def run_network(model: Callable, x: torch.Tensor, flip: bool = False,
                autocast: Callable = nullcontext) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input [B, 3, H, W] -> (every stack's output [B, S, J, h, w] as the network
    returns it, the last stack's heatmaps float32 [B, J, h, w], flip-averaged with `flip`)."""
    with autocast():
        outputs = model(x)
    heatmaps = outputs[:, -1].float()
    return outputs, flip_test(model, x, heatmaps, autocast) if flip else heatmaps


def last_stack(model: Callable, x: torch.Tensor, flip: bool = False,
               autocast: Callable = nullcontext) -> torch.Tensor:
    """Network input [B, 3, H, W] -> float32 heatmaps [B, J, h, w] of the last stack
    (flip-averaged with `flip`)."""
    return run_network(model, x, flip, autocast)[1]
