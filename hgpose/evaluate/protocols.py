"""Evaluation protocols: where the crops the network is scored on come from.

    thesis      the thesis's crops from the dataset store. Their position and size come from
                the person's ground-truth keypoints (SPEC §1), so the network is told where
                the person is: comparable with the thesis only.
    gt-box      every person of the split cropped from the original image by its annotated
                box alone (centre of the box, square side = longer side × 1.25, as mmpose
                and HRNet do); no keypoint enters the input.
    detections  every person box of a detector (a COCO detection results file) on the
                split's images, cropped like gt-box, rescored and OKS-NMS'd per image; COCO
                AP over every annotated person of those images (the standard COCO protocol).

This module holds what gt-box and detections add: finding the original images, cropping
and predicting people by box, and the detection protocol's rescoring and OKS NMS.
evaluate.py runs the protocols and writes what they measured. The command line reads
PROTOCOLS and DESCRIPTIONS from here to build `hgpose evaluate --help`, so torch, OpenCV
and pycocotools are imported inside the functions that use them, keeping `--help` fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from hgpose.data.store import CROP_SIZE, Split
from hgpose.errors import HgposeError
from hgpose.skeleton import NUM_JOINTS, OKS_SIGMAS as COCO_SIGMAS

if TYPE_CHECKING:
    import torch

    from hgpose.data.crop import CropBox

PROTOCOLS = ("thesis", "gt-box", "detections")
DESCRIPTIONS = {
    "thesis": "the thesis's crops from the dataset store, placed and sized with the ground-truth "
              "keypoints; comparable with the thesis only",
    "gt-box": "each person of the split cropped from the original image by its annotated box alone "
              "(box centre, square side = longer side x 1.25, as mmpose/HRNet); no keypoint enters "
              "the input",
    "detections": "every detector box (--boxes) on the split's images cropped like gt-box, rescored "
                  "and OKS-NMS'd per image; COCO AP over every annotated person of those images",
}
# mmpose's det_bbox_thr and HRNet's IMAGE_THRE on COCO: every person box is kept.
BOX_SCORE_THRESHOLD = 0.0
# HRNet/mmpose: a joint is "confident" above 0.2 of a perfect score (their heatmaps peak
# at 1; ours are measured against the codec's own peak), and OKS NMS removes a person
# whose OKS with a higher-scoring one of its image exceeds 0.9.
CONFIDENT_JOINT = 0.2
OKS_NMS_THRESHOLD = 0.9
OKS_SIGMAS = np.asarray(COCO_SIGMAS, np.float64)  # COCOeval's own (a test compares them)
DETECTION_FIELDS = '{"image_id", "category_id", "bbox": [x, y, w, h], "score"}'


def check_options(protocol: str, boxes, box_score_threshold) -> None:
    """One-line errors for options that do not go together, before anything is loaded."""
    if protocol not in PROTOCOLS:
        raise HgposeError(f"--protocol {protocol}: choose one of {', '.join(PROTOCOLS)}")
    if protocol == "detections" and boxes is None:
        raise HgposeError("--protocol detections needs --boxes FILE, a COCO detection results file "
                          f"(a JSON list of {DETECTION_FIELDS})")
    if protocol != "detections" and boxes is not None:
        raise HgposeError(f"--boxes applies to --protocol detections only (not {protocol}); "
                          "add --protocol detections or drop --boxes")
    if protocol != "detections" and box_score_threshold is not None:
        raise HgposeError("--box-score-threshold applies to --protocol detections only; drop it")
    if box_score_threshold is not None and not math.isfinite(float(box_score_threshold)):
        raise HgposeError(f"--box-score-threshold {box_score_threshold}: give a number, e.g. 0")


# --- the original images (their folders: `Store.image_folders`) ------------------------------

@dataclass(frozen=True)
class Person:
    """One person to crop: its image and the box (x, y, w, h) it is cropped from."""

    source: int
    image_id: int
    path: Path
    bbox: tuple
    box_score: float = 1.0  # the detector's score; 1 for an annotated box


def split_people(split: Split, cocos: dict, folders: dict[int, Path]) -> list[Person]:
    """The split's people in split order, each with its annotated box: the person box
    of a COCO annotation, or for an LSP source the labelled keypoints' extent that
    `prepare` wrote as its box."""
    people = []
    for (image_id, ann_id), source in zip(np.asarray(split.ids), np.asarray(split.source)):
        coco = cocos[int(source)]
        file_name = coco.imgs[int(image_id)]["file_name"]
        bbox = tuple(float(v) for v in coco.anns[int(ann_id)]["bbox"])
        people.append(Person(int(source), int(image_id), folders[int(source)] / file_name, bbox))
    return people


# --- predicting people by box ---------------------------------------------------------------

# (uint8 crops [B, 256, 256, 3], the batch's people, their crop boxes int [B, 3] = x0, y0,
# side) -> heatmaps [B, 17, 64, 64]. The network in `evaluate`; the ground truth in tests.
CropHeatmaps = Callable[[np.ndarray, list, np.ndarray], "torch.Tensor"]

PREDICTED, UNREADABLE, BOX_OUTSIDE = "predicted", "image_unreadable", "box_outside_image"


@dataclass
class BoxPredictions:
    """Per-person results of cropping by box, in the order of the people given."""

    coords: np.ndarray      # float64 [N, 17, 2] (x, y) in image pixels; NaN where not predicted
    scores: np.ndarray      # float32 [N, 17] heatmap maxima; NaN where not predicted
    crop_boxes: np.ndarray  # int64 [N, 3] x0, y0, side of each crop (0 where not predicted)
    status: np.ndarray      # str [N]: PREDICTED, UNREADABLE or BOX_OUTSIDE
    unreadable: dict        # image path -> why it could not be read

    @property
    def predicted(self) -> np.ndarray:
        return self.status == PREDICTED


def predict_people(people: list[Person], heatmaps_of: CropHeatmaps, codec, *, input_size: int = CROP_SIZE,
                   batch_size: int = 32, progress: bool = False, desc: str = "evaluate") -> BoxPredictions:
    """Crop every person from its image by its box, run `heatmaps_of` in batches, decode
    with `codec` and map back to image pixels. Each image is read once; one that cannot be
    read is skipped (its people are UNREADABLE), not fatal."""
    from hgpose.progress import bar as progress_bar

    n = len(people)
    out = BoxPredictions(np.full((n, NUM_JOINTS, 2), np.nan), np.full((n, NUM_JOINTS), np.nan, np.float32),
                         np.zeros((n, 3), np.int64), np.full(n, PREDICTED, dtype=object), {})
    with progress_bar(total=n, unit="person", desc=desc, disable=not progress) as bar:
        batch = []
        for index, crop, box in _crops(people, input_size, out, bar):
            batch.append((index, crop, box))
            if len(batch) == batch_size:
                _predict_batch(batch, people, heatmaps_of, codec, input_size, out)
                batch = []
        if batch:
            _predict_batch(batch, people, heatmaps_of, codec, input_size, out)
    out.status = out.status.astype(str)
    return out


def _crops(people: list[Person], input_size: int, out: BoxPredictions, bar) -> Iterator[tuple[int, np.ndarray, CropBox]]:
    """(index, crop, crop box) for every person that can be cropped, image by image; marks
    the others in out.status."""
    from hgpose.data.crop import box_centred_crop, cut_padded_crop
    from hgpose.images import read_image

    order = sorted(range(len(people)), key=lambda i: (people[i].source, str(people[i].path)))
    image, image_path = None, None
    for i in order:
        person = people[i]
        if person.path != image_path:
            image_path = person.path
            try:
                image = read_image(person.path)
            except HgposeError as e:
                image = None
                out.unreadable[str(person.path)] = str(e)
        bar.update(1)
        if image is None:
            out.status[i] = UNREADABLE
            continue
        box = box_centred_crop(person.bbox, image.shape[1], image.shape[0])
        if box is None:
            out.status[i] = BOX_OUTSIDE
            continue
        yield i, cut_padded_crop(image, box, input_size), box


def _predict_batch(batch, people, heatmaps_of: CropHeatmaps, codec, input_size: int, out: BoxPredictions) -> None:
    from hgpose.inference.estimator import decode_to_image

    index = np.array([i for i, _, _ in batch])
    boxes = np.array([[b.x0, b.y0, b.side] for _, _, b in batch], np.int64)
    heatmaps = heatmaps_of(np.stack([c for _, c, _ in batch]), [people[i] for i in index], boxes)
    out.coords[index], out.scores[index] = decode_to_image(codec, heatmaps, boxes, input_size)
    out.crop_boxes[index] = boxes


def skipped_summary(predictions: BoxPredictions) -> dict:
    """What could not be predicted, for metrics.json and the printed table."""
    status = np.asarray(predictions.status)
    first = next(iter(predictions.unreadable.items()), None)
    return {"images_unreadable": len(predictions.unreadable),
            "people_in_unreadable_images": int((status == UNREADABLE).sum()),
            "boxes_outside_image": int((status == BOX_OUTSIDE).sum()),
            "first_unreadable": None if first is None else first[1]}


# --- the detections protocol ---------------------------------------------------------------

def read_detections(path: str | Path) -> list[dict]:
    """A COCO detection results file (mmpose's bbox_file): a JSON list of {image_id,
    category_id, bbox [x, y, w, h], score}. One-line HgposeError naming the file and field."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise HgposeError(f"--boxes {path}: not found; give a COCO detection results file") from None
    except OSError as e:
        raise HgposeError(f"--boxes {path}: cannot be read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HgposeError(f"{path}: not valid JSON ({str(e).splitlines()[0]}); --boxes takes a COCO "
                          f"detection results file, a JSON list of {DETECTION_FIELDS}") from None
    if not isinstance(data, list):
        raise HgposeError(f"{path}: the top level is a JSON {type(data).__name__}, not a list; --boxes takes "
                          f"a COCO detection results file, a JSON list of {DETECTION_FIELDS}")
    for i, entry in enumerate(data):
        problem = _detection_problem(entry)
        if problem:
            raise HgposeError(f"{path}: entry {i} {problem}; each entry must be {DETECTION_FIELDS}")
    return data


