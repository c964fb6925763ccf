"""Shared fixtures: the real COCO sample and LSPET (skipped where absent), small COCO roots,
and a counter of manifest.json reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Tests run on 2 cores: one torch thread each is far faster for these small networks
# than two threads fighting over the cores with the DataLoader and other processes.
os.environ.setdefault("OMP_NUM_THREADS", "1")

COCO_SAMPLE = Path(
    os.environ.get("HGPOSE_COCO_SAMPLE", Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-sample")
)


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch) -> Path:
    """Each test its own HGPOSE_CACHE (cached ONNX graphs, downloads): no test reads what
    another wrote, and nothing is written into the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("hgpose-cache")
    monkeypatch.setenv("HGPOSE_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def coco_sample() -> Path:
    """`../shared/data/coco-sample`: a real slice of COCO 2017 in COCO's layout."""
    if not (COCO_SAMPLE / "annotations" / "person_keypoints_train2017.json").is_file():
        pytest.skip(f"real COCO sample not found at {COCO_SAMPLE}")
    return COCO_SAMPLE


LSPET = Path(os.environ.get("HGPOSE_LSPET", COCO_SAMPLE.parent / "lspet"))


@pytest.fixture(scope="session")
def lspet() -> Path:
    """`../shared/data/lspet`: 9,000 real people in LSPET's own layout."""
    if not (LSPET / "joints.mat").is_file():
        pytest.skip(f"LSPET not found at {LSPET}")
    return LSPET


@pytest.fixture(scope="session")
def lspet_small(lspet, tmp_path_factory) -> Path:
    """The first 50 LSPET people as an LSP-format folder of their own (images linked)."""
    from builders import lsp_subset

    return lsp_subset(lspet, tmp_path_factory.mktemp("lspet") / "lspet50", 50)


@pytest.fixture(scope="session")
def coco_sample_store(coco_sample, tmp_path_factory) -> Path:
    """The coco-sample prepared once per session (test split: 10 % of train2017)."""
    from hgpose.data.prepare import prepare

    out = tmp_path_factory.mktemp("store") / "coco-sample"
    prepare(coco_sample, out, test_size=0.1, seed=0, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def synthetic_people(tmp_path_factory) -> Path:
    """Synthetic single people (`test_explain_synth.single_person_coco`, 240 train and 24 val
    images) in FOLDER/coco, prepared into FOLDER/store, and the reduced-width thesis network
    trained on them for 6 epochs in FOLDER/run (train thesis-PCK ~0.4). Trained once per
    session: the explain tests and the report-guard tests read the same trained network."""
    import torch
    from test_explain_synth import EPOCHS, OVERRIDES, TRAIN_IMAGES, VAL_IMAGES, single_person_coco

    from hgpose.data.prepare import prepare
    from hgpose.train import train

    root = tmp_path_factory.mktemp("synthetic-people")
    coco = single_person_coco(root / "coco", TRAIN_IMAGES, VAL_IMAGES)
    prepare(coco, root / "store", test_size=0.05, seed=0, workers=1, progress=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny tensors, and a second busy core slows 2 threads
    try:
        # batch 4: twice the updates of batch 8 for the same compute; val PCK ~0.4 instead of ~0.27
        train(root / "store", root / "run", preset="thesis", epochs=EPOCHS, batch_size=4, overrides=OVERRIDES)
    finally:
        torch.set_num_threads(before)
    return root


def load_json(path: Path):
    return json.loads(Path(path).read_text())


@pytest.fixture
def manifest_reads(monkeypatch) -> list[str]:
    """Every opening of a file named manifest.json from here on, however it is opened
    (open(), Path.read_text/read_bytes, numpy): for tests that a store is read once."""
    import builtins
    import io

    reads = []
    original = io.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file).name == "manifest.json":
            reads.append(str(file))
        return original(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    return reads


@pytest.fixture
def disk_full(monkeypatch):
    """disk_full(after=n): from the (n+1)-th file hgpose writes through hgpose.io on, every
    write fails as on a full disk (OSError ENOSPC, no file name, as a write through a file
    object reports it). Returns the list of paths written before, for the test to inspect."""
    import errno
    import tempfile as real_tempfile
    from types import SimpleNamespace

    import hgpose.io

    written: list[str] = []

    def arm(after: int = 0) -> list[str]:
        def mkstemp(*args, **kwargs):
            if len(written) >= after:
                raise OSError(errno.ENOSPC, "No space left on device")
            fd, path = real_tempfile.mkstemp(*args, **kwargs)
            written.append(path)
            return fd, path

        monkeypatch.setattr(hgpose.io, "tempfile", SimpleNamespace(mkstemp=mkstemp))
        return written

    return arm
