"""Error diagnosis (Ronchi & Perona 2017, hgpose/evaluate/errors.py): each predicted keypoint
is good, jitter, inversion, swap or miss by its keypoint similarity, on hand-built people whose
answer is known; COCO AP with an error type corrected; and what evaluate writes."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from hgpose.evaluate import errors
from hgpose.evaluate.metrics import coco_keypoint_ap
from hgpose.skeleton import FLIP_INDEX, JOINT_INDEX, NUM_JOINTS, OKS_SIGMAS

LW, RW = JOINT_INDEX["left_wrist"], JOINT_INDEX["right_wrist"]
AREA = 120.0 * 200.0
# The spread of a joint's ks in image pixels: ks = exp(-d² / (2 s² k²)), s² = area, k = 2σ.
SPREAD = np.sqrt(AREA) * 2 * np.asarray(OKS_SIGMAS)


def person(x0: float, y0: float = 20.0, rng=None) -> np.ndarray:
    """[17, 3] keypoints of a 120 x 200 person at (x0, y0), every joint labelled: left joints
    on the right of the picture, 50 px from their right counterparts (far beyond their spread)."""
    rng = rng or np.random.default_rng(int(x0))
    kps = np.zeros((NUM_JOINTS, 3))
    kps[:, 0] = x0 + 35 + rng.uniform(-5, 5, NUM_JOINTS)
    kps[:, 1] = y0 + np.linspace(10, 190, NUM_JOINTS)
    for j in range(NUM_JOINTS):
        if FLIP_INDEX[j] != j:
            kps[j, 0] += 50 if "left" in errors.JOINTS[j] else 0
    kps[:, 2] = 2
    return kps


def ground_truth(people: dict[int, list[np.ndarray]]) -> COCO:
    """A COCO object: image id -> its people's keypoints; annotation ids image * 10 + k."""
    anns = [{"id": image * 10 + k, "image_id": image, "category_id": 1, "iscrowd": 0, "area": AREA,
             "bbox": [float(kps[:, 0].min()), float(kps[:, 1].min()), 120.0, 200.0],
             "num_keypoints": int((kps[:, 2] > 0).sum()), "keypoints": kps.ravel().tolist()}
            for image, kpss in people.items() for k, kps in enumerate(kpss)]
    coco = COCO()
    coco.dataset = {"images": [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in people],
                    "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def result(image_id: int, xy: np.ndarray, score: float = 0.9) -> dict:
    kps = np.concatenate([xy, np.ones((NUM_JOINTS, 1))], 1)
    return {"image_id": image_id, "category_id": 1, "keypoints": kps.ravel().tolist(), "score": score}


def moved(xy: np.ndarray, joint: int, ks: float) -> np.ndarray:
    """xy with `joint` moved right by the distance at which its ks is `ks`."""
    out = xy.copy()
    out[joint, 0] += SPREAD[joint] * np.sqrt(-2 * np.log(ks))
    return out


def joint_classes(diagnosis: dict, joint: int) -> dict:
    return diagnosis["per_joint"][errors.JOINTS[joint]]["counts"]


def diagnose_one(gt: COCO, image: int, ann: int, xy: np.ndarray, **options) -> dict:
    return errors.diagnose(gt, [result(image, xy)], [image], own=[ann], **options)


# --- one keypoint, one class ---------------------------------------------------------------------

def test_an_exact_keypoint_is_good_and_one_off_by_a_fraction_of_its_sigma_is_jitter():
    alone = person(100)
    gt = ground_truth({1: [alone]})
    exact = diagnose_one(gt, 1, 10, alone[:, :2])
    assert exact["counts"] == {"good": 17, "jitter": 0, "inversion": 0, "swap": 0, "miss": 0}
    assert exact["shares"]["good"] == 1.0 and exact["keypoints"] == 17
    # 0.3 and 0.8 of the joint's spread away: ks = exp(-0.045) = 0.96 (good), exp(-0.32) = 0.73
    near = alone[:, :2].copy()
    near[LW, 0] += 0.3 * SPREAD[LW]
    near[RW, 0] += 0.8 * SPREAD[RW]
    found = diagnose_one(gt, 1, 10, near)
    assert joint_classes(found, LW)["good"] == 1 and joint_classes(found, RW)["jitter"] == 1
    assert found["counts"]["good"] == 16 and found["counts"]["jitter"] == 1
    # just either side of the good/jitter boundary, ks 0.85
    edge = diagnose_one(gt, 1, 10, moved(moved(alone[:, :2], LW, 0.86), RW, 0.84))
    assert joint_classes(edge, LW)["good"] == 1 and joint_classes(edge, RW)["jitter"] == 1


def test_a_left_right_swapped_pair_is_an_inversion_and_a_far_keypoint_a_miss():
    alone = person(100)
    gt = ground_truth({1: [alone]})
    xy = alone[:, :2].copy()
    xy[[LW, RW]] = xy[[RW, LW]]
    ankle = JOINT_INDEX["left_ankle"]
    xy[ankle] += (300, 0)                                       # nowhere near anybody
    found = diagnose_one(gt, 1, 10, xy)
    assert joint_classes(found, LW)["inversion"] == 1 and joint_classes(found, RW)["inversion"] == 1
    assert joint_classes(found, ankle)["miss"] == 1
    assert found["counts"] == {"good": 14, "jitter": 0, "inversion": 2, "swap": 0, "miss": 1}
    # the nose has no counterpart: on nobody's joint it is a miss, never an inversion
    xy = alone[:, :2].copy()
    xy[JOINT_INDEX["nose"]] = alone[JOINT_INDEX["left_eye"], :2] + (0, 60)
    assert joint_classes(diagnose_one(gt, 1, 10, xy), JOINT_INDEX["nose"])["miss"] == 1


def test_a_joint_on_the_neighbours_wrist_is_a_swap():
    mine, neighbour = person(100), person(240)
    gt = ground_truth({1: [mine, neighbour], 2: [person(100)]})
    xy = mine[:, :2].copy()
    xy[LW] = neighbour[LW, :2] + 0.5 * SPREAD[LW]               # ks 0.88 against the neighbour's
    xy[RW] = neighbour[LW, :2]                                   # the neighbour's counterpart
    found = diagnose_one(gt, 1, 10, xy)
    assert joint_classes(found, LW)["swap"] == 1 and joint_classes(found, RW)["swap"] == 1
    # the same point with the neighbour in another image is nobody's: a miss
    alone = diagnose_one(gt, 2, 20, xy)
    assert joint_classes(alone, LW)["miss"] == 1 and joint_classes(alone, RW)["miss"] == 1


def test_own_joint_comes_before_the_counterpart_and_the_counterpart_before_other_people():
    mine = person(100)
    neighbour = mine.copy()
    neighbour[:, 0] += 3                                         # standing almost where I stand
    gt = ground_truth({1: [mine, neighbour]})
    xy = moved(mine[:, :2], LW, 0.6)                             # jitter for me, nearer the neighbour's
    xy[RW] = mine[LW, :2]                                        # my counterpart, and nearly his too
    found = diagnose_one(gt, 1, 10, xy)
    assert joint_classes(found, LW)["jitter"] == 1 and joint_classes(found, RW)["inversion"] == 1


# --- scope ---------------------------------------------------------------------------------------

def test_absent_unlabelled_and_unscored_joints_are_excluded():
    lsp_like = person(100)
    lsp_like[:5] = 0                                             # no face: LSP has none
    lsp_like[JOINT_INDEX["left_knee"], 2] = 0                    # one joint not labelled
    gt = ground_truth({1: [lsp_like]})
    xy = person(100)[:, :2] + 400                                # every prediction a miss
    body = np.arange(NUM_JOINTS) >= 5
    body[JOINT_INDEX["right_ankle"]] = False                     # one joint not scored
    found = diagnose_one(gt, 1, 10, xy, joints=body)
    assert found["keypoints"] == found["counts"]["miss"] == 10
    assert set(found["per_joint"]) == {errors.JOINTS[j] for j in range(5, 17)} - {"left_knee", "right_ankle"}
    assert all(block["keypoints"] == 1 for block in found["per_joint"].values())


def test_detections_are_paired_with_people_as_cocoeval_pairs_them():
    a, b = person(100), person(240)
    gt = ground_truth({1: [a, b]})
    on_b = moved(b[:, :2], LW, 0.7)
    results = [result(1, on_b, 0.9), result(1, a[:, :2], 0.8), result(1, a[:, :2] + 500, 0.7)]
    found = errors.diagnose(gt, results, [1])
    assert found["pairing"] == "COCOeval at OKS 0.1"
    assert found["predictions"] == 3 and found["predictions_paired"] == 2   # the far one is nobody's
    assert found["counts"] == {"good": 33, "jitter": 1, "inversion": 0, "swap": 0, "miss": 0}
    np.testing.assert_array_equal(errors.coco_matches(gt, results, [1]), [11, 10, -1])


# --- corrected AP --------------------------------------------------------------------------------

def test_ap_with_inversions_corrected_is_the_ap_of_the_fixed_predictions():
    """Each person has its wrists (or ankles) exchanged, each a little off: correcting the
    inversions puts them on their own joints at the same distance, which is the fixed set."""
    rng = np.random.default_rng(3)
    people = {image: [person(60 + 150 * k, rng=rng) for k in range(2)] for image in range(1, 6)}
    for kps in (kps for kpss in people.values() for kps in kpss):
        kps[[0, 1, 2, 3, 4, 11, 12, 13, 14]] = 0       # 8 labelled joints: an OKS well below 1 when off
    gt = ground_truth(people)
    inverted, fixed, own = [], [], []
    for image, kpss in people.items():
        for k, kps in enumerate(kpss):
            left, right = (LW, RW) if (image + k) % 2 else (JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"])
            offset = rng.uniform(0.2, 1.0) * SPREAD[left] * np.array([0.6, 0.8])
            good, bad = kps[:, :2].copy(), kps[:, :2].copy()
            bad[[left, right]] = kps[[right, left], :2] + offset
            good[[left, right]] += offset
            inverted.append(result(image, bad, rng.uniform(0.5, 1.0)))
            fixed.append({**inverted[-1], "keypoints": result(image, good)["keypoints"]})
            own.append(image * 10 + k)
    images = list(people)
    fixed_ap = coco_keypoint_ap(gt, fixed, image_ids=images)["AP"]
    found = errors.diagnose(gt, inverted, images, own=own)
    assert found["counts"]["inversion"] == 20 and found["counts"]["good"] == 60
    ap = found["ap"]
    assert ap["baseline"]["AP"] < fixed_ap < 1.0
    assert ap["corrected"]["inversion"]["AP"] == pytest.approx(fixed_ap, abs=1e-9)
    assert ap["gain"]["inversion"] == pytest.approx(fixed_ap - ap["baseline"]["AP"])
    for kind in ("jitter", "swap", "miss"):                      # nothing of that kind: no change
        assert ap["corrected"][kind] == ap["baseline"] and ap["gain"][kind] == 0


def test_re_evaluating_only_the_moved_images_gives_cocoevals_own_ap():
    """CorrectedAp reuses the matches of images whose results did not move: the same AP as a
    full COCOeval of the moved results, whichever images move."""
    rng = np.random.default_rng(5)
    people = {image: [person(60 + 150 * k, rng=rng) for k in range(1 + image % 3)] for image in range(1, 13)}
    gt = ground_truth(people)
    results = [result(image, kps[:, :2] + rng.normal(0, 8, (NUM_JOINTS, 2)), rng.uniform(0.1, 1))
               for image, kpss in people.items() for kps in kpss]
    results.append(result(3, people[3][0][:, :2] + 4, 0.95))          # a duplicate: a false positive
    images = list(people) + [99]                                         # an image nobody is on
    ap = errors.CorrectedAp(gt, results, images)
    assert ap.baseline == pytest.approx({k: v for k, v in coco_keypoint_ap(gt, results, image_ids=images).items()
                                         if k in errors.AP_STATS})
    for moved_rows in ([0], [1, 2, 7], list(range(len(results)))):
        rows = np.array(moved_rows)
        points = np.array([results[r]["keypoints"] for r in rows]).reshape(-1, NUM_JOINTS, 3)[..., :2]
        points = points + rng.normal(0, 10, points.shape)
        full = [dict(r) for r in results]
        for r, xy in zip(rows, points):
            full[r]["keypoints"] = np.concatenate([xy, np.ones((NUM_JOINTS, 1))], 1).ravel().tolist()
        expected = coco_keypoint_ap(gt, full, image_ids=images)
        assert ap(rows, points) == pytest.approx({k: expected[k] for k in errors.AP_STATS}, abs=1e-12)
    assert ap(np.array([0]), np.array(results[0]["keypoints"]).reshape(NUM_JOINTS, 3)[None, :, :2]) == ap.baseline


def test_corrections_reach_the_paper_targets():
    """A jitter is moved to ks 0.85, a miss to ks 0.5, a swap onto its own joint at the ks it
    had against the other person's."""
    own = person(100)[None]
    xy = moved(own[0, :, :2], LW, 0.6)
    xy[RW] += (400, 0)
    xy[0] += (0, 300)
    codes = np.full((1, NUM_JOINTS), errors.GOOD)
    codes[0, LW], codes[0, RW], codes[0, 0] = errors.JITTER, errors.MISS, errors.SWAP
    swapped = np.zeros((1, NUM_JOINTS))
    swapped[0, 0] = 0.7
    points = errors.corrected_points(xy[None], own, np.array([AREA]), codes, np.zeros((1, NUM_JOINTS)), swapped)
    ks = {kind: errors.keypoint_similarity(points[kind], own[..., :2], np.array([AREA]))[0] for kind in points}
    assert ks["jitter"][LW] == pytest.approx(0.85) and ks["miss"][RW] == pytest.approx(0.5)
    assert ks["swap"][0] == pytest.approx(0.7)
    np.testing.assert_array_equal(points["jitter"][0, RW], xy[RW])   # each type moves its own kind only
    np.testing.assert_array_equal(points["miss"][0, 5:9], xy[5:9])    # good keypoints stay


# --- what evaluate writes ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The smallest evaluate setup of the protocol tests: 4 images of 1-3 people, an untrained
    8-feature network."""
    from builders import make_run
    from hgpose.data.prepare import prepare
    from test_protocols import make_coco_root

    base = tmp_path_factory.mktemp("diagnosis")
    root = make_coco_root(base / "coco")
    prepare(root, base / "store", test_size=2, seed=0, workers=1, progress=False)
    return make_run(base / "run", checkpoints=("last",)), base / "store", root


@pytest.mark.parametrize("protocol", ["thesis", "gt-box", "detections"])
def test_evaluate_writes_the_diagnosis_and_its_figure(small_run, tmp_path, protocol):
    from hgpose.evaluate.evaluate import evaluate

    run, store, root = small_run
    options = {}
    if protocol == "detections":
        anns = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())["annotations"]
        boxes = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
                 for a in anns if a["num_keypoints"] > 0]
        (tmp_path / "boxes.json").write_text(json.dumps(boxes))
        options = {"boxes": tmp_path / "boxes.json"}
    out = tmp_path / "out"
    evaluate(run, store, split="val", protocol=protocol, out_dir=out, device="cpu", batch_size=4,
             progress=False, **options)
    saved = json.loads((out / "metrics.json").read_text())["errors"]
    assert saved["keypoints"] == sum(saved["counts"].values())
    # an untrained network's detections are near nobody (OKS < 0.1): paired with no person
    assert saved["keypoints"] > 0 or protocol == "detections"
    assert saved["predictions_paired"] <= saved["predictions"] == len(
        json.loads((out / "keypoints_val_results.json").read_text()))
    if saved["keypoints"]:
        assert sum(saved["shares"].values()) == pytest.approx(1.0)
    for kind in errors.CLASSES:
        assert sum(j["counts"][kind] for j in saved["per_joint"].values()) == saved["counts"][kind]
    assert saved["ap"]["baseline"]["AP"] == pytest.approx(json.loads((out / "metrics.json").read_text())["coco"]["AP"])
    assert set(saved["ap"]["corrected"]) == set(errors.ERROR_TYPES)
    assert saved["pairing"] == ("COCOeval at OKS 0.1" if protocol == "detections" else "own person")
    assert (out / "errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| error diagnosis" in (out / "metrics.md").read_text()
    if protocol == "gt-box":   # the folder is evaluate's own: a second call into it replaces the set
        (out / "errors.png").write_bytes(b"old")
        evaluate(run, store, split="val", protocol=protocol, out_dir=out, device="cpu", batch_size=4,
                 progress=False)
        assert (out / "errors.png").read_bytes()[:4] == b"\x89PNG"