def _detection_problem(entry) -> str | None:
    if not isinstance(entry, dict):
        return "is not a JSON object"
    for key in ("image_id", "category_id", "bbox", "score"):
        if key not in entry:
            return f"has no {key!r}"
    for key in ("image_id", "category_id"):
        if not isinstance(entry[key], int) or isinstance(entry[key], bool):
            return f"{key!r} is {entry[key]!r}, not a whole number"
    bbox = entry["bbox"]
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(_finite_number(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0):
        return f"'bbox' is {bbox!r}, not [x, y, w, h] with w, h >= 0"
    if not _finite_number(entry["score"]):
        return f"'score' is {entry['score']!r}, not a number"
    return None


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


PERSON = 1   # COCO's category id of a person


def detected_people(detections: list[dict], image_ids, coco, folder: Path, *, threshold: float,
                    path: str | Path = "--boxes") -> tuple[list[Person], dict]:
    """The person boxes (category 1) scoring at least `threshold` on the given images, and
    counts of what was left out. An error, saying what was found, when no box at all is on
    these images (the file is then most likely another split's or another dataset's), when
    none of them is a person, when a person box scores below 0 (the rescoring needs
    scores >= 0), or when none reaches the threshold: each would score AP "—" or nonsense."""
    image_ids = {int(i) for i in image_ids}
    on_split = [d for d in detections if d["image_id"] in image_ids]
    if detections and not on_split:
        raise HgposeError(f"{path}: none of its {len(detections):,d} boxes is on an image of this split "
                          f"(e.g. image_id {detections[0]['image_id']}); are they another split's detections?")
    persons = [d for d in on_split if d["category_id"] == PERSON]
    problem = _detections_problem(on_split, persons, threshold)
    if problem:
        raise HgposeError(f"{path}: {problem}")
    kept = [d for d in persons if d["score"] >= threshold]
    people = [Person(0, d["image_id"], folder / coco.imgs[d["image_id"]]["file_name"],
                     tuple(float(v) for v in d["bbox"]), float(d["score"])) for d in kept]
    counts = {"boxes_in_file": len(detections), "boxes_on_split_images": len(on_split),
              "person_boxes": len(persons), "boxes_above_threshold": len(kept)}
    return people, counts


def _detections_problem(on_split: list[dict], persons: list[dict], threshold: float) -> str | None:
    """What makes a detection file's boxes on the split unusable, in words, or None."""
    if on_split and not persons:
        counts = {}
        for d in on_split:
            counts[d["category_id"]] = counts.get(d["category_id"], 0) + 1
        found = ", ".join(f"{c} ({n:,d} boxes)" for c, n in sorted(counts.items(), key=lambda cn: -cn[1])[:3])
        hint = (" (YOLO-style class indices, where 0 is the person?)" if 0 in counts else "")
        return (f"none of its {len(on_split):,d} boxes on this split is a person: it has category_id {found}"
                f"{hint}; COCO numbers the person category {PERSON}: write category_id {PERSON} for person boxes")
    negative = [d["score"] for d in persons if d["score"] < 0]
    if negative:
        return (f"{len(negative):,d} of its {len(persons):,d} person boxes on this split score below 0 (lowest "
                f"{min(negative):g}); COCO takes any real score, but the detections protocol rescores each person "
                "as box score x joint score (HRNet, mmpose), which needs scores >= 0: map them into [0, 1] "
                "(e.g. a sigmoid of logits) and run again")
    if persons and max(d["score"] for d in persons) < threshold:
        return (f"none of its {len(persons):,d} person boxes on this split scores >= {threshold:g} (the highest: "
                f"{max(d['score'] for d in persons):g}); lower --box-score-threshold")
    return None


def rescore(scores: np.ndarray, box_scores: np.ndarray, joints: np.ndarray, confident: float) -> np.ndarray:
    """HRNet's and mmpose's person score for detected people: the box score times the mean
    score of the person's confident joints (score > `confident`); 0 with none confident.

    scores [N, 17], box_scores [N], joints bool [17] (only scored joints count)."""
    s = np.where(joints[None, :], scores, 0.0)
    sure = s > confident
    count = sure.sum(1)
    mean = np.where(count > 0, (s * sure).sum(1) / np.maximum(count, 1), 0.0)
    return box_scores * mean


def oks_nms(coords: np.ndarray, scores: np.ndarray, areas: np.ndarray, *, threshold: float = OKS_NMS_THRESHOLD,
            joints: np.ndarray | None = None) -> list[int]:
    """Greedy non-maximum suppression by object keypoint similarity, as HRNet's and
    mmpose's oks_nms (neither pycocotools nor torch ships one): keep the best-scoring
    person, drop every other whose OKS with it exceeds `threshold`, repeat.

    coords [N, J, 2], scores [N], areas [N] (the crop's area, HRNet's scale); joints: bool
    [J], the joints compared (default all). Returns the kept indices, best first.
    """
    joints = np.ones(coords.shape[1], bool) if joints is None else np.asarray(joints, bool)
    xy, variances = coords[:, joints], (2 * OKS_SIGMAS[joints]) ** 2
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        squared = ((xy[rest] - xy[best]) ** 2).sum(-1)                              # [R, J]
        scale = (areas[best] + areas[rest])[:, None] / 2 + np.spacing(1)
        oks = np.exp(-squared / variances / scale / 2).mean(-1)                     # COCO's OKS, no v
        order = rest[oks <= threshold]
    return keep


def detection_results(people: list[Person], predictions: BoxPredictions, joints: np.ndarray,
                      confident: float) -> tuple[list[dict], np.ndarray]:
    """COCO keypoint results of the people left after rescoring and per-image OKS NMS, and
    bool [N]: which people were kept."""
    from hgpose.evaluate.metrics import to_coco_results

    done = np.flatnonzero(predictions.predicted)
    box_scores = np.array([people[i].box_score for i in done], np.float64)
    person_scores = rescore(predictions.scores[done].astype(np.float64), box_scores, joints, confident)
    areas = predictions.crop_boxes[done, 2].astype(np.float64) ** 2
    image_of = np.array([people[i].image_id for i in done], np.int64)
    kept = np.zeros(len(people), bool)
    for image_id in np.unique(image_of):
        mine = np.flatnonzero(image_of == image_id)
        survivors = oks_nms(predictions.coords[done[mine]], person_scores[mine], areas[mine], joints=joints)
        kept[done[mine[survivors]]] = True
    chosen = kept[done]
    ids = np.stack([image_of[chosen], np.zeros(chosen.sum(), np.int64)], 1)
    results = to_coco_results(predictions.coords[done[chosen]], predictions.scores[done[chosen]], ids)
    for entry, score in zip(results, person_scores[chosen]):
        entry["score"] = round(float(score), 5)
    return results, kept


def score_detections(people: list[Person], predictions: BoxPredictions, coco, image_ids, *,
                     joints: np.ndarray, confident: float) -> tuple[dict, list[dict], list[dict]]:
    """(metrics, per-image rows, COCO results) of the detections protocol: COCO AP over
    every annotated person of the readable images of the split (an image without a box
    still counts: its people are misses)."""
    from hgpose.evaluate import metrics as std

    results, kept = detection_results(people, predictions, joints, confident)
    image_ids = sorted({int(i) for i in image_ids})
    unreadable = {p.image_id for p, s in zip(people, predictions.status) if s == UNREADABLE}
    evaluated = [i for i in image_ids if i not in unreadable]
    stats = std.coco_keypoint_ap(std.images_ground_truth(coco, evaluated, joints), results, image_ids=evaluated)
    boxes, survivors = {}, {}
    for person, keep in zip(people, kept):
        boxes[person.image_id] = boxes.get(person.image_id, 0) + 1
        survivors[person.image_id] = survivors.get(person.image_id, 0) + int(keep)
    rows = []
    for image_id in image_ids:
        annotated = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        rows.append({
            "image_id": image_id, "status": "unreadable" if image_id in unreadable else "evaluated",
            "people_annotated": len(annotated),
            "people_with_keypoints": sum(1 for a in annotated if a.get("num_keypoints", 0) > 0),
            "boxes": boxes.get(image_id, 0), "kept_after_nms": survivors.get(image_id, 0),
        })
    metrics = {"coco": stats, "n_images_evaluated": len(evaluated), "kept_after_nms": int(kept.sum())}
    return metrics, rows, results
