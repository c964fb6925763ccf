"""`hgpose evaluate`: the thesis PCK exactly as SPEC §5, image-coordinate metrics through
pycocotools, the flip test, and the files it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hgpose.codecs import GaussianCodec, ThesisCodec
from hgpose.data.crop import to_image
from hgpose.data.store import Split, Store
from hgpose.errors import HgposeError
from hgpose.codecs import flip_back
from hgpose.evaluate.evaluate import (
    annotation_file, evaluate, ground_truth, load_annotations, predict_split, score,
)
from hgpose.skeleton import FLIP_INDEX, JOINT_INDEX, LIMB_JOINTS
from builders import make_run


def subset(split: Split, keep: np.ndarray) -> Split:
    """An in-memory Split of some of a split's people."""
    return Split(split.name, *(np.asarray(a)[keep] for a in (split.images, split.keypoints, split.boxes, split.ids)))


def heatmaps_forward(heatmaps_of):
    """A split pass's `Forward` from heatmaps of the crops' rows: (no stacks, heatmaps)."""
    return lambda crops, rows: (None, torch.from_numpy(heatmaps_of(rows.numpy())))


def gt_source(split: Split, codec):
    """Heatmaps of the ground truth itself, as if from a perfect network."""
    return heatmaps_forward(lambda rows: codec.encode(np.asarray(split.keypoints[rows]))[0])


# --- the thesis PCK, exactly -----------------------------------------------------------------

def synthetic_split(keypoints: np.ndarray) -> Split:
    n = len(keypoints)
    return Split("test", np.zeros((n, 256, 256, 3), np.uint8), keypoints.astype(np.float32),
                 np.tile(np.float32([0, 0, 256]), (n, 1)), np.stack([np.arange(n), np.arange(n)], 1))


def test_known_shift_gives_known_thesis_pck():
    # Joints on grid cells (u = 4k), away from the border.
    rng = np.random.default_rng(0)
    kps = np.zeros((4, 17, 3))
    kps[..., :2] = 4 * rng.integers(10, 40, (4, 17, 2))
    kps[..., 2] = 2
    kps[0, :3, 2] = 1            # occluded: counted in "all", not in "visible"
    kps[1, 10:, 2] = 0           # image 1: 10 labelled joints
    kps[2, :, 2] = 0             # image 2: nothing labelled -> left out of every average
    wrong = np.zeros((4, 17), bool)
    wrong[0, [0, 7, 9]] = True   # nose and two limb joints
    wrong[1, [1, 2, 3, 4, 8]] = True
    wrong[3, :] = True
    # 3 heatmap px (< 3.2) is still right, 4 px is wrong: the fixed normaliser of SPEC §5.
    predicted = kps.copy()
    predicted[..., 0] += np.where(wrong, 16, 12)
    split = synthetic_split(kps)
    codec = ThesisCodec()
    pred = predict_split(split, heatmaps_forward(lambda rows: codec.encode(predicted[rows])[0]),
                         codec, batch_size=3)  # batches must not matter

    labelled, visible = kps[..., 2] > 0, kps[..., 2] == 2
    limb = np.zeros(17, bool)
    limb[list(LIMB_JOINTS)] = True
    for name, counted in (("all", labelled), ("visible", visible), ("limbs", labelled & limb)):
        per_image = [(~wrong[i] & counted[i]).sum() / counted[i].sum() for i in (0, 1, 3)]
        assert np.isnan(pred.thesis[name][2])
        np.testing.assert_allclose(pred.thesis[name][[0, 1, 3]], per_image, rtol=1e-6)
    assert pred.thesis["all"][0] == pytest.approx(14 / 17) and pred.thesis["all"][1] == pytest.approx(5 / 10)
    assert pred.thesis["visible"][0] == pytest.approx(12 / 14)    # 3 occluded left out
    assert pred.thesis["limbs"][0] == pytest.approx(6 / 8)
    assert pred.labelled.sum() == 17 + 10 + 17
    # per joint: over all people where the joint is labelled
    assert pred.correct[:, JOINT_INDEX["nose"]].sum() == 1       # only image 1's nose is right


def test_distance_is_euclidean_on_the_grid():
    kps = np.zeros((1, 17, 3))
    kps[..., :2] = 128
    kps[..., 2] = 2
    predicted = kps.copy()
    predicted[0, :, :2] += 12     # (3, 3) heatmap px: 4.24 >= 3.2 although each axis is < 3.2
    split = synthetic_split(kps)
    codec = ThesisCodec()
    pred = predict_split(split, heatmaps_forward(lambda rows: codec.encode(predicted[rows])[0]), codec)
    assert pred.thesis["all"][0] == 0


# --- real COCO sample ------------------------------------------------------------------------

