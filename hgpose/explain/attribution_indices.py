"""Scores of a saliency map against the truth: the indices of PoseIG (He et al., CVPR 2023,
"Analyzing and Diagnosing Pose Estimation with Attributions").

Every index reads the positive part P = max(A, 0) of a map A [H, W] (the evidence *for* the
joint's heatmap peak, the part the tiles draw), and compares where its mass lies with a
uniform map, so 1 means "no better than spreading the attribution evenly":

    localisation  LI = (sum of P within r px of the joint / sum of P) / (pixels within r / H W)
    inversion     the same LI at the joint's left/right counterpart's ground truth
    foreground    FI = (sum of P on the person's mask / sum of P) / (mask pixels / H W)
    diffusion     DI = 100 (1 - Gini(P)), Gini over the H W values (0: one pixel, 100: uniform)

An index is None where it cannot be measured: no positive mass, the joint (or its
counterpart) unlabelled, no counterpart (nose), no mask.
"""

from __future__ import annotations

import math

import numpy as np

from hgpose.skeleton import FLIP_INDEX, JOINTS

INDICES = ("localisation", "inversion", "diffusion", "foreground")


def positive(saliency: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(saliency, np.float64), 0, None)


def mass_ratio(saliency: np.ndarray, region: np.ndarray) -> float | None:
    """(share of the positive mass inside `region`) / (share of the pixels inside it)."""
    pos = positive(saliency)
    total, area = pos.sum(), region.mean()
    if total <= 0 or area <= 0:
        return None
    return float(pos[region].sum() / total / area)


def disc(shape: tuple[int, int], x: float, y: float, radius: float) -> np.ndarray:
    """bool [H, W]: the pixel centres within `radius` of (x, y) (pixel i's centre is i)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (xx - x) ** 2 + (yy - y) ** 2 <= radius**2


def localisation(saliency: np.ndarray, keypoint, radius: float) -> float | None:
    """LI of one map at one keypoint (x, y, v); None when unlabelled (v = 0)."""
    x, y, v = (float(c) for c in keypoint)
    if v <= 0:
        return None
    return mass_ratio(saliency, disc(saliency.shape, x, y, radius))


def diffusion(saliency: np.ndarray) -> float | None:
    """DI = 100 (1 - Gini) of the positive part: 0 all on one pixel, 100 uniform."""
    values = np.sort(positive(saliency).ravel())
    n, total = len(values), values.sum()
    if total <= 0:
        return None
    rank = np.arange(1, n + 1)
    gini = float(((2 * rank - n - 1) * values).sum() / (n * total))
    return 100.0 * (1.0 - gini)


def foreground(saliency: np.ndarray, mask: np.ndarray | None) -> float | None:
    """FI against the person's mask (bool [H, W] in crop pixels); None without a mask."""
    if mask is None:
        return None
    return mass_ratio(saliency, np.asarray(mask, bool))


def map_indices(maps: np.ndarray, keypoints: np.ndarray, joints: list[int], radius: float,
                mask: np.ndarray | None = None) -> dict[str, list[float | None]]:
    """Every index of maps [len(joints), H, W] (map i explains joint joints[i]) for one crop
    with ground truth keypoints [17, 3]: index name -> one value per joint."""
    out = {name: [] for name in INDICES}
    for m, j in zip(maps, joints):
        counterpart = FLIP_INDEX[j]
        out["localisation"].append(localisation(m, keypoints[j], radius))
        out["inversion"].append(None if counterpart == j else localisation(m, keypoints[counterpart], radius))
        out["diffusion"].append(diffusion(m))
        out["foreground"].append(foreground(m, mask))
    return out


def mean_se(values) -> dict:
    """{"mean", "se", "n"} of the values that are not None (se: standard error, None for n < 2)."""
    kept = np.array([v for v in values if v is not None], np.float64)
    n = len(kept)
    if n == 0:
        return {"mean": None, "se": None, "n": 0}
    se = float(kept.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return {"mean": float(kept.mean()), "se": se, "n": n}


def summarise(per_crop: list[dict[str, list]], joints: list[int]) -> dict:
    """Per index, per joint name and over all joints: mean ± standard error across crops.

    per_crop: one `map_indices` result per crop (of one method)."""
    out = {}
    for name in INDICES:
        per_joint = {JOINTS[j]: mean_se([c[name][i] for c in per_crop]) for i, j in enumerate(joints)}
        everything = [v for c in per_crop for v in c[name]]
        out[name] = {"joints": per_joint, "all": mean_se(everything)}
    return out
