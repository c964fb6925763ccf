"""The `thesis` preset's learning curve, next to the thesis's own (issue 16).

Trains the EXACT thesis recipe (`--preset thesis`: thesis codec, MSE over the maps, batch 16,
RMSprop 2.5e-4, plateau schedule on val PCK, no augmentation, fp32) at a chosen width on a
chosen store, for a fixed number of samples, and prints validation thesis-PCK and validation
loss against samples seen, beside the thesis's curve (SPEC §7, from hgpose.thesis) and the
untrained level: the PCK and loss of the untrained network, and the loss of predicting
all-zero maps on the same val split (computed here, never typed in). It also prints the prior
level: the val PCK of a constant prediction, every joint at its median training cell, which a
network reaches by learning where joints usually lie in a crop, without looking at the person.

    python benchmarks/thesis_curve.py STORE --out OUT [--width 16] [--samples 124000]
                                      [--eval-every 8000] [--probe-steps 200]

Only `model.features` differs from the preset (plus bookkeeping that does not touch the
recipe: no progress bar, no TensorBoard, no per-epoch weights files; `--workers`).
Training is `hgpose.train.loop.fit`, the loop `hgpose train` runs: its epochs, its plateau
scheduler (stepped on val PCK at every end of an epoch of the store's train split, so on a
small store the schedule reacts after far fewer samples than in the thesis, whose epoch was
124,040 crops), its checkpoints and its exact resume. The loop is stopped at every
`--eval-every` samples; it then saves OUT/checkpoints/state.pt atomically, the network is
scored on the val split and OUT/thesis_curve.json is rewritten (atomically). Running the
same command again continues from the saved sample count; a larger `--samples` extends a
finished run. SIGTERM or Ctrl-C stop it after the current step with the state saved.

Over the first `--probe-steps` optimizer steps it also records what reaches the head
(conv1x1 -> BN -> ReLU -> conv1x1): the gradient norm of the final 1x1 conv, of the BN and
of the 1x1 conv before it (and of the stem's first conv, for scale), the fraction of the
head's ReLU channels that are dead over the batch (input <= 0 at every position of every
crop), the fraction of ReLU inputs <= 0, the predicted maps' mean and maximum, and the
fraction of gradient elements smaller than RMSprop's eps.

OUT/thesis_curve.json holds: width, store, samples, the curve rows, the per-epoch rows of
the loop (metrics.csv, with the learning rate), the head probe, the untrained level, the
thesis's curve, torch version, CPU, threads and seconds. OUT/metrics.csv and
OUT/checkpoints/ are the usual run folder of `hgpose train`.
"""

from __future__ import annotations

import argparse
import copy
import csv
import inspect
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from hgpose import config as cfg
from hgpose import thesis
from hgpose.codecs import ABSENT, argmax_2d
from hgpose.cpu import cpu_model
from hgpose.data.dataset import CropDataset, make_loader
from hgpose.data.store import Store
from hgpose.evaluate.pck import PCKAccumulator
from hgpose.io import write_json
from hgpose.models import build_model
from hgpose.runs import RunDir, weights
from hgpose.runs import state as ckpt
from hgpose.train.data import ShardSampler
from hgpose.train.loop import Runtime, TrainingInterrupted, fit, start_runtime, validate
from hgpose.train.recipes import PosePhase
from hgpose.train.run import pose_job
from hgpose.train.step import autocast_factory

