"""`hgpose prepare`: the crop rule on real COCO, splits, resume and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hgpose.cli import main
from hgpose.data.formats import coco as coco_io
from hgpose.data.crop import CropBox, clean_keypoints, cut_crop, thesis_crop_box, to_image
from hgpose.data.prepare import prepare
from hgpose.data.splits import draw_test
from hgpose.data.store import Store
from hgpose.errors import HgposeError

ARRAY_NAMES = ("images", "keypoints", "boxes", "ids")


def _annotations(root: Path) -> dict:
    """annotation id -> (annotation, image info) over both COCO sources."""
    out = {}
    for source in coco_io.PARTS:
        data = json.loads(coco_io.annotation_path(root, source).read_text())
        images = {im["id"]: im for im in data["images"]}
        for ann in data["annotations"]:
            out[ann["id"]] = (ann, images[ann["image_id"]], source)
    return out


# ----------------------------------------------------------------------------- real data
def test_every_crop_obeys_the_thesis_rule(coco_sample, coco_sample_store):
    anns = _annotations(coco_sample)
    checked_centre = checked_side = 0
    for split in ("train", "val", "test"):
        s = Store.open(coco_sample_store).split(split)
        for (image_id, ann_id), (x0, y0, side), kps in zip(s.ids, s.boxes, s.keypoints):
            ann, info, _ = anns[int(ann_id)]
            assert ann["image_id"] == image_id
            W, H = info["width"], info["height"]
            assert side >= 1 and x0 >= 0 and y0 >= 0 and x0 + side <= W and y0 + side <= H
            orig, _ = clean_keypoints(np.array(ann["keypoints"]).reshape(17, 3), W, H)
            lab = orig[:, 2] > 0
            (kx0, ky0), (kx1, ky1) = orig[lab, :2].min(0), orig[lab, :2].max(0)
            bx, by, bw, bh = ann["bbox"]
            longer = max(max(bx + bw, kx1) - min(bx, kx0), max(by + bh, ky1) - min(by, ky0))
            if 1.1 * longer < min(W, H) - 1:  # the image can hold the enlarged square
                assert abs(side - 1.1 * longer) <= 0.5
                checked_side += 1
            for c, lo, extent, limit in ((x0, kx0, kx1, W), (y0, ky0, ky1, H)):
                if 0 < c and c + side < limit:  # not pushed by the image border
                    assert abs(c + side / 2 - (lo + extent) / 2) <= 0.51
                    checked_centre += 1
            # keypoints map back to the original annotation
            back = to_image(kps[:, :2], np.array([x0, y0, side]))
            np.testing.assert_allclose(back[lab], orig[lab, :2], atol=0.01)
            np.testing.assert_array_equal(kps[~lab], 0)
            np.testing.assert_array_equal(kps[:, 2], orig[:, 2])
    assert checked_side > 50 and checked_centre > 100


def test_crop_pixels_are_the_original_region_resampled(coco_sample, coco_sample_store):
    s = Store.open(coco_sample_store).split("val")
    anns = _annotations(coco_sample)
    errors = []
    for i in range(0, len(s), 5):
        _, info, source = anns[int(s.ids[i, 1])]
        x0, y0, side = (int(v) for v in s.boxes[i])
        image = Image.open(coco_sample / source / info["file_name"]).convert("RGB")
        ref = np.asarray(image.crop((x0, y0, x0 + side, y0 + side)).resize((256, 256), Image.BILINEAR), dtype=float)
        errors.append(np.abs(ref - s.images[i]).mean())
    # PIL bilinear is anti-aliased when shrinking: an independent resampler, same region
    assert np.mean(errors) < 1.0 and max(errors) < 2.0, errors


def test_counts_add_up_and_splits_are_disjoint(coco_sample_store):
    m = Store.open(coco_sample_store).manifest
    counts = m["sources"][0]["counts"]
    for source, c in counts.items():
        skipped = c["crowd"] + c["no_keypoints"] + c["people_all_joints_outside_image"]
        skipped += sum(c[p] for p in ("missing_image", "corrupt_image", "truncated_image", "size_mismatch"))
        assert c["people"] == skipped + c["crops"], source
    # the sample's SOURCE.md: 172 / 127 person annotations, 86 / 46 with a labelled keypoint
    assert (counts["train2017"]["people"], counts["val2017"]["people"]) == (172, 127)
    assert (counts["train2017"]["crops"], counts["val2017"]["crops"]) == (86, 46)
    sp = m["splits"]
    assert sp["train"] + sp["test"] == 86 and sp["val"] == 46 and sp["test"] == round(0.1 * 86)
    ids = {split: {tuple(r) for r in Store.open(coco_sample_store).split(split).ids} for split in sp}
    assert not ids["train"] & ids["test"]
    assert all(len(ids[k]) == sp[k] for k in sp)
    assert 0.2 < min(m["mean_rgb"]) and max(m["mean_rgb"]) < 0.6


def test_mean_rgb_is_the_mean_of_the_train_crops(coco_sample_store):
    images = Store.open(coco_sample_store).split("train").images
    np.testing.assert_allclose(Store.open(coco_sample_store).manifest["mean_rgb"],
                               images.reshape(-1, 3).mean(0) / 255, atol=1e-5)


def test_grey_images_of_the_sample_stay_grey(coco_sample, coco_sample_store):
    """COCO's grey photos (stored as 3 equal channels here; 1-channel JPEGs are covered by
    the bad-input test) give grey crops: no channel is mixed up or dropped."""
    anns = _annotations(coco_sample)
    found = 0
    for split in ("train", "val", "test"):
        s = Store.open(coco_sample_store).split(split)
        for i, (_, ann_id) in enumerate(s.ids):
            _, info, source = anns[int(ann_id)]
            pixels = np.asarray(Image.open(coco_sample / source / info["file_name"]))
            if pixels.ndim == 2 or (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all():
                crop = s.images[i].astype(int)
                assert (crop[..., 0] == crop[..., 1]).all() and (crop[..., 1] == crop[..., 2]).all()
                found += 1
    if not found:
        pytest.skip("no grey image in this sample")


def test_same_seed_same_split_other_seed_other_split():
    a, b, c = draw_test(1000, 100, seed=3), draw_test(1000, 100, seed=3), draw_test(1000, 100, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(a)) == 100 and (np.diff(a) > 0).all()
    # PCG64 is machine-independent: this draw is a fixed fact, the same everywhere.
    assert draw_test(10, 3, seed=0).tolist() == sorted(np.random.default_rng(0).choice(10, 3, replace=False).tolist())
    assert len(draw_test(86, 0.1, seed=0)) == 9


def test_test_size_larger_than_the_pool_is_a_clear_error(coco_sample, tmp_path):
    with pytest.raises(HgposeError, match=r"--test-size 5064 is larger than the 86 train2017"):
        prepare(coco_sample, tmp_path / "out", test_size=5064, progress=False)
    assert not (tmp_path / "out").exists()


def test_same_split_on_rerun_with_same_seed_and_finished_store_is_reused(coco_sample, coco_sample_store, tmp_path):
    m = prepare(coco_sample, tmp_path / "again", test_size=0.1, seed=0, workers=2, progress=False)
    for split in ("train", "val", "test"):
        for name in ARRAY_NAMES:
            a = np.load(coco_sample_store / split / f"{name}.npy")
            b = np.load(tmp_path / "again" / split / f"{name}.npy")
            assert np.array_equal(a, b), (split, name)  # 1 worker == 2 workers
    mtime = (tmp_path / "again" / "manifest.json").stat().st_mtime_ns
    assert prepare(coco_sample, tmp_path / "again", test_size=0.1, seed=0, progress=False) == m
    assert (tmp_path / "again" / "manifest.json").stat().st_mtime_ns == mtime
    assert not (tmp_path / "again" / ".work").exists()
    with pytest.raises(HgposeError, match="already holds a finished dataset store"):
        prepare(coco_sample, tmp_path / "again", test_size=0.1, seed=1, progress=False)


def test_interrupted_run_resumes_to_identical_arrays(coco_sample, coco_sample_store, tmp_path, monkeypatch):
    """Ctrl-C after two shards, then a second run: only the rest is cropped."""
    from hgpose.data import prepare as prep

    calls = []
    real_crop_shard = prep.crop_shard

    def crop_then_interrupt(job):
        calls.append(real_crop_shard(job))
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(prep, "crop_shard", crop_then_interrupt)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        prepare(coco_sample, out, test_size=0.1, seed=0, workers=1, shard_images=8, progress=False)
    assert not (out / "manifest.json").exists()
    done = sorted(p.name for p in (out / ".work" / "0-train2017").iterdir())
    assert done[:2] == ["shard_00000", "shard_00001"]

    processed = []
    real_process = prep.process_image
    monkeypatch.setattr(prep, "process_image", lambda t: processed.append(t.image_id) or real_process(t))
    prepare(coco_sample, out, test_size=0.1, seed=0, workers=1, shard_images=8, progress=False)
    n_images = sum(c["images"] for c in Store.open(out).manifest["sources"][0]["counts"].values())
    assert len(processed) == n_images - 16  # the two finished shards were not redone
    for split in ("train", "val", "test"):
        for name in ARRAY_NAMES:
            assert (out / split / f"{name}.npy").read_bytes() == (coco_sample_store / split / f"{name}.npy").read_bytes()


def test_killed_after_the_drafts_moved_but_before_the_manifest(coco_sample, coco_sample_store, tmp_path, monkeypatch):
    """The last step renames the drafts into place, then writes manifest.json; a run
    stopped between the two must still resume to the complete, identical store."""
    from hgpose.data import prepare as prep

    real_write_json = prep.write_json

    def fail_on_manifest(path, obj):
        if Path(path).name == "manifest.json":
            raise KeyboardInterrupt
        real_write_json(path, obj)

    monkeypatch.setattr(prep, "write_json", fail_on_manifest)
    out = tmp_path / "late"
    with pytest.raises(KeyboardInterrupt):
        prepare(coco_sample, out, test_size=0.1, seed=0, workers=1, progress=False)
    assert (out / "train" / "images.npy").is_file() and not (out / "manifest.json").exists()
    monkeypatch.setattr(prep, "write_json", real_write_json)
    prepare(coco_sample, out, test_size=0.1, seed=0, workers=1, progress=False)
    for split in ("train", "val", "test"):
        for name in ARRAY_NAMES:
            assert (out / split / f"{name}.npy").read_bytes() == (coco_sample_store / split / f"{name}.npy").read_bytes()


def test_kill_9_then_rerun_gives_a_complete_identical_store(coco_sample, coco_sample_store, tmp_path):
    out = tmp_path / "killed"
    code = (
        "import sys, time; from hgpose.data import prepare as p\n"
        "real = p.crop_shard\n"
        "def slow(job):\n"
        "    n = real(job); print('shard', flush=True); time.sleep(0.3); return n\n"
        "p.crop_shard = slow\n"
        f"p.prepare({str(coco_sample)!r}, {str(out)!r}, test_size=0.1, workers=1, shard_images=4, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        assert proc.stdout.readline().strip() == "shard"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    assert main(["prepare", str(coco_sample), str(out), "--test-size", "0.1", "--workers", "1"]) == 0
    for split in ("train", "val", "test"):
        for name in ARRAY_NAMES:
            assert np.array_equal(np.load(out / split / f"{name}.npy"), np.load(coco_sample_store / split / f"{name}.npy"))


# ----------------------------------------------------------------------------- bad input
def _write_image(path: Path, w=160, h=120, grey=False, value=90) -> None:
    rng = np.random.default_rng(0)
    img = (rng.integers(0, 40, (h, w, 1 if grey else 3)) + value).astype(np.uint8)
    cv2.imwrite(str(path), img)


def _person(ann_id, image_id, kps, bbox=(20, 20, 60, 80), crowd=0):
    flat = []
    for k in kps:
        flat += list(k)
    flat += [0, 0, 0] * (17 - len(kps))
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": crowd, "bbox": list(bbox),
            "area": 100.0, "num_keypoints": sum(1 for k in kps if k[2] > 0), "keypoints": flat}


def make_coco_root(root: Path) -> Path:
    """A tiny COCO root with one example of every kind of bad input."""
    person = {"id": 1, "name": "person", "supercategory": "person"}
    (root / "annotations").mkdir(parents=True)
    train_images, train_anns = [], []
    for i, name in enumerate(["ok", "missing", "corrupt", "truncated", "grey", "outside", "zero_box", "crowd", "nokp"], 1):
        train_images.append({"id": i, "file_name": f"{name}.jpg", "width": 160, "height": 120})
    (root / "train2017").mkdir()
    for name in ["ok", "grey", "outside", "zero_box", "crowd", "nokp"]:
        _write_image(root / "train2017" / f"{name}.jpg", grey=name == "grey")
    (root / "train2017" / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg \xff\xd9")
    _write_image(root / "train2017" / "truncated.jpg")
    data = (root / "train2017" / "truncated.jpg").read_bytes()
    (root / "train2017" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    kps = [(50, 40, 2), (60, 70, 1), (55, 90, 2)]
    for i in range(1, 6):
        train_anns.append(_person(i, i, kps))
    train_anns.append(_person(6, 6, kps + [(300, 50, 2)]))          # a keypoint outside the image
    train_anns.append(_person(7, 7, kps, bbox=(40, 30, 0, 0)))      # zero-area box
    train_anns.append(_person(8, 8, kps, crowd=1))
    train_anns.append(_person(9, 9, []))
    train_anns.append(_person(10, 1, [(100, 40, 2), (120, 100, 2)], bbox=(90, 30, 40, 80)))  # second person
    for source, images, anns in (("train2017", train_images, train_anns),
                                 ("val2017", [{"id": 100, "file_name": "v.jpg", "width": 160, "height": 120}],
                                  [_person(100, 100, kps)])):
        (root / "annotations" / f"person_keypoints_{source}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": [person]}))
    (root / "val2017").mkdir()
    _write_image(root / "val2017" / "v.jpg")
    return root


def test_bad_images_are_skipped_counted_and_the_run_succeeds(tmp_path, capsys):
    root = make_coco_root(tmp_path / "coco")
    out = tmp_path / "out"
    assert main(["prepare", str(root), str(out), "--test-size", "1", "--workers", "2"]) == 0
    m = Store.open(out).manifest
    c = m["sources"][0]["counts"]["train2017"]
    assert (c["missing_image"], c["corrupt_image"], c["truncated_image"]) == (1, 1, 1)
    assert (c["crowd"], c["no_keypoints"], c["joints_outside_image"], c["zero_area_boxes"]) == (1, 1, 1, 1)
    assert c["people"] == 10 and c["crops"] == 5  # ok (2 people), grey, outside, zero_box
    assert m["splits"] == {"train": 4, "val": 1, "test": 1}
    printed = capsys.readouterr().out
    assert "skipped: truncated image" in printed and "mean RGB" in printed

    # Broken images leave gaps in the planned rows: every stored crop must still be the
    # crop of its own person (the split is copied out of the drafts in order).
    file_names = {im["id"]: im["file_name"] for im in json.loads(
        coco_io.annotation_path(root, "train2017").read_text())["images"]}
    for split in (Store.open(out).split("train"), Store.open(out).split("test")):
        for i, (image_id, _) in enumerate(split.ids):
            image = cv2.imread(str(root / "train2017" / file_names[image_id]), cv2.IMREAD_COLOR)
            box = CropBox(*(int(v) for v in split.boxes[i]))
            assert np.array_equal(split.images[i], cv2.cvtColor(cut_crop(image, box), cv2.COLOR_BGR2RGB))

    stores = {tuple(r): (s, i) for s in (Store.open(out).split("train"), Store.open(out).split("test")) for i, r in enumerate(s.ids)}
    split, i = stores[(6, 6)]  # the outside keypoint is unlabelled in the store
    assert split.keypoints[i, 3].tolist() == [0, 0, 0] and (split.keypoints[i, :3, 2] > 0).all()
    split, i = stores[(7, 7)]  # zero-area box: the square follows the keypoints' extent (45 px tall)
    assert split.boxes[i, 2] == round(1.1 * 50)
    split, i = stores[(5, 5)]
    img = split.images[i]
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all()


@pytest.mark.parametrize("damage, message", [
    (lambda t: t[: len(t) // 2], "not valid JSON"),
    (lambda t: t.replace('"file_name"', '"name"', 1), r"images\[0\] has no 'file_name'"),
    (lambda t: t.replace('"bbox"', '"box"', 1), r"annotations\[0\] \(id 1\) has no 'bbox'"),
    (lambda t: t.replace('"keypoints": [50, 40, 2, ', '"keypoints": [', 1), "has 48 keypoint values, expected 51"),
])
def test_malformed_annotation_file_stops_with_one_line_and_writes_nothing(tmp_path, capsys, damage, message):
    root = make_coco_root(tmp_path / "coco")
    ann = root / "annotations" / "person_keypoints_train2017.json"
    ann.write_text(damage(ann.read_text()))
    out = tmp_path / "out"
    assert main(["prepare", str(root), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(ann) in err and pytest.importorskip("re").search(message, err), err
    assert not out.exists()


def test_missing_annotation_file_names_the_layout(tmp_path, capsys):
    (tmp_path / "coco").mkdir()
    assert main(["prepare", f"coco:{tmp_path / 'coco'}", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "person_keypoints_train2017.json: not found" in err and "COCO_ROOT must hold" in err
    # without the format named, the folder is neither layout: say what was expected
    assert main(["prepare", str(tmp_path / "coco"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "neither a COCO root (annotations/person_keypoints_*.json) nor an LSP folder (joints.mat + images/)" in err
    assert not (tmp_path / "out").exists()


def test_test_size_option_parsing(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "a", "b", "--test-size", "1.5"])
    assert "fraction in (0, 1)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the rule
def test_crop_rule_edge_cases():
    kps = np.zeros((17, 3))
    kps[:3] = [(100, 100, 2), (140, 100, 2), (120, 200, 1)]
    # centred on the keypoints' extent (120, 150), not on the (wider) box
    box = thesis_crop_box((60, 90, 100, 110), kps, 1000, 1000)
    assert box == CropBox(x0=round(120 - 60.5), y0=round(150 - 60.5), side=121)
    # the image cannot hold the square: the largest square it can, pushed inside
    box = thesis_crop_box((0, 0, 300, 100), kps, 320, 240)
    assert box.side == 240 and box.y0 == 0 and box.x0 == 0
    # near the right border: moved back inside horizontally
    kps2 = np.zeros((17, 3))
    kps2[:2] = [(310, 100, 2), (318, 140, 2)]
    box = thesis_crop_box((305, 95, 14, 50), kps2, 320, 240)
    assert box.x0 + box.side == 320 and abs(box.y0 + box.side / 2 - 120) <= 0.5
    with pytest.raises(ValueError):
        thesis_crop_box((0, 0, 10, 10), np.zeros((17, 3)), 100, 100)


def test_a_full_disk_stops_before_any_cropping_with_one_line(tmp_path, capsys, monkeypatch):
    """The drafts reserve their disk space first, so a too-small disk fails in seconds, not hours in."""
    import errno

    from hgpose.data import prepare as prep

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prep.os, "posix_fallocate", no_space)
    cropped = []
    monkeypatch.setattr(prep, "crop_shard", lambda job: cropped.append(job) or len(job.tasks))
    root = make_coco_root(tmp_path / "coco")
    assert main(["prepare", str(root), str(tmp_path / "out"), "--test-size", "1", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not enough disk space" in err and "free some space" in err, err
    assert cropped == [] and not (tmp_path / "out" / "manifest.json").exists()


def test_shards_without_a_single_crop_keep_the_dtypes(tmp_path):
    """One image per shard: the broken images' shards hold no crop at all."""
    root = make_coco_root(tmp_path / "coco")
    prepare(root, tmp_path / "big", test_size=1, workers=1, progress=False)
    prepare(root, tmp_path / "small", test_size=1, workers=1, shard_images=1, progress=False)
    for split in ("train", "val", "test"):
        for name in ARRAY_NAMES:
            big = np.load(tmp_path / "big" / split / f"{name}.npy")
            small = np.load(tmp_path / "small" / split / f"{name}.npy")
            assert small.dtype == big.dtype and np.array_equal(small, big), (split, name)
    assert Store.open(tmp_path / "small").split("train").ids.dtype == np.int64
