"""The thesis PCK (SPEC §5): the metric training validates with and the thesis reports.

Prediction and ground truth are both argmax positions on the 64x64 heatmap grid. A joint
counts when it is labelled, i.e. its (thesis-codec) target map is not all zero; it is correct
when the two positions are less than 0.5 x 6.4 = 3.2 heatmap px apart. PCK is averaged per
image first, then over images; an image with no counted joint is left out of that average.

Three summaries, each with its own "counted" set (and its own excluded images):
    all      labelled joints (v = 1, 2)
    visible  labelled and visible joints (v = 2)
    limbs    labelled wrists, elbows, knees and ankles

Everything is batched torch on the heatmaps' device, so validation stays on the GPU; only
per-image results are copied to the CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from hgpose.codecs import argmax_2d
from hgpose.skeleton import LIMB_JOINTS, NUM_JOINTS

THRESHOLD = 0.5 * 6.4  # heatmap px: a fixed normaliser, not a per-person size
SUBSETS = ("all", "visible", "limbs")


def counted_joints(target_heatmaps: torch.Tensor, visibility: torch.Tensor) -> dict[str, torch.Tensor]:
    """The joints each summary counts: bool [B, J] per subset name."""
    labelled = target_heatmaps.flatten(-2).amax(-1) > 0
    limb = torch.zeros(NUM_JOINTS, dtype=torch.bool, device=labelled.device)
    limb[list(LIMB_JOINTS)] = True
    return {
        "all": labelled,
        "visible": labelled & (visibility.to(labelled.device) == 2),
        "limbs": labelled & limb,
    }


def per_image_pck(
    pred_xy: torch.Tensor, gt_xy: torch.Tensor, counted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PCK and whether the image has any counted joint.

    pred_xy, gt_xy: [B, J, 2] grid positions; counted: bool [B, J].
    Returns (values float [B], valid bool [B]); values of invalid images are 0.
    """
    dist = (pred_xy.float() - gt_xy.float()).norm(dim=-1)
    correct = (dist < THRESHOLD) & counted
    n = counted.sum(-1)
    values = correct.sum(-1).float() / n.clamp(min=1).float()
    return values, n > 0


def thesis_pck(
    pred_heatmaps: torch.Tensor, target_heatmaps: torch.Tensor, visibility: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-image thesis PCK of one batch, for each subset: {name: (values [B], valid [B])}.

    pred_heatmaps: [B, J, H, W] (for a stacked model, the last stack's output);
    target_heatmaps: [B, J, H, W] thesis-codec targets; visibility: [B, J] COCO v.
    """
    pred_xy = argmax_2d(pred_heatmaps)
    gt_xy = argmax_2d(target_heatmaps)
    return {
        name: per_image_pck(pred_xy, gt_xy, counted)
        for name, counted in counted_joints(target_heatmaps, visibility).items()
    }


class PCKAccumulator:
    """Collects per-image thesis PCK over batches (and, under DDP, over processes).

    Sums and counts stay on the device until `summary()`, so accumulating costs no
    host-device synchronisation per batch.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        # Per subset: [sum of per-image PCK, number of valid images]
        self.totals = torch.zeros(len(SUBSETS), 2, dtype=torch.float64, device=self.device)
        self._per_image: dict[str, list[torch.Tensor]] = {name: [] for name in SUBSETS}

    def update(self, pred_heatmaps: torch.Tensor, target_heatmaps: torch.Tensor,
               visibility: torch.Tensor) -> None:
        self.add(thesis_pck(pred_heatmaps, target_heatmaps, visibility))

    def add(self, results: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Add one batch's `thesis_pck` results."""
        for i, name in enumerate(SUBSETS):
            values, valid = results[name]
            self.totals[i, 0] += values[valid].sum().double()
            self.totals[i, 1] += valid.sum().double()
            self._per_image[name].append(torch.where(valid, values, torch.nan).detach())

    def all_reduce(self) -> None:
        """Sum the totals over DDP processes (per-image values stay local)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.totals)

    def per_image(self) -> dict[str, np.ndarray]:
        """Per-image PCK of this process's images, in update order; NaN = image excluded."""
        return {
            name: (torch.cat(parts).float().cpu().numpy() if parts else np.zeros(0, np.float32))
            for name, parts in self._per_image.items()
        }

    def summary(self) -> dict[str, float]:
        """{"pck", "pck_visible", "pck_limbs"} (NaN when no image counts) and "images"."""
        totals = self.totals.cpu()
        out = {}
        for i, name in enumerate(SUBSETS):
            key = "pck" if name == "all" else f"pck_{name}"
            s, n = totals[i].tolist()
            out[key] = s / n if n > 0 else float("nan")
        out["images"] = int(totals[0, 1])
        return out
