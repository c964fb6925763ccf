"""`hgpose predict`: keypoints for the person in each given image, as JSON and pictures.

For every image, in OUT_DIR:
    <name>.json            the person as a COCO keypoint result (a list of one), plus where
                           it came from: file, person box, crop box, box_source, the EXIF
                           orientation, and the names of its output files
    <name>.skeleton.png    the image with the skeleton drawn (left orange, right blue,
                           low-score joints faded) and the crop square outlined, at most
                           PICTURE_MAX_SIDE pixels on its longer side
    <name>.heatmaps.png    the fused heatmaps over the 256x256 crop (thesis Figure 5)
and predictions.json: all results in OUT_DIR together (COCO results format). It is also
predict's record of the files it wrote there: predict replaces those, and never a file it did
not write. Where <name>.json (a LabelMe label file, say) or predictions.json belongs to
someone else, the output takes a new name (<name>-2.json, predictions-2.json) and the output
line says so. Names too long for the file system are shortened, with a hash of the full name.

An image is estimated as it is displayed: its EXIF orientation is applied (a phone photo
tagged "rotate 90°" is turned first), so keypoints and boxes are in the displayed frame.

The outputs of a call are a set (`hgpose.outputs.staged`): written to a staging folder and
moved into OUT_DIR together, predictions.json last, when every image has been processed. An
image that cannot be read is reported and skipped; the others are still processed, and the
outcome says which failed (the CLI exits 1 then). A failed write (a full disk) leaves OUT_DIR
as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from hgpose.draw import draw_skeleton, heatmap_overlay
from hgpose.errors import HgposeError
from hgpose.images import ImageProblem, decode_bgr, exif_orientation
from hgpose.inference import Estimator, Prediction
from hgpose.io import write_bytes, write_json
from hgpose.outputs import Staging, leftover_staging, staged

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
OUTPUT_SUFFIXES = (".json", ".skeleton.png", ".heatmaps.png")
SUMMARY_STEM = "predictions"
ONNX_RUNTIME_FROM = 12   # images; fewer run in PyTorch (see `predict`)
# The skeleton picture's longer side at most: a 100-megapixel photo drawn at full size was a
# 299 MB PNG and 2.1 GB of memory; the JSON keeps the keypoints in full-resolution pixels.
PICTURE_MAX_SIDE = 2048
# What marks a results entry as predict's own (the keys it writes besides COCO's).
RESULT_KEYS = ("file", "box_source", "crop_box")


@dataclass
class ImageOutcome:
    """What happened to one input: written files and the prediction, or the reason it failed."""

    path: Path
    prediction: Prediction | None = None
    files: list[Path] = field(default_factory=list)
    error: str | None = None
    note: str | None = None          # why its outputs have another name than its own
    orientation: int = 1             # its EXIF orientation (applied)
    picture_scale: float = 1.0       # the skeleton picture's scale (< 1 for a large image)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class PredictSummary:
    outcomes: list[ImageOutcome]
    out_dir: Path
    summary_file: Path | None = None   # predictions.json (or the new name it took)

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_code(self) -> int:
        """0 when every image was processed, 1 when any could not be (for the CLI)."""
        return 1 if self.failed else 0


def list_images(inputs, skip: frozenset[Path] = frozenset()) -> tuple[list[Path], list[ImageOutcome]]:
    """Expand folders (their image files, sorted, not recursive; `skip`: resolved paths of
    predict's own earlier outputs, which are no inputs); a missing path or a folder without
    images becomes a failed outcome rather than stopping the others."""
    paths, problems, seen = [], [], set()
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and p.resolve() not in skip)
            if not found:
                problems.append(ImageOutcome(item, error=f"{item}: folder holds no {'/'.join(IMAGE_SUFFIXES)} images"))
        elif item.exists():
            found = [item]
        else:
            found = []
            problems.append(ImageOutcome(item, error=f"{item}: not found"))
        for path in found:   # an image given twice (by name and in its folder) is predicted once
            if path.resolve() not in seen:
                seen.add(path.resolve())
                paths.append(path)
    return paths, problems


def coco_image_id(path: Path) -> int | None:
    """COCO names its images by id (000000391895.jpg -> 391895); other names have none."""
    return int(path.stem) if re.fullmatch(r"\d{1,18}", path.stem) else None


# --- what predict wrote in OUT_DIR before ----------------------------------------------------

@dataclass
class Record:
    """OUT_DIR as predict finds it: its results file and the earlier results listed there."""

    folder: Path
    summary: str              # predictions.json, or predictions-N.json where a stranger's file has that name
    entries: list[dict]       # earlier results whose output files are all still in OUT_DIR
    listing: set[str]         # every name in OUT_DIR

    @property
    def owned(self) -> set[str]:
        """The names predict wrote (and may replace)."""
        return {self.summary} | {name for entry in self.entries for name in entry["outputs"]}

    def owned_paths(self) -> frozenset[Path]:
        return frozenset((self.folder / name).resolve() for name in self.owned if name != self.summary)

    @property
    def strangers(self) -> set[str]:
        """Names in OUT_DIR that predict did not write (never replaced)."""
        return {n for n in self.listing - self.owned if not leftover_staging(n)}


def summary_names():
    yield f"{SUMMARY_STEM}.json"
    for n in count(2):
        yield f"{SUMMARY_STEM}-{n}.json"


def read_record(folder: Path) -> Record:
    """The first of predictions.json, predictions-2.json, ... that is absent or predict's own."""
    listing = set(os.listdir(folder)) if folder.is_dir() else set()
    for name in summary_names():
        if name not in listing:
            return Record(folder, name, [], listing)
        entries = own_entries(folder / name)
        if entries is not None:
            return Record(folder, name, [e for e in entries if _still_there(folder, e["outputs"])], listing)


def _still_there(folder: Path, outputs: list[str]) -> bool:
    """Whether an earlier result's files are all still files in the folder, its .json still
    predict's: one a user replaced (by a folder, or a label file of the same name) is theirs."""
    if not outputs or not all((folder / name).is_file() for name in outputs):
        return False
    return all(own_entries(folder / name) is not None for name in outputs if name.endswith(".json"))


def own_entries(path: Path) -> list[dict] | None:
    """The entries of a results file written by predict, or None for anybody else's file."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):   # unreadable, not JSON, not UTF-8: not ours
        return None
    if not (isinstance(data, list) and data
            and all(isinstance(e, dict) and all(k in e for k in RESULT_KEYS) for e in data)):
        return None
    for entry in data:
        outputs = entry.get("outputs")
        # plain names in OUT_DIR only: a record is never a way to reach another folder
        entry["outputs"] = [o for o in outputs if isinstance(o, str) and o not in ("", ".", "..")
                            and "/" not in o and "\0" not in o] if isinstance(outputs, list) else []
    return data


# --- output names ----------------------------------------------------------------------------

# The temporary name hgpose.io writes first is ".<name>.XXXXXXXX.tmp": 14 bytes more.
TEMP_NAME_EXTRA = 14
NUMBER_ROOM = 6          # "-99999"


def name_limit(folder: Path) -> int:
    """The longest file name the folder's file system takes, in bytes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def fitted_stem(stem: str, limit: int) -> str:
    """`stem`, or where its outputs' names (and their temporary names) would be too long
    for the file system, its beginning and "~" with 8 hex digits of its SHA-1."""
    room = limit - TEMP_NAME_EXTRA - max(len(s) for s in OUTPUT_SUFFIXES) - NUMBER_ROOM
    raw = os.fsencode(stem)
    if len(raw) <= room:
        return stem
    digest = hashlib.sha1(raw).hexdigest()[:8]
    head = raw[:room - len(digest) - 1]
    while head and (head[-1] & 0xC0) == 0x80:   # not in the middle of a UTF-8 character
        head = head[:-1]
    if head and head[-1] >= 0xC0:
        head = head[:-1]
    return f"{os.fsdecode(head)}~{digest}"


def output_names(paths: list[Path], record: Record) -> list[tuple[str, str | None]]:
    """(name, note) per input: its stem (shortened where too long), numbered where a file of
    that name is not predict's (a stranger's, an input, another input's earlier output or
    the results file); note says why, or None."""
    here = record.folder.resolve()
    inputs_here = {p.name for p in paths if p.resolve().parent == here}
    blocked = record.strangers | inputs_here | {record.summary}
    owner = {name: _resolved(e["file"]) for e in record.entries for name in e["outputs"]}
    limit = name_limit(record.folder) if record.folder.is_dir() else 255
    used: set[str] = set()
    names = []
    for p in paths:
        base = fitted_stem(p.stem, limit)
        name, note = base, ("name shortened to fit the file system" if base != p.stem else None)
        for n in count(2):
            files = [name + suffix for suffix in OUTPUT_SUFFIXES]
            clash = next((f for f in files if f in blocked or f in used
                          or owner.get(f, p.resolve()) != p.resolve()), None)
            if clash is None:
                break
            name = f"{base}-{n}"
            if clash in record.strangers:
                note = f"{clash} there is not predict's: kept"
        used.update(name + suffix for suffix in OUTPUT_SUFFIXES)
        names.append((name, note))
    return names


def _resolved(file: str) -> Path:
    try:
        return Path(file).resolve()
    except (OSError, ValueError):
        return Path(file)


# --- pictures ----------------------------------------------------------------------------------

def skeleton_picture(image: np.ndarray, pred: Prediction, min_score: float,
                     max_side: int = PICTURE_MAX_SIDE) -> tuple[np.ndarray, float]:
    """(the image with the crop square (thin grey) and the skeleton drawn on it, scaled
    down to at most `max_side` pixels on its longer side; the scale)."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    out = image.copy() if scale == 1 else cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    scale_x, scale_y = out.shape[1] / width, out.shape[0] / height
    keypoints = pred.keypoints.copy()
    # pixel centres: x -> (x + 0.5) * s - 0.5 (docs/architecture.md, "Pixel convention")
    keypoints[:, 0] = (keypoints[:, 0] + 0.5) * scale_x - 0.5
    keypoints[:, 1] = (keypoints[:, 1] + 0.5) * scale_y - 0.5
    b = pred.crop_box
    corners = [round(b.x0 * scale_x), round(b.y0 * scale_y),
               round((b.x0 + b.side) * scale_x) - 1, round((b.y0 + b.side) * scale_y) - 1]
    thickness = max(1, round(max(out.shape[:2]) / 400))
    cv2.rectangle(out, tuple(corners[:2]), tuple(corners[2:]), (200, 200, 200), thickness)
    return draw_skeleton(out, keypoints, min_score=min_score), scale


def _png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def read_photo(path: Path) -> tuple[np.ndarray, int]:
    """An input image as RGB uint8, as it is displayed (its EXIF orientation applied, as
    `hgpose.load(...).predict(path)` does), and that orientation (1..8; 1 = none);
    HgposeError naming the file if it cannot be read."""
    if path.is_dir():
        raise HgposeError(f"{path}: is a folder, not an image file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HgposeError(f"{path}: not found") from None
    except OSError as e:
        raise HgposeError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        image = decode_bgr(data, exif=True)   # the checks of `hgpose prepare`: size, truncation, ...
    except ImageProblem as e:
        raise HgposeError(f"{path}: {e}") from None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), exif_orientation(data)


def result_entry(path: Path, pred: Prediction, orientation: int = 1, outputs: list[str] = ()) -> dict:
    """The COCO result of one image, plus where it came from (extra keys pycocotools ignores)."""
    b = pred.crop_box
    return {
        **pred.to_coco(coco_image_id(path)),
        "file": str(path),
        "box": [round(v, 2) for v in pred.box],
        "box_source": "whole_image" if pred.whole_image else "given",
        "crop_box": [b.x0, b.y0, b.side],
        # keypoints, box and crop box are in the displayed frame: the stored pixels turned
        # as the EXIF orientation says
        "orientation": {"exif": orientation, "applied": orientation != 1},
        "outputs": list(outputs),
    }


# --- predicting ------------------------------------------------------------------------------

def predict_images(estimator: Estimator, inputs, out_dir: str | Path, *, box=None,
                   min_score: float = 0.25,
                   on_image: Callable[[ImageOutcome], None] | None = None) -> PredictSummary:
    """Predict every image of `inputs` (files and folders) and write OUT_DIR (see module doc).

    box: (x, y, w, h) of the person in every image (in its displayed frame); None = the
    whole image.
    min_score: joints scoring below this fraction of a perfect target's peak are faded.
    on_image: called with each outcome as soon as it is known (the CLI prints them).
    """
    out_dir = _out_folder(out_dir)
    record = read_record(out_dir)
    paths, problems = list_images(inputs, record.owned_paths())
    return _predict_listed(estimator, paths, problems, record, box=box, min_score=min_score,
                           on_image=on_image)


def _out_folder(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HgposeError(f"--out {out_dir}: is a file, not a folder; give a folder for the predictions")
    return out_dir


def _predict_listed(estimator: Estimator, paths: list[Path], outcomes: list[ImageOutcome],
                    record: Record, *, box, min_score: float,
                    on_image: Callable[[ImageOutcome], None] | None) -> PredictSummary:
    """`predict_images` on inputs already expanded by `list_images` (paths, failed outcomes)."""
    for outcome in outcomes:
        if on_image:
            on_image(outcome)
    if not paths and not outcomes:
        raise HgposeError("no images given")
    fade_below = min_score * estimator.target_peak
    entries = []
    with staged(record.folder, last=(record.summary,), what="--out folder") as stage:
        for path, (name, note) in zip(paths, output_names(paths, record)):
            outcome, entry = _predict_one(estimator, path, box, name, stage, fade_below)
            outcome.note = note if outcome.ok else None
            outcomes.append(outcome)
            if entry is not None:
                entries.append(entry)
            if on_image:
                on_image(outcome)
        if entries:
            write_json(stage / record.summary, _merged(record.entries, entries))
    summary_file = record.folder / record.summary if entries else None
    return PredictSummary(outcomes, record.folder, summary_file)


def _predict_one(estimator: Estimator, path: Path, box, name: str, stage: Staging,
                 fade_below: float) -> tuple[ImageOutcome, dict | None]:
    """One image: its outcome and COCO result entry (None when it failed), its files staged."""
    outcome = ImageOutcome(path)
    try:
        image, outcome.orientation = read_photo(path)
        pred = estimator.infer(image, box)
        if not np.isfinite(pred.keypoints).all():  # would be NaN in the JSON: invalid JSON
            raise HgposeError(f"{path}: the network's output is not finite (NaN/inf); "
                              "its checkpoint is broken — use another one (--checkpoint)")
    except HgposeError as e:  # unreadable image or a box outside it: this image only
        outcome.error = str(e)
        return outcome, None
    files = [name + suffix for suffix in OUTPUT_SUFFIXES]
    entry = result_entry(path, pred, outcome.orientation, files)
    picture, outcome.picture_scale = skeleton_picture(image, pred, fade_below)
    write_json(stage / files[0], [entry])
    write_bytes(stage / files[1], _png(picture))
    write_bytes(stage / files[2], _png(heatmap_overlay(pred.crop, pred.heatmaps)))
    outcome.prediction, outcome.files = pred, [stage.folder / f for f in files]
    return outcome, entry


def _merged(earlier: list[dict], new: list[dict]) -> list[dict]:
    """The results file: the earlier results whose files this call did not replace, then the new."""
    replaced = {name for entry in new for name in entry["outputs"]}
    return [e for e in earlier if not replaced & set(e["outputs"])] + new


def predict(source, inputs, out_dir: str | Path = "predictions", *, box=None,
            checkpoint=None, device: str = "auto", flip: bool = False, min_score: float = 0.25,
            on_image: Callable[[ImageOutcome], None] | None = None, refine: str | None = None,
            precision: str = "auto") -> PredictSummary:
    """Load a run (or weights file) and predict images; see `predict_images`."""
    from hgpose.inference import load

    out_dir = _out_folder(out_dir)
    record = read_record(out_dir)
    paths, problems = list_images(inputs, record.owned_paths())
    # ONNX Runtime (the fp32 CPU engine) first writes its graph, 1-4 s: worth it from about
    # a dozen images on
    engine = "auto" if len(paths) >= ONNX_RUNTIME_FROM else "torch"
    estimator = load(source, checkpoint=checkpoint, device=device, flip=flip, refine=refine,
                     precision=precision, engine=engine)
    return _predict_listed(estimator, paths, problems, record, box=box, min_score=min_score,
                           on_image=on_image)


def describe(outcome: ImageOutcome) -> str:
    """One line per image for the CLI, printable whatever the bytes of its file names (a
    name that is not UTF-8 shows its odd bytes as \\xNN)."""
    return printable(_describe(outcome))


def printable(text: str) -> str:
    """`text` with the undecodable bytes of file names (kept by Python as surrogates) as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _describe(outcome: ImageOutcome) -> str:
    if not outcome.ok:
        return outcome.error
    pred = outcome.prediction
    source = ("no --box: the whole image taken as the person's box" if pred.whole_image
              else "box " + ",".join(f"{v:g}" for v in pred.box))
    if outcome.orientation != 1:
        source += f" (EXIF orientation {outcome.orientation} applied: the image as displayed)"
    b = pred.crop_box
    names = ", ".join(p.name for p in outcome.files)
    if outcome.picture_scale < 1:
        names += f" (skeleton picture scaled to {PICTURE_MAX_SIDE} px)"
    if outcome.note:
        names += f" ({outcome.note})"
    return (f"{outcome.path}: 17 keypoints, mean score {pred.keypoints[:, 2].mean():.3f}; {source}; "
            f"crop {b.side}x{b.side} at ({b.x0}, {b.y0}) -> {names}")
