"""Inference speed (images/s) and peak memory: plain eager NCHW fp32 against hgpose's default path.

    python benchmarks/inference.py                         # thesis, newell-2, newell-8 at batch 8
    python benchmarks/inference.py --iters 1 --warmup 1    # quick, on a slow CPU
    python benchmarks/inference.py --features 32           # narrower networks, a smoke test

Modes (uint8 crops in, last-stack heatmaps out; untrained full-size weights with BatchNorm
statistics away from the identity: speed does not depend on their values):
    eager fp32 NCHW          the plain PyTorch baseline: model(x) under inference_mode
    torch fp32 cl+fold       hgpose's PyTorch path in fp32: BatchNorm folded, channels-last
    onnxruntime fp32         hgpose's path with --precision fp32, or on a CPU without native
                             bf16: ONNX Runtime (where installed) on the folded network
    hgpose default           `hgpose.load` / predict / evaluate as they run: bf16 autocast in
                             PyTorch where the CPU (AMX / AVX-512-BF16) or GPU computes it
                             natively, otherwise the onnxruntime row
    compiled default (CUDA)  the default path under torch.compile
Each cell runs in a fresh process, so its peak RSS (CPU) is its own. img/s = batch / median
seconds of `--iters` timed passes after `--warmup` untimed ones; the ratio is to eager fp32.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import time

NETWORKS = ("thesis", "newell-2", "newell-8")
CPU_MODES = ("eager fp32 NCHW", "torch fp32 cl+fold", "onnxruntime fp32", "hgpose default")
# mode -> (precision, engine) of the estimator
ESTIMATOR_MODES = {"torch fp32 cl+fold": ("fp32", "torch"), "onnxruntime fp32": ("fp32", "auto"),
                   "hgpose default": ("auto", "auto"), "compiled default": ("auto", "torch")}
CUDA_MODES = ("eager fp32 NCHW", "hgpose default", "compiled default")


def build(name: str, features: int):
    """The network `name` with BatchNorm statistics away from the identity (as after training)."""
    import torch

    from hgpose.models import StackedHourglass, ThesisNetwork

    torch.manual_seed(0)
    model = (ThesisNetwork(features=features) if name == "thesis"
             else StackedHourglass(num_stacks=int(name.split("-")[1]), features=features))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def timed(run, batch: int, iters: int, warmup: int, sync=lambda: None) -> float:
    """Images per second of the median timed pass (robust to other jobs sharing the CPU)."""
    for _ in range(warmup):
        run()
    sync()
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        sync()
        seconds.append(time.perf_counter() - start)
    return batch / statistics.median(seconds)


def torch_mode(model, batch: int, device: str, *, channels_last=False, bf16=False, compile=False):
    """A zero-argument callable running one forward pass in the given configuration
    (benchmarks/gpu_check.py times its modes with it)."""
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    if compile:
        model = torch.compile(model)
    x = torch.rand(batch, 3, 256, 256, device=device).contiguous(memory_format=fmt)

    def run():
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            return model(x)

    return run


def estimator_mode(model, batch: int, device: str, mode: str):
    """One pass of `Estimator.crop_heatmaps` as hgpose runs it; (callable, "precision engine")."""
    import torch

    from hgpose import thesis
    from hgpose.inference import Estimator

    precision, engine = ESTIMATOR_MODES[mode]
    if engine == "auto" and device == "cpu" and precision == "fp32":
        from hgpose.inference import onnx_runtime
        if not onnx_runtime.available():
            raise RuntimeError("onnxruntime is not installed")
    est = Estimator(model, None, thesis.TRAIN_MEAN_RGB, device, precision=precision, engine=engine)
    if mode.startswith("compiled"):
        est.network = torch.compile(est.model)
    crops = torch.randint(0, 256, (batch, 256, 256, 3), dtype=torch.uint8)
    est.crop_heatmaps(crops[:1])   # ONNX Runtime writes its graph on the first batch: not timed
    return (lambda: est.crop_heatmaps(crops)), f"{est.precision} {est.engine}"


def measure(name: str, mode: str, device: str, batch: int, features: int, iters: int, warmup: int,
            threads: int) -> dict:
    """Runs in a child process: img/s and peak memory of one (network, mode) cell."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    model = build(name, features)
    if mode == "eager fp32 NCHW":
        run, how = torch_mode(model, batch, device), "fp32 torch"
    else:
        run, how = estimator_mode(model, batch, device, mode)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    img_s = timed(run, batch, iters, warmup, sync)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"img_s": img_s, "peak_gib": peak, "how": how}


def in_child(*args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        try:
            return pool.apply(measure, args)
        except Exception as e:  # e.g. onnxruntime missing, out of memory, no compiler
            return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:80]}


def describe_machine() -> str:
    import torch

    from hgpose.cpu import bf16_features, cpu_flags, cpu_model

    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in cpu_flags()]
    return (f"torch {torch.__version__}; CPU: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} "
            f"torch threads; features: {', '.join(simd) or 'none of avx2/avx512'}; native bf16: "
            f"{', '.join(bf16_features()) or 'no (hgpose default = channels-last + fold, fp32)'}"
            + (f"; GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
            + "".join(f"; {name}={os.environ[name]}" for name in STEERING if os.environ.get(name)))


# Environment settings that change what the CPU runs: a table measured under one must say so.
STEERING = ("HGPOSE_CPU_BF16", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--batch", type=int, default=8, help="images per pass (default: 8)")
    parser.add_argument("--iters", type=int, default=3, help="timed passes per cell (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes first (default: 1)")
    parser.add_argument("--features", type=int, default=256, help="network width (default: 256, full size)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", nargs="+", default=None, help="default: cpu, plus cuda if available")
    parser.add_argument("--modes", nargs="+", default=None, help="a subset of the modes (default: all)")
    args = parser.parse_args(argv)
    import torch

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(describe_machine())
    print(f"batch {args.batch}, features {args.features}, {args.iters} timed pass(es) after "
          f"{args.warmup} warm-up, load average {os.getloadavg()[0]:.1f}\n")
    print("| network | device | mode | precision, engine | img/s | × eager fp32 | peak memory GiB |")
    print("|---|---|---|---|---|---|---|")
    for name in args.networks:
        for device in devices:
            base = None
            for mode in [m for m in (CUDA_MODES if device == "cuda" else CPU_MODES)
                         if not args.modes or m in args.modes]:
                r = in_child(name, mode, device, args.batch, args.features, args.iters, args.warmup, args.threads)
                if "error" in r:
                    print(f"| {name} | {device} | {mode} | | n/a ({r['error']}) | | |", flush=True)
                    continue
                base = r["img_s"] if mode.startswith("eager") else base
                ratio = f"{r['img_s'] / base:.2f}" if base else ""
                print(f"| {name} | {device} | {mode} | {r['how']} | {r['img_s']:.2f} | {ratio} | "
                      f"{r['peak_gib']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
