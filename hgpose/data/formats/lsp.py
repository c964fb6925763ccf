"""Reading LSP-format data (Leeds Sports Pose and LSP Extended) into COCO-17.

Layout, as both datasets ship it:

    ROOT/joints.mat      MATLAB matrix `joints`: 14 x 3 x N (LSPET) or 3 x 14 x N (LSP);
                         per joint x, y and a binary flag, whose meaning differs (below)
    ROOT/images/imNNNNN.jpg   (LSPET: 5 digits; LSP: 4) for column n - 1

The flag. Both READMEs call it a "visibility" flag without saying which value is which
(LSP: "a binary value specifying joint visibility"; LSPET: "joint locations and visibility
flags"), and the two datasets use it differently, so each is read by its own meaning,
told apart by the matrix layout each ships (`LAYOUTS`):

- LSPET (14 x 3 x N): 1 = the joint is annotated (visible), 0 = it is not. Measured on the
  9,000 people of ../shared/data/lspet: 110,819 joints have flag 1; none of the 15,181 with
  flag 0 has a position (both coordinates > 0): they hold placeholders such as (0, -26.1),
  the same for several joints of a person, and 112 of them are exactly (0, 0), a pixel of
  the image. A flag-0 joint is therefore *not labelled* (v = 0), and never sizes the crop.
- LSP (3 x 14 x N): every joint has a position, and the flag marks the *occluded* ones
  (1 = occluded, 0 = visible), which is why pose codebases read LSP's flag as 1 - flag and
  LSPET's as it is (e.g. HMR-style converters: `vis = 1 - joints[:, :, 2]` for "lsp",
  `joints[:, :, 2]` for "lsp_ext"); LSP-format files of other projects describe the third
  value as `if_occluded`. So v = 2 for flag 0, v = 1 (occluded) for flag 1.

One person per image and no person boxes. The 14 LSP joints map into COCO-17 by
`COCO_FROM_LSP`; LSP's neck and head top have no COCO joint and are dropped. COCO's nose,
eyes and ears are *absent* from this source (it does not annotate them), which is not the
same as COCO's "not labelled": a store records which joints each source has, and training
and every metric leave absent joints out.

LSP ships neither splits nor a COCO-format annotation file. Split rule (`LspFormat`): val and
test are seeded draws of `val_size` and `test_size` crops (10 % each by default), never
overlapping; train is the rest. Its people are also written as a COCO keypoints file
(`coco_annotations`), so evaluate scores them like COCO people.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgpose.data.crop import clean_keypoints
from hgpose.data.formats.base import DatasetFormat, ImageTask, Part, Source
from hgpose.data.splits import draw_val_test
from hgpose.errors import HgposeError
from hgpose.images import file_size
from hgpose.io import file_sha256
from hgpose.skeleton import JOINT_INDEX, JOINTS as COCO_JOINTS

LSP_JOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck", "head_top",
)
# COCO-17 joint <- LSP joint (left/right are the person's own in both formats).
COCO_FROM_LSP = {name: i for i, name in enumerate(LSP_JOINTS) if name in JOINT_INDEX}
JOINTS = tuple(sorted(COCO_FROM_LSP, key=JOINT_INDEX.get))  # the COCO joints LSP has

ANNOTATION_FILE = "joints.mat"
IMAGE_DIR = "images"
PART = "all"  # its one image list: LSP ships no splits


@dataclass(frozen=True)
class Layout:
    """How one dataset stores `joints`, and what its flag means (module docstring)."""

    dataset: str            # "LSPET" | "LSP"
    shape: tuple[int, int]  # the first two dimensions; the third is N
    order: tuple[int, ...]  # transpose to [N, 14, 3]
    flags: str              # the flag's meaning, in words (recorded in the manifest)

    def annotated(self, flag: np.ndarray) -> np.ndarray:
        """Which joints have a position: LSPET's flag-1 joints; every LSP joint."""
        return flag == 1 if self.dataset == "LSPET" else np.ones(flag.shape, bool)

    def visibility(self, flag: np.ndarray) -> np.ndarray:
        """COCO's v of the annotated joints: 2 visible, 1 occluded."""
        return np.full(flag.shape, 2) if self.dataset == "LSPET" else np.where(flag == 1, 1, 2)


LAYOUTS = (
    Layout("LSPET", (14, 3), (2, 0, 1), "1 = annotated (visible), 0 = not annotated"),
    Layout("LSP", (3, 14), (2, 1, 0), "0 = visible, 1 = occluded (every joint annotated)"),
)
# Saved with N = 3 people, an N x 14 x 3 array (numpy's order, as Python code holds the
# joints) has LSP's shape 3 x 14 x N: which one it is cannot be told, so it is refused.
AMBIGUOUS = (3, 14, 3)


