"""The epoch/step loop every phase runs: DDP, mixed precision, checkpoints, logs, resume.

Exact resume rests on one rule: nothing random in a step depends on hidden state. The
sample order of an epoch is a function of (seed, epoch) and every other random draw
(augmentation, AE noise) comes from a generator seeded by (seed, rank, epoch, step). A
resumed run therefore only needs the weights, optimizer/scheduler state and the position
(epoch, step) to replay exactly what the uninterrupted run would have done. The global RNG
states are saved and restored too, for anything outside the loop that uses them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from hgpose import config as cfg
from hgpose.config import OptimConfig, TrainConfig
from hgpose.data.dataset import make_loader
from hgpose.errors import HgposeError
from hgpose.inference.device import resolve_device
from hgpose.io import atomic_path
from hgpose.progress import bar as progress_bar
from hgpose.runs import RunDir, weights
from hgpose.runs import state as ckpt
from hgpose.train import announce, divergence, resume as resume_rule
from hgpose.train.data import ResumableSampler, ShardSampler, batch_generator
from hgpose.train.recipes import scheduled_lr
from hgpose.train.step import Trainer


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after a requested stop (Ctrl-C, SIGTERM, a callback) once the state is saved."""

    def __init__(self, state_path: Path, epoch: int, step: int):
        super().__init__(f"interrupted in epoch {epoch + 1} after step {step}; "
                         f"state saved to {state_path}; add --resume to continue")
        self.state_path, self.epoch, self.step = state_path, epoch, step


# --- processes and devices -----------------------------------------------------------------

@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_process_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce(self, tensor: torch.Tensor, op=None) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
        return tensor


def start_runtime(config: TrainConfig) -> Runtime:
    """One process, or one DDP rank when started by torchrun (RANK/WORLD_SIZE/LOCAL_RANK set)."""
    world, rank, local_rank = process_env()
    device = resolve_device(config.device)  # the one rule of every command: auto, cpu, cuda, cuda:N
    if device.type == "cuda":
        if world > 1 or device.index is None:  # torchrun: one GPU per local rank
            if local_rank >= torch.cuda.device_count():
                raise HgposeError(f"environment variable LOCAL_RANK={local_rank}: this machine has "
                                  f"{torch.cuda.device_count()} GPU(s); start at most that many processes per node")
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
        owns = True
    return Runtime(device, rank, world, local_rank, owns)


def process_env() -> tuple[int, int, int]:
    """(WORLD_SIZE, RANK, LOCAL_RANK) as torchrun sets them (1, 0, 0 without it), checked
    before any process group is joined: one line naming the variable otherwise."""
    def number(name: str, default: int) -> int:
        text = os.environ.get(name, "").strip()
        if not text:
            return default
        if not text.isdigit():
            raise HgposeError(f"environment variable {name}={text!r}: must be a whole number of at least 0 "
                              "(torchrun sets it; unset it to train in one process)")
        return int(text)

    world, rank, local_rank = number("WORLD_SIZE", 1), number("RANK", 0), number("LOCAL_RANK", 0)
    if world < 1 or rank >= world:
        raise HgposeError(f"environment variables RANK={rank}, WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE "
                          "(start the processes with torchrun, or unset both to train in one process)")
    if world > 1 and not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise HgposeError(f"environment variable {name} is not set, but WORLD_SIZE={world}: start the "
                                  "processes with torchrun (which sets it), or unset WORLD_SIZE")
    return world, rank, local_rank


def loader_workers(config: TrainConfig, device: torch.device | None = None) -> int:
    """data.workers, at most the CPU cores this process may use: each worker is a process
    with its own copy of torch, and more than the cores only wait for them (a config.json
    from a larger machine still runs here). Training on the CPU reads the crops in its own
    process (0 workers): a worker would only copy uint8 crops out of the memory map
    (augmentation runs in the step), and a worker process waking beside the network's threads
    stalls them: on a 2-core AVX2 CPU, Newell 2-stack at batch 16, the second epoch ran at
    1.07 img/s with 2 workers and 1.70 with none (the first epoch 1.90 either way)."""
    if device is not None and device.type == "cpu":
        return 0
    return min(config.data.workers, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def stop_runtime(rt: Runtime) -> None:
    if rt.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def plateau_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig,
                      mode: str) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """The "plateau" schedule (SPEC §4: on validation PCK, mode max, factor 0.2, patience 5,
    min lr 5e-5), stepped once per epoch with the phase's metric; None for other schedules.

    PyTorch's patience counts the epochs it tolerates: with patience 5 the lr drops at the
    6th epoch in a row without an improvement (relative 1e-4 over the best), and never below
    min_lr.
    """
    if optim.schedule != "plateau":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=optim.plateau_factor, patience=optim.plateau_patience,
        min_lr=optim.min_lr)


