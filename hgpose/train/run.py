"""`hgpose train`: resolve the config, set up the run directory, run the preset's recipe.

RUN_DIR/
    config.json          the resolved TrainConfig (a run is reproducible from it and its seed)
    run.json             the store (path and manifest sha256: a resume must give the same),
                         --init, versions, number of processes, the resumes and their changes
    metrics.csv          one row per epoch; tb/ TensorBoard scalars
    checkpoints/         state.pt, last/best/epoch_NNN.safetensors (hgpose/runs/)
    ae/                  thesis-ae only: latents/{train,val}.npy and the AE pre-training's
                         own metrics.csv, tb/ and checkpoints/
"""

from __future__ import annotations

import json
import os
import random
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from hgpose import __version__
from hgpose.data.store import Store
from hgpose.errors import HgposeError
from hgpose.io import run_lock, write_json
from hgpose.models import LatentAutoencoder, build_model
from hgpose import config as cfg
from hgpose.runs import RunDir, resolve_checkpoint, weights
from hgpose.data.dataset import CropDataset, make_loader
from hgpose.train.loop import Job, Runtime, fit, loader_workers, start_runtime, stop_runtime
from hgpose.train import announce
from hgpose.train.step import autocast_factory
from hgpose.train.recipes import AE_PREFIX, AEPhase, LatentDataset, PosePhase, extract_latents


def train(
    data_dir: str | Path,
    run_dir: str | Path,
    preset: str | None = None,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    overrides: Iterable[str] = (),
    resume: bool = False,
    init: str | Path | None = None,
    config: cfg.TrainConfig | None = None,
    on_step: Callable[[dict], bool] | None = None,
    minutes: float | None = None,
    phase_of_budget: bool = False,
) -> dict:
    """Train a pose network on a dataset store; returns a summary of the run.

    preset: "thesis" (None: the default) | "newell" | "thesis-ae" | "cpu", or pass a ready
        `config` instead; with `resume`, None or the run's own.
    overrides: "key=value" strings with dotted keys (as `--set`); epochs/batch_size win.
    resume: continue RUN_DIR from its saved state (its config.json, plus `overrides`: each
        change is applied and recorded or refused, hgpose.train.resume).
    init: weights to start from, a .safetensors file or a run folder (its best, else last;
        thesis-ae: the thesis checkpoint the AE learns from).
    on_step: called after every optimizer step with {"epoch", "step", "global_step", "loss"};
        returning True stops the run like Ctrl-C (state saved, TrainingInterrupted raised).
    minutes: train for this wall-clock budget instead of a number of epochs: the epochs and
        the schedule's decays are planned from the measured pace (hgpose.train.budget).
    phase_of_budget: set by hgpose.train.budget, whose phases stop at a planned decay on
        purpose (the next phase applies it), so no note about decays cut off is printed.

    Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 writes all files.
    """
    if minutes is not None:
        if epochs is not None:
            raise HgposeError("give --epochs or --minutes, not both: --minutes plans the epochs that fit")
        from hgpose.train.budget import train_for

        return train_for(minutes, data_dir, run_dir, preset, resume=resume, overrides=overrides,
                         batch_size=batch_size, init=init, config=config, on_step=on_step)
    run_dir = RunDir(run_dir)
    config, recorded = _resolve(run_dir, preset, config, overrides, epochs, batch_size, resume)
    rt = start_runtime(config)
    note = None if phase_of_budget else announce.cut_decays(config)
    if note and rt.main and config.progress:
        print(note, file=sys.stderr)
    deterministic = torch.are_deterministic_algorithms_enabled()
    # Rank 0 holds RUN_DIR's lock for the whole run: a second `train` (or `--resume`) into
    # it stops with one line instead of both writing checkpoints.
    with ExitStack() as held:
        if rt.main:
            held.enter_context(run_lock(run_dir.path, "hgpose train", "run directory (--out)"))
        try:
            return _train(run_dir, data_dir, config, rt, _Start(resume, init, recorded, on_step))
        finally:
            torch.use_deterministic_algorithms(deterministic)
            stop_runtime(rt)


@dataclass
class _Start:
    """How this command starts the run: a new one, or resuming it (and from what)."""

    resume: bool
    init: str | Path | None               # --init as given (a weights file or a run folder)
    recorded: cfg.TrainConfig | None      # the run's config.json before this command (resume)
    on_step: Callable[[dict], bool] | None