def load_joints(path: Path) -> tuple[np.ndarray, Layout]:
    """joints.mat -> (float64 [N, 14, 3] (x, y, flag), the layout it was stored in)."""
    joints = _read_matrix(path)
    if joints.ndim == 2:  # MATLAB drops a trailing dimension of 1: one person, 14 x 3 or 3 x 14
        joints = joints[..., None]
    if joints.shape == AMBIGUOUS:
        raise HgposeError(
            f"{path}: 'joints' has shape 3 x 14 x 3, which is LSP's 3 x 14 x N for 3 people but also "
            "an N x 14 x 3 array (numpy's order) for 3 people; hgpose cannot tell which — save it as "
            "14 x 3 x N (LSPET's layout, flag 1 = annotated) or with more people")
    layout = next((lay for lay in LAYOUTS if joints.ndim == 3 and joints.shape[:2] == lay.shape), None)
    if layout is None:
        raise HgposeError(f"{path}: 'joints' has shape {joints.shape}, expected 14 x 3 x N (LSPET) "
                          "or 3 x 14 x N (LSP); an N x 14 x 3 array must be saved transposed, "
                          "e.g. savemat(path, {'joints': joints.transpose(1, 2, 0)})")
    if joints.dtype.kind not in "iuf":  # bool, complex, text, cells
        raise HgposeError(f"{path}: 'joints' holds {joints.dtype} values, expected real numbers")
    joints = joints.transpose(layout.order).astype(np.float64)
    _check_flags(path, joints)
    return joints, layout


