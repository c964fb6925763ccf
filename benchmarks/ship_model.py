"""Make a trained run a shipped model: its best weights at half precision, scored against the
full-precision weights on the same held-out people, with the size and sha256 to register.

    python benchmarks/ship_model.py RUN --lspet LSPET_STORE --coco COCO_STORE \
        --out hgpose/weights/lspet-cpu.safetensors

Both files are evaluated as `benchmarks/learn_real.py` evaluates a run (gt-box protocol, the
flip test when the run validated with it): LSPET's test split on its 12 joints and the COCO
sample's val2017 people on the 12 body joints. The half-precision file ships when its PCK@0.2
is within `--tolerance` of the full-precision one's on both (exit 1 otherwise). Prints the
table, the file's size and the line for `hgpose.runs.pretrained.PRETRAINED`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run folder of `hgpose train` (its best weights ship)")
    p.add_argument("--lspet", type=Path, required=True, help="the LSPET store the run was trained on")
    p.add_argument("--coco", type=Path, required=True, help="a COCO-sample store (its val split is scored)")
    p.add_argument("--out", type=Path, required=True, help="the half-precision weights file to write")
    p.add_argument("--dtype", default="fp16", choices=("fp16", "bf16"))
    p.add_argument("--tolerance", type=float, default=0.005,
                   help="largest PCK@0.2 drop accepted for half precision (default 0.005: 5 of 1,000 joints)")
    return p.parse_args()


def scores(weights: Path, run: Path, lspet: Path, coco: Path, out: Path) -> dict:
    from hgpose import config as cfg
    from hgpose.evaluate.evaluate import evaluate

    flip = cfg.load(run / "config.json").flip_test
    common = dict(protocol="gt-box", flip=flip, progress=False, precision="fp32")
    lsp = evaluate(weights, lspet, split="test", out_dir=out / "lspet", **common)
    cv = evaluate(weights, coco, split="val", joints="body", out_dir=out / "coco", **common)
    return {"lspet_box": lsp["pck@0.2"]["bbox"], "lspet_torso": lsp["pck@0.2"]["torso"],
            "lspet_ap": lsp["coco"]["AP"], "coco_box": cv["pck@0.2"]["bbox"],
            "coco_torso": cv["pck@0.2"]["torso"], "lspet_people": lsp["n_images"], "coco_people": cv["n_images"]}


def main() -> int:
    args = parse_args()
    from hgpose.io import file_sha256
    from hgpose.runs import resolve_checkpoint
    from hgpose.runs.pretrained import pack

    best, _ = resolve_checkpoint(args.run, "best")
    packed = pack(best, args.out, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        full = scores(best, args.run, args.lspet, args.coco, Path(tmp) / "fp32")
        half = scores(packed, args.run, args.lspet, args.coco, Path(tmp) / args.dtype)
    print(f"{'':12s} {'fp32':>8s} {args.dtype:>8s}")
    for key in full:
        print(f"{key:12s} {full[key]:8.4f} {half[key]:8.4f}" if isinstance(full[key], float)
              else f"{key:12s} {full[key]:8d} {half[key]:8d}")
    size = packed.stat().st_size
    print(f"{packed.name}: {size / 2**20:.2f} MiB ({best.stat().st_size / 2**20:.2f} MiB at fp32)")
    print(f'Pretrained("{packed.name}", "{file_sha256(packed)}", card="{packed.stem}.md")')
    worst = max(full[k] - half[k] for k in ("lspet_box", "lspet_torso", "coco_box"))
    if worst > args.tolerance:
        print(f"{args.dtype} loses {worst:.4f} PCK@0.2 (> {args.tolerance}): ship the fp32 file instead")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
