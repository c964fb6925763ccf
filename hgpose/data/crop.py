"""The thesis crop rule (SPEC §1): one square, person-centred crop per annotated person.

Pure functions on numbers and arrays, so the rule can be read, tested and reused (predict
uses it for user-given boxes) without any I/O.

Coordinates follow the pixel convention of docs/architecture.md: the centre of pixel i is
coordinate i (pixel i covers [i - 0.5, i + 0.5)), in the image as in the crop, as COCO's
integer keypoints are. Resizing a square of `side` pixels to `size` maps pixel centres the
way cv2 does, edge to edge, so a point moves by u = (x - x0 + 0.5) * size / side - 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_SIZE = 256
ENLARGE = 1.1  # step 4: side grows by 10 %


@dataclass(frozen=True)
class CropBox:
    """A square region of the original image: pixel columns x0 .. x0+side-1, rows
    y0 .. y0+side-1, i.e. coordinates [x0 - 0.5, x0 + side - 0.5) under the pixel convention.

    Integer pixels, so the cut is exact and `to_crop`/`to_image` hold for every pixel and
    keypoint.
    """

    x0: int
    y0: int
    side: int


def clean_keypoints(keypoints: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int]:
    """Treat labelled keypoints that lie outside the image as unlabelled (0, 0, 0).

    keypoints: [...,17,3] of one image. Returns the cleaned copy (same shape, float64) and
    how many joints were dropped. A person with no labelled joint left gets no crop.
    """
    kps = np.array(keypoints, dtype=np.float64)
    x, y = kps[..., 0], kps[..., 1]
    outside = (kps[..., 2] > 0) & ((x < 0) | (x > width) | (y < 0) | (y > height))
    kps[outside] = 0
    return kps, int(outside.sum())


def thesis_crop_box(
    bbox, keypoints: np.ndarray, width: int, height: int, enlarge: float = ENLARGE
) -> CropBox:
    """Steps 1-6 of the crop rule for one person.

    bbox: COCO (x, y, w, h); keypoints: [17,3] already cleaned (labelled ones inside the
    image); at least one keypoint must be labelled.
    """
    kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    labelled = kps[kps[:, 2] > 0, :2]
    if len(labelled) == 0:
        raise ValueError("thesis_crop_box needs at least one labelled keypoint")
    kx0, ky0 = labelled.min(axis=0)
    kx1, ky1 = labelled.max(axis=0)

    # 1. the COCO box grown to hold every labelled keypoint. A zero-area box (it
    #    happens in COCO) carries no information: the keypoints' extent alone is used.
    bx, by, bw, bh = (float(v) for v in bbox)
    if bw > 0 and bh > 0:
        x0, y0, x1, y1 = min(bx, kx0), min(by, ky0), max(bx + bw, kx1), max(by + bh, ky1)
    else:
        x0, y0, x1, y1 = kx0, ky0, kx1, ky1
    # 2. square with the longer side; 4. enlarged by 10 %.
    side = max(x1 - x0, y1 - y0) * enlarge
    # 5. no larger than the image can hold (and at least one pixel).
    side = int(round(min(max(side, 1.0), width, height)))
    side = max(1, min(side, width, height))
    # 3. centred on the labelled keypoints' extent, so the annotated person (not a
    #    neighbour who widened the box) is in the middle.
    cx, cy = (kx0 + kx1) / 2, (ky0 + ky1) / 2
    # 6. pushed back inside the image; each axis separately, so x stays centred on the
    #    person when only the vertical position had to move.
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return CropBox(left, top, side)


def cut_crop(image: np.ndarray, box: CropBox, size: int = CROP_SIZE) -> np.ndarray:
    """Step 7: cut the square out and resize it to size×size, anti-aliased.

    Enlarging (a small person) is bilinear. Shrinking averages every source pixel under a
    target pixel (the anti-aliasing): the region is first brought bilinearly to the next
    whole multiple k·size, then averaged over k×k blocks with INTER_AREA. OpenCV has a fast
    path for whole-number area factors only; a direct INTER_AREA resize at COCO's typical
    factors (1-2) costs twice as much for pixels within ~0.5 grey levels of this.
    Both steps map pixel centres edge to edge (cv2: src = (dst + 0.5) * side / size - 0.5),
    so together they are the one affine map of `to_crop`.
    """
    region = image[box.y0:box.y0 + box.side, box.x0:box.x0 + box.side]
    if box.side <= size:
        return cv2.resize(region, (size, size), interpolation=cv2.INTER_LINEAR)
    k = -(-box.side // size)  # ceil
    if box.side != k * size:
        region = cv2.resize(region, (k * size, k * size), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)


def to_crop(keypoints: np.ndarray, box: CropBox, size: int = CROP_SIZE) -> np.ndarray:
    """Image keypoints [...,17,3] -> crop keypoints (float32); unlabelled stay (0, 0, 0).

    u = (x - x0 + 0.5) * size / side - 0.5: the box's outer edge (x0 - 0.5) goes to the
    crop's (-0.5) and the scale applies from there, exactly as `cut_crop` moves the pixels.
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    out = np.zeros(kps.shape, dtype=np.float32)
    labelled = kps[..., 2] > 0
    scale = size / box.side
    out[..., 0] = np.where(labelled, (kps[..., 0] - box.x0 + 0.5) * scale - 0.5, 0)
    out[..., 1] = np.where(labelled, (kps[..., 1] - box.y0 + 0.5) * scale - 0.5, 0)
    out[..., 2] = kps[..., 2]
    return out


