"""What `hgpose train` tells the user about a run before and while it trains: a start-up
line (device and threads, precision and why, crops, steps, epochs and the lr schedule), the
time an epoch will take once the first steps are measured, and a note when the epochs end
before the schedule's learning-rate decays."""

from __future__ import annotations

import math
import sys
import time

import torch

from hgpose.config import TrainConfig
from hgpose.inference.device import describe_precision

# Steps timed before the per-epoch estimate is printed: past the first batches' warm-up.
PACE_STEPS = 20


def start_line(config: TrainConfig, phase: str, train_crops: int, val_crops: int, batch_size: int,
               epochs: int, device: torch.device, world: int) -> str:
    threads = torch.get_num_threads()
    where = f"{device}" + (f", {threads} thread{'s' if threads != 1 else ''}" if device.type == "cpu" else "")
    if world > 1:
        where += f", {world} processes"
    steps = math.ceil(train_crops / (batch_size * world))
    return (f"hgpose train: {phase} on {where}; precision {describe_precision(config.precision, device)}; "
            f"{train_crops:,} train crops in batches of {batch_size} ({steps:,} steps an epoch), "
            f"{val_crops:,} val crops; {epochs} epochs, {schedule(config)}")


def schedule(config: TrainConfig) -> str:
    optim = config.optim
    if optim.schedule == "step" and optim.step_epochs:
        return f"lr {optim.lr:g} x{optim.step_gamma:g} after epochs {', '.join(map(str, optim.step_epochs))}"
    return f"lr {optim.lr:g}, {optim.schedule} schedule"


def cut_decays(config: TrainConfig) -> str | None:
    """A note when the run ends before some of its step decays (e.g. `--epochs 2` on a preset
    that decays at 16 and 20): it would train at the full learning rate throughout."""
    late = [e for e in config.optim.step_epochs if e >= config.epochs] if config.optim.schedule == "step" else []
    if not late:
        return None
    return (f"hgpose train: note: the lr decays after epochs {', '.join(map(str, late))} come after the "
            f"run's last epoch ({config.epochs}), so they never happen; --minutes fits the schedule to a "
            "time budget, or set optim.step_epochs")


class Pace:
    """Prints, once per command, how long an epoch will take, after PACE_STEPS steps."""

    def __init__(self, steps_per_epoch: int, enabled: bool):
        self.steps_per_epoch, self.enabled = steps_per_epoch, enabled
        self.steps, self.started = 0, time.perf_counter()

    def step(self) -> None:
        if not self.enabled:
            return
        self.steps += 1
        if self.steps == PACE_STEPS and self.steps_per_epoch > PACE_STEPS:
            per_step = (time.perf_counter() - self.started) / self.steps
            print(f"hgpose train: about {per_step * self.steps_per_epoch / 60:.1f} min an epoch of training "
                  f"(measured over {PACE_STEPS} steps; validation comes on top)", file=sys.stderr)
            self.enabled = False
