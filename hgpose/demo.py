"""`hgpose demo`: the whole system on synthetic people, on a CPU, in about ten minutes.

    synth -> prepare -> train -> evaluate -> predict -> explain -> report.html

Every stage is the real one with its normal output under OUT_DIR; only the sizes are
small. Run it again and finished stages are skipped (training continues from its saved
state), so an interrupted demo resumes.

OUT_DIR is the demo's alone: new, empty, or an earlier demo's (its marker
`.hgpose-demo.json`, written first, records the sizes and seed asked for). A rerun with
other --train-images, --val-images or --seed is refused with one line rather than rebuilt:
the demo's data, store and trained run belong together, and rebuilding them in place would
mean deleting a training run the user may want, so another --out keeps both.

The network is the thesis's one-hourglass model at reduced width (16 features instead of
256), trained with the settings that make heatmaps emerge in a few hundred CPU steps
(Gaussian σ 2 targets with a peak weight, Adam): with the thesis recipe proper (thesis
targets, RMSprop 2.5e-4) a network sits on the "predict zero everywhere" plateau of the
heatmap MSE far longer than a demo can wait.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from hgpose.errors import HgposeError
from hgpose.io import LOCK_NAME, write_json

DEMO_OVERRIDES = [
    "model.features=16", "target.codec=gaussian", "target.sigma=2", "target.weighted=true",
    "target.foreground=20", "optim.name=adam", "optim.lr=1e-3", "data.workers=0",
    "keep_epoch_checkpoints=false",
]
DEMO_BATCH = 4
MAX_EPOCHS = 40
MARKER = ".hgpose-demo.json"  # written first into OUT_DIR: the folder is the demo's
SETTINGS = ("train_images", "val_images", "seed")  # what the demo's data and training depend on


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _train_within(data_dir: Path, run_dir: Path, seconds: float, progress: bool) -> dict:
    """Train epoch by epoch (each call resumes the run) until the next epoch would not fit
    in `seconds`. The run's state records how far it got, so a rerun continues."""
    from hgpose.train import train
    from hgpose.config import load as load_config

    done_path = run_dir / "demo-training.json"
    if done_path.is_file():
        return json.loads(done_path.read_text())
    overrides = [] if progress else ["progress=false"]
    start = time.perf_counter()
    epochs, epoch_seconds, summary = 0, 0.0, None
    if (run_dir / "checkpoints" / "state.pt").is_file():
        epochs = load_config(run_dir / "config.json").epochs
    while epochs < MAX_EPOCHS:
        elapsed = time.perf_counter() - start
        if epochs > 0 and summary is not None and elapsed + epoch_seconds > seconds:
            break
        t0 = time.perf_counter()
        resume = (run_dir / "config.json").is_file()
        summary = train(
            data_dir, run_dir, preset="thesis", epochs=epochs + 1, batch_size=DEMO_BATCH,
            overrides=overrides if resume else DEMO_OVERRIDES + overrides, resume=resume,
        )
        epochs = summary["epochs"]
        epoch_seconds = time.perf_counter() - t0
        # train's start-up line and pace estimate once, not before every epoch: the later calls
        # print their epoch line only
        overrides = ["progress=false"]
    result = {"epochs": epochs, "best_val_pck": summary["best"], "best_epoch": summary["best_epoch"],
              "seconds": round(time.perf_counter() - start, 1)}
    write_json(done_path, result)
    return result


def _predict_examples(coco_root: Path, run_dir: Path, out_dir: Path, count: int = 3) -> list[str]:
    """Predict the first person of a few validation images, with their annotated boxes, in
    one call (so one results file)."""
    import hgpose
    from hgpose.io import write_json
    from hgpose.predict import predict_images

    data = json.loads((coco_root / "annotations" / "person_keypoints_val2017.json").read_text())
    first = {}
    for ann in data["annotations"]:
        if ann.get("num_keypoints", 0) > 0:
            first.setdefault(ann["image_id"], ann)
    chosen = [image for image in data["images"] if image["id"] in first][:count]
    if not chosen:
        return []
    boxes_file = out_dir.parent / "predict-boxes.json"
    write_json(boxes_file, {image["file_name"]: [first[image["id"]]["bbox"]] for image in chosen})
    summary = predict_images(hgpose.load(run_dir), [coco_root / "val2017" / image["file_name"] for image in chosen],
                             out_dir, boxes=boxes_file)
    return [str(f) for o in summary.outcomes for f in o.files if str(f).endswith(".skeleton.png")]


