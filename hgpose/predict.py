"""`hgpose predict`: keypoints for the people in each given image, as JSON and pictures.

Where the people are: `--boxes FILE` gives each image its person boxes (a COCO detection
results file, a JSON object of boxes per image name or a CSV: `hgpose.predict_boxes`), every
box one person; `--box x,y,w,h` is one person at the same box in every image; without
either, each image is taken as one person: the whole image padded to a square (nobody at
the edges is cut), and the CLI warns that one person is assumed. A box is cropped as
`hgpose evaluate`'s default protocol crops an annotated box (`inference.estimator.box_crop`:
the box's longer side x BOX_PADDING = 1.25, centred; `hgpose.data.crop.BOX_PADDING`).

For every image, in OUT_DIR:
    <name>.json            its people as COCO keypoint results (a list, one per person), plus
                           where each came from: file, person number, person box, box_source,
                           the detector's box score, crop box, the EXIF orientation, and the
                           names of the image's output files
    <name>.skeleton.png    the image with every person's skeleton drawn (left orange, right
                           blue, low-score joints faded), each given box outlined and numbered,
                           at most PICTURE_MAX_SIDE pixels on its longer side
    <name>.heatmaps.png    each person's fused heatmaps over its 256x256 crop (thesis Figure
                           5), numbered like the boxes, on one colour scale with its colour
                           bar; at most PICTURE_MAX_SIDE pixels on its longer side
    <name>.saliency.png    with --saliency JOINTS: a row per person (the first SALIENCY_PEOPLE,
                           or --saliency-people N): its crop with the predicted skeleton, then
                           per joint its occlusion and Grad-CAM maps over that very crop
                           (`hgpose.explain.saliency`, which computes and draws them for
                           `hgpose explain` too), with their colour scale; at most
                           PICTURE_MAX_SIDE pixels on its longer side. A joint the network was
                           not trained on is refused before any network pass.
and one results file per call, which never replaces another: predictions.json for the first
call into OUT_DIR, then predictions-2.json, predictions-3.json, ... (the next number after
the highest there). Each is a COCO results list of that call's people, loadable as it is by
pycocotools, and predict's record of the files that call wrote. Why a new file per call and
not one file that grows: a call never rewrites what an earlier call (or another tool) wrote,
so no result is lost to a later call, failed or not, and each file stays a plain COCO results
list. predict replaces an image's own files when the same image is predicted again (the
latest call's people), and never a file it did not write: where <name>.json (a LabelMe label
file, say) belongs to someone else, the output takes a new name (<name>-2.json) and the
output line says so (a stranger's <name>.saliency.png moves the outputs too, with or without
--saliency). A call without --saliency leaves an image's earlier <name>.saliency.png as it
was: the results file of the call that drew it lists it. Names too long for the file system
are shortened, with a hash of the full name.

An image is estimated as it is displayed: its EXIF orientation is applied (a phone photo
tagged "rotate 90°" is turned first), so keypoints and boxes are in the displayed frame.

The outputs of a call are a set (`hgpose.outputs.staged`): written to a staging folder and
moved into OUT_DIR together, the results file last, when every image has been processed. An
image that cannot be read, or whose box lies outside it, is reported and skipped; the others
are still processed, and the outcome says which failed (the CLI exits 1 then). An image the
boxes file names no box for is reported and skipped too (nobody to predict; exit status 0).
A failed write (a full disk) leaves OUT_DIR as it was.

Cost: one network pass per person (PEOPLE_BATCH crops at a time); memory of one image, one
batch, and the pictures' tiles (the heatmap picture is at most PICTURE_MAX_SIDE pixels square
however many people); time linear in the number of people. --saliency adds, per explained
person, 225 forward passes (occlusion) and a forward and a backward pass per joint
(Grad-CAM), in fp32 through PyTorch, with a progress bar over the explained crops.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from hgpose.data.crop import CropBox, to_crop
from hgpose.draw import colour_bar, draw_label, draw_skeletons, heatmap_overlay, tile_sheet
from hgpose.errors import HgposeError
from hgpose.explain import figures, saliency
from hgpose.images import ImageProblem, decode_bgr, exif_orientation
from hgpose.inference import Estimator, Prediction, onnx_runtime
from hgpose.inference.estimator import box_crop
from hgpose.io import write_bytes, write_json
from hgpose.outputs import Staging, leftover_staging, staged
from hgpose.progress import bar
from hgpose.predict_boxes import PersonBox, boxes_per_image, coco_image_id, read_boxes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SALIENCY_SUFFIX = ".saliency.png"
# Every output an image may have: a name is checked against them all, so a stranger's
# <name>.saliency.png moves an image's outputs to <name>-2.* with or without --saliency.
OUTPUT_SUFFIXES = (".json", ".skeleton.png", ".heatmaps.png", SALIENCY_SUFFIX)
SALIENCY_PEOPLE = saliency.PEOPLE_PER_IMAGE   # --saliency's default cap on the people of an image
RESULTS_STEM = "predictions"
# predictions.json (call 1), predictions-2.json, ...: the names of the results files. Any file
# of such a name is never a per-image output (case-insensitively: macOS and Windows folders
# would take Predictions.json for predictions.json).
RESULTS_NAME = re.compile(r"predictions(?:-(\d{1,18}))?\.json", re.IGNORECASE)
ONNX_RUNTIME_FROM = 12   # crops; fewer run in PyTorch (see `predict`)
# A picture's longer side at most: a 100-megapixel photo drawn at full size was a 299 MB PNG
# and 2.1 GB of memory; the JSON keeps the keypoints in full-resolution pixels.
PICTURE_MAX_SIDE = 2048
HEATMAP_TILE = 256       # a person's tile in the heatmap picture, while they fit
COLOUR_BAR_WIDTH = 76
# What marks a results entry as predict's own (the keys it writes besides COCO's).
RESULT_KEYS = ("file", "box_source", "crop_box")
ONE_PERSON_WARNING = (
    "no --box or --boxes: each image is taken as ONE person, the whole image padded to a square; "
    "for several people give their boxes: --boxes FILE (COCO detection results, a JSON "
    '{"image name": [[x, y, w, h], ...]} or a CSV of image,x,y,w,h rows), or --box x,y,w,h for one')


@dataclass(frozen=True)
class PersonResult:
    """What predict keeps of one person after writing it (not its crop and heatmaps)."""

    keypoints: np.ndarray          # float32 [17, 3]: x, y in image pixels, score
    box: tuple                     # the person box (x, y, w, h); the image's own without a box
    crop_box: CropBox


@dataclass
class ImageOutcome:
    """What happened to one input: its people and written files, or why it has none."""

    path: Path
    people: list[PersonResult] = field(default_factory=list)
    box_source: str = "whole_image"  # "whole_image", "given" (--box) or "boxes_file"
    files: list[Path] = field(default_factory=list)
    error: str | None = None         # why it failed (unreadable, a box outside it)
    skipped: str | None = None       # why nothing was predicted (no box for it in the boxes file)
    note: str | None = None          # why its outputs have another name than its own
    orientation: int = 1             # its EXIF orientation (applied)
    picture_scale: float = 1.0       # the skeleton picture's scale (< 1 for a large image)
    saliency_people: int = 0         # how many of its people its saliency picture explains

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class PredictSummary:
    outcomes: list[ImageOutcome]
    out_dir: Path
    summary_file: Path | None = None   # this call's results file (None when nobody was predicted)

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def people(self) -> int:
        return sum(len(o.people) for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 when every image was processed, 1 when any could not be (for the CLI)."""
        return 1 if self.failed else 0


