"""Hostile but realistic use of what hgpose writes from a trained network (issue 26): predict,
evaluate, export and explain. Every input is built here on the fly. Each test asserts what
the user sees (one line, the exit status), what is on disk afterwards (a stranger's file
untouched, a set complete or absent), and that the corrected command then works.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import hgpose
from builders import make_run, make_store
from hgpose.cli import main
from hgpose.errors import HgposeError
from hgpose.io import save_npy
from test_protocols import make_coco_root

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_graph_cache(monkeypatch):
    """The ONNX graph cache writes a file of its own through hgpose.io, which would shift the
    full-disk counts below; a full disk under the cache: test_fast_path."""
    monkeypatch.setenv("HGPOSE_ONNX_CACHE", "0")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "run", checkpoints=("last",))


@pytest.fixture(scope="module")
def coco_store(tmp_path_factory) -> Path:
    """A small COCO root (4 val images of 1-3 people) prepared into a store."""
    from hgpose.data.prepare import prepare

    root = make_coco_root(tmp_path_factory.mktemp("coco") / "coco")
    out = tmp_path_factory.mktemp("store") / "store"
    prepare(root, out, test_size=2, seed=0, workers=1, progress=False)
    return out


def photo(w: int = 160, h: int = 120, seed: int = 0) -> np.ndarray:
    """An RGB picture with structure (a bright figure on a gradient), uint8 [h, w, 3]."""
    rng = np.random.default_rng(seed)
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = np.linspace(20, 120, w, dtype=np.uint8)[None, :, None]
    cv2.ellipse(image, (w // 3, h // 2), (w // 8, h // 3), 15, 0, 360, (230, 200, 160), -1)
    return np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)


def write_jpeg(path: Path, rgb: np.ndarray, orientation: int | None = None) -> Path:
    from PIL import Image

    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, "JPEG", quality=92, exif=exif.tobytes())
    return path


def one_error_line(capsys, *fragments: str) -> str:
    # (predict without boxes first warns that it takes each image as one person)
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if ": warning: " not in line).strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under a folder (relative path -> bytes): what is on disk, to compare."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def predict_cli(run: Path, *args) -> int:
    return main(["predict", str(run), *map(str, args), "--device", "cpu", "--precision", "fp32"])


# --- 1. predict never replaces a file it did not write ---------------------------------------

def test_predict_into_the_images_folder_keeps_a_labelme_json(run, tmp_path, capsys):
    folder = tmp_path / "photos"
    write_jpeg(folder / "a.jpg", photo())
    labelme = json.dumps({"version": "5.0.1", "shapes": [{"label": "person", "points": [[1, 2]]}]}).encode()
    (folder / "a.json").write_bytes(labelme)
    assert predict_cli(run, folder, "--out", folder) == 0
    out = capsys.readouterr().out
    assert "-> a-2.json, a-2.skeleton.png, a-2.heatmaps.png (a.json there is not predict's: kept)" in out
    assert (folder / "a.json").read_bytes() == labelme
    (entry,) = json.loads((folder / "predictions.json").read_text())
    assert entry["outputs"] == ["a-2.json", "a-2.skeleton.png", "a-2.heatmaps.png"]
    assert json.loads((folder / "a-2.json").read_text()) == [entry]

    # Again: predict replaces its own files (the same names), never the label file, and
    # does not take its own pictures in the folder for new inputs; the call's results go to
    # a results file of their own, the first call's is kept as it was.
    before = listing(folder)
    assert predict_cli(run, folder, "--out", folder) == 0
    assert "a.jpg:" in capsys.readouterr().out
    after = listing(folder)
    assert sorted(after) == sorted([*before, "predictions-2.json"]) and after["a.json"] == labelme
    assert after["predictions.json"] == before["predictions.json"]
    assert len(json.loads((folder / "predictions-2.json").read_text())) == 1


def test_a_strangers_predictions_json_is_kept_and_the_results_take_a_new_name(run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    theirs = b'{"predictions": "from another tool"}'
    (out / "predictions.json").write_bytes(theirs)
    write_jpeg(tmp_path / "b.jpg", photo(seed=1))
    assert predict_cli(run, tmp_path / "b.jpg", "--out", out) == 0
    assert f"results: {out / 'predictions-2.json'}" in capsys.readouterr().out
    assert (out / "predictions.json").read_bytes() == theirs
    assert json.loads((out / "predictions-2.json").read_text())[0]["outputs"][0] == "b.json"
    # a second call writes a results file of its own, the next number; the first call's stays
    write_jpeg(tmp_path / "c.jpg", photo(seed=2))
    assert predict_cli(run, tmp_path / "c.jpg", "--out", out) == 0
    assert [Path(e["file"]).name for e in json.loads((out / "predictions-2.json").read_text())] == ["b.jpg"]
    assert [Path(e["file"]).name for e in json.loads((out / "predictions-3.json").read_text())] == ["c.jpg"]
    assert (out / "predictions.json").read_bytes() == theirs


def test_a_folder_in_the_way_of_an_output_name_is_left_alone(run, tmp_path, capsys):
    write_jpeg(tmp_path / "in" / "d.jpg", photo())
    (tmp_path / "out" / "d.skeleton.png").mkdir(parents=True)
    assert predict_cli(run, tmp_path / "in", "--out", tmp_path / "out") == 0
    assert (tmp_path / "out" / "d.skeleton.png").is_dir() and (tmp_path / "out" / "d-2.skeleton.png").is_file()


# --- 2. EXIF orientation: predict and the API as displayed, evaluate as stored ----------------

def stored_rgb(path: Path) -> np.ndarray:
    """The stored pixels of a JPEG, as OpenCV decodes them without the EXIF turn."""
    bgr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_predict_and_the_api_see_a_phone_photo_as_it_is_displayed(run, tmp_path, capsys):
    path = write_jpeg(tmp_path / "phone.jpg", photo(160, 120), orientation=6)   # "rotate 90° clockwise"
    displayed = np.ascontiguousarray(np.rot90(stored_rgb(path), k=-1))          # 120 wide, 160 high
    est = hgpose.load(run, device="cpu", precision="fp32", engine="torch")
    expected = est.predict(displayed)
    np.testing.assert_allclose(est.predict(path), expected, atol=1e-4)          # the API, from a path
    assert np.abs(est.predict(stored_rgb(path))[:, :2] - expected[:, :2]).max() > 5   # sideways is not the same

    assert predict_cli(run, path, "--out", tmp_path / "out") == 0
    assert "EXIF orientation 6 applied" in capsys.readouterr().out
    (entry,) = json.loads((tmp_path / "out" / "phone.json").read_text())
    assert entry["orientation"] == {"exif": 6, "applied": True}
    assert entry["box"] == [0, 0, 120, 160]                                     # the displayed frame
    np.testing.assert_allclose(np.reshape(entry["keypoints"], (17, 3)), expected, atol=2e-3)
    skeleton = cv2.imread(str(tmp_path / "out" / "phone.skeleton.png"))
    assert skeleton.shape[:2] == (160, 120)


def test_evaluate_crops_the_stored_pixels_of_a_tagged_image(tmp_path):
    """COCO annotates the stored pixels (HRNet's loader ignores the orientation too)."""
    from hgpose.codecs import ThesisCodec
    from hgpose.data.crop import box_centred_crop, cut_padded_crop
    from hgpose.evaluate import protocols

    path = write_jpeg(tmp_path / "000000000001.jpg", photo(160, 120), orientation=6)
    seen = []

    def heatmaps_of(crops, people, boxes):
        seen.append(crops.copy())
        return torch.zeros(len(crops), 17, 64, 64)

    bbox = (20.0, 10.0, 60.0, 100.0)
    protocols.predict_people([protocols.Person(0, 1, path, bbox)], heatmaps_of, ThesisCodec())
    image = stored_rgb(path)
    expected = cut_padded_crop(image, box_centred_crop(bbox, image.shape[1], image.shape[0]), 256)
    np.testing.assert_array_equal(seen[0][0], expected)


@pytest.mark.parametrize("mode", ["P", "CMYK", "YCbCr", "HSV"])
def test_a_pil_image_of_any_mode_gives_the_rgb_result(run, mode):
    from PIL import Image

    est = hgpose.load(run, device="cpu", precision="fp32", engine="torch")
    image = Image.fromarray(photo(96, 128)).convert(mode)
    rgb = np.asarray(image.convert("RGB"))
    np.testing.assert_allclose(est.predict(image), est.predict(rgb), atol=1e-5)
    raw = np.asarray(image)                       # the bands as stored: indices, C M Y K, Y Cb Cr, H S V
    raw = raw if raw.ndim == 2 else raw[..., :3]
    assert np.abs(est.predict(image) - est.predict(raw)).max() > 0


# --- 3. ONNX export: checked against PyTorch before it takes its name -------------------------

onnx_needed = pytest.mark.skipif(not all(__import__("importlib").util.find_spec(m) for m in ("onnx", "onnxruntime")),
                                 reason="needs onnx and onnxruntime")


@onnx_needed
def test_export_refuses_an_opset_that_cannot_resample_a_low_resolution_network(tmp_path, capsys):
    run = make_run(tmp_path / "run128", checkpoints=("best",), random_batchnorm=True, resolution=128)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", str(run), "--onnx", str(out / "m.onnx"), "--opset", "10"]) == 2
    one_error_line(capsys, "--opset 10: a network working at 128 px resamples its heatmaps bilinearly",
                   "use --opset 11 or later")
    assert list(out.iterdir()) == []
    assert main(["export", str(run), "--onnx", str(out / "m.onnx"), "--opset", "11"]) == 0
    assert "network at 128 px" in capsys.readouterr().out and (out / "m.onnx").is_file()


@onnx_needed
def test_an_export_that_differs_from_pytorch_fails_and_leaves_nothing(tmp_path, monkeypatch):
    """The check after writing, on its own: with the opset rule switched off, opset 10 at
    64 px writes a graph whose heatmaps are 0.1 off; nothing is left behind."""
    from hgpose import export

    run = make_run(tmp_path / "run64", checkpoints=("best",), random_batchnorm=True, resolution=64)
    monkeypatch.setattr(export, "opset_problem", lambda resolution, opset: None)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(HgposeError) as e:
        export.export_onnx(run, out / "m.onnx", opset=10)
    message = str(e.value)
    assert "the exported graph differs from PyTorch by" in message and "from fp32 rounding" in message
    assert "nothing was written" in message and "\n" not in message
    assert list(out.iterdir()) == []
    info = export.export_onnx(run, out / "m.onnx", opset=11)
    assert info["max_abs_diff"] < info["tolerance"] < 1e-4


@onnx_needed
def test_export_of_a_192_px_network_is_one_line(tmp_path, capsys):
    run = make_run(tmp_path / "run192", checkpoints=("best",), resolution=192)
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 2
    one_error_line(capsys, "a network working at 192 px", "cannot write at any opset")
    assert not (tmp_path / "m.onnx").exists()


@onnx_needed
def test_export_never_replaces_a_strangers_file_but_replaces_its_own(run, tmp_path, capsys):
    theirs = tmp_path / "model.onnx"
    theirs.write_bytes(b"somebody's model")
    assert main(["export", str(run), "--onnx", str(theirs)]) == 2
    one_error_line(capsys, f"--onnx {theirs}: exists and was not written by `hgpose export`")
    assert theirs.read_bytes() == b"somebody's model"
    ours = tmp_path / "ours.onnx"
    assert main(["export", str(run), "--onnx", str(ours)]) == 0
    assert main(["export", str(run), "--onnx", str(ours), "--opset", "13"]) == 0   # its own: replaced
    assert "opset 13" in capsys.readouterr().out


# --- 4. a full disk: every command's outputs complete or absent -------------------------------

def test_predict_on_a_full_disk_writes_nothing_and_the_rerun_works(run, tmp_path, capsys, disk_full):
    for name, seed in (("e.jpg", 0), ("f.jpg", 1)):
        write_jpeg(tmp_path / "in" / name, photo(seed=seed))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    disk_full(after=4)            # e's three files, f's JSON; then f's skeleton picture fails
    assert predict_cli(run, tmp_path / "in", "--out", out) == 2
    one_error_line(capsys, f"{out / 'f.skeleton.png'}: No space left on device")
    assert listing(out) == {"notes.txt": b"mine"}                        # no .json without its pictures
    disk_full(after=10**9)        # room again
    assert predict_cli(run, tmp_path / "in", "--out", out) == 0
    assert sorted(listing(out)) == sorted(["notes.txt", "predictions.json"] + [
        f"{s}{x}" for s in "ef" for x in (".json", ".skeleton.png", ".heatmaps.png")])


def test_evaluate_on_a_full_disk_writes_nothing_and_the_rerun_works(run, coco_store, tmp_path, capsys, disk_full):
    out = tmp_path / "eval"
    args = ["evaluate", str(run), "--data", str(coco_store), "--split", "val", "--out", str(out),
            "--device", "cpu", "--no-progress", "--batch-size", "4"]
    disk_full(after=1)            # metrics.md written, per_image.csv fails
    assert main(args) == 2
    one_error_line(capsys, f"{out / 'per_image.csv'}: No space left on device")
    assert not out.exists()       # created by this call, left empty: removed
    written = disk_full(after=10**9)
    assert main(args) == 0
    assert sorted(listing(out)) == ["errors.png", "keypoints_val_results.json", "metrics.json", "metrics.md",
                                    "per_image.csv"]
    # a failing rerun keeps the complete set it found
    before = listing(out)
    disk_full(after=len(written) + 2)   # (the fixture counts every file written in the test)
    assert main(args) == 2
    capsys.readouterr()
    assert listing(out) == before


def test_export_on_a_full_disk_leaves_no_file(run, tmp_path, capsys, disk_full):
    pytest.importorskip("onnx")
    disk_full(after=0)
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--no-verify"]) == 2
    one_error_line(capsys, f"{tmp_path / 'm.onnx'}: No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_explain_on_a_full_disk_keeps_the_previous_report_and_the_rerun_works(run, tmp_path, capsys, disk_full):
    store = make_store(tmp_path / "store", n_train=12)
    out = tmp_path / "report"
    args = ["explain", str(run), "--data", str(store), "--out", str(out), "--device", "cpu", "--no-progress",
            "--only", "pca", "--k-max", "3"]
    disk_full(after=3)            # the latents cache (.npy, .npz, .json); then the first figure fails
    assert main(args) == 2
    one_error_line(capsys, f"{out / 'figures'}", "No space left on device")
    assert sorted(p.name for p in out.iterdir()) == ["latents"]          # the cache, complete; no report
    written = disk_full(after=10**9)
    assert main(args) == 0
    assert "report:" in capsys.readouterr().out
    before = listing(out)
    disk_full(after=len(written) + 1)   # a rerun of another part fails half-way through its figures
    assert main([*args[:-4], "--only", "kmeans", "--k-max", "3"]) == 2
    capsys.readouterr()
    assert listing(out) == before                                        # the previous report, whole


# --- 5. values checked where they enter -------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--box", "nan,10,100,200"), ("--box", "10,10,inf,200"), ("--box", "10,10,-5,200"),
    ("--min-score", "nan"), ("--min-score", "-0.5"),
])
def test_non_finite_predict_options_stop_at_the_parser(run, tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(run), str(tmp_path / "a.jpg"), option, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and repr(value) in err


# --- 6. cost bounded and stated ---------------------------------------------------------------

def test_pca_by_the_gram_matrix_equals_the_covariance_pca():
    from hgpose.explain.pca import fit_pca

    rng = np.random.default_rng(0)
    values = (rng.normal(size=(7, 40)) * np.linspace(3, 0.1, 40) + 5).astype(np.float32)   # N < D
    gram = fit_pca(values, method="gram")
    cov = fit_pca(values, method="covariance")
    assert fit_pca(values).components.shape == gram.components.shape == (40, 7)   # auto: the Gram matrix
    np.testing.assert_allclose(gram.mean, cov.mean)
    np.testing.assert_allclose(gram.eigenvalues, cov.eigenvalues, rtol=1e-5, atol=1e-6 * cov.eigenvalues[0])
    assert gram.rank == cov.rank == 6
    signs = np.sign((gram.components[:, :6] * cov.components[:, :6]).sum(0))
    np.testing.assert_allclose(gram.components[:, :6] * signs, cov.components[:, :6], atol=2e-5)
    assert not gram.components[:, 6].any()      # no variance left: no direction of its own
    # on a subset of rows too
    rows = np.array([0, 2, 3, 6])
    np.testing.assert_allclose(fit_pca(values, rows, method="gram").eigenvalues,
                               fit_pca(values, rows, method="covariance").eigenvalues, rtol=1e-5, atol=1e-4)


def test_a_pca_that_does_not_fit_in_memory_is_refused_with_the_estimate():
    from hgpose.explain.pca import check_memory, check_projection, memory_needed

    assert memory_needed(4, 131_072) < 2**27                      # 4 crops of stem.relu: the Gram matrix
    assert memory_needed(4, 8192) < memory_needed(8192, 8192) / 1000
    with pytest.raises(HgposeError) as e:
        check_memory(50_000, 131_072, "layer stem.relu", available=8 * 2**30)
    message = str(e.value)
    assert "PCA of 50,000 crops x 131,072 values (layer stem.relu) needs about" in message
    assert "Gram matrix" in message and "the 8.0 GiB available" in message and "use --limit" in message
    limit = int(message.split("--limit ")[1].split(" ")[0].replace(",", ""))
    assert memory_needed(limit, 131_072) <= 8 * 2**30 < memory_needed(limit * 2, 131_072)
    check_memory(1000, 4096, "layer x", available=8 * 2**30)      # fits: no error
    with pytest.raises(HgposeError, match="projecting 124,040 crops on 4,000 principal components"):
        check_projection(124_040, 4000, 3000, available=2**30)


def test_a_silhouette_sample_too_large_for_memory_is_refused_with_one_that_fits():
    from hgpose.explain.kmeans import check_silhouette_memory

    check_silhouette_memory(124_040, 20_000, available=2 * 2**30)      # the default: 1.6 GB
    with pytest.raises(HgposeError) as e:
        check_silhouette_memory(124_040, 1_000_000, available=2 * 2**30)
    assert str(e.value) == ("--silhouette-sample 1000000: the distance matrix of 124,040 crops needs about "
                            "57.3 GiB, more than the 2.0 GiB available; use --silhouette-sample 23,170 or fewer")


def test_explain_refuses_a_pca_too_large_before_computing_any_latent(run, tmp_path, capsys, monkeypatch):
    from hgpose.explain import pca

    store = make_store(tmp_path / "store", n_train=12)
    monkeypatch.setattr(pca, "available_memory", lambda: 2**20)   # 1 MiB free
    assert main(["explain", str(run), "--data", str(store), "--out", str(tmp_path / "r"), "--device", "cpu",
                 "--no-progress", "--layer", "stem.relu"]) == 2
    one_error_line(capsys, "PCA of 12 crops x", "(layer stem.relu)", "more than the 1 MiB available")
    assert not (tmp_path / "r").exists()                          # no latents pass, no folder


def test_non_finite_latents_are_one_line():
    from hgpose.explain.pca import fit_pca

    values = np.ones((5, 8), np.float32)
    values[2, 3] = np.nan
    with pytest.raises(HgposeError, match="the latents hold NaN or inf values"):
        fit_pca(values)


def test_the_skeleton_picture_of_a_large_photo_is_bounded_and_the_keypoints_stay_full_size(run, tmp_path):
    from hgpose.predict import PICTURE_MAX_SIDE, predict_images

    image = cv2.resize(photo(160, 120), (4000, 3000), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    est = hgpose.load(run, device="cpu", precision="fp32", engine="torch")
    summary = predict_images(est, [path], tmp_path / "out")
    (outcome,) = summary.outcomes
    assert outcome.picture_scale == PICTURE_MAX_SIDE / 4000
    picture = cv2.imread(str(tmp_path / "out" / "big.skeleton.png"))
    assert picture.shape[:2] == (1536, 2048)
    (entry,) = json.loads((tmp_path / "out" / "big.json").read_text())
    np.testing.assert_allclose(np.reshape(entry["keypoints"], (17, 3)), est.predict(image), atol=2e-3)
    assert entry["box"] == [0, 0, 4000, 3000]


def test_identical_latents_choose_no_k_and_say_why(run, tmp_path):
    from hgpose.explain import explain

    store = make_store(tmp_path / "store", n_train=12)
    save_npy(store / "train" / "images.npy", np.full((12, 256, 256, 3), 90, np.uint8))   # one crop, 12 times
    result = explain(run, store, tmp_path / "r", only="pca,kmeans", k_max=4, device="cpu", progress=False)
    assert result["kmeans"]["subsets"] == {}
    why = result["kmeans"]["skipped"]["all"]
    assert why.startswith("no K could be chosen: for every K from 2 to 4 the silhouette is undefined")
    assert "PCA rank 0" in why
    assert "no K could be chosen" in (tmp_path / "r" / "report.html").read_text()


# --- 7. messages that say what happened -------------------------------------------------------

def test_one_very_long_name_does_not_stop_the_batch(run, tmp_path, capsys):
    folder = tmp_path / "in"
    long_stem = "holiday-" + "x" * 120 + "é" * 60          # 248 bytes: its outputs' names would not fit
    assert len(os.fsencode(long_stem + ".jpg")) <= 255
    write_jpeg(folder / f"{long_stem}.jpg", photo())
    write_jpeg(folder / "short.jpg", photo(seed=3))
    out = tmp_path / "out"
    assert predict_cli(run, folder, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "name shortened to fit the file system" in printed
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 7 and all(len(os.fsencode(n)) <= 255 - 14 for n in names)
    shortened = next(n for n in names if n.endswith(".skeleton.png") and n != "short.skeleton.png")
    assert shortened.startswith("holiday-xxx") and "~" in shortened
    assert os.fsencode(shortened).decode("utf-8")         # cut between characters, not inside one
    # the same name is shortened the same way again: the rerun replaces its own files (and
    # writes its own results file)
    assert predict_cli(run, folder, "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "predictions-2.json"])


@pytest.mark.parametrize("change, message", [
    ({"category_id": 0}, "is a person: it has category_id 0 (7 boxes) (YOLO-style class indices"),
    ({"score": -1.5}, "7 of its 7 person boxes on this split score below 0 (lowest -1.5); COCO takes any real score"),
])
def test_detections_coco_would_not_score_as_meant_are_one_line(coco_store, run, tmp_path, capsys, change, message):
    from hgpose.data.store import Store
    from hgpose.evaluate.evaluate import load_annotations

    coco = load_annotations(Store.open(coco_store).annotation_files("val")[0])
    boxes = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9, **change}
             for a in coco.dataset["annotations"] if a.get("num_keypoints") and not a["iscrowd"]]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    args = ["evaluate", str(run), "--data", str(coco_store), "--split", "val", "--protocol", "detections",
            "--boxes", str(tmp_path / "boxes.json"), "--out", str(tmp_path / "e"), "--device", "cpu", "--no-progress"]
    assert main(args) == 2
    one_error_line(capsys, str(tmp_path / "boxes.json"), message)
    assert not (tmp_path / "e").exists()
    # a threshold above every score is said as such, not scored as AP "—"
    for b in boxes:
        b.update(category_id=1, score=0.3)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    assert main([*args, "--box-score-threshold", "0.5"]) == 2
    one_error_line(capsys, "none of its 7 person boxes on this split scores >= 0.5 (the highest: 0.3)")


def test_evaluate_into_a_folder_it_cannot_write_stops_before_scoring(run, coco_store, tmp_path, capsys, monkeypatch):
    """A read-only run folder (simulated: the tests run as root, whom permissions do not stop)."""
    import errno

    from hgpose import outputs
    from hgpose.evaluate import evaluate as evaluate_mod

    def refuse(prefix, dir):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))

    def scored(*args, **kwargs):
        raise AssertionError("the split was scored before the output folder was found unwritable")

    monkeypatch.setattr(outputs.tempfile, "mkdtemp", lambda prefix, dir: refuse(prefix, dir))
    monkeypatch.setattr(evaluate_mod, "score_split_people", scored)
    assert main(["evaluate", str(run), "--data", str(coco_store), "--split", "val", "--device", "cpu",
                 "--no-progress"]) == 2
    one_error_line(capsys, str(run / "eval" / "val-gt-box-last"), "cannot be written (Permission denied)")
    assert not (run / "eval" / "val-gt-box-last").exists()


