"""Hostile but realistic data entering hgpose (issue 26): synth, prepare and demo never
replace or delete a file they did not write; a demo is never silently reused for other
sizes; LSP's joints.mat is read by each dataset's own meaning or refused; EXIF-tagged
dataset images are cropped as stored and counted; every value is checked where it enters;
a full disk leaves a command's outputs complete or absent, and the same command then
completes. Every input is built here on the fly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from builders import make_run, make_store, write_lsp_folder
from hgpose.cli import main
from hgpose.data.prepare import prepare
from hgpose.data.store import SPLITS, Store
from hgpose.errors import HgposeError
from hgpose.io import run_lock, save_npy, write_json
from hgpose.synth import generate
from hgpose.workers import pool_size, usable_cpus

ARRAYS = ("images", "keypoints", "boxes", "ids", "source")
SMALL = ["--test-size", "1", "--workers", "1"]


# --- builders ------------------------------------------------------------------------------

def pixels(w: int = 160, h: int = 120, value: int = 60) -> np.ndarray:
    rng = np.random.default_rng(value)
    return (rng.integers(0, 60, (h, w, 3)) + value).astype(np.uint8)


def jpeg(w: int = 160, h: int = 120, value: int = 60) -> bytes:
    ok, data = cv2.imencode(".jpg", pixels(w, h, value))
    assert ok
    return data.tobytes()


def person(ann_id: int, image_id: int, **changes) -> dict:
    kps = [50, 40, 2, 60, 70, 1, 55, 90, 2] + [0] * 42
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": [20, 20, 60, 80],
            "area": 100.0, "num_keypoints": 3, "keypoints": kps, **changes}


def coco_root(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A tiny COCO root: 4 train images and 1 val image of 160 x 120 with one person each;
    `extra` (name -> bytes) adds train images, one person each."""
    parts = {"train2017": {f"ok{i}.jpg": jpeg(value=40 + 30 * i) for i in range(4)} | (extra or {}),
             "val2017": {"v.jpg": jpeg(value=100)}}
    (root / "annotations").mkdir(parents=True)
    for part, files in parts.items():
        (root / part).mkdir()
        entries, anns = [], []
        for i, (name, data) in enumerate(files.items(), 1):
            (root / part / name).write_bytes(data)
            entries.append({"id": i, "file_name": name, "width": 160, "height": 120})
            anns.append(person(i, i))
        annotation_file(root, part).write_text(json.dumps(
            {"images": entries, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return root


def annotation_file(root: Path, part: str = "train2017") -> Path:
    return root / "annotations" / f"person_keypoints_{part}.json"


def edit_annotations(root: Path, change) -> Path:
    path = annotation_file(root)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (its path relative to it) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def last_error_line(capsys, *fragments: str) -> str:
    """The one error line a command printed last; a progress line before it may stand."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line for line in lines if line.startswith("hgpose ")] == lines[-1:], lines
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


def same_store(a: Path, b: Path) -> None:
    for split in SPLITS:
        for name in ARRAYS:
            assert (a / split / f"{name}.npy").read_bytes() == (b / split / f"{name}.npy").read_bytes(), (split, name)


def lsp_people(n: int, size: int = 200, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """n people (joints [n,14,3] well inside size x size images, flag column 1) and images."""
    rng = np.random.default_rng(seed)
    joints = np.ones((n, 14, 3))
    joints[..., :2] = rng.uniform(70, 130, (n, 14, 2))
    return joints, [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


# --- 1. never replace or delete what hgpose did not write -----------------------------------

def test_synth_refuses_a_real_coco_and_leaves_every_file_as_it_was(tmp_path, capsys):
    real = coco_root(tmp_path / "coco", {"000000000001.jpg": jpeg()})  # the name synth's images have
    before = snapshot(real)
    assert main(["synth", str(real), "--train-images", "2", "--val-images", "1", "--workers", "1"]) == 2
    one_error_line(capsys, f"hgpose synth: error: {real}: holds annotations, train2017, val2017, which "
                           "`hgpose synth` did not write", "choose a new or empty OUT_DIR")
    assert snapshot(real) == before
    assert sorted(p.name for p in real.iterdir()) == ["annotations", "train2017", "val2017"]  # no lock, no marker


def test_demo_refuses_an_out_dir_whose_data_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "demo"
    coco_root(out / "coco", {"000000000001.jpg": jpeg()})
    before = snapshot(out)
    assert main(["demo", "--out", str(out), "--train-images", "2", "--val-images", "1"]) == 2
    one_error_line(capsys, f"--out {out}: holds coco, which `hgpose demo` did not write")
    assert snapshot(out) == before
    # a demo folder of its own, but a real COCO where its synthetic data belongs: synth's rule
    write_json(out / ".hgpose-demo.json", {"train_images": 2, "val_images": 1, "seed": 0})
    before = snapshot(out)
    assert main(["demo", "--out", str(out), "--train-images", "2", "--val-images", "1"]) == 2
    one_error_line(capsys, f"{out / 'coco'}: holds annotations, train2017, val2017, which `hgpose synth` did not write")
    assert snapshot(out) == before


def test_synth_reruns_in_its_own_folder_and_refuses_a_link_there(tmp_path, capsys):
    out = tmp_path / "synth"
    generate(out, train_images=3, val_images=1, size=(96, 64), workers=1, progress=False)
    assert (out / ".hgpose-synth.json").is_file() and (out / "synth.json").is_file()
    (out / "train2017" / "notes.txt").write_text("mine")
    generate(out, train_images=2, val_images=1, size=(96, 64), workers=1, progress=False)
    assert sorted(p.name for p in (out / "train2017").iterdir()) == [
        "000000000001.jpg", "000000000002.jpg", "notes.txt"]  # its own stale image gone, the user's file kept
    # val2017 replaced by a link to someone's photos, named like synth's images
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "000010000099.jpg").write_bytes(jpeg())
    shutil.rmtree(out / "val2017")
    (out / "val2017").symlink_to(photos)
    assert main(["synth", str(out), "--train-images", "2", "--val-images", "1", "--size", "96", "64",
                 "--workers", "1"]) == 2
    one_error_line(capsys, f"{out / 'val2017'}: is a link, where `hgpose synth` keeps a folder of its own")
    assert [p.name for p in photos.iterdir()] == ["000010000099.jpg"]


def test_an_interrupted_synth_leaves_no_old_annotations_and_its_rerun_completes(tmp_path, monkeypatch):
    from hgpose.synth import dataset

    out, fresh = tmp_path / "synth", tmp_path / "fresh"
    generate(out, train_images=4, val_images=2, size=(96, 64), workers=1, progress=False)
    real_make, calls = dataset._make_image, []

    def interrupted(job):
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_make(job)

    monkeypatch.setattr(dataset, "_make_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(out, train_images=3, val_images=1, seed=1, size=(96, 64), workers=1, progress=False)
    # incomplete, and visibly so: no synth.json, no annotation file of the old run beside new images
    assert not (out / "synth.json").exists() and list((out / "annotations").iterdir()) == []
    assert (out / ".hgpose-synth.json").is_file()
    monkeypatch.undo()
    generate(out, train_images=3, val_images=1, seed=1, size=(96, 64), workers=1, progress=False)
    generate(fresh, train_images=3, val_images=1, seed=1, size=(96, 64), workers=1, progress=False)
    mine = {k: v for k, v in snapshot(out).items() if not k.endswith(".json") or "annotations" in k}
    assert mine == {k: v for k, v in snapshot(fresh).items() if not k.endswith(".json") or "annotations" in k}


def test_prepare_refuses_an_out_dir_holding_files_it_did_not_write(tmp_path, capsys):
    root = coco_root(tmp_path / "coco")
    project = tmp_path / "project"
    (project / "train").mkdir(parents=True)
    (project / "notes.txt").write_text("mine")
    (project / "train" / "images.npy").write_bytes(b"my own array")
    before = snapshot(project)
    assert main(["prepare", str(root), str(project), *SMALL]) == 2
    one_error_line(capsys, f"{project}: holds notes.txt, train, which `hgpose prepare` did not write",
                   "give a new or empty OUT_DIR")
    assert snapshot(project) == before and sorted(p.name for p in project.iterdir()) == ["notes.txt", "train"]
    # the dataset folder itself
    before = snapshot(root)
    assert main(["prepare", str(root), str(root), *SMALL]) == 2
    one_error_line(capsys, f"{root}: holds annotations, train2017, val2017, which `hgpose prepare` did not write")
    assert snapshot(root) == before
    # an existing empty folder is prepare's to fill: marked first, then filled
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", str(root), str(empty), *SMALL]) == 0
    assert (empty / ".hgpose-prepare.json").is_file() and (empty / "manifest.json").is_file()


# --- 2. a demo is never reused for other sizes ------------------------------------------------

def test_demo_with_other_sizes_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    from hgpose.data import prepare as prep

    def stop(*args, **kwargs):  # the demo's second stage: synth has run, nothing trained yet
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "prepare", stop)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--minutes", "1", "--val-images", "1"]
    assert main(args + ["--train-images", "3"]) == 130
    capsys.readouterr()
    assert json.loads((out / "coco" / "synth.json").read_text())["splits"]["train2017"]["images"] == 3
    before = snapshot(out)
    for other in (["--train-images", "5"], ["--train-images", "3", "--seed", "1"]):
        assert main(args + other) == 2
        one_error_line(capsys, f"--out {out}: holds a demo made with --train-images 3 --val-images 1 --seed 0",
                       "choose another --out")
    assert snapshot(out) == before
    # the same sizes pass the check and reuse the data (synth is not run again)
    assert main(args + ["--train-images", "3"]) == 130
    capsys.readouterr()
    assert snapshot(out / "coco") == {k[5:]: v for k, v in before.items() if k.startswith("coco/")}
    # a demo made before the marker existed: its synth.json says how it was made
    (out / ".hgpose-demo.json").unlink()
    assert main(args + ["--train-images", "5"]) == 2
    one_error_line(capsys, "holds a demo made with --train-images 3 --val-images 1 --seed 0")


# --- 3. LSP's joints.mat ------------------------------------------------------------------------

def test_lsp_flags_are_read_by_each_datasets_own_meaning(tmp_path):
    """LSPET (14 x 3 x N): 1 = annotated, 0 = not annotated, its position a placeholder that
    can be pixel (0, 0). LSP (3 x 14 x N): 0 = visible, 1 = occluded, every joint placed."""
    from hgpose.skeleton import JOINT_INDEX

    joints, images = lsp_people(4)
    lspet = joints.copy()
    lspet[:, 0] = (0, 0, 0)                       # right ankle: not annotated, placeholder (0, 0)
    lsp = joints.copy()
    lsp[..., 2] = 0                               # visible ...
    lsp[:, 0, 2] = 1                              # ... but the right ankle occluded, at its position
    ankle = JOINT_INDEX["right_ankle"]
    for layout, stored in (("lspet", lspet), ("lsp", lsp)):
        out = tmp_path / f"out-{layout}"
        manifest = prepare(f"lsp:{write_lsp_folder(tmp_path / layout, stored, images, layout)}", out,
                           test_size=1, val_size=1, workers=1, progress=False)
        split = Store.open(out).split("train")
        flags = split.keypoints[:, :, 2]
        if layout == "lspet":
            assert split.keypoints[:, ankle].tolist() == [[0, 0, 0]] * len(split)
            assert (split.boxes[:, :2] > 40).all()  # the placeholder at (0, 0) does not size the crop
            assert manifest["sources"][0]["files"]["joints"]["flags"] == "1 = annotated (visible), 0 = not annotated"
        else:
            assert (flags[:, ankle] == 1).all() and (np.delete(flags, ankle, 1)[:, 5:] == 2).all()
            assert manifest["sources"][0]["files"]["joints"]["flags"].startswith("0 = visible, 1 = occluded")


V73_HEADER = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Dec  7 10:00:00 2026 HDF5 schema 1.00 ."
              .ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM") + b"\x00" * 400


@pytest.mark.parametrize("damage, message", [
    (lambda f: savemat(f / "joints.mat", {"joints": lsp_people(3)[0]}),           # N x 14 x 3, N = 3
     "'joints' has shape 3 x 14 x 3, which is LSP's 3 x 14 x N for 3 people but also an N x 14 x 3 array"),
    (lambda f: savemat(f / "joints.mat", {"joints": np.ones((5, 14, 3))}),
     "'joints' has shape (5, 14, 3), expected 14 x 3 x N (LSPET) or 3 x 14 x N (LSP); an N x 14 x 3 array "
     "must be saved transposed"),
    (lambda f: (f / "joints.mat").write_bytes(V73_HEADER),
     "a MATLAB v7.3 (HDF5) file, which hgpose does not read; re-save it in the v7 format"),
    (lambda f: savemat(f / "joints.mat", {"joints": np.concatenate(
        [np.ones((14, 2, 3)), np.full((14, 1, 3), 2.0)], axis=1)}),
     "the flag of right_ankle in column 1 is 2.0 (42 such flag(s)); LSP and LSPET flags are 0 or 1"),
    (lambda f: savemat(f / "joints.mat", {"joints": np.ones((14, 3, 0))}),
     "'joints' holds no person (N = 0)"),
    (lambda f: ((f / "images" / "im00002.jpg").unlink(), (f / "images" / "im00002.jpg").mkdir()),
     "im00002.jpg: is a folder, not an image file (1 such)"),
    (lambda f: ((f / "joints.mat").unlink(), (f / "joints.mat").mkdir()),
     "joints.mat: is a folder, not a MATLAB file"),
])
def test_an_ambiguous_or_unreadable_joints_mat_is_one_line_before_anything_is_written(tmp_path, capsys, damage,
                                                                                    message):
    joints, images = lsp_people(3)
    folder = write_lsp_folder(tmp_path / "lsp", joints, images)
    damage(folder)
    out = tmp_path / "out"
    assert main(["prepare", f"lsp:{folder}", str(out), "--workers", "1"]) == 2
    one_error_line(capsys, str(folder), message)
    assert not out.exists()


def test_a_joints_mat_matlab_saved_for_one_person_is_read(tmp_path):
    """MATLAB drops a trailing dimension of 1: one LSPET person is stored 14 x 3."""
    joints, images = lsp_people(1)
    folder = write_lsp_folder(tmp_path / "lsp", joints, images)
    savemat(folder / "joints.mat", {"joints": joints[0]})
    manifest = prepare(f"lsp:{folder}", tmp_path / "out", workers=1, progress=False)
    assert manifest["splits"] == {"train": 1, "val": 0, "test": 0}
    assert (Store.open(tmp_path / "out").split("train").keypoints[0, 5:, 2] == 2).all()


# --- 4. EXIF orientation in prepare ---------------------------------------------------------------

def test_an_exif_tagged_dataset_image_is_cropped_as_stored_and_counted(tmp_path, capsys):
    """COCO annotates the stored pixels: a photo tagged "turn 90 degrees" (orientation 6) gives
    the crops its stored pixels give, and the summary and manifest count it."""
    from hgpose.data.crop import CropBox, cut_crop

    stored = Image.fromarray(pixels(value=70)[..., ::-1].copy())
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged, plain = tmp_path / "tagged.jpg", tmp_path / "plain.jpg"
    stored.save(tagged, quality=90, exif=exif)
    stored.save(plain, quality=90)
    roots = {name: coco_root(tmp_path / f"coco-{name}", {"photo.jpg": path.read_bytes()})
             for name, path in (("tagged", tagged), ("plain", plain))}
    for name, root in roots.items():
        assert main(["prepare", str(root), str(tmp_path / name), *SMALL]) == 0
        printed = capsys.readouterr().out
        row = next(line for line in printed.splitlines() if line.startswith("images with EXIF orientation"))
        counts = Store.open(tmp_path / name).sources[0]["counts"]["train2017"]
        assert counts["exif_oriented_images"] == row.split()[-2:].count("1") == (name == "tagged")
        assert counts["crops"] == 5 and counts["size_mismatch"] == 0
    same_store(tmp_path / "tagged", tmp_path / "plain")
    # and that is the crop of the stored pixels, not of the picture turned upright
    image = cv2.imread(str(tagged), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    for split in (Store.open(tmp_path / "tagged").split(s) for s in ("train", "test")):
        for i in np.flatnonzero(split.ids[:, 0] == 5):
            crop = cv2.cvtColor(cut_crop(image, CropBox(*(int(v) for v in split.boxes[i]))), cv2.COLOR_BGR2RGB)
            assert np.array_equal(split.images[i], crop)


# --- 5. values checked where they enter --------------------------------------------------------------

def test_pixel_limits_and_sizes_beyond_a_float_are_one_line_before_anything_is_written(tmp_path, capsys,
                                                                                       monkeypatch):
    root = coco_root(tmp_path / "coco")
    out = tmp_path / "out"
    for option in ("--max-pixels", "--test-size"):
        with pytest.raises(SystemExit) as e:
            main(["prepare", str(root), str(out), option, "1e400"])
        assert e.value.code == 2 and "'1e400': give a finite whole" in capsys.readouterr().err
    with pytest.raises(HgposeError, match=r"^--test-size inf: give a whole count >= 0 or a fraction in \(0, 1\)$"):
        prepare(root, out, test_size=float("inf"), workers=1, progress=False)  # the API, past the parser
    monkeypatch.setenv("HGPOSE_MAX_PIXELS", "1e400")
    assert main(["prepare", str(root), str(out), *SMALL]) == 2
    one_error_line(capsys, "HGPOSE_MAX_PIXELS='1e400': give a finite whole pixel count >= 1")
    assert not out.exists()


@pytest.mark.parametrize("change, message", [
    (lambda d: d["images"][0].update(id=2**63), "images[0] id 9223372036854775808 is outside 0 .. 2^63 - 1"),
    (lambda d: d["images"][0].update(id=-5), "images[0] id -5 is outside 0 .. 2^63 - 1"),
    (lambda d: d["annotations"][1].update(id=2**64), "annotations[1] (id 18446744073709551616) id "
                                                     "18446744073709551616 is outside 0 .. 2^63 - 1"),
    (lambda d: d["annotations"][0].update(id=-1), "annotations[0] (id -1) id -1 is outside 0 .. 2^63 - 1"),
    (lambda d: d["images"][0].update(width=10**400), "width 1000000000"),  # a 401-digit width
])
def test_ids_and_sizes_the_store_cannot_hold_are_one_line_before_anything_is_written(tmp_path, capsys, change,
                                                                                     message):
    root = coco_root(tmp_path / "coco")
    path = edit_annotations(root, change)
    out = tmp_path / "out"
    assert main(["prepare", str(root), str(out), *SMALL]) == 2
    one_error_line(capsys, f"{path}: ", message, "fix that entry")
    assert not out.exists()


def test_a_store_whose_source_column_points_past_its_sources_is_one_line(tmp_path):
    store = make_store(tmp_path / "store")
    save_npy(store / "train" / "source.npy", np.array([0] * 9 + [3], np.uint8))
    with pytest.raises(HgposeError, match=(
            rf"^{store / 'train' / 'source.npy'}: points to source 3, but {store / 'manifest.json'} lists 1 "
            r"source\(s\) \(0 .. 0\); the store is damaged")):
        Store.open(store).split("train")
    assert len(Store.open(store).split("val")) == 4


def test_prepare_starts_no_more_processes_than_shards_or_cores(tmp_path, monkeypatch, capsys):
    from hgpose.data import prepare as prep

    started, real_pool = [], prep.process_pool
    monkeypatch.setattr(prep, "process_pool", lambda n: started.append(n) or real_pool(n))
    root = coco_root(tmp_path / "coco")
    assert main(["prepare", str(root), str(tmp_path / "out"), "--test-size", "1", "--workers", "40"]) == 0
    assert started == [min(2, usable_cpus())]  # one shard of train2017, one of val2017
    assert pool_size(40, 1) == 1 and pool_size(40, 10_000) == pool_size(None, 10_000) == usable_cpus()
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    assert "never more than the CPU cores nor the shards" in " ".join(capsys.readouterr().out.split())


# --- 6. messages that say what is true and what works -------------------------------------------------

def test_a_motion_photo_is_cropped_not_called_truncated(tmp_path):
    """A phone's motion photo: a complete JPEG, then a video after its end-of-image marker."""
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
    root = coco_root(tmp_path / "coco", {"motion.jpg": jpeg(value=80) + video})
    counts = prepare(root, tmp_path / "out", test_size=1, workers=1, progress=False)["sources"][0]["counts"]
    assert counts["train2017"]["truncated_image"] == 0 and counts["train2017"]["crops"] == 5


def test_a_moved_store_of_several_sources_is_told_what_works(tmp_path, capsys):
    joints, images = lsp_people(4)
    lsp = write_lsp_folder(tmp_path / "lsp", joints, images)
    root = coco_root(tmp_path / "coco")
    store = tmp_path / "store"
    prepare([root, f"lsp:{lsp}"], store, test_size=1, val_size=1, workers=1, progress=False)
    root.rename(tmp_path / "moved")
    run = make_run(tmp_path / "run")
    recorded = annotation_file(root)
    assert main(["evaluate", str(run), "--data", str(store), "--device", "cpu", "--no-progress"]) == 2
    err = one_error_line(capsys, f"{recorded}: not found — {store / 'manifest.json'} records the test annotation "
                                 "file of source 'coco' there; put the files back where",
                         "or re-run `hgpose prepare` from where the datasets are now")
    assert "--annotations" not in err  # it would be refused for this store
    moved = tmp_path / "moved" / "annotations" / "person_keypoints_train2017.json"
    assert main(["evaluate", str(run), "--data", str(store), "--device", "cpu", "--annotations", str(moved)]) == 2
    one_error_line(capsys, f"--annotations: {store} holds 2 sources, and the option names one file; put the "
                           "files back where")
    # a store of one source: there the option works, and is named
    alone = tmp_path / "alone"
    prepare(tmp_path / "moved", alone, test_size=1, workers=1, progress=False)
    (tmp_path / "moved").rename(tmp_path / "moved-again")
    with pytest.raises(HgposeError, match="put it back there, or pass its new location with --annotations$"):
        Store.open(alone).annotation_files("test")


def test_a_keypoint_flag_is_printed_as_the_file_gives_it(tmp_path, capsys):
    root = coco_root(tmp_path / "coco")
    path = edit_annotations(root, lambda d: d["annotations"][0]["keypoints"].__setitem__(2, 2.0000001))
    assert main(["prepare", str(root), str(tmp_path / "out"), *SMALL]) == 2
    one_error_line(capsys, f"{path}: annotations[0] (id 1) has visibility flag(s) 2.0000001; COCO allows "
                           "v = 0 (not labelled), 1 (occluded), 2 (visible)")


# --- 7. a full disk: outputs complete or absent, the same command then completes --------------------------

def test_a_full_disk_during_prepare_leaves_no_store_and_the_rerun_completes(tmp_path, capsys, monkeypatch,
                                                                           disk_full):
    root = coco_root(tmp_path / "coco")
    prepare(root, tmp_path / "reference", test_size=1, workers=1, progress=False)
    written = disk_full(after=10**6)
    prepare(root, tmp_path / "counted", test_size=1, workers=1, progress=False)
    files = [Path(p).name for p in written]
    assert files[0].startswith("..hgpose-prepare.json.")  # marked first
    assert files[-1].startswith(".manifest.json.")  # complete last
    monkeypatch.undo()
    for n in range(len(files)):
        out = tmp_path / f"out-{n}"
        disk_full(after=n).clear()
        assert main(["prepare", str(root), str(out), *SMALL]) == 2
        last_error_line(capsys, f"hgpose prepare: error: {out}", "No space left on device; check that path")
        assert not (out / "manifest.json").exists()
        monkeypatch.undo()  # space freed: the same command completes the same store
        assert main(["prepare", str(root), str(out), *SMALL]) == 0
        capsys.readouterr()
        same_store(out, tmp_path / "reference")
        assert not (out / ".work").exists()


def test_a_full_disk_during_synth_leaves_no_dataset_and_the_rerun_completes(tmp_path, capsys, monkeypatch,
                                                                           disk_full):
    args = ["--train-images", "3", "--val-images", "1", "--size", "96", "64", "--workers", "1"]
    assert main(["synth", str(tmp_path / "reference"), *args]) == 0
    capsys.readouterr()
    reference = snapshot(tmp_path / "reference")
    written = disk_full(after=10**6)
    generate(tmp_path / "counted", train_images=3, val_images=1, size=(96, 64), workers=1, progress=False)
    files = [Path(p).name for p in written]
    assert files[0].startswith("..hgpose-synth.json.") and files[-1].startswith(".synth.json.")
    monkeypatch.undo()
    for n in range(len(files)):
        out = tmp_path / f"out-{n}"
        disk_full(after=n).clear()
        assert main(["synth", str(out), *args]) == 2
        last_error_line(capsys, f"hgpose synth: error: {out}", "No space left on device; check that path")
        assert not (out / "synth.json").exists()
        # the annotation files appear together, only when every image is written
        together = sorted(p.name for p in (out / "annotations").glob("*.json")) if (out / "annotations").is_dir() else []
        assert together == ([] if n < len(files) - 1 else
                            ["person_keypoints_train2017.json", "person_keypoints_val2017.json"])
        monkeypatch.undo()
        assert main(["synth", str(out), *args]) == 0
        capsys.readouterr()
        ours = snapshot(out)
        assert {k: v for k, v in ours.items() if k.endswith(".jpg") or k.startswith("annotations")} == {
            k: v for k, v in reference.items() if k.endswith(".jpg") or k.startswith("annotations")}


# --- more hostile cases ---------------------------------------------------------------------------------

def test_two_synths_into_one_folder_the_second_stops(tmp_path, capsys):
    out = tmp_path / "synth"
    with run_lock(out, "hgpose synth"):
        assert main(["synth", str(out), "--train-images", "2", "--val-images", "1", "--workers", "1"]) == 2
        one_error_line(capsys, f"{out}: in use by `hgpose synth` (pid {os.getpid()})")
    assert not out.exists()  # nothing written, and the folder the lock made is gone with it


@pytest.mark.parametrize("args, message", [
    (["prepare", "{coco}", "{coco}/.", "{tmp}/out"], "the same folder as SOURCE {coco}; give each dataset once"),
    (["prepare", "{coco}", "{tmp}/out", "--workers", "0"], "argument --workers: '0': give at least 1 process"),
    (["demo", "--out", "{tmp}/d", "--minutes", "nan"], "argument --minutes: 'nan': give a time in minutes > 0"),
    (["demo", "--out", "{tmp}/d", "--minutes", "inf"], "argument --minutes: 'inf': give a time in minutes > 0"),
    (["synth", "{tmp}/s", "--train-images", "20000000"],
     "--train-images 20000000: give a whole count from 0 to 10,000,000 (image ids of train2017 must stay below"),
    (["synth", "{tmp}/s", "--workers", "0"], "argument --workers: '0': give at least 1 process"),
])
def test_more_bad_options_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    coco = coco_root(tmp_path / "coco")
    names = {"coco": coco, "tmp": tmp_path}
    try:
        code = main([a.format(**names) for a in args])
    except SystemExit as e:  # refused by the parser
        code = e.code
    assert code == 2
    assert message.format(**names) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco"]


def test_odd_folders_in_a_coco_root_are_named_for_what_they_are(tmp_path, capsys):
    root = coco_root(tmp_path / "coco")
    path = annotation_file(root, "val2017")
    path.unlink()
    path.mkdir()
    assert main(["prepare", str(root), str(tmp_path / "out"), *SMALL]) == 2
    one_error_line(capsys, f"{path}: is a folder, not an annotation file")
    path.rmdir()
    coco_root(tmp_path / "again")
    shutil.rmtree(tmp_path / "again" / "val2017")
    (tmp_path / "again" / "val2017").write_text("not a folder")
    assert main(["prepare", str(tmp_path / "again"), str(tmp_path / "out"), *SMALL]) == 2
    one_error_line(capsys, f"{tmp_path / 'again' / 'val2017'}: not a folder — COCO_ROOT must hold the val2017 images")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sources, message", [
    ("not a list", "'sources' is 'not a list', expected a list of 1 to 256 sources"),
    ([], "'sources' is [], expected a list of 1 to 256 sources"),
    ([{"name": "coco", "format": "coco", "joints": ["nose", "tail"]}], "sources[0] joints is ['nose', 'tail']"),
    ([{"name": 7, "format": "coco", "joints": ["nose"]}], "sources[0] name is 7, expected text"),
])
def test_a_manifest_with_odd_sources_is_one_line(tmp_path, sources, message):
    store = make_store(tmp_path / "store")
    manifest = json.loads((store / "manifest.json").read_text())
    write_json(store / "manifest.json", {**manifest, "sources": sources})
    with pytest.raises(HgposeError) as e:
        Store.open(store)
    assert str(e.value).startswith(f"{store / 'manifest.json'}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_damaged_work_folder_of_its_own_is_started_over(tmp_path, capsys):
    root = coco_root(tmp_path / "coco")
    out = tmp_path / "out"
    assert main(["prepare", str(root), str(out), *SMALL, "--keep-work"]) == 0
    (out / "manifest.json").unlink()
    (out / ".work" / "params.json").write_text("{ half a fi")
    assert main(["prepare", str(root), str(out), *SMALL]) == 0
    assert "made from other sources or settings; starting over" in capsys.readouterr().out
    prepare(root, tmp_path / "reference", test_size=1, workers=1, progress=False)
    same_store(out, tmp_path / "reference")
