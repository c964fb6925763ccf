"""Standard pose metrics on original-image coordinates (SPEC §5, beyond the thesis).

- PCK@α with a per-person normaliser: the COCO box's longer side ("bbox") or the torso
  diameter, |left shoulder − right hip| ("torso"), as in mmpose's PCKAccuracy.
- COCO keypoint AP/AR (OKS), computed by pycocotools' own COCOeval — never a
  re-implementation. Ground truth is either the people of the evaluated split (one
  prediction per person: the thesis and gt-box protocols; crowd regions of their images
  stay as COCO's ignore regions) or every annotation of the evaluated images (detections:
  the standard COCO protocol).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hgpose.skeleton import JOINT_INDEX, JOINTS

COCO_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
TORSO = (JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_hip"])


def normalised_pck(
    pred: np.ndarray, gt: np.ndarray, normaliser: np.ndarray, alpha: float = 0.2
) -> dict:
    """PCK@alpha: a labelled joint is correct when |pred − gt| < alpha · normaliser.

    pred [N,J,2], gt [N,J,3] (x, y, v) in the same coordinates, normaliser [N] (> 0; people
    with a non-positive normaliser are left out). Per-image mean, then mean over images
    with at least one labelled joint (as the thesis PCK); also per joint over all people.
    """
    pred, gt, normaliser = np.asarray(pred, float), np.asarray(gt, float), np.asarray(normaliser, float)
    labelled = (gt[..., 2] > 0) & (normaliser[:, None] > 0)
    dist = np.linalg.norm(pred - gt[..., :2], axis=-1)
    correct = (dist < alpha * np.where(normaliser > 0, normaliser, 1)[:, None]) & labelled
    n = labelled.sum(1)
    valid = n > 0
    per_image = np.where(valid, correct.sum(1) / np.maximum(n, 1), np.nan)
    per_joint_n = labelled.sum(0)
    return {
        "mean": float(np.nanmean(per_image)) if valid.any() else float("nan"),
        "per_image": per_image,
        "per_joint": {
            JOINTS[j]: (float(correct[:, j].sum() / per_joint_n[j]) if per_joint_n[j] else None)
            for j in range(gt.shape[1])
        },
        "n_images": int(valid.sum()),
    }


def torso_size(gt: np.ndarray) -> np.ndarray:
    """|left shoulder − right hip| per person [N]; 0 where either joint is unlabelled."""
    a, b = gt[:, TORSO[0]], gt[:, TORSO[1]]
    both = (a[:, 2] > 0) & (b[:, 2] > 0)
    return np.where(both, np.linalg.norm(a[:, :2] - b[:, :2], axis=-1), 0.0)


def to_coco_results(coords: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> list[dict]:
    """COCO keypoint results: one entry per person (image_id, category_id 1, 51 values,
    score). The person score is the mean joint score, as the Newell/MSRA evaluations."""
    results = []
    for (image_id, _), xy, s in zip(np.asarray(ids), np.asarray(coords, float), np.asarray(scores, float)):
        kps = np.concatenate([xy, s[:, None]], axis=1)
        results.append({
            "image_id": int(image_id), "category_id": 1,
            "keypoints": [round(float(v), 3) for v in kps.ravel()],
            "score": round(float(s.mean()), 5),
        })
    return results


def split_ground_truth(coco: COCO, ann_ids, joints: np.ndarray | None = None) -> COCO:
    """A COCO object holding only the given person annotations (plus crowd regions of
    their images), so people of other splits do not count as misses.

    joints: bool [17], the joints scored; the others become unlabelled (OKS ignores them).
    """
    keep = {int(a) for a in ann_ids}
    image_ids = {coco.anns[a]["image_id"] for a in keep}
    anns = [a for a in coco.dataset["annotations"]
            if a["id"] in keep or (a.get("iscrowd", 0) and a["image_id"] in image_ids)]
    return _subset(coco, image_ids, anns, joints)


def images_ground_truth(coco: COCO, image_ids, joints: np.ndarray | None = None) -> COCO:
    """A COCO object holding the given images with every annotation on them: the standard
    COCO protocol for detected people (each annotated person must be found; people without
    keypoints and crowds are what COCOeval ignores).

    joints: bool [17], the joints scored; the others become unlabelled (OKS ignores them).
    """
    image_ids = {int(i) for i in image_ids}
    anns = [a for a in coco.dataset["annotations"] if a["image_id"] in image_ids]
    return _subset(coco, image_ids, anns, joints)


def _subset(coco: COCO, image_ids: set, anns: list[dict], joints: np.ndarray | None) -> COCO:
    if joints is not None and not np.all(joints):
        anns = [_only_joints(a, joints) for a in anns]
    gt = COCO()
    gt.dataset = {
        "images": [coco.imgs[i] for i in sorted(image_ids)],
        "annotations": anns,
        "categories": coco.dataset["categories"],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _only_joints(ann: dict, joints: np.ndarray) -> dict:
    """A copy of a person annotation whose joints outside `joints` are unlabelled."""
    if not ann.get("keypoints"):
        return ann
    kps = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
    kps[~np.asarray(joints, bool)] = 0
    return {**ann, "keypoints": kps.ravel().tolist(), "num_keypoints": int((kps[:, 2] > 0).sum())}


def coco_keypoint_ap(gt: COCO, results: list[dict], image_ids=None) -> dict:
    """OKS AP/AR by pycocotools' COCOeval (iouType 'keypoints').

    image_ids: the images evaluated (default: those with a result). Give them when an
    image may have no result at all (no detection on it): its people are then misses.
    """
    if not results:
        return {name: float("nan") for name in COCO_STATS}
    image_ids = sorted({r["image_id"] for r in results} if image_ids is None else {int(i) for i in image_ids})
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its own tables
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, "keypoints")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # COCOeval writes -1 for a statistic without ground truth (e.g. APl when no person is
    # large): not a score, so NaN here (null in metrics.json, "—" in tables).
    return {name: float(v) if v >= 0 else float("nan") for name, v in zip(COCO_STATS, evaluator.stats)}
