"""The dataset store written by `hgpose prepare` and read by every later stage.

Layout (a public contract, see README "Dataset store"):

    DATA_DIR/manifest.json          written last: its presence means the store is complete
    DATA_DIR/<split>/images.npy     uint8   [N,256,256,3]  RGB crop, not mean-subtracted
    DATA_DIR/<split>/keypoints.npy  float32 [N,17,3]       x, y in crop pixels, v in {0,1,2}
    DATA_DIR/<split>/boxes.npy      float32 [N,3]          x0, y0, side of the crop in the image
    DATA_DIR/<split>/ids.npy        int64   [N,2]          image_id, annotation_id (of its source)
    DATA_DIR/<split>/source.npy     uint8   [N]            index into manifest["sources"]
    DATA_DIR/annotations/<name>.json  the people of a source without a COCO-format annotation
                                    file (LSP), as a COCO keypoints file

A source annotates some of the 17 COCO joints (manifest["sources"][i]["joints"]); the
others are *absent* for its crops: stored as (0, 0, 0) like an unlabelled joint, but never
in a loss or a metric (`Split.present`). Stores of format_version 1 (COCO only, before
sources were recorded) stay readable: every crop is COCO's, with all 17 joints.

`Store.open(DATA_DIR)` reads and checks manifest.json once; the `Store` then answers
everything later stages ask of the store (its sources, mean RGB, joints, splits, annotation
files, original image folders), so a command reads the manifest once however many of these
it needs. Everything is read with `numpy.load(..., mmap_mode="r")`, so a split is never
loaded into RAM (full COCO train is ~24 GB of crops).
"""

from __future__ import annotations

import hashlib
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


