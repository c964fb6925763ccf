"""Reading LSP-format data (Leeds Sports Pose and LSP Extended) into COCO-17.

Layout, as both datasets ship it:

    ROOT/joints.mat      MATLAB matrix `joints`: 14 x 3 x N (LSPET) or 3 x 14 x N (LSP);
                         per joint x, y and a flag: 1 = visible, 0 = occluded
    ROOT/images/imNNNNN.jpg   (LSPET: 5 digits; LSP: 4) for column n - 1

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


def load_joints(path: Path) -> np.ndarray:
    """joints.mat -> float64 [N, 14, 3] (x, y, flag), whichever of the two shapes it holds."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path)
    except FileNotFoundError:
        raise HgposeError(f"{path}: not found — an LSP folder holds joints.mat and images/") from None
    except (MatReadError, ValueError, OSError, TypeError) as e:
        raise HgposeError(f"{path}: not a readable MATLAB file ({e}); download the dataset again") from None
    if "joints" not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise HgposeError(f"{path}: has no matrix 'joints' (found {found}); "
                          "give the joints.mat of LSP or LSPET")
    joints = np.asarray(mat["joints"])
    if joints.ndim == 3 and joints.shape[:2] == (14, 3):      # LSPET: joint, coordinate, image
        joints = joints.transpose(2, 0, 1)
    elif joints.ndim == 3 and joints.shape[:2] == (3, 14):    # LSP: coordinate, joint, image
        joints = joints.transpose(2, 1, 0)
    else:
        raise HgposeError(f"{path}: 'joints' has shape {joints.shape}, expected 14 x 3 x N (LSPET) "
                          "or 3 x 14 x N (LSP)")
    if not np.issubdtype(joints.dtype, np.number):
        raise HgposeError(f"{path}: 'joints' holds {joints.dtype} values, expected numbers")
    return joints.astype(np.float64)


def image_path(root: Path, n: int, count: int) -> Path:
    """The image of column n - 1: imNNNNN.jpg (LSPET, 10,000 images) or imNNNN.jpg (LSP)."""
    for digits in (5, 4) if count > 2000 else (4, 5):
        path = root / IMAGE_DIR / f"im{n:0{digits}d}.jpg"
        if path.is_file():
            return path
    return root / IMAGE_DIR / f"im{n:05d}.jpg"


def to_coco17(joints: np.ndarray) -> np.ndarray:
    """[..., 14, 3] LSP (x, y, flag) -> [..., 17, 3] COCO (x, y, v): v = 2 visible, 1 occluded.

    Joints LSP does not have stay (0, 0, 0); non-finite coordinates are not labelled.
    """
    out = np.zeros(joints.shape[:-2] + (17, 3))
    for name, i in COCO_FROM_LSP.items():
        x, y, flag = joints[..., i, 0], joints[..., i, 1], joints[..., i, 2]
        usable = np.isfinite(x) & np.isfinite(y)
        j = JOINT_INDEX[name]
        out[..., j, 0] = np.where(usable, x, 0)
        out[..., j, 1] = np.where(usable, y, 0)
        out[..., j, 2] = np.where(usable, np.where(flag > 0, 2, 1), 0)
    return out


def lsp_tasks(root: Path) -> tuple[list[ImageTask], dict[str, int], np.ndarray]:
    """One ImageTask per image (one person each), the counts, and the COCO-17 keypoints of
    every column [N, 17, 3] (for the store's derived annotation file).

    Checked before anything is written: every column has its image and every image its
    column. Image sizes come from the file headers (no pixel is decoded); an image whose
    header cannot be read gets size 1 x 1, so it plans no crop and the crop step counts
    it as corrupt, like any broken COCO image.
    """
    joints = load_joints(root / ANNOTATION_FILE)
    keypoints = to_coco17(joints)
    paths = [image_path(root, n, len(keypoints)) for n in range(1, len(keypoints) + 1)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise HgposeError(
            f"{missing[0]}: not found, but {root / ANNOTATION_FILE} has a column for it "
            f"({len(missing)} image(s) missing); restore the images or use the joints.mat "
            "that belongs to them")
    listed = len(list((root / IMAGE_DIR).glob("im*.jpg")))
    if listed != len(paths):
        raise HgposeError(
            f"{root / IMAGE_DIR}: holds {listed} images but {root / ANNOTATION_FILE} has "
            f"{len(paths)} columns; use the joints.mat that belongs to these images")
    # No person boxes: the crop rule sizes and centres the square on all 14 joints inside
    # the image, head top and neck included (so the head is in the crop, though those two
    # are not COCO joints and are dropped as keypoints).
    extent = np.where(np.isfinite(joints), joints, -1.0)
    extent[..., 2] = 1
    tasks = []
    for n, (path, kps, points) in enumerate(zip(paths, keypoints, extent), start=1):
        width, height = file_size(path) or (1, 1)
        tasks.append(ImageTask(str(path), width, height, n, [n], [[0.0, 0.0, 0.0, 0.0]], [kps],
                               extent=[points]))
    counts = {"people": len(keypoints), "crowd": 0, "no_keypoints": 0}
    return tasks, counts, keypoints


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
        tasks, counts, keypoints = lsp_tasks(path)
        mat = path / ANNOTATION_FILE
        files = {"joints": {"path": str(mat.resolve()), "sha256": file_sha256(mat)}}
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