# --- stop requests -------------------------------------------------------------------------

class StopRequests:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary (and save a resumable
    state there) instead of killing it mid-update. A second signal interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nhgpose train: {signal.Signals(signum).name} received; stopping after this step "
              "(send it again to stop now, without saving)", file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# --- one phase -----------------------------------------------------------------------------

@dataclass
class Job:
    """One phase to fit: the network, its data, its optimiser and where its files go."""

    phase: object                 # recipes.PosePhase or recipes.AEPhase
    model: nn.Module
    train_set: Dataset
    val_set: Dataset
    epochs: int
    batch_size: int
    optim: OptimConfig
    run: RunDir                   # where its files go (thesis-ae's autoencoder: RUN_DIR/ae)
    metadata: Callable[[int, dict], dict]   # (epoch, metrics) -> weights-file metadata
    # Called once the saved state (if any) fits, with run.json's record of the resume (where
    # it went on and what changed: resume.record), None when the run starts from scratch.
    on_start: Callable[[dict | None], None] | None = None
    # The run's config.json before this command: what a state saved before states recorded
    # their own config is compared with (resume.ran_config).
    recorded: TrainConfig | None = None
    progress: dict = field(default_factory=lambda: {
        "epoch": 0, "step": 0, "global_step": 0, "loss_sum": 0.0, "samples": 0,
        "best": None, "best_epoch": None, "history": []})


def fit(job: Job, config: TrainConfig, rt: Runtime, resume: bool,
        on_step: Callable[[dict], bool] | None = None) -> dict:
    """Train `job.model` for `job.epochs` epochs (continuing a saved state if `resume`)."""
    require_crops(job)
    run = _Fit(job, config, rt)
    resumed = run.restore() if resume and run.state_path.exists() else None
    if job.on_start is not None:
        job.on_start(resumed)
    return run.run(resume, on_step)


