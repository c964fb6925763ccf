"""Real people on a CPU: LSPET -> the `cpu` preset for a wall-clock budget -> held-out scores.

    python benchmarks/learn_real.py --out /tmp/learn-real                  # 60 minutes of training
    python benchmarks/learn_real.py --out /tmp/quick --minutes 5 --no-explain

Stages, each skipped when its output exists (a stopped run continues; training resumes
from its saved state and keeps counting its budget from metrics.csv):

1. `prepare` LSPET (`--lspet`, its own seeded val/test draws: --val-size/--test-size) and
   the COCO sample (`--coco`; only its val2017 people are used: never trained on);
2. `train --preset cpu --minutes M` (plus --set overrides; hgpose.train.budget): one epoch
   is timed first, the number of epochs that fits the budget is planned and the preset's
   step decays placed at 2/3 and 5/6 of it; at the first decay the plan is made again at the
   pace measured so far (OUT/run/budget.json); a run that falls behind stops at the budget
   with its best checkpoint;
3. `evaluate` the held-out LSPET test people (its 12 joints) and the COCO sample's val2017
   people on the 12 body joints (the joints LSP has), cropped by `--protocol` (default
   gt-box: from each person's box alone), with the flip test when the preset validates with
   it: PCK@0.2 by box and by torso, thesis PCK (always on the thesis crops), per joint, OKS AP;
4. `explain` (PCA, K-means, skip ablation, saliency, report) on the LSPET test crops;
5. with --picture FILE: predictions on COCO-sample val2017 people the network never saw
   (their annotated boxes) above the report's walk along the first principal component.

Writes OUT/learn_real.json and prints the curve (epoch, minutes, val PCK) and the targets:
LSPET PCK@0.2 >= 0.75 (box) and >= 0.50 (torso), COCO-sample val PCK@0.2 >= 0.55 (box).
For LSP, which has no person boxes, the box is the labelled keypoints' extent.
Exit status 0 when every target is reached, 1 when not.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TARGETS = {"lspet_box": 0.75, "lspet_torso": 0.50, "coco_box": 0.55}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="work folder (stores, run, eval, report)")
    p.add_argument("--minutes", type=float, default=60.0, help="training budget, wall clock (default: 60)")
    p.add_argument("--lspet", type=Path, default=SHARED / "lspet", help="LSPET folder (joints.mat + images/)")
    p.add_argument("--coco", type=Path, default=SHARED / "coco-sample", help="COCO root for the val2017 check")
    p.add_argument("--val-size", type=float, default=500, help="LSPET val crops (count or fraction; default 500)")
    p.add_argument("--test-size", type=float, default=1000, help="LSPET test crops (default 1000)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the cpu preset")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--no-explain", action="store_true", help="skip stages 4 and 5")
    p.add_argument("--picture", type=Path, default=None, help="stage 5: write the README picture here (.jpg)")
    p.add_argument("--protocol", default="gt-box", choices=("gt-box", "thesis"),
                   help="how evaluate crops the held-out people: from their box alone (gt-box, the "
                        "default) or the thesis's keypoint-centred crops (see docs/evaluate.md)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def size(value: float) -> int | float:
    return int(value) if value >= 1 else value


def prepare_stores(args) -> tuple[Path, Path, dict]:
    from hgpose.data.prepare import prepare

    lspet, coco = args.out / "lspet", args.out / "coco-sample"
    manifest = prepare(f"lsp:{args.lspet}", lspet, val_size=size(args.val_size),
                       test_size=size(args.test_size), seed=args.seed, progress=False)
    prepare(f"coco:{args.coco}", coco, test_size=0.1, seed=args.seed, progress=False)
    return lspet, coco, manifest


def history(run: Path) -> list[dict]:
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def train_within(store: Path, run: Path, minutes: float, overrides: list[str]) -> dict:
    """`hgpose train --preset cpu --minutes M` (hgpose.train.budget): the first epoch timed,
    the epochs and the preset's decays planned to fit, planned again at the first decay, the
    run stopped at the budget with its best weights. Returns the plan."""
    from hgpose.runs import RunDir
    from hgpose.train import train

    summary = train(store, run, preset="cpu", minutes=minutes, overrides=overrides + ["tensorboard=false"],
                    resume=RunDir(run).state_path.is_file())
    return summary["budget"]


def evaluations(run: Path, lspet: Path, coco: Path, protocol: str) -> dict:
    """Both held-out sets, with the flip test when the run validated with it (the preset does)."""
    from hgpose import config as cfg
    from hgpose.evaluate.evaluate import evaluate

    flip = cfg.load(run / "config.json").flip_test
    tag = f"{protocol}{'-flip' if flip else ''}"
    return {
        "lspet_test": evaluate(run, lspet, split="test", protocol=protocol, flip=flip,
                               out_dir=run / "eval" / f"lspet-test-{tag}", progress=False),
        "coco_val_body": evaluate(run, coco, split="val", protocol=protocol, joints="body", flip=flip,
                                  out_dir=run / "eval" / f"coco-val-body-{tag}", progress=False),
    }


def picture(run: Path, coco: Path, report: Path, predict_dir: Path, path: Path, count: int = 4) -> None:
    """Predicted skeletons on the COCO-sample val2017 people with the most labelled body
    joints (one per image, their annotated box), above the report's PC1 walk."""
    import cv2
    import numpy as np

    import hgpose
    from hgpose.io import write_json
    from hgpose.predict import predict_images

    data = json.loads((coco / "annotations" / "person_keypoints_val2017.json").read_text())
    files = {im["id"]: im["file_name"] for im in data["images"]}
    people = sorted((a for a in data["annotations"] if not a.get("iscrowd")),
                    key=lambda a: (-sum(v > 0 for v in a["keypoints"][17::3]), a["id"]))
    chosen = {}   # one person per image: the most labelled one
    for ann in people:
        if len(chosen) == count:
            break
        chosen.setdefault(ann["image_id"], ann)
    boxes_file = predict_dir.parent / "predict-boxes.json"
    write_json(boxes_file, {files[i]: [a["bbox"]] for i, a in chosen.items()})
    summary = predict_images(hgpose.load(run), [coco / "val2017" / files[i] for i in chosen], predict_dir,
                             boxes=boxes_file)
    drawn = {Path(f).name.split(".")[0]: f for o in summary.outcomes for f in o.files
             if str(f).endswith(".skeleton.png")}
    tiles = []
    for image_id, ann in chosen.items():
        image = cv2.imread(str(drawn[Path(files[image_id]).stem]))
        x, y, w, h = (int(v) for v in ann["bbox"])
        pad = int(0.15 * max(w, h))
        top, left = max(0, y - pad), max(0, x - pad)
        tiles.append(image[top:y + h + pad, left:x + w + pad])
    height = 360
    row = np.concatenate([cv2.resize(t, (int(t.shape[1] * height / t.shape[0]), height)) for t in tiles], 1)
    walk = cv2.imread(str(next((report / "figures").glob("pca_walk_all_pc1.png"))))
    walk = cv2.resize(walk, (row.shape[1], int(walk.shape[0] * row.shape[1] / walk.shape[1])))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate([row, walk], 0), [cv2.IMWRITE_JPEG_QUALITY, 85])


