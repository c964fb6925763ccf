"""How well the explained network finds joints on the analysed crops, beside what a network
that learned nothing scores there: the report's Run section and its warning.

The metric is the thesis PCK (SPEC §5) per image: a joint is right when its argmax cell on
the 64 x 64 grid lies within 3.2 cells of the ground truth's thesis-codec cell; an image
scores the share of its counted joints that are right, and the crops' mean is reported.
Only the joints the network was trained on count (the weights file's "joints": an LSP-trained
network is not scored on faces it never saw), so the same function scores the network (its
argmax cells, which the latents pass records) and the reference.

The reference is the prior level: every joint always at one cell, the median of its
ground-truth cells over the analysed crops, the image unseen. It is what a network scores
that has learned only where joints usually lie in a crop, and more than an untrained one
does (whose argmax falls anywhere). It needs only the keypoints: O(N x 17), no network pass.

"Near" that level (`NEAR`): the network gets fewer than a tenth of the joints the constant
skeleton misses right, i.e. PCK < prior + 0.1 x (1 - prior). Below that, what its latent
holds is mostly where a crop puts the person, which the crop rule did, not the network. The
thesis's own curve crosses that line: its val PCK was 0.05-0.13 over its first 10 epochs
(hgpose.thesis.CURVE_VAL_PCK_EPOCHS_1_TO_10), at about the prior level of COCO's
person-centred crops (0.08-0.15 on the COCO sample's splits), and more than three times that
at its best (hgpose.thesis.PCK).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from hgpose.skeleton import JOINTS, LIMB_JOINTS

# The command line imports this module (through the pipeline): the codec and the PCK's
# constants, which import torch, are imported where they are used.
NEAR = 0.1   # share of what the prior misses a network must find, to be clear of the prior level
METRIC = ("thesis PCK: a joint is right when its argmax cell on the 64 x 64 heatmap grid lies within "
          "3.2 cells of the ground truth's; per-image share of the labelled joints the network was "
          "trained on, averaged over the crops")
PRIOR = "every joint at its median cell over these crops, the image unseen"

_LIMBS = np.isin(np.arange(len(JOINTS)), list(LIMB_JOINTS))


@lru_cache(maxsize=1)
def _codec():
    from hgpose.codecs import ThesisCodec

    return ThesisCodec()


def trained_joints(metadata: dict) -> np.ndarray:
    """bool [17]: the joints a weights file says its network was trained on (all 17 for files
    that predate the "joints" field)."""
    names = metadata.get("joints")
    return np.ones(len(JOINTS), bool) if names is None else np.isin(JOINTS, names)


def grid_cells(xy: np.ndarray) -> np.ndarray:
    """Crop-pixel positions [..., 2] -> their thesis-codec cells [..., 2] (the cell a target's
    peak sits in; for a decoded prediction, its argmax cell)."""
    codec = _codec()
    return np.clip(np.round(codec.crop_to_grid(np.asarray(xy, np.float64))), 0, codec.heatmap_size - 1)


def per_image_pck(pred_cells: np.ndarray, keypoints: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """float32 [N, 3]: per-image thesis PCK of each subset (SUBSETS order), NaN where an image
    has no counted joint. pred_cells [N, 17, 2] or [17, 2] (one prediction for every crop);
    keypoints [N, 17, 3] in crop pixels; trained bool [17]: the joints that count at all."""
    from hgpose.evaluate.pck import SUBSETS, THRESHOLD

    v = keypoints[..., 2]
    truth = grid_cells(keypoints[..., :2])
    right = np.linalg.norm(np.broadcast_to(pred_cells, truth.shape) - truth, axis=-1) < THRESHOLD
    labelled = (v > 0) & trained
    counted = {"all": labelled, "visible": labelled & (v == 2), "limbs": labelled & _LIMBS}
    out = np.full((len(keypoints), len(SUBSETS)), np.nan, np.float32)
    for i, name in enumerate(SUBSETS):
        n = counted[name].sum(1)
        share = (right & counted[name]).sum(1) / np.maximum(n, 1)
        out[:, i] = np.where(n > 0, share, np.nan)
    return out


def prior_cells(keypoints: np.ndarray) -> np.ndarray:
    """[17, 2]: each joint's median ground-truth cell over the crops where it is labelled
    (the grid's centre for a joint labelled nowhere)."""
    cells = grid_cells(keypoints[..., :2])
    labelled = keypoints[..., 2] > 0
    centre = (_codec().heatmap_size - 1) / 2
    return np.array([np.round(np.median(cells[labelled[:, j], j], axis=0)) if labelled[:, j].any()
                     else [centre, centre] for j in range(len(JOINTS))])


def means(pck: np.ndarray) -> dict:
    """{subset: mean over the images it counts (None if none)} of a per-image PCK table."""
    from hgpose.evaluate.pck import SUBSETS

    out = {}
    for i, name in enumerate(SUBSETS):
        values = pck[:, i][np.isfinite(pck[:, i])]
        out[name] = float(values.mean()) if len(values) else None
    return out


def summary(pred: np.ndarray, keypoints: np.ndarray, trained: np.ndarray) -> dict:
    """explain.json's "accuracy": the network's thesis PCK on the crops (pred [N, 17, >=2],
    the decoded predictions in crop px), the prior level on the same crops, and whether the
    network is near that level."""
    keypoints = np.asarray(keypoints, np.float32)
    network = per_image_pck(grid_cells(pred[..., :2]), keypoints, trained)
    prior = per_image_pck(prior_cells(keypoints), keypoints, trained)
    ours, level = means(network)["all"], means(prior)["all"]
    warn_below = None if level is None else level + NEAR * (1 - level)
    return {
        "metric": METRIC,
        "joints": [name for name, keep in zip(JOINTS, trained) if keep],
        "crops": len(keypoints),
        "images_counted": int(np.isfinite(network[:, 0]).sum()),
        "network": means(network),
        "prior": means(prior),
        "prior_rule": PRIOR,
        "near": NEAR,
        "warn_below": warn_below,
        "near_prior": bool(ours is not None and warn_below is not None and ours < warn_below),
    }


def summary_line(accuracy: dict) -> str:
    """The terminal's line: the accuracy, the prior level and, when near it, the warning."""
    ours, level = accuracy["network"]["all"], accuracy["prior"]["all"]
    if ours is None:
        return "  accuracy: no crop has a labelled joint the network was trained on"
    line = (f"  accuracy: thesis PCK {ours:.3f} on {accuracy['images_counted']:,} crops; a network that learned "
            f"nothing (every joint at its median cell) scores {level:.3f}")
    if accuracy["near_prior"]:
        line += ("\n  warning: this network is near that level (below "
                 f"{accuracy['warn_below']:.3f}): read the analysis as that of a network that has not "
                 "learned to find people")
    return line
