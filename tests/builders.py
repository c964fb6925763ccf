"""Small on-disk fixtures that several test files share, laid out exactly as the real
commands leave them: a run directory (`hgpose train`) and a dataset store (`hgpose prepare`).

    from builders import import_benchmark, make_run, make_store
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import torch

from hgpose.io import save_npy, write_json
from hgpose.skeleton import JOINTS

MEAN_RGB = [0.41, 0.374, 0.354]
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def import_benchmark(name: str):
    """A script of benchmarks/ as a module (the folder is not a package)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def make_run(run_dir: Path, preset: str = "thesis", *, checkpoints=("best", "last"),
             random_batchnorm: bool = False, **model) -> Path:
    """A run directory with an untrained narrow network (8 features unless given) saved as
    each of `checkpoints`. random_batchnorm: non-trivial BatchNorm statistics, so that a
    normalisation slip shows in a comparison."""
    from hgpose import config as cfg
    from hgpose.runs import weights
    from hgpose.models import build_model

    config = cfg.resolve(preset, [f"model.{k}={v}" for k, v in {"features": 8, **model}.items()])
    torch.manual_seed(0)
    network = build_model(config.model)
    if random_batchnorm:
        for m in network.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    cfg.save(config, run_dir / "config.json")
    meta = weights.weights_metadata(config.model, [0.41, 0.37, 0.35], 1, {}, config.preset)
    for name in checkpoints:
        weights.save_weights(run_dir / "checkpoints" / f"{name}.safetensors", network, meta)
    return run_dir


def make_store(root: Path, n_train: int = 10, n_val: int = 4, n_test: int = 2, seed: int = 0,
               first_fully_annotated: bool = False, format_version: int = 3) -> Path:
    """A minimal dataset store of random crops and keypoints (v drawn from 0, 1, 2): one COCO
    source without annotation files; format_version 1 writes the oldest layout instead."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        kps = np.zeros((n, 17, 3), np.float32)
        kps[..., :2] = rng.uniform(20, 236, size=(n, 17, 2))
        kps[..., 2] = rng.integers(0, 3, size=(n, 17))
        if first_fully_annotated:
            kps[0, :, 2] = 2
        save_npy(root / split / "images.npy", rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8))
        save_npy(root / split / "keypoints.npy", kps)
        save_npy(root / split / "boxes.npy", np.tile(np.float32([0, 0, 256]), (n, 1)))
        save_npy(root / split / "ids.npy", np.stack([np.arange(n)] * 2, 1).astype(np.int64))
        if format_version >= 2:
            save_npy(root / split / "source.npy", np.zeros(n, np.uint8))
    manifest = {"format_version": format_version, "mean_rgb": MEAN_RGB}
    if format_version >= 2:
        splits = {"train": n_train, "val": n_val, "test": n_test}
        manifest.update(splits=splits, sources=[{
            "name": "coco", "format": "coco", "joints": list(JOINTS), "counts": {}, "splits": splits,
            "annotations": {"train": None, "val": None, "test": None}}])
    write_json(root / "manifest.json", manifest)
    return root


def write_lsp_folder(root: Path, joints: np.ndarray, images: list[np.ndarray], layout: str = "lspet") -> Path:
    """An LSP-format folder: joints.mat (`joints` [N,14,3] stored 14x3xN for "lspet", 3x14xN
    for "lsp") and images/imNNNNN.jpg (5 digits; LSP's 4)."""
    import cv2
    from scipy.io import savemat

    (root / "images").mkdir(parents=True, exist_ok=True)
    digits = 5 if layout == "lspet" else 4
    for n, image in enumerate(images, start=1):
        cv2.imwrite(str(root / "images" / f"im{n:0{digits}d}.jpg"), image)
    stored = joints.transpose(1, 2, 0) if layout == "lspet" else joints.transpose(2, 1, 0)
    savemat(root / "joints.mat", {"joints": stored})
    return root


def lsp_subset(lspet: Path, root: Path, n: int) -> Path:
    """The first n people of a real LSPET folder as a folder of their own (images symlinked,
    joints.mat cut to n columns)."""
    from scipy.io import loadmat, savemat

    (root / "images").mkdir(parents=True, exist_ok=True)
    for k in range(1, n + 1):
        (root / "images" / f"im{k:05d}.jpg").symlink_to((lspet / "images" / f"im{k:05d}.jpg").resolve())
    savemat(root / "joints.mat", {"joints": loadmat(lspet / "joints.mat")["joints"][:, :, :n]})
    return root