class _Fit:
    """One call of `fit`: the model, optimiser and schedulers, and the progress that
    state.pt saves (epoch, step within it, running loss, best metric, history)."""

    def __init__(self, job: Job, config: TrainConfig, rt: Runtime):
        self.job, self.config, self.rt = job, config, rt
        self.phase, self.device = job.phase, rt.device
        self.state_path = job.run.state_path
        self.trainer = Trainer.build(job.phase, job.model, job.optim, config, self.device)
        self.model, self.optimizer, self.scaler = self.trainer.model, self.trainer.optimizer, self.trainer.scaler
        self.autocast = self.trainer.autocast
        self.plateau = plateau_scheduler(self.optimizer, job.optim, self.phase.mode)
        self.progress = job.progress

    def restore(self) -> dict:
        """Continue from state.pt: weights, optimiser, schedulers, RNG and position, with this
        command's changes applied, or refused before anything is written (resume.py).
        Returns run.json's record of this resume."""
        state = ckpt.load_state(self.state_path)
        progress = state["progress"]
        position = (progress["epoch"], progress["step"])
        changed = self.check_changes(state, position)
        weights.load_into(self.model, state["model"], self.state_path)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.plateau is not None and state["plateau"] is not None:
            self.plateau.load_state_dict(state["plateau"])
        lr_key = "ae.optim.lr" if self.phase.name == "ae" else "optim.lr"
        resume_rule.apply_optim(self.optimizer, self.plateau, self.job.optim, lr_key in changed)
        if state["scaler"] and self.scaler.is_enabled():  # none saved by a run without fp16
            self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        self.progress = progress
        if not self.rt.main:  # the running loss of an interrupted epoch was saved as a global total
            progress["loss_sum"], progress["samples"] = 0.0, 0
        return resume_rule.record(changed, position)

    def check_changes(self, state: dict, position: tuple[int, int]) -> dict:
        """The changes of this command against the state's config; HgposeError for one
        that cannot be applied, before anything is written."""
        job, rt, state_path = self.job, self.rt, self.state_path
        epoch, step = position
        # A mid-epoch position is a number of batches of this size on this many processes.
        if step > 0 and (state["world"], state["batch_size"]) != (rt.world, job.batch_size):
            raise HgposeError(
                f"{state_path}: saved mid-epoch by {state['world']} process(es) with batch size "
                f"{state['batch_size']}; resume it with the same (now {rt.world}, {job.batch_size})")
        if epoch > job.epochs:
            raise HgposeError(
                f"{state_path}: this run has already trained {epoch} epochs and cannot be "
                f"cut to --epochs {job.epochs}; give --epochs {epoch} or more to continue it")
        ran = resume_rule.ran_config(state, job.recorded, state_path)
        changed = resume_rule.changes(ran, self.config) if ran is not None else {}
        resume_rule.check(changed, state.get("phase", self.phase.name), position, job.run.path)
        resume_rule.check_optimizer_kind(state["optimizer"], job.optim.name, state_path)
        return changed

    def save_state(self, epoch_sums: tuple[float, int]) -> None:
        check_weights(self.model, self.advice)  # on every rank (identical weights): none waits alone
        if self.rt.main:
            ckpt.save_state(self.state_path, self.state_dict(epoch_sums))

    def state_dict(self, epoch_sums: tuple[float, int]) -> dict:
        """What state.pt holds (see hgpose.runs.state)."""
        return {
            "phase": self.phase.name,
            "config": cfg.to_dict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "plateau": self.plateau.state_dict() if self.plateau is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "world": self.rt.world,
            "batch_size": self.job.batch_size,
            "progress": {**self.progress, "loss_sum": epoch_sums[0], "samples": epoch_sums[1]},
        }

    def advice(self) -> str:
        """What to say if the run diverges now (divergence.py)."""
        return divergence.advice(self.config, self.job.run, self.phase.name)

    def epoch_sums(self) -> tuple[float, int]:
        """(loss sum, samples) of the epoch so far, over every process."""
        sums = torch.tensor([self.progress["loss_sum"], self.progress["samples"]], dtype=torch.float64,
                            device=self.device)
        self.rt.all_reduce(sums)
        return float(sums[0]), int(sums[1])

    def training_model(self) -> nn.Module:
        """The model as the steps call it: wrapped in DDP and/or compiled when asked."""
        model = self.model
        if self.rt.distributed:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return torch.compile(model) if self.config.compile else model

    def run(self, resume: bool, on_step) -> dict:
        job, config, rt, progress = self.job, self.config, self.rt, self.progress
        self.train_model = self.training_model()
        self.sampler = ResumableSampler(job.train_set, config.data.shuffle, config.seed, rt.rank, rt.world)
        workers = loader_workers(config, self.device)
        self.loader = make_loader(job.train_set, job.batch_size, self.sampler, workers, self.device)
        self.val_loader = make_loader(job.val_set, config.data.val_batch_size,
                                      ShardSampler(len(job.val_set), rt.rank, rt.world), workers, self.device)
        self.log = RunLog(job.run, config, rt, progress["global_step"] if resume else None)
        loud = rt.main and config.progress
        if loud:
            print(announce.start_line(config, self.phase.name, len(job.train_set), len(job.val_set),
                                      job.batch_size, job.epochs, self.device, rt.world), file=sys.stderr)
        self.pace = announce.Pace(math.ceil(len(self.sampler.inner) / job.batch_size), loud)
        with StopRequests() as stop:
            try:
                for epoch in range(progress["epoch"], job.epochs):
                    seen, seconds = self.train_epoch(epoch, stop, on_step)
                    self.end_epoch(epoch, seen, seconds)
            finally:
                self.log.close()
        return self.summary()

    def train_epoch(self, epoch: int, stop: "StopRequests", on_step) -> tuple[int, float]:
        """The steps of one epoch from the saved position on; (samples, seconds)."""
        job, progress = self.job, self.progress
        self.progress["epoch"] = epoch
        self.sampler.set_epoch(epoch, skip=progress["step"] * job.batch_size)
        self.train_model.train()
        # Off a terminal the epoch line of RunLog is all that is printed (summary=False).
        bar = progress_bar(total=math.ceil(len(self.sampler.inner) / job.batch_size), initial=progress["step"],
                           unit="batch", desc=f"{self.phase.name} epoch {epoch + 1}/{job.epochs}",
                           disable=not (self.rt.main and self.config.progress), summary=False)
        start, seen = time.perf_counter(), 0
        with bar:
            for batch in self.loader:
                value, n = self.step(epoch, batch)
                self.pace.step()
                seen += n
                img_s = seen * self.rt.world / max(time.perf_counter() - start, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{progress['loss_sum'] / progress['samples']:.3g}", img_s=f"{img_s:.1f}")
                self.after_step(epoch, value, stop, on_step)
        return seen, time.perf_counter() - start

    def step(self, epoch: int, batch) -> tuple[float, int]:
        """One optimiser step; (loss, samples)."""
        progress, optimizer = self.progress, self.optimizer
        # Steps of a whole epoch (the sampler's length before any resume skip).
        steps = max(math.ceil(len(self.sampler.inner) / self.job.batch_size), 1)
        lr = scheduled_lr(self.job.optim, epoch, progress["global_step"],
                          position=epoch + progress["step"] / steps, epochs=self.job.epochs)
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        generator = batch_generator(self.config.seed, self.rt.rank, epoch, progress["step"])
        value, n = self.trainer.step(batch, generator, network=self.train_model, check=lambda loss: check_finite(
            loss, self.rt, epoch, progress["step"], self.advice))
        progress["step"] += 1
        progress["global_step"] += 1
        progress["loss_sum"] += value * n
        progress["samples"] += n
        return value, n

    def after_step(self, epoch: int, value: float, stop: "StopRequests", on_step) -> None:
        """Log, and stop (saving the state) when asked; every rank stops at the same step."""
        progress, config = self.progress, self.config
        if progress["global_step"] % config.log_every == 0:
            self.log.scalar(f"{self.phase.name}/train_loss_step", value, progress["global_step"])
        want_stop = stop.requested or bool(on_step and on_step(
            {"epoch": epoch, "step": progress["step"], "global_step": progress["global_step"], "loss": value}))
        if self.rt.distributed:
            flag = torch.tensor([float(want_stop)], device=self.device)
            want_stop = bool(self.rt.all_reduce(flag, dist.ReduceOp.MAX).item())
        if want_stop:
            self.save_state(self.epoch_sums())
            raise TrainingInterrupted(self.state_path, epoch, progress["step"])
        if config.save_every_steps and progress["global_step"] % config.save_every_steps == 0:
            self.save_state(self.epoch_sums())

    def end_epoch(self, epoch: int, seen: int, seconds: float) -> None:
        """Validate, schedule, record, and write the epoch's files (`commit_epoch`)."""
        phase, progress = self.phase, self.progress
        loss_sum, samples = self.epoch_sums()
        metrics = {"train_loss": loss_sum / max(samples, 1)}
        metrics.update(validate(phase, self.model, self.val_loader, self.autocast, self.rt))
        check_finite(metrics["val_loss"], self.rt, epoch, progress["step"], self.advice, "validation loss")
        check_weights(self.model, self.advice)  # on every rank, before anything of this epoch is saved
        metric = metrics.get(phase.metric, float("nan"))
        if self.plateau is not None and math.isfinite(metric):
            self.plateau.step(metric)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        metrics["img_per_s"] = seen * self.rt.world / max(seconds, 1e-9)
        metrics["seconds"] = seconds
        improved = math.isfinite(metric) and (
            progress["best"] is None
            or (metric > progress["best"] if phase.mode == "max" else metric < progress["best"]))
        if improved:
            progress["best"], progress["best_epoch"] = metric, epoch + 1
        progress["history"].append({"epoch": epoch + 1, **metrics})
        progress.update(epoch=epoch + 1, step=0, loss_sum=0.0, samples=0)
        if self.rt.main:
            self.commit_epoch(epoch, metrics, improved)
        self.log.epoch(phase.name, progress["history"], improved, progress["global_step"])

    def commit_epoch(self, epoch: int, metrics: dict, improved: bool) -> None:
        """The files of an epoch's end as one step: each is written under a temporary name
        and all are renamed into place once every one is complete, state.pt last. After any
        failure (a full disk, a kill) state.pt, which --resume trusts, and the weights and
        metrics.csv it vouches for are those of one epoch, and nothing half-written is left."""
        meta, run = self.job.metadata(epoch + 1, metrics), self.job.run
        names = ([run.epoch_weights(epoch + 1)] if self.config.keep_epoch_checkpoints else []) \
            + ([run.weights("best")] if improved else []) + [run.weights("last")]
        # An ExitStack ends its blocks in reverse order: the state, entered first, is renamed
        # last; an error in any block removes every temporary file.
        with ExitStack() as files:
            def staged(path: Path, suffix: str = "") -> Path:
                return files.enter_context(atomic_path(path, suffix=suffix))

            ckpt.write_state(staged(self.state_path, ".pt"), self.state_dict((0.0, 0)))
            staged(run.metrics_path).write_bytes(metrics_csv(self.progress["history"]))
            for path in names:
                weights.write_weights(staged(path, ".safetensors"), self.model, meta)

    def summary(self) -> dict:
        progress = self.progress
        return {
            "phase": self.phase.name,
            "epochs": progress["epoch"],
            "metric": self.phase.metric,
            "best": progress["best"],
            "best_epoch": progress["best_epoch"],
            "last": str(self.job.run.weights("last")),
            "best_checkpoint": (str(self.job.run.weights("best"))
                                if progress["best"] is not None else None),
            "history": progress["history"],
        }


def check_finite(value: float, rt: Runtime, epoch: int, step: int, advice: Callable[[], str],
                 what: str = "loss") -> None:
    """Stop on a NaN/inf (training or validation) loss before it reaches the weights;
    nothing is saved after it. `advice`: what was kept and what to change (divergence.py)."""
    bad = not math.isfinite(value)
    if rt.distributed:
        flag = torch.tensor([float(bad)], device=rt.device)
        bad = bool(rt.all_reduce(flag, dist.ReduceOp.MAX).item())
    if bad:
        where = f"at step {step + 1}" if what == "loss" else "at its end"
        raise HgposeError(f"{what} became {value} in epoch {epoch + 1} {where}; {advice()}")


def check_weights(model: nn.Module, advice: Callable[[], str]) -> None:
    """NaN/inf weights are never saved: they would become `best`/`last` and every later
    stage would read them (a step can diverge without its own loss being NaN)."""
    bad = weights.non_finite(model.state_dict())
    if bad:
        raise HgposeError(f"weights became NaN/inf ({bad[0]} and {len(bad) - 1} more); {advice()}")


def require_crops(job: Job) -> None:
    """An empty split would "train" nothing and save an untrained network as best."""
    for name, dataset in (("train", job.train_set), ("val", job.val_set)):
        if len(dataset) == 0:
            where = getattr(dataset, "data_dir", job.run.path)
            raise HgposeError(
                f"{where}: the {name} split holds no crops; training needs both train and val crops "
                "(see the counts `hgpose prepare` printed, and data.train_limit/data.val_limit)")


@torch.no_grad()
def validate(phase, model: nn.Module, loader, autocast, rt: Runtime) -> dict:
    """Validation metrics over the whole split (each rank scores its shard, then all-reduce).

    Runs the plain module, not the DDP wrapper: DDP's forward would sync buffers across
    ranks, and ranks may hold different numbers of validation batches.
    """
    model.eval()
    pck, loss_sum = phase.validate(model, loader, autocast)
    rt.all_reduce(loss_sum)
    metrics = {"val_loss": float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else float("nan")}
    if pck is not None:
        pck.all_reduce()
        summary = pck.summary()
        metrics.update(val_pck=summary["pck"], val_pck_visible=summary["pck_visible"],
                       val_pck_limbs=summary["pck_limbs"])
    return metrics


# --- logs ----------------------------------------------------------------------------------

def metrics_csv(history: list[dict]) -> bytes:
    """metrics.csv: one row per epoch of `history`, the columns of its latest row."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[-1]), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue().encode()


class RunLog:
    """TensorBoard scalars and the epoch line (metrics.csv is one of an epoch's files:
    `_Fit.commit_epoch`); rank 0 only."""

    def __init__(self, run: RunDir, config: TrainConfig, rt: Runtime, purge_step: int | None):
        self.run = run
        self.enabled = rt.main
        self.verbose = rt.main and config.progress
        self.writer = None
        if self.enabled and config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a crashed run logged past the resumed position.
            self.writer = SummaryWriter(log_dir=str(run.tensorboard_dir), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def epoch(self, phase: str, history: list[dict], improved: bool, global_step: int) -> None:
        # TensorBoard x axis = optimizer steps for every scalar, so purge_step applies to all.
        if not self.enabled:
            return
        row = history[-1]
        for key, value in row.items():
            if key != "epoch" and value is not None:
                self.scalar(f"{phase}/{key}", value, global_step)
        if self.writer is not None:
            self.writer.flush()
        if self.verbose:
            shown = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds"))
            tqdm.write(f"{phase} epoch {row['epoch']}: {shown}{' (best)' if improved else ''}",
                       file=sys.stderr)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
