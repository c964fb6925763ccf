"""Training throughput and peak memory: plain eager NCHW fp32 against hgpose's default path.

    python benchmarks/train_step.py                  # CPU (and CUDA too, if present)
    python benchmarks/train_step.py --steps 20 --device cuda

Each (model, mode) runs in its own fresh process (so peak RSS on the CPU is that cell's),
through the real training code: `hgpose.train.step.Trainer.step`, the step `hgpose train`
takes (uint8 crops -> device -> mean subtraction -> augmentation for newell -> targets ->
forward -> loss, backward, optimizer step). Two modes per model:
    eager fp32 NCHW   channels_last=false, precision=fp32, glibc's malloc as it comes
                      (HGPOSE_KEEP_MEMORY=0): the plain PyTorch baseline
    hgpose default    what `hgpose train` does with the preset: channels-last, bf16
                      autocast where the device has it natively (precision=auto), and on a
                      CPU malloc keeping freed memory (hgpose.cpu.keep_freed_memory). The
                      thesis preset trains in fp32 (its recipe); here it gets the same
                      `precision=auto` as the others, to show what the switch buys.
Weights stay fp32 either way. After `--warmup` untimed steps, `--steps` steps are timed.

The loader line times `DataLoader` over a temporary store plus the on-device batch
preparation with the newell augmentation and Gaussian targets: everything but the network.
It must be faster than the fastest model, or the GPU would wait for data.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

MODELS = {  # label -> (preset, --set overrides)
    "thesis (1 hourglass, 256 features)": ("thesis", ["precision=auto"]),
    "newell 2-stack": ("newell", ["model.stacks=2"]),
    "newell 8-stack": ("newell", ["model.stacks=8"]),
}


def random_batch(batch: int, seed: int = 0):
    """A batch as the loader gives it: uint8 crops, keypoints (all visible), row indices."""
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 256, 256, 3), dtype=torch.uint8, generator=g)
    keypoints = torch.rand(batch, 17, 3, generator=g) * 256
    keypoints[..., 2] = 2
    return images, keypoints, torch.arange(batch)


def bench_model(preset: str, overrides: list[str], device: str, batch: int, warmup: int,
                steps: int, threads: int, plain_malloc: bool = False) -> dict:
    """Runs in a child process: img/s and peak memory of `steps` training steps
    (`plain_malloc`: glibc's malloc as it comes, as in a plain PyTorch script)."""
    if plain_malloc:
        os.environ["HGPOSE_KEEP_MEMORY"] = "0"   # read when the Trainer is built, in this process
    import torch

    from hgpose import thesis
    from hgpose.config import resolve
    from hgpose.inference.device import autocast_dtype, precision_name
    from hgpose.models import build_model
    from hgpose.train.recipes import PosePhase
    from hgpose.train.step import Trainer

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    config = resolve(preset, overrides + [f"device={device}"], batch_size=batch)
    torch.manual_seed(0)
    phase = PosePhase(config, dev, torch.tensor(thesis.TRAIN_MEAN_RGB))
    trainer = Trainer.build(phase, build_model(config.model).train(), config.optim, config, dev)
    host_batch = random_batch(batch)
    if dev.type == "cuda":
        host_batch = tuple(t.pin_memory() for t in host_batch)

    def step(i: int) -> None:
        trainer.step(host_batch, torch.Generator().manual_seed(i))

    for i in range(warmup):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"img_s": steps * batch / seconds, "step_s": seconds / steps, "peak_gib": peak,
            "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6,
            "amp": precision_name(autocast_dtype(config.precision, dev)),
            "layout": "NHWC" if config.channels_last else "NCHW"}


