"""Standard metrics: PCK@0.2 (bbox, torso) and COCO OKS AP through pycocotools."""

from __future__ import annotations

import numpy as np
import pytest

from hgpose.data.formats.coco import annotation_path, load_coco
from hgpose.evaluate.metrics import (
    coco_keypoint_ap, images_ground_truth, normalised_pck, split_ground_truth, to_coco_results, torso_size,
)


def test_normalised_pck_known_shifts():
    gt = np.zeros((2, 17, 3))
    gt[:, :, :2] = 100
    gt[:, :, 2] = 2
    gt[1, 10:, 2] = 0                     # person 2: 10 labelled joints
    pred = gt[..., :2].copy()
    pred[0, :4, 0] += 25                  # 4 of 17 wrong for person 1 (25 >= 0.2*100)
    pred[1, :5, 0] += 19                  # within 20 px: still right
    pred[1, 5, 0] += 21                   # 1 of 10 wrong
    out = normalised_pck(pred, gt, normaliser=np.array([100.0, 100.0]))
    assert out["mean"] == pytest.approx(((13 / 17) + (9 / 10)) / 2)
    assert out["per_joint"]["nose"] == 0.5 and out["per_joint"]["left_ankle"] == 1.0
    gt[1, :, 2] = 0                       # a person with nothing labelled is left out
    assert normalised_pck(pred, gt, np.array([100.0, 100.0]))["mean"] == pytest.approx(13 / 17)


def test_torso_size_needs_both_joints():
    gt = np.zeros((2, 17, 3))
    gt[:, 5] = (0, 0, 2)
    gt[:, 12] = (30, 40, 1)
    gt[1, 12, 2] = 0
    assert torso_size(gt).tolist() == [50.0, 0.0]


def test_ground_truth_as_results_gives_ap_1_on_real_annotations(coco_sample):
    coco = load_coco(annotation_path(coco_sample, "val2017"))
    people = [a for a in coco.dataset["annotations"] if not a.get("iscrowd") and a["num_keypoints"] > 0]
    ids = np.array([(a["image_id"], a["id"]) for a in people])
    kps = np.array([a["keypoints"] for a in people], float).reshape(-1, 17, 3)
    gt = split_ground_truth(coco, ids[:, 1])
    results = to_coco_results(kps[..., :2], np.ones((len(people), 17)), ids)
    stats = coco_keypoint_ap(gt, results)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    # every joint 40 px off: far worse, and pycocotools (not we) says how much
    shifted = to_coco_results(kps[..., :2] + 40, np.ones((len(people), 17)), ids)
    assert coco_keypoint_ap(gt, shifted)["AP"] < 0.5


def test_an_image_without_a_result_counts_its_people_as_misses(coco_sample):
    """The detections protocol: every annotated person of the evaluated images is ground
    truth, found or not."""
    coco = load_coco(annotation_path(coco_sample, "val2017"))
    people = [a for a in coco.dataset["annotations"] if not a.get("iscrowd") and a["num_keypoints"] > 0]
    image_ids = sorted({a["image_id"] for a in people})
    gt = images_ground_truth(coco, image_ids)
    assert len(gt.anns) == sum(len(coco.imgToAnns[i]) for i in image_ids)   # all of them, crowds too
    skipped = image_ids[0]
    found = [a for a in people if a["image_id"] != skipped]
    ids = np.array([(a["image_id"], a["id"]) for a in found])
    results = to_coco_results(np.array([a["keypoints"] for a in found], float).reshape(-1, 17, 3)[..., :2],
                              np.ones((len(found), 17)), ids)
    stats = coco_keypoint_ap(gt, results, image_ids=image_ids)
    assert stats["AR"] == pytest.approx(len(found) / len(people))
    # evaluated only where there are results, the skipped image's people do not count
    assert coco_keypoint_ap(gt, results)["AR"] == pytest.approx(1.0)
