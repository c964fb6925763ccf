"""LSP/LSPET into COCO-17: the reader on real LSPET, both .mat shapes, bad input, mixed stores."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

from builders import write_lsp_folder
from hgpose.cli import main
from hgpose.data.crop import to_image
from hgpose.data.prepare import prepare
from hgpose.data.store import SPLITS, Store
from hgpose.skeleton import JOINT_INDEX, JOINTS

# COCO joint -> LSP column, written out here independently of hgpose.data.formats.lsp.
# LSP order: right ankle, right knee, right hip, left hip, left knee, left ankle, right wrist,
# right elbow, right shoulder, left shoulder, left elbow, left wrist, neck, head top.
EXPECTED = {"right_ankle": 0, "right_knee": 1, "right_hip": 2, "left_hip": 3, "left_knee": 4,
            "left_ankle": 5, "right_wrist": 6, "right_elbow": 7, "right_shoulder": 8,
            "left_shoulder": 9, "left_elbow": 10, "left_wrist": 11}
FACE = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


def _stores(out):
    return [Store.open(out).split(split) for split in SPLITS]


# ----------------------------------------------------------------------------- real LSPET
def test_lspet_reader_maps_joints_flags_and_sides_on_real_people(lspet_small, tmp_path):
    raw = loadmat(lspet_small / "joints.mat")["joints"].transpose(2, 0, 1)   # [50, 14, 3]
    out = tmp_path / "store"
    manifest = prepare(f"lsp:{lspet_small}", out, val_size=5, test_size=0.1, workers=1, progress=False)
    assert manifest["splits"] == {"train": 40, "val": 5, "test": 5}
    (source,) = manifest["sources"]
    assert source["format"] == "lsp" and source["joints"] == [j for j in JOINTS if j not in FACE]
    assert source["counts"]["all"]["people"] == 50 and source["counts"]["all"]["crops"] == 50
    checked = 0
    seen, inside_crops = set(), []
    for split in _stores(out):
        assert (np.asarray(split.source) == 0).all()
        for (image_id, ann_id), box, kps, crop in zip(split.ids, split.boxes, split.keypoints, split.images):
            assert image_id == ann_id and image_id not in seen
            seen.add(int(image_id))
            person = raw[image_id - 1]
            path = lspet_small / "images" / f"im{image_id:05d}.jpg"
            width, height = Image.open(path).size
            back = to_image(kps[:, :2], box)
            for name, column in EXPECTED.items():
                x, y, flag = person[column]
                j = JOINT_INDEX[name]
                # LSPET's flag: 1 = annotated (visible), 0 = not annotated (no position)
                if flag == 1 and 0 <= x <= width and 0 <= y <= height:
                    assert kps[j, 2] == 2
                    np.testing.assert_allclose(back[j], (x, y), atol=0.01)
                    checked += 1
                else:  # not annotated, or outside the image: not usable
                    assert kps[j].tolist() == [0, 0, 0]
            assert all(kps[JOINT_INDEX[f]].tolist() == [0, 0, 0] for f in FACE)
            # the crop sits on the person: every labelled joint inside it (unless the image
            # could not hold the square, step 5 of the rule), and its pixels are the image
            # region resampled
            labelled = kps[:, 2] > 0
            x0, y0, side = (int(v) for v in box)
            if side < min(width, height):
                assert (kps[labelled, :2] >= 0).all() and (kps[labelled, :2] <= 256).all()
                inside_crops.append(image_id)
            region = np.asarray(Image.open(path).convert("RGB").crop((x0, y0, x0 + side, y0 + side))
                                .resize((256, 256), Image.BILINEAR), float)
            assert np.abs(region - crop).mean() < 2.0
    assert seen == set(range(1, 51)) and checked > 400 and len(inside_crops) > 25
    # LSP's head top and neck are dropped as keypoints but the crop is sized and centred on
    # them too: the head is in every crop the image could hold
    heads = 0
    for split in _stores(out):
        for (image_id, _), (x0, y0, side) in zip(split.ids, split.boxes):
            width, height = Image.open(lspet_small / "images" / f"im{image_id:05d}.jpg").size
            hx, hy, flag = raw[image_id - 1, 13]
            if side < min(width, height) and flag == 1 and 0 <= hx <= width and 0 <= hy <= height:
                assert x0 <= hx <= x0 + side and y0 <= hy <= y0 + side, image_id
                heads += 1
    assert heads > 25


def test_lspet_people_are_scored_against_a_derived_coco_file(lspet_small, tmp_path):
    out = tmp_path / "store"
    manifest = prepare(lspet_small, out, workers=1, progress=False)  # format detected
    ann_file = manifest["sources"][0]["annotations"]["test"]
    data = json.loads(open(ann_file).read())
    assert len(data["annotations"]) == 50 and data["categories"][0]["keypoints"] == list(JOINTS)
    test = Store.open(out).split("test")
    anns = {a["id"]: a for a in data["annotations"]}
    for (_, ann_id), kps, box in zip(test.ids, test.keypoints, test.boxes):
        a = anns[int(ann_id)]
        k = np.asarray(a["keypoints"]).reshape(17, 3)
        labelled = kps[:, 2] > 0
        np.testing.assert_allclose(to_image(kps[labelled, :2], box), k[labelled, :2], atol=0.01)
        # the person box is the labelled keypoints' extent
        x, y, w, h = a["bbox"]
        assert (x, y) == pytest.approx(tuple(k[labelled, :2].min(0)), abs=1e-3)
        assert (x + w, y + h) == pytest.approx(tuple(k[labelled, :2].max(0)), abs=2e-3)


# ----------------------------------------------------------------------------- synthetic
def _synthetic(n: int = 12, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    joints = np.zeros((n, 14, 3))
    images = []
    for i in range(n):
        h, w = int(rng.integers(120, 240)), int(rng.integers(120, 240))
        joints[i, :, 0] = rng.uniform(10, w - 10, 14)
        joints[i, :, 1] = rng.uniform(10, h - 10, 14)
        joints[i, :, 2] = 1  # visible, written in each dataset's own flag convention
        images.append(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    if n > 3:
        joints[3, 5, :2] = (-20, -30)  # outside the image: not usable
    return joints, images


def test_both_mat_shapes_give_the_same_store(tmp_path):
    joints, images = _synthetic()
    digests = []
    for layout in ("lspet", "lsp"):
        stored = joints.copy()
        if layout == "lsp":  # LSP's flag marks the occluded joints: 0 = visible
            stored[..., 2] = 1 - stored[..., 2]
        folder = write_lsp_folder(tmp_path / layout, stored, images, layout)
        out = tmp_path / f"out-{layout}"
        manifest = prepare(f"lsp:{folder}", out, val_size=2, test_size=2, workers=1, progress=False)
        assert manifest["splits"] == {"train": 8, "val": 2, "test": 2}
        assert manifest["sources"][0]["counts"]["all"]["joints_outside_image"] == 1
        digests.append([hashlib.sha256((out / s / f"{a}.npy").read_bytes()).hexdigest()
                        for s in SPLITS for a in ("images", "keypoints", "boxes", "ids")])
        stores = _stores(out)
        ids = [set(s.ids[:, 0].tolist()) for s in stores]
        assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
        assert set().union(*ids) == set(range(1, 13))
    assert digests[0] == digests[1]
    # seeded: the same seed draws the same split, another seed another one
    again = prepare(f"lsp:{tmp_path / 'lspet'}", tmp_path / "again", val_size=2, test_size=2, workers=1,
                    progress=False, seed=1)
    assert again["splits"] == {"train": 8, "val": 2, "test": 2}
    assert set(Store.open(tmp_path / "again").split("test").ids[:, 0]) != set(Store.open(tmp_path / "out-lspet").split("test").ids[:, 0])


@pytest.mark.parametrize("damage, message", [
    (lambda f: savemat(f / "joints.mat", {"points": np.zeros((14, 3, 3))}),
     "has no matrix 'joints' (found points); give the joints.mat of LSP or LSPET"),
    (lambda f: savemat(f / "joints.mat", {"joints": np.zeros((14, 2, 3))}),
     "'joints' has shape (14, 2, 3), expected 14 x 3 x N (LSPET) or 3 x 14 x N (LSP)"),
    (lambda f: (f / "images" / "im00002.jpg").unlink(),
     "im00002.jpg: not found, but"),
    (lambda f: cv2.imwrite(str(f / "images" / "im00004.jpg"), np.zeros((50, 50, 3), np.uint8)),
     "holds 4 images but"),
    (lambda f: (f / "joints.mat").write_bytes(b"MATLAB 5.0 garbage"),
     "not a readable MATLAB file"),
])
def test_bad_lsp_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, damage, message):
    joints, images = _synthetic(3)
    folder = write_lsp_folder(tmp_path / "lsp", joints, images)
    damage(folder)
    out = tmp_path / "out"
    assert main(["prepare", f"lsp:{folder}", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert str(folder) in err
    assert not out.exists()


# ----------------------------------------------------------------------------- mixed stores
def test_one_store_holds_coco_and_lspet(coco_sample, lspet_small, tmp_path, capsys):
    out = tmp_path / "mixed"
    assert main(["prepare", str(coco_sample), f"lsp:{lspet_small}", str(out), "--test-size", "0.1",
                 "--val-size", "5", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "coco-sample/train2017" in printed and "lspet50/all" in printed and "5 absent" in printed
    m = Store.open(out).manifest
    coco, lsp = m["sources"]
    assert (coco["name"], coco["format"], lsp["name"], lsp["format"]) == ("coco-sample", "coco", "lspet50", "lsp")
    assert len(coco["joints"]) == 17 and len(lsp["joints"]) == 12
    assert coco["splits"] == {"train": 77, "val": 46, "test": 9}
    assert lsp["splits"] == {"train": 40, "val": 5, "test": 5}
    assert m["splits"] == {"train": 117, "val": 51, "test": 14}
    for split in _stores(out):
        source = np.asarray(split.source)
        n_coco = m["sources"][0]["splits"][split.name]
        # a split's rows: the first source's crops, then the second's
        assert (source[:n_coco] == 0).all() and (source[n_coco:] == 1).all()
        present = split.joints_present(slice(None))
        assert present[:n_coco].all() and (present[n_coco:].sum(1) == 12).all()
        assert not present[n_coco:, [JOINT_INDEX[f] for f in FACE]].any()
    # the COCO part of the store is exactly the COCO-only store
    alone = prepare(coco_sample, tmp_path / "alone", test_size=0.1, workers=1, progress=False)
    for split in SPLITS:
        a, b = Store.open(tmp_path / "alone").split(split), Store.open(out).split(split)
        n = alone["splits"][split]
        for name in ("images", "keypoints", "boxes", "ids"):
            assert np.array_equal(getattr(a, name), getattr(b, name)[:n])
    train = np.concatenate([Store.open(out).split("train").images.reshape(-1, 3)]) / 255
    np.testing.assert_allclose(m["mean_rgb"], train.mean(0), atol=1e-5)


def test_coco_alone_gives_the_arrays_it_always_did(coco_sample, coco_sample_store):
    """Digests of the numeric arrays made by hgpose before LSP support (commit 24a70c0) on
    the COCO sample, --test-size 0.1, seed 0. (images.npy was byte-identical too on the
    machine that checked; its bytes depend on the OpenCV build, so it is not pinned here.)
    keypoints.npy changed once since, on purpose: to the pixel convention (docs/architecture.md),
    u = (x - x0 + 0.5) * 256 / side - 0.5 where it was (x - x0) * 256 / side."""
    before = {
        "train/boxes.npy": "893bb26b0f82a744e20b5711fe17480f41f5d9283a8939e523aa469d0d2800c8",
        "train/ids.npy": "f93e1a68ef3dac5fa9ea515137564adbcb23fddb4384a5b7fc155d716a59cb68",
        "train/keypoints.npy": "0d73519cb451d28125e48418bab212268d6c1e7f7b7c6bfb2a9efbd9104e66f0",
        "val/boxes.npy": "1ab856ade1b6353311dda155528199453e073d859ca2ca08c668b394db8d7252",
        "val/ids.npy": "06b220ebae960079147dab311957a5af6845a5a60ee72ad86fa5d152c42aace4",
        "val/keypoints.npy": "4269b0bc9ba9d0b095a9d52fb572643571b77b3de88a9b6c97e1194f2b1bbc44",
        "test/boxes.npy": "8946bc7643cd5d5dcbcbabf40c4317e15507cf711c865d252f6c932a423f3f95",
        "test/ids.npy": "d97715789e79f666903252f1df8cca0a18720971a07a35f7e4b1b9db0511e464",
        "test/keypoints.npy": "98a4c28fc87bcbca23fa2d126dd5c337528434476a098a0818aff1b3c444acf4",
    }
    for name, digest in before.items():
        assert hashlib.sha256((coco_sample_store / name).read_bytes()).hexdigest() == digest, name
    assert Store.open(coco_sample_store).manifest["mean_rgb"] == pytest.approx([0.424443, 0.371561, 0.33684], abs=2e-6)


def test_a_store_written_before_sources_were_recorded_stays_readable(tmp_path):
    from builders import make_store

    store = make_store(tmp_path / "old", format_version=1)   # no source.npy
    split = Store.open(store).split("train")
    assert (np.asarray(split.source) == 0).all() and split.joints_present(slice(None)).all()


def test_a_store_older_than_the_pixel_convention_is_named_in_one_line(tmp_path):
    from builders import make_store

    note = Store.open(make_store(tmp_path / "v1", format_version=1)).old_pixel_convention
    assert note.startswith("this store (format_version 1) maps keypoints") and "prepare it again" in note
    assert "\n" not in note
    assert Store.open(make_store(tmp_path / "v3")).old_pixel_convention is None


def test_prepare_into_a_store_of_an_older_format_says_so_and_writes_nothing(coco_sample, coco_sample_store, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    manifest = json.loads((coco_sample_store / "manifest.json").read_text())
    manifest["format_version"] = 2
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="holds a store of format_version 2, made by an older hgpose"):
        prepare(f"coco:{coco_sample}", out, test_size=0.1, progress=False)
    assert not any((out / name).exists() for name in (".work", "train", "val", "test"))
    assert json.loads((out / "manifest.json").read_text()) == manifest