@dataclass(frozen=True)
class BoxPlan:
    """Where the people of each image are: `box` in every image, the boxes of a boxes file
    per image (`per_image`, read from `source`), or neither: one person, the whole image."""

    box: tuple | None = None
    per_image: dict[Path, list[PersonBox]] | None = None
    source: str | None = None

    @property
    def box_source(self) -> str:
        return "boxes_file" if self.per_image is not None else "given" if self.box is not None else "whole_image"

    def boxes_of(self, path: Path) -> list[PersonBox] | None:
        """The person boxes of an image (possibly none), or None for the whole image."""
        if self.per_image is not None:
            return self.per_image.get(path, [])
        return None if self.box is None else [PersonBox(str(path), tuple(self.box), None, "--box")]


def plan_boxes(paths: list[Path], box=None, boxes: str | Path | None = None) -> BoxPlan:
    """The `BoxPlan` of the images given: --box, or the boxes file read and matched to the
    images (HgposeError for a malformed file, or one that names none of them)."""
    if box is not None and boxes is not None:
        raise HgposeError("--box and --boxes: give one (--box: one person at the same box in every image; "
                          "--boxes FILE: the boxes of each image)")
    if boxes is None:
        return BoxPlan(box=None if box is None else tuple(float(v) for v in box))
    people = read_boxes(boxes)
    return BoxPlan(per_image=boxes_per_image(people, paths, boxes) if paths else {}, source=str(boxes))


