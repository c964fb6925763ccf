"""The dataset store written by `hgpose prepare` and read by every later stage.

Layout (a public contract, see README "Dataset store"):

    DATA_DIR/manifest.json          written last: its presence means the store is complete
    DATA_DIR/<split>/images.npy     uint8   [N,256,256,3]  RGB crop, not mean-subtracted
    DATA_DIR/<split>/keypoints.npy  float32 [N,17,3]       x, y in crop pixels, v in {0,1,2}
    DATA_DIR/<split>/boxes.npy      float32 [N,3]          x0, y0, side of the crop in the image
    DATA_DIR/<split>/ids.npy        int64   [N,2]          image_id, annotation_id (of its source)
    DATA_DIR/<split>/source.npy     uint8   [N]            index into manifest["sources"]
    DATA_DIR/annotations/<name>.json  an LSP source's people as a COCO keypoints file

A source annotates some of the 17 COCO joints (manifest["sources"][i]["joints"]); the
others are *absent* for its crops: stored as (0, 0, 0) like an unlabelled joint, but never
in a loss or a metric (`Split.present`). Stores of format_version 1 (COCO only, before
sources were recorded) stay readable: every crop is COCO's, with all 17 joints.

Everything is read with `numpy.load(..., mmap_mode="r")`, so a split is never loaded into
RAM (full COCO train is ~24 GB of crops).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgpose.errors import HgposeError
from hgpose.skeleton import JOINTS

# 3: crop keypoints in the pixel convention of docs/architecture.md (a pixel's centre is its
#    index); 2: several sources (source.npy); 1: COCO only.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
SPLITS = ("train", "val", "test")
CROP_SIZE = 256
ARRAYS = {  # name -> (dtype, shape after N)
    "images": (np.uint8, (CROP_SIZE, CROP_SIZE, 3)),
    "keypoints": (np.float32, (17, 3)),
    "boxes": (np.float32, (3,)),
    "ids": (np.int64, (2,)),
}

# A finished store is reused as it is by `prepare`; without its manifest it is rebuilt.
REBUILD = "the store is damaged: delete {data_dir}/manifest.json and re-run the same `hgpose prepare` command"


@dataclass(frozen=True)
class Split:
    """One split of the store, as read-only memory maps."""

    name: str
    images: np.ndarray      # uint8 [N,256,256,3]
    keypoints: np.ndarray   # float32 [N,17,3]
    boxes: np.ndarray       # float32 [N,3]
    ids: np.ndarray         # int64 [N,2]
    source: np.ndarray | None = None   # uint8 [N]: index into the manifest's sources (default 0)
    present: np.ndarray | None = None  # bool [sources, 17]: the joints each source annotates (default all)

    def __post_init__(self):
        if self.source is None:
            object.__setattr__(self, "source", np.zeros(len(self.ids), np.uint8))
        if self.present is None:
            object.__setattr__(self, "present", np.ones((1, len(JOINTS)), bool))

    def __len__(self) -> int:
        return len(self.ids)

    def joints_present(self, rows) -> np.ndarray:
        """bool [..., 17]: which joints the crops `rows` (index or slice) have at all."""
        return self.present[np.asarray(self.source[rows], dtype=np.int64)]


def read_manifest(data_dir: str | Path) -> dict:
    """The manifest of a finished store, or a clear error saying what to run."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise HgposeError(
            f"{path}: not found — {data_dir} is not a finished dataset store; "
            "run `hgpose prepare COCO_ROOT {data_dir}` (again, to resume) first"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HgposeError(f"{path}: not valid JSON ({e}); delete it and re-run `hgpose prepare`") from e
    if not isinstance(manifest, dict):
        raise HgposeError(f"{path}: not a JSON object; delete it and re-run `hgpose prepare`")
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise HgposeError(
            f"{path}: format_version {manifest.get('format_version')!r}, this hgpose reads "
            f"{' and '.join(map(str, READABLE_VERSIONS))}; re-run `hgpose prepare` with this version"
        )
    return manifest


def old_pixel_convention(manifest: dict) -> str | None:
    """A one-line note when the store's crop keypoints predate the pixel convention (format 3)."""
    version = manifest.get("format_version")
    if version is None or version >= 3:
        return None
    return (f"this store (format_version {version}) maps keypoints into the crop by an older pixel "
            "convention, up to 0.5 x (256 / crop side - 1) crop px off; prepare it again for exact labels")


def sources(manifest: dict) -> list[dict]:
    """The store's sources in order, each with name, format, joints, annotations (split ->
    COCO-format annotation file), counts and splits; a format_version 1 store is one COCO
    source with all 17 joints."""
    if manifest.get("format_version") != 1:
        return manifest["sources"]
    files = manifest.get("sources", {})
    annotation = lambda part: files.get(part, {}).get("annotations")
    return [{"name": "coco", "format": "coco", "joints": list(JOINTS),
             "annotations": {"train": annotation("train2017"), "val": annotation("val2017"),
                             "test": annotation("train2017")},
             "counts": manifest.get("counts", {}), "splits": manifest.get("splits", {})}]


def joints_present(manifest: dict) -> np.ndarray:
    """bool [sources, 17]: the joints each source of the store annotates."""
    return np.array([[j in s["joints"] for j in JOINTS] for s in sources(manifest)], dtype=bool)


def mean_rgb(data_dir: str | Path) -> np.ndarray:
    """Mean RGB (0-1) of the training crops: subtracted from every network input."""
    value = read_manifest(data_dir).get("mean_rgb")
    try:
        mean = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        mean = np.zeros(0, np.float32)
    if mean.shape != (3,) or not np.isfinite(mean).all():
        raise HgposeError(f"{Path(data_dir) / 'manifest.json'}: mean_rgb is {value!r}, expected 3 numbers "
                          "in [0, 1]; " + REBUILD.format(data_dir=data_dir))
    return mean


def open_split(data_dir: str | Path, split: str) -> Split:
    """Memory-map one split; checks shapes and dtypes against the contract."""
    manifest = read_manifest(data_dir)
    if split not in SPLITS:
        raise HgposeError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    arrays = {}
    n = None
    for name, (dtype, shape) in ARRAYS.items():
        path = Path(data_dir) / split / f"{name}.npy"
        try:
            a = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:  # EOFError: a 0-byte or cut .npy
            raise HgposeError(f"{path}: cannot be read ({e}); {REBUILD.format(data_dir=data_dir)}") from e
        if a.dtype != dtype or a.shape[1:] != shape or (n is not None and len(a) != n):
            raise HgposeError(
                f"{path}: has {a.dtype} {a.shape}, expected {np.dtype(dtype)} [N,{','.join(map(str, shape))}]"
                f"{'' if n is None else f' with N={n}'}; {REBUILD.format(data_dir=data_dir)}"
            )
        n = len(a)
        arrays[name] = a
    source_path = Path(data_dir) / split / "source.npy"
    if source_path.is_file():  # written since format_version 2
        source = np.load(source_path, mmap_mode="r")
        if source.shape != (n,) or source.dtype != np.uint8:
            raise HgposeError(f"{source_path}: has {source.dtype} {source.shape}, expected uint8 [{n}]; "
                              "re-run `hgpose prepare`")
    else:
        source = np.zeros(n, np.uint8)
    return Split(name=split, **arrays, source=source, present=joints_present(manifest))
