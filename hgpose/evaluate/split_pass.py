"""One pass of a network over the crops of a split, scored with the thesis PCK: the loop that
`hgpose evaluate`, training's validation and explain's latents and skip ablation all run.

    batches = store_batches(split, 32)          # or a DataLoader over CropDataset: the same triples
    forward = network_forward(network, mean_rgb, device, autocast=..., flip=...)
    for batch in split_pass(batches, forward, layer=(model, "hourglass.bottleneck.2")):
        batch.heatmaps, batch.pck, batch.correct, batch.layer ...

A batch is (uint8 crops [B, 256, 256, 3], keypoints [B, 17, 3] in crop pixels, rows [B]).
`forward` turns the crops into (every stack's output, the last stack's heatmaps): the
network in every command, ground-truth heatmaps in the metric tests. Each `ScoredBatch`
holds the heatmaps with their thesis-codec targets, the per-image thesis PCK of each subset
(SPEC §5, `pck.thesis_pck`), which joints are thesis-correct, and the output of a named
layer when asked for. The thesis PCK never depends on the run's codec, so every number it
gives is comparable with the thesis's.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from hgpose.codecs import ThesisCodec, argmax_2d
from hgpose.evaluate.pck import SUBSETS, THRESHOLD, counted_joints, thesis_pck
from hgpose.inference.forward import run_network, to_input
from hgpose.models import capture

# (uint8 crops [B, H, W, 3], rows [B]) -> (every stack's output [B, S, J, h, w], or None where
# only final heatmaps exist; the last stack's heatmaps float32 [B, J, h, w])
Forward = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor | None, torch.Tensor]"]

_THESIS_CODEC = ThesisCodec()   # the PCK's ground truth is always the thesis's argmax


@dataclass
class ScoredBatch:
    """One batch of a pass, on the heatmaps' device."""

    rows: torch.Tensor                 # int64 [B]: the crops' rows in the split
    keypoints: torch.Tensor            # float32 [B, 17, 3] crop pixels and v (ABSENT where absent)
    outputs: torch.Tensor | None       # [B, S, J, h, w] as the network returned them (the loss's input)
    heatmaps: torch.Tensor             # float32 [B, J, h, w]: the last stack, flip-averaged with flip
    targets: torch.Tensor              # float32 [B, J, h, w]: thesis-codec ground truth
    pck: dict                          # subset -> (per-image PCK [B], image counted [B])
    layer: torch.Tensor | None = None  # the named layer's output, when asked for

    @property
    def counted(self) -> torch.Tensor:
        """bool [B, 17]: the joints the thesis PCK counts (labelled)."""
        return counted_joints(self.targets, self.keypoints[..., 2])["all"]

    @property
    def correct(self) -> torch.Tensor:
        """bool [B, 17]: counted joints whose argmax lies < 3.2 heatmap px from the truth's."""
        dist = (argmax_2d(self.heatmaps) - argmax_2d(self.targets)).float().norm(dim=-1)
        return (dist < THRESHOLD) & self.counted

    def pck_table(self) -> np.ndarray:
        """float32 [B, 3]: per-image PCK of the subsets in SUBSETS order, NaN where not counted."""
        columns = [torch.where(self.pck[s][1], self.pck[s][0], torch.nan) for s in SUBSETS]
        return torch.stack(columns, 1).cpu().numpy().astype(np.float32)


def network_forward(network: Callable, mean_rgb, device: torch.device | str, *,
                    autocast: Callable = nullcontext, flip: bool = False,
                    channels_last: bool = True) -> Forward:
    """The `Forward` of a network ([B, 3, H, W] -> [B, S, J, h, w]): the input normalised by
    the inference core (`forward.to_input`), the last stack flip-averaged with `flip`."""
    mean = torch.as_tensor(mean_rgb, dtype=torch.float32).to(device)

    def forward(crops: torch.Tensor, rows: torch.Tensor):
        return run_network(network, to_input(crops, mean, device, channels_last), flip, autocast)

    return forward


def store_batches(split, batch_size: int, limit: int = 0) -> Iterator[tuple]:
    """A split's (crops, keypoints, rows) in order, `batch_size` at a time, read from its
    memory maps (the keypoints as the Split holds them: evaluate may have edited them)."""
    n = min(len(split), limit) if limit > 0 else len(split)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        crops = torch.from_numpy(np.array(split.images[start:stop]))
        keypoints = torch.from_numpy(np.array(split.keypoints[start:stop], dtype=np.float32))
        yield crops, keypoints, torch.arange(start, stop)


def split_pass(batches: Iterable, forward: Forward, *,
               layer: tuple[nn.Module, str] | None = None) -> Iterator[ScoredBatch]:
    """Run `forward` over `batches` and score each batch (see the module docstring).
    layer: (module, name) whose output each batch also carries. Gradients are the caller's
    to switch off (`torch.no_grad()` around the loop), as a generator cannot hold a mode."""
    with capture(layer[0], [layer[1]]) if layer else nullcontext({}) as captured:
        for crops, keypoints, rows in batches:
            outputs, heatmaps = forward(crops, rows)
            kps = keypoints.to(heatmaps.device, non_blocking=True).float()
            targets, _ = _THESIS_CODEC.encode_torch(kps)
            yield ScoredBatch(rows, kps, outputs, heatmaps, targets, thesis_pck(heatmaps, targets, kps[..., 2]),
                              captured[layer[1]] if layer else None)
