"""Training for a wall-clock budget: `hgpose train --minutes N`.

A preset's epochs and learning-rate schedule are written for a dataset and a machine; a user
with an hour on a laptop wants the schedule that fits the hour. So:

1. the first epoch is trained and timed (with validation: what an epoch really costs);
2. the epochs that fit the budget at that pace are planned, and a step schedule's decays are
   placed where the preset has them, in proportion (the `cpu` preset's decays at epochs 16 and
   20 of 24 become 2/3 and 5/6 of the planned epochs);
3. the run trains at full learning rate up to its first decay, then plans again at the pace
   measured so far (a machine's speed drifts within an hour: planned from the first epoch
   alone, one run ran out of time before its second decay, another finished early);
4. it trains on to the end; whatever the plan, it stops at the budget with its best weights.

The plan is kept in RUN_DIR/budget.json and the time spent is the sum of metrics.csv's epoch
times, so an interrupted budgeted run continues with the budget it has left (`--resume`).
A plateau, linear or constant schedule is planned once, after the first epoch (the linear
schedule's slope follows the run's epochs, so it is not moved mid-run).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict, dataclass

from hgpose import config as cfg
from hgpose.errors import HgposeError
from hgpose.io import write_json
from hgpose.runs import RunDir

# Checkpoints and start-up cost about this much beside the epoch times metrics.csv records.
OVERHEAD = 1.03


@dataclass
class Plan:
    epochs: int                       # the run's planned length
    step_epochs: tuple[int, ...]      # the step schedule's decays (empty for other schedules)
    epoch_seconds: float              # the pace it was planned at, overhead included
    replanned: bool                   # planned again at the first decay (or nothing to re-plan)
    base_epochs: int                  # the preset's own epochs and decays, which the plan scales
    base_steps: tuple[int, ...]


def plan_epochs(budget: float, spent: list[float], base_epochs: int, base_steps: tuple[int, ...],
                earliest_step: int = 1) -> Plan:
    """The epochs that fit `budget` seconds at the mean pace of the epochs done (their
    seconds, `spent`), with the decays scaled from the preset's (base) to them: each at least
    `earliest_step` and after the one before."""
    pace = sum(spent) / len(spent) * OVERHEAD
    epochs = max(2, len(spent) + int(max(budget - sum(spent), 0.0) // pace))
    steps, floor = [], earliest_step
    for step in base_steps:
        at = max(round(step / base_epochs * epochs), floor)
        steps.append(at)
        floor = at + 1
    return Plan(epochs, tuple(steps), round(pace, 1), not base_steps, base_epochs, tuple(base_steps))


def epoch_seconds(run: RunDir) -> list[float]:
    """Each finished epoch's time, from metrics.csv."""
    if not run.metrics_path.is_file():
        return []
    with open(run.metrics_path, newline="") as f:
        return [float(row["seconds"]) + float(row.get("val_seconds") or 0.0) for row in csv.DictReader(f)]


class Deadline:
    """An on_step that stops the run once the budget is spent (and when the caller's own
    on_step asks); `hit` tells the budget's stop from Ctrl-C. `arm(run)` before each phase:
    the time spent is what metrics.csv records, plus the time since."""

    def __init__(self, budget: float, on_step=None):
        self.budget, self.on_step, self.hit = budget, on_step, False
        self.spent, self.started = 0.0, time.perf_counter()

    def arm(self, run: RunDir) -> "Deadline":
        self.spent, self.started = sum(epoch_seconds(run)), time.perf_counter()
        return self

    def __call__(self, info: dict) -> bool:
        if self.on_step is not None and self.on_step(info):
            return True
        self.hit = self.spent + time.perf_counter() - self.started > self.budget
        return self.hit


