"""What the `probes` part asks each layer for: per-crop properties from the annotations, the
synthetic people's generating factors, and a random label (the negative control).

A `Target` holds one property of the sampled crops: numeric values [n, k] (a joint's x and y
are one target of k = 2) or categorical labels [n], with the crops where it is defined
(`valid`). Every target belongs to a `group`, the row of the report's map: "joint position"
is the mean over the joints of their R², "joint labelled" that of their balanced accuracies.

From the annotations (any store; crop pixels, COCO joint order):
    joint position  (x, y) of each joint, on the crops where it is labelled
    joint labelled  whether each joint is labelled (v > 0), on the crops whose source has it
    joint visible   whether a labelled joint is visible (v = 2; COCO: v = 1 is occluded)
    labelled joints the number of labelled joints
    scale           log2 of the crop's side in the original image (the crop is a fixed
                    multiple of the person's box, so this is the person's size there)
    facing          "camera" when the left shoulder is right of the right one in the crop,
                    else "away" (both shoulders labelled)
    upside-down     the head (mean of the labelled face joints, or of the shoulders where the
                    source has no face) below the mean of the labelled ankles
    other people    (COCO) the number of other annotated people whose box overlaps the crop
On synthetic stores, every factor `hgpose synth` records (`hgpose.explain.factors`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgpose.explain import factors as factors_mod
from hgpose.skeleton import JOINT_INDEX, JOINTS

FACE = [JOINT_INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
SHOULDERS = [JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_shoulder"]]
ANKLES = [JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]]
RANDOM = "random label"


@dataclass
class Target:
    name: str
    kind: str                 # "numeric" (ridge, R²) or "categorical" (logistic, balanced accuracy)
    values: np.ndarray        # numeric: float [n, k]; categorical: labels [n]
    valid: np.ndarray         # bool [n]: the crops where it is defined
    group: str                # the report's row

    def __post_init__(self):
        if self.kind == "numeric":
            self.values = np.asarray(self.values, np.float64).reshape(len(self.valid), -1)
        else:
            self.values = np.asarray(self.values).astype(str)


def annotation_targets(keypoints: np.ndarray, present: np.ndarray, boxes: np.ndarray) -> list[Target]:
    """The annotations' targets of crops with keypoints [n,17,3], present [n,17], boxes [n,3]."""
    v = keypoints[..., 2]
    labelled = (v > 0) & present
    out = []
    for j in np.flatnonzero(present.any(0)):
        out.append(Target(f"{JOINTS[j]} x,y", "numeric", keypoints[:, j, :2], labelled[:, j], "joint position"))
    for j in np.flatnonzero(present.any(0)):
        out.append(Target(f"{JOINTS[j]} labelled", "categorical", labelled[:, j], present[:, j], "joint labelled"))
    for j in np.flatnonzero(present.any(0)):
        out.append(Target(f"{JOINTS[j]} visible", "categorical", v[:, j] >= 2, labelled[:, j], "joint visible"))
    out.append(Target("labelled joints", "numeric", labelled.sum(1), np.ones(len(v), bool), "labelled joints"))
    out.append(Target("scale", "numeric", np.log2(np.maximum(boxes[:, 2], 1e-3)), np.ones(len(v), bool), "scale"))
    both = labelled[:, SHOULDERS].all(1)
    facing = np.where(keypoints[:, SHOULDERS[0], 0] > keypoints[:, SHOULDERS[1], 0], "camera", "away")
    out.append(Target("facing", "categorical", facing, both, "facing"))
    out.append(_upside_down(keypoints, labelled, present))
    return out


def _upside_down(keypoints: np.ndarray, labelled: np.ndarray, present: np.ndarray) -> Target:
    """The head (face joints, or the shoulders where the source has no face) below the ankles."""
    face_y = _masked_mean(keypoints[:, FACE, 1], labelled[:, FACE])
    shoulder_y = _masked_mean(keypoints[:, SHOULDERS, 1], labelled[:, SHOULDERS])
    top_y = np.where(present[:, FACE].any(1), face_y, shoulder_y)
    ankle_y = _masked_mean(keypoints[:, ANKLES, 1], labelled[:, ANKLES])
    valid = np.isfinite(top_y) & np.isfinite(ankle_y)
    return Target("upside-down", "categorical", np.where(valid & (top_y > ankle_y), "yes", "no"), valid,
                  "upside-down")


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (values * mask).sum(1) / count, np.nan)


def overlapping_people(annotation_file: Path, ids: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """For each crop (ids [n,2] image and annotation id, boxes [n,3] x0, y0, side), the number of
    other annotated people of its image whose box overlaps the crop square."""
    data = json.loads(Path(annotation_file).read_text())
    by_image: dict[int, list] = {}
    for a in data.get("annotations", []):
        by_image.setdefault(int(a["image_id"]), []).append((int(a["id"]), a.get("bbox") or [0, 0, 0, 0]))
    out = np.zeros(len(ids), np.int64)
    for i, ((image, ann), (x0, y0, side)) in enumerate(zip(ids, boxes)):
        for other, (bx, by, bw, bh) in by_image.get(int(image), []):
            if other != int(ann) and bx < x0 + side and bx + bw > x0 and by < y0 + side and by + bh > y0:
                out[i] += 1
    return out


def synth_targets(found: dict[str, np.ndarray]) -> list[Target]:
    """The generating factors `hgpose synth` recorded (constant ones say nothing: left out)."""
    out = []
    for name, values in found.items():
        kind = "categorical" if name in factors_mod.CATEGORICAL else "numeric"
        # named as their group: "scale" and "facing" are annotation targets too
        out.append(Target(f"synth: {name}", kind, values, np.ones(len(values), bool), f"synth: {name}"))
    return out


def random_target(n: int, seed: int) -> Target:
    """A fair coin per crop, independent of everything: every probe of it must stay at chance."""
    coin = np.random.default_rng([seed, 30]).integers(0, 2, n)
    return Target(RANDOM, "categorical", np.where(coin == 1, "heads", "tails"), np.ones(n, bool), RANDOM)


def store_targets(store, split: str, rows: np.ndarray, seed: int) -> list[Target]:
    """Every target of the crops `rows` of `split` that the store can give."""
    crops = store.split(split)
    keypoints = np.array(crops.keypoints[rows], dtype=np.float64)
    present = crops.joints_present(rows)
    boxes = np.array(crops.boxes[rows], dtype=np.float64)
    ids = np.array(crops.ids[rows])
    out = annotation_targets(keypoints, present, boxes)
    sources = store.sources
    if len(sources) == 1 and sources[0].get("format") == "coco":
        path = (sources[0].get("annotations") or {}).get(split)
        if path and Path(path).is_file():
            out.append(Target("other people", "numeric", overlapping_people(Path(path), ids, boxes),
                              np.ones(len(rows), bool), "other people"))
    found = factors_mod.load(store, split, ids)
    if found is not None:
        out += synth_targets(found)
    out.append(random_target(len(rows), seed))
    names = [t.name for t in out]
    if len(set(names)) != len(names):   # results and folds are keyed by name
        raise ValueError(f"probe targets share a name: {sorted({n for n in names if names.count(n) > 1})}")
    return out
