"""Per-joint saliency (beyond the thesis), with captum.

Both methods explain one number per joint: the peak of the joint's predicted heatmap (the
last stack's), i.e. the network's confidence in the location it reports.

* Occlusion sensitivity (captum `Occlusion`): a patch x patch square of the input is set to
  0 -- the mean colour, since inputs are mean-subtracted -- at every `stride` position; the
  attribution of a pixel is the average drop of the peak over the squares covering it.
  Cost: ((256 - patch) / stride + 1)^2 forward passes per crop (225 for 32/16), shared by all
  17 joints (the forward returns the 17 peaks at once).
* Grad-CAM (captum `LayerGradCam`) at a layer (default `stem`, the 64x64 features that enter
  the hourglass): channel weights = spatial mean of the peak's gradient, map = ReLU of the
  weighted channel sum, upsampled to the crop. One backward pass per joint.

Only the positive part of each map is drawn (evidence *for* the peak), over the crop.
`locality` = the share of a map's positive mass within `patch` pixels of the joint's
ground-truth position: near 1, the joint is found from local evidence; low, from context.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from hgpose.draw import heatmap_overlay
from hgpose.explain import figures
from hgpose.skeleton import JOINTS

SHORT = {name: name.replace("left_", "L ").replace("right_", "R ") for name in JOINTS}


def default_gradcam_layer(model: nn.Module) -> str:
    names = dict(model.named_modules())
    return "stem" if "stem" in names else model.latent_layer


def _peaks(model: nn.Module):
    """The function captum explains: input [B,3,H,W] -> the 17 heatmap peaks [B,17]."""
    def forward(x):
        return model(x)[:, -1].flatten(2).amax(-1)
    return forward


def occlusion(model: nn.Module, x: torch.Tensor, patch: int, stride: int, batch: int = 16) -> np.ndarray:
    """[1,3,H,W] -> [J,H,W] occlusion attributions (summed over colour channels)."""
    from captum.attr import Occlusion

    forward = _peaks(model)
    occ = Occlusion(forward)
    kwargs = dict(sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), baselines=0.0,
                  perturbations_per_eval=batch)
    with torch.no_grad():
        joints = forward(x).shape[1]
        attr = occ.attribute(x, **kwargs)
        if attr.shape[0] != joints:
            # Older captum explains one output per call: one target per joint.
            attr = torch.cat([occ.attribute(x, target=j, **kwargs) for j in range(joints)])
    return attr.sum(1).float().cpu().numpy()


def gradcam(model: nn.Module, x: torch.Tensor, layer: str, joints: list[int]) -> np.ndarray:
    """[1,3,H,W] -> [len(joints),H,W] Grad-CAM maps at `layer`, upsampled to the input."""
    from captum.attr import LayerAttribution, LayerGradCam

    module = dict(model.named_modules())[layer]
    cam = LayerGradCam(_peaks(model), module)
    maps = []
    with torch.enable_grad():
        for j in joints:
            a = cam.attribute(x, target=j, relu_attributions=True)
            a = LayerAttribution.interpolate(a.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
            maps.append(a[0].sum(0))
    return torch.stack(maps).float().cpu().numpy()


def locality(maps: np.ndarray, keypoints: np.ndarray, joints: list[int], radius: float) -> list[float | None]:
    """Share of each map's positive mass within `radius` px of its joint (None: unlabelled)."""
    h, w = maps.shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for m, j in zip(maps, joints):
        x, y, v = keypoints[j]
        pos = np.clip(m, 0, None)
        total = pos.sum()
        if v <= 0 or total <= 0:
            out.append(None)
            continue
        near = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        out.append(float(pos[near].sum() / total))
    return out


def _mark(tile: np.ndarray, keypoint) -> np.ndarray:
    """A white cross on the joint's ground-truth position (when labelled)."""
    x, y, v = keypoint
    if v > 0:
        cv2.drawMarker(tile, (int(round(x)), int(round(y))), (255, 255, 255), cv2.MARKER_CROSS, 14, 2)
        cv2.drawMarker(tile, (int(round(x)), int(round(y))), (0, 0, 0), cv2.MARKER_CROSS, 14, 1)
    return tile


def sample_figure(crop: np.ndarray, keypoints: np.ndarray, pred: np.ndarray, joints: list[int],
                  occ: np.ndarray, cam: np.ndarray, title: str):
    """Pairs (occlusion | Grad-CAM) per joint, after a first pair (ground truth | prediction)."""
    tiles = [figures.crop_with_skeleton(crop, keypoints),
             figures.crop_with_skeleton(crop, figures.prediction_keypoints(pred, keypoints))]
    titles = ["ground truth", "prediction"]
    for i, j in enumerate(joints):
        for name, maps in (("occlusion", occ), ("Grad-CAM", cam)):
            tiles.append(_mark(heatmap_overlay(crop, maps[i][None]), keypoints[j]))
            titles.append(f"{SHORT[JOINTS[j]]}: {name}")
    return figures.tile_grid(tiles, cols=6, titles=titles, tile_inches=1.75, title=title, fontsize=8.5)


def explain_sample(model: nn.Module, x: torch.Tensor, *, patch: int, stride: int, layer: str,
                   joints: list[int], batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(occlusion [len(joints),H,W], Grad-CAM [len(joints),H,W]) for one input [1,3,H,W]."""
    occ = occlusion(model, x, patch, stride, batch)[joints]
    cam = gradcam(model, x, layer, joints)
    return occ, cam


def write_sample(out_dir: Path, row: int, crop, keypoints, pred, joints, occ, cam, title: str) -> Path:
    fig = sample_figure(crop, keypoints, pred, joints, occ, cam, title)
    return figures.save(fig, out_dir / f"saliency_{row}.png")
