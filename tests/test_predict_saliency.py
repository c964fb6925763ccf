"""`hgpose predict --saliency` and `hgpose.explain.saliency.explain_person`: what the network
looks at for a joint, on the very crop its prediction came from.

Where values matter the network is `PaintedJoints`: its `stem` gives the similarity of each
crop pixel to the colours of two joints (COLOURS, absent from the photo), and their heatmaps
average the stem over 4x4 cells (the other joints' are zero). The evidence for a joint is
then exactly where its colour is painted, and both maps can be worked out by hand:

* occlusion (a 32 px square every 16 px, averaged over the squares covering a pixel): a
  square drops the joint's peak (1.0, a pure cell) to ~0 exactly when it holds the whole
  painted 8x8 spot (squares and spot lie on the 4 px cell grid: no square covers part of a
  cell). Along an axis, the squares holding a spot at x0 start at the multiples of 16 in
  [x0 - 24, x0]: two of them when x0 = 16k + 4, whose common 16 px block is the map's
  maximum, at the full drop 1.0; one when x0 = 16k + 12, whose 32 px square is the maximum,
  at a quarter of it (a pixel there is covered by 2 x 2 squares, one holding the spot). No
  pixel outside the squares holding the spot gets any attribution.
* Grad-CAM at `stem`: the peak's gradient reaches only the joint's own channel, so the map is
  that channel's similarity: all its mass on the painted spot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from builders import make_run
from hgpose import examples
from hgpose.cli import main
from hgpose.codecs import ThesisCodec
from hgpose.data.crop import to_crop
from hgpose.errors import HgposeError
from hgpose.explain import figures, saliency
from hgpose.inference import Estimator
from hgpose.predict import PICTURE_MAX_SIDE, predict_images
from hgpose.skeleton import JOINT_INDEX, JOINTS

MEAN_RGB = [0.41, 0.374, 0.354]
# at least 40 RGB levels from every pixel of the example photos (checked by `unmarked`)
COLOURS = {"left_wrist": (220, 5, 138), "right_ankle": (98, 117, 255)}
BODY = [j for j in JOINTS if j not in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
PATCH, STRIDE = saliency.PATCH, saliency.STRIDE


class Similarity(nn.Module):
    """[B,3,H,W] network input -> [B,2,H,W]: each pixel's similarity to each of the two
    COLOURS (Gaussian in RGB, sigma 8 levels)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("colours", torch.tensor(list(COLOURS.values()), dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x + self.mean) * 255                                   # undo the input normalisation
        distance2 = ((rgb[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(2)
        return torch.exp(-distance2 / (2 * 8.0 ** 2))


class PaintedJoints(nn.Module):
    """A pose network that finds a joint where its colour is painted (module doc); the
    joints without a colour have all-zero heatmaps."""

    def __init__(self):
        super().__init__()
        self.stem = Similarity()
        self.painted = [JOINT_INDEX[name] for name in COLOURS]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cells = F.avg_pool2d(self.stem(x), 4)
        heatmaps = cells.new_zeros(len(x), 17, *cells.shape[-2:])
        heatmaps[:, self.painted] = cells
        return heatmaps.unsqueeze(1)                                  # [B, 1 stack, 17, 64, 64]


def estimator(joints: list[str] | None = None) -> Estimator:
    metadata = None if joints is None else {"joints": joints}
    return Estimator(PaintedJoints(), ThesisCodec(), MEAN_RGB, "cpu", precision="fp32", engine="torch",
                     metadata=metadata)


def photo(name: str = "000000252219.jpg") -> np.ndarray:
    path = next(p for p in examples.images() if p.name == name)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def unmarked(image: np.ndarray) -> bool:
    pixels = np.unique(image.reshape(-1, 3), axis=0).astype(np.float32)
    return all(np.sqrt(((pixels - c) ** 2).sum(1)).min() >= 40 for c in COLOURS.values())


def square_photo() -> np.ndarray:
    """A 256x256 photo (its own crop, pixel for pixel) with the left wrist's colour on the
    8x8 spot at x0, y0 = 84, 100 (16k + 4) and the right ankle's at 156, 172 (16k + 12)."""
    image = cv2.resize(photo(), (256, 256), interpolation=cv2.INTER_AREA)
    assert unmarked(image)
    image[100:108, 84:92] = COLOURS["left_wrist"]
    image[172:180, 156:164] = COLOURS["right_ankle"]
    return image


def region(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x from, x to, y from, y to), ends excluded, of the pixels a mask holds."""
    ys, xs = np.nonzero(mask)
    return xs.min(), xs.max() + 1, ys.min(), ys.max() + 1


def predict_cli(run: Path, *args) -> int:
    return main(["predict", str(run), *map(str, args), "--device", "cpu", "--precision", "fp32", "--no-progress"])


def err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny network working at 64 px: a person's saliency costs about a second of CPU."""
    return make_run(tmp_path_factory.mktemp("run") / "run", checkpoints=("last",), resolution=64)


# --- the maps' values ------------------------------------------------------------------------------

def test_occlusion_and_gradcam_find_the_painted_joints_where_the_derivation_says():
    image = square_photo()
    crop, occ, cam = saliency.explain_person(estimator(), image, None, "left_wrist,right_ankle")
    assert np.array_equal(crop, image)           # a 256x256 image without a box is its own crop
    assert occ.shape == cam.shape == (2, 256, 256)
    wrist, ankle = occ
    # left wrist, x0 = 84 = 16*5 + 4, y0 = 100 = 16*6 + 4: squares from x 64 and 80, y 80 and 96
    assert wrist.max() == pytest.approx(1.0, abs=1e-4)
    assert region(wrist >= wrist.max() - 1e-4) == (80, 96, 96, 112)      # the block of both squares
    assert region(wrist > 1e-4) == (64, 112, 80, 128)                    # the squares holding the spot
    # right ankle, x0 = 156 = 16*9 + 12, y0 = 172 = 16*10 + 12: one square, from (144, 160)
    assert ankle.max() == pytest.approx(0.25, abs=1e-4)
    assert region(ankle >= ankle.max() - 1e-4) == (144, 176, 160, 192)
    assert region(ankle > 1e-4) == (144, 176, 160, 192)
    # Grad-CAM: all the positive mass on the painted 8x8 spots
    for maps, (x, y) in zip(cam, [(84, 100), (156, 172)]):
        spot = np.zeros((256, 256), bool)
        spot[y:y + 8, x:x + 8] = True
        assert maps[spot].sum() / np.clip(maps, 0, None).sum() > 0.999
        assert spot[np.unravel_index(maps.argmax(), maps.shape)]


def test_the_maps_lie_on_the_crop_the_prediction_came_from(tmp_path, monkeypatch):
    """On the photo with a person's box: the crop explain_person explains is the one
    `Estimator.infer` predicted from (box x 1.25, resampled), the painted wrist is found
    there within the resampling's pixel, and predict draws exactly these crops and maps."""
    est, image = estimator(), photo()
    box = (326.3, 174.6, 71.2, 197.2)                 # the photo's second person
    wrist = np.array([[360.0, 250.0, 2.0]])
    cv2.circle(image, (360, 250), 5, COLOURS["left_wrist"], -1)
    crop, occ, cam = saliency.explain_person(est, image, box, ["left_wrist"])
    pred = est.infer(image, box)
    assert np.array_equal(crop, pred.crop)
    u, v = to_crop(wrist, pred.crop_box)[0, :2]
    radius = 5 * 256 / pred.crop_box.side + 1        # the spot's in the crop, and a pixel of resampling
    y, x = np.unravel_index(cam[0].argmax(), cam[0].shape)
    assert math.hypot(x - u, y - v) <= radius
    assert occ[0][round(v), round(u)] > 0.5 * occ[0].max()

    drawn = []
    monkeypatch.setattr(saliency, "people_figure", lambda people, *a, **k: drawn.extend(people) or _figure())
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    predict_images(est, [path], tmp_path / "out", box=box, saliency="left_wrist", progress=False)
    (person,) = drawn
    assert person.label == "person 1" and np.array_equal(person.crop, crop)
    np.testing.assert_allclose(person.occ, occ, atol=1e-6)
    np.testing.assert_allclose(person.cam, cam, rtol=1e-5, atol=1e-12)
    # the skeleton drawn on that crop is the prediction's, its wrist on the spot
    np.testing.assert_allclose(person.keypoints, to_crop(pred.keypoints, pred.crop_box), atol=1e-4)
    assert math.hypot(*(person.keypoints[JOINT_INDEX["left_wrist"], :2] - [u, v])) <= radius


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.subplots()
    return fig


# --- the picture ------------------------------------------------------------------------------------

def fake_people(n: int, joints: int) -> list[saliency.PersonSaliency]:
    rng = np.random.default_rng(0)
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[:, :2], keypoints[:, 2] = 128, 0.5
    def maps():
        return rng.random((joints, 256, 256), np.float32)

    return [saliency.PersonSaliency(rng.integers(0, 256, (256, 256, 3), np.uint8), keypoints, maps(), maps(),
                                    f"person {k + 1}") for k in range(n)]


def test_the_picture_is_a_row_per_person_with_a_pair_per_joint_and_stays_within_2048_px():
    fig = saliency.people_figure(fake_people(2, 2), [9, 10], "t", 0.1)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * (1 + 2 * 2)
    assert [ax.get_title() for ax in shown[:5]] == ["person 1: prediction", "L wrist: occlusion\n(max 1)",
                                                    "L wrist: Grad-CAM\n(max 1)", "R wrist: occlusion\n(max 1)",
                                                    "R wrist: Grad-CAM\n(max 1)"]
    assert "share of each map's maximum" in fig.axes[-1].get_ylabel()          # the colour bar
    picture = cv2.imdecode(np.frombuffer(figures.png_bytes(fig, PICTURE_MAX_SIDE), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[1] > 2 * picture.shape[0]                             # 5 tiles wide, 2 high
    smaller = cv2.imdecode(np.frombuffer(figures.png_bytes(fig, 500), np.uint8), cv2.IMREAD_COLOR)
    assert smaller.shape[1] == 500                                             # scaled down to the bound
    assert smaller.shape[0] == pytest.approx(500 * picture.shape[0] / picture.shape[1], abs=1.5)
    # all 17 joints of 2 people: 4 pairs a row, 5 rows a person, tiles shrunk to fit 2048 px
    fig = saliency.people_figure(fake_people(2, 17), list(range(17)), "t", 0.1)
    assert len([ax for ax in fig.axes if ax.images]) == 2 * (1 + 2 * 17)
    assert len(fig.axes) == 2 * 5 * 9 + 1
    picture = cv2.imdecode(np.frombuffer(figures.png_bytes(fig, PICTURE_MAX_SIDE), np.uint8), cv2.IMREAD_COLOR)
    assert PICTURE_MAX_SIDE / 2 < max(picture.shape[:2]) <= PICTURE_MAX_SIDE


# --- refusals ---------------------------------------------------------------------------------------

def lsp_run(run_dir: Path) -> Path:
    """A tiny network whose weights file says it learned the 12 LSP joints (no face)."""
    from hgpose import config as cfg
    from hgpose.models import build_model
    from hgpose.runs.weights import save_weights, weights_metadata

    config = cfg.resolve("thesis", ["model.features=8", "model.resolution=64"])
    meta = weights_metadata(config.model, MEAN_RGB, 1, {}, config.preset, joints=BODY)
    save_weights(run_dir / "checkpoints" / "best.safetensors", build_model(config.model), meta)
    return run_dir


def test_a_joint_the_network_was_not_trained_on_is_refused_before_any_pass(tmp_path, capsys, monkeypatch):
    passes = []
    monkeypatch.setattr(Estimator, "crop_heatmaps", lambda self, *a, **k: passes.append(1))
    monkeypatch.setattr(saliency, "explain_sample", lambda *a, **k: passes.append(1))
    out = tmp_path / "out"
    run = lsp_run(tmp_path / "lsp")
    assert predict_cli(run, "--examples", "--saliency", "left_wrist,nose", "--out", out) == 2
    assert err_lines(capsys) == [
        "hgpose predict: error: --saliency nose: the network was not trained on this joint (its weights file "
        f"lists 12: {', '.join(BODY)}); name joints from that list, or give --saliency alone (both wrists)"]
    assert not out.exists() and passes == []
    with pytest.raises(HgposeError, match=r"^joints left_eye,right_ear: the network was not trained on these "
                                          r"joints \(its weights file lists 12: left_shoulder, .*ankle\); name "
                                          r"joints from that list$"):
        saliency.explain_person(estimator(BODY), photo(), None, "left_eye,right_ear,left_wrist")
    assert passes == []


def test_bad_saliency_flags_are_one_line_naming_the_flag(run, tmp_path, capsys):
    image = examples.images()[0]
    joints = ", ".join(JOINTS)
    assert predict_cli(run, image, "--saliency", "left_elbow,elbow", "--out", tmp_path / "o") == 2
    assert err_lines(capsys) == [f"hgpose predict: error: --saliency left_elbow,elbow: 'elbow' is not a joint; "
                                 f"give comma-separated COCO joint names ({joints}) or all"]
    assert predict_cli(run, "--saliency", image, "--out", tmp_path / "o") == 2   # the image taken for joints
    assert err_lines(capsys) == [f"hgpose predict: error: --saliency {image}: {str(image)!r} is not a joint; give "
                                 f"comma-separated COCO joint names ({joints}) or all; an image right after "
                                 "--saliency is taken for its joints: put the images first"]
    assert predict_cli(run, image, "--saliency-people", "2", "--out", tmp_path / "o") == 2
    assert err_lines(capsys) == ["hgpose predict: error: --saliency-people: give --saliency too (the joints to "
                                 "explain), or drop it"]
    with pytest.raises(SystemExit):
        predict_cli(run, image, "--saliency", "--saliency-people", "0")
    assert "argument --saliency-people: '0': give at least 1 person" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- outputs ----------------------------------------------------------------------------------------

def test_a_rerun_replaces_its_own_picture_and_never_a_strangers(tmp_path, capsys):
    est, out = estimator(), tmp_path / "out"
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(square_photo(), cv2.COLOR_RGB2BGR))
    predict_images(est, [path], out, saliency="left_wrist", progress=False)
    first = (out / "photo.saliency.png").read_bytes()
    (entry,) = json.loads((out / "photo.json").read_text())
    assert entry["outputs"] == ["photo.json", "photo.skeleton.png", "photo.heatmaps.png", "photo.saliency.png"]
    summary = predict_images(est, [path], out, saliency="left_wrist,right_ankle", progress=False)
    assert (out / "photo.saliency.png").read_bytes() != first                 # its own: replaced
    assert summary.outcomes[0].note is None and not list(out.glob("photo-2*"))
    # without --saliency an earlier picture stays as it was (its call's results file lists it)
    kept = (out / "photo.saliency.png").read_bytes()
    predict_images(est, [path], out, progress=False)
    assert (out / "photo.saliency.png").read_bytes() == kept
    assert json.loads((out / "photo.json").read_text())[0]["outputs"] == entry["outputs"][:3]
    # a stranger's photo.saliency.png: kept, the outputs take the next name, with or without --saliency
    other = tmp_path / "other"
    other.mkdir()
    (other / "photo.saliency.png").write_bytes(b"not predict's")
    for asked in (None, "left_wrist"):
        (outcome,) = predict_images(est, [path], other, saliency=asked, progress=False).outcomes
        assert (other / "photo.saliency.png").read_bytes() == b"not predict's"
        assert outcome.files[0] == other / "photo-2.json"
        assert outcome.note == "photo.saliency.png there is not predict's: kept"
    assert (other / "photo-2.saliency.png").is_file()


def test_a_full_disk_leaves_nothing_half_done(run, tmp_path, capsys, disk_full):
    image, out = examples.images()[1], tmp_path / "out"
    args = (image, "--box", "326.3,174.6,71.2,197.2", "--out", out)
    assert predict_cli(run, *args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    disk_full(after=3)               # the image's JSON, skeleton and heatmap pictures
    assert predict_cli(run, *args, "--saliency") == 2
    (line,) = err_lines(capsys)
    assert f"{out / (image.stem + '.saliency.png')}: No space left on device" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    disk_full(after=10**9)
    assert predict_cli(run, *args, "--saliency") == 0
    assert (out / (image.stem + ".saliency.png")).is_file()


def test_examples_with_saliency_on_the_shipped_photos(run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("HGPOSE_PROGRESS", "lines")
    argv = ["predict", str(run), "--examples", "--saliency", "--saliency-people", "1", "--out", str(out),
            "--device", "cpu", "--precision", "fp32"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    people = {"000000129648": 7, "000000252219": 3, "000000442450": 2}
    for stem, n in people.items():
        line = next(line for line in captured.out.splitlines() if f"{stem}.jpg:" in line)
        assert line.endswith(f"{stem}.saliency.png (saliency of person 1 of {n}; --saliency-people N for more)")
        picture = cv2.imread(str(out / f"{stem}.saliency.png"))
        assert max(picture.shape[:2]) <= PICTURE_MAX_SIDE and picture.shape[1] > 2 * picture.shape[0]  # 1 x 5
        assert all(f"{stem}.saliency.png" in e["outputs"] for e in json.loads((out / f"{stem}.json").read_text()))
    assert captured.err.startswith("saliency: 3 crops in ")                  # the progress line


def test_help_states_the_option_and_its_cost(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--saliency [JOINTS]" in text and "--saliency-people N" in text
    assert "--saliency alone: left_wrist,right_wrist" in text
    assert ("Cost per person: 225 forward passes (occlusion, a 32 px square every 16 px) plus a forward and a "
            "backward pass per joint") in text and "229 for two joints" in text
    assert "explain the first N people of each image (default: 3)" in text
