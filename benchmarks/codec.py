"""Throughput of the heatmap codecs' torch paths (and the numpy paths, for comparison).

    python benchmarks/codec.py [--seconds 0.5] [--batches 16 256] [--threads N] [--no-numpy]

Prints keypoint sets (= crops, 17 joints each) per second for encode_torch and
decode_torch of every codec, at each batch size, on CPU and on CUDA when available.
Inputs are made once; only the codec call is timed (CUDA calls are synchronised).
"""

import argparse
import os
import time

import numpy as np
import torch

from hgpose.codecs import GaussianCodec, ThesisCodec
from hgpose.skeleton import NUM_JOINTS

CODECS = {
    "thesis": ThesisCodec(),
    "gaussian/quarter": GaussianCodec(refine="quarter"),
    "gaussian/dark": GaussianCodec(refine="dark"),
}


def keypoints(batch, seed=0):
    rng = np.random.default_rng(seed)
    k = np.zeros((batch, NUM_JOINTS, 3), np.float32)
    k[..., :2] = rng.uniform(0, 256, (batch, NUM_JOINTS, 2))
    k[..., 2] = rng.choice([0, 1, 2], (batch, NUM_JOINTS))
    return k


def rate(fn, batch, seconds, sync=lambda: None):
    """Keypoint sets per second: warm up, then repeat for at least `seconds`."""
    for _ in range(3):
        fn()
    sync()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n % 4 == 0:
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return n * batch / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="minimum timing per measurement")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 256])
    ap.add_argument("--no-numpy", action="store_true", help="skip the numpy reference paths")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    # Load average: CPU figures from a shared machine mean little without it.
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads of {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}"
          + (f", CUDA: {torch.cuda.get_device_name()}" if "cuda" in devices else ", no CUDA"))
    print(f"{'codec':18} {'path':14} {'batch':>5} {'encode sets/s':>14} {'decode sets/s':>14}")
    with torch.inference_mode():
        for name, codec in CODECS.items():
            for batch in args.batches:
                k_np = keypoints(batch)
                h_np, _ = codec.encode(k_np)
                for device in devices:
                    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
                    k, h = torch.from_numpy(k_np).to(device), torch.from_numpy(h_np).to(device)
                    enc = rate(lambda: codec.encode_torch(k), batch, args.seconds, sync)
                    dec = rate(lambda: codec.decode_torch(h), batch, args.seconds, sync)
                    print(f"{name:18} {'torch ' + device:14} {batch:5d} {enc:14,.0f} {dec:14,.0f}")
                if not args.no_numpy:
                    enc = rate(lambda: codec.encode(k_np), batch, args.seconds)
                    dec = rate(lambda: codec.decode(h_np), batch, args.seconds)
                    print(f"{name:18} {'numpy':14} {batch:5d} {enc:14,.0f} {dec:14,.0f}")


if __name__ == "__main__":
    main()
