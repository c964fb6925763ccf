"""Evaluation protocols: gt-box crops from the annotated box alone, detections with rescoring
and OKS NMS, and what the user sees when a file or folder is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hgpose.codecs import GaussianCodec, ThesisCodec
from hgpose.data.crop import CropBox, box_centred_crop, cut_crop, cut_padded_crop, to_crop
from hgpose.data.prepare import prepare
from hgpose.data.store import Store
from hgpose.errors import HgposeError
from hgpose.evaluate import protocols
from hgpose.evaluate.evaluate import (
    Scoring, evaluate, load_annotations, score_detected_people, score_split_people,
)
from hgpose.evaluate.metrics import coco_keypoint_ap, images_ground_truth
from hgpose.inference.estimator import target_peak
from builders import make_run, write_lsp_folder

WIDTH, HEIGHT = 240, 180


# --- a small COCO root and its store ---------------------------------------------------------

def _person(ann_id: int, image_id: int, bbox, rng, *, crowd: int = 0, labelled: bool = True) -> dict:
    """A person whose labelled keypoints lie inside its box (v = 2, a few 1 and 0)."""
    x, y, w, h = bbox
    kps = np.zeros((17, 3))
    if labelled:
        kps[:, 0] = rng.uniform(x + 2, x + w - 2, 17)
        kps[:, 1] = rng.uniform(y + 2, y + h - 2, 17)
        kps[:, 2] = rng.choice([2, 2, 2, 1, 0], 17)
        kps[5, 2] = kps[12, 2] = 2  # the torso (left shoulder, right hip) for PCK@0.2 torso
        kps[kps[:, 2] == 0, :2] = 0
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": crowd,
            "bbox": [float(v) for v in bbox], "area": float(w * h * 0.6),
            "num_keypoints": int((kps[:, 2] > 0).sum()), "keypoints": kps.ravel().round(2).tolist()}


# Per image: the people's boxes. Image 3's first person touches the left border, so its
# square crop reaches outside the image.
BOXES = {1: [(20, 30, 60, 110), (120, 20, 70, 140)],
         2: [(30, 40, 90, 90)],
         3: [(0, 10, 50, 150), (100, 50, 60, 80), (170, 30, 50, 120)],
         4: [(60, 20, 80, 150)]}


def make_coco_root(root: Path, seed: int = 0) -> Path:
    """A COCO root whose val2017 has 4 images of 1-3 people (plus a crowd and a person
    without keypoints, which no protocol scores), and a train2017 to prepare from."""
    rng = np.random.default_rng(seed)
    person = {"id": 1, "name": "person", "supercategory": "person"}
    (root / "annotations").mkdir(parents=True)
    for part, first_id in (("train2017", 100), ("val2017", 1)):
        (root / part).mkdir()
        images, anns = [], []
        for k, boxes in BOXES.items():
            image_id = first_id + k - 1
            images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": WIDTH, "height": HEIGHT})
            cv2.imwrite(str(root / part / f"{image_id:012d}.jpg"), rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8))
            anns += [_person(image_id * 10 + j, image_id, box, rng) for j, box in enumerate(boxes)]
        anns.append(_person(first_id * 10 + 9, first_id, (150, 100, 40, 40), rng, crowd=1, labelled=False))
        anns.append(_person(first_id * 10 + 8, first_id + 1, (160, 100, 30, 30), rng, labelled=False))
        (root / "annotations" / f"person_keypoints_{part}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": [person]}))
    return root


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    root = make_coco_root(tmp_path_factory.mktemp("coco") / "coco")
    out = tmp_path_factory.mktemp("store") / "store"
    prepare(root, out, test_size=2, seed=0, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory) -> Path:
    """The small COCO root beside a small LSP folder, in one store."""
    rng = np.random.default_rng(1)
    joints = np.zeros((6, 14, 3))
    joints[..., 0] = rng.uniform(40, 160, (6, 14))
    joints[..., 1] = rng.uniform(30, 170, (6, 14))
    joints[..., 2] = 1
    images = [rng.integers(0, 255, (200, 200, 3), dtype=np.uint8) for _ in range(6)]
    base = tmp_path_factory.mktemp("mixed")
    lsp = write_lsp_folder(base / "lsp", joints, images)
    root = make_coco_root(base / "coco")
    out = base / "store"
    prepare([root, f"lsp:{lsp}"], out, test_size=0.5, val_size=1, workers=1, progress=False)
    return out


# --- a perfect "network": the ground truth encoded in each crop's coordinates ----------------

def perfect_crop_heatmaps(cocos: dict, codec):
    """Heatmaps of the annotated person a box belongs to (the one whose box centre is
    nearest), encoded in the coordinates of the crop evaluate cut: what a perfect network
    would return. Boxes and crops come from the protocol; keypoints only from here."""
    def heatmaps_of(crops, people, boxes):
        assert crops.dtype == np.uint8 and crops.shape[1:] == (256, 256, 3)
        maps = []
        for person, (x0, y0, side) in zip(people, boxes):
            kps = _nearest_annotation(cocos[person.source], person)
            maps.append(codec.encode(to_crop(kps, CropBox(int(x0), int(y0), int(side))))[0])
        return torch.from_numpy(np.stack(maps))
    return heatmaps_of


def _nearest_annotation(coco, person) -> np.ndarray:
    x, y, w, h = person.bbox
    anns = [a for a in coco.imgToAnns[person.image_id] if a.get("num_keypoints", 0) > 0]
    centre = lambda b: np.array([b[0] + b[2] / 2, b[1] + b[3] / 2])
    best = min(anns, key=lambda a: np.linalg.norm(centre(a["bbox"]) - centre((x, y, w, h))))
    return np.asarray(best["keypoints"], np.float64).reshape(17, 3)


def thesis_store_forward(split):
    """The store's crops "run" through a perfect network: their own thesis targets."""
    codec = ThesisCodec()
    return lambda crops, rows: (None, torch.from_numpy(codec.encode(np.asarray(split.keypoints[rows.numpy()]))[0]))