def demo(out_dir: str | Path = "demo-out", *, minutes: float = 10.0, train_images: int = 400,
         val_images: int = 60, seed: int = 0, progress: bool = True) -> dict:
    """Run every stage into `out_dir` within about `minutes`; returns the headline numbers."""
    from hgpose.data.prepare import format_summary as prepare_summary
    from hgpose.data.prepare import prepare
    from hgpose.evaluate.evaluate import evaluate
    from hgpose.explain import explain
    from hgpose.synth import generate

    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise HgposeError(f"--minutes {minutes}: give a time budget in minutes > 0, e.g. 10")
    out = Path(out_dir)
    asked = {"train_images": train_images, "val_images": val_images, "seed": seed}
    _check_out_dir(out, asked)
    import torch

    if not torch.cuda.is_available():
        # A 16-feature network has tiny kernels: one CPU thread is faster than two that
        # spin-wait on each other (several times so when anything else runs).
        torch.set_num_threads(1)
    started = time.perf_counter()
    coco, data, run = out / "coco", out / "data", out / "run"
    write_json(out / MARKER, {"written_by": "hgpose demo", **asked})

    _say(f"1/6 synth: {train_images} + {val_images} images of synthetic people -> {coco}")
    if not (coco / "synth.json").is_file():
        generate(coco, train_images=train_images, val_images=val_images, seed=seed, progress=progress)
    _say(f"2/6 prepare: thesis crops, split, mean RGB -> {data}")
    manifest = prepare(coco, data, test_size=0.1, seed=seed, workers=2, progress=progress)
    print(prepare_summary(manifest))

    # Training gets what is left of the budget after what the later stages need
    # (evaluate, predict and explain take about a quarter of a 10-minute demo).
    budget = minutes * 60 - (time.perf_counter() - started)
    train_seconds = max(budget * 0.7, 1.0)
    _say(f"3/6 train: thesis network, 16 features, about {train_seconds / 60:.1f} min -> {run}")
    training = _train_within(data, run, train_seconds, progress)

    _say("4/6 evaluate on the test split")
    metrics = evaluate(run, data, split="test", out_dir=out / "evaluate", progress=progress)

    _say("5/6 predict a few validation images")
    pictures = _predict_examples(coco, run, out / "predict")

    _say(f"6/6 explain: latents, PCA, K-means, skip ablation, saliency -> {out / 'report'}")
    explained = explain(run, data, out / "report", split="train", progress=progress, **demo_saliency(minutes))

    headline = _headline(out, training, metrics, explained, pictures)
    headline["minutes"] = round((time.perf_counter() - started) / 60, 1)
    write_json(out / "demo.json", headline)
    return headline


def demo_saliency(minutes: float) -> dict:
    """The saliency scores a demo of `minutes` can afford: a scored crop costs a drawn crop's
    passes again (occlusion's 225, IG's 17 path images x 17 joints, Grad-CAM's 34), so
    2 crops and the randomisation check on one (3 steps) within the default 10 minutes; none in
    a demo under 5 minutes, which has no time to spare."""
    if minutes >= 5:
        return {"saliency_limit": 2, "sanity_crops": 1, "sanity_steps": 3}
    return {"saliency_limit": 0, "sanity_crops": 0}


def _headline(out: Path, training: dict, metrics: dict, explained: dict, pictures: list[str]) -> dict:
    return {
        "out_dir": str(out),
        "report": str(out / "report" / "report.html"),
        "train_epochs": training["epochs"],
        "pck_thesis": metrics["pck_thesis"]["all"],
        "pck@0.2_bbox": metrics["pck@0.2"]["bbox"],
        "coco_AP": metrics["coco"]["AP"],
        "pc1_explained_variance": explained["pca"]["subsets"]["all"]["ratios"][0],
        "kmeans_chosen_k": explained["kmeans"]["subsets"]["all"]["chosen_k"],
        "predictions": pictures,
    }


def _check_out_dir(out: Path, asked: dict) -> None:
    """Refuse, with one line and before anything is written, an OUT_DIR the demo did not
    fill or one filled for other sizes; and the data folders synth and prepare would refuse."""
    from hgpose.data.prepare import check_out_dir as check_store_dir
    from hgpose.synth.dataset import JPEG_QUALITY, check_out_dir as check_synth_dir, check_settings

    check_settings({"train2017": asked["train_images"], "val2017": asked["val_images"]},
                   asked["seed"], (640, 480), JPEG_QUALITY)  # the sizes, before anything is written
    if out.exists() and not out.is_dir():
        raise HgposeError(f"--out {out}: is a file, not a folder; give a folder for the demo")
    names = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) if out.is_dir() else []
    if names:
        recorded = _recorded(out)
        if not recorded:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise HgposeError(f"--out {out}: holds {shown}, which `hgpose demo` did not write (no {MARKER}); "
                              "choose a new or empty folder")
        for made in recorded:
            if any(made.get(k) is not None and made[k] != asked[k] for k in SETTINGS):
                given = " ".join(f"--{k.replace('_', '-')} {made[k]}" for k in SETTINGS)
                raise HgposeError(f"--out {out}: holds a demo made with {given}, whose data and training "
                                  "belong together; run it with those again to resume it, or choose another "
                                  f"--out (or delete {out}) for these sizes")
    check_synth_dir(out / "coco")
    check_store_dir(out / "data")


def _recorded(out: Path) -> list[dict]:
    """The settings the demo in `out` was made with, as its marker and its synthetic data's
    synth.json record them (a demo made before the marker existed has only the latter);
    empty when `out` is no demo's."""
    from hgpose.synth.dataset import recorded_settings

    try:
        marker = json.loads((out / MARKER).read_bytes())
    except (OSError, ValueError):
        marker = None
    synth = recorded_settings(out / "coco")
    recorded = [{k: marker.get(k) for k in SETTINGS}] if isinstance(marker, dict) else []
    if synth is not None:
        recorded.append(synth)
    return recorded


def format_headline(h: dict) -> str:
    return "\n".join([
        f"hgpose demo finished in {h['minutes']} min ({h['train_epochs']} training epochs).",
        f"  test thesis-PCK (all labelled joints): {h['pck_thesis']:.3f}",
        f"  test PCK@0.2 (box-normalised):         {h['pck@0.2_bbox']:.3f}",
        f"  test COCO OKS AP (GT boxes):           {h['coco_AP']:.3f}",
        f"  latent PCA: PC1 explains {h['pc1_explained_variance']:.3f} of the variance",
        f"  latent K-means: chosen K = {h['kmeans_chosen_k']} (best mean silhouette)",
        f"  predictions: {', '.join(h['predictions']) or 'none'}",
        f"Open the report: {h['report']}",
    ])