def test_ground_truth_heatmaps_give_pck_1_and_ap_1(coco_sample_store):
    split = Store.open(coco_sample_store).split("val")
    coco = load_annotations(annotation_file(Store.open(coco_sample_store), "val"))
    # The Gaussian codec drops joints outside the crop (they happen where a tall person's
    # crop had to shrink to the image): keep people whose every labelled joint is inside.
    kps = np.asarray(split.keypoints)
    inside = ((kps[..., :2] >= 0) & (kps[..., :2] < 252)).all(-1) | (kps[..., 2] == 0)
    people = subset(split, inside.all(1))
    assert len(people) >= 30

    codec = GaussianCodec(refine="dark")  # sub-pixel decoding: OKS needs it for small people
    metrics, rows, results = score(people, predict_split(people, gt_source(people, codec), codec), coco)
    assert metrics["pck_thesis"] == {"all": 1.0, "visible": 1.0, "limbs": 1.0}
    assert metrics["pck@0.2"] == {"bbox": 1.0, "torso": 1.0}
    assert metrics["coco"]["AP"] == pytest.approx(1.0) and metrics["coco"]["AR"] == pytest.approx(1.0)
    assert all(v in (1.0, None) for v in metrics["pck_thesis_per_joint"].values())
    assert len(rows) == len(results) == len(people)

    # The thesis codec on every split: its argmax is the thesis ground truth, even for
    # joints outside the crop (clamped to the border cell).
    for name in ("train", "val", "test"):
        split = Store.open(coco_sample_store).split(name)
        pred = predict_split(split, gt_source(split, ThesisCodec()), ThesisCodec(), batch_size=16)
        assert all(np.nanmin(v) == 1.0 for v in pred.thesis.values())


def test_back_projection_round_trip_on_real_crops(coco_sample_store):
    for name in ("train", "val", "test"):
        split = Store.open(coco_sample_store).split(name)
        coco = load_annotations(annotation_file(Store.open(coco_sample_store), name))
        original = np.array([coco.anns[int(a)]["keypoints"] for a in split.ids[:, 1]], float).reshape(-1, 17, 3)
        gt, box_side = ground_truth(split, coco)
        labelled = split.keypoints[..., 2] > 0
        assert labelled.sum() > 50
        err = np.linalg.norm(gt[..., :2] - original[..., :2], axis=-1)[labelled]
        assert err.max() < 0.5
        # and through a codec: Gaussian targets decoded with DARK, then mapped back
        codec = GaussianCodec(refine="dark")
        xy, _ = codec.decode(codec.encode(np.asarray(split.keypoints))[0])
        inner = labelled & (split.keypoints[..., :2].min(-1) >= 12) & (split.keypoints[..., :2].max(-1) <= 240)
        assert np.linalg.norm(xy - split.keypoints[..., :2], axis=-1)[inner].max() < 0.05
        back = to_image(xy, np.asarray(split.boxes))
        assert np.linalg.norm(back - original[..., :2], axis=-1)[inner].max() < 0.5
        assert (box_side > 0).all()


def test_evaluate_writes_its_files_and_pycocotools_reads_the_results(coco_sample_store, tmp_path):
    from pycocotools.cocoeval import COCOeval

    run = make_run(tmp_path / "run")
    m = evaluate(run, coco_sample_store, split="test", flip=True, batch_size=4, progress=False)
    out = Path(m["out_dir"])
    assert out == run / "eval" / "test-gt-box-best-flip"   # gt-box is the default protocol
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("pck_thesis", "pck_thesis_per_joint", "pck@0.2", "coco", "n_images", "n_joints",
                "checkpoint", "split", "flip", "protocol", "skipped"):
        assert key in saved
    assert saved["protocol"] == "gt-box" and saved["skipped"]["images_unreadable"] == 0
    assert set(saved["pck_thesis"]) == {"all", "visible", "limbs"}
    assert set(saved["coco"]) >= {"AP", "AP50", "AP75", "APm", "APl", "AR"}
    assert saved["split"] == "test" and saved["flip"] is True
    assert saved["checkpoint"].endswith("best.safetensors")
    from hgpose.cpu import native_bf16

    assert saved["precision"] == ("bf16" if native_bf16() else "fp32")   # the default: auto
    n = len(Store.open(coco_sample_store).split("test"))
    assert saved["n_images"] == n
    with open(out / "per_image.csv") as f:
        assert len(list(csv.DictReader(f))) == n
    assert "| thesis PCK" in (out / "metrics.md").read_text()

    # The results file as is, through pycocotools' own loader and evaluator.
    coco = load_annotations(annotation_file(Store.open(coco_sample_store), "test"))
    from hgpose.evaluate.metrics import split_ground_truth

    gt = split_ground_truth(coco, Store.open(coco_sample_store).split("test").ids[:, 1])
    dt = gt.loadRes(str(out / "keypoints_test_results.json"))
    assert len(dt.anns) == n and all(len(a["keypoints"]) == 51 and a["category_id"] == 1 for a in dt.anns.values())
    ev = COCOeval(gt, dt, "keypoints")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(saved["coco"]["AP"])