def _train(run_dir: RunDir, data_dir, config, rt: Runtime, start: _Start) -> dict:
    _check_start(run_dir, start)
    autocast_factory(config, rt.device)  # a precision this device cannot run stops here, before any write
    rt.barrier()  # every rank has looked before rank 0 writes
    _make_reproducible(config)
    store = Store.open(data_dir)
    run_info = _run_info(run_dir, store, start, rt)
    init = run_info["init"]

    # config.json and run.json are written only once the data, --init and a resumed state
    # have been found usable, and every change of a resume allowed (fit's on_start): a
    # command that fails before that leaves RUN_DIR as it was.
    def write_run_files(resumed: dict | None) -> None:
        note = store.old_pixel_convention
        if rt.main and note:  # once the run starts: a failing command prints its error alone
            print(f"hgpose train: note: {note}", file=sys.stderr)
        if resumed is not None:
            run_info["resumed"] = [*run_info.get("resumed", []), resumed]
        if rt.main:
            run_dir.remove_temporaries()  # of a save that was killed: ours, and the lock is held
            cfg.save(config, run_dir.config_path)
            write_json(run_dir.run_info_path, run_info)

    mean = torch.from_numpy(store.mean_rgb)
    recipe = _thesis_ae if config.recipe == "thesis-ae" else _pose
    summary = recipe(config, store, run_dir, mean, init, start, rt, write_run_files)
    rt.barrier()  # rank 0 has written its last file when anyone returns
    return {"run_dir": str(run_dir.path), **summary}


def _check_start(run_dir: RunDir, start: _Start) -> None:
    """A new run needs a folder without one; a resumed run goes on from its own state."""
    if not start.resume and run_dir.has_progress():
        raise HgposeError(
            f"{run_dir.path} already holds a run (checkpoints); add --resume to continue it, "
            "or choose another --out")
    if not start.resume:
        strangers = run_dir.strangers()
        if strangers:
            more = f" and {len(strangers) - 1} more" if len(strangers) > 1 else ""
            raise HgposeError(f"{run_dir.path}: holds {strangers[0].name}{more}, and is not a run folder of "
                              "`hgpose train`; give a new or empty folder as --out (a run never writes "
                              "among files it did not write)")
        return
    for run in (run_dir, run_dir.autoencoder):
        if run.has_weights() and not run.state_path.exists():
            raise HgposeError(
                f"{run.state_path}: not found, but {run.checkpoints} holds weights; --resume needs the "
                f"state: start a new run from them with --init {run_dir.path} (another --out)")
    states = [p for p in (run_dir.state_path, run_dir.autoencoder.state_path) if p.exists()]
    if start.init is not None and states:
        raise HgposeError(f"--init {start.init}: a resumed run goes on from its saved state ({states[0]}); "
                          "drop --init, or start a new run (another --out) from these weights")


def _resolve(run_dir: RunDir, preset, config, overrides, epochs, batch_size,
             resume) -> tuple[cfg.TrainConfig, cfg.TrainConfig | None]:
    """(the config to run, the run's config.json before this command when resuming)."""
    if resume:
        recorded = _recorded_config(run_dir)
        if preset is not None and preset != recorded.preset:
            raise HgposeError(f"--preset {preset}: the run in {run_dir.path} was started with preset "
                              f"{recorded.preset}; --resume goes on with its own config (drop --preset)")
        updated = cfg.update(cfg.from_dict(cfg.to_dict(recorded)), overrides, epochs=epochs, batch_size=batch_size)
        return updated, recorded
    if config is None:
        return cfg.resolve(preset or "thesis", overrides, epochs=epochs, batch_size=batch_size), None
    return cfg.update(cfg.from_dict(cfg.to_dict(config)), overrides, epochs=epochs, batch_size=batch_size), None


def _recorded_config(run_dir: RunDir) -> cfg.TrainConfig:
    """The config of the run to resume: config.json, or, where it was lost, the one its
    state.pt records (written back to config.json when the run goes on)."""
    if run_dir.is_run():
        return run_dir.load_config()
    for state_path in (run_dir.state_path, run_dir.autoencoder.state_path):
        if state_path.is_file():
            from hgpose.runs.state import load_state
            from hgpose.train.resume import ran_config

            recorded = ran_config(load_state(state_path), None, state_path)
            if recorded is not None:
                return recorded
            raise HgposeError(f"{run_dir.config_path}: not found, and {state_path} predates states that "
                              "record their config; restore config.json to resume")
    raise HgposeError(f"{run_dir.config_path}: not found; {run_dir.path} holds no run to resume "
                      "(drop --resume)")


