"""`hgpose predict`: keypoints for the person in each given image, as JSON and pictures.

For every image, in OUT_DIR:
    <name>.json            the person as a COCO keypoint result (a list of one), plus where
                           it came from: file, person box, crop box, box_source
    <name>.skeleton.png    the image with the skeleton drawn (left orange, right blue,
                           low-score joints faded) and the crop square outlined
    <name>.heatmaps.png    the fused heatmaps over the 256x256 crop (thesis Figure 5)
and predictions.json: all results together (COCO results format).

An image that cannot be read is reported and skipped; the others are still processed, and
the outcome says which failed (the CLI exits non-zero then).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from hgpose.draw import draw_skeleton, heatmap_overlay
from hgpose.errors import HgposeError
from hgpose.images import read_image
from hgpose.inference import Estimator, Prediction
from hgpose.io import write_bytes, write_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class ImageOutcome:
    """What happened to one input: written files and the prediction, or the reason it failed."""

    path: Path
    prediction: Prediction | None = None
    files: list[Path] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class PredictSummary:
    outcomes: list[ImageOutcome]
    out_dir: Path

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_code(self) -> int:
        """0 when every image was processed, 1 when any could not be (for the CLI)."""
        return 1 if self.failed else 0


def list_images(inputs) -> tuple[list[Path], list[ImageOutcome]]:
    """Expand folders (their image files, sorted, not recursive); a missing path or a folder
    without images becomes a failed outcome rather than stopping the others."""
    paths, problems = [], []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(ImageOutcome(item, error=f"{item}: folder holds no {'/'.join(IMAGE_SUFFIXES)} images"))
            paths += found
        elif item.exists():
            paths.append(item)
        else:
            problems.append(ImageOutcome(item, error=f"{item}: not found"))
    return paths, problems


def coco_image_id(path: Path) -> int | None:
    """COCO names its images by id (000000391895.jpg -> 391895); other names have none."""
    return int(path.stem) if re.fullmatch(r"\d+", path.stem) else None


OUTPUT_SUFFIXES = (".json", ".skeleton.png", ".heatmaps.png")
SUMMARY_NAME = "predictions.json"
ONNX_RUNTIME_FROM = 12   # images; fewer run in PyTorch (see `predict`)


def _unique_names(paths: list[Path], out_dir: Path | None = None) -> list[str]:
    """Output name per input: its stem, numbered when two inputs share one (a/x.jpg, b/x.jpg),
    or when one of its files would be predictions.json or overwrite an input (predict
    writing into the folder of its images: a.png and a.skeleton.png)."""
    taken = {SUMMARY_NAME}
    if out_dir is not None:
        out = out_dir.resolve()
        taken |= {p.name for p in paths if p.resolve().parent == out}
    used: set[str] = set()
    names = []
    for p in paths:
        name, n = p.stem, 1
        while name in used or any(name + suffix in taken for suffix in OUTPUT_SUFFIXES):
            n += 1
            name = f"{p.stem}-{n}"
        used.add(name)
        names.append(name)
    return names


def skeleton_picture(image: np.ndarray, pred: Prediction, min_score: float) -> np.ndarray:
    """The image with the crop square (thin grey) and the skeleton drawn on it."""
    out = image.copy()
    b = pred.crop_box
    thickness = max(1, round(max(image.shape[:2]) / 400))
    cv2.rectangle(out, (b.x0, b.y0), (b.x0 + b.side - 1, b.y0 + b.side - 1), (200, 200, 200), thickness)
    return draw_skeleton(out, pred.keypoints, min_score=min_score)


def _png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def result_entry(path: Path, pred: Prediction) -> dict:
    """The COCO result of one image, plus where it came from (extra keys pycocotools ignores)."""
    b = pred.crop_box
    return {
        **pred.to_coco(coco_image_id(path)),
        "file": str(path),
        "box": [round(v, 2) for v in pred.box],
        "box_source": "whole_image" if pred.whole_image else "given",
        "crop_box": [b.x0, b.y0, b.side],
    }


def predict_images(estimator: Estimator, inputs, out_dir: str | Path, *, box=None,
                   min_score: float = 0.25,
                   on_image: Callable[[ImageOutcome], None] | None = None) -> PredictSummary:
    """Predict every image of `inputs` (files and folders) and write OUT_DIR (see module doc).

    box: (x, y, w, h) of the person in every image; None = the whole image.
    min_score: joints scoring below this fraction of a perfect target's peak are faded.
    on_image: called with each outcome as soon as it is known (the CLI prints them).
    """
    paths, problems = list_images(inputs)
    return _predict_listed(estimator, paths, problems, out_dir, box=box, min_score=min_score,
                           on_image=on_image)


def _predict_listed(estimator: Estimator, paths: list[Path], outcomes: list[ImageOutcome],
                    out_dir: str | Path, *, box, min_score: float,
                    on_image: Callable[[ImageOutcome], None] | None) -> PredictSummary:
    """`predict_images` on inputs already expanded by `list_images` (paths, failed outcomes)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HgposeError(f"--out {out_dir}: is a file, not a folder; give a folder for the predictions")
    for outcome in outcomes:
        if on_image:
            on_image(outcome)
    if not paths and not outcomes:
        raise HgposeError("no images given")
    fade_below = min_score * estimator.target_peak
    results = []
    for path, name in zip(paths, _unique_names(paths, out_dir)):
        outcome = ImageOutcome(path)
        try:
            image = read_image(path)
            pred = estimator.infer(image, box)
            if not np.isfinite(pred.keypoints).all():  # would be NaN in the JSON: invalid JSON
                raise HgposeError(f"{path}: the network's output is not finite (NaN/inf); "
                                  "its checkpoint is broken — use another one (--checkpoint)")
        except HgposeError as e:  # unreadable image or a box outside it: this image only
            outcome.error = str(e)
        else:
            entry = result_entry(path, pred)
            files = [out_dir / f"{name}{suffix}" for suffix in OUTPUT_SUFFIXES]
            write_json(files[0], [entry])
            write_bytes(files[1], _png(skeleton_picture(image, pred, fade_below)))
            write_bytes(files[2], _png(heatmap_overlay(pred.crop, pred.heatmaps)))
            outcome.prediction, outcome.files = pred, files
            results.append(entry)
        outcomes.append(outcome)
        if on_image:
            on_image(outcome)
    if results:
        write_json(out_dir / SUMMARY_NAME, results)
    return PredictSummary(outcomes, out_dir)