def scoring(store: Path, split_name: str, **options) -> tuple[Scoring, dict]:
    data = Store.open(store)
    split = data.split(split_name)
    files = data.annotation_files(split_name)
    cocos = {s: load_annotations(path) for s, path in files.items()}
    codec = GaussianCodec(refine="dark")  # sub-pixel decoding: OKS needs it for small people
    run = Scoring(split, cocos, codec, store_forward=thesis_store_forward(split),
                  crop_heatmaps=perfect_crop_heatmaps(cocos, codec), batch_size=3, **options)
    return run, data.image_folders(split_name)


# --- the crop rule --------------------------------------------------------------------------

def test_box_centred_crop_is_centred_on_the_box_with_a_quarter_more_than_its_longer_side():
    assert box_centred_crop((40, 20, 60, 100), 640, 480) == CropBox(8, 8, 125)      # centre (70, 70)
    assert box_centred_crop((10, 10, 200, 40), 640, 480) == CropBox(-15, -95, 250)   # past the border
    # a box sticking out of the image is clipped first: only its inside holds the person
    assert box_centred_crop((-100, 0, 200, 80), 640, 480) == box_centred_crop((0, 0, 100, 80), 640, 480)
    assert box_centred_crop((30, 30, 0, 0), 640, 480) == CropBox(30, 30, 1)          # COCO's zero-area boxes
    assert box_centred_crop((700, 10, 50, 50), 640, 480) is None                     # not in the image
    assert box_centred_crop((float("nan"), 10, 50, 50), 640, 480) is None


def test_cut_padded_crop_is_black_outside_the_image_and_cut_crop_inside():
    image = np.full((150, 150, 3), 200, np.uint8)
    crop = cut_padded_crop(image, CropBox(-50, -50, 200))   # the image is its lower-right 3/4
    assert (crop[:60, :60] == 0).all() and (crop[70:, 70:] == 200).all()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    inside = CropBox(20, 30, 200)
    np.testing.assert_array_equal(cut_padded_crop(image, inside), cut_crop(image, inside))