def main() -> int:
    args = parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from hgpose.cpu import bf16_features, native_bf16

    times = {}
    t0 = time.perf_counter()
    lspet, coco, manifest = prepare_stores(args)
    times["prepare"] = time.perf_counter() - t0

    run = args.out / "run"
    t0 = time.perf_counter()
    plan = train_within(lspet, run, args.minutes, [f"seed={args.seed}", *args.set])
    times["train (this call)"] = time.perf_counter() - t0
    curve = history(run)

    t0 = time.perf_counter()
    scores = evaluations(run, lspet, coco, args.protocol)
    times["evaluate"] = time.perf_counter() - t0

    if not args.no_explain:
        from hgpose.explain import explain

        t0 = time.perf_counter()
        explain(run, lspet, args.out / "report", split="test", progress=False)
        times["explain"] = time.perf_counter() - t0
        if args.picture is not None:
            picture(run, args.coco, args.out / "report", args.out / "predict", args.picture)

    result = summarise(args, manifest, plan, curve, scores, times, bf16_features(), native_bf16())
    (args.out / "learn_real.json").write_text(json.dumps(result, indent=2) + "\n")
    print_result(result)
    return 0 if all(result["targets"][k]["reached"] for k in TARGETS) else 1


def summarise(args, manifest, plan, curve, scores, times, features, bf16) -> dict:
    from hgpose.runs import RunDir

    lsp, cv = scores["lspet_test"], scores["coco_val_body"]
    values = {"lspet_box": lsp["pck@0.2"]["bbox"], "lspet_torso": lsp["pck@0.2"]["torso"],
              "coco_box": cv["pck@0.2"]["bbox"]}
    train_minutes = sum(row["seconds"] for row in curve) / 60
    config = json.loads(RunDir(args.out / "run").config_path.read_text())
    limit = config["data"]["train_limit"]   # --set data.train_limit=N trains on the first N only
    return {
        "config": config,
        "cpu": {"bf16_features": features, "bf16_used": bf16 and config["precision"] != "fp32"},
        "train_crops": min(limit, manifest["splits"]["train"]) if limit else manifest["splits"]["train"],
        "protocol": args.protocol,
        "flip_test": bool(lsp.get("flip")),
        "epochs": len(curve), "planned_epochs": plan["epochs"],
        "train_minutes": round(train_minutes, 1),
        "img_per_s": round(sum(r["img_per_s"] for r in curve) / max(len(curve), 1), 1),
        "curve": [{"epoch": int(r["epoch"]), "minutes": round(sum(x["seconds"] for x in curve[:i + 1]) / 60, 1),
                   "val_pck": round(r["val_pck"], 4), "train_loss": r["train_loss"], "lr": r["lr"]}
                  for i, r in enumerate(curve)],
        "lspet_test": {k: lsp[k] for k in ("pck@0.2", "pck_thesis", "pck@0.2_per_joint", "coco", "n_images", "joints")},
        "coco_val_body": {k: cv[k] for k in ("pck@0.2", "pck_thesis", "pck@0.2_per_joint", "coco", "n_images", "joints")},
        "targets": {k: {"value": values[k], "target": t, "reached": bool(math.isfinite(values[k]) and values[k] >= t)}
                    for k, t in TARGETS.items()},
        "seconds": {k: round(v, 1) for k, v in times.items()},
    }


