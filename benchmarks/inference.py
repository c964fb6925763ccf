"""Inference speed (images/s) of the thesis network and Newell's 8-stack hourglass.

    python benchmarks/inference.py                          # CPU (+ GPU modes if CUDA is there)
    python benchmarks/inference.py --iters 1 --warmup 1     # quick, on a slow CPU
    python benchmarks/inference.py --features 64            # narrower networks, for a smoke test

Modes, each timing the graph `hgpose export` writes (mean subtraction + network + last stack):
    CPU   eager fp32 (NCHW), eager fp32 channels-last, ONNX Runtime (CPU provider)
    CUDA  eager fp32, eager bf16 channels-last, torch.compile bf16 channels-last
Untrained weights at full size: speed does not depend on the weight values. Each cell is
batch / median seconds of `--iters` timed passes after `--warmup` untimed ones (the first
passes pick algorithms, allocate and, for compile, build the graph).
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import time
import warnings

import numpy as np
import torch

from hgpose.evaluate.export import ExportedNetwork
from hgpose.models import StackedHourglass, ThesisNetwork

MEAN = (0.410, 0.374, 0.354)


def networks(features: int) -> dict:
    return {
        "thesis": lambda: ThesisNetwork(features=features),
        "newell-8": lambda: StackedHourglass(num_stacks=8, features=features),
    }


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
    """A zero-argument callable running one forward pass in the given configuration."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    if compile:
        model = torch.compile(model)
    x = torch.rand(batch, 3, 256, 256, device=device).contiguous(memory_format=fmt)

    def run():
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            return model(x)

    return run


def onnx_mode(model, batch: int):
    import onnxruntime as ort

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.cpu().to(memory_format=torch.contiguous_format),
                          (torch.rand(1, 3, 256, 256),), buffer, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["heatmaps"],
                          dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same cores as PyTorch
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    x = np.random.rand(batch, 3, 256, 256).astype(np.float32)
    return lambda: session.run(None, {"input": x})


def modes(device: str) -> list[str]:
    if device == "cuda":
        return ["eager fp32", "eager bf16 channels-last", "compiled bf16 channels-last"]
    return ["eager fp32", "eager channels-last", "onnxruntime"]


def make_runner(mode: str, model, batch: int, device: str):
    if mode == "onnxruntime":
        return onnx_mode(model, batch)
    return torch_mode(model, batch, device, channels_last="channels-last" in mode,
                      bf16="bf16" in mode, compile=mode.startswith("compiled"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["thesis", "newell-8"], choices=["thesis", "newell-8"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--iters", type=int, default=5, help="timed passes per cell (default: 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes first (default: 2)")
    parser.add_argument("--features", type=int, default=256, help="network width (default: 256, full size)")
    parser.add_argument("--device", nargs="+", default=None, help="default: cpu, plus cuda if available")
    args = parser.parse_args()
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {platform.processor() or platform.machine()}"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print(f"features {args.features}; {args.iters} timed pass(es) after {args.warmup} warm-up; images/s\n")
    print("| network | device | mode | " + " | ".join(f"batch {b}" for b in args.batch_sizes) + " |")
    print("|---|---|---|" + "---|" * len(args.batch_sizes))
    for name in args.networks:
        torch.manual_seed(0)
        model = ExportedNetwork(networks(args.features)[name](), MEAN).eval()
        for device in devices:
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            for mode in modes(device):
                cells = []
                for batch in args.batch_sizes:
                    try:
                        run = make_runner(mode, model, batch, device)
                        cells.append(f"{timed(run, batch, args.iters, args.warmup, sync):.2f}")
                    except Exception as e:  # e.g. onnxruntime missing, out of memory, no compiler
                        cells.append(f"n/a ({type(e).__name__})")
                print(f"| {name} | {device} | {mode} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
