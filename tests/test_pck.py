"""The thesis PCK (SPEC §5): argmax on the 64x64 grid, threshold 3.2 px, per-image mean."""

import math

import numpy as np
import pytest
import torch

from hgpose.codecs import argmax_2d
from hgpose.evaluate.pck import THRESHOLD, PCKAccumulator, thesis_pck
from hgpose.skeleton import LIMB_JOINTS

J = 17


def maps_at(xy: np.ndarray, labelled: np.ndarray | None = None) -> torch.Tensor:
    """Heatmaps [B,J,64,64] with one positive pixel at each (x, y); all-zero where unlabelled."""
    b = xy.shape[0]
    maps = torch.zeros(b, J, 64, 64)
    for i in range(b):
        for j in range(J):
            if labelled is None or labelled[i, j]:
                x, y = xy[i, j]
                maps[i, j, y, x] = 0.6
    return maps


def grid_positions(b: int, seed: int = 0) -> np.ndarray:
    # Stay 10 px from the border so shifted copies remain on the grid.
    return np.random.default_rng(seed).integers(10, 54, size=(b, J, 2))


def test_argmax_2d_returns_x_then_y():
    m = torch.zeros(1, 1, 64, 64)
    m[0, 0, 5, 40] = 1.0  # row 5 (y), column 40 (x)
    assert argmax_2d(m).tolist() == [[[40, 5]]]


def test_ground_truth_as_prediction_scores_one():
    xy = grid_positions(4)
    gt = maps_at(xy)
    vis = torch.full((4, J), 2)
    acc = PCKAccumulator()
    acc.update(gt.clone(), gt, vis)
    s = acc.summary()
    assert s["pck"] == s["pck_visible"] == s["pck_limbs"] == 1.0
    assert s["images"] == 4


@pytest.mark.parametrize(
    "shift, correct",
    [((3, 0), True), ((0, -3), True), ((3, 1), True),   # 3.0, 3.0, 3.16 < 3.2
     ((2, 3), False), ((4, 0), False), ((3, 2), False)],  # 3.61, 4.0, 3.61
)
def test_threshold_is_strictly_below_3_2_heatmap_px(shift, correct):
    xy = grid_positions(1)
    pred = maps_at(xy + np.array(shift))
    values, valid = thesis_pck(pred, maps_at(xy), torch.full((1, J), 2))["all"]
    assert math.hypot(*shift) < THRESHOLD if correct else math.hypot(*shift) >= THRESHOLD
    assert valid.item() and values.item() == (1.0 if correct else 0.0)


def test_known_shifts_give_known_per_image_pck_and_mean_over_images():
    xy = grid_positions(2)
    pred_xy = xy.copy()
    pred_xy[0, :5] += 5       # image 0: 12 of 17 correct
    labelled = np.ones((2, J), bool)
    labelled[1, 4:] = False   # image 1: only 4 labelled joints ...
    pred_xy[1, 0] += 6        # ... of which 3 correct
    acc = PCKAccumulator()
    acc.update(maps_at(pred_xy), maps_at(xy, labelled), torch.full((2, J), 2))
    per_image = acc.per_image()["all"]
    np.testing.assert_allclose(per_image, [12 / 17, 3 / 4], rtol=1e-6)
    # Mean of per-image values, not pooled over joints (which would be 15/21).
    assert acc.summary()["pck"] == pytest.approx((12 / 17 + 3 / 4) / 2)


def test_unlabelled_joint_with_wrong_prediction_does_not_count():
    xy = grid_positions(1)
    labelled = np.ones((1, J), bool)
    labelled[0, 3] = False
    pred_xy = xy.copy()
    pred_xy[0, 3] += 20
    values, _ = thesis_pck(maps_at(pred_xy), maps_at(xy, labelled), torch.full((1, J), 2))["all"]
    assert values.item() == 1.0


def test_images_without_counted_joints_are_excluded_per_summary():
    xy = grid_positions(3)
    labelled = np.ones((3, J), bool)
    labelled[2] = False                        # image 2: nothing labelled
    vis = torch.full((3, J), 2)
    vis[1] = 1                                 # image 1: labelled, none visible
    pred_xy = xy.copy()
    pred_xy[1] += 10                           # image 1 entirely wrong
    acc = PCKAccumulator()
    acc.update(maps_at(pred_xy), maps_at(xy, labelled), vis)
    s = acc.summary()
    assert s["images"] == 2
    assert s["pck"] == pytest.approx(0.5)      # images 0 (1.0) and 1 (0.0)
    assert s["pck_visible"] == pytest.approx(1.0)  # only image 0 has visible joints
    per_image = acc.per_image()
    assert np.isnan(per_image["all"][2]) and np.isnan(per_image["visible"][1])


def test_limbs_only_counts_wrists_elbows_knees_ankles():
    xy = grid_positions(1)
    pred_xy = xy.copy()
    others = [j for j in range(J) if j not in LIMB_JOINTS]
    pred_xy[0, others] += 10                   # every non-limb joint wrong
    pred_xy[0, LIMB_JOINTS[0]] += 10           # and one of the 8 limb joints
    s = thesis_pck(maps_at(pred_xy), maps_at(xy), torch.full((1, J), 2))
    assert len(LIMB_JOINTS) == 8
    assert s["limbs"][0].item() == pytest.approx(7 / 8)
    assert s["all"][0].item() == pytest.approx(7 / 17)


def test_accumulates_across_batches_like_one_batch():
    xy = grid_positions(6, seed=1)
    pred_xy = xy + np.random.default_rng(2).integers(-4, 5, size=xy.shape)
    labelled = np.random.default_rng(3).random((6, J)) > 0.3
    vis = torch.from_numpy(np.random.default_rng(4).integers(1, 3, size=(6, J)))
    pred, gt = maps_at(pred_xy), maps_at(xy, labelled)
    whole, parts = PCKAccumulator(), PCKAccumulator()
    whole.update(pred, gt, vis)
    for sl in (slice(0, 2), slice(2, 3), slice(3, 6)):
        parts.update(pred[sl], gt[sl], vis[sl])
    assert whole.summary() == pytest.approx(parts.summary(), nan_ok=True)
    for name in ("all", "visible", "limbs"):
        np.testing.assert_array_equal(whole.per_image()[name], parts.per_image()[name])