@dataclass(frozen=True)
class Store:
    """A finished dataset store: its folder and its manifest, read and checked once.

    Holds no memory maps (`split` opens them), so it pickles cheaply to DataLoader workers.
    """

    path: Path
    manifest: dict
    manifest_sha256: str  # of manifest.json's bytes: explain's latents cache is keyed by it

    @classmethod
    def open(cls, data_dir: str | Path) -> "Store":
        """The store in `data_dir`, or a clear error saying what to run."""
        path = Path(data_dir) / "manifest.json"
        if not path.is_file():
            raise HgposeError(
                f"{path}: not found — {data_dir} is not a finished dataset store; "
                f"run `hgpose prepare COCO_ROOT {data_dir}` (again, to resume) first"
            )
        data = path.read_bytes()
        try:
            manifest = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HgposeError(f"{path}: not valid JSON ({e}); delete it and re-run `hgpose prepare`") from e
        if not isinstance(manifest, dict):
            raise HgposeError(f"{path}: not a JSON object; delete it and re-run `hgpose prepare`")
        if manifest.get("format_version") not in READABLE_VERSIONS:
            raise HgposeError(
                f"{path}: format_version {manifest.get('format_version')!r}, this hgpose reads "
                f"{' and '.join(map(str, READABLE_VERSIONS))}; re-run `hgpose prepare` with this version"
            )
        if manifest["format_version"] != 1:
            _check_sources(path, manifest.get("sources"))
        return cls(Path(data_dir), manifest, hashlib.sha256(data).hexdigest())

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def sources(self) -> list[dict]:
        """The store's sources in order, each with name, format, joints, annotations (split ->
        COCO-format annotation file), counts and splits; a format_version 1 store is one COCO
        source with all 17 joints."""
        if self.manifest.get("format_version") != 1:
            return self.manifest["sources"]
        coco = _formats()["coco"]  # version 1 stores are COCO only, split by COCO's rule
        files = self.manifest.get("sources", {})
        return [{"name": "coco", "format": coco.name, "joints": list(JOINTS),
                 "annotations": {split: files.get(part, {}).get("annotations")
                                 for split, part in coco.split_parts.items()},
                 "counts": self.manifest.get("counts", {}), "splits": self.manifest.get("splits", {})}]

    @property
    def mean_rgb(self) -> np.ndarray:
        """Mean RGB (0-1) of the training crops: subtracted from every network input."""
        value = self.manifest.get("mean_rgb")
        try:
            mean = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            mean = np.zeros(0, np.float32)
        if mean.shape != (3,) or not np.isfinite(mean).all():
            raise HgposeError(f"{self.manifest_path}: mean_rgb is {value!r}, expected 3 numbers "
                              "in [0, 1]; " + REBUILD.format(data_dir=self.path))
        return mean

    @property
    def joints_present(self) -> np.ndarray:
        """bool [sources, 17]: the joints each source of the store annotates."""
        return np.array([[j in s["joints"] for j in JOINTS] for s in self.sources], dtype=bool)

    @property
    def trained_joints(self) -> list[str]:
        """The joints some source annotates (COCO order): those a network trained here learns."""
        present = self.joints_present.any(axis=0)
        return [name for name, has in zip(JOINTS, present) if has]

    @property
    def old_pixel_convention(self) -> str | None:
        """A one-line note when the crop keypoints predate the pixel convention (format 3)."""
        version = self.manifest.get("format_version")
        if version is None or version >= 3:
            return None
        return (f"this store (format_version {version}) maps keypoints into the crop by an older pixel "
                "convention, up to 0.5 x (256 / crop side - 1) crop px off; prepare it again for exact labels")

    def split(self, name: str) -> Split:
        """Memory-map one split; checks shapes and dtypes against the contract."""
        if name not in SPLITS:
            raise HgposeError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}")
        arrays = {}
        n = None
        for array, (dtype, shape) in ARRAYS.items():
            path = self.path / name / f"{array}.npy"
            a = self._load(path)
            if a.dtype != dtype or a.shape[1:] != shape or (n is not None and len(a) != n):
                raise HgposeError(
                    f"{path}: has {a.dtype} {a.shape}, expected {np.dtype(dtype)} [N,{','.join(map(str, shape))}]"
                    f"{'' if n is None else f' with N={n}'}; {REBUILD.format(data_dir=self.path)}"
                )
            n = len(a)
            arrays[array] = a
        return Split(name=name, **arrays, source=self._source_column(name, n), present=self.joints_present)

    def _load(self, path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:  # EOFError: a 0-byte or cut .npy
            raise HgposeError(f"{path}: cannot be read ({e}); {REBUILD.format(data_dir=self.path)}") from e

    def _source_column(self, split: str, n: int) -> np.ndarray:
        """source.npy of a split (written since format_version 2; before, every crop is source 0),
        checked to point at the manifest's sources only (reads N bytes)."""
        path = self.path / split / "source.npy"
        if not path.is_file():
            return np.zeros(n, np.uint8)
        source = self._load(path)
        if source.shape != (n,) or source.dtype != np.uint8:
            raise HgposeError(f"{path}: has {source.dtype} {source.shape}, expected uint8 [{n}]; "
                              f"{REBUILD.format(data_dir=self.path)}")
        count = len(self.sources)
        if n and int(source.max()) >= count:
            raise HgposeError(f"{path}: points to source {int(source.max())}, but {self.manifest_path} lists "
                              f"{count} source(s) (0 .. {count - 1}); {REBUILD.format(data_dir=self.path)}")
        return source

    def annotation_files(self, split: str, override: str | Path | None = None) -> dict[int, Path]:
        """source index -> the annotation file of its people in `split`, as recorded by
        `hgpose prepare` (COCO's own files; for LSP the COCO-format file prepare derived).
        override: the file given on the command line (--annotations), one-source stores only."""
        sources = self.sources
        if override is not None:
            if len(sources) > 1:
                raise HgposeError(f"--annotations: {self.path} holds {len(sources)} sources, and the option "
                                  f"names one file; {self._where_files_go()}")
            return {0: Path(override)}
        files = {}
        for i, source in enumerate(sources):
            path = (source.get("annotations") or {}).get(split)
            # never suggest --annotations where it would be refused (a store of several sources)
            if path is None:
                fix = ("pass it with --annotations" if len(sources) == 1
                       else "re-run `hgpose prepare` with this hgpose, which records every source's files")
                raise HgposeError(f"{self.manifest_path} does not record the {split} annotation file of "
                                  f"{source.get('name', i)!r}; {fix}")
            if not Path(path).is_file():
                fix = ("put it back there, or pass its new location with --annotations" if len(sources) == 1
                       else self._where_files_go())
                raise HgposeError(f"{path}: not found — {self.manifest_path} records the {split} annotation "
                                  f"file of source {source.get('name', i)!r} there; {fix}")
            files[i] = Path(path)
        return files

    def _where_files_go(self) -> str:
        """What works for a store of several sources whose annotation files moved."""
        return (f"put the files back where {self.manifest_path} records them, or re-run `hgpose prepare` "
                "from where the datasets are now")

    def image_folders(self, split: str, override: str | Path | None = None) -> dict[int, Path]:
        """source index -> the folder of its original images for `split`, under the root the
        manifest records (each source's format knows the folder); one line saying where and
        what to do when it is gone. override: as for `annotation_files`."""
        folders = {}
        for i, source in enumerate(self.sources):
            if source.get("path"):
                root = Path(source["path"])
            else:  # format_version 1 stores record only the annotation files: ROOT/annotations/x.json
                root = self.annotation_files(split, override)[i].parent.parent
            folder = self._format_of(source).image_folder(root, split)
            if not folder.is_dir():
                raise HgposeError(
                    f"{folder}: not found — {self.manifest_path} records the images of source "
                    f"{source.get('name', i)!r} there, and this protocol crops the original images; put them "
                    "back there (or re-run `hgpose prepare` from where they are now), or use --protocol "
                    "thesis, which reads only the store")
            folders[i] = folder
        return folders

    def _format_of(self, source: dict):
        formats = _formats()
        name = source.get("format", "coco")
        if name not in formats:
            raise HgposeError(f"{self.manifest_path}: source {source.get('name')!r} has format {name!r}, "
                              f"which this hgpose does not read ({', '.join(formats)}); prepare the store "
                              "again with this version")
        return formats[name]


def _check_sources(path: Path, sources) -> None:
    """The manifest's sources, as every later stage reads them: a non-empty list of objects,
    each with a name, a format and the COCO-17 joints it annotates."""
    fix = "; " + REBUILD.format(data_dir=path.parent)
    if not isinstance(sources, list) or not sources or len(sources) > 256:  # source.npy is uint8
        raise HgposeError(f"{path}: 'sources' is {_short(sources)}, expected a list of 1 to 256 sources{fix}")
    for i, source in enumerate(sources):
        if not isinstance(source, dict):
            raise HgposeError(f"{path}: sources[{i}] is {_short(source)}, expected an object{fix}")
        for key in ("name", "format"):
            if not isinstance(source.get(key), str):
                raise HgposeError(f"{path}: sources[{i}] {key} is {_short(source.get(key))}, expected text{fix}")
        joints = source.get("joints")
        if not isinstance(joints, list) or not joints or not all(j in JOINTS for j in joints):
            raise HgposeError(f"{path}: sources[{i}] joints is {_short(joints)}, expected a list of "
                              f"COCO-17 joint names{fix}")


def _short(value) -> str:
    """A value for an error message, cut to one short line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _formats() -> dict:
    """The format registry. Imported here, not at the top: the formats read datasets (OpenCV,
    pycocotools), which nothing that only reads a store needs to load."""
    from hgpose.data.formats import FORMATS

    return FORMATS
