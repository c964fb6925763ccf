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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hgpose.data.coco import ImageTask
from hgpose.errors import HgposeError
from hgpose.images import file_size
from hgpose.skeleton import JOINT_INDEX

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


def looks_like_lsp(root: Path) -> bool:
    return (root / ANNOTATION_FILE).is_file() and (root / IMAGE_DIR).is_dir()


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