def print_result(r: dict) -> None:
    print(f"CPU bf16 features: {', '.join(r['cpu']['bf16_features']) or 'none'} (bf16 used: {r['cpu']['bf16_used']})")
    print(f"trained {r['epochs']} epochs ({r['train_minutes']} min, {r['img_per_s']} img/s) on {r['train_crops']:,d} LSPET crops")
    print("epoch  minutes  val thesis-PCK")
    for row in r["curve"]:
        print(f"{row['epoch']:5d}  {row['minutes']:7.1f}  {row['val_pck']:.3f}")
    lsp, cv = r["lspet_test"], r["coco_val_body"]
    print(f"evaluate --protocol {r['protocol']}{' --flip' if r['flip_test'] else ''}")
    print(f"LSPET test ({lsp['n_images']} people): PCK@0.2 box {lsp['pck@0.2']['bbox']:.3f}  torso "
          f"{lsp['pck@0.2']['torso']:.3f}  thesis PCK {lsp['pck_thesis']['all']:.3f}  OKS AP {lsp['coco']['AP']:.3f}")
    print(f"COCO sample val2017, body joints ({cv['n_images']} people): PCK@0.2 box {cv['pck@0.2']['bbox']:.3f}  "
          f"torso {cv['pck@0.2']['torso']:.3f}  OKS AP {cv['coco']['AP']:.3f}")
    for name, t in r["targets"].items():
        print(f"target {name} >= {t['target']}: {t['value']:.3f} {'reached' if t['reached'] else 'NOT reached'}")


if __name__ == "__main__":
    sys.exit(main())