@dataclass(frozen=True)
class SaliencyPlan:
    """What --saliency asks of every image: an occlusion and a Grad-CAM map of each of
    `joints` for its first `people` people, at explain's defaults (patch, stride, layer)."""

    joints: list[int]
    people: int = SALIENCY_PEOPLE
    layer: str = "stem"
    patch: int = saliency.PATCH
    stride: int = saliency.STRIDE

    def people_of(self, boxes: list | None) -> int:
        """How many people of an image with these boxes (None: the whole image) it explains."""
        return min(self.people, 1 if boxes is None else len(boxes))


def saliency_names(joints, people: int) -> tuple[str, ...]:
    """--saliency's joint names, parsed (() = all the network was trained on) and --saliency-people
    checked, before the network loads."""
    if isinstance(people, bool) or not isinstance(people, int) or people < 1:
        raise HgposeError(f"--saliency-people {people}: give a whole number of people >= 1 (default "
                          f"{SALIENCY_PEOPLE})")
    return saliency.parse_joints(joints, "--saliency")


def plan_saliency(estimator: Estimator, names: tuple[str, ...], people: int) -> SaliencyPlan:
    """The --saliency plan for a loaded network: a joint it was not trained on is refused
    here, before any network pass."""
    joints = saliency.trained_joints(names, estimator.joints, "--saliency",
                                     "or give --saliency alone (both wrists)")
    return SaliencyPlan(joints, people, saliency.default_gradcam_layer(estimator.model))


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


# --- what predict wrote in OUT_DIR before ----------------------------------------------------

def results_name(number: int) -> str:
    """The results file of call `number` into a folder: predictions.json, predictions-2.json, ..."""
    return f"{RESULTS_STEM}.json" if number == 1 else f"{RESULTS_STEM}-{number}.json"


def results_number(name: str) -> int | None:
    """The number of a results file's name (predictions.json: 1), None for other names."""
    match = RESULTS_NAME.fullmatch(name)
    return None if match is None else int(match.group(1) or 1)


