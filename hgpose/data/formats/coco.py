"""The COCO 2017 format: reading person-keypoint annotations, with errors a user can act on.

Layout, as COCO 2017 ships it (and as `hgpose synth` writes it):

    ROOT/annotations/person_keypoints_{train2017,val2017}.json
    ROOT/train2017/*.jpg, ROOT/val2017/*.jpg

pycocotools does the indexing; this module first checks that the file is complete and
well-formed, because pycocotools itself fails on a bad file with a bare assertion or a
KeyError deep inside.

Split rule (SPEC section 1, `CocoFormat.split_parts`): val = every crop of val2017;
test = `test_size` crops drawn from train2017; train = the rest of train2017.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from hgpose import thesis
from hgpose.data.formats.base import DatasetFormat, ImageTask, Part, Source
from hgpose.data.splits import draw_test
from hgpose.errors import HgposeError
from hgpose.io import file_sha256
from hgpose.skeleton import JOINTS

PARTS = ("train2017", "val2017")  # its image lists, as COCO 2017 ships them


def annotation_path(coco_root: str | Path, part: str) -> Path:
    return Path(coco_root) / "annotations" / f"person_keypoints_{part}.json"


def _require(cond: bool, path: Path, what: str, advice: str = "the file is malformed or incomplete — download it again") -> None:
    if not cond:
        raise HgposeError(f"{path}: {what}; {advice}")


FIX = "fix that entry, or download the file again"  # advice for a wrong value in one entry
INT64_MAX = 2**63 - 1  # the store keeps image and annotation ids as int64 (ids.npy)
MAX_SIDE = 2**31 - 1   # no image format holds more pixels in a row (PNG's and TIFF's limit)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_id(path: Path, where: str, key: str, value) -> None:
    """An image or annotation id: a whole number the store's int64 ids.npy can hold. JSON
    allows any size, and numpy would raise OverflowError only when the crops are written."""
    _require(_is_int(value), path, f"{where} {key} {value!r} is not a whole number", FIX)
    _require(0 <= value <= INT64_MAX, path, f"{where} {key} {value} is outside 0 .. 2^63 - 1 "
             "(hgpose stores ids as 64-bit integers)", FIX)


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
    _check_id(path, f"images[{i}]", "id", img["id"])
    _require(isinstance(img["file_name"], str) and img["file_name"], path,
             f"images[{i}] (id {img['id']}) file_name {img['file_name']!r} is not a file name", FIX)
    for key in ("width", "height"):
        _require(_is_int(img[key]) and 0 < img[key] <= MAX_SIDE, path,
                 f"images[{i}] (id {img['id']}) {key} {img[key]!r} is not a whole number from 1 to "
                 f"{MAX_SIDE:,d}", FIX)


def _check_annotation(path: Path, i: int, ann, image_ids: set) -> None:
    for key in ("id", "image_id", "category_id", "bbox"):
        _require(isinstance(ann, dict) and key in ann, path, f"annotations[{i}] (id {ann.get('id') if isinstance(ann, dict) else '?'}) has no '{key}'")
    where = f"annotations[{i}] (id {ann['id']!r})"
    _check_id(path, where, "id", ann["id"])
    for key in ("image_id", "category_id"):  # image_id must name an image, whose id was checked
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
        # the flags as the file gives them: 2.0000001 is no 2, and must not be printed as one
        bad_v = list(dict.fromkeys(repr(v) for v in kps[2::3] if v not in (0, 1, 2)))
        _require(not bad_v, path, f"{where} has visibility flag(s) {', '.join(bad_v)}; "
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
    if path.is_dir():
        raise HgposeError(f"{path}: is a folder, not an annotation file — COCO_ROOT must hold "
                          "annotations/person_keypoints_{train,val}2017.json")
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


class CocoFormat(DatasetFormat):
    """COCO 2017: its own person-keypoint files, all 17 joints, val2017 as the val split."""

    name = "coco"
    folder = "a COCO root"
    layout = "annotations/person_keypoints_*.json"
    parts = PARTS
    joints = tuple(JOINTS)
    # The test split is drawn from train2017 (val2017 is the val split, as in the thesis).
    split_parts = {"train": "train2017", "val": "val2017", "test": "train2017"}
    default_test_size = thesis.TEST_CROPS   # the thesis's count (SPEC section 1)
    default_val_size = None                 # val2017: --val-size does not apply
    rule = "val = val2017, test drawn from train2017"

    def looks_like(self, path: Path) -> bool:
        return (path / "annotations").is_dir() and any((path / "annotations").glob("person_keypoints_*.json"))

    def read(self, name: str, path: Path) -> Source:
        parts, files = [], {}
        for part in self.parts:
            annotations = annotation_path(path, part)
            coco = load_coco(annotations)
            if not (path / part).is_dir():
                what = "not a folder" if (path / part).exists() else "not found"
                raise HgposeError(f"{path / part}: {what} — COCO_ROOT must hold the {part} images in a folder")
            files[part] = {"annotations": str(annotations.resolve()), "sha256": file_sha256(annotations)}
            tasks, counts = person_tasks(coco, path / part)
            parts.append(Part(part, tasks, counts))
        return Source(name, self.name, path, self.joints, parts, files)

    def plan(self, sizes: dict[str, int], test_size, val_size, seed: int, name: str) -> dict:
        # the test crops are drawn from the train part, and train keeps the rest of it
        train, val = self.split_parts["train"], self.split_parts["val"]
        test_rows = draw_test(sizes[train], test_size, seed, what=f"{train} crops")
        rows = {"train": np.setdiff1d(np.arange(sizes[train]), test_rows),
                "val": np.arange(sizes[val]), "test": test_rows}
        return {split: (self.split_parts[split], rows[split]) for split in rows}

    def annotation_files(self, source: Source, out_dir: Path) -> dict[str, str]:
        """COCO's own files: each split is scored against the file of its part."""
        return {split: source.files[part]["annotations"] for split, part in self.split_parts.items()}

    def image_folder(self, root: Path, split: str) -> Path:
        return root / self.split_parts[split]
