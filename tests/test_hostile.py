"""Hostile but realistic input (issue 14): every case is built here on the fly, no binary
fixtures. Each test asserts what the user sees (one line, exit status 2, or a count in the
summary), what is left on disk, and that the corrected command then works. The
decompression bomb is also checked for peak memory, in a subprocess.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from builders import make_run, make_store
from hgpose.cli import main
from hgpose.errors import HgposeError
from hgpose.images import ImageProblem, decode_bgr
from hgpose.io import run_lock

TINY = ["model.features=8", "data.workers=0", "progress=false", "tensorboard=false",
        "data.val_batch_size=4", "data.train_limit=4", "data.val_limit=2"]
BOMB_SIDE = 30_000  # 900 MP: ~2.7 GB once decoded, under OpenCV's own 1 GP limit


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- builders ------------------------------------------------------------------------------

def jpeg(w: int = 160, h: int = 120, value: int = 90) -> bytes:
    rng = np.random.default_rng(0)
    ok, data = cv2.imencode(".jpg", (rng.integers(0, 40, (h, w, 3)) + value).astype(np.uint8))
    assert ok
    return data.tobytes()


def bomb(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A real ~600-byte JPEG whose SOF0 header claims width x height pixels."""
    data = bytearray(jpeg(8, 8))
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def person(ann_id: int, image_id: int, bbox=(20, 20, 60, 80)) -> dict:
    kps = [50, 40, 2, 60, 70, 1, 55, 90, 2] + [0] * 42
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": list(bbox),
            "area": 100.0, "num_keypoints": 3, "keypoints": kps}