def _read_matrix(path: Path) -> np.ndarray:
    """The matrix 'joints' of a MATLAB file, or one line saying why it cannot be read."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if path.is_dir():
        raise HgposeError(f"{path}: is a folder, not a MATLAB file — an LSP folder holds joints.mat and images/")
    try:
        mat = loadmat(path)
    except FileNotFoundError:
        raise HgposeError(f"{path}: not found — an LSP folder holds joints.mat and images/") from None
    except NotImplementedError:  # scipy reads MATLAB files up to v7; v7.3 is HDF5
        raise HgposeError(
            f"{path}: a MATLAB v7.3 (HDF5) file, which hgpose does not read; re-save it in the v7 format "
            "(MATLAB: load('joints.mat'); save('joints.mat', 'joints', '-v7'))") from None
    except (MatReadError, ValueError, OSError, TypeError) as e:
        raise HgposeError(f"{path}: not a readable MATLAB file ({e}); download the dataset again") from None
    if "joints" not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise HgposeError(f"{path}: has no matrix 'joints' (found {found}); "
                          "give the joints.mat of LSP or LSPET")
    return np.asarray(mat["joints"])


def _check_flags(path: Path, joints: np.ndarray) -> None:
    """Every flag of a joint with a position is 0 or 1 (both datasets' binary flag); a joint
    without finite coordinates is unlabelled whatever its flag."""
    usable = np.isfinite(joints[..., 0]) & np.isfinite(joints[..., 1])
    bad = usable & ~np.isin(joints[..., 2], (0, 1))
    if bad.any():
        n, j = (int(i) for i in np.argwhere(bad)[0])
        raise HgposeError(f"{path}: the flag of {LSP_JOINTS[j]} in column {n + 1} is "
                          f"{joints[n, j, 2].item()!r} ({int(bad.sum())} such flag(s)); LSP and LSPET "
                          "flags are 0 or 1 — use the dataset's own joints.mat")


def image_path(root: Path, n: int, count: int) -> Path:
    """The image of column n - 1: imNNNNN.jpg (LSPET, 10,000 images) or imNNNN.jpg (LSP)."""
    for digits in (5, 4) if count > 2000 else (4, 5):
        path = root / IMAGE_DIR / f"im{n:0{digits}d}.jpg"
        if path.is_file():
            return path
    return root / IMAGE_DIR / f"im{n:05d}.jpg"


def to_coco17(joints: np.ndarray, layout: Layout) -> np.ndarray:
    """[..., 14, 3] LSP (x, y, flag) -> [..., 17, 3] COCO (x, y, v), the flag read by the
    meaning of the dataset whose `layout` it came in (module docstring): v = 2 visible,
    1 occluded, 0 not labelled (LSPET's flag 0, or coordinates that are not finite).

    Joints LSP does not have stay (0, 0, 0).
    """
    out = np.zeros(joints.shape[:-2] + (17, 3))
    for name, i in COCO_FROM_LSP.items():
        x, y, flag = joints[..., i, 0], joints[..., i, 1], joints[..., i, 2]
        usable = np.isfinite(x) & np.isfinite(y) & layout.annotated(flag)
        j = JOINT_INDEX[name]
        out[..., j, 0] = np.where(usable, x, 0)
        out[..., j, 1] = np.where(usable, y, 0)
        out[..., j, 2] = np.where(usable, layout.visibility(flag), 0)
    return out


def image_paths(root: Path, count: int) -> list[Path]:
    """The image of every column, each checked to be there and a file."""
    paths = [image_path(root, n, count) for n in range(1, count + 1)]
    folders = [p for p in paths if p.is_dir()]
    if folders:
        raise HgposeError(f"{folders[0]}: is a folder, not an image file ({len(folders)} such); "
                          f"{root / ANNOTATION_FILE} has a column for it — put the image there")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise HgposeError(
            f"{missing[0]}: not found, but {root / ANNOTATION_FILE} has a column for it "
            f"({len(missing)} image(s) missing); restore the images or use the joints.mat "
            "that belongs to them")
    listed = len([p for p in (root / IMAGE_DIR).glob("im*.jpg") if p.is_file()])
    if listed != len(paths):
        raise HgposeError(
            f"{root / IMAGE_DIR}: holds {listed} images but {root / ANNOTATION_FILE} has "
            f"{len(paths)} columns; use the joints.mat that belongs to these images")
    return paths


def lsp_tasks(root: Path) -> tuple[list[ImageTask], dict[str, int], np.ndarray, Layout]:
    """One ImageTask per image (one person each), the counts, the COCO-17 keypoints of
    every column [N, 17, 3] (for the store's derived annotation file), and the layout.

    Checked before anything is written: every column has its image and every image its
    column. Image sizes come from the file headers (no pixel is decoded); an image whose
    header cannot be read gets size 1 x 1, so it plans no crop and the crop step counts
    it as corrupt, like any broken COCO image.
    """
    joints, layout = load_joints(root / ANNOTATION_FILE)
    if len(joints) == 0:
        raise HgposeError(f"{root / ANNOTATION_FILE}: 'joints' holds no person (N = 0); "
                          "give the joints.mat of LSP or LSPET")
    keypoints = to_coco17(joints, layout)
    paths = image_paths(root, len(keypoints))
    # No person boxes: the crop rule sizes and centres the square on all 14 annotated joints
    # inside the image, head top and neck included (so the head is in the crop, though those
    # two are not COCO joints and are dropped as keypoints). A joint without a position
    # (LSPET's flag 0, whose placeholder can be pixel (0, 0)) is left out.
    annotated = layout.annotated(joints[..., 2]) & np.isfinite(joints[..., :2]).all(-1)
    extent = np.where(annotated[..., None], joints, -1.0)
    extent[..., 2] = 1
    tasks = []
    for n, (path, kps, points) in enumerate(zip(paths, keypoints, extent), start=1):
        width, height = file_size(path) or (1, 1)
        tasks.append(ImageTask(str(path), width, height, n, [n], [[0.0, 0.0, 0.0, 0.0]], [kps],
                               extent=[points]))
    counts = {"people": len(keypoints), "crowd": 0, "no_keypoints": 0}
    return tasks, counts, keypoints, layout


def coco_annotations(name: str, tasks: list[ImageTask], keypoints: np.ndarray) -> dict:
    """LSP people as a COCO keypoints dict, so evaluate scores them like COCO people.

    LSP has no person boxes: each person's box is the extent of its labelled keypoints
    inside the image (area = box area, the OKS scale); joints LSP lacks are v = 0, which
    OKS ignores.
    """
    images, annotations = [], []
    for task, kps in zip(tasks, keypoints):
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
    return {
        "info": {"description": f"{name} (LSP format) in COCO-17, written by hgpose prepare"},
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_JOINTS), "skeleton": []}],
    }


class LspFormat(DatasetFormat):
    """LSP and LSPET: joints.mat + images/, one person per image, 12 of the 17 joints."""

    name = "lsp"
    folder = "an LSP folder"
    layout = "joints.mat + images/"
    parts = (PART,)
    joints = JOINTS
    split_parts = {"train": PART, "val": PART, "test": PART}
    default_test_size = 0.1
    default_val_size = 0.1
    rule = "val and test drawn at random"

    def looks_like(self, path: Path) -> bool:
        return (path / ANNOTATION_FILE).is_file() and (path / IMAGE_DIR).is_dir()

    def read(self, name: str, path: Path) -> Source:
        tasks, counts, keypoints, layout = lsp_tasks(path)
        mat = path / ANNOTATION_FILE
        # how the flags were read is part of what the store holds (and of its identity)
        files = {"joints": {"path": str(mat.resolve()), "sha256": file_sha256(mat),
                            "layout": f"{layout.dataset} {' x '.join(map(str, layout.shape))} x N",
                            "flags": layout.flags}}
        return Source(name, self.name, path, self.joints, [Part(PART, tasks, counts)], files,
                      derived_annotations=coco_annotations(name, tasks, keypoints))

    def plan(self, sizes: dict[str, int], test_size, val_size, seed: int, name: str) -> dict:
        n = sizes[PART]
        val_rows, test_rows = draw_val_test(n, val_size, test_size, seed, name)
        rows = {"train": np.setdiff1d(np.arange(n), np.concatenate([val_rows, test_rows])),
                "val": val_rows, "test": test_rows}
        return {split: (self.split_parts[split], rows[split]) for split in rows}

    def image_folder(self, root: Path, split: str) -> Path:
        return root / IMAGE_DIR