@pytest.mark.parametrize("command", ["evaluate", "explain"])
def test_an_output_folder_holding_the_users_files_is_refused_before_any_work(run, coco_store, tmp_path, capsys, command):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.html").write_text("my report")
    (out / "per_image.csv").write_text("my table")
    assert main([command, str(run), "--data", str(coco_store), "--out", str(out), "--device", "cpu",
                 "--no-progress"]) == 2
    one_error_line(capsys, f"--out {out}: holds", "hgpose never replaces")
    assert listing(out) == {"per_image.csv": b"my table", "report.html": b"my report"}


def test_a_missing_figure_of_a_report_is_one_line(run, tmp_path):
    from hgpose.explain import explain
    from hgpose.explain.report import render

    store = make_store(tmp_path / "store", n_train=12)
    explain(run, store, tmp_path / "r", only="pca", device="cpu", progress=False)
    (tmp_path / "r" / "figures" / "pca_variance.png").unlink()
    with pytest.raises(HgposeError, match=r"pca_variance.png: cannot be read \(No such file or directory\)"):
        render(tmp_path / "r")


def test_joints_that_no_person_of_the_split_has_are_refused_before_scoring(coco_store):
    import dataclasses

    from hgpose.data.store import Store
    from hgpose.evaluate.evaluate import _check_scored_joints, select_joints

    split = Store.open(coco_store).split("val")
    joints = select_joints("left_eye,right_eye", np.ones(17, bool))
    keypoints = np.array(split.keypoints)
    keypoints[:, ~joints] = 0          # what only_joints leaves of a split ...
    keypoints[:, joints, 2] = 0        # ... whose dataset labels no face (LSP)
    with pytest.raises(HgposeError, match="--joints left_eye,right_eye: no person of the val split has any of "
                                          "the scored joints"):
        _check_scored_joints(dataclasses.replace(split, keypoints=keypoints), joints, "left_eye,right_eye")


