"""`hgpose predict` and the Python API `hgpose.load(...)`: crops, keypoints in image
coordinates, the JSON and pictures written, and unreadable images."""

from __future__ import annotations

import json
from dataclasses import astuple
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import hgpose
from hgpose.data.crop import box_centred_crop, to_image
from hgpose.errors import HgposeError
from hgpose.inference import box_crop
from hgpose.runs import RunDir, resolve_checkpoint
from hgpose.predict import predict_images
from builders import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"), checkpoints=("last",))


def sample_image(coco_sample) -> Path:
    return sorted((coco_sample / "val2017").glob("*.jpg"))[0]


def read_png(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# --- crop rule for a box ---------------------------------------------------------------------

def test_box_crop_is_evaluates_gt_box_crop():
    # square on the longer side x 1.25, centred on the box: evaluate's gt-box crop, whole pixels
    assert box_crop((100, 50, 40, 100), 640, 480) == box_centred_crop((100, 50, 40, 100), 640, 480)
    b = box_crop((100, 50, 40, 100), 640, 480)
    assert b.side == 125 and b.x0 == round(120 - 62.5) and b.y0 == round(100 - 62.5)
    # larger than the image: not shrunk, the part past the border is padding
    b = box_crop((0, 0, 640, 480), 640, 480)
    assert (b.x0, b.y0, b.side) == (-80, -160, 800)
    b = box_crop((600, 400, 30, 60), 640, 480)         # near the corner: centred anyway, not moved
    assert (b.x0, b.y0, b.side) == (578, 392, 75)
    # a box reaching out of the image counts only where it is inside
    assert box_crop((-50, -50, 150, 150), 640, 480) == box_crop((0, 0, 100, 100), 640, 480)
    with pytest.raises(HgposeError, match="outside"):
        box_crop((700, 10, 20, 20), 640, 480)
    with pytest.raises(HgposeError, match="w > 0"):
        box_crop((10, 10, 0, 20), 640, 480)


# --- the Python API --------------------------------------------------------------------------

def test_load_and_predict_in_image_coordinates(run, coco_sample):
    est = hgpose.load(run)                               # no best.safetensors: falls back to last
    assert est.checkpoint.endswith("last.safetensors")
    image = cv2.cvtColor(cv2.imread(str(sample_image(coco_sample))), cv2.COLOR_BGR2RGB)
    box = (40.0, 30.0, 120.0, 260.0)
    pred = est.infer(image, box=box)
    assert pred.keypoints.shape == (17, 3) and pred.keypoints.dtype == np.float32
    assert pred.heatmaps.shape == (17, 64, 64) and pred.crop.shape == (256, 256, 3)
    assert pred.crop_box == box_crop(box, image.shape[1], image.shape[0]) and not pred.whole_image
    # keypoints = the codec's decoding of the heatmaps, mapped back through the crop box
    xy, scores = est.codec.decode(pred.heatmaps)
    b = pred.crop_box
    np.testing.assert_allclose(pred.keypoints[:, :2], to_image(xy, np.array([b.x0, b.y0, b.side])), atol=1e-3)
    np.testing.assert_allclose(pred.keypoints[:, 2], scores, atol=1e-6)
    # the convenience calls agree, from an array, a path or greyscale; and from the weights file
    np.testing.assert_allclose(est.predict(image, box=box), pred.keypoints, atol=1e-4)
    np.testing.assert_allclose(est.predict(sample_image(coco_sample), box=box), pred.keypoints, atol=1e-4)
    np.testing.assert_allclose(est.heatmaps(image, box=box), pred.heatmaps, atol=1e-5)
    assert est.predict(image[..., 0]).shape == (17, 3)
    other = hgpose.load(run / "checkpoints" / "last.safetensors")
    np.testing.assert_allclose(other.predict(image, box=box), pred.keypoints, atol=1e-4)
    assert type(other.codec) is type(est.codec)
    # a flip test changes heatmaps but keeps shapes
    assert est.heatmaps(image, box=box, flip=True).shape == (17, 64, 64)


def test_the_input_is_normalised_as_in_training(run):
    from hgpose.train.data import prepare_batch

    est = hgpose.load(run)
    crops = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    expected, _ = prepare_batch(torch.from_numpy(crops), torch.zeros(2, 17, 3), torch.device("cpu"),
                                torch.from_numpy(est.mean_rgb))
    torch.testing.assert_close(est.to_input(crops), expected)


def test_checkpoint_resolution(run, tmp_path):
    assert resolve_checkpoint(run) == (run / "checkpoints" / "last.safetensors", RunDir(run))
    # one rule for every command: "best" falls back to last while the run has no best
    assert resolve_checkpoint(run, "best") == (run / "checkpoints" / "last.safetensors", RunDir(run))
    # a weights file knows its run folder by the same rule
    assert resolve_checkpoint(run / "checkpoints" / "last.safetensors")[1] == RunDir(run)
    (run / "checkpoints" / "last.safetensors").rename(run / "checkpoints" / "epoch_001.safetensors")
    with pytest.raises(HgposeError, match="no last.safetensors"):
        resolve_checkpoint(run, "last")
    (run / "checkpoints" / "epoch_001.safetensors").rename(run / "checkpoints" / "last.safetensors")
    assert resolve_checkpoint(run, "last.safetensors")[0] == run / "checkpoints" / "last.safetensors"
    with pytest.raises(HgposeError, match="not found"):
        resolve_checkpoint(tmp_path / "missing")
    with pytest.raises(HgposeError, match="no best.safetensors or last.safetensors"):
        resolve_checkpoint(tmp_path)


# --- predict: files --------------------------------------------------------------------------

def test_predict_writes_json_and_pictures(run, coco_sample, tmp_path):
    path = sample_image(coco_sample)
    image = read_png(path)
    est = hgpose.load(run)
    summary = predict_images(est, [path], tmp_path / "out", min_score=0.0)
    assert summary.exit_code == 0
    name = path.stem
    (entry,) = json.loads((tmp_path / "out" / f"{name}.json").read_text())
    assert entry["image_id"] == int(name) and entry["category_id"] == 1
    assert len(entry["keypoints"]) == 51 and entry["box_source"] == "whole_image"
    assert entry["box"] == [0, 0, image.shape[1], image.shape[0]]
    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == [entry]

    skeleton = read_png(tmp_path / "out" / f"{name}.skeleton.png")
    heat = read_png(tmp_path / "out" / f"{name}.heatmaps.png")
    # the heatmaps over the 256x256 crop, a 76 px colour bar beside them, a caption line below
    assert skeleton.shape == image.shape and heat.shape == (256 + 20, 256 + 76, 3)
    # the skeleton is drawn where the joints are: pixels there differ from the photo
    changed = np.any(skeleton != image, axis=-1)
    assert changed.mean() > 0.001
    # score > 0 and inside the photo (the whole image is padded to a square: an untrained
    # network may put a joint in the padding, where no picture of the photo can show it)
    height, width = image.shape[:2]
    drawn = [kp for kp in np.array(entry["keypoints"]).reshape(17, 3)
             if kp[2] > 0 and -0.5 <= kp[0] < width - 0.5 and -0.5 <= kp[1] < height - 0.5]
    assert drawn
    for x, y, _ in drawn:
        xi, yi = int(round(x)), int(round(y))
        assert changed[max(yi - 1, 0):yi + 2, max(xi - 1, 0):xi + 2].any()
    assert not np.array_equal(heat[:256, :256], est.infer(image).crop)

    # with a box: the crop comes from it, and the output says so
    summary = predict_images(est, [path], tmp_path / "boxed", box=(40, 30, 120, 260))
    (entry,) = json.loads((tmp_path / "boxed" / f"{name}.json").read_text())
    assert entry["box_source"] == "given" and entry["crop_box"] == list(astuple(box_crop((40, 30, 120, 260), image.shape[1], image.shape[0])))


def test_unreadable_images_are_reported_and_the_rest_still_processed(run, coco_sample, tmp_path):
    good = sample_image(coco_sample)
    broken = tmp_path / "in" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"this is not a jpeg")
    truncated = tmp_path / "in" / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:5000])
    seen = []
    summary = predict_images(hgpose.load(run), [broken.parent, good, tmp_path / "missing.png"],
                             tmp_path / "out", on_image=seen.append)
    assert summary.exit_code == 1 and len(seen) == 4
    failed = {o.path.name: o.error for o in summary.failed}
    assert set(failed) == {"broken.jpg", "truncated.jpg", "missing.png"}
    assert all(name in error and "\n" not in error for name, error in failed.items())
    assert (tmp_path / "out" / f"{good.stem}.skeleton.png").is_file()
    assert len(json.loads((tmp_path / "out" / "predictions.json").read_text())) == 1