def test_evaluate_explains_what_is_missing(coco_sample_store, tmp_path):
    with pytest.raises(HgposeError, match="not found"):
        evaluate(tmp_path / "nowhere", coco_sample_store)
    run = make_run(tmp_path / "run")
    with pytest.raises(HgposeError, match="--annotations"):
        evaluate(run, coco_sample_store, annotations=tmp_path / "moved.json", progress=False)
    with pytest.raises(HgposeError, match="epoch_007"):
        evaluate(run, coco_sample_store, checkpoint="epoch_007.safetensors", progress=False)


# --- flip test -------------------------------------------------------------------------------

def test_flip_back_swaps_pairs_and_restores_positions():
    rng = np.random.default_rng(1)
    kps = np.zeros((3, 17, 3))
    kps[..., :2] = rng.uniform(24, 232, (3, 17, 2))   # every joint somewhere else
    kps[..., 2] = 2
    mirrored = kps[:, list(FLIP_INDEX)].copy()           # the mirrored person's left is our right
    mirrored[..., 0] = 255 - mirrored[..., 0]            # crop flip about its centre (x -> 255 - x)
    codec = GaussianCodec(refine="dark")
    back = flip_back(torch.from_numpy(codec.encode(mirrored)[0]))
    xy, _ = codec.decode(back.numpy())
    err = np.abs(xy - kps[..., :2])
    assert err.max() < 0.15                              # crop px; the pairs are right
    # the whole-column shift of MSRA/mmpose is one column (4 crop px) too far on hgpose's grid
    shifted = torch.zeros_like(back)
    shifted[..., 1:] = torch.from_numpy(codec.encode(mirrored)[0]).flip(-1)[:, list(FLIP_INDEX)][..., :-1]
    assert np.abs(codec.decode(shifted.numpy())[0][..., 0] - kps[..., 0]).mean() == pytest.approx(4, abs=0.1)
    # thesis codec: flip-averaged ground truth keeps the original argmax
    thesis = ThesisCodec()
    avg = (torch.from_numpy(thesis.encode(kps)[0]) + flip_back(torch.from_numpy(thesis.encode(mirrored)[0]))) / 2
    np.testing.assert_array_equal(thesis.decode(avg.numpy())[0], thesis.decode(thesis.encode(kps)[0])[0])


def test_flip_pairs_are_left_right():
    assert FLIP_INDEX[JOINT_INDEX["left_wrist"]] == JOINT_INDEX["right_wrist"]
    assert FLIP_INDEX[JOINT_INDEX["right_ankle"]] == JOINT_INDEX["left_ankle"]
    assert FLIP_INDEX[JOINT_INDEX["nose"]] == JOINT_INDEX["nose"]


# --- command line ----------------------------------------------------------------------------

def test_cli_evaluate(coco_sample_store, tmp_path, capsys):
    from hgpose import cli

    if "evaluate" not in cli.COMMANDS:
        pytest.skip("evaluate is not registered in hgpose.cli yet")
    run = make_run(tmp_path / "run")
    code = cli.main(["evaluate", str(run), "--data", str(coco_sample_store), "--checkpoint", "last",
                     "--out", str(tmp_path / "ev"), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "thesis PCK" in printed and "COCO AP" in printed and "protocol gt-box" in printed
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["checkpoint"].endswith("last.safetensors")
    assert cli.main(["evaluate", str(tmp_path / "none"), "--data", str(coco_sample_store)]) == 2


@pytest.mark.parametrize("sources, fix", [
    (1, "pass the right file with --annotations"),
    (2, "put each source's annotation file back where the manifest records it, or re-run `hgpose prepare`"),
])
def test_people_missing_from_an_annotation_file_are_told_what_works(sources, fix):
    """--annotations replaces the file of a one-source store only: a store of several
    sources is never told to use it."""
    from types import SimpleNamespace

    from hgpose.evaluate.evaluate import check_annotated

    split = synthetic_split(np.zeros((4, 17, 3)))
    split = Split(split.name, split.images, split.keypoints, split.boxes, split.ids,
                  np.array([0, 0, 1, 1], np.uint8)[:len(split.ids)] % sources, split.present)
    cocos = {s: SimpleNamespace(anns={0: {}}) for s in range(sources)}   # only annotation 0 is there
    with pytest.raises(HgposeError) as e:
        check_annotated(split, cocos)
    assert str(e.value).endswith(fix) and "lacks" in str(e.value)