def bench_loader(device: str, batch: int, workers: int, batches: int, threads: int) -> dict:
    """DataLoader over a temporary memory-mapped store + on-device augmentation and targets."""
    import numpy as np
    import torch

    from hgpose import thesis
    from hgpose.io import save_npy, write_json
    from hgpose.config import resolve
    from hgpose.data.dataset import CropDataset, make_loader
    from hgpose.train.data import ResumableSampler, batch_generator
    from hgpose.train.recipes import PosePhase

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    n = batch * batches
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        for split in ("train", "val", "test"):
            m = n if split == "train" else 1
            save_npy(root / split / "images.npy", rng.integers(0, 256, (m, 256, 256, 3), dtype=np.uint8))
            kps = rng.uniform(0, 256, (m, 17, 3)).astype(np.float32)
            kps[..., 2] = 2
            save_npy(root / split / "keypoints.npy", kps)
            save_npy(root / split / "boxes.npy", np.zeros((m, 3), np.float32))
            save_npy(root / split / "ids.npy", np.zeros((m, 2), np.int64))
        write_json(root / "manifest.json", {"format_version": 1, "mean_rgb": list(thesis.TRAIN_MEAN_RGB)})

        config = resolve("newell", [f"device={device}"], batch_size=batch)
        phase = PosePhase(config, dev, torch.tensor(thesis.TRAIN_MEAN_RGB))
        dataset = CropDataset(root, "train")
        sampler = ResumableSampler(dataset, shuffle=True, seed=0)
        loader = make_loader(dataset, batch, sampler, workers, dev)

        def epoch(e: int) -> int:
            sampler.set_epoch(e)
            seen = 0
            for step, b in enumerate(loader):
                x, kps = phase.inputs(b, batch_generator(0, 0, e, step), train=True)
                targets, weights = phase.codec.encode_torch(kps)
                seen += x.shape[0]
            if dev.type == "cuda":
                torch.cuda.synchronize()
            return seen

        epoch(0)  # warm-up: worker start, page cache
        start = time.perf_counter()
        seen = epoch(1)
        return {"img_s": seen / (time.perf_counter() - start)}


def _in_child(fn, *args) -> dict:
    # A fresh process per measurement: its peak RSS is its own, and CUDA state starts clean.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


MODES = {  # mode -> (overrides on top of the model's, plain malloc)
    "eager fp32 NCHW": (["channels_last=false", "precision=fp32"], True),
    "hgpose default": ([], False),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: the CPU, and CUDA as well when present")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: CPU 2, CUDA 30)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (default: CPU 3, as bf16 settles over the first steps; CUDA 10)")
    parser.add_argument("--workers", type=int, default=2, help="loader processes")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--models", default="all", help="comma-separated: thesis,newell2,newell8 (default: all)")
    parser.add_argument("--features", type=int, default=0, help="network width (default: the preset's, 256)")
    parser.add_argument("--no-loader", action="store_true", help="skip the loader line")
    args = parser.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from inference import describe_machine

    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    keys = dict(zip(("thesis", "newell2", "newell8"), MODELS))
    chosen = list(MODELS) if args.models == "all" else [keys[k] for k in args.models.split(",")]
    width = [f"model.features={args.features}"] if args.features else []
    print(describe_machine())
    print(f"batch {args.batch}, load average {os.getloadavg()[0]:.1f}\n")
    print("| model | device | mode | precision | layout | img/s | × eager fp32 | s/step | peak memory GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        steps = args.steps or (2 if device == "cpu" else 30)
        warmup = args.warmup if args.warmup is not None else (3 if device == "cpu" else 10)
        rates = []
        for label in chosen:
            preset, overrides = MODELS[label]
            base = None
            for mode, (extra, plain_malloc) in MODES.items():
                r = _in_child(bench_model, preset, overrides + width + extra, device, args.batch, warmup,
                              steps, args.threads, plain_malloc)
                base = base or r["img_s"]
                rates.append(r["img_s"])
                memory = "RSS" if device == "cpu" else "allocated"
                print(f"| {label} | {device} | {mode} | {r['amp']} | {r['layout']} | {r['img_s']:.3g} | "
                      f"{r['img_s'] / base:.2f} | {r['step_s']:.3g} | {r['peak_gib']:.2f} ({memory}) |", flush=True)
        if args.no_loader:
            continue
        batches = 8 if device == "cpu" else 64
        # In this process: the loader's workers cannot be children of a pool's daemon process.
        r = bench_loader(device, args.batch, args.workers, batches, args.threads)
        verdict = "faster" if r["img_s"] > max(rates) else "SLOWER"
        print(f"\n{device}: loader + augmentation + targets {r['img_s']:.1f} img/s ({args.workers} "
              f"workers; {verdict} than the fastest model)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