@dataclass
class Record:
    """OUT_DIR as predict finds it: the results files predict wrote there, the earlier results
    listed in them, and the name of this call's results file."""

    folder: Path
    summary: str              # this call's results file: the next number, a name nobody has
    results_files: list[str]  # predict's own earlier results files, oldest first
    entries: list[dict]       # earlier results whose output files are all still in OUT_DIR
    listing: set[str]         # every name in OUT_DIR

    @property
    def owned(self) -> set[str]:
        """The names predict wrote: its results files (never replaced) and the image outputs
        they list (replaced when the same image is predicted again)."""
        return set(self.results_files) | {name for entry in self.entries for name in entry["outputs"]}

    def owned_paths(self) -> frozenset[Path]:
        return frozenset((self.folder / name).resolve() for name in self.owned if name not in self.results_files)

    @property
    def strangers(self) -> set[str]:
        """Names in OUT_DIR that predict did not write (never replaced)."""
        return {n for n in self.listing - self.owned if not leftover_staging(n)}

    @property
    def results_like(self) -> set[str]:
        """Every name of the results files' form in OUT_DIR, whoever wrote it, and this call's."""
        return {n for n in self.listing if results_number(n) is not None} | {self.summary}


def read_record(folder: Path) -> Record:
    """What predict finds in OUT_DIR: each results file it wrote there (the others are a
    stranger's), and the next number for this call. Reads each results file and each image
    JSON they list once."""
    listing = set(os.listdir(folder)) if folder.is_dir() else set()
    numbered = sorted((n, name) for name in listing if (n := results_number(name)) is not None)
    files, entries, still_there = [], [], {}
    for _, name in numbered:
        own = own_entries(folder / name)
        if own is None:
            continue
        files.append(name)
        for entry in own:
            outputs = tuple(entry["outputs"])
            if outputs not in still_there:
                still_there[outputs] = _still_there(folder, outputs)
            if still_there[outputs]:
                entries.append(entry)
    next_number = (numbered[-1][0] if numbered else 0) + 1
    return Record(folder, results_name(next_number), files, entries, listing)


def _still_there(folder: Path, outputs) -> bool:
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
    a results file); note says why, or None."""
    here = record.folder.resolve()
    inputs_here = {p.name for p in paths if p.resolve().parent == here}
    blocked = record.strangers | inputs_here | record.results_like
    owner = {name: _resolved(e["file"]) for e in record.entries for name in e["outputs"]}
    limit = name_limit(record.folder) if record.folder.is_dir() else 255
    used: set[str] = set()
    names = []
    for p in paths:
        base = fitted_stem(p.stem, limit)
        note = "name shortened to fit the file system" if base != p.stem else None
        if results_number(base + ".json") is not None:   # predictions.jpg: its JSON would be a results file's name
            base, note = f"{base}-image", "named apart from predict's results files"
        name = base
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

def skeleton_picture(image: np.ndarray, people: list[PersonResult], min_score: float, *, boxes: bool = True,
                     max_side: int = PICTURE_MAX_SIDE) -> tuple[np.ndarray, float]:
    """(the image with every person's skeleton drawn on it and, with `boxes`, each person
    box outlined (thin grey) and numbered as in the JSON, scaled down to at most `max_side`
    pixels on its longer side; the scale)."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    out = image.copy() if scale == 1 else cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    scale_x, scale_y = out.shape[1] / width, out.shape[0] / height
    thickness = max(1, round(max(out.shape[:2]) / 400))
    drawn = []
    for number, person in enumerate(people, start=1):
        keypoints = person.keypoints.copy()
        # pixel centres: x -> (x + 0.5) * s - 0.5 (docs/architecture.md, "Pixel convention")
        keypoints[:, 0] = (keypoints[:, 0] + 0.5) * scale_x - 0.5
        keypoints[:, 1] = (keypoints[:, 1] + 0.5) * scale_y - 0.5
        drawn.append(keypoints)
        if boxes:   # a box's edges are continuous coordinates: pixel x covers [x - 0.5, x + 0.5)
            x, y, w, h = person.box
            corner = (round(x * scale_x), round(y * scale_y))
            cv2.rectangle(out, corner, (round((x + w) * scale_x) - 1, round((y + h) * scale_y) - 1),
                          (200, 200, 200), thickness)
            if len(people) > 1:
                draw_label(out, str(number), corner[0] + 2, corner[1] + 2, max(10, thickness * 12))
    return draw_skeletons(out, drawn, min_score=min_score), scale


