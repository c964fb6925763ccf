"""The datasets `hgpose prepare` reads, each mapped into COCO-17 people to crop.

A *source* is one dataset folder given on the command line: COCO 2017 (its own layout) or
LSP/LSPET (`joints.mat` + `images/`). Its *parts* are its image lists as the dataset ships
them (COCO: train2017 and val2017; LSP: one list, "all"). How a source's crops are split
into train/val/test is decided by its format (see `plan_source` in prepare.py):

    coco  val = every crop of val2017; test = `test_size` crops drawn from train2017;
          train = the rest of train2017 (SPEC section 1)
    lsp   val and test = seeded draws of `val_size` and `test_size` crops, never overlapping;
          train = the rest

Every source records the COCO-17 joints it annotates: a joint it lacks is *absent* (never
in a loss or a metric), not "not labelled".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hgpose.data import coco as coco_io
from hgpose.data import lsp
from hgpose.data.crop import clean_keypoints
from hgpose.errors import HgposeError
from hgpose.io import file_sha256, write_json
from hgpose.skeleton import JOINTS

FORMATS = ("coco", "lsp")
ALL_PARTS = "all"  # the single image list of a source without its own splits


@dataclass
class Part:
    """One image list of a source, with its people, before any pixel is decoded."""

    name: str                            # "train2017" | "val2017" | "all"
    tasks: list[coco_io.ImageTask]
    counts: dict[str, int]               # people seen / skipped from the annotations alone


@dataclass
class Source:
    name: str                            # unique within a store (the folder's name)
    format: str                          # "coco" | "lsp"
    path: Path
    joints: tuple[str, ...]              # the COCO-17 joints this source annotates
    parts: list[Part]
    files: dict[str, dict]               # provenance: what was read, with its sha256
    lsp_keypoints: np.ndarray | None = field(default=None, repr=False)  # lsp: [N, 17, 3]

    def identity(self) -> dict:
        """What makes two runs read the same data (for resume and the finished-store check)."""
        return {"name": self.name, "format": self.format, "path": str(self.path.resolve()),
                "joints": list(self.joints), "files": self.files}


def parse_spec(text: str) -> tuple[str | None, Path]:
    """"coco:PATH" | "lsp:PATH" | "PATH" (format detected) -> (format or None, path)."""
    head, sep, rest = text.partition(":")
    if sep and head in FORMATS:
        return head, Path(rest)
    return None, Path(text)


def detect_format(path: Path) -> str:
    if not path.is_dir():
        raise HgposeError(f"{path}: not a folder — give a COCO root or an LSP folder "
                          "(optionally as coco:PATH or lsp:PATH)")
    if (path / "annotations").is_dir() and any((path / "annotations").glob("person_keypoints_*.json")):
        return "coco"
    if lsp.looks_like_lsp(path):
        return "lsp"
    raise HgposeError(
        f"{path}: neither a COCO root (annotations/person_keypoints_*.json) nor an LSP folder "
        "(joints.mat + images/); point at one of those, or name the format as coco:PATH / lsp:PATH")


def read_sources(specs: list[str | Path]) -> list[Source]:
    """Every source of a prepare command, validated before anything is written."""
    if not specs:
        raise HgposeError("give at least one SOURCE folder (a COCO root or an LSP folder)")
    sources, names = [], set()
    for spec in specs:
        fmt, path = parse_spec(str(spec))
        fmt = fmt or detect_format(path)
        if not path.is_dir():
            raise HgposeError(f"{path}: not a folder — give the {fmt} dataset's root folder")
        name = path.resolve().name or fmt
        base, k = name, 2
        while name in names:  # two folders of the same name: keep both apart
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        sources.append(read_coco(name, path) if fmt == "coco" else read_lsp(name, path))
    return sources


def read_coco(name: str, root: Path) -> Source:
    parts, files = [], {}
    for part in coco_io.SOURCES:
        path = coco_io.annotation_path(root, part)
        coco = coco_io.load_coco(path)
        if not (root / part).is_dir():
            raise HgposeError(f"{root / part}: not found — COCO_ROOT must hold the {part} images")
        files[part] = {"annotations": str(path.resolve()), "sha256": file_sha256(path)}
        tasks, counts = coco_io.person_tasks(coco, root / part)
        parts.append(Part(part, tasks, counts))
    return Source(name, "coco", root, tuple(JOINTS), parts, files)


def read_lsp(name: str, root: Path) -> Source:
    tasks, counts, keypoints = lsp.lsp_tasks(root)
    mat = root / lsp.ANNOTATION_FILE
    files = {"joints": {"path": str(mat.resolve()), "sha256": file_sha256(mat)}}
    return Source(name, "lsp", root, lsp.JOINTS, [Part(ALL_PARTS, tasks, counts)], files, keypoints)


# ----------------------------------------------------------------------------- annotations
def annotation_files(source: Source, out_dir: Path) -> dict[str, str]:
    """split -> the COCO-format annotation file `evaluate` scores that split against.

    COCO: its own files (test is drawn from train2017). LSP: a file derived by prepare,
    OUT_DIR/annotations/<name>.json (see `write_lsp_annotations`).
    """
    if source.format == "coco":
        return {"train": source.files["train2017"]["annotations"],
                "val": source.files["val2017"]["annotations"],
                "test": source.files["train2017"]["annotations"]}
    path = str((out_dir / "annotations" / f"{source.name}.json").resolve())
    return {split: path for split in ("train", "val", "test")}


def write_lsp_annotations(source: Source, path: Path) -> None:
    """LSP people as a COCO keypoints file, so evaluate scores them like COCO people.

    LSP has no person boxes: each person's box is the extent of its labelled keypoints
    inside the image (area = box area, the OKS scale); joints LSP lacks are v = 0, which
    OKS ignores.
    """
    images, annotations = [], []
    for task, kps in zip(source.parts[0].tasks, source.lsp_keypoints):
        images.append({"id": task.image_id, "file_name": Path(task.path).name,
                       "width": task.width, "height": task.height})
        kept, _ = clean_keypoints(kps, task.width, task.height)  # prepare's own rule
        inside = kept[:, 2] > 0
        if inside.any():
            (x0, y0), (x1, y1) = kept[inside, :2].min(0), kept[inside, :2].max(0)
        else:
            x0 = y0 = x1 = y1 = 0.0
        annotations.append({
            "id": task.ann_ids[0], "image_id": task.image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [round(float(v), 3) for v in (x0, y0, x1 - x0, y1 - y0)],
            "area": round(float((x1 - x0) * (y1 - y0)), 3),
            "num_keypoints": int(inside.sum()),
            "keypoints": [round(float(v), 3) for v in kept.ravel()],
        })
    write_json(path, {
        "info": {"description": f"{source.name} (LSP format) in COCO-17, written by hgpose prepare"},
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(JOINTS), "skeleton": []}],
    })
