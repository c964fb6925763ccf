"""Reading COCO 2017 person-keypoint annotations, with errors a user can act on.

pycocotools does the indexing; this module first checks that the file is complete and
well-formed, because pycocotools itself fails on a bad file with a bare assertion or a
KeyError deep inside.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from hgpose.errors import HgposeError

SOURCES = ("train2017", "val2017")


def annotation_path(coco_root: str | Path, source: str) -> Path:
    return Path(coco_root) / "annotations" / f"person_keypoints_{source}.json"


def _require(cond: bool, path: Path, what: str, advice: str = "the file is malformed or incomplete — download it again") -> None:
    if not cond:
        raise HgposeError(f"{path}: {what}; {advice}")


FIX = "fix that entry, or download the file again"  # advice for a wrong value in one entry


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(values, n: int) -> np.ndarray | None:
    """`values` as float64 [n] when it is a list of n finite JSON numbers, else None."""
    if not isinstance(values, list) or len(values) != n:
        return None
    try:
        array = np.array(values)
    except (ValueError, TypeError):  # nested lists of different lengths
        return None
    if array.ndim != 1 or array.dtype.kind not in "iuf" or not np.isfinite(array).all():  # strings, null, NaN, inf, bool
        return None
    return array.astype(np.float64)


def _check_image(path: Path, i: int, img) -> None:
    for key in ("id", "file_name", "width", "height"):
        _require(isinstance(img, dict) and key in img, path, f"images[{i}] has no '{key}'")
    _require(_is_int(img["id"]), path, f"images[{i}] id {img['id']!r} is not a whole number", FIX)
    _require(isinstance(img["file_name"], str) and img["file_name"], path,
             f"images[{i}] (id {img['id']}) file_name {img['file_name']!r} is not a file name", FIX)
    for key in ("width", "height"):
        _require(_is_int(img[key]) and img[key] > 0, path,
                 f"images[{i}] (id {img['id']}) {key} {img[key]!r} is not a whole number >= 1", FIX)


def _check_annotation(path: Path, i: int, ann, image_ids: set) -> None:
    for key in ("id", "image_id", "category_id", "bbox"):
        _require(isinstance(ann, dict) and key in ann, path, f"annotations[{i}] (id {ann.get('id') if isinstance(ann, dict) else '?'}) has no '{key}'")
    where = f"annotations[{i}] (id {ann['id']!r})"
    for key in ("id", "image_id", "category_id"):
        _require(_is_int(ann[key]), path, f"{where} {key} {ann[key]!r} is not a whole number", FIX)
    _require(ann["image_id"] in image_ids, path, f"{where} refers to image_id {ann['image_id']}, which is not in 'images'")
    bbox = ann["bbox"]
    _require(not isinstance(bbox, list) or len(bbox) == 4, path, f"{where} bbox has {len(bbox) if isinstance(bbox, list) else 0} values, expected 4")
    box = _numbers(bbox, 4)
    _require(box is not None and box[2] >= 0 and box[3] >= 0, path,
             f"{where} bbox {bbox!r} is not 4 finite numbers x, y, w, h with w, h >= 0", FIX)
    _require(_is_int(ann.get("iscrowd", 0)) or isinstance(ann.get("iscrowd"), bool), path,
             f"{where} iscrowd {ann.get('iscrowd')!r} is not 0 or 1", FIX)
    kps = ann.get("keypoints")
    if kps is not None:
        _require(isinstance(kps, list), path, f"{where} keypoints {kps!r} is not a list", FIX)
        _require(len(kps) == 51, path, f"{where} has {len(kps)} keypoint values, expected 51 (17 × x,y,v)")
        values = _numbers(kps, 51)
        _require(values is not None, path, f"{where} keypoints are not 51 finite numbers (a string, null, NaN or inf among them)", FIX)
        bad_v = sorted(set(values[2::3].tolist()) - {0.0, 1.0, 2.0})
        _require(not bad_v, path, f"{where} has visibility flag(s) {', '.join(f'{v:g}' for v in bad_v)}; "
                 "COCO allows v = 0 (not labelled), 1 (occluded), 2 (visible)", FIX)


def _first_duplicate(ids: list) -> object | None:
    seen = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None


def load_coco(path: str | Path) -> COCO:
    """Load and validate a COCO keypoints annotation file; index it with pycocotools.

    Besides structure, every value is checked for its JSON type (a string where a number
    belongs would fail deep inside numpy or pycocotools) and for duplicate ids: pycocotools
    indexes images by id, so a second image with the same id would silently replace the
    first (crops cut from the wrong picture), and a repeated annotation would put the same
    person into two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise HgposeError(
            f"{path}: not found — COCO_ROOT must hold annotations/person_keypoints_{{train,val}}2017.json"
        )
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HgposeError(f"{path}: not valid JSON ({e}); the file is truncated or corrupt — download it again") from e
    _require(isinstance(data, dict), path, "top level is not a JSON object")
    for key in ("images", "annotations", "categories"):
        _require(isinstance(data.get(key), list), path, f"missing list '{key}'")
    for i, img in enumerate(data["images"]):
        _check_image(path, i, img)
    image_ids = [img["id"] for img in data["images"]]
    duplicate = _first_duplicate(image_ids)
    _require(duplicate is None, path, f"image id {duplicate} appears more than once in 'images'",
             "give every image its own id")
    image_ids = set(image_ids)
    for i, ann in enumerate(data["annotations"]):
        _check_annotation(path, i, ann, image_ids)
    duplicate = _first_duplicate([ann["id"] for ann in data["annotations"]])
    _require(duplicate is None, path, f"annotation id {duplicate} appears more than once in 'annotations'",
             "give every annotation its own id (a person listed twice would land in two splits)")
    _require(all(isinstance(c, dict) and _is_int(c.get("id")) for c in data["categories"]), path,
             "a category has no whole-number 'id'", FIX)
    _require(any(c.get("name") == "person" for c in data["categories"]), path, "no 'person' category")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


