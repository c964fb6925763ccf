"""Drawing keypoints for people: skeletons over images and heatmaps over crops.

Used by predict, evaluate, explain and the synthetic-data gallery, so every picture of a
pose in hgpose looks the same: left side orange, right side blue, centre green; a joint
whose score is below `min_score` is faded rather than hidden. Heatmaps are drawn in the jet
colour map; a picture read against its colour bar (`colour_bar`) uses one fixed scale.
"""

from __future__ import annotations

import cv2
import numpy as np

from hgpose.skeleton import BONES, side_of

SIDE_COLOURS = {"left": (255, 140, 0), "right": (30, 120, 255), "centre": (40, 200, 60)}  # RGB
SHIFT = 4  # cv2 draws at 1/16 pixel: a joint at x = 10.4 is not moved to 10
FONT = cv2.FONT_HERSHEY_SIMPLEX


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
    return draw_skeletons(image, [keypoints], min_score=min_score, thickness=thickness, fade=fade,
                          labels=labels)


def draw_skeletons(
    image: np.ndarray,
    people,
    *,
    min_score: float = 0.0,
    thickness: int | None = None,
    fade: float = 0.35,
    labels: bool = False,
) -> np.ndarray:
    """`draw_skeleton` for several people ([N,17,3] or a list of [17,3]) in one pass over
    the image, so a crowd costs one copy of the picture, not one per person."""
    out = np.ascontiguousarray(image.copy())
    size = max(out.shape[:2])
    thickness = thickness or max(1, int(round(size / 160)))
    strong, weak = out.copy(), out.copy()
    for keypoints in people:
        _draw_person(strong, weak, np.asarray(keypoints, dtype=np.float64), min_score, thickness, labels)
    # the faint layer only differs from `out` where faded parts were drawn
    out = cv2.addWeighted(weak, fade, out, 1 - fade, 0)
    drawn = np.any(strong != image, axis=-1)
    out[drawn] = strong[drawn]
    return out


def _draw_person(strong: np.ndarray, weak: np.ndarray, kps: np.ndarray, min_score: float,
                 thickness: int, labels: bool) -> None:
    """One skeleton: confident parts onto `strong`, faint ones onto `weak`."""
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


def draw_label(image: np.ndarray, text: str, x: int, y: int, height: int) -> None:
    """Write `text` in place, white with a dark outline (readable on any photo), its
    top-left corner at (x, y) (kept inside the image), about `height` pixels tall."""
    scale = max(height, 6) / 22
    weight = max(1, round(height / 12))
    (w, h), _ = cv2.getTextSize(text, FONT, scale, weight)
    x = int(min(max(x, 0), max(image.shape[1] - w, 0)))
    y = int(min(max(y, 0), max(image.shape[0] - h - weight, 0))) + h
    cv2.putText(image, text, (x, y), FONT, scale, (20, 20, 20), weight + 2, cv2.LINE_AA)
    cv2.putText(image, text, (x, y), FONT, scale, (255, 255, 255), weight, cv2.LINE_AA)


# --- heatmaps and their colour scale -------------------------------------------------------


def _jet(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 of the jet colour map (blue low, red high)."""
    levels = (np.clip(values, 0, 1) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels, cv2.COLORMAP_JET)[..., ::-1]


def heatmap_overlay(crop: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.55,
                    vmax: float | None = None) -> np.ndarray:
    """The crop with the joints' heatmaps fused (max over joints) laid over it, as a jet
    colour map (the thesis's Figure 5). crop: RGB uint8 [H,W,3]; heatmaps: [J,h,w].
    vmax: the value drawn red (higher ones too), for a picture read against a colour bar
    (`colour_bar`); None scales each picture to its own maximum."""
    fused = np.clip(np.asarray(heatmaps, dtype=np.float32).max(axis=0), 0, None)
    top = float(fused.max()) if vmax is None else float(vmax)
    fused = fused / top if top > 0 else fused
    fused = cv2.resize(fused, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(crop, 1 - alpha, _jet(fused), alpha, 0)


def colour_bar(height: int, vmax: float, width: int = 76) -> np.ndarray:
    """A vertical colour scale, RGB uint8 [height, width, 3] on white: the jet colours from
    0 (bottom) to `vmax` (top), with their values written at the bottom, middle and top."""
    bar = np.full((height, width, 3), 255, np.uint8)
    margin, strip = 8, 14
    top, bottom = margin, height - margin
    span = np.linspace(1, 0, bottom - top, dtype=np.float32)[:, None]
    bar[top:bottom, margin:margin + strip] = _jet(np.repeat(span, strip, 1))
    for fraction in (0.0, 0.5, 1.0):
        y = int(round(bottom - 1 - fraction * (bottom - top - 1)))
        cv2.line(bar, (margin + strip, y), (margin + strip + 3, y), (0, 0, 0), 1)
        text = "0" if fraction == 0 else f"{fraction * vmax:.2f}"
        cv2.putText(bar, text, (margin + strip + 6, min(max(y + 4, 10), height - 2)), FONT, 0.38,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def tile_sheet(tiles: list[np.ndarray], columns: int, right: np.ndarray | None = None,
               caption: str = "") -> np.ndarray:
    """Equal square tiles (RGB uint8 [t, t, 3]) in rows of `columns` on white, `right` (a
    colour bar as tall as the sheet, say) beside them and a one-line `caption` below."""
    t = tiles[0].shape[0]
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * t, columns * t, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * t:(r + 1) * t, c * t:(c + 1) * t] = tile
    if right is not None:
        sheet = np.concatenate([sheet, right], axis=1)
    if caption:
        line = np.full((20, sheet.shape[1], 3), 255, np.uint8)
        cv2.putText(line, caption, (4, 14), FONT, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        sheet = np.concatenate([sheet, line], axis=0)
    return sheet