def test_oks_nms_drops_a_near_copy_and_keeps_other_people():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, (17, 2))
    b = a + 0.5                                   # the same person, boxed twice
    c = a + 40                                    # someone else
    keep = protocols.oks_nms(np.stack([a, b, c]), np.array([0.8, 0.9, 0.5]), np.full(3, 100.0 ** 2))
    assert keep == [1, 2]                         # the better-scoring copy survives
    # two people 40 px apart in a 10x10 px crop are far apart; in a huge crop they are one
    assert protocols.oks_nms(np.stack([a, c]), np.array([0.9, 0.8]), np.full(2, 1e7)) == [0]


def test_oks_sigmas_are_pycocotools_own():
    from pycocotools.cocoeval import Params

    np.testing.assert_allclose(protocols.OKS_SIGMAS, Params(iouType="keypoints").kpt_oks_sigmas, rtol=1e-12)


def test_rescoring_is_box_score_times_the_mean_of_the_confident_joints():
    scores = np.array([[0.9, 0.5, 0.1] + [0.0] * 14, [0.1] * 17])
    joints = np.ones(17, bool)
    np.testing.assert_allclose(protocols.rescore(scores, np.array([0.5, 0.9]), joints, 0.2), [0.5 * 0.7, 0.0])
    joints[0] = False                              # an unscored joint does not count
    np.testing.assert_allclose(protocols.rescore(scores, np.array([0.5, 0.9]), joints, 0.2), [0.25, 0.0])


# --- gt-box ---------------------------------------------------------------------------------

def test_ground_truth_heatmaps_give_ap_1_under_gt_box(small_store):
    run, folders = scoring(small_store, "val")
    metrics, rows, files = score_split_people(run, folders)
    results = files["keypoints_val_results.json"]
    assert metrics["coco"]["AP"] == pytest.approx(1.0) and metrics["coco"]["AR"] == pytest.approx(1.0)
    assert metrics["pck@0.2"] == {"bbox": 1.0, "torso": 1.0}
    assert metrics["pck_thesis"] == {"all": 1.0, "visible": 1.0, "limbs": 1.0}   # from the store's crops
    assert len(results) == len(rows) == metrics["n_images"] == 7
    assert metrics["skipped"] == {"images_unreadable": 0, "people_in_unreadable_images": 0,
                                  "boxes_outside_image": 0, "first_unreadable": None}
    # every crop is the box rule on the annotated box: no keypoint decided where it is
    coco = run.cocos[0]
    for row in rows:
        expected = box_centred_crop(coco.anns[row["ann_id"]]["bbox"], WIDTH, HEIGHT)
        assert (row["crop_x0"], row["crop_y0"], row["crop_side"]) == (expected.x0, expected.y0, expected.side)
    assert min(row["crop_x0"] for row in rows) < 0   # the border person's crop reaches outside


def test_ground_truth_heatmaps_give_ap_1_under_gt_box_on_real_coco(coco_sample_store):
    """The real sample: tiny people, greyscale images, people at the border. People whose
    labelled joints fall outside their gt-box crop are left out (a Gaussian target cannot
    hold them)."""
    run, folders = scoring(coco_sample_store, "val")
    split, coco = run.split, run.cocos[0]
    inside = []
    for (_, ann_id) in np.asarray(split.ids):
        ann = coco.anns[int(ann_id)]
        box = box_centred_crop(ann["bbox"], coco.imgs[ann["image_id"]]["width"], coco.imgs[ann["image_id"]]["height"])
        kps = to_crop(np.asarray(ann["keypoints"], float).reshape(17, 3), box)
        inside.append(((kps[..., :2] >= 0) & (kps[..., :2] < 252)).all(-1)[kps[:, 2] > 0].all())
    from test_evaluate import subset

    run.split = subset(split, np.array(inside))
    run.store_forward = thesis_store_forward(run.split)
    assert len(run.split) >= 30
    metrics, _, _ = score_split_people(run, folders)
    assert metrics["coco"]["AP"] == pytest.approx(1.0)
    assert metrics["pck@0.2"] == {"bbox": 1.0, "torso": 1.0}


