"""`hgpose predict --boxes FILE`: the person boxes of each image, from a file.

Three formats, told apart by the file's suffix (.json, .csv) or else by its first character:

    COCO detection results   [{"image_id": 252219, "category_id": 1, "bbox": [x, y, w, h],
                               "score": 0.98}, ...]   (a detector's output, mmpose's
                              bbox_file); "file_name" may stand for or beside image_id;
                              category_id and score may be left out; boxes of another
                              category than 1 (person) are left out
    a JSON object            {"000000252219.jpg": [[x, y, w, h], ...], ...}
    CSV                      image,x,y,w,h[,score] rows (a header row "image,x,y,w,h" may
                              come first; an empty score is none)

Boxes are in the image's pixels as displayed (EXIF orientation applied), COCO's order: the
top-left corner, then width and height, all finite, w > 0 and h > 0. An image is named by its
file name (or its path as given) or, in a COCO file, by image_id, the COCO id its file name
carries (000000252219.jpg -> 252219). Every value is checked as the file is read: anything
malformed is one line naming the file, the entry (or line) and the field. Reading costs one
pass over the file, in memory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from hgpose.errors import HgposeError

FORMATS = ('a COCO detection results file (a JSON list of {"image_id" or "file_name", "category_id", '
           '"bbox": [x, y, w, h], "score"}), a JSON object {"image file name": [[x, y, w, h], ...]} '
           "or a CSV of image,x,y,w,h[,score] rows")
PERSON = 1   # COCO's category id of a person


@dataclass(frozen=True)
class PersonBox:
    """One box of a boxes file: which image it is on, where, and where it is in the file."""

    image: int | str                      # a COCO image id, or an image's file name (or path)
    bbox: tuple[float, float, float, float]
    score: float | None                   # the detector's score, when the file gives one
    where: str                            # "entry 3", "line 5", "'a.jpg' box 2": for messages


def read_boxes(path: str | Path) -> list[PersonBox]:
    """The person boxes of a boxes file (module doc), in file order; HgposeError naming the
    file and the entry for anything malformed, and for a file without any person box."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise HgposeError(f"--boxes {path}: not found; give {FORMATS}") from None
    except IsADirectoryError:
        raise HgposeError(f"--boxes {path}: is a folder; give a file: {FORMATS}") from None
    except OSError as e:
        raise HgposeError(f"--boxes {path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise HgposeError(f"--boxes {path}: not UTF-8 text (byte {e.start}); give {FORMATS}") from None
    boxes = _read_csv(path, text) if _is_csv(path, text) else _read_json(path, text)
    if not boxes:
        raise HgposeError(f"--boxes {path}: holds no person box; give {FORMATS}")
    return boxes


def _is_csv(path: Path, text: str) -> bool:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".json"):
        return suffix == ".csv"
    return text.lstrip()[:1] not in ("[", "{")


def _read_json(path: Path, text: str) -> list[PersonBox]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise HgposeError(f"--boxes {path}: not valid JSON ({str(e).splitlines()[0]}); give {FORMATS}") from None
    if isinstance(data, list):
        boxes = [box for i, entry in enumerate(data) if (box := _detection(path, i, entry)) is not None]
        if data and not boxes:
            raise HgposeError(f"--boxes {path}: {_no_person(data)}")
        return boxes
    if isinstance(data, dict):
        return [box for name, boxes in data.items() for box in _named_boxes(path, name, boxes)]
    raise HgposeError(f"--boxes {path}: the top level is a JSON {type(data).__name__}; give {FORMATS}")


# --- COCO detection results ----------------------------------------------------------------

def _detection(path: Path, i: int, entry) -> PersonBox | None:
    """Entry i of a COCO detection results list: its person box, or None for another category."""
    where = f"entry {i}"
    if not isinstance(entry, dict):
        raise _entry_error(path, where, "is not a JSON object")
    image = _detection_image(path, where, entry)
    category = entry.get("category_id", PERSON)
    if not _whole_number(category):
        raise _entry_error(path, where, f"'category_id' is {category!r}, not a whole number")
    if "bbox" not in entry:
        raise _entry_error(path, where, "has no 'bbox'")
    bbox = _bbox(path, where, entry["bbox"], "'bbox'")
    score = entry.get("score")
    if score is not None and not _finite_number(score):
        raise _entry_error(path, where, f"'score' is {score!r}, not a number")
    if category != PERSON:
        return None
    return PersonBox(image, bbox, None if score is None else float(score), where)


def _no_person(entries: list[dict]) -> str:
    """Why a detection list without a person box holds none, in words (its categories)."""
    counts: dict[int, int] = {}
    for entry in entries:
        counts[entry["category_id"]] = counts.get(entry["category_id"], 0) + 1
    found = ", ".join(f"{c} ({n:,d} boxes)" for c, n in sorted(counts.items(), key=lambda cn: -cn[1])[:3])
    hint = " (YOLO-style class indices, where 0 is the person?)" if 0 in counts else ""
    return (f"none of its {len(entries):,d} boxes is a person: it has category_id {found}{hint}; COCO numbers "
            f"the person category {PERSON}: write category_id {PERSON} for person boxes, or leave it out")


