"""`hgpose predict` on several people: boxes files (three formats), every box of an image
estimated and drawn, one results file per call, the whole image padded to a square without
boxes (and a warning), one box enlargement with evaluate, the heatmap picture's colour scale,
`Estimator.predict_people`, and `--examples`.

Where positions matter, the network is `MarkedJoints`: it knows where a person's joints are
because they are painted on the real photo in 17 colours the photo does not hold, and its
heatmaps are where each colour is. Its predictions then land within half a heatmap cell of
the truth (the thesis codec decodes to a cell's centre), which is what the tests state.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hgpose
from builders import make_run
from hgpose import examples
from hgpose.cli import main
from hgpose.codecs import ThesisCodec
from hgpose.data.crop import BOX_PADDING, CropBox, box_centred_crop
from hgpose.errors import HgposeError
from hgpose.inference import Estimator
from hgpose.inference.estimator import PEOPLE_BATCH, box_crop, whole_image_crop
from hgpose.predict import ONE_PERSON_WARNING, PICTURE_MAX_SIDE, predict_images
from hgpose.predict_boxes import boxes_per_image, read_boxes

# 17 colours at least 40 levels (RGB distance) from every pixel of the example photos and
# from black (the padding): drawn by a seeded draw, checked again by `assert_unmarked`.
COLOURS = [(143, 239, 71), (220, 5, 138), (98, 117, 255), (227, 18, 239), (84, 227, 67), (38, 220, 115),
           (59, 196, 13), (76, 230, 172), (158, 89, 254), (154, 242, 4), (135, 58, 201), (248, 94, 227),
           (128, 7, 237), (32, 9, 221), (2, 79, 251), (208, 133, 255), (142, 6, 164)]
MEAN_RGB = [0.41, 0.374, 0.354]
EXAMPLE = "000000252219.jpg"
PERSON = 481918          # its second box: all 17 joints labelled in COCO val2017


class MarkedJoints(nn.Module):
    """A pose network that finds joint j where its colour is painted: heatmap j is the
    similarity of each pixel to COLOURS[j] (Gaussian in RGB, sigma 8 levels), averaged over
    each heatmap cell's 4x4 crop pixels."""

    def __init__(self):
        super().__init__()
        self.register_buffer("colours", torch.tensor(COLOURS, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x + self.mean) * 255                                   # undo the input normalisation
        distance2 = ((rgb[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(2)
        return F.avg_pool2d(torch.exp(-distance2 / (2 * 8.0 ** 2)), 4).unsqueeze(1)   # [B, 1, 17, 64, 64]


@pytest.fixture(scope="module")
def oracle() -> Estimator:
    return Estimator(MarkedJoints(), ThesisCodec(), MEAN_RGB, "cpu", precision="fp32", engine="torch")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "run", checkpoints=("last",))


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def example(name: str = EXAMPLE) -> Path:
    return next(p for p in examples.images() if p.name == name)


def assert_unmarked(image: np.ndarray) -> None:
    """The oracle's premise: no pixel of the unpainted image is near a marker colour."""
    pixels = np.unique(image.reshape(-1, 3), axis=0).astype(np.float32)
    for colour in COLOURS:
        assert np.sqrt(((pixels - colour) ** 2).sum(1)).min() >= 40, colour


def paint(image: np.ndarray, keypoints: np.ndarray, radius: int) -> np.ndarray:
    painted = image.copy()
    for j, (x, y) in enumerate(keypoints[:, :2]):
        cv2.circle(painted, (round(x), round(y)), radius, COLOURS[j], -1)
    return painted


def half_cell_diagonal(side: int) -> float:
    """The thesis codec's resolution in image pixels: half a heatmap cell's diagonal (a cell
    is 4 crop pixels; a crop of `side` image pixels is 256 crop pixels)."""
    return 2 * math.sqrt(2) * side / 256


def ground_truth(coco_sample: Path) -> np.ndarray:
    annotations = json.loads((coco_sample / "annotations" / "person_keypoints_val2017.json").read_text())
    ann = next(a for a in annotations["annotations"] if a["id"] == PERSON)
    return np.array(ann["keypoints"], np.float64).reshape(17, 3)


def predict_cli(run: Path, *args) -> int:
    return main(["predict", str(run), *map(str, args), "--device", "cpu", "--precision", "fp32"])


def err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


# --- values on real pixels ---------------------------------------------------------------------

def test_a_person_of_the_examples_lands_on_its_joints_with_its_box(oracle, coco_sample, tmp_path):
    """Person 2 of the shipped photo 252219, predicted with every box of that photo from a
    COCO detection results file: its 17 joints within half a heatmap cell (2.7 px) of COCO's
    labels. Measured: at most 2.06 px, mean 1.6 px."""
    image = rgb(example())
    assert_unmarked(image)
    truth = ground_truth(coco_sample)
    assert (truth[:, 2] > 0).all()
    path = tmp_path / "in" / "000000252219.png"                      # PNG: the colours stay exact
    path.parent.mkdir()
    cv2.imwrite(str(path), cv2.cvtColor(paint(image, truth, 3), cv2.COLOR_RGB2BGR))
    boxes = examples.boxes()[EXAMPLE]
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps([{"image_id": 252219, "category_id": 1, "bbox": b, "score": 0.9 - 0.1 * i}
                                      for i, b in enumerate(boxes)]))
    summary = predict_images(oracle, [path], tmp_path / "out", boxes=detections)
    assert summary.exit_code == 0 and summary.people == 3
    people = json.loads((tmp_path / "out" / "000000252219.json").read_text())
    assert [p["person"] for p in people] == [1, 2, 3] and [p["box"] for p in people] == boxes
    assert [p["box_score"] for p in people] == [0.9, 0.8, 0.7]
    assert all(p["box_source"] == "boxes_file" and p["image_id"] == 252219 for p in people)
    second = people[1]
    crop = box_centred_crop(boxes[1], *image.shape[1::-1])       # evaluate's gt-box crop of that box
    assert second["crop_box"] == [crop.x0, crop.y0, crop.side] == [239, 150, 246]
    keypoints = np.reshape(second["keypoints"], (17, 3))
    error = np.linalg.norm(keypoints[:, :2] - truth[:, :2], axis=1)
    assert error.max() <= half_cell_diagonal(crop.side), error
    assert error.mean() < 2.0, error
    # the API gives the same people
    painted = rgb(path)
    api = oracle.predict_people(painted, boxes)
    assert len(api) == 3
    np.testing.assert_allclose(api[1], keypoints, atol=1e-3)
    np.testing.assert_allclose(oracle.predict(painted, boxes[1]), api[1], atol=1e-5)


def test_without_a_box_the_whole_image_is_padded_to_a_square_and_nobody_is_cut(oracle):
    """A wide photo (the three examples side by side, 1350x300) with joints painted up to
    its four edges: all found, each within half a heatmap cell (14.9 px at this crop side)."""
    wide = np.concatenate([cv2.resize(rgb(p), (450, 300), interpolation=cv2.INTER_AREA) for p in examples.images()],
                          axis=1)
    height, width = wide.shape[:2]
    assert_unmarked(wide)
    xs = np.linspace(6, width - 7, 9)
    joints = np.array([(x, 6) for x in xs] + [(x, height - 7) for x in xs[1:]], np.float64)[:17]
    joints[0], joints[8] = (6, height / 2), (width - 7, height / 2)            # the far left and right
    pred = oracle.infer(paint(wide, np.c_[joints, np.ones(17)], 10))
    assert pred.whole_image and pred.box == (0.0, 0.0, 1350.0, 300.0)
    assert pred.crop_box == whole_image_crop(width, height) == CropBox(0, -525, 1350)
    error = np.linalg.norm(pred.keypoints[:, :2] - joints, axis=1)
    assert error.max() <= half_cell_diagonal(width), error
    # the crop holds the whole image, the padding (black) above and below it
    rows = np.flatnonzero(pred.crop.reshape(256, -1).max(1) > 0)
    assert rows[0] >= 99 and rows[-1] <= 157 and len(rows) >= 56
    np.testing.assert_allclose(oracle.predict(wide), oracle.infer(wide).keypoints)


def test_one_box_enlargement_for_predict_and_evaluate(tmp_path):
    """predict crops a box exactly as evaluate's gt-box protocol does: one constant."""
    from hgpose.evaluate import protocols

    assert BOX_PADDING == 1.25
    image = rgb(example())
    height, width = image.shape[:2]
    boxes = examples.boxes()[EXAMPLE]
    seen = []

    def heatmaps_of(crops, people, crop_boxes):
        seen.extend(map(tuple, crop_boxes))
        return torch.zeros(len(crops), 17, 64, 64)

    people = [protocols.Person(0, 252219, example(), tuple(b)) for b in boxes]
    protocols.predict_people(people, heatmaps_of, ThesisCodec())
    assert seen == [(c.x0, c.y0, c.side) for c in (box_crop(b, width, height) for b in boxes)]
    assert "longer side x 1.25" in protocols.DESCRIPTIONS["gt-box"]
    docs = (Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text()
    assert "`BOX_PADDING`" in docs and "hgpose/data/crop.py" in docs


# --- boxes files -----------------------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_each_format_of_boxes_file_is_read(tmp_path):
    paths = [tmp_path / "000000000007.jpg", tmp_path / "b.jpg"]
    expected = {paths[0]: [((1.0, 2.0, 30.0, 40.0), 0.9), ((5.0, 6.0, 7.5, 8.0), 0.5)],
                paths[1]: [((10.0, 20.0, 30.0, 40.0), None)]}
    files = {
        "coco.json": json.dumps([
            {"image_id": 7, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
            {"image_id": 7, "category_id": 3, "bbox": [0, 0, 9, 9], "score": 0.99},      # a car: left out
            {"image_id": 7, "category_id": 1, "bbox": [5, 6, 7.5, 8], "score": 0.5},
            {"file_name": "b.jpg", "bbox": [10, 20, 30, 40]},
            {"image_id": 99, "category_id": 1, "bbox": [1, 1, 1, 1], "score": 1}]),        # another image
        "object.json": json.dumps({"000000000007.jpg": [[1, 2, 30, 40], [5, 6, 7.5, 8]],
                                   "b.jpg": [[10, 20, 30, 40]]}),
        "with-header.csv": "image,x,y,w,h,score\n000000000007.jpg,1,2,30,40,0.9\n\n"
                           "000000000007.jpg,5,6,7.5,8,0.5\nb.jpg,10,20,30,40,\n",
        "plain.txt": '000000000007.jpg, 1, 2, 30, 40, 0.9\n000000000007.jpg,5,6,7.5,8,0.5\n"b.jpg",10,20,30,40\n',
    }
    for name, text in files.items():
        found = boxes_per_image(read_boxes(write(tmp_path / name, text)), paths, name)
        got = {p: [(b.bbox, b.score) for b in boxes] for p, boxes in found.items()}
        if name == "object.json":      # no scores in that format
            assert got == {p: [(bbox, None) for bbox, _ in rows] for p, rows in expected.items()}, name
        else:
            assert got == expected, name


@pytest.mark.parametrize("name, text, message", [
    ("a.json", "[{\"image_id\": 7, \"bbox\": [1, 2, 0, 4]}]",
     "entry 0 'bbox' is [1, 2, 0, 4], not [x, y, w, h] (finite numbers, w > 0 and h > 0)"),
    ("a.json", "[{\"image_id\": \"7\", \"bbox\": [1, 2, 3, 4]}]",
     "entry 0 'image_id' is '7', not a COCO image id (a whole number >= 0)"),
    ("a.json", "[{\"bbox\": [1, 2, 3, 4]}]", "entry 0 has neither 'image_id' nor 'file_name'"),
    ("a.json", "[{\"image_id\": 7, \"bbox\": [1, 2, 3, 4], \"score\": \"high\"}]",
     "entry 0 'score' is 'high', not a number"),
    ("a.json", "[{\"image_id\": 7, \"category_id\": 0, \"bbox\": [1, 2, 3, 4]}]",
     "none of its 1 boxes is a person: it has category_id 0 (1 boxes) (YOLO-style class indices"),
    ("a.json", "{\"a.jpg\": [[1, 2, 3]]}", "'a.jpg' box 0 the box is [1, 2, 3], not [x, y, w, h]"),
    ("a.json", "{\"a.jpg\": {\"x\": 1}}", "'a.jpg' is dict {\"x\": 1}, not a list of [x, y, w, h] boxes"),
    ("a.json", "{\"a.jpg\": [[1, 2, 3, NaN]]}", "'a.jpg' box 0 the box is [1, 2, 3, NaN], not [x, y, w, h]"),
    ("a.json", "[1, 2", "not valid JSON (Expecting"),
    ("a.json", "\"boxes\"", "the top level is a JSON str"),
    ("a.json", "[]", "holds no person box"),
    ("a.csv", "a.jpg,1,2,3\n", "line 1 has 4 fields, not image,x,y,w,h[,score]"),
    ("a.csv", "a.jpg,1,2,3,4\na.jpg,1,two,3,4\n", "line 2 y is 'two', not a finite number"),
    ("a.csv", "a.jpg,1,2,3,inf\n", "line 1 h is 'inf', not a finite number"),
    ("a.csv", ",1,2,3,4\n", "line 1 has no image name"),
])
def test_a_malformed_boxes_file_is_one_line_naming_file_entry_and_field(run, tmp_path, capsys, name, text, message):
    boxes = write(tmp_path / name, text)
    (tmp_path / "a.jpg").write_bytes(example().read_bytes())
    assert predict_cli(run, tmp_path / "a.jpg", "--boxes", boxes, "--out", tmp_path / "out") == 2
    (line,) = err_lines(capsys)
    assert line.startswith(f"hgpose predict: error: --boxes {boxes}: ") and message in line, line
    assert not (tmp_path / "out").exists()


def test_a_boxes_file_that_names_none_of_the_images_is_refused(run, tmp_path, capsys):
    boxes = write(tmp_path / "boxes.json", json.dumps({"holiday.jpg": [[1, 2, 3, 4]], "beach.jpg": [[5, 6, 7, 8]]}))
    assert predict_cli(run, example(), "--boxes", boxes, "--out", tmp_path / "out") == 2
    assert err_lines(capsys) == [(
        f"hgpose predict: error: --boxes {boxes}: none of its 2 person boxes is on an image given (it names "
        f"'holiday.jpg', 'beach.jpg'; the images: {EXAMPLE}); give the images it names, or their boxes file")]
    # two images of the same name, the file naming it by that name alone: which one is meant?
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        shutil.copy(example(), tmp_path / folder / "p.jpg")
    boxes = write(tmp_path / "boxes.json", json.dumps({"p.jpg": [[1, 2, 3, 4]]}))
    assert predict_cli(run, tmp_path / "x", tmp_path / "y", "--boxes", boxes, "--out", tmp_path / "out") == 2
    (line,) = err_lines(capsys)
    assert "'p.jpg' box 0 names 'p.jpg', which 2 of the images given match" in line
    # named by its path, it is one of them
    boxes = write(tmp_path / "boxes.json", json.dumps({str(tmp_path / "y" / "p.jpg"): [[1, 2, 30, 40]]}))
    assert predict_cli(run, tmp_path / "x", tmp_path / "y", "--boxes", boxes, "--out", tmp_path / "out") == 0
    assert "x/p.jpg: no box for it in" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "out" / "predictions.json").read_text())) == 1


def test_an_image_without_a_box_is_skipped_and_a_box_outside_its_image_fails_that_image(run, tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    for name in ("000000252219.jpg", "000000442450.jpg", "000000129648.jpg"):
        shutil.copy(example(name), images / name)
    boxes = write(tmp_path / "b.csv", "000000252219.jpg,10,20,100,200\n000000442450.jpg,700,10,20,20\n")
    assert predict_cli(run, images, "--boxes", boxes, "--out", tmp_path / "out") == 1
    captured = capsys.readouterr()
    assert f"{images / '000000129648.jpg'}: no box for it in {boxes}: skipped" in captured.out
    assert (f"hgpose predict: error: {images / '000000442450.jpg'}: --boxes {boxes} line 2: box 700,10,20,20 "
            "lies outside the 640x425 image (as displayed)") in captured.err.splitlines()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "000000252219.heatmaps.png", "000000252219.json", "000000252219.skeleton.png", "predictions.json"]


# --- several people, several calls ---------------------------------------------------------------

def test_a_boxes_file_for_three_images_writes_three_people_lists_and_a_second_call_never_overwrites(
        run, tmp_path, capsys):
    images = examples.images()
    boxes = write(tmp_path / "boxes.json", examples.BOXES.read_text())
    out = tmp_path / "out"
    assert predict_cli(run, *images, "--boxes", boxes, "--out", out) == 0
    printed = capsys.readouterr()
    assert "warning" not in printed.err
    assert f"results: {out / 'predictions.json'} (12 people)" in printed.out
    expected = examples.boxes()
    for path in images:
        people = json.loads((out / f"{path.stem}.json").read_text())
        assert [p["box"] for p in people] == expected[path.name], path.name
        assert [p["person"] for p in people] == list(range(1, len(expected[path.name]) + 1))
        assert all(len(p["keypoints"]) == 51 and p["file"] == str(path) for p in people)
        assert f"{path}: {len(expected[path.name])} people (their boxes)" in printed.out
    first = (out / "predictions.json").read_bytes()
    assert len(json.loads(first)) == 12
    pictures = {p: (out / f"{p.stem}.skeleton.png").read_bytes() for p in images}

    # a second call (one image, one box) writes its own results file; the first's stays
    assert predict_cli(run, images[1], "--box", "326,175,71,197", "--out", out) == 0
    assert f"results: {out / 'predictions-2.json'} (1 person)" in capsys.readouterr().out
    assert (out / "predictions.json").read_bytes() == first
    (again,) = json.loads((out / "predictions-2.json").read_text())
    assert again["box_source"] == "given" and again["file"] == str(images[1])
    # the image predicted again shows its latest people; the others are untouched
    assert json.loads((out / f"{images[1].stem}.json").read_text()) == [again]
    assert all((out / f"{p.stem}.skeleton.png").read_bytes() == pictures[p] for p in (images[0], images[2]))
    # numbering goes on after the highest number there, a stranger's included
    (out / "predictions-7.json").write_text("not predict's")
    assert predict_cli(run, images[0], "--box", "36,137,210,205", "--out", out) == 0
    assert f"results: {out / 'predictions-8.json'} (1 person)" in capsys.readouterr().out
    assert (out / "predictions-7.json").read_text() == "not predict's"


def test_a_full_disk_leaves_the_earlier_results_and_the_rerun_takes_the_next_number(run, tmp_path, capsys, disk_full):
    images = examples.images()[:2]
    out = tmp_path / "out"
    assert predict_cli(run, *images, "--boxes", examples.BOXES, "--out", out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    disk_full(after=4)           # the first image's three files and the second's JSON
    assert predict_cli(run, *images, "--boxes", examples.BOXES, "--out", out) == 2
    (line,) = err_lines(capsys)
    assert f"{out / (images[1].stem + '.skeleton.png')}: No space left on device" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    disk_full(after=10**9)
    assert predict_cli(run, *images, "--boxes", examples.BOXES, "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*before, "predictions-2.json"])
    assert (out / "predictions.json").read_bytes() == before["predictions.json"]


# --- without boxes: one person, said once ----------------------------------------------------------

def test_without_boxes_a_warning_says_one_person_is_assumed(run, tmp_path, capsys):
    assert predict_cli(run, example(), "--out", tmp_path / "a") == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"hgpose predict: warning: {ONE_PERSON_WARNING}"]
    assert "--boxes FILE" in ONE_PERSON_WARNING and "ONE person" in ONE_PERSON_WARNING
    assert f"{example()}: one person assumed (no box): the whole image padded to a 640x640 square" in captured.out
    assert predict_cli(run, example(), "--box", "10,20,100,200", "--out", tmp_path / "b") == 0
    assert capsys.readouterr().err == ""


# --- pictures ------------------------------------------------------------------------------------

def test_the_heatmap_colours_are_read_on_the_colour_bar_beside_them():
    from hgpose.draw import colour_bar, heatmap_overlay

    bar = colour_bar(256, 0.62)
    strip = bar[8:248, 8:22]
    # from red (0.62, top) to blue (0, bottom)
    assert tuple(strip[0, 7]) == (128, 0, 0) and tuple(strip[-1, 7]) == (0, 0, 128)
    assert (bar[:, 22:] < 128).any()              # the values are written beside it
    # a heatmap value v is drawn in the bar's colour at v's height
    for value in (0.62, 0.31, 0.1):
        heatmaps = np.zeros((17, 64, 64), np.float32)
        heatmaps[3] = value
        tile = heatmap_overlay(np.zeros((256, 256, 3), np.uint8), heatmaps, alpha=1.0, vmax=0.62)
        row = round((1 - value / 0.62) * (strip.shape[0] - 1))
        assert np.abs(tile[128, 128].astype(int) - strip[row, 7]).max() <= 4, value


def test_pictures_of_a_crowd_stay_bounded(run, tmp_path):
    image = cv2.resize(rgb(example()), (3000, 2000), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "crowd.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    rng = np.random.default_rng(0)
    boxes = [[float(x), float(y), 90.0, 200.0] for x, y in zip(rng.uniform(0, 2900, 40), rng.uniform(0, 1800, 40))]
    write(tmp_path / "boxes.json", json.dumps({"crowd.png": boxes}))
    est = hgpose.load(run, device="cpu", precision="fp32", engine="torch")
    summary = predict_images(est, [path], tmp_path / "out", boxes=tmp_path / "boxes.json")
    assert summary.people == 40
    skeleton = cv2.imread(str(tmp_path / "out" / "crowd.skeleton.png"))
    heat = cv2.imread(str(tmp_path / "out" / "crowd.heatmaps.png"))
    assert skeleton.shape[:2] == (1365, 2048)
    # 40 tiles in rows of 7, each (2048 - 76) // 7 = 281 -> 256 px, the colour bar, a caption line
    assert heat.shape[:2] == (6 * 256 + 20, 7 * 256 + 76) and max(heat.shape[:2]) <= PICTURE_MAX_SIDE


# --- the Python API --------------------------------------------------------------------------------

def test_predict_people_is_predict_per_box_in_batches(run):
    est = hgpose.load(run, device="cpu", precision="fp32", engine="torch")
    image = rgb(example())
    boxes = [(10 + 25 * i, 30 + 5 * i, 80, 200) for i in range(PEOPLE_BATCH + 4)]   # two batches
    people = est.predict_people(image, boxes)
    assert len(people) == len(boxes) and all(k.shape == (17, 3) for k in people)
    for box, keypoints in zip(boxes[::7], people[::7]):
        np.testing.assert_allclose(keypoints, est.predict(image, box), atol=1e-4)
    full = est.infer_people(image, boxes[:2])
    assert [p.crop_box for p in full] == [box_crop(b, 640, 428) for b in boxes[:2]]
    assert not any(p.whole_image for p in full)
    assert est.predict_people(image, []) == []
    with pytest.raises(HgposeError, match=r"^boxes: give a list of person boxes \(x, y, w, h\)"):
        est.predict_people(image, (10, 20, 30, 40))
    with pytest.raises(HgposeError, match=r"^box 1 900,10,20,20 lies outside the 640x428 image$"):
        est.predict_people(image, [(10, 20, 30, 40), (900, 10, 20, 20)])


# --- the first minute ------------------------------------------------------------------------------

def test_examples_predicts_the_shipped_photos_with_their_boxes(run, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict_cli(run, "--examples", "--out", out) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and f"results: {out / 'predictions.json'} (12 people)" in captured.out
    counts = {name: len(json.loads((out / f"{Path(name).stem}.json").read_text())) for name in examples.boxes()}
    assert counts == {"000000252219.jpg": 3, "000000442450.jpg": 2, "000000129648.jpg": 7}
    assert predict_cli(run, example(), "--examples", "--out", out) == 2
    assert err_lines(capsys) == [("hgpose predict: error: --examples predicts the example photos with their own "
                                  "boxes: drop the images, --box and --boxes, or drop --examples")]
    assert predict_cli(run, "--out", out) == 2
    assert err_lines(capsys) == [("hgpose predict: error: no images given: give image files or folders, or "
                                  "--examples for the photos that ship with hgpose")]
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "--examples" in capsys.readouterr().out