def test_gt_box_per_source_with_lsp_boxes_from_the_keypoints(mixed_store):
    run, folders = scoring(mixed_store, "test", names=["coco", "lsp"])
    metrics, _, results = score_split_people(run, folders)
    assert set(metrics["by_source"]) == {"coco", "lsp"}
    for source in ("coco", "lsp"):
        assert metrics["by_source"][source]["coco"]["AP"] == pytest.approx(1.0)
        assert metrics["by_source"][source]["pck@0.2"]["bbox"] == 1.0
    assert sum(len(r) for r in results.values()) == len(run.split)
    assert set(results) == {"keypoints_test_coco_results.json", "keypoints_test_lsp_results.json"}


def test_an_unreadable_image_is_skipped_and_counted(small_store, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    manifest = json.loads((store / "manifest.json").read_text())
    root = tmp_path / "coco"
    shutil.copytree(manifest["sources"][0]["path"], root)
    manifest["sources"][0]["path"] = str(root)
    manifest["sources"][0]["annotations"] = {k: str(root / "annotations" / Path(v).name)
                                             for k, v in manifest["sources"][0]["annotations"].items()}
    (store / "manifest.json").write_text(json.dumps(manifest))
    (root / "val2017" / f"{3:012d}.jpg").write_bytes(b"not an image")   # image 3: three people

    run, folders = scoring(store, "val")
    metrics, rows, files = score_split_people(run, folders)
    results = files["keypoints_val_results.json"]
    assert metrics["skipped"]["images_unreadable"] == 1
    assert metrics["skipped"]["people_in_unreadable_images"] == 3
    assert "000000000003.jpg" in metrics["skipped"]["first_unreadable"]
    assert len(results) == 4 and metrics["pck@0.2_images"]["bbox"] == 4
    assert metrics["coco"]["AP"] == pytest.approx(1.0)    # the unread image is not evaluated
    assert [r["status"] for r in rows].count("image_unreadable") == 3

    # a missing source folder: one line saying where the manifest points and what to do
    shutil.rmtree(root / "val2017")
    with pytest.raises(HgposeError, match="records the images of source.*--protocol thesis") as e:
        Store.open(store).image_folders("val")
    assert "\n" not in str(e.value) and str(root / "val2017") in str(e.value)


# --- detections -----------------------------------------------------------------------------

def _detections(coco, *, missed: int, duplicated: int) -> list[dict]:
    """Ground-truth boxes of the people with keypoints as detections: one person missed,
    one boxed twice (the copy shifted 2 px and scoring highest), plus a box of another
    category and one with a low score."""
    people = sorted((a for a in coco.dataset["annotations"] if a["num_keypoints"] > 0), key=lambda a: a["id"])
    boxes = []
    for k, ann in enumerate(people):
        if ann["id"] == missed:
            continue
        boxes.append({"image_id": ann["image_id"], "category_id": 1, "bbox": ann["bbox"], "score": 0.8 - 0.01 * k})
        if ann["id"] == duplicated:
            x, y, w, h = ann["bbox"]
            boxes.append({"image_id": ann["image_id"], "category_id": 1, "bbox": [x + 2, y + 2, w, h], "score": 0.95})
    boxes.append({"image_id": people[0]["image_id"], "category_id": 3, "bbox": [1, 1, 50, 50], "score": 0.99})
    boxes.append({"image_id": people[0]["image_id"], "category_id": 1, "bbox": [150, 100, 60, 60], "score": 0.01})
    return boxes


def test_detections_miss_and_duplicate_score_as_pycocotools_says(small_store):
    run, folders = scoring(small_store, "val")
    coco = run.cocos[0]
    missed, duplicated = 20, 30          # image 2's only person; image 3's first (at the border)
    detections = _detections(coco, missed=missed, duplicated=duplicated)
    metrics, rows, results = score_detected_people(run, folders[0], detections, threshold=0.05)
    results = results["keypoints_val_results.json"]

    people = [a for a in coco.dataset["annotations"] if a["num_keypoints"] > 0]
    assert metrics["detections"]["boxes_above_threshold"] == len(people) - 1 + 1   # one missed, one copy
    assert metrics["detections"]["kept_after_nms"] == len(people) - 1              # OKS NMS took the copy
    assert {r["image_id"] for r in results} == {1, 3, 4}
    # What pycocotools says for the same people found perfectly, in the same order:
    image_ids = sorted(coco.imgs)
    gt = images_ground_truth(coco, image_ids)
    found = [_ann_of(coco, r) for r in results]
    assert sorted(a["id"] for a in found) == sorted(a["id"] for a in people if a["id"] != missed)
    expected = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": r["score"]}
                for a, r in zip(found, results)]
    reference = coco_keypoint_ap(gt, expected, image_ids=image_ids)
    assert metrics["coco"]["AP"] == pytest.approx(reference["AP"])
    # and by reasoning: 6 of 7 people found, no false positive -> precision 1 up to recall
    # 6/7; COCOeval averages precision over the 101 recall points 0, 0.01, ..., 1
    assert metrics["coco"]["AP"] == pytest.approx(sum(r <= 6 / 7 for r in np.linspace(0, 1, 101)) / 101)
    assert metrics["coco"]["AR"] == pytest.approx(6 / 7)
    # without OKS NMS the copy would be a false positive ranked first: a lower AP
    copy = dict(expected[0], score=1.0)
    assert coco_keypoint_ap(gt, expected + [copy], image_ids=image_ids)["AP"] < reference["AP"]
    # an image without any box still counts: its person is a miss
    assert [r for r in rows if r["image_id"] == 2] == [
        {"image_id": 2, "status": "evaluated", "people_annotated": 2, "people_with_keypoints": 1,
         "boxes": 0, "kept_after_nms": 0}]


