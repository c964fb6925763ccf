"""Parameters, MACs and forward speed of every network, per 256x256 image.

    python benchmarks/model_cost.py                      # CPU (+ CUDA if available)
    python benchmarks/model_cost.py --device cuda --bf16 --channels-last --batch-sizes 1 8 32

MACs come from torch's FlopCounterMode (convolutions and matmuls; MACs = FLOPs / 2),
counted on one 256x256 image. Speed: eval-mode forward passes under inference_mode,
images per second of the median pass after one warm-up pass.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from hgpose.models import StackedHourglass, ThesisNetwork

NETWORKS = {
    "thesis": lambda: ThesisNetwork(),
    "thesis+ae": lambda: ThesisNetwork(autoencoder=True),
    "newell-2": lambda: StackedHourglass(num_stacks=2),
    "newell-8": lambda: StackedHourglass(num_stacks=8),
}


def macs_per_image(model: torch.nn.Module, size: int = 256) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops() // 2


def images_per_second(model, device, batch, repeats, bf16, channels_last) -> float:
    """Median over `repeats` timed passes: robust to other jobs sharing the CPU."""
    x = torch.randn(batch, 3, 256, 256, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    seconds = []
    with torch.inference_mode(), autocast:
        model(x)  # warm-up: allocator, cuDNN algorithm choice
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
    return batch / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--device", nargs="+", default=None, help="default: cpu, plus cuda if available")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="run the timed passes under bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's); 1 is steadier on a shared machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print(f"timed: bf16={args.bf16}, channels_last={args.channels_last}, repeats={args.repeats}")
    speed_columns = [f"{d} b{b} img/s" for d in devices for b in args.batch_sizes]
    print(f"{'network':<10} {'params':>12} {'GMAC':>7}  " + "  ".join(f"{c:>15}" for c in speed_columns))
    for name in args.networks:
        torch.manual_seed(0)
        model = NETWORKS[name]().eval()
        params = sum(p.numel() for p in model.parameters())
        gmac = macs_per_image(model) / 1e9
        speeds = []
        for device_name in devices:
            device = torch.device(device_name)
            model = model.to(device)
            if args.channels_last:
                model = model.to(memory_format=torch.channels_last)
            for batch in args.batch_sizes:
                speeds.append(images_per_second(
                    model, device, batch, args.repeats, args.bf16, args.channels_last))
        print(f"{name:<10} {params:>12,} {gmac:>7.2f}  " + "  ".join(f"{s:>15.2f}" for s in speeds))


if __name__ == "__main__":
    main()
