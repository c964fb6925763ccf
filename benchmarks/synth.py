"""How fast `hgpose synth` makes images (the issue asks for >= 50 images/s per core at 640x480).

    python benchmarks/synth.py [--images 300] [--size 640 480] [--workers 2]

Prints, for one process (OpenCV limited to one thread, so it is one core): the full
`generate` rate (render + JPEG + atomic write + JSON), the CPU time per image, and where
the time goes; then the rate with `--workers` processes. Wall-clock rates on a shared
machine are lower than the CPU-time rate; both are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hgpose.synth import generate  # noqa: E402
from hgpose.synth.dataset import JPEG_QUALITY, image_rng  # noqa: E402
from hgpose.synth.scene import render_scene  # noqa: E402


def timed_generate(n: int, size, workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        generate(Path(tmp) / "synth", train_images=n, val_images=0, seed=0, size=size, workers=workers,
                 progress=False)
        return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    p.add_argument("--workers", type=int, default=2, help="processes for the parallel run (default: 2)")
    args = p.parse_args()
    size = tuple(args.size)
    cv2.setNumThreads(1)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; OpenCV {cv2.__version__}, numpy {np.__version__}")
    timed_generate(8, size, 1)  # warm-up: imports, noise bank

    wall, cpu = timed_generate(args.images, size, 1)
    print(f"generate, 1 process, {args.images} images {size[0]}x{size[1]}: "
          f"{args.images / wall:.1f} images/s wall, {args.images / cpu:.1f} images/s per CPU-second "
          f"({1000 * cpu / args.images:.1f} ms CPU per image)")

    n = min(args.images, 200)
    scenes, t_render = [], 0.0
    for i in range(n):
        t = time.process_time()
        scenes.append(render_scene(image_rng(0, "train2017", i), *size))
        t_render += time.process_time() - t
    t = time.process_time()
    for s in scenes:
        cv2.imencode(".jpg", s.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    t_jpeg = time.process_time() - t
    people = sum(len(s.figures) for s in scenes) / n
    print(f"  per image (CPU): render + annotate {1000 * t_render / n:.1f} ms ({people:.2f} people/image), "
          f"JPEG q{JPEG_QUALITY} {1000 * t_jpeg / n:.1f} ms")

    if args.workers > 1:
        m = max(args.images, 32 * args.workers)
        wall, _ = timed_generate(m, size, args.workers)
        print(f"generate, {args.workers} processes, {m} images: {m / wall:.1f} images/s wall "
              f"(includes starting the processes)")


if __name__ == "__main__":
    main()
