"""Drawing keypoints for people: skeletons over images and heatmaps over crops.

Used by predict, evaluate, explain and the synthetic-data gallery, so every picture of a
pose in hgpose looks the same: left side orange, right side blue, centre green; a joint
whose score is below `min_score` is faded rather than hidden.
"""

from __future__ import annotations

import cv2
import numpy as np

from hgpose.skeleton import BONES, side_of

SIDE_COLOURS = {"left": (255, 140, 0), "right": (30, 120, 255), "centre": (40, 200, 60)}  # RGB
SHIFT = 4  # cv2 draws at 1/16 pixel: a joint at x = 10.4 is not moved to 10


def _point(xy) -> tuple[int, int]:
    return int(round(xy[0] * (1 << SHIFT))), int(round(xy[1] * (1 << SHIFT)))


def _bone_side(a: int, b: int) -> str:
    sides = {side_of(a), side_of(b)}
    return sides.pop() if len(sides) == 1 else "centre"


def draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    *,
    min_score: float = 0.0,
    thickness: int | None = None,
    fade: float = 0.35,
    labels: bool = False,
) -> np.ndarray:
    """Return a copy of an RGB uint8 image with one person's skeleton drawn on it.

    keypoints: [17,3] (x, y, v-or-score). A joint is drawn when its third value is > 0;
    joints (and bones touching them) with a value below `min_score` are blended in at
    `fade` opacity. Coordinates are in the image's pixels. With `labels` the third value
    is COCO's visibility flag: visible joints (2) are dots, occluded ones (1) rings.
    """
    out = np.ascontiguousarray(image.copy())
    kps = np.asarray(keypoints, dtype=np.float64)
    size = max(out.shape[:2])
    thickness = thickness or max(1, int(round(size / 160)))
    strong, weak = out.copy(), out.copy()
    present = kps[:, 2] > 0
    faint = present & (kps[:, 2] < min_score)
    for a, b in BONES:
        if present[a] and present[b]:
            layer = weak if (faint[a] or faint[b]) else strong
            cv2.line(layer, _point(kps[a]), _point(kps[b]), SIDE_COLOURS[_bone_side(a, b)], thickness,
                     cv2.LINE_AA, SHIFT)
    radius = (thickness + 1) << SHIFT
    for j in np.flatnonzero(present):
        layer = weak if faint[j] else strong
        colour = SIDE_COLOURS[side_of(j)]
        if labels and kps[j, 2] == 1:
            cv2.circle(layer, _point(kps[j]), radius, colour, 1 + thickness // 2, cv2.LINE_AA, SHIFT)
            continue
        cv2.circle(layer, _point(kps[j]), radius, colour, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(layer, _point(kps[j]), radius, (255, 255, 255), 1, cv2.LINE_AA, SHIFT)
    # the faint layer only differs from `out` where faded parts were drawn
    out = cv2.addWeighted(weak, fade, out, 1 - fade, 0)
    drawn = np.any(strong != image, axis=-1)
    out[drawn] = strong[drawn]
    return out


def heatmap_overlay(crop: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The crop with the joints' heatmaps fused (max over joints) laid over it, as a jet
    colour map (the thesis's Figure 5). crop: RGB uint8 [H,W,3]; heatmaps: [J,h,w]."""
    fused = np.asarray(heatmaps, dtype=np.float32).max(axis=0)
    fused = np.clip(fused, 0, None)
    fused = fused / fused.max() if fused.max() > 0 else fused
    fused = cv2.resize(fused, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((fused * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return cv2.addWeighted(crop, 1 - alpha, colour, alpha, 0)
