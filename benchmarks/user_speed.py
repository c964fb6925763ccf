"""Speed at the user's level: whole `hgpose train` and `hgpose evaluate` processes against the
plain eager NCHW fp32 network doing the same work, on the same crops and threads.

    python benchmarks/user_speed.py                          # newell 2-stack, 1,000 crops
    python benchmarks/user_speed.py --crops 200 --train-steps 4      # shorter
    python benchmarks/user_speed.py --preset cpu             # the `cpu` preset's network

What is timed, each in a fresh process:
    matmul peak        torch.mm of 2048 x 2048 fp32 matrices on the same threads: the CPU's
                       fp32 peak that the network's rates are read against; on a CPU with
                       native bf16 also in bf16, the peak that hgpose's bf16 rows are read
                       against
    step, eager fp32   the network's training step in plain PyTorch: NCHW, fp32, glibc's
                       malloc as it comes (what a plain training script gets)
    step, hgpose       the same step as `hgpose train` takes it (`Trainer.step`: the preset's
                       memory layout and precision, malloc keeping freed memory, hgpose.cpu);
                       both steps are timed after --warmup untimed ones
    hgpose train       `hgpose train` on --train-steps batches an epoch for 2 epochs; its own
                       img/s of the second epoch (metrics.csv), so start-up and the first
                       epoch's warm-up are out, validation is outside an epoch's img/s
    forward, eager     a whole process that imports torch, loads the weights into the plain
                       network and runs it over the crops (NCHW fp32, batches of 32): the
                       reference's way of evaluating
    hgpose evaluate    the whole `hgpose evaluate --protocol thesis` process over the same
                       crops (start-up, ONNX Runtime or bf16, decoding and the PCK and COCO
                       scoring included): the same work as the eager forward, one forward a
                       crop. Run twice: under ONNX Runtime (fp32) the first writes the graph
                       into the cache, the second reads it (a fresh cache is used, so the
                       first is a first); under bf16 both run PyTorch
    evaluate, gt-box   the default protocol, graph cached: it forwards every person twice (the
                       store's thesis crop for the thesis PCK, and a crop cut from the original
                       image by the person's box for the COCO metrics) and reads the images, so
                       its crops/s is read against twice the eager forward's work
    one image          a whole eager process forwarding one crop against `hgpose predict`
                       on one image (its graph cached): what a user waits for
The crops are synthetic people (`hgpose synth`, prepared once into a temporary store). GFLOP/s
= 2 x multiply-adds per crop (torch's FlopCounterMode) x crops/s; a training step counts 3 x
the forward's (forward, and a backward of twice its cost). The targets printed last are the
ones for the CPU at hand: with native bf16, `hgpose train` >= 2x and `evaluate` >= 3x eager
fp32; without, the step >= 1.25x and `evaluate` >= 2.6x; on both, `hgpose train` within 10 % of
its step.
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
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAIN = {"HGPOSE_KEEP_MEMORY": "0"}   # glibc's malloc as it comes


def matmul_peak(threads: int, dtype: str = "fp32", n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n matrix multiply in `dtype` ("fp32" or "bf16"; the best of `repeats`),
    in this process."""
    import torch

    torch.set_num_threads(threads)
    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n, dtype=kind), torch.randn(n, n, dtype=kind)
    torch.mm(a, b)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / min(seconds) / 1e9   # a peak: the best of the repeats


def step_rate(preset: str, overrides: list[str], batch: int, warmup: int, steps: int, threads: int,
              plain: bool) -> dict:
    """img/s of the network's training step (train_step.py's measurement), in a fresh process."""
    sys.path.insert(0, str(HERE))
    from train_step import bench_model

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(bench_model, (preset, overrides, "cpu", batch, warmup, steps, threads, plain))


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