def test_a_leftover_staging_folder_of_a_killed_call_is_no_strangers_file(run, coco_store, tmp_path, capsys):
    out = tmp_path / "eval"
    (out / ".hgpose-staging-k1ll3d00").mkdir(parents=True)
    (out / ".hgpose-staging-k1ll3d00" / "metrics.md").write_text("half")
    assert main(["evaluate", str(run), "--data", str(coco_store), "--split", "val", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    assert (out / "metrics.json").is_file()


# --- more hostile cases of the same kind --------------------------------------------------------

def test_a_users_file_put_in_place_of_a_predict_output_is_no_longer_predicts(run, tmp_path, capsys):
    """The record says predict wrote g.json; the user has since saved a label file under that
    name (or made it a folder): it is theirs now and is kept."""
    write_jpeg(tmp_path / "in" / "g.jpg", photo())
    write_jpeg(tmp_path / "in" / "h.jpg", photo(seed=1))
    out = tmp_path / "out"
    assert predict_cli(run, tmp_path / "in", "--out", out) == 0
    (out / "g.json").write_text('{"shapes": []}')
    (out / "h.json").unlink()
    (out / "h.json").mkdir()
    assert predict_cli(run, tmp_path / "in", "--out", out) == 0
    printed = capsys.readouterr().out
    assert "g-2.json" in printed and "h-2.json" in printed
    assert (out / "g.json").read_text() == '{"shapes": []}' and (out / "h.json").is_dir()


def test_an_image_given_twice_is_predicted_once(run, tmp_path, capsys):
    path = write_jpeg(tmp_path / "in" / "k.jpg", photo())
    assert predict_cli(run, path, tmp_path / "in", "--out", tmp_path / "out") == 0
    assert capsys.readouterr().out.count("k.jpg:") == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "k.heatmaps.png", "k.json", "k.skeleton.png", "predictions.json"]


def test_odd_image_names_and_sizes(run, tmp_path, capsys):
    """A name that is not UTF-8, a 25-digit name (no COCO id: past int64), a 1x1 image."""
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.fsdecode(b"caf\xe9-latin1.jpg")
    cv2.imwrite(str(folder / "0000000000000000000000001.png"), photo()[..., ::-1])
    cv2.imwrite(str(folder / "tiny.png"), np.full((1, 1, 3), 128, np.uint8))
    write_jpeg(folder / odd, photo())
    out = tmp_path / "out"
    assert predict_cli(run, folder, "--out", out) == 0
    results = json.loads((out / "predictions.json").read_text())
    assert len(results) == 3 and all(r["image_id"] is None for r in results)
    assert os.fsdecode(b"caf\xe9-latin1.json") in os.listdir(out)
    assert cv2.imread(str(out / "tiny.skeleton.png")).shape == (1, 1, 3)
    assert predict_cli(run, folder, "--out", out) == 0                # and again: its own files
    assert len(os.listdir(out)) == 10 + 1                              # (+ the call's results file)


def test_an_interrupted_explain_leaves_the_previous_report_whole(run, tmp_path, monkeypatch):
    from hgpose.explain import explain, kmeans

    store = make_store(tmp_path / "store", n_train=12)
    out = tmp_path / "r"
    explain(run, store, out, only="pca,kmeans", k_max=3, device="cpu", progress=False)
    before = listing(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kmeans, "_scatter", interrupted)    # Ctrl-C half-way through the K-means figures
    with pytest.raises(KeyboardInterrupt):
        explain(run, store, out, only="pca,kmeans", k_max=4, device="cpu", progress=False)
    assert listing(out) == before
    monkeypatch.undo()
    result = explain(run, store, out, only="kmeans", k_max=4, device="cpu", progress=False)
    assert result["latents"]["reused"] and [k["k"] for k in result["kmeans"]["subsets"]["all"]["per_k"]] == [2, 3, 4]
    assert "pca" in result and (out / result["pca"]["variance_figure"]).is_file()   # kept, with its figure


@pytest.mark.parametrize("command", ["evaluate", "explain"])
def test_the_run_folder_itself_as_output_is_refused(run, coco_store, capsys, command):
    before = listing(run)
    assert main([command, str(run), "--data", str(coco_store), "--out", str(run), "--device", "cpu"]) == 2
    one_error_line(capsys, f"--out {run}: holds")
    assert listing(run) == before


def test_a_folder_given_as_annotation_file_is_named_as_a_folder(run, coco_store, tmp_path, capsys):
    assert main(["evaluate", str(run), "--data", str(coco_store), "--split", "val", "--annotations", str(tmp_path),
                 "--out", str(tmp_path / "e"), "--device", "cpu", "--no-progress"]) == 2
    one_error_line(capsys, f"{tmp_path}: is a folder; give the COCO annotation file itself")


def test_the_staging_folder_of_a_killed_call_is_removed_by_the_next_call(tmp_path):
    """A call killed by SIGKILL cannot remove its staging folder; the next call into the same
    folder removes it when its process is gone, and leaves a running call's alone."""
    import os

    from hgpose.outputs import STAGING_PREFIX, staged

    out = tmp_path / "out"
    out.mkdir()
    dead = out / f"{STAGING_PREFIX}999999-abcd"          # no such process
    running = out / f"{STAGING_PREFIX}{os.getpid()}-efgh"  # this process: alive
    for folder in (dead, running):
        folder.mkdir()
        (folder / "metrics.json").write_text("{}")
    with staged(out) as stage:
        (stage / "a.txt").write_text("a")
    assert not dead.exists() and running.exists() and (out / "a.txt").read_text() == "a"
