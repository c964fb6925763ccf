"""`hgpose explain` end to end on a network trained on synthetic people.

One module fixture does the whole path once: synthetic people in COCO layout -> `prepare` ->
a reduced-width thesis network trained for ~1,400 steps -> `explain` with every part (and
`--compare` against an SHG+AE network). The tests then check explain.json's numbers, the
figures, the report (in headless Chromium when installed) and the truth: the analysis finds
a generating factor the images were drawn with.

Why one person on a grey background (`hgpose.synth.render_person`) rather than
`hgpose.synth.generate`'s cluttered scenes: a network this small and this briefly trained on
the cluttered scenes has a latent whose leading components follow the crops' brightness and
background (PC1 correlates -0.58 with mean brightness), and the posture only shows after
10+ CPU-minutes of training. On single figures it shows after ~6 epochs of ~230 crops: the
top-10 components' best eta^2 for posture is ~0.2 against ~0.06 by chance. (Training first
*erases* the posture signal that a randomly initialised network's latent carries -- eta^2
~0.2 untrained, ~0.05 after 1-3 epochs -- and then learns it back.)
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hgpose.io import write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAIN_IMAGES, VAL_IMAGES, EPOCHS = 240, 24, 6
OVERRIDES = [
    "model.features=16", "target.codec=gaussian", "target.sigma=2", "target.weighted=true",
    "target.foreground=20", "optim.name=adam", "optim.lr=1e-3", "data.workers=0", "data.val_limit=16",
    "progress=false", "tensorboard=false", "keep_epoch_checkpoints=false",
]
SALIENCY_JOINTS = ("nose", "left_wrist", "right_knee")


def single_person_coco(root: Path, n_train: int, n_val: int, seed: int = 0) -> Path:
    """COCO-layout dataset of one synthetic person per image on grey, postures in turn, each
    annotation with its generating factors ("synth"), and the synth.json marker."""
    from hgpose.synth import POSTURES, render_person
    from hgpose.synth.dataset import PERSON_CATEGORY

    for split, n, base in (("train2017", n_train, 1), ("val2017", n_val, 10_000_001)):
        (root / split).mkdir(parents=True)
        images, annotations = [], []
        for i in range(n):
            image, ann = render_person(np.random.default_rng([seed, base, i]), (320, 320),
                                       posture=POSTURES[i % len(POSTURES)])
            image_id = base + i
            name = f"{image_id:012d}.jpg"
            cv2.imwrite(str(root / split / name), image)
            keypoints = []
            for x, y, v in np.asarray(ann.keypoints).tolist():
                keypoints += [x, y, int(v)] if v > 0 else [0, 0, 0]
            images.append({"id": image_id, "file_name": name, "width": 320, "height": 320})
            annotations.append({
                "id": image_id * 10, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "keypoints": keypoints, "num_keypoints": sum(v > 0 for v in keypoints[2::3]),
                "bbox": [float(v) for v in ann.bbox], "area": float(ann.area), "segmentation": [],
                "synth": ann.factors})
        write_json(root / "annotations" / f"person_keypoints_{split}.json",
                   {"images": images, "annotations": annotations, "categories": [PERSON_CATEGORY]})
    write_json(root / "synth.json", {"made_by": "tests/test_explain_synth.py", "seed": seed})
    return root


def untrained_ae_run(root: Path) -> Path:
    """A run directory with an (untrained) SHG+AE network of the same width: `--compare`."""
    from hgpose.models import ThesisNetwork
    from hgpose.train.checkpoint import save_weights, weights_metadata
    from hgpose.train.config import ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(name="thesis", features=16, autoencoder=True)
    save_weights(root / "checkpoints" / "best.safetensors", ThesisNetwork(features=16, autoencoder=True),
                 weights_metadata(config, [0.5, 0.5, 0.5], 0, {}, "thesis-ae"))
    return root


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    from hgpose.data.prepare import prepare
    from hgpose.explain import explain
    from hgpose.train import train

    root = tmp_path_factory.mktemp("explain")
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # as test_train.py: tiny tensors, and a second busy core slows 2 threads
    try:
        start = time.perf_counter()
        coco = single_person_coco(root / "coco", TRAIN_IMAGES, VAL_IMAGES)
        prepare(coco, root / "store", test_size=0.05, seed=0, workers=1, progress=False)
        train(root / "store", root / "run", preset="thesis", epochs=EPOCHS, batch_size=8, overrides=OVERRIDES)
        trained = time.perf_counter()
        result = explain(
            root / "run", root / "store", root / "report", compare=str(untrained_ae_run(root / "ae")),
            k_max=5, n_init=3, nearest=4, scatter_points=60, saliency_samples=1,
            saliency_joints=SALIENCY_JOINTS, occlusion_patch=64, occlusion_stride=32, progress=False)
        print(f"\ndata + training {trained - start:.0f} s, explain {time.perf_counter() - trained:.0f} s")
    finally:
        torch.set_num_threads(before)
    return root, result


def figure_paths(obj) -> list[str]:
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in figure_paths(v)]
    if isinstance(obj, list):
        return [p for v in obj for p in figure_paths(v)]
    return [obj] if isinstance(obj, str) and obj.startswith("figures/") else []


# --- numbers -------------------------------------------------------------------------------

def test_explain_json_numbers_are_consistent(explained):
    root, r = explained
    on_disk = json.loads((root / "report" / "explain.json").read_text())
    assert on_disk["pca"]["subsets"].keys() == r["pca"]["subsets"].keys()
    n = r["data"]["crops"]
    assert n == len(np.load(root / "store" / "train" / "ids.npy"))
    assert r["layer"] == {"name": "hourglass.bottleneck.2", "dim": 16 * 4 * 4}
    assert r["checkpoint"]["sha256"] and r["data"]["split"] == "train"

    for name, s in r["pca"]["subsets"].items():
        ratios = np.array(s["ratios"])
        assert ratios.sum() <= 1 + 1e-6 and np.all(np.diff(ratios) <= 1e-9), name
        c = s["components_for"]
        assert 1 <= c["0.90"] <= c["0.95"] <= c["0.99"] <= s["rank"] <= min(s["n"] - 1, s["dim"])
        assert s["n"] == (n if name == "all" else r["data"]["fully_annotated"])
        assert [w["component"] for w in s["walks"]][:3] == [1, 2, 3]
        assert all(len(w["rows"]) == 7 for w in s["walks"])

    for name, s in r["kmeans"]["subsets"].items():
        per_k = {k["k"]: k["silhouette"] for k in s["per_k"]}
        assert sorted(per_k) == [2, 3, 4, 5]
        assert per_k[s["chosen_k"]] == max(per_k.values())
        assert sum(c["size"] for c in s["clusters"]) == s["n"] and len(s["clusters"]) == s["chosen_k"]
        assert all(0 <= c["mean_visible"] <= c["mean_labelled"] <= 17 for c in s["clusters"])
        assert s["silhouette_sample"]["size"] == s["n"] and not s["silhouette_sample"]["sampled"]
        labels = np.load(root / "report" / s["labels_file"])
        assert labels["labels"].shape == (4, s["n"])

    a = r["ablation"]["summary"]["all"]
    assert a["images"] == n
    assert a["mean_with_skips"] != a["mean_without_skips"]       # the ablation changes PCK
    saved = np.load(root / "report" / "ablation.npz")
    assert not np.allclose(saved["pck_with_skips"], saved["pck_without_skips"], equal_nan=True)

    s = r["saliency"]
    assert s["joints"] == list(SALIENCY_JOINTS) and len(s["samples"]) == r["kmeans"]["subsets"]["all"]["chosen_k"]
    for sample in s["samples"]:
        assert all(v is None or 0 <= v <= 1 for v in sample["occlusion_locality"] + sample["gradcam_locality"])

    shg, ae = r["compare"]["models"]
    assert (shg["model"], ae["model"]) == ("SHG", "SHG+AE")
    assert ae["layer"] == "hourglass.autoencoder.code" and ae["dim"] == 50
    assert shg["pck"]["all"] > ae["pck"]["all"]                   # trained vs untrained
    assert shg["components_for_95"] == r["pca"]["subsets"]["all"]["components_for"]["0.95"]


# --- figures and report --------------------------------------------------------------------

def test_every_figure_exists_and_is_a_valid_png(explained):
    root, r = explained
    paths = figure_paths(r)
    names = {Path(p).name for p in paths}
    assert {"pca_variance.png", "pca_walk_all_pc1.png", "kmeans_silhouette.png", "kmeans_all_nearest.png",
            "kmeans_all_scatter.png", "ablation_histogram.png", "compare_variance.png", "factors.png"} <= names
    assert sum(n.startswith("saliency_") for n in names) == len(r["saliency"]["samples"])
    assert set((root / "report" / "figures").iterdir()) == {root / "report" / p for p in paths}
    for p in paths:
        data = (root / "report" / p).read_bytes()
        assert data.startswith(PNG_MAGIC), p
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and min(image.shape[:2]) >= 100, p


def test_report_is_self_contained(explained):
    root, r = explained
    html = (root / "report" / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert len(sources) == len(set(figure_paths(r)))
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:|//)', html) and "<script" not in html
    assert r["checkpoint"]["path"] in html and "train" in html and f"{r['data']['crops']:,}" in html


def test_rerun_reuses_the_latents_and_keeps_the_other_parts(explained, tmp_path):
    from hgpose.explain import explain

    root, _ = explained
    report = shutil.copytree(root / "report", tmp_path / "report")   # the other tests keep theirs
    first = json.loads((report / "explain.json").read_text())
    again = explain(root / "run", root / "store", report, only=("saliency",),
                    saliency_rows=(0,), saliency_joints=("nose",), occlusion_patch=128,
                    occlusion_stride=128, progress=False)
    assert again["latents"]["reused"]
    assert again["pca"] == first["pca"] and again["kmeans"] == first["kmeans"]
    assert again["ablation"] == first["ablation"]
    assert [s["row"] for s in again["saliency"]["samples"]] == [0]
    for p in figure_paths(again):
        assert (report / p).is_file()
    # the replaced saliency figures are gone; the report holds the new one
    assert {p.name for p in (report / "figures").glob("saliency_*")} == {"saliency_0.png"}
    assert (report / "report.html").stat().st_mtime >= (report / "explain.json").stat().st_mtime

