"""Does the `newell` recipe learn? Train it on synthetic people and measure PCK@0.2.

    python benchmarks/learn_synth.py --out /tmp/learn-newell                       # the full preset (a GPU job)
    python benchmarks/learn_synth.py --out /tmp/learn-small --train-images 2000 \\
        --epochs 10 --set model.stacks=2 model.features=64                        # a CPU-sized check

Stages, each skipped when its output exists (so a stopped run continues; training resumes
from its saved state): `synth` (TRAIN + VAL images) -> `prepare` -> `train --preset newell`
(plus --set overrides) -> `evaluate` on val with the flip test. Prints the time of every
stage, the validation PCK@0.2 (box- and torso-normalised) and the thesis PCK, and whether
the target (default PCK@0.2 >= 0.9, box-normalised) was reached. Exit status 0 when it was,
1 when not, so a GPU job can check it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="work folder (data, store, run, eval)")
    parser.add_argument("--train-images", type=int, default=20000, help="synthetic training images (default: 20000)")
    parser.add_argument("--val-images", type=int, default=500, help="synthetic validation images (default: 500)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default: 30)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16, the preset's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as `hgpose train --set`")
    parser.add_argument("--workers", type=int, default=None, help="processes for synth and prepare (default: all cores)")
    parser.add_argument("--device", default="auto", help="evaluation device (training picks CUDA when available)")
    parser.add_argument("--metric", choices=("bbox", "torso"), default="bbox", help="which PCK@0.2 the target is on")
    parser.add_argument("--target", type=float, default=0.9, help="PCK@0.2 to reach (default: 0.9)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    from hgpose.data.prepare import prepare
    from hgpose.evaluate.evaluate import evaluate
    from hgpose.synth import generate
    from hgpose.runs import RunDir
    from hgpose.train import train

    out = args.out
    coco, store, run = out / "coco", out / "store", out / "run"
    times = {}

    t0 = time.perf_counter()
    if not (coco / "synth.json").is_file():
        generate(coco, train_images=args.train_images, val_images=args.val_images, seed=args.seed,
                 workers=args.workers)
    times["synth"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    manifest = prepare(coco, store, test_size=0.01, seed=args.seed, workers=args.workers)
    times["prepare"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    overrides = [f"seed={args.seed}", *args.set]
    resume = RunDir(run).state_path.is_file()
    summary = train(store, run, preset="newell", epochs=args.epochs, batch_size=args.batch_size,
                    overrides=overrides, resume=resume)
    times["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    metrics = evaluate(run, store, split="val", flip=True, device=args.device)
    times["evaluate"] = time.perf_counter() - t0

    pck = metrics["pck@0.2"]
    reached = pck[args.metric] >= args.target
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    result = {
        "device": device, "train_crops": manifest["splits"]["train"], "val_crops": manifest["splits"]["val"],
        "epochs": summary["epochs"], "overrides": args.set, "seconds": {k: round(v, 1) for k, v in times.items()},
        "pck@0.2": pck, "pck_thesis": metrics["pck_thesis"], "target": {args.metric: args.target, "reached": reached},
    }
    (out / "learn_synth.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"device: {device}   train crops: {result['train_crops']:,d}   val crops: {result['val_crops']:,d}   "
          f"epochs: {summary['epochs']}   overrides: {' '.join(args.set) or '(none: the full newell preset)'}")
    print("time: " + "   ".join(f"{k} {v / 60:.1f} min" for k, v in times.items())
          + "   (a stage already done shows ~0)")
    print(f"val PCK@0.2 (flip test): box {pck['bbox']:.3f}   torso {pck['torso']:.3f}   "
          f"thesis PCK (all): {metrics['pck_thesis']['all']:.3f}")
    print(f"target PCK@0.2 ({args.metric}) >= {args.target}: {'reached' if reached else 'NOT reached'}")
    return 0 if reached else 1


if __name__ == "__main__":
    sys.exit(main())