def to_image(coords: np.ndarray, boxes: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Crop coordinates [...,J,2] -> original-image coordinates, given the stored boxes
    [...,3] = (x0, y0, side) of `boxes.npy`: x = x0 + (u + 0.5) * side / size - 0.5, the
    inverse of `to_crop`."""
    coords = np.asarray(coords, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    scale = boxes[..., None, 2:3] / size
    return boxes[..., None, 0:2] + (coords + 0.5) * scale - 0.5


# --- the box-centred crop of the standard top-down protocol (mmpose, HRNet) -----------------

BOX_PADDING = 1.25  # mmpose/HRNet grow the person box by 25 % around its centre


def box_centred_crop(bbox, width: int, height: int, padding: float = BOX_PADDING) -> CropBox | None:
    """The crop of a person known by a box (x, y, w, h) alone, as mmpose/HRNet cut it for a
    square input: centred on the box centre, side = the box's longer side × `padding`.

    Unlike the thesis rule, no keypoint is used and the square is not fitted into the
    image: it may extend past the border (`cut_padded_crop` fills that part with black).
    The box is first clipped to the image, since only that part can hold the person (as
    HRNet does for ground-truth boxes); this also keeps a detector's runaway box from
    asking for a huge canvas. None when nothing of the box lies inside the image.
    Whole pixels, so `to_image` maps crop coordinates back exactly.
    """
    x, y, w, h = (float(v) for v in bbox)
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if not (x1 >= x0 and y1 >= y0) or x0 >= width or y0 >= height:
        return None  # also catches NaN: every comparison with it is False
    # A zero-area box (COCO has a few) still has a centre: the crop is then 1 px wide.
    side = max(int(round(max(x1 - x0, y1 - y0) * padding)), 1)
    left = int(round((x0 + x1) / 2 - side / 2))
    top = int(round((y0 + y1) / 2 - side / 2))
    return CropBox(left, top, side)


def cut_padded_crop(image: np.ndarray, box: CropBox, size: int = CROP_SIZE) -> np.ndarray:
    """`cut_crop` for a square that may extend past the image: the part outside is black
    (0), like the constant border of mmpose's and HRNet's affine warp."""
    height, width = image.shape[:2]
    if box.x0 >= 0 and box.y0 >= 0 and box.x0 + box.side <= width and box.y0 + box.side <= height:
        return cut_crop(image, box, size)
    canvas = np.zeros((box.side, box.side) + image.shape[2:], image.dtype)
    ix0, iy0 = max(box.x0, 0), max(box.y0, 0)
    ix1, iy1 = min(box.x0 + box.side, width), min(box.y0 + box.side, height)
    if ix1 > ix0 and iy1 > iy0:
        canvas[iy0 - box.y0:iy1 - box.y0, ix0 - box.x0:ix1 - box.x0] = image[iy0:iy1, ix0:ix1]
    return cut_crop(canvas, CropBox(0, 0, box.side), size)