def _run_info(run_dir: RunDir, store: Store, start: _Start, rt: Runtime) -> dict:
    """run.json: the store (a resume must give the same one), --init, versions, the resumes."""
    previous = _previous_info(run_dir) if start.resume else {}
    identity = {"path": str(store.path.resolve()), "manifest_sha256": store.manifest_sha256}
    recorded = previous.get("store")
    if isinstance(recorded, dict) and recorded.get("manifest_sha256") != store.manifest_sha256:
        raise HgposeError(
            f"{store.path}: not the store this run trained on ({recorded.get('path')}, manifest sha256 "
            f"{str(recorded.get('manifest_sha256'))[:12]}..., this one {store.manifest_sha256[:12]}...); "
            f"give that store as DATA_DIR, or start a new run (--init {run_dir.path} starts from its weights)")
    init = previous.get("init") if start.init is None else _init_weights(start.init)
    return {
        "data_dir": identity["path"],
        "store": identity,
        "init": str(Path(init).resolve()) if init is not None else None,
        "world_size": rt.world,
        "hgpose": __version__,
        "torch": torch.__version__,
        "command": sys.argv,
        **({"resumed": previous["resumed"]} if isinstance(previous.get("resumed"), list) else {}),
    }


def _previous_info(run_dir: RunDir) -> dict:
    """The run.json of the run being resumed ({} where it has none)."""
    path = run_dir.run_info_path
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HgposeError(f"{path}: not valid JSON ({e}); restore it, or delete it to resume without "
                          "the record of the store this run trained on") from None
    if not isinstance(info, dict):
        raise HgposeError(f"{path}: expected a JSON object; restore it, or delete it to resume without "
                          "the record of the store this run trained on")
    return info


def _init_weights(init: str | Path) -> Path:
    """--init: a weights file, or a run folder's weights by the one rule (best, else last)."""
    try:
        return resolve_checkpoint(init)[0]
    except HgposeError as e:
        raise HgposeError(f"--init {e}") from None


def _make_reproducible(config: cfg.TrainConfig) -> None:
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)  # also seeds CUDA; same on every rank -> same initial weights
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not config.deterministic


def pose_job(config: cfg.TrainConfig, store: Store, run: RunDir, mean: torch.Tensor, model, rt: Runtime,
             on_start=None, recorded: cfg.TrainConfig | None = None) -> Job:
    """What `hgpose train` fits for a pose network: `model` on the store's train split,
    validated on its val split, its weights files in `run` (public, so that a benchmark
    trains exactly what `hgpose train` trains)."""
    return Job(
        phase=PosePhase(config, rt.device, mean),
        model=model,
        train_set=CropDataset(store, "train", config.data.train_limit),
        val_set=CropDataset(store, "val", config.data.val_limit),
        epochs=config.epochs,
        batch_size=config.batch_size,
        optim=config.optim,
        run=run,
        metadata=lambda epoch, metrics: weights.weights_metadata(
            config.model, mean.tolist(), epoch, metrics, config.preset, config.target,
            store.trained_joints),
        on_start=on_start,
        recorded=recorded,
    )


def _pose(config, store: Store, run_dir: RunDir, mean, init, start: _Start, rt, on_start) -> dict:
    model = build_model(config.model)
    resuming = start.resume and run_dir.state_path.exists()
    if init is not None and not resuming:
        state, _ = weights.load_weights(init)
        weights.load_into(model, state, init)
    job = pose_job(config, store, run_dir, mean, model, rt, on_start, start.recorded)
    return fit(job, config, rt, start.resume, start.on_step)


def _thesis_ae(config, store: Store, run_dir: RunDir, mean, init, start: _Start, rt, on_start) -> dict:
    """Latents from the --init thesis network -> AE pre-training -> SHG+AE fine-tuning."""
    ae_dir = run_dir.autoencoder
    finetune_state = run_dir.state_path
    ae_summary = None
    resume = start.resume
    if not (resume and finetune_state.exists()):
        if init is None:
            raise HgposeError("preset thesis-ae needs --init CKPT: the weights of a trained thesis "
                              "network (e.g. RUN_DIR/checkpoints/best.safetensors of a thesis run, or RUN_DIR)")
        thesis_state, _ = weights.load_weights(init)
        _save_latents(config, store, ae_dir, mean, thesis_state, init, rt)
        ae_summary = _pretrain_ae(config, ae_dir, start, rt, on_start)

    model = build_model(config.model)  # ThesisNetwork(autoencoder=True)
    if not (resume and finetune_state.exists()):
        weights.load_into(model, thesis_state, init, allow_missing=(AE_PREFIX,))
        ae_weights, _ = weights.load_weights(ae_dir.resolve())  # best, else last
        model.hourglass.autoencoder.load_state_dict(ae_weights)
    job = pose_job(config, store, run_dir, mean, model, rt, on_start, start.recorded)
    summary = fit(job, config, rt, resume, start.on_step)
    return {**summary, "ae": ae_summary}