def _detection_image(path: Path, where: str, entry: dict) -> int | str:
    """The image an entry names: its file_name when it has one, else its image_id."""
    if "file_name" in entry:
        name = entry["file_name"]
        if not isinstance(name, str) or not name.strip():
            raise _entry_error(path, where, f"'file_name' is {name!r}, not an image file name")
        return name
    if "image_id" not in entry:
        raise _entry_error(path, where, "has neither 'image_id' nor 'file_name'")
    image_id = entry["image_id"]
    if not _whole_number(image_id) or image_id < 0:
        raise _entry_error(path, where, f"'image_id' is {image_id!r}, not a COCO image id (a whole number >= 0)")
    return image_id


def _entry_error(path: Path, where: str, problem: str) -> HgposeError:
    return HgposeError(f"--boxes {path}: {where} {problem}; give {FORMATS}")


# --- {"image file name": [[x, y, w, h], ...]} ----------------------------------------------

def _named_boxes(path: Path, name: str, boxes) -> list[PersonBox]:
    if not name.strip():
        raise _entry_error(path, f"key {name!r}", "is not an image file name")
    if not isinstance(boxes, list):
        raise _entry_error(path, f"{name!r}", f"is {type(boxes).__name__} {_short(boxes)}, not a list of "
                                              "[x, y, w, h] boxes")
    return [PersonBox(name, _bbox(path, f"{name!r} box {k}", box, "the box"), None, f"{name!r} box {k}")
            for k, box in enumerate(boxes)]


# --- CSV: image,x,y,w,h[,score] -------------------------------------------------------------

def _read_csv(path: Path, text: str) -> list[PersonBox]:
    boxes = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue                                     # a blank line
        if not boxes and number == _first_line(text) and _is_header(cells):
            continue
        boxes.append(_csv_box(path, number, cells))
    return boxes


def _first_line(text: str) -> int:
    """The number of the first line that is not blank (a header can only be there)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            return number
    return 1


def _is_header(cells: list[str]) -> bool:
    return len(cells) >= 5 and cells[0].lower() in ("image", "file", "file_name", "filename") \
        and not _parses(cells[1])


def _csv_box(path: Path, number: int, cells: list[str]) -> PersonBox:
    where = f"line {number}"
    if len(cells) not in (5, 6):
        raise _entry_error(path, where, f"has {len(cells)} fields, not image,x,y,w,h[,score]")
    if not cells[0]:
        raise _entry_error(path, where, "has no image name")
    if len(cells) == 6 and not cells[5]:
        cells = cells[:5]                                # an empty score: none given
    values = []
    for name, cell in zip(("x", "y", "w", "h", "score"), cells[1:]):
        if not _parses(cell):
            raise _entry_error(path, where, f"{name} is {cell!r}, not a finite number")
        values.append(float(cell))
    bbox = _bbox(path, where, values[:4], "the box")
    return PersonBox(cells[0], bbox, values[4] if len(values) == 5 else None, where)


def _parses(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


# --- values ----------------------------------------------------------------------------------

def _bbox(path: Path, where: str, value, what: str) -> tuple[float, float, float, float]:
    if (not isinstance(value, list) or len(value) != 4 or not all(_finite_number(v) for v in value)
            or value[2] <= 0 or value[3] <= 0):
        raise _entry_error(path, where, f"{what} is {_short(value)}, not [x, y, w, h] (finite numbers, "
                                        "w > 0 and h > 0)")
    return tuple(float(v) for v in value)


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, tuple) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- which boxes are on which image ----------------------------------------------------------

def coco_image_id(path: Path) -> int | None:
    """COCO names its images by id (000000391895.jpg -> 391895); other names have none."""
    return int(path.stem) if re.fullmatch(r"\d{1,18}", path.stem) else None


def boxes_per_image(boxes: list[PersonBox], paths: list[Path], source: str | Path) -> dict[Path, list[PersonBox]]:
    """The boxes of each given image (an image the file does not name has none). An
    HgposeError when the file names none of the images (most likely another folder's
    boxes) or names one ambiguously (two images given have that name)."""
    index = _ImageIndex(paths)
    found: dict[Path, list[PersonBox]] = {p: [] for p in paths}
    for box in boxes:
        matches = index.lookup(box.image)
        if len(matches) > 1:
            names = ", ".join(str(p) for p in matches[:3])
            raise HgposeError(f"--boxes {source}: {box.where} names {box.image!r}, which {len(matches)} of the "
                              f"images given match ({names}); name each by its path, or predict them in "
                              "separate calls")
        if matches:
            found[matches[0]].append(box)
    if not any(found.values()):
        example = ", ".join(repr(b.image) for b in boxes[:2])
        given = ", ".join(p.name for p in paths[:2]) + (", ..." if len(paths) > 2 else "")
        raise HgposeError(f"--boxes {source}: none of its {len(boxes):,d} person boxes is on an image given "
                          f"(it names {example}; the images: {given}); give the images it names, or their "
                          "boxes file")
    return found


class _ImageIndex:
    """The given images by path, by file name and by COCO id, to match a box's image to."""

    def __init__(self, paths: list[Path]):
        self.by_path, self.by_name, self.by_id = {}, {}, {}
        for p in paths:
            self.by_path[_resolved(p)] = p
            self.by_name.setdefault(p.name, []).append(p)
            if coco_image_id(p) is not None:
                self.by_id.setdefault(coco_image_id(p), []).append(p)

    def lookup(self, image: int | str) -> list[Path]:
        if isinstance(image, int):
            return self.by_id.get(image, [])
        exact = self.by_path.get(_resolved(Path(image)))
        return [exact] if exact is not None else self.by_name.get(Path(image).name, [])


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):
        return path
