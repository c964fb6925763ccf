"""`benchmarks/learn_real.py`: its evaluation stage scores the held-out people with the flip
test exactly when the run validated with it (the `cpu` preset does), and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import import_benchmark, make_run


@pytest.fixture(scope="module")
def learn_real():
    return import_benchmark("learn_real")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A few synthetic people in COCO's layout, prepared (evaluate scores against the files)."""
    from hgpose import synth
    from hgpose.data.prepare import prepare

    root = tmp_path_factory.mktemp("synth")
    synth.generate(root / "coco", train_images=6, val_images=3, seed=0, workers=1, progress=False)
    prepare(root / "coco", root / "store", test_size=0.3, seed=0, workers=1, progress=False)
    return root / "store"


@pytest.mark.parametrize("flip", [True, False])
def test_the_held_out_people_are_scored_with_the_runs_flip_test(learn_real, store, tmp_path, flip):
    from hgpose import config as cfg
    from hgpose.data.store import Store

    run = make_run(tmp_path / "run", "cpu")
    config = cfg.load(run / "config.json")
    assert config.flip_test is True  # the preset's
    config.flip_test = flip
    cfg.save(config, run / "config.json")

    scores = learn_real.evaluations(run, store, store, "thesis")

    assert scores["lspet_test"]["flip"] is flip and scores["coco_val_body"]["flip"] is flip
    splits = Store.open(store).manifest["splits"]
    assert scores["lspet_test"]["n_images"] == splits["test"] > 0
    assert scores["coco_val_body"]["n_images"] == splits["val"] > 0
    tag = "thesis-flip" if flip else "thesis"
    assert json.loads((run / "eval" / f"lspet-test-{tag}" / "metrics.json").read_text())["flip"] is flip
    assert (run / "eval" / f"coco-val-body-{tag}" / "metrics.json").is_file()


@pytest.mark.parametrize("limit, crops", [(0, 30), (12, 12), (99, 30)])
def test_the_summary_counts_the_crops_the_run_trained_on(learn_real, tmp_path, limit, crops):
    """`--set data.train_limit=N` trains on the first N crops: the JSON and the printout say N."""
    import argparse

    from hgpose import config as cfg

    run = make_run(tmp_path / "run", "cpu")
    config = cfg.load(run / "config.json")
    config.data.train_limit = limit
    cfg.save(config, run / "config.json")
    scores = {"pck@0.2": {"bbox": 0.5, "torso": 0.4}, "pck_thesis": {"all": 0.3}, "pck@0.2_per_joint": {},
              "coco": {"AP": 0.1}, "n_images": 5, "joints": [], "flip": True}
    args = argparse.Namespace(out=tmp_path, set=[], protocol="gt-box")
    result = learn_real.summarise(args, {"splits": {"train": 30}}, {"epochs": 2}, [],
                                  {"lspet_test": scores, "coco_val_body": scores}, {}, [], True)
    assert result["train_crops"] == crops
    assert result["config"]["data"]["train_limit"] == limit