@dataclass
class ImageTask:
    """One image and the people to crop from it: what a worker process receives."""

    path: str
    width: int
    height: int
    image_id: int
    ann_ids: list[int] = field(default_factory=list)
    bboxes: list[list[float]] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)  # each [17,3] image coords
    # Points the crop rule centres and sizes the square on, per person, when they are not
    # the keypoints themselves (LSP: all 14 joints, head top and neck included, so the crop
    # holds the head although those two are not COCO joints). Empty: the keypoints.
    extent: list[np.ndarray] = field(default_factory=list)


def person_tasks(coco: COCO, image_dir: Path) -> tuple[list[ImageTask], dict[str, int]]:
    """Images with at least one usable person, in image_id order (annotations in id order).

    Returns the tasks and counts of people seen/skipped before any image is opened.
    """
    person_cat = [c["id"] for c in coco.dataset["categories"] if c.get("name") == "person"]
    counts = {"people": 0, "crowd": 0, "no_keypoints": 0}
    tasks = []
    for image_id in sorted(coco.imgs):
        anns = sorted(
            (a for a in coco.imgToAnns.get(image_id, []) if a["category_id"] in person_cat),
            key=lambda a: a["id"],
        )
        info = coco.imgs[image_id]
        task = ImageTask(str(image_dir / info["file_name"]), int(info["width"]), int(info["height"]), int(image_id))
        for ann in anns:
            counts["people"] += 1
            if ann.get("iscrowd", 0):
                counts["crowd"] += 1
                continue
            kps = np.asarray(ann.get("keypoints") or [0] * 51, dtype=np.float64).reshape(17, 3)
            if not (kps[:, 2] > 0).any():
                counts["no_keypoints"] += 1
                continue
            task.ann_ids.append(int(ann["id"]))
            task.bboxes.append([float(v) for v in ann["bbox"]])
            task.keypoints.append(kps)
        if task.ann_ids:
            tasks.append(task)
    return tasks, counts