def train_for(minutes: float, data_dir, run_dir, preset: str | None = None, *, resume: bool = False,
              overrides=(), batch_size: int | None = None, init=None, config: cfg.TrainConfig | None = None,
              on_step=None) -> dict:
    """`train` for `minutes` of wall-clock training (see the module docstring); returns the
    run's summary with "budget": the plan and the minutes spent."""
    from hgpose.train.loop import TrainingInterrupted
    from hgpose.train.run import run_summary, train

    if not minutes > 0:
        raise HgposeError(f"--minutes {minutes}: give a positive time budget")
    run, budget = RunDir(run_dir), minutes * 60
    deadline = Deadline(budget, on_step)
    try:
        if not (resume and run.state_path.exists()):
            base = _base_schedule(preset, config, overrides, batch_size)
            # the first epoch, timed; its decays (if any) are placed once the pace is known
            train(data_dir, run.path, preset, epochs=1, batch_size=batch_size, resume=resume, init=init,
                  config=config, overrides=[*overrides, "optim.step_epochs="], on_step=deadline.arm(run))
            _write_plan(run, plan_epochs(budget, epoch_seconds(run), *base))
            overrides, batch_size = (), None
        _phases(run, data_dir, budget, overrides, batch_size, deadline)
    except TrainingInterrupted:
        if not deadline.hit:
            raise
        if not epoch_seconds(run):
            raise HgposeError(f"--minutes {minutes:g}: the budget ran out before the first epoch ended, so "
                              f"{run.path} holds no weights; give a budget longer than one epoch (the "
                              "start-up line estimates it) with a new --out, or fewer training crops "
                              "(--set data.train_limit=N)") from None
        print(f"hgpose train: the {minutes:g}-minute budget is spent; the run keeps its best weights",
              file=sys.stderr)
    summary = run_summary(run)
    summary["budget"] = {"minutes": minutes, "spent_minutes": round(sum(epoch_seconds(run)) / 60, 1),
                         **asdict(_read_plan(run))}
    return summary


def _base_schedule(preset, config, overrides, batch_size) -> tuple[int, tuple[int, ...]]:
    """(epochs, step decays) of the schedule the run would have without a budget."""
    resolved = (cfg.update(cfg.from_dict(cfg.to_dict(config)), overrides, batch_size=batch_size) if config
                else cfg.resolve(preset or "thesis", overrides, batch_size=batch_size))
    steps = resolved.optim.step_epochs if resolved.optim.schedule == "step" else ()
    return resolved.epochs, tuple(steps)


def _phases(run: RunDir, data_dir, budget: float, overrides, batch_size, deadline: Deadline) -> None:
    """Up to the first decay, plan again at the pace so far, then on to the end."""
    plan = _read_plan(run) or _plan_from_run(run, budget)
    if not plan.replanned:
        _resume(run, data_dir, plan.step_epochs[0], plan, overrides, batch_size, deadline)
        overrides, batch_size = (), None
        spent = epoch_seconds(run)
        plan = plan_epochs(budget, spent, plan.base_epochs, plan.base_steps, earliest_step=len(spent))
        plan.replanned = True
        _write_plan(run, plan)
    _resume(run, data_dir, plan.epochs, plan, overrides, batch_size, deadline)


def _plan_from_run(run: RunDir, budget: float) -> Plan:
    """A run started without a budget and resumed with one: its own schedule is the base."""
    config = run.load_config()
    steps = config.optim.step_epochs if config.optim.schedule == "step" else ()
    plan = plan_epochs(budget, epoch_seconds(run), config.epochs, tuple(steps),
                       earliest_step=len(epoch_seconds(run)))
    plan.replanned = True
    _write_plan(run, plan)
    return plan


def _resume(run: RunDir, data_dir, epochs: int, plan: Plan, overrides, batch_size, deadline: Deadline) -> None:
    """Resume the run up to `epochs` (nothing when it is there already)."""
    from hgpose.train.run import train

    if len(epoch_seconds(run)) >= epochs:
        return
    steps = [f"optim.step_epochs={','.join(map(str, plan.step_epochs))}"] if plan.step_epochs else []
    train(data_dir, run.path, resume=True, epochs=epochs, batch_size=batch_size,
          overrides=[*overrides, *steps], on_step=deadline.arm(run), phase_of_budget=True)


def _read_plan(run: RunDir) -> Plan | None:
    try:
        data = json.loads(run.budget_path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HgposeError(f"{run.budget_path}: not valid JSON ({e}); delete it to plan the budget again") from None
    return Plan(**{**data, "step_epochs": tuple(data["step_epochs"]), "base_steps": tuple(data["base_steps"])})


def _write_plan(run: RunDir, plan: Plan) -> None:
    write_json(run.budget_path, asdict(plan))
    steps = f", lr decays after epochs {', '.join(map(str, plan.step_epochs))}" if plan.step_epochs else ""
    again = " (planned again at the pace so far)" if plan.replanned and plan.base_steps else ""
    print(f"hgpose train: {plan.epochs} epochs fit the budget at {plan.epoch_seconds / 60:.1f} min each"
          f"{steps}{again}", file=sys.stderr)
