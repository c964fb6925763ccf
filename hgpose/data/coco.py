"""Reading COCO 2017 person-keypoint annotations, with errors a user can act on.

pycocotools does the indexing; this module first checks that the file is complete and
well-formed, because pycocotools itself fails on a bad file with a bare assertion or a
KeyError deep inside.
"""

from __future__ import annotations

import contextlib
import hashlib
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


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise HgposeError(f"{path}: {what}; the file is malformed or incomplete — download it again")


def load_coco(path: str | Path) -> COCO:
    """Load and validate a COCO keypoints annotation file; index it with pycocotools."""
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
    image_ids = set()
    for i, img in enumerate(data["images"]):
        for key in ("id", "file_name", "width", "height"):
            _require(isinstance(img, dict) and key in img, path, f"images[{i}] has no '{key}'")
        image_ids.add(img["id"])
    for i, ann in enumerate(data["annotations"]):
        for key in ("id", "image_id", "category_id", "bbox"):
            _require(isinstance(ann, dict) and key in ann, path, f"annotations[{i}] (id {ann.get('id') if isinstance(ann, dict) else '?'}) has no '{key}'")
        _require(ann["image_id"] in image_ids, path, f"annotations[{i}] (id {ann['id']}) refers to image_id {ann['image_id']}, which is not in 'images'")
        _require(len(ann["bbox"]) == 4, path, f"annotations[{i}] (id {ann['id']}) bbox has {len(ann['bbox'])} values, expected 4")
        kps = ann.get("keypoints")
        if kps is not None:
            _require(len(kps) == 51, path, f"annotations[{i}] (id {ann['id']}) has {len(kps)} keypoint values, expected 51 (17 × x,y,v)")
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
