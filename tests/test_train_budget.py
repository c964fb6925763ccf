"""`hgpose train --minutes N`: the epochs and the lr decays that fit a wall-clock budget, planned
from the measured pace; the start-up line; a note when --epochs cuts a schedule short."""

from __future__ import annotations

import json

import pytest
from builders import make_store

from hgpose.cli import main
from hgpose.cpu import native_bf16
from hgpose.runs import RunDir
from hgpose.train.budget import OVERHEAD, epoch_seconds, plan_epochs

SMALL = ["model.features=8", "data.workers=0", "tensorboard=false", "optim.warmup_steps=0"]


def test_the_plan_fits_the_budget_and_scales_the_presets_decays():
    plan = plan_epochs(600, [60.0], base_epochs=24, base_steps=(16, 20))
    pace = 60 * OVERHEAD
    assert plan.epochs == 1 + int(540 // pace) == 9
    assert plan.step_epochs == (round(16 / 24 * 9), round(20 / 24 * 9)) == (6, 8)
    assert not plan.replanned                       # a step schedule is planned again at its first decay
    # planned again after 6 slower epochs: the decays stay after the epochs done, in order
    again = plan_epochs(600, [80.0] * 6, 24, (16, 20), earliest_step=6)
    assert again.epochs == 7 and again.step_epochs == (6, 7)
    # a schedule without decays: only the length
    plain = plan_epochs(600, [100.0], 100, ())
    assert plain.step_epochs == () and plain.epochs == 5 and plain.replanned


def test_the_plan_follows_the_pace_measured_so_far():
    """One 100 s epoch (+3 s validation) of a 60-minute budget on the cpu preset (24 epochs,
    decays after 16 and 20): 33 epochs at 3 % margin, the decays at 2/3 and 5/6. Planned again
    after 21 epochs, faster ones give more epochs and slower ones fewer, and no decay reaches
    back to an epoch already trained; over budget already, the minimum of 2 epochs."""
    plan = plan_epochs(3600, [103.0], 24, (16, 20))
    assert (plan.epochs, plan.step_epochs, plan.epoch_seconds) == (33, (22, 28), 106.1)
    plan = plan_epochs(3600, [103.0] + [80.0] * 20, 24, (16, 20), earliest_step=21)
    assert (plan.epochs, plan.step_epochs, plan.epoch_seconds) == (43, (29, 36), 83.5)
    plan = plan_epochs(3600, [103.0] + [153.0] * 20, 24, (16, 20), earliest_step=21)
    assert (plan.epochs, plan.step_epochs, plan.epoch_seconds) == (23, (21, 22), 155.1)
    plan = plan_epochs(3600, [4000.0], 24, (16, 20))
    assert (plan.epochs, plan.step_epochs, plan.epoch_seconds) == (2, (1, 2), 4120.0)


def test_train_minutes_ends_within_its_budget_with_the_schedule_planned(tmp_path, capsys):
    store = make_store(tmp_path / "store", n_train=16, n_val=4)
    run = tmp_path / "run"
    minutes = 0.25
    assert main(["train", str(store), "--out", str(run), "--preset", "cpu", "--minutes", str(minutes),
                 "--set", *SMALL]) == 0
    err = capsys.readouterr().err
    plan = json.loads(RunDir(run).budget_path.read_text())
    config = RunDir(run).load_config()
    spent = epoch_seconds(RunDir(run))
    precision = "bf16" if native_bf16() else "fp32"      # the cpu preset's `auto`, on the CPU at hand
    assert "hgpose train: pose on cpu" in err and f"precision {precision}" in err
    assert "16 train crops in batches of 8" in err
    assert "epochs fit the budget" in err and "(planned again at the pace so far)" in err
    assert "never happen" not in err      # a phase that stops at a planned decay is no cut schedule
    assert plan["base_epochs"] == 24 and plan["base_steps"] == [16, 20]      # the cpu preset's schedule
    assert plan["replanned"] and config.epochs == plan["epochs"]
    assert list(config.optim.step_epochs) == plan["step_epochs"]
    assert plan["step_epochs"][0] < plan["step_epochs"][1] <= plan["epochs"]
    # within the budget, give or take the epoch that was running when it ran out
    assert sum(spent) <= minutes * 60 + max(spent) * OVERHEAD


def test_epochs_that_end_before_the_decays_are_noted(tmp_path, capsys):
    store = make_store(tmp_path / "store", n_train=4, n_val=2)
    assert main(["train", str(store), "--out", str(tmp_path / "run"), "--preset", "cpu", "--epochs", "1",
                 "--set", *SMALL]) == 0
    err = capsys.readouterr().err
    assert ("the lr decays after epochs 16, 20 come after the run's last epoch (1), so they never happen; "
            "--minutes fits the schedule") in err


def test_a_budget_shorter_than_the_first_epoch_says_so_in_one_line(tmp_path, capsys):
    store = make_store(tmp_path / "store", n_train=16, n_val=4)
    run = tmp_path / "run"
    assert main(["train", str(store), "--out", str(run), "--preset", "cpu", "--minutes", "0.0001",
                 "--set", *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"hgpose train: error: --minutes 0.0001: the budget ran out before the first epoch ended, "
                       f"so {run} holds no weights; give a budget longer than one epoch (the start-up line "
                       "estimates it) with a new --out, or fewer training crops (--set data.train_limit=N)")
    assert not RunDir(run).weights("best").exists() and not RunDir(run).weights("last").exists()


def test_epochs_and_minutes_together_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--epochs", "2", "--minutes", "1"])
    assert "not allowed with argument" in capsys.readouterr().err
