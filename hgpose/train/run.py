"""`hgpose train`: resolve the config, set up the run directory, run the preset's recipe.

RUN_DIR/
    config.json          the resolved TrainConfig (a run is reproducible from it and its seed)
    run.json             data dir, --init, versions, number of processes (informational)
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
from hgpose.runs import RunDir, weights
from hgpose.data.dataset import CropDataset, make_loader
from hgpose.train.loop import Job, Runtime, fit, start_runtime, stop_runtime
from hgpose.train.step import autocast_factory
from hgpose.train.recipes import AE_PREFIX, AEPhase, LatentDataset, PosePhase, extract_latents


def train(
    data_dir: str | Path,
    run_dir: str | Path,
    preset: str = "thesis",
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    overrides: Iterable[str] = (),
    resume: bool = False,
    init: str | Path | None = None,
    config: cfg.TrainConfig | None = None,
    on_step: Callable[[dict], bool] | None = None,
) -> dict:
    """Train a pose network on a dataset store; returns a summary of the run.

    preset: "thesis" | "newell" | "thesis-ae", or pass a ready `config` instead.
    overrides: "key=value" strings with dotted keys (as `--set`); epochs/batch_size win.
    resume: continue RUN_DIR from its saved state (its config.json, plus `overrides`).
    init: a weights file to start from (thesis-ae: the thesis checkpoint the AE learns from).
    on_step: called after every optimizer step with {"epoch", "step", "global_step", "loss"};
        returning True stops the run like Ctrl-C (state saved, TrainingInterrupted raised).

    Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 writes all files.
    """
    run_dir = RunDir(run_dir)
    config = _resolve(run_dir, preset, config, overrides, epochs, batch_size, resume)
    rt = start_runtime(config)
    deterministic = torch.are_deterministic_algorithms_enabled()
    # Rank 0 holds RUN_DIR's lock for the whole run: a second `train` (or `--resume`) into
    # it stops with one line instead of both writing checkpoints.
    with ExitStack() as held:
        if rt.main:
            held.enter_context(run_lock(run_dir.path, "hgpose train", "run directory (--out)"))
        try:
            return _train(run_dir, data_dir, config, rt, resume, init, on_step)
        finally:
            torch.use_deterministic_algorithms(deterministic)
            stop_runtime(rt)


def _train(run_dir: RunDir, data_dir, config, rt: Runtime, resume: bool, init, on_step) -> dict:
    if not resume and run_dir.has_progress():
        raise HgposeError(
            f"{run_dir.path} already holds a run (checkpoints); add --resume to continue it, "
            "or choose another --out")
    autocast_factory(config, rt.device)  # a precision this device cannot run stops here, before any write
    rt.barrier()  # every rank has looked before rank 0 writes
    run_info = _run_info(run_dir, data_dir, init, resume, rt)
    init = run_info["init"]

    def write_run_files() -> None:
        note = store.old_pixel_convention
        if rt.main and note:  # once the run starts: a failing command prints its error alone
            print(f"hgpose train: note: {note}", file=sys.stderr)
        if rt.main:
            cfg.save(config, run_dir.config_path)
            write_json(run_dir.run_info_path, run_info)

    # config.json is written only once the data, --init and a resumed state have been
    # found usable (fit's on_start): a command that fails before that leaves RUN_DIR as it
    # was, and a rejected `--resume --batch-size ...` leaves config.json untouched.
    _make_reproducible(config)
    store = Store.open(data_dir)
    mean = torch.from_numpy(store.mean_rgb)
    if config.recipe == "thesis-ae":
        summary = _thesis_ae(config, store, run_dir, mean, init, resume, rt, on_step,
                             write_run_files)
    else:
        summary = _pose(config, store, run_dir, mean, init, resume, rt, on_step,
                        write_run_files)
    rt.barrier()  # rank 0 has written its last file when anyone returns
    return {"run_dir": str(run_dir.path), **summary}


def _resolve(run_dir: RunDir, preset, config, overrides, epochs, batch_size, resume) -> cfg.TrainConfig:
    if resume:
        if not run_dir.is_run():
            raise HgposeError(f"{run_dir.config_path}: not found; {run_dir.path} holds no run to resume "
                              "(drop --resume)")
        return cfg.update(run_dir.load_config(), overrides, epochs=epochs, batch_size=batch_size)
    if config is None:
        return cfg.resolve(preset, overrides, epochs=epochs, batch_size=batch_size)
    return cfg.update(cfg.from_dict(cfg.to_dict(config)), overrides, epochs=epochs, batch_size=batch_size)


def _run_info(run_dir: RunDir, data_dir, init, resume: bool, rt: Runtime) -> dict:
    previous = {}
    if resume and run_dir.run_info_path.exists():
        previous = json.loads(run_dir.run_info_path.read_text())
    if init is None:
        init = previous.get("init")
    return {
        "data_dir": str(Path(data_dir).resolve()),
        "init": str(Path(init).resolve()) if init is not None else None,
        "world_size": rt.world,
        "hgpose": __version__,
        "torch": torch.__version__,
        "command": sys.argv,
    }


def _make_reproducible(config: cfg.TrainConfig) -> None:
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)  # also seeds CUDA; same on every rank -> same initial weights
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not config.deterministic


def pose_job(config: cfg.TrainConfig, store: Store, run: RunDir, mean: torch.Tensor, model, rt: Runtime,
             on_start=None) -> Job:
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
    )


def _pose(config, store: Store, run_dir: RunDir, mean, init, resume, rt, on_step, on_start) -> dict:
    model = build_model(config.model)
    resuming = resume and run_dir.state_path.exists()
    if init is not None and not resuming:
        state, _ = weights.load_weights(init)
        weights.load_into(model, state, init)
    job = pose_job(config, store, run_dir, mean, model, rt, on_start)
    return fit(job, config, rt, resume, on_step)


def _thesis_ae(config, store: Store, run_dir: RunDir, mean, init, resume, rt, on_step, on_start) -> dict:
    """Latents from the --init thesis network -> AE pre-training -> SHG+AE fine-tuning."""
    ae_dir = run_dir.autoencoder
    finetune_state = run_dir.state_path
    ae_summary = None
    if not (resume and finetune_state.exists()):
        if init is None:
            raise HgposeError("preset thesis-ae needs --init CKPT: the weights of a trained thesis "
                              "network (e.g. RUN_DIR/checkpoints/best.safetensors of a thesis run)")
        thesis_state, _ = weights.load_weights(init)
        _save_latents(config, store, ae_dir, mean, thesis_state, init, rt)
        ae_summary = _pretrain_ae(config, ae_dir, resume, rt, on_step, on_start)

    model = build_model(config.model)  # ThesisNetwork(autoencoder=True)
    if not (resume and finetune_state.exists()):
        weights.load_into(model, thesis_state, init, allow_missing=(AE_PREFIX,))
        ae_weights, _ = weights.load_weights(ae_dir.resolve())  # best, else last
        model.hourglass.autoencoder.load_state_dict(ae_weights)
    job = pose_job(config, store, run_dir, mean, model, rt, on_start)
    summary = fit(job, config, rt, resume, on_step)
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
            loader = make_loader(dataset, config.data.val_batch_size, None, config.data.workers, rt.device)
            extract_latents(network, loader, rt.device, mean, path, len(dataset))
    rt.barrier()


def ae_latents(ae_dir: RunDir, split: str) -> Path:
    """thesis-ae's saved bottleneck latents of a split: RUN_DIR/ae/latents/<split>.npy."""
    return ae_dir.path / "latents" / f"{split}.npy"


def _pretrain_ae(config, ae_dir: RunDir, resume: bool, rt: Runtime, on_step, on_start) -> dict:
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
    )
    # Without --resume the run directory was new, so there is nothing to continue anyway.
    return fit(job, config, rt, resume, on_step)


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
