"""`benchmarks/thesis_curve.py`: the thesis preset's curve on a tiny synthetic store, its
record, its untrained level and its resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from builders import import_benchmark, make_store

from hgpose import thesis
from hgpose.codecs import ThesisCodec


@pytest.fixture(scope="module")
def curve():
    return import_benchmark("thesis_curve")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    # 40 train crops: an epoch is 3 steps of batch 16 (16, 16, 8 crops).
    return make_store(tmp_path_factory.mktemp("store"), n_train=40, n_val=8, n_test=2)


def run(curve, store: Path, out: Path, samples: int, width: int = 8) -> dict:
    args = curve.parse_args([str(store), "--out", str(out), "--width", str(width), "--samples", str(samples),
                             "--eval-every", "48", "--probe-steps", "4", "--workers", "0", "--threads", "1"])
    returned = curve.run(args)
    saved = json.loads((out / curve.RECORD_NAME).read_text())
    assert saved["curve"] == json.loads(json.dumps(returned["curve"]))  # what is returned is saved
    return saved


@pytest.fixture(scope="module")
def first(curve, store, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    return out, run(curve, store, out, 96)


def test_the_record_holds_the_curve_from_the_untrained_network_on(first):
    _, record = first
    assert record["width"] == 8 and record["config"]["model"]["features"] == 8
    assert record["config"]["preset"] == "thesis" and record["config"]["optim"]["lr"] == 2.5e-4
    samples = [row["samples"] for row in record["curve"]]
    assert samples[0] == 0 and samples == sorted(set(samples)) and samples[-1] == record["samples"] >= 96
    steps = [row["global_step"] for row in record["curve"]]
    assert steps == sorted(set(steps))
    for row in record["curve"]:
        assert 0 <= row["val_pck"] <= 1 and row["val_loss"] > 0 and 0 <= row["val_dead_channels"] <= 1
    assert record["curve"][0]["val_pck"] == record["untrained"]["val_pck"]
    assert record["curve"][0]["val_loss"] == record["untrained"]["val_loss"]
    assert [row["samples"] for row in record["epochs"]] == [40 * (i + 1) for i in range(len(record["epochs"]))]
    assert record["thesis"]["val_pck"] == [list(p) for p in thesis.CURVE_VAL_PCK.items()]
    assert record["torch"] and record["cpu"] and record["seconds"] > 0


def test_the_zero_map_loss_is_the_mean_squared_thesis_target(first, store):
    """Computed independently: the numpy codec's maps, squared, averaged over every map and
    pixel (every joint of this COCO store is present; unlabelled ones are zero maps)."""
    _, record = first
    targets, _ = ThesisCodec().encode(np.load(store / "val" / "keypoints.npy"))
    expected = float(np.mean(targets.astype(np.float64) ** 2))
    assert record["untrained"]["zero_map_loss"] == pytest.approx(expected, rel=1e-5)
    assert record["untrained"]["val_loss"] > record["untrained"]["zero_map_loss"]


def test_the_head_probe_covers_the_first_steps(first):
    _, record = first
    rows = record["head"]["rows"]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    for row in rows:
        for name in ("head.conv2.weight", "head.conv1.weight", "head.bn.weight", "stem.conv.weight"):
            assert math.isfinite(row[f"grad_{name}"]) and row[f"grad_{name}"] > 0
        assert 0 <= row["dead_channels"] <= 1 and 0 <= row["relu_nonpositive"] <= 1
        assert 0 <= row["grad_below_eps"] <= 1
    assert record["head"]["rmsprop_eps"] == 1e-8


def test_a_second_command_continues_from_the_saved_sample_count(curve, first, store):
    out, before = first
    after = run(curve, store, out, 160)
    assert after["sessions"][1]["started_at_samples"] == before["samples"]
    assert after["curve"][:len(before["curve"])] == before["curve"]  # kept, not recomputed
    assert [row["step"] for row in after["head"]["rows"]] == [1, 2, 3, 4]
    # 160 samples = 4 epochs of 3 steps: a restart from zero would end at fewer steps.
    assert (after["samples"], after["curve"][-1]["global_step"]) == (160, 12)
    assert all(a["samples"] < b["samples"] for a, b in zip(after["curve"], after["curve"][1:]))


def test_another_width_in_the_same_folder_is_refused(curve, first, store):
    out, _ = first
    with pytest.raises(SystemExit, match="another width"):
        run(curve, store, out, 160, width=16)


def test_the_prior_level_is_perfect_when_every_person_stands_alike(curve, tmp_path):
    """Every crop with the same keypoints: the constant median prediction is always right."""
    store = make_store(tmp_path / "store", n_train=6, n_val=3, n_test=1)
    person = np.load(store / "train" / "keypoints.npy")[0]
    person[:, 2] = 2
    for split, n in (("train", 6), ("val", 3)):
        np.save(store / split / "keypoints.npy", np.repeat(person[None], n, axis=0))
    args = curve.parse_args([str(store), "--out", str(tmp_path / "run"), "--workers", "0"])
    prior = curve.prior_level(curve.make_context(args))
    assert prior["val_pck"] == 1.0 and len(prior["cells"]) == 17


def test_the_record_holds_the_prior_level(first):
    _, record = first
    assert 0 <= record["prior"]["val_pck"] <= 1 and len(record["prior"]["cells"]) == 17