def test_cli_predict_exit_status(run, coco_sample, tmp_path, capsys):
    from hgpose import cli

    if "predict" not in cli.COMMANDS:
        pytest.skip("predict is not registered in hgpose.cli yet")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG nothing")
    good = sample_image(coco_sample)
    code = cli.main(["predict", str(run), str(broken), str(good), "--box", "40,30,120,260",
                     "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "broken.png" in err and len([line for line in err.splitlines() if "broken.png" in line]) == 1
    assert good.name in out and "box 40,30,120,260" in out
    assert cli.main(["predict", str(run), str(good), "--out", str(tmp_path / "o2")]) == 0
    assert "whole image" in capsys.readouterr().out
    # images may come after the options too; a stray option is still argparse's error
    assert cli.main(["predict", str(run), "--out", str(tmp_path / "o3"), str(good)]) == 0
    assert (tmp_path / "o3" / f"{good.stem}.skeleton.png").is_file()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["predict", str(run), "--out", str(tmp_path / "o4"), str(good), "--nonesuch"])
    assert exit_.value.code == 2 and "unrecognized arguments: --nonesuch" in capsys.readouterr().err


def test_refine_chooses_the_decoding_of_a_gaussian_run(tmp_path):
    """`hgpose.load(..., refine=...)` (the CLI's --refine) swaps only the argmax refinement;
    a thesis-codec run refuses any refinement in one line."""
    import hgpose
    from hgpose.codecs import GaussianCodec, ThesisCodec

    newell = make_run(tmp_path / "newell", "newell", stacks=1, checkpoints=("last",))
    own = hgpose.load(newell, device="cpu").codec
    assert own.refine == "quarter"                                           # the preset's auto
    dark = hgpose.load(newell, device="cpu", refine="dark").codec
    assert isinstance(dark, GaussianCodec) and dark.refine == "dark" and dark.sigma == own.sigma
    thesis = make_run(tmp_path / "thesis", checkpoints=("last",))
    assert isinstance(hgpose.load(thesis, device="cpu", refine="none").codec, ThesisCodec)
    with pytest.raises(HgposeError, match="--refine dark: this run uses the thesis codec"):
        hgpose.load(thesis, device="cpu", refine="dark")
    with pytest.raises(HgposeError, match="--refine taylor: choose one of auto, none, quarter, dark"):
        hgpose.load(newell, device="cpu", refine="taylor")
