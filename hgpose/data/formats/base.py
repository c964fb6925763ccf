"""What every dataset format provides, and the records `hgpose prepare` reads a dataset into.

A *source* is one dataset folder given on the command line. Its *parts* are its image lists
as the dataset ships them (COCO: train2017 and val2017; LSP: one list, "all"). A format turns
a source folder into people in COCO-17 (`Source`, made of `Part`s of `ImageTask`s), and owns
the rules that depend on the dataset: which part each split comes from, its default split
sizes, the annotation file each split is scored against and where its original images are.
Prepare, evaluate and the store ask the format for these; none of them names a format.

Every source records the COCO-17 joints it annotates: a joint it lacks is *absent* (never
in a loss or a metric), not "not labelled".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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


@dataclass
class Part:
    """One image list of a source, with its people, before any pixel is decoded."""

    name: str                            # "train2017" | "val2017" | "all"
    tasks: list[ImageTask]
    counts: dict[str, int]               # people seen / skipped from the annotations alone


@dataclass
class Source:
    """One dataset folder of a prepare command, read into COCO-17 people."""

    name: str                            # unique within a store (the folder's name)
    format: str                          # its key in FORMATS
    path: Path
    joints: tuple[str, ...]              # the COCO-17 joints this source annotates
    parts: list[Part]
    files: dict[str, dict]               # provenance: what was read, with its sha256
    # A dataset without a COCO-format annotation file: its people as a COCO keypoints dict,
    # which prepare writes to OUT_DIR/annotations/<name>.json for evaluate to score against.
    derived_annotations: dict | None = field(default=None, repr=False)

    def identity(self) -> dict:
        """What makes two runs read the same data (for resume and the finished-store check)."""
        return {"name": self.name, "format": self.format, "path": str(self.path.resolve()),
                "joints": list(self.joints), "files": self.files}


def derived_annotation_path(out_dir: Path, name: str) -> Path:
    """Where prepare writes a source's `derived_annotations`: OUT_DIR/annotations/<name>.json."""
    return out_dir / "annotations" / f"{name}.json"


class DatasetFormat:
    """A dataset layout hgpose reads. One instance per format lives in `FORMATS`.

    Attributes a format sets:
        name               its key in FORMATS, the SOURCE prefix (`name:PATH`) and the
                           "format" recorded in the manifest
        folder, layout     how the error messages name a folder of this format and its
                           files ("a COCO root", "annotations/person_keypoints_*.json")
        parts              its image lists, in the order their crops enter a split
        joints             the COCO-17 joints it annotates (the others are absent)
        split_parts        THE split rule: split -> the part its crops come from, for
                           every split of the store
        default_test_size  a count or a fraction, used when --test-size is not given
        default_val_size   the same for --val-size; None when val is a part of its own,
                           so --val-size does not apply
        rule               the split rule in a few words, for prepare's summary
    Methods every format implements: `looks_like`, `read`, `plan`, `image_folder`;
    `annotation_files` has a default for formats that derive their annotation file.
    """

    name: str
    folder: str
    layout: str
    parts: tuple[str, ...]
    joints: tuple[str, ...]
    split_parts: dict[str, str]
    default_test_size: int | float
    default_val_size: int | float | None
    rule: str

    def looks_like(self, path: Path) -> bool:
        """Whether the folder has this format's layout (used when a SOURCE has no prefix)."""
        raise NotImplementedError

    def read(self, name: str, path: Path) -> Source:
        """Read and validate the folder into COCO-17 people; nothing is written."""
        raise NotImplementedError

    def plan(self, sizes: dict[str, int], test_size: int | float, val_size: int | float | None,
             seed: int, name: str) -> dict[str, tuple[str, np.ndarray]]:
        """split -> (part, indices of that part's crops in the split, sorted) for one source.

        sizes: part -> its number of crops; test_size / val_size: the source's own (the
        defaults already applied); name: the source's, for error messages."""
        raise NotImplementedError

    def image_folder(self, root: Path, split: str) -> Path:
        """The folder of the original images of a split's people, under the source's root."""
        raise NotImplementedError

    def annotation_files(self, source: Source, out_dir: Path) -> dict[str, str]:
        """split -> the COCO-format annotation file evaluate scores that split against.

        By default the file prepare derives from `source.derived_annotations`, the same for
        every split (a split's people are found in it by id)."""
        path = str(derived_annotation_path(out_dir, source.name).resolve())
        return {split: path for split in self.split_parts}