class HeatmapSheet:
    """The heatmap picture of one image, built person by person: each person's crop (as a
    tile) and fused heatmaps kept at the tile's size only, so its memory is that of the
    finished picture however many people; drawn at the end on one colour scale, from 0 to the
    larger of a perfect joint's peak and the highest value shown."""

    def __init__(self, people: int, peak: float, max_side: int = PICTURE_MAX_SIDE):
        self.columns = max(1, math.ceil(math.sqrt(people)))
        self.tile = max(1, min(HEATMAP_TILE, (max_side - COLOUR_BAR_WIDTH) // self.columns))
        self.peak, self.highest = peak, 0.0
        self.crops: list[np.ndarray] = []
        self.maps: list[np.ndarray] = []

    def add(self, crop: np.ndarray, heatmaps: np.ndarray) -> None:
        fused = np.clip(np.asarray(heatmaps, np.float32).max(axis=0), 0, None)
        self.highest = max(self.highest, float(fused.max()))
        size = (self.tile, self.tile)
        self.crops.append(crop if crop.shape[0] == self.tile else cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
        self.maps.append(fused if fused.shape[0] <= self.tile else cv2.resize(fused, size, interpolation=cv2.INTER_AREA))

    def picture(self) -> np.ndarray:
        top = max(self.peak, self.highest)
        tiles = []
        for number, (crop, fused) in enumerate(zip(self.crops, self.maps), start=1):
            tile = heatmap_overlay(crop, fused[None], vmax=top)
            if len(self.crops) > 1:
                draw_label(tile, str(number), 3, 3, max(8, self.tile // 14))
            tiles.append(tile)
        rows = math.ceil(len(tiles) / self.columns)
        columns = min(self.columns, len(tiles))
        return tile_sheet(tiles, columns, colour_bar(rows * self.tile, top, COLOUR_BAR_WIDTH),
                          f"heatmap value; a perfect joint peaks at {self.peak:.2f}")


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


def result_entry(path: Path, pred: Prediction, *, number: int, box_source: str, orientation: int = 1,
                 outputs: list[str] = (), box_score: float | None = None) -> dict:
    """The COCO result of one person, plus where it came from (extra keys pycocotools ignores)."""
    b = pred.crop_box
    entry = {
        **pred.to_coco(coco_image_id(path)),
        "file": str(path),
        "person": number,                  # its number in the image (1, 2, ...), as drawn
        "box": [round(v, 2) for v in pred.box],
        "box_source": box_source,
        "crop_box": [b.x0, b.y0, b.side],
        # keypoints, box and crop box are in the displayed frame: the stored pixels turned
        # as the EXIF orientation says
        "orientation": {"exif": orientation, "applied": orientation != 1},
        "outputs": list(outputs),
    }
    if box_score is not None:
        entry["box_score"] = box_score
    return entry


# --- predicting ------------------------------------------------------------------------------

def predict_images(estimator: Estimator, inputs, out_dir: str | Path, *, box=None,
                   boxes: str | Path | None = None, min_score: float = 0.25, saliency=None,
                   saliency_people: int = SALIENCY_PEOPLE, progress: bool = True,
                   on_image: Callable[[ImageOutcome], None] | None = None,
                   on_warning: Callable[[str], None] | None = None) -> PredictSummary:
    """Predict the people of every image of `inputs` (files and folders) and write OUT_DIR
    (see module doc).

    box: (x, y, w, h) of one person in every image (in its displayed frame).
    boxes: a boxes file (`hgpose.predict_boxes`): the person boxes of each image.
    Neither: one person per image, the whole image padded to a square.
    min_score: joints scoring below this fraction of a perfect target's peak are faded.
    saliency: joint names ("left_wrist,right_wrist", a list, or "all" the network was trained
    on): also write <name>.saliency.png for the first `saliency_people` people of each image
    (module doc); None: no saliency. progress: a progress bar over the saliency crops.
    on_image: called with each outcome as soon as it is known (the CLI prints them).
    on_warning: called with ONE_PERSON_WARNING before the images, when neither box nor
    boxes is given (the CLI prints it).
    """
    names = None if saliency is None else saliency_names(saliency, saliency_people)
    out_dir = _out_folder(out_dir)
    record = read_record(out_dir)
    paths, problems = list_images(inputs, record.owned_paths())
    plan = plan_boxes(paths, box, boxes)
    asked = None if names is None else plan_saliency(estimator, names, saliency_people)
    return _predict_listed(estimator, paths, problems, record, plan, min_score=min_score, saliency=asked,
                           progress=progress, on_image=on_image, on_warning=on_warning)


def _out_folder(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HgposeError(f"--out {out_dir}: is a file, not a folder; give a folder for the predictions")
    return out_dir


def _predict_listed(estimator: Estimator, paths: list[Path], outcomes: list[ImageOutcome],
                    record: Record, plan: BoxPlan, *, min_score: float, saliency: SaliencyPlan | None,
                    progress: bool, on_image: Callable[[ImageOutcome], None] | None,
                    on_warning: Callable[[str], None] | None) -> PredictSummary:
    """`predict_images` on inputs already expanded by `list_images` (paths, failed outcomes)."""
    if on_warning and paths and plan.box_source == "whole_image":
        on_warning(ONE_PERSON_WARNING)
    for outcome in outcomes:
        if on_image:
            on_image(outcome)
    if not paths and not outcomes:
        raise HgposeError("no images given")
    fade_below = min_score * estimator.target_peak
    entries = []
    # saliency is the long part (about 230 passes a person): its bar counts explained crops
    crops = 0 if saliency is None else sum(saliency.people_of(plan.boxes_of(p)) for p in paths)
    with staged(record.folder, last=(record.summary,), what="--out folder") as stage, \
            bar(total=crops, desc="saliency", unit="crops", disable=not (progress and crops)) as counter:
        for path, (name, note) in zip(paths, output_names(paths, record)):
            outcome, written = _predict_one(estimator, path, plan, name, stage, fade_below, saliency, counter)
            outcome.note = note if outcome.files else None
            outcomes.append(outcome)
            entries += written
            if on_image:
                on_image(outcome)
        if entries:
            write_json(stage / record.summary, entries)
    summary_file = record.folder / record.summary if entries else None
    return PredictSummary(outcomes, record.folder, summary_file)


def _predict_one(estimator: Estimator, path: Path, plan: BoxPlan, name: str, stage: Staging,
                 fade_below: float, saliency: SaliencyPlan | None, counter) -> tuple[ImageOutcome, list[dict]]:
    """One image: its outcome and the COCO result entries of its people (none when it failed
    or has no box), its files staged."""
    outcome = ImageOutcome(path, box_source=plan.box_source)
    boxes = plan.boxes_of(path)
    if boxes == []:
        outcome.skipped = f"no box for it in {plan.source}"
        return outcome, []
    files = [name + suffix for suffix in OUTPUT_SUFFIXES if saliency is not None or suffix != SALIENCY_SUFFIX]
    keep = 0 if saliency is None else saliency.people
    try:
        image, outcome.orientation = read_photo(path)
        people = _people(estimator, image, path, boxes, plan)
        entries, sheet, kept = _entries_and_sheet(estimator, people, path, boxes, outcome, files, keep)
    except HgposeError as e:  # unreadable image, a box outside it, a broken network: this image only
        outcome.error, outcome.people = str(e), []
        return outcome, []
    picture, outcome.picture_scale = skeleton_picture(image, outcome.people, fade_below, boxes=boxes is not None)
    write_json(stage / files[0], entries)
    write_bytes(stage / files[1], _png(picture))
    write_bytes(stage / files[2], _png(sheet.picture()))
    if saliency is not None:
        write_bytes(stage / files[3], _saliency_picture(estimator, saliency, path, kept, fade_below, counter))
        outcome.saliency_people = len(kept)
    outcome.files = [stage.folder / f for f in files]
    return outcome, entries


def _people(estimator: Estimator, image: np.ndarray, path: Path, boxes: list[PersonBox] | None, plan: BoxPlan):
    """The predictions of an image's people, one at a time (see `Estimator.iter_people`):
    the whole image as one person without boxes. Every box is checked against the image
    first, an error naming it (and the boxes file's entry)."""
    if boxes is None:
        return iter([estimator.infer(image)])
    height, width = image.shape[:2]
    for b in boxes:
        what = "--box" if plan.per_image is None else f"--boxes {plan.source} {b.where}: box"
        try:
            box_crop(b.bbox, width, height, what)
        except HgposeError as e:
            raise HgposeError(f"{path}: {e} (as displayed)") from None
    return estimator.iter_people(image, [b.bbox for b in boxes])


def _entries_and_sheet(estimator: Estimator, people, path: Path, boxes: list[PersonBox] | None,
                       outcome: ImageOutcome, files: list[str], keep: int = 0
                       ) -> tuple[list[dict], HeatmapSheet, list[Prediction]]:
    """The result entries of an image's people, their heatmap picture and the first `keep`
    predictions whole (for saliency), keeping of the others only what the pictures and the
    output line need (`outcome.people`)."""
    sheet = HeatmapSheet(1 if boxes is None else len(boxes), estimator.target_peak)
    entries, kept = [], []
    for number, pred in enumerate(people, start=1):
        if not np.isfinite(pred.keypoints).all():  # would be NaN in the JSON: invalid JSON
            raise HgposeError(f"{path}: the network's output is not finite (NaN/inf); "
                              "its checkpoint is broken — use another one (--checkpoint)")
        score = None if boxes is None else boxes[number - 1].score
        entries.append(result_entry(path, pred, number=number, box_source=outcome.box_source,
                                    orientation=outcome.orientation, outputs=files, box_score=score))
        sheet.add(pred.crop, pred.heatmaps)
        outcome.people.append(PersonResult(pred.keypoints, pred.box, pred.crop_box))
        if len(kept) < keep:
            kept.append(pred)
    return entries, sheet, kept


def _saliency_picture(estimator: Estimator, plan: SaliencyPlan, path: Path, people: list[Prediction],
                      fade_below: float, counter) -> bytes:
    """<name>.saliency.png: a row per person of `people` (`saliency.people_figure`), each map
    computed on the very crop its prediction came from, at most PICTURE_MAX_SIDE px."""
    rows = []
    for number, pred in enumerate(people, start=1):
        occ, cam = saliency.explain_crop(estimator, pred.crop, plan.joints, patch=plan.patch, stride=plan.stride,
                                         layer=plan.layer)
        keypoints = to_crop(pred.keypoints, pred.crop_box, estimator.input_size)   # score 0: not drawn
        rows.append(saliency.PersonSaliency(pred.crop, keypoints, occ, cam,
                                            "the image" if pred.whole_image else f"person {number}"))
        counter.update(1)
    # a "$" in a file name would start matplotlib's mathtext
    name = printable(path.name).replace("$", r"\$")
    title = (f"{name}: occlusion {plan.patch}px/{plan.stride}px | Grad-CAM at {plan.layer}; "
             "+ = predicted position")
    fig = saliency.people_figure(rows, plan.joints, title, fade_below, PICTURE_MAX_SIDE)
    return figures.png_bytes(fig, PICTURE_MAX_SIDE)


def predict(source, inputs=(), out_dir: str | Path = "predictions", *, box=None,
            boxes: str | Path | None = None, examples: bool = False, checkpoint=None, device: str = "auto",
            flip: bool = False, min_score: float = 0.25, saliency=None,
            saliency_people: int = SALIENCY_PEOPLE, progress: bool = True,
            on_image: Callable[[ImageOutcome], None] | None = None,
            on_warning: Callable[[str], None] | None = None, refine: str | None = None,
            precision: str = "auto") -> PredictSummary:
    """Load a run (a run folder, a weights file or a registered model name) and predict
    images; see `predict_images`. examples: the photos that ship with hgpose
    (`hgpose.examples`), with their person boxes, instead of `inputs`."""
    from hgpose.inference import load

    # first: `--saliency photo.jpg` took the image for its joints, which this error says
    names = None if saliency is None else saliency_names(saliency, saliency_people)
    inputs, boxes = _inputs(inputs, box, boxes, examples)
    out_dir = _out_folder(out_dir)
    record = read_record(out_dir)
    paths, problems = list_images(inputs, record.owned_paths())
    plan = plan_boxes(paths, box, boxes)        # the boxes file is read before the network loads
    crops = sum(len(plan.boxes_of(p) or [None]) for p in paths)
    # ONNX Runtime (the fp32 CPU engine) first writes its graph, 2-4 s, once per network while
    # its graph cache is on (onnx_runtime.py); with the cache off that pays from about a dozen
    # crops on
    cached = onnx_runtime.graph_cache() is not None
    engine = "auto" if cached or crops >= ONNX_RUNTIME_FROM else "torch"
    estimator = load(source, checkpoint=checkpoint, device=device, flip=flip, refine=refine,
                     precision=precision, engine=engine)
    asked = None if names is None else plan_saliency(estimator, names, saliency_people)
    return _predict_listed(estimator, paths, problems, record, plan, min_score=min_score, saliency=asked,
                           progress=progress, on_image=on_image, on_warning=on_warning)


def _inputs(inputs, box, boxes, examples: bool) -> tuple[list, str | Path | None]:
    """(the images, the boxes file) a call predicts: those given, or the shipped examples."""
    inputs = list(inputs)
    if not examples:
        if not inputs:
            raise HgposeError("no images given: give image files or folders, or --examples for the photos "
                              "that ship with hgpose")
        return inputs, boxes
    if inputs or box is not None or boxes is not None:
        raise HgposeError("--examples predicts the example photos with their own boxes: drop the images, "
                          "--box and --boxes, or drop --examples")
    from hgpose import examples as shipped

    return shipped.images(), shipped.BOXES


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
    if outcome.skipped:
        return f"{outcome.path}: {outcome.skipped}: skipped"
    people = outcome.people
    mean = float(np.mean([p.keypoints[:, 2].mean() for p in people]))
    if outcome.box_source == "whole_image":
        b = people[0].crop_box
        source = (f"one person assumed (no box): the whole image padded to a {b.side}x{b.side} square; "
                  f"17 keypoints, mean score {mean:.3f}")
    elif outcome.box_source == "given":
        b = people[0].crop_box
        source = (f"box {','.join(f'{v:g}' for v in people[0].box)}: 17 keypoints, mean score {mean:.3f}; "
                  f"crop {b.side}x{b.side} at ({b.x0}, {b.y0})")
    else:
        source = f"{len(people)} {'person' if len(people) == 1 else 'people'} (their boxes), mean score {mean:.3f}"
    if outcome.orientation != 1:
        source += f" (EXIF orientation {outcome.orientation} applied: the image as displayed)"
    names = ", ".join(p.name for p in outcome.files)
    if outcome.picture_scale < 1:
        names += f" (skeleton picture scaled to {PICTURE_MAX_SIDE} px)"
    if outcome.saliency_people and outcome.saliency_people < len(people):
        explained = "person 1" if outcome.saliency_people == 1 else f"people 1-{outcome.saliency_people}"
        names += f" (saliency of {explained} of {len(people)}; --saliency-people N for more)"
    if outcome.note:
        names += f" ({outcome.note})"
    return f"{outcome.path}: {source} -> {names}"