def _save_latents(config, store: Store, ae_dir: RunDir, mean, thesis_state, init, rt: Runtime) -> None:
    """Bottleneck latents of every train and val crop, once (rank 0; the others wait)."""
    paths = {split: ae_latents(ae_dir, split) for split in ("train", "val")}
    if rt.main and not all(p.exists() for p in paths.values()):
        thesis_config = cfg.ModelConfig(name="thesis", features=config.model.features,
                                        resolution=config.model.resolution)
        network = build_model(thesis_config)
        weights.load_into(network, thesis_state, init)
        network.to(rt.device)
        limits = {"train": config.data.train_limit, "val": config.data.val_limit}
        for split, path in paths.items():
            if path.exists():
                continue
            dataset = CropDataset(store, split, limits[split])
            loader = make_loader(dataset, config.data.val_batch_size, None, loader_workers(config, rt.device), rt.device)
            extract_latents(network, loader, rt.device, mean, path, len(dataset))
    rt.barrier()


def ae_latents(ae_dir: RunDir, split: str) -> Path:
    """thesis-ae's saved bottleneck latents of a split: RUN_DIR/ae/latents/<split>.npy."""
    return ae_dir.path / "latents" / f"{split}.npy"


def _pretrain_ae(config, ae_dir: RunDir, start: _Start, rt: Runtime, on_start) -> dict:
    torch.manual_seed(config.seed)
    ae = LatentAutoencoder(channels=config.model.features)
    job = Job(
        phase=AEPhase(config, rt.device),
        model=ae,
        train_set=LatentDataset(ae_latents(ae_dir, "train")),
        val_set=LatentDataset(ae_latents(ae_dir, "val")),
        epochs=config.ae.epochs,
        batch_size=config.ae.batch_size,
        optim=config.ae.optim,
        run=ae_dir,
        metadata=lambda epoch, metrics: {
            "autoencoder": {"channels": config.model.features, "code": 50},
            "epoch": epoch, "metrics": metrics, "preset": config.preset},
        on_start=on_start,
        recorded=start.recorded,
    )
    # Without --resume the run directory was new, so there is nothing to continue anyway.
    return fit(job, config, rt, start.resume, start.on_step)


def run_summary(run: RunDir) -> dict:
    """A pose run's summary (as `train` returns it) from its folder: metrics.csv and its
    weights files. For a run stopped on purpose, e.g. at the end of its time budget."""
    import csv

    history = []
    if run.metrics_path.is_file():
        with open(run.metrics_path, newline="") as f:
            history = [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                       for row in csv.DictReader(f)]
    scored = [row for row in history if row.get("val_pck") is not None]
    best = max(scored, key=lambda row: row["val_pck"], default=None)
    return {"run_dir": str(run.path), "phase": "pose", "epochs": len(history), "metric": "val_pck",
            "best": None if best is None else best["val_pck"],
            "best_epoch": None if best is None else int(best["epoch"]),
            "last": str(run.weights("last")),
            "best_checkpoint": str(run.weights("best")) if run.weights("best").is_file() else None,
            "history": history}


def format_summary(summary: dict) -> str:
    """What `hgpose train` prints at the end."""
    lines = []
    if summary.get("ae"):
        ae = summary["ae"]
        lines.append(f"autoencoder: {ae['epochs']} epochs, best val_loss {ae['best']:.4g} "
                     f"(epoch {ae['best_epoch']})")
    last = summary["history"][-1] if summary["history"] else {}
    lines.append(f"{summary['epochs']} epochs; last val_pck {last.get('val_pck', float('nan')):.4f}, "
                 f"{last.get('img_per_s', float('nan')):.1f} img/s")
    if summary["best"] is not None:
        lines.append(f"best {summary['metric']} {summary['best']:.4f} (epoch {summary['best_epoch']}): "
                     f"{summary['best_checkpoint']}")
    lines.append(f"run directory: {summary['run_dir']} (metrics.csv, tb/, checkpoints/)")
    return "\n".join(lines)