RECORD_NAME = "thesis_curve.json"
# Settings that change what is shown or saved, never what is learned.
BOOKKEEPING = ["progress=false", "tensorboard=false", "keep_epoch_checkpoints=false"]
# Parameters whose gradient the probe records: the head from its output back, then the
# network's first layer (how much of the signal reaches the far end).
PROBED = ("head.conv2.weight", "head.conv2.bias", "head.bn.weight", "head.bn.bias",
          "head.conv1.weight", "head.conv1.bias", "stem.conv.weight")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", type=Path, help="a store written by `hgpose prepare` (its train and val splits)")
    p.add_argument("--out", type=Path, required=True,
                   help="run folder: thesis_curve.json, metrics.csv, checkpoints/ (continued when it exists)")
    p.add_argument("--width", type=int, default=16, help="model.features, the one change to the preset (default 16)")
    p.add_argument("--samples", type=int, default=thesis.TRAIN_CROPS,
                   help=f"training samples to reach (default {thesis.TRAIN_CROPS:,}: one thesis epoch)")
    p.add_argument("--eval-every", type=int, default=8000, help="score the val split every N samples (default 8000)")
    p.add_argument("--probe-steps", type=int, default=200,
                   help="record head gradients and dead ReLUs over the first N steps (default 200)")
    p.add_argument("--margin", type=float, default=0.02,
                   help="a run has left the untrained level once its val PCK exceeds the untrained "
                        "network's by more than this (default 0.02)")
    p.add_argument("--seed", type=int, default=0, help="the preset's seed (initial weights, sample order)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader processes (default: the preset's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    for name in ("width", "samples", "eval_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


@dataclass
class Context:
    """What every stage of a run shares: the config, the data and the phase that scores it."""

    config: cfg.TrainConfig
    store: Store
    out: RunDir
    rt: Runtime
    phase: PosePhase
    train_set: CropDataset
    val_set: CropDataset
    mean: torch.Tensor

    @property
    def n_train(self) -> int:
        return len(self.train_set)

    def samples(self, epoch: int, step: int) -> int:
        """Samples seen at (epoch, step within it), one process: the last batch may be short."""
        return epoch * self.n_train + min(step * self.config.batch_size, self.n_train)


def make_context(args) -> Context:
    overrides = [f"model.features={args.width}", f"seed={args.seed}", *BOOKKEEPING]
    if args.workers is not None:
        overrides.append(f"data.workers={args.workers}")
    config = cfg.resolve("thesis", overrides)
    store = Store.open(args.store)
    train_set = CropDataset(store, "train")
    # Enough epochs for the loop never to end on its own: it is stopped at --samples.
    config.epochs = max(1, math.ceil(args.samples / max(len(train_set), 1)))
    rt = start_runtime(config)
    mean = torch.from_numpy(store.mean_rgb)
    return Context(config, store, RunDir(args.out), rt, PosePhase(config, rt.device, mean),
                   train_set, CropDataset(store, "val"), mean)


def fresh_network(ctx: Context) -> torch.nn.Module:
    """The network a new run starts from: `hgpose train` seeds torch with the config's seed
    right before building it, so this is the very network it would train."""
    torch.manual_seed(ctx.config.seed)
    return build_model(ctx.config.model).to(ctx.rt.device)


def val_loader(ctx: Context):
    return make_loader(ctx.val_set, ctx.config.data.val_batch_size, ShardSampler(len(ctx.val_set)),
                       ctx.config.data.workers, ctx.rt.device)


def score(ctx: Context, model) -> dict:
    """Val thesis-PCK (all, visible, limbs) and val loss, exactly as the loop validates; the
    head's ReLU channels that never fire over the whole val split (eval-mode BN) and the
    largest predicted value; and the head's gradient on one val batch (`head_gradient`)."""
    alive = torch.zeros(model.num_joints, dtype=torch.bool, device=ctx.rt.device)
    top = torch.full((), -math.inf, device=ctx.rt.device)

    def relu_hook(module, inputs, output):
        alive.logical_or_(inputs[0].detach().gt(0).any(dim=0).flatten(1).any(dim=1))

    def head_hook(module, inputs, output):
        top.copy_(torch.maximum(top, output.detach().float().max()))

    hooks = [model.head.relu.register_forward_hook(relu_hook), model.head.register_forward_hook(head_hook)]
    try:
        metrics = validate(ctx.phase, model, val_loader(ctx), autocast_factory(ctx.config, ctx.rt.device), ctx.rt)
    finally:
        for hook in hooks:
            hook.remove()
    metrics.update(val_dead_channels=1 - alive.float().mean().item(), val_out_max=top.item())
    return {**metrics, "head_gradient": head_gradient(ctx, model)}


def head_gradient(ctx: Context, model) -> dict:
    """The probe's row for one training-mode forward/backward on the first val batch, on a
    copy of the network (a training-mode forward would move the run's BN statistics)."""
    twin = copy.deepcopy(model).train()
    rows: list = []
    probe = HeadProbe(twin, rows, 1, rmsprop_eps(), 0)
    batch = next(iter(val_loader(ctx)))
    loss, _ = ctx.phase.train_loss(twin, batch, None, autocast_factory(ctx.config, ctx.rt.device))
    loss.backward()
    probe.after_step({"global_step": 1, "loss": loss.item()})
    probe.remove()
    return {k: v for k, v in rows[0].items() if k != "step"}


@torch.no_grad()
def zero_map_loss(ctx: Context) -> float:
    """The val loss of a network that predicts all-zero maps: the level a run that has
    learned nothing but "predict background" sits at. Same loss, same weighting as `score`."""
    total, count = 0.0, 0
    for batch in val_loader(ctx):
        _, kps = ctx.phase.inputs(batch, None, train=False)
        zeros = torch.zeros(kps.shape[0], 1, kps.shape[1], 64, 64, device=kps.device)
        total += float(ctx.phase.loss_of(zeros, kps)) * kps.shape[0]
        count += kps.shape[0]
    return total / max(count, 1)


def split_keypoints(ctx: Context, split: str) -> torch.Tensor:
    """[N, 17, 3] keypoints of a split as training sees them (absent joints: v = ABSENT),
    read without the crops: the prior needs only where the joints are."""
    rows = ctx.store.split(split)
    kps = np.array(rows.keypoints, dtype=np.float32)
    kps[~rows.joints_present(slice(None)), 2] = ABSENT
    return torch.from_numpy(kps).to(ctx.rt.device)


@torch.no_grad()
def prior_level(ctx: Context) -> dict:
    """Val thesis-PCK of a "network" that ignores the image: every joint always at one cell,
    the median of its training targets' argmax. A run that has learned only where each joint
    usually lies in a crop scores this; on person-centred COCO crops it is far higher than on
    LSPET (the face joints sit in nearly the same place in every crop)."""
    codec = ctx.phase.thesis_codec
    cells, labelled = [], []
    for kps in split_keypoints(ctx, "train").split(256):  # 256 crops' maps at a time: 70 MB
        targets, _ = codec.encode_torch(kps)
        cells.append(argmax_2d(targets).float())
        labelled.append(targets.flatten(2).amax(-1) > 0)
    cells, labelled = torch.cat(cells), torch.cat(labelled)
    median = torch.stack([cells[labelled[:, j], j].median(dim=0).values if labelled[:, j].any()
                          else torch.zeros(2, device=cells.device) for j in range(cells.shape[1])])
    pck = PCKAccumulator(ctx.rt.device)
    for kps in split_keypoints(ctx, "val").split(256):
        targets, _ = codec.encode_torch(kps)
        constant = torch.zeros_like(targets)
        constant[:, torch.arange(len(median)), median[:, 1].long(), median[:, 0].long()] = 1
        pck.update(constant, targets, kps[..., 2])
    summary = pck.summary()
    return {"val_pck": summary["pck"], "val_pck_limbs": summary["pck_limbs"], "cells": median.tolist()}


def untrained_level(ctx: Context) -> dict:
    """The level a run that learned nothing sits at: the untrained network's val PCK and
    loss, and the val loss of all-zero maps."""
    return {**score(ctx, fresh_network(ctx)), "zero_map_loss": zero_map_loss(ctx)}


class HeadProbe:
    """Per optimizer step, for steps <= `last`: gradient norms that reach the head, the
    head's dead ReLUs and its output. Hooks fire only in training mode, so validation
    passes inside the loop leave the rows alone."""

    def __init__(self, model: torch.nn.Module, rows: list, last: int, eps: float, start_step: int):
        self.rows, self.last, self.eps = rows, last, eps
        named = dict(model.named_parameters())
        self.params = {name: named[name] for name in PROBED if name in named}
        self.model = model
        self.pending: dict = {}
        # Past the probed steps the hooks would only cost time.
        self.hooks = [] if start_step >= last else [
            model.head.relu.register_forward_hook(self._relu),
            model.head.register_forward_hook(self._output)]

    def _relu(self, module, inputs, output):
        if module.training:
            positive = inputs[0].detach() > 0                               # [B, 17, 64, 64]
            alive = positive.any(dim=(0, 2, 3))                             # per channel
            self.pending.update(dead_channels=1 - alive.float().mean().item(),
                                relu_nonpositive=1 - positive.float().mean().item())

    def _output(self, module, inputs, output):
        if module.training:
            out = output.detach().float()
            self.pending.update(out_mean=out.mean().item(), out_max=out.max().item())

    def after_step(self, info: dict) -> None:
        """Called after the optimizer step: the gradients are still in .grad."""
        if info["global_step"] > self.last:
            return
        row = {"step": info["global_step"], "loss": info["loss"], **self.pending}
        for name, p in self.params.items():
            row[f"grad_{name}"] = p.grad.norm().item() if p.grad is not None else 0.0
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        below = sum(int((g.abs() < self.eps).sum()) for g in grads)
        row["grad_below_eps"] = below / max(sum(g.numel() for g in grads), 1)
        self.rows.append(row)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def rmsprop_eps() -> float:
    """The eps torch.optim.RMSprop adds to sqrt(v): make_optimizer keeps torch's default."""
    return float(inspect.signature(torch.optim.RMSprop).parameters["eps"].default)


def train_until(ctx: Context, stop_at: int, probe_rows: list, probe_steps: int,
                start_step: int) -> torch.nn.Module:
    """Run the project's loop from the saved state (or from scratch) until `stop_at`
    samples; it saves state.pt there. Returns the network at that point."""
    model = fresh_network(ctx)
    probe = HeadProbe(model, probe_rows, probe_steps, rmsprop_eps(), start_step)
    job = pose_job(ctx.config, ctx.store, ctx.out, ctx.mean, model, ctx.rt)

    def on_step(info: dict) -> bool:
        probe.after_step(info)
        return ctx.samples(info["epoch"], info["step"]) >= stop_at

    try:
        fit(job, ctx.config, ctx.rt, resume=True, on_step=on_step)
    except TrainingInterrupted:
        pass  # the stop we asked for: the state is saved at exactly this step
    finally:
        probe.remove()
    return model


def saved_position(ctx: Context) -> tuple[int, int]:
    """(samples, global step) of OUT/checkpoints/state.pt; (0, 0) before the first save."""
    path = ctx.out.state_path
    if not path.exists():
        return 0, 0
    progress = ckpt.load_state(path)["progress"]
    return progress["epoch"] * ctx.n_train + progress["samples"], progress["global_step"]


def network_at_state(ctx: Context) -> torch.nn.Module:
    model = fresh_network(ctx)
    path = ctx.out.state_path
    weights.load_into(model, ckpt.load_state(path)["model"], path)
    return model


def epoch_rows(ctx: Context) -> list[dict]:
    """The loop's own per-epoch rows (metrics.csv), with the samples seen at each epoch end."""
    path = ctx.out.metrics_path
    if not path.is_file():
        return []
    with path.open() as f:
        rows = [{k: float(v) if v not in ("", None) else None for k, v in row.items()}
                for row in csv.DictReader(f)]
    for row in rows:
        row["epoch"] = int(row["epoch"])
        row["samples"] = row["epoch"] * ctx.n_train
    return rows


def thesis_reference() -> dict:
    """SPEC §7's curve as hgpose.thesis holds it, with samples per thesis epoch."""
    # [epoch, PCK] pairs rather than a mapping: JSON would turn the epochs into strings.
    return {"samples_per_epoch": thesis.TRAIN_CROPS, "val_pck": [list(p) for p in thesis.CURVE_VAL_PCK.items()],
            "val_pck_epochs_1_to_10": thesis.CURVE_VAL_PCK_EPOCHS_1_TO_10,
            "val_loss_first_epochs": thesis.CURVE_VAL_LOSS_FIRST_EPOCHS,
            "lr_drop_after_epoch": thesis.CURVE_LR_DROP_AFTER_EPOCH,
            "best": {"epoch": thesis.CURVE_BEST_EPOCH, "val_pck": thesis.PCK["SHG"]["val"]["all"],
                     "train_loss": thesis.CURVE_BEST_TRAIN_LOSS, "val_loss": thesis.CURVE_BEST_VAL_LOSS}}


def new_record(ctx: Context, args) -> dict:
    return {"benchmark": "thesis_curve", "width": args.width, "store": str(args.store.resolve()),
            "splits": {"train": ctx.n_train, "val": len(ctx.val_set)}, "samples": 0,
            "samples_target": args.samples, "eval_every": args.eval_every, "probe_steps": args.probe_steps,
            "seed": args.seed, "config": cfg.to_dict(ctx.config), "untrained": None, "prior": None,
            "curve": [],
            "epochs": [], "head": {"rmsprop_eps": rmsprop_eps(), "rows": []}, "sessions": [],
            "thesis": thesis_reference(), "torch": torch.__version__, "cpu": cpu_model(),
            "threads": torch.get_num_threads(), "seconds": 0.0}


def load_record(ctx: Context, args) -> dict:
    """The run's record, or a new one. A record of another recipe/width/store is refused:
    its state.pt would not be the run this command asks for."""
    path = ctx.out.path / RECORD_NAME
    if not path.exists():
        return new_record(ctx, args)
    record = json.loads(path.read_text())
    # Through JSON both ways, so that tuples and lists compare equal.
    saved, now = copy.deepcopy(record["config"]), json.loads(json.dumps(cfg.to_dict(ctx.config)))
    saved.pop("epochs"), now.pop("epochs")
    saved["data"].pop("workers"), now["data"].pop("workers")
    if saved != now or record["store"] != str(args.store.resolve()):
        raise SystemExit(f"thesis_curve: {path} is a run of another width, seed or store; "
                         "choose another --out")
    record.update(samples_target=args.samples, eval_every=args.eval_every, config=cfg.to_dict(ctx.config),
                  thesis=thesis_reference())
    return record


def add_row(ctx: Context, record: dict, model, samples: int, step: int, train_seconds: float,
            trained: int, metrics: dict | None = None) -> None:
    start = time.perf_counter()
    metrics = metrics if metrics is not None else score(ctx, model)
    lr = [row["lr"] for row in epoch_rows(ctx) if row["samples"] <= samples]
    record["curve"].append({
        "samples": samples, "global_step": step, "thesis_epochs": samples / thesis.TRAIN_CROPS,
        **metrics, "lr": lr[-1] if lr else ctx.config.optim.lr,
        "img_per_s": trained / train_seconds if train_seconds > 0 else None,
        "eval_seconds": time.perf_counter() - start})


def left_untrained_at(record: dict, margin: float) -> int | None:
    """The first sample count whose val PCK beats the untrained network's by > margin."""
    base = record["untrained"]["val_pck"]
    return next((row["samples"] for row in record["curve"] if row["val_pck"] > base + margin), None)


def save(ctx: Context, record: dict, margin: float) -> None:
    record["epochs"] = epoch_rows(ctx)
    record["left_untrained_at"] = left_untrained_at(record, margin)
    record["margin"] = margin
    write_json(ctx.out.path / RECORD_NAME, record)


def catch_up(ctx: Context, record: dict, session_start: float) -> tuple[int, int]:
    """Where this session starts: the saved state's position. Probe rows past it are
    dropped (those steps replay identically); a state newer than the last row (a run
    stopped between its save and its scoring) is scored now."""
    samples, step = saved_position(ctx)
    record["head"]["rows"] = [r for r in record["head"]["rows"] if r["step"] <= step]
    last = record["curve"][-1]["samples"] if record["curve"] else -1
    if record["untrained"] is None:
        record["untrained"] = untrained_level(ctx)
    if record.get("prior") is None:
        record["prior"] = prior_level(ctx)
    if samples == 0 and last < 0:  # the untrained network is the curve's first point
        scored = {k: v for k, v in record["untrained"].items() if k != "zero_map_loss"}
        add_row(ctx, record, None, 0, 0, 0.0, 0, scored)
    elif samples > last:
        add_row(ctx, record, network_at_state(ctx), samples, step, 0.0, 0)
    record["sessions"].append({"started_at_samples": samples, "started_at_step": step,
                               "setup_seconds": time.perf_counter() - session_start})
    return samples, step


def run(args) -> dict:
    """The whole benchmark (continuing OUT when it holds a run); returns the record."""
    if args.threads:
        torch.set_num_threads(args.threads)
    session_start = time.perf_counter()
    ctx = make_context(args)
    args.out.mkdir(parents=True, exist_ok=True)
    record = load_record(ctx, args)
    samples, step = catch_up(ctx, record, session_start)
    save(ctx, record, args.margin)
    print(HEADER, flush=True)
    while samples < args.samples:
        stop_at = min((samples // args.eval_every + 1) * args.eval_every, args.samples)
        start = time.perf_counter()
        model = train_until(ctx, stop_at, record["head"]["rows"], args.probe_steps, step)
        seconds = time.perf_counter() - start
        reached, step = saved_position(ctx)
        add_row(ctx, record, model, reached, step, seconds, reached - samples)
        record["seconds"] += time.perf_counter() - start
        record["samples"] = samples = reached
        save(ctx, record, args.margin)
        print(format_row(record["curve"][-1], record["untrained"]), flush=True)
    return record


HEADER = "  samples thesis-ep        lr  val PCK    limbs   val loss /zero-map  dead  out max   img/s"


def format_row(row: dict, untrained: dict) -> str:
    rate = f"{row['img_per_s']:7.1f}" if row.get("img_per_s") else "      -"
    ratio = row["val_loss"] / untrained["zero_map_loss"] if untrained["zero_map_loss"] else float("nan")
    return (f"{row['samples']:>9,} {row['thesis_epochs']:6.3f} {row['lr']:9.2e} {row['val_pck']:8.4f} "
            f"{row['val_pck_limbs']:8.4f} {row['val_loss']:10.4e} {ratio:9.4f} "
            f"{row['val_dead_channels']:5.2f} {row['val_out_max']:8.2e} {rate}")


def format_report(record: dict) -> str:
    """The curve beside the untrained level and the thesis's curve (SPEC §7)."""
    u, ref = record["untrained"], record["thesis"]
    lines = [(f"thesis preset, width {record['width']}, {record['splits']['train']:,} train / "
              f"{record['splits']['val']:,} val crops of {record['store']}"),
             HEADER]
    lines += [format_row(row, u) for row in record["curve"]]
    lines.append(f"untrained network: val PCK {u['val_pck']:.4f}, val loss {u['val_loss']:.4e}; "
                 f"all-zero maps: val loss {u['zero_map_loss']:.4e}")
    prior = record["prior"]
    lines.append(f"each joint always at its median training cell (no image): val PCK {prior['val_pck']:.4f}")
    where = record.get("left_untrained_at")
    lines.append(f"left the untrained level (val PCK > untrained + {record['margin']}): "
                 + (f"at {where:,} samples" if where is not None else "not yet"))
    per = ref["samples_per_epoch"]
    readings = ", ".join(f"epoch {e} ({e * per:,} samples) {pck}" for e, pck in ref["val_pck"])
    lines.append(f"thesis (SPEC §7, 256 features, full COCO; read off a figure): {readings}; "
                 f"epochs 1-10: {ref['val_pck_epochs_1_to_10'][0]}-{ref['val_pck_epochs_1_to_10'][1]}; "
                 f"val loss over the first epochs {ref['val_loss_first_epochs'][0]:.2g}-"
                 f"{ref['val_loss_first_epochs'][1]:.2g}; lr drop after epoch {ref['lr_drop_after_epoch']}")
    lines.append(format_probe(record["head"]))
    return "\n".join(lines)


def format_probe(head: dict) -> str:
    rows = head["rows"]
    if not rows:
        return "head probe: no steps recorded"
    lines = [(f"head over the first {len(rows)} steps (|grad| of the final 1x1 conv, its BN, the 1x1 "
              f"before, the stem; dead ReLU channels; grad elements < eps {head['rmsprop_eps']:g}):"),
             "   step       loss  conv2.w    bn.w   conv1.w   stem.w  dead  <=0   out max  <eps"]
    marks = sorted({1, 10, 50, len(rows) // 2, len(rows)} & set(range(1, len(rows) + 1)))
    for r in (rows[i - 1] for i in marks):
        lines.append(f"{r['step']:7d} {r['loss']:10.3e} {r['grad_head.conv2.weight']:8.2e} "
                     f"{r['grad_head.bn.weight']:7.1e} {r['grad_head.conv1.weight']:8.2e} "
                     f"{r['grad_stem.conv.weight']:8.2e} {r.get('dead_channels', 0):5.2f} "
                     f"{r.get('relu_nonpositive', 0):4.2f} {r.get('out_max', 0):9.3e} {r['grad_below_eps']:5.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    record = run(args)
    print(format_report(record))
    print(f"written: {args.out / RECORD_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
