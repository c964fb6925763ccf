"""Speed at the user's level: whole `hgpose train` and `hgpose evaluate` processes against the
plain eager NCHW fp32 network doing the same work, on the same crops and threads.

    python benchmarks/user_speed.py                          # newell 2-stack, 1,000 crops
    python benchmarks/user_speed.py --crops 200 --train-steps 4      # shorter
    python benchmarks/user_speed.py --preset cpu             # the `cpu` preset's network

What is timed, each in a fresh process:
    matmul peak        torch.mm of 2048 x 2048 fp32 matrices on the same threads: the CPU's
                       fp32 peak that the network's rates are read against
    step, eager fp32   the network's training step in plain PyTorch: NCHW, fp32, glibc's
                       malloc as it comes (what a plain training script gets)
    step, hgpose       the same step as `hgpose train` takes it (`Trainer.step`: the preset's
                       memory layout and precision, malloc keeping freed memory, hgpose.cpu)
    hgpose train       `hgpose train` on --train-steps batches an epoch for 2 epochs; its own
                       img/s of the second epoch (metrics.csv), so start-up and the first
                       epoch's warm-up are out, validation is outside an epoch's img/s
    forward, eager     a whole process that imports torch, loads the weights into the plain
                       network and runs it over the crops (NCHW fp32, batches of 32): the
                       reference's way of evaluating
    hgpose evaluate    the whole `hgpose evaluate --protocol thesis` process over the same
                       crops (start-up, ONNX Runtime or bf16, decoding and the PCK and COCO
                       scoring included): the same work as the eager forward, one forward a
                       crop. Run twice: the first writes the ONNX graph into the cache, the
                       second reads it (a fresh cache is used, so the first is a first)
    evaluate, gt-box   the default protocol, graph cached: it forwards every person twice (the
                       store's thesis crop for the thesis PCK, and a crop cut from the original
                       image by the person's box for the COCO metrics) and reads the images, so
                       its crops/s is read against twice the eager forward's work
    one image          a whole eager process forwarding one crop against `hgpose predict`
                       on one image (its graph cached): what a user waits for
The crops are synthetic people (`hgpose synth`, prepared once into a temporary store). GFLOP/s
= 2 x multiply-adds per crop (torch's FlopCounterMode) x crops/s; a training step counts 3 x
the forward's (forward, and a backward of twice its cost).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAIN = {"HGPOSE_KEEP_MEMORY": "0"}   # glibc's malloc as it comes


def matmul_peak(threads: int, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n fp32 matrix multiply (the best of `repeats`), in this process."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / min(seconds) / 1e9   # a peak: the best of the repeats


def step_rate(preset: str, overrides: list[str], batch: int, steps: int, threads: int, plain: bool) -> dict:
    """img/s of the network's training step (train_step.py's measurement), in a fresh process."""
    sys.path.insert(0, str(HERE))
    from train_step import bench_model

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(bench_model, (preset, overrides, "cpu", batch, 1, steps, threads, plain))


def timed_process(cmd: list[str], env: dict) -> float:
    """Wall seconds of a whole process; its output is shown only when it fails."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def make_store(root: Path, crops: int, threads: int) -> Path:
    """Synthetic people, prepared: `crops` val crops (at least) and a few train crops."""
    hgpose = [sys.executable, "-m", "hgpose"]
    # About 1.6 people an image: enough val images for `crops` crops.
    images = max(8, int(crops / 1.4))
    timed_process(hgpose + ["synth", str(root / "synth"), "--train-images", "60", "--val-images",
                            str(images), "--workers", str(threads)], {})
    timed_process(hgpose + ["prepare", str(root / "synth"), str(root / "store"), "--test-size", "0.1"], {})
    return root / "store"