def evaluate_times(store: Path, run: Path, crops: int, threads: int, cache: Path) -> dict:
    """Whole-process seconds over `crops` of the eager forward, the first and second `evaluate
    --protocol thesis` and the gt-box `evaluate`, with the engine and precision evaluate used."""
    eager = timed_process([sys.executable, "-c", EAGER_FORWARD, str(run), str(store), str(crops),
                           str(threads)], PLAIN)
    cmd = [sys.executable, "-m", "hgpose", "evaluate", str(run), "--data", str(store), "--split", "val",
           "--no-progress"]
    env = {"HGPOSE_CACHE": str(cache), "OMP_NUM_THREADS": str(threads)}
    thesis = ["--protocol", "thesis"]
    first = timed_process(cmd + thesis + ["--out", str(run / "eval1")], env)
    second = timed_process(cmd + thesis + ["--out", str(run / "eval2")], env)
    gt_box = timed_process(cmd + ["--out", str(run / "eval3")], env)
    metrics = json.loads((run / "eval2" / "metrics.json").read_text())
    return {"forward": eager, "first": first, "second": second, "gt_box": gt_box,
            "engine": metrics["engine"], "precision": metrics["precision"]}


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
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed network steps first (default 3: a bf16 step settles over "
                             "the first two or three)")
    parser.add_argument("--steps", type=int, default=3, help="timed network steps (default 3)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    overrides = args.overrides if args.overrides is not None else (
        ["model.stacks=2"] if args.preset == "newell" else [])

    import torch

    sys.path.insert(0, str(HERE))
    from inference import describe_machine

    from hgpose.cpu import native_bf16

    torch.set_num_threads(args.threads)
    print(describe_machine())
    print(f"preset {args.preset} {' '.join(overrides)}; batch {args.batch}; {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    # In this process, before anything else is started. hgpose's rows under bf16 are read
    # against the bf16 multiply's peak, the rest against fp32's.
    peaks = {"fp32": matmul_peak(args.threads)}
    if native_bf16():
        peaks["bf16"] = matmul_peak(args.threads, "bf16")
    macs = macs_per_crop(args.preset, overrides)
    eager = step_rate(args.preset, overrides + ["channels_last=false", "precision=fp32"], args.batch,
                      args.warmup, args.steps, args.threads, plain=True)
    ours = step_rate(args.preset, overrides, args.batch, args.warmup, args.steps, args.threads, plain=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = make_store(root, args.crops, args.threads)
        train = train_rate(store, root / "run", args.preset, overrides, args.batch, args.train_steps,
                           args.threads)
        from hgpose.data.store import Store

        crops = len(Store.open(store).split("val"))
        evaluates = evaluate_times(store, root / "run", crops, args.threads, root / "cache")
        single = predict_times(store, root / "run", args.threads, root / "cache")
    report(Figures(peaks, macs, eager, ours, train, crops, evaluates, single))
    return 0


@dataclass
class Figures:
    peaks: dict              # GFLOP/s of a plain matrix multiply, by precision
    macs: int                # multiply-adds a crop
    eager: dict              # step_rate of the plain network
    ours: dict               # step_rate as `hgpose train` takes it
    train: float             # `hgpose train`'s own img/s
    crops: int
    evaluates: dict          # evaluate_times
    single: tuple            # predict_times

    def gflops(self, rate: float, passes: int, precision: str) -> str:
        """GFLOP/s of `rate` crops/s at `passes` forwards' cost a crop, and its share of the peak
        of the precision it ran in."""
        value = 2 * self.macs * passes * rate / 1e9
        peak = self.peaks.get(precision, self.peaks["fp32"])
        return f"{value:.0f} ({value / peak:.0%} of {precision})"


def report(f: Figures) -> None:
    peaks = "; ".join(f"{name} {value:.0f} GFLOP/s" for name, value in f.peaks.items())
    print(f"matrix multiply peak: {peaks}; network: {f.macs / 1e9:.2f} GMAC a crop\n")
    print("| what | img/s | × eager fp32 | GFLOP/s (share of the peak) |")
    print("|---|---|---|---|")
    eager, ours, amp = f.eager["img_s"], f.ours["img_s"], f.ours["amp"]
    print(f"| training step, eager fp32 NCHW | {eager:.2f} | 1.00 | {f.gflops(eager, 3, 'fp32')} |")
    print(f"| training step, hgpose ({f.ours['layout']}, {amp}) | {ours:.2f} | {ours / eager:.2f} | "
          f"{f.gflops(ours, 3, amp)} |")
    print(f"| `hgpose train`, its own img/s (epoch 2) | {f.train:.2f} | {f.train / eager:.2f} | "
          f"{f.gflops(f.train, 3, amp)} |")
    e = f.evaluates
    base = f.crops / e["forward"]
    how = f"{e['engine']}, {e['precision']}"
    onnx = e["engine"] == "onnxruntime"
    first, again = ("first (writes the graph)", "graph cached") if onnx else ("first", "again")
    rows = [("eager forward (whole process)", e["forward"], 1, "fp32"),
            (f"`hgpose evaluate --protocol thesis` ({how}), {first}", e["first"], 1, e["precision"]),
            (f"`hgpose evaluate --protocol thesis`, {again}", e["second"], 1, e["precision"]),
            (f"`hgpose evaluate` gt-box (2 forwards a person), {again}", e["gt_box"], 2, e["precision"])]
    for name, seconds, forwards, precision in rows:
        # A gt-box person costs two forwards: its ratio is read against two eager forwards.
        rate = f.crops / seconds
        print(f"| {name}, {f.crops} crops | {rate:.2f} | {rate * forwards / base:.2f} | "
              f"{f.gflops(rate, forwards, precision)} |")
    print(f"| one image: eager forward process {f.single[0]:.2f} s, `hgpose predict`"
          f"{' (graph cached)' if onnx else ''} {f.single[1]:.2f} s | | {f.single[0] / f.single[1]:.2f} | |")
    evaluate = f.crops / e["second"] / base
    if amp == "bf16":   # the targets for a CPU with native bf16, at the user's level
        targets = (f"`hgpose train` / eager step: {f.train / eager:.2f} (target ≥ 2); "
                   f"evaluate / eager forward: {evaluate:.2f} (target ≥ 3)")
    else:
        targets = (f"step / eager: {ours / eager:.2f} (target ≥ 1.25); "
                   f"evaluate / eager forward: {evaluate:.2f} (target ≥ 2.6)")
    print(f"\n`hgpose train` / the step it takes: {f.train / ours:.2f} (target ≥ 0.90); {targets}")
    print(json.dumps({"peak_gflops": f.peaks, "macs": f.macs, "step_eager": eager, "step_hgpose": ours,
                      "precision": amp, "train": f.train, "crops": f.crops, **e,
                      "one_image_s": list(f.single)}))


if __name__ == "__main__":
    sys.exit(main())