def predict(source, inputs, out_dir: str | Path = "predictions", *, box=None,
            checkpoint=None, device: str = "auto", flip: bool = False, min_score: float = 0.25,
            on_image: Callable[[ImageOutcome], None] | None = None, refine: str | None = None,
            precision: str = "auto") -> PredictSummary:
    """Load a run (or weights file) and predict images; see `predict_images`."""
    from hgpose.inference import load

    # ONNX Runtime (the fp32 CPU engine) first writes its graph, 1-4 s: worth it from about
    # a dozen images on
    paths, problems = list_images(inputs)
    engine = "auto" if len(paths) >= ONNX_RUNTIME_FROM else "torch"
    estimator = load(source, checkpoint=checkpoint, device=device, flip=flip, refine=refine,
                     precision=precision, engine=engine)
    return _predict_listed(estimator, paths, problems, out_dir, box=box, min_score=min_score,
                           on_image=on_image)


def describe(outcome: ImageOutcome) -> str:
    """One line per image for the CLI."""
    if not outcome.ok:
        return outcome.error
    pred = outcome.prediction
    source = ("no --box: the whole image taken as the person's box" if pred.whole_image
              else "box " + ",".join(f"{v:g}" for v in pred.box))
    b = pred.crop_box
    names = ", ".join(p.name for p in outcome.files)
    return (f"{outcome.path}: 17 keypoints, mean score {pred.keypoints[:, 2].mean():.3f}; {source}; "
            f"crop {b.side}x{b.side} at ({b.x0}, {b.y0}) -> {names}")