def _ann_of(coco, result: dict) -> dict:
    """The annotated person a result's keypoints are (nearest in mean distance)."""
    kps = np.asarray(result["keypoints"]).reshape(17, 3)[:, :2]
    anns = [a for a in coco.imgToAnns[result["image_id"]] if a["num_keypoints"] > 0]

    def distance(ann):
        gt = np.asarray(ann["keypoints"], float).reshape(17, 3)
        labelled = gt[:, 2] > 0
        return np.linalg.norm(gt[labelled, :2] - kps[labelled], axis=-1).mean()
    return min(anns, key=distance)


def test_result_scores_are_rescored_box_scores(small_store):
    run, folders = scoring(small_store, "val")
    detections = _detections(run.cocos[0], missed=-1, duplicated=-1)
    _, _, results = score_detected_people(run, folders[0], detections, threshold=0.0)
    by_box = {}
    for d in detections:
        if d["category_id"] == 1:
            by_box.setdefault(d["image_id"], []).append(d["score"])
    peak = target_peak(run.codec)
    for r in results["keypoints_val_results.json"]:
        joint_scores = np.asarray(r["keypoints"]).reshape(17, 3)[:, 2]
        confident = joint_scores[joint_scores > 0.2 * peak]
        # the box score is one of its image's; the joint part is the mean of confident joints
        # (abs: the scores are rounded in the file)
        assert any(r["score"] == pytest.approx(s * confident.mean(), abs=1e-3) for s in by_box[r["image_id"]])


# --- files and the command line ------------------------------------------------------------

@pytest.mark.parametrize("content, field", [
    ("{not json", "not valid JSON"),
    ('{"image_id": 1}', "not a list"),
    ('[{"image_id": 1, "category_id": 1, "score": 0.9}]', "entry 0 has no 'bbox'"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 0.9}]', "entry 0 'bbox'"),
    ('[{"image_id": "1", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]', "entry 0 'image_id'"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": null}]', "entry 0 'score'"),
])
def test_a_bad_boxes_file_is_one_line_naming_file_and_field(tmp_path, content, field):
    path = tmp_path / "dets.json"
    path.write_text(content)
    with pytest.raises(HgposeError) as e:
        protocols.read_detections(path)
    assert str(path) in str(e.value) and field in str(e.value) and "\n" not in str(e.value)