EAGER_FORWARD = r"""
import sys, numpy as np, torch
from hgpose.data.store import Store
from hgpose.models import build_model
from hgpose.runs import RunDir
from hgpose.runs.weights import load_weights
from hgpose import config as cfg
run, store, n, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), 32, int(sys.argv[4])
torch.set_num_threads(threads)
config = cfg.load(RunDir(run).config_path)
model = build_model(config.model)
tensors, _ = load_weights(RunDir(run).weights("best"))
model.load_state_dict(tensors)
model.eval()
split = Store.open(store).split("val")
mean = torch.tensor(Store.open(store).mean_rgb, dtype=torch.float32).view(1, 3, 1, 1)
with torch.inference_mode():
    for i in range(0, n, batch):
        x = torch.from_numpy(np.array(split.images[i:min(i + batch, n)])).permute(0, 3, 1, 2).contiguous()
        model(x.float() / 255 - mean)   # NCHW (a permuted NHWC tensor would run channels-last)
"""


def macs_per_crop(preset: str, overrides: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    from model_cost import macs_per_image

    from hgpose.config import resolve
    from hgpose.models import build_model

    return macs_per_image(build_model(resolve(preset, overrides).model).eval())


def train_rate(store: Path, run: Path, preset: str, overrides: list[str], batch: int, steps: int,
               threads: int) -> float:
    """`hgpose train`'s own img/s of its second epoch (metrics.csv)."""
    cmd = [sys.executable, "-m", "hgpose", "train", str(store), "--out", str(run), "--preset", preset,
           "--epochs", "2", "--batch-size", str(batch), "--set", *overrides,
           f"data.train_limit={batch * steps}", "data.val_limit=8", "progress=false"]
    timed_process(cmd, {"OMP_NUM_THREADS": str(threads)})
    with open(run / "metrics.csv") as f:
        return float(list(csv.DictReader(f))[-1]["img_per_s"])


def evaluate_times(store: Path, run: Path, crops: int, threads: int, cache: Path) -> tuple[float, ...]:
    """(eager forward, first and second `evaluate --protocol thesis`, `evaluate` gt-box)
    whole-process seconds over `crops`."""
    eager = timed_process([sys.executable, "-c", EAGER_FORWARD, str(run), str(store), str(crops),
                           str(threads)], PLAIN)
    cmd = [sys.executable, "-m", "hgpose", "evaluate", str(run), "--data", str(store), "--split", "val",
           "--no-progress"]
    env = {"HGPOSE_CACHE": str(cache), "OMP_NUM_THREADS": str(threads)}
    thesis = ["--protocol", "thesis"]
    first = timed_process(cmd + thesis + ["--out", str(run / "eval1")], env)
    second = timed_process(cmd + thesis + ["--out", str(run / "eval2")], env)
    gt_box = timed_process(cmd + ["--out", str(run / "eval3")], env)
    return eager, first, second, gt_box


def predict_times(store: Path, run: Path, threads: int, cache: Path) -> tuple[float, float]:
    """(eager forward of one crop, `hgpose predict` of one image with its graph cached),
    whole-process seconds."""
    image = sorted((store.parent / "synth" / "val2017").glob("*.jpg"))[0]
    eager = timed_process([sys.executable, "-c", EAGER_FORWARD, str(run), str(store), "1", str(threads)], PLAIN)
    ours = timed_process([sys.executable, "-m", "hgpose", "predict", str(run), str(image), "--out",
                          str(run / "predict")], {"HGPOSE_CACHE": str(cache), "OMP_NUM_THREADS": str(threads)})
    return eager, ours


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="newell", help="training preset (default: newell)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=None,
                        help="config overrides (default for newell: model.stacks=2)")
    parser.add_argument("--batch", type=int, default=16, help="training batch (default: 16, newell's)")
    parser.add_argument("--train-steps", type=int, default=8, help="steps an epoch of `hgpose train`")
    parser.add_argument("--crops", type=int, default=1000, help="crops to evaluate (about; default 1000)")
    parser.add_argument("--steps", type=int, default=3, help="timed network steps (after 1 untimed)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    overrides = args.overrides if args.overrides is not None else (
        ["model.stacks=2"] if args.preset == "newell" else [])

    import torch

    sys.path.insert(0, str(HERE))
    from inference import describe_machine

    torch.set_num_threads(args.threads)
    print(describe_machine())
    print(f"preset {args.preset} {' '.join(overrides)}; batch {args.batch}; {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    peak = matmul_peak(args.threads)   # in this process: before anything else is started
    macs = macs_per_crop(args.preset, overrides)
    eager = step_rate(args.preset, overrides + ["channels_last=false", "precision=fp32"], args.batch,
                      args.steps, args.threads, plain=True)
    ours = step_rate(args.preset, overrides, args.batch, args.steps, args.threads, plain=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = make_store(root, args.crops, args.threads)
        train = train_rate(store, root / "run", args.preset, overrides, args.batch, args.train_steps,
                           args.threads)
        from hgpose.data.store import Store

        crops = len(Store.open(store).split("val"))
        forward, first, second, gt_box = evaluate_times(store, root / "run", crops, args.threads, root / "cache")
        single = predict_times(store, root / "run", args.threads, root / "cache")
    report(peak, macs, eager, ours, train, crops, forward, (first, second, gt_box), single)
    return 0


def report(peak: float, macs: int, eager: dict, ours: dict, train: float, crops: int,
           forward: float, evaluates: tuple[float, float, float], single: tuple[float, float]) -> None:
    first, second, gt_box = evaluates

    def gflops(rate: float, factor: int) -> str:
        value = 2 * macs * factor * rate / 1e9
        return f"{value:.0f} ({value / peak:.0%})"

    print(f"fp32 matrix multiply: {peak:.0f} GFLOP/s; network: {macs / 1e9:.2f} GMAC a crop\n")
    print("| what | img/s | × eager fp32 | GFLOP/s (of the peak) |")
    print("|---|---|---|---|")
    print(f"| training step, eager fp32 NCHW | {eager['img_s']:.2f} | 1.00 | {gflops(eager['img_s'], 3)} |")
    print(f"| training step, hgpose ({ours['layout']}, {ours['amp']}) | {ours['img_s']:.2f} | "
          f"{ours['img_s'] / eager['img_s']:.2f} | {gflops(ours['img_s'], 3)} |")
    print(f"| `hgpose train`, its own img/s (epoch 2) | {train:.2f} | {train / eager['img_s']:.2f} | "
          f"{gflops(train, 3)} |")
    base = crops / forward
    rows = [("eager forward (whole process)", crops / forward, 1),
            ("`hgpose evaluate --protocol thesis`, first (writes the graph)", crops / first, 1),
            ("`hgpose evaluate --protocol thesis`, graph cached", crops / second, 1),
            ("`hgpose evaluate` gt-box (2 forwards a person), graph cached", crops / gt_box, 2)]
    for name, rate, forwards in rows:
        # A gt-box person costs two forwards: its ratio is read against two eager forwards.
        print(f"| {name}, {crops} crops | {rate:.2f} | {rate * forwards / base:.2f} | {gflops(rate, forwards)} |")
    print(f"| one image: eager forward process {single[0]:.2f} s, `hgpose predict` (graph cached) "
          f"{single[1]:.2f} s | | {single[0] / single[1]:.2f} | |")
    print(f"\n`hgpose train` / the step it takes: {train / ours['img_s']:.2f} (target ≥ 0.90); "
          f"step / eager: {ours['img_s'] / eager['img_s']:.2f} (target ≥ 1.25 on AVX2); "
          f"evaluate / eager forward: {crops / second / base:.2f} (target ≥ 2.6 on AVX2)")
    print(json.dumps({"peak_gflops": peak, "macs": macs, "step_eager": eager["img_s"], "step_hgpose": ours["img_s"],
                      "train": train, "crops": crops, "forward_s": forward, "evaluate_s": [first, second],
                      "evaluate_gt_box_s": gt_box, "one_image_s": list(single)}))


if __name__ == "__main__":
    sys.exit(main())