def coco_root(root: Path, extra_images: dict[str, bytes] | None = None) -> Path:
    """A tiny COCO root: 4 good train images (one person each), 1 val image; `extra_images`
    (name -> bytes) are added to train2017 with one person each."""
    images = {f"ok{i}.jpg": jpeg(value=60 + 20 * i) for i in range(4)} | (extra_images or {})
    for source, files in (("train2017", images), ("val2017", {"v.jpg": jpeg()})):
        (root / source).mkdir(parents=True)
        entries, anns = [], []
        for i, (name, data) in enumerate(files.items(), 1):
            (root / source / name).write_bytes(data)
            w, h = (BOMB_SIDE, BOMB_SIDE) if name.startswith("bomb") else (160, 120)
            entries.append({"id": i, "file_name": name, "width": w, "height": h})
            anns.append(person(i, i))
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"person_keypoints_{source}.json").write_text(json.dumps(
            {"images": entries, "annotations": anns,
             "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}))
    return root


def one_error_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def run_measured(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m hgpose ARGS` in a fresh wrapper process; (result, peak RSS of the command
    in GB). The wrapper makes RUSAGE_CHILDREN see this command only."""
    wrapper = ("import resource, subprocess, sys; "
               "r = subprocess.run([sys.executable, '-m', 'hgpose', *sys.argv[1:]], capture_output=True, text=True); "
               "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr); "
               "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True,
                            cwd=cwd, env=env, timeout=300)
    peak_kb = int(result.stdout.rsplit("PEAK_KB", 1)[1])
    return result, peak_kb / 1e6


# --- images: empty, bombs, truncated, garbage ----------------------------------------------

@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (bomb(60_000, 60_000), "too_large"),   # over OpenCV's own limit: cv2.imdecode raised
    (bomb(), "too_large"),                  # under it: decoded to 2.7 GB before failing
    (jpeg()[:300], "truncated"),
    (b"\xff\xd8 not a jpeg \xff\xd9", "corrupt"),
    (b"GIF89a garbage", "corrupt"),
])
def test_bad_image_bytes_are_refused_before_decoding(data, reason):
    with pytest.raises(ImageProblem) as e:
        decode_bgr(data)
    assert e.value.reason == reason
    assert decode_bgr(jpeg()).shape == (120, 160, 3)


def test_pixel_limit_is_configurable(monkeypatch):
    monkeypatch.setenv("HGPOSE_MAX_PIXELS", str(160 * 120 - 1))
    with pytest.raises(ImageProblem, match="over the limit of 0.019199 MP; raise it with --max-pixels"):
        decode_bgr(jpeg())
    monkeypatch.setenv("HGPOSE_MAX_PIXELS", str(160 * 120))
    assert decode_bgr(jpeg()).shape == (120, 160, 3)


def test_prepare_skips_and_counts_bomb_and_empty_images_in_bounded_memory(tmp_path):
    root = coco_root(tmp_path / "coco", {"bomb.jpg": bomb(), "empty.jpg": b""})
    result, peak_gb = run_measured(["prepare", str(root), str(tmp_path / "out"), "--test-size", "1",
                                    "--workers", "1"], tmp_path)
    assert result.returncode == 0, result.stderr
    counts = json.loads((tmp_path / "out" / "manifest.json").read_text())["sources"][0]["counts"]["train2017"]
    assert (counts["oversized_image"], counts["corrupt_image"], counts["crops"]) == (1, 1, 4)
    assert "skipped: oversized image" in result.stdout
    assert peak_gb < 1.0, f"prepare peaked at {peak_gb:.2f} GB"  # the bomb alone decodes to 2.7 GB


def test_predict_skips_bomb_and_empty_images_and_keeps_going_in_bounded_memory(tmp_path):
    run = make_run(tmp_path / "run")
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a_bomb.jpg").write_bytes(bomb())
    (folder / "b_empty.jpg").write_bytes(b"")
    (folder / "c_good.jpg").write_bytes(jpeg())
    result, peak_gb = run_measured(["predict", str(run), str(folder), "--out", str(tmp_path / "pred"),
                                    "--device", "cpu"], tmp_path)
    assert result.returncode == 1  # some inputs failed
    assert f"{folder / 'a_bomb.jpg'}: 30000x30000 = 900 megapixels, over the limit" in result.stderr
    assert f"{folder / 'b_empty.jpg'}: empty file (0 bytes)" in result.stderr
    assert "2 of 3 inputs failed" in result.stderr
    assert [e["file"] for e in json.loads((tmp_path / "pred" / "predictions.json").read_text())] == [
        str(folder / "c_good.jpg")]
    assert peak_gb < 1.5, f"predict peaked at {peak_gb:.2f} GB"


# --- annotation files ----------------------------------------------------------------------

def _set(path: list, value):
    def damage(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return damage


def _duplicate(key: str):
    def damage(data):
        data[key].append(dict(data[key][0]))
    return damage


@pytest.mark.parametrize("damage, message", [
    (_set(["annotations", 0, "keypoints"], ["50"] * 51), "keypoints are not 51 finite numbers"),
    (_set(["annotations", 0, "keypoints", 0], float("nan")), "keypoints are not 51 finite numbers"),
    (_set(["annotations", 0, "keypoints", 2], 5), "visibility flag(s) 5"),
    (_set(["annotations", 0, "bbox"], "20 20 60 80"), "bbox '20 20 60 80' is not 4 finite numbers"),
    (_set(["annotations", 0, "bbox"], 7), "bbox 7 is not 4 finite numbers"),
    (_set(["annotations", 0, "bbox"], None), "bbox None is not 4 finite numbers"),
    (_set(["annotations", 0, "bbox", 2], float("inf")), "is not 4 finite numbers"),
    (_set(["images", 0, "width"], "abc"), "width 'abc' is not a whole number"),
    (_set(["images", 0, "id"], "1"), "images[0] id '1' is not a whole number"),
    (_set(["annotations", 0, "id"], [1]), "id [1] is not a whole number"),
    (_set(["annotations", 0, "image_id"], "1"), "image_id '1' is not a whole number"),
    (_set(["images", 0, "file_name"], 17), "file_name 17 is not a file name"),
    (_duplicate("images"), "image id 1 appears more than once"),
    (_duplicate("annotations"), "annotation id 1 appears more than once"),
])
def test_bad_annotation_values_stop_prepare_with_one_line_before_writing(tmp_path, capsys, damage, message):
    root = coco_root(tmp_path / "coco")
    ann = root / "annotations" / "person_keypoints_train2017.json"
    data = json.loads(ann.read_text())
    damage(data)
    ann.write_text(json.dumps(data))  # NaN and inf as Python's json writes them
    out = tmp_path / "out"
    assert main(["prepare", str(root), str(out), "--test-size", "1", "--workers", "1"]) == 2
    one_error_line(capsys, str(ann), message)
    assert not out.exists()


# --- prepare's OUT_DIR ---------------------------------------------------------------------

def test_partial_or_foreign_out_dir_is_rebuilt(tmp_path, capsys):
    root = coco_root(tmp_path / "coco")
    out = tmp_path / "out"
    args = ["prepare", str(root), str(out), "--test-size", "1", "--workers", "1"]
    assert main(args) == 0
    first = json.loads((out / "manifest.json").read_text())
    # "delete it and re-run", followed only partly: the arrays stay, manifest and .work are gone
    (out / "manifest.json").unlink()
    assert main(args + ["--seed", "1"]) == 0  # other settings, too
    assert json.loads((out / "manifest.json").read_text())["splits"] == first["splits"]
    # an unrelated file where prepare writes its crops
    (out / "manifest.json").unlink()
    (out / "train" / "images.npy").write_text("my notes")
    assert main(args) == 0
    assert np.load(out / "train" / "images.npy").shape == (first["splits"]["train"], 256, 256, 3)


def test_out_dir_that_is_a_file_or_read_only_is_one_line(tmp_path, capsys):
    root = coco_root(tmp_path / "coco")
    (tmp_path / "file").write_text("x")
    assert main(["prepare", str(root), str(tmp_path / "file"), "--test-size", "1", "--workers", "1"]) == 2
    one_error_line(capsys, f"{tmp_path / 'file'}: is a file, not a folder")
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["prepare", str(root), str(locked / "out"), "--test-size", "1", "--workers", "1"]) == 2
        one_error_line(capsys, str(locked / "out"), "choose another")
    finally:
        locked.chmod(0o755)


def test_negative_seed_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["prepare", str(tmp_path), str(tmp_path / "out"), "--seed", "-1"])
    assert e.value.code == 2 and "'-1': give a count >= 0" in capsys.readouterr().err


def test_second_prepare_into_the_same_out_dir_stops(tmp_path, capsys):
    root = coco_root(tmp_path / "coco")
    out = tmp_path / "out"
    with run_lock(out, "hgpose prepare"):  # as a first prepare holds it
        assert main(["prepare", str(root), str(out), "--test-size", "1", "--workers", "1"]) == 2
        one_error_line(capsys, f"{out}: in use by `hgpose prepare` (pid {os.getpid()})")
        assert [p.name for p in out.iterdir()] == [".hgpose.lock"]
    assert not out.exists()                 # the lock file went with the lock, and the folder it made
    assert main(["prepare", str(root), str(out), "--test-size", "1", "--workers", "1"]) == 0
    assert not (out / ".hgpose.lock").exists()


def test_a_lock_file_left_by_a_killed_run_is_taken_over_with_a_note(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".hgpose.lock").write_text("`hgpose train` (pid 999999)")   # its process is gone
    with run_lock(out, "hgpose evaluate"):
        assert (out / ".hgpose.lock").read_text() == f"`hgpose evaluate` (pid {os.getpid()})"
    assert "taking over the lock `hgpose train` (pid 999999) left when it stopped" in capsys.readouterr().err
    assert not (out / ".hgpose.lock").exists()


# --- train ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("hostile") / "store")


@pytest.mark.parametrize("setting, message", [
    ("optim.lr=inf", "config optim.lr=inf: must be a finite number"),
    ("optim.lr=nan", "config optim.lr=nan: must be a finite number"),
    ("optim.lr=-1", "config optim.lr=-1.0: must be greater than 0"),
    ("target.sigma=0", "config target.sigma=0.0: must be greater than 0"),
    ("data.workers=-1", "config data.workers=-1: must be at least 0"),
    ("log_every=0", "config log_every=0: must be at least 1"),
    ("seed=-1", "config seed=-1: must be at least 0"),
    ("device=tpu", "config device='tpu': choose auto, cpu, cuda or cuda:N"),
])
def test_bad_training_values_are_one_line_and_leave_nothing(store, tmp_path, capsys, setting, message):
    run = tmp_path / "run"
    assert main(["train", str(store), "--out", str(run), "--set", *TINY, setting]) == 2
    one_error_line(capsys, message)
    assert not run.exists()


def test_failed_train_leaves_nothing_and_the_corrected_command_runs(store, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(store), "--out", str(run), "--epochs", "1", "--batch-size", "4",
                 "--init", str(tmp_path / "nope.safetensors"), "--set", *TINY]) == 2
    one_error_line(capsys, "nope.safetensors: not found")
    assert not run.exists()
    (tmp_path / "file").write_text("x")
    assert main(["train", str(store), "--out", str(tmp_path / "file"), "--set", *TINY]) == 2
    one_error_line(capsys, "is a file, not a folder")
    assert main(["train", str(store), "--out", str(run), "--epochs", "2", "--batch-size", "4", "--set", *TINY]) == 0
    capsys.readouterr()

    # checkpoints follow the umask like every other output (the test process runs with 022 or stricter)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("best.safetensors", "last.safetensors", "state.pt"):
        assert stat.S_IMODE((run / "checkpoints" / name).stat().st_mode) == 0o666 & ~umask, name

    config = (run / "config.json").read_bytes()
    assert main(["train", str(store), "--out", str(run), "--resume", "--epochs", "1"]) == 2
    one_error_line(capsys, "already trained 2 epochs and cannot be cut to --epochs 1")
    assert (run / "config.json").read_bytes() == config

    with run_lock(run, "hgpose train"):  # a first --resume still running
        assert main(["train", str(store), "--out", str(run), "--resume", "--epochs", "3"]) == 2
        one_error_line(capsys, f"{run}: in use by `hgpose train`")

    state = run / "checkpoints" / "state.pt"
    state.write_bytes(b"")
    assert main(["train", str(store), "--out", str(run), "--resume", "--epochs", "3"]) == 2
    one_error_line(capsys, f"{state}: not a readable training state (EOFError: empty file (0 bytes))")

    data = json.loads(config)
    data["model"]["features"] = "eight"
    (run / "config.json").write_text(json.dumps(data))
    assert main(["train", str(store), "--out", str(run), "--resume", "--epochs", "3"]) == 2
    one_error_line(capsys, "config model.features='eight': must be a whole number")


def test_diverging_training_never_saves_nan_weights(store, tmp_path, capsys):
    run = tmp_path / "run"
    # one step per epoch: the step that diverges is the last before validation
    assert main(["train", str(store), "--out", str(run), "--epochs", "1", "--batch-size", "4",
                 "--set", *TINY, "optim.lr=1e30"]) == 2
    err = one_error_line(capsys, "epoch 1", "training stopped")
    assert "validation loss became" in err or "weights became NaN/inf" in err
    assert not list(run.glob("checkpoints/*.safetensors"))


def test_empty_train_split_is_an_error(tmp_path, capsys):
    store = make_store(tmp_path / "store", n_train=0)
    assert main(["train", str(store), "--out", str(tmp_path / "run"), "--set", *TINY]) == 2
    one_error_line(capsys, "the train split holds no crops")
    assert not (tmp_path / "run").exists()


def test_damaged_store_is_one_line(tmp_path, capsys):
    from hgpose.data.store import Store

    store = make_store(tmp_path / "store")
    (store / "val" / "ids.npy").write_bytes(b"")
    with pytest.raises(HgposeError, match=r"ids.npy: cannot be read .*delete .*manifest.json and re-run"):
        Store.open(store).split("val")
    (store / "manifest.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(HgposeError, match="mean_rgb is None, expected 3 numbers"):
        Store.open(store).mean_rgb


# --- checkpoints, predict, evaluate, export, explain ----------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("hostile") / "run")


def test_pickles_and_nan_weights_are_named_as_such(run, tmp_path, capsys):
    weights = run / "checkpoints" / "best.safetensors"
    pickled = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    assert main(["predict", str(pickled), str(tmp_path), "--device", "cpu"]) == 2
    one_error_line(capsys, f"{pickled}: a PyTorch (torch.save) file, not a safetensors weights file")
    pickled.write_bytes(__import__("pickle").dumps({"w": [0.0]}, protocol=4))
    assert main(["export", str(pickled), "--onnx", str(tmp_path / "m.onnx")]) == 2
    one_error_line(capsys, f"{pickled}: a Python pickle, not a safetensors weights file", "never unpickles")

    from hgpose.inference import load_network
    from hgpose.runs import weights as weights_file

    state, meta = weights_file.load_weights(weights)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] * float("nan")
    model = load_network(weights)[0]
    model.load_state_dict(state)
    broken = tmp_path / "nan.safetensors"
    weights_file.save_weights(broken, model, meta)
    (tmp_path / "x.jpg").write_bytes(jpeg())
    assert main(["predict", str(broken), str(tmp_path / "x.jpg"), "--device", "cpu", "--out", str(tmp_path / "p")]) == 2
    one_error_line(capsys, f"{broken}: holds NaN/inf weights", "use an earlier checkpoint")
    assert not (tmp_path / "p").exists()
    # evaluate printed 0.000 for such a checkpoint
    store = make_store(tmp_path / "store")
    assert main(["evaluate", str(broken), "--data", str(store), "--out", str(tmp_path / "e"), "--device", "cpu"]) == 2
    one_error_line(capsys, f"{broken}: holds NaN/inf weights")
    assert not (tmp_path / "e").exists()


def test_predict_never_overwrites_an_input(run, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    inputs = {"predictions.jpg": jpeg(value=80), "a.png": jpeg(value=90), "a.skeleton.png": jpeg(value=100)}
    for name, data in inputs.items():
        (folder / name).write_bytes(data)
    assert main(["predict", str(run), str(folder), "--out", str(folder), "--device", "cpu"]) == 0
    for name, data in inputs.items():
        assert (folder / name).read_bytes() == data, name
    summary = json.loads((folder / "predictions.json").read_text())
    assert sorted(Path(e["file"]).name for e in summary) == sorted(inputs)
    # predictions.jpg's outputs never take a results file's name (predictions[-N].json)
    assert (folder / "predictions-image.json").is_file() and (folder / "a-2.skeleton.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["predict", "{run}", "{file}", "--out", "{file}"], "--out {file}: is a file, not a folder"),
    (["predict", "{run}", "{file}", "--device", "gpu"], "--device gpu: choose auto, cpu, cuda or cuda:N"),
    (["evaluate", "{run}", "--data", "{store}", "--out", "{file}"], "--out {file}: is a file, not a folder"),
    (["explain", "{run}", "--data", "{store}", "--out", "{file}"], "--out {file}: is a file, not a folder"),
    (["explain", "{run}", "--data", "{store}", "--out", "{tmp}/r", "--device", "gpu"], "--device gpu: choose"),
    (["export", "{run}", "--onnx", "{tmp}"], "--onnx {tmp}: is a folder"),
    (["export", "{run}", "--onnx", "{tmp}/m.onnx", "--opset", "5"], "--opset 5: this exporter writes opsets 9 to"),
    (["export", "{run}", "--onnx", "{tmp}/m.onnx", "--opset", "99"], "--opset 99: this exporter writes opsets 9 to"),
    (["export", "{run}", "--onnx", "{file}/m.onnx", "--no-verify"], "{file}/m.onnx: cannot be written, a file is in the way"),
])
def test_bad_options_are_one_line(run, store, tmp_path, capsys, args, message):
    names = {"run": run, "store": store, "file": tmp_path / "a.jpg", "tmp": tmp_path}
    (tmp_path / "a.jpg").write_bytes(jpeg())
    assert main([a.format(**names) for a in args]) == 2
    one_error_line(capsys, message.format(**names))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]


def test_max_pixels_option_of_predict_and_prepare(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HGPOSE_MAX_PIXELS", "")  # restored after the test: the option sets it
    (tmp_path / "a.jpg").write_bytes(jpeg())
    assert main(["predict", str(run), str(tmp_path / "a.jpg"), "--out", str(tmp_path / "p"),
                 "--device", "cpu", "--max-pixels", "1e4"]) == 1
    assert "160x120 = 0 megapixels, over the limit of 0.01 MP" in capsys.readouterr().err
    root = coco_root(tmp_path / "coco")
    assert main(["prepare", str(root), str(tmp_path / "out"), "--test-size", "1", "--workers", "2",
                 "--max-pixels", "19200"]) == 0  # 160 x 120 exactly; applies in the worker processes too
    assert main(["prepare", str(root), str(tmp_path / "out2"), "--test-size", "1", "--workers", "2",
                 "--max-pixels", "19199"]) == 2  # every image over it: no crop left for the test draw
    assert "--test-size 1 is larger than the 0 train2017 crops" in capsys.readouterr().err


def test_explain_with_a_single_crop_writes_its_report(run, store, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["explain", str(run), "--data", str(store), "--out", str(out), "--limit", "1",
                 "--device", "cpu", "--no-progress", "--only", "pca,kmeans"]) == 0
    html = (out / "report.html").read_text()
    assert "skipped: only 1 crops" in html


def test_every_file_system_refusal_is_one_line_naming_the_path(monkeypatch, capsys, tmp_path, disk_full):
    """The CLI's safety net for paths the file system refuses (read-only, full disk, an I/O
    error), which a test running as root cannot provoke for real: one line, exit 2, naming the
    path, also where the OS error carries none (a full disk seen by a write through a file
    object: hgpose.io names the file it was writing)."""
    import errno

    from hgpose import cli

    def refuse(code, filename="/data/out/x.npy"):
        def run(args):
            raise OSError(code, os.strerror(code), filename) if filename else OSError(code, os.strerror(code))
        return run

    monkeypatch.setitem(cli.COMMANDS, "synth", (cli.COMMANDS["synth"][0], refuse(errno.EROFS)))
    assert main(["synth", "/data/out"]) == 2
    one_error_line(capsys, "hgpose synth: error: /data/out/x.npy: Read-only file system; check that path")
    monkeypatch.setitem(cli.COMMANDS, "synth", (cli.COMMANDS["synth"][0], refuse(errno.EIO, None)))
    assert main(["synth", "/data/out"]) == 2
    one_error_line(capsys, "hgpose synth: error: Input/output error; check that path")

    monkeypatch.undo()
    disk_full(after=0)
    from hgpose.io import write_json

    with pytest.raises(OSError) as e:
        write_json(tmp_path / "out" / "a.json", {"a": 1})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "out" / "a.json")
    assert list((tmp_path / "out").iterdir()) == []       # nothing half-written is left


def test_an_error_about_a_path_that_is_not_utf8_is_still_one_line(tmp_path, capsys):
    """A file name's bytes need not be UTF-8 (Python keeps them as surrogates): the error line
    shows them escaped instead of the CLI failing to print it."""
    path = os.fsdecode(bytes(tmp_path) + b"/no\xffsuch")
    assert main(["evaluate", path, "--data", path]) == 2
    one_error_line(capsys, "no\\udcffsuch: not found")