def test_boxes_of_another_split_are_an_error(small_store, tmp_path):
    run, folders = scoring(small_store, "val")
    with pytest.raises(HgposeError, match="none of its 1 boxes"):
        score_detected_people(run, folders[0], [{"image_id": 999, "category_id": 1, "bbox": [1, 1, 9, 9],
                                                 "score": 1.0}], threshold=0.0)


def test_cli_protocol_errors_are_one_line(tmp_path, capsys):
    from hgpose import cli

    bad = tmp_path / "dets.json"
    bad.write_text('[{"image_id": 1, "category_id": 1, "score": 0.9}]')
    for argv, message in (
        (["--protocol", "detections"], "needs --boxes"),
        (["--boxes", str(bad)], "--boxes applies to --protocol detections only"),
        (["--box-score-threshold", "0.3"], "--box-score-threshold applies"),
        (["--protocol", "detections", "--boxes", str(bad)], "entry 0 has no 'bbox'"),
    ):
        assert cli.main(["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "data"), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_cli_records_and_prints_the_protocol(small_store, tmp_path, capsys):
    from hgpose import cli

    run = make_run(tmp_path / "run")
    coco = load_annotations(Store.open(small_store).annotation_files("val")[0])
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(_detections(coco, missed=20, duplicated=30)))
    extra = {"thesis": [], "gt-box": [], "detections": ["--boxes", str(boxes), "--box-score-threshold", "0.05"]}
    for protocol, options in extra.items():
        assert cli.main(["evaluate", str(run), "--data", str(small_store), "--split", "val",
                         "--protocol", protocol, *options, "--no-progress", "--batch-size", "4"]) == 0
        printed = capsys.readouterr().out
        out = run / "eval" / f"val-{protocol}-best"      # one folder per protocol
        saved = json.loads((out / "metrics.json").read_text())
        assert saved["protocol"] == protocol and saved["protocol_description"] == protocols.DESCRIPTIONS[protocol]
        assert f"# Evaluation, protocol {protocol}:" in printed and f"protocol {protocol}:" in (out / "metrics.md").read_text()
        assert (out / "keypoints_val_results.json").is_file() and (out / "per_image.csv").is_file()
    assert "COCO AP (OKS, thesis crops)" in cli_table(run, "thesis")
    assert "COCO AP (OKS, GT boxes)" in cli_table(run, "gt-box")
    assert "thesis PCK on the thesis crops" in cli_table(run, "gt-box")
    table = cli_table(run, "detections")
    assert "COCO AP (OKS, detected boxes)" in table and "thesis PCK" not in table and "PCK@0.2" not in table
    detections = json.loads((run / "eval" / "val-detections-best" / "metrics.json").read_text())
    assert detections["pck_thesis"] is None and detections["pck@0.2"] is None
    assert detections["detections"]["boxes_above_threshold"] == 7       # 6 people and a copy
    assert detections["detections"]["box_score_threshold"] == 0.05


def cli_table(run: Path, protocol: str) -> str:
    return (run / "eval" / f"val-{protocol}-best" / "metrics.md").read_text()


def test_evaluate_api_defaults_to_gt_box(small_store, tmp_path):
    run = make_run(tmp_path / "run")
    m = evaluate(run, small_store, split="val", batch_size=8, progress=False, out_dir=tmp_path / "ev")
    assert m["protocol"] == "gt-box" and m["skipped"]["images_unreadable"] == 0


def test_evaluate_reads_the_stores_manifest_once(mixed_store, tmp_path, manifest_reads):
    """The split, its annotation files, the image folders, the source names and the
    pixel-convention note all come from one reading of manifest.json (two sources here)."""
    run = make_run(tmp_path / "run")
    m = evaluate(run, mixed_store, split="test", batch_size=8, progress=False, out_dir=tmp_path / "ev")
    assert m["protocol"] == "gt-box" and set(m["by_source"]) == {"coco", "lsp"}
    assert manifest_reads == [str(mixed_store / "manifest.json")]
