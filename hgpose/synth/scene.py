"""One synthetic image: people placed and drawn in depth order, then annotated from the mask.

`render_scene(rng, width, height)` is the whole recipe for one image; the dataset writer
calls it with `np.random.default_rng([seed, split_code, image_index])`, so every image can
be made on its own, in any process, in any order, with the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hgpose.skeleton import NUM_JOINTS
from hgpose.synth import body as B
from hgpose.synth import render as R
from hgpose.synth.draws import Draws

# Declared value sets/ranges of the per-annotation "synth" field (see docs/synth.md).
FACTORS = {
    "posture": B.POSTURES,
    "scale": R.SCALE_RANGE,
    "rotation_deg": R.ROTATION_RANGE,
    "facing": B.FACINGS,
    "yaw_deg": (-180.0, 180.0),
    "lean_deg": (-12.0, 95.0),
    "occluded_joints": (0, NUM_JOINTS),
    "outside_joints": (0, NUM_JOINTS),
    "occluded_fraction": (0.0, 1.0),
    "people": (1, R.MAX_PEOPLE),
    "depth_rank": (0, R.MAX_PEOPLE - 1),
}
PEOPLE_P = (0.55, 0.3, 0.15)   # 1, 2, 3 people
OCCLUDER_P = 0.35              # chance of occluding objects in an image
SEAT_P = 0.6                   # chance that a sitting person gets a stool


@dataclass
class PersonAnnotation:
    keypoints: np.ndarray        # [17,3] float64: x, y (2 decimals), v in {0,1,2}
    bbox: list                   # COCO x, y, w, h of the person's drawn pixels
    area: int                    # number of the person's drawn pixels
    factors: dict                # the "synth" field
    covered_by: list             # per joint: None, or the mask label found on it
    drawn_pixels: int            # pixels the person covered before later things hid some


@dataclass
class Scene:
    image: np.ndarray            # uint8 [H,W,3] BGR, as written to the JPEG
    mask: np.ndarray             # uint8 [H,W] labels (see render.py)
    figures: list                # render.Figure per person, in draw order (far to near)
    people: list                 # PersonAnnotation per figure (None: nothing of it visible)
    info: dict = field(default_factory=dict)   # image-level factors


def _scale(d, n_people: int) -> float:
    lo, hi = (0.3, 1.1) if n_people == 1 else (0.2, 0.75)
    return math.exp(d.uniform(math.log(lo), math.log(hi)))


def sample_figure(d: Draws, width: int, height: int, n_people: int, near=None, posture=None) -> R.Figure:
    """Draw a person's factors (posture, build, colours, yaw, scale, rotation) and place it."""
    if posture is None:
        posture = B.POSTURES[d.integers(len(B.POSTURES))]
    pose = B.sample_pose(d, posture)
    build = B.sample_build(d)
    palette = R.sample_palette(d)
    yaw = B.sample_yaw(d)
    scale = _scale(d, n_people)
    rotation = min(max(d.normal(0.0, 10.0), R.ROTATION_RANGE[0]), R.ROTATION_RANGE[1])
    fig = R.place_figure(d, width, height, pose, build, palette, yaw, scale, rotation, near=near)
    fig.seat = posture == "sitting" and d.random() < SEAT_P
    return fig


def render_scene(rng: np.random.Generator, width: int = 640, height: int = 480) -> Scene:
    """Draw one image and annotate every person in it from the label mask."""
    d = Draws(rng)
    image, background = R.draw_background(d, width, height)
    mask = np.zeros((height, width), np.uint8)
    n = 1 + d.choice(len(PEOPLE_P), p=PEOPLE_P)
    figures = []
    for _ in range(n):
        near = figures[d.integers(len(figures))] if figures and d.random() < 0.5 else None
        figures.append(sample_figure(d, width, height, n, near=near))
    th = d.uniform(0, 2 * math.pi)
    light = (math.cos(th), math.sin(th))
    windows = [_window(fig, width, height) for fig in figures]
    drawn = []
    for k, fig in enumerate(figures):
        R.draw_figure(image, mask, fig, k, light)
        drawn.append(int(np.count_nonzero(_own(mask, windows[k], k))))
    occluders = []
    if d.random() < OCCLUDER_P:
        for _ in range(d.integers(1, 3)):
            occluders.append(R.draw_occluder(d, image, mask, figures[d.integers(n)]))
    camera = R.camera_noise(d, image)
    people = [annotate(mask, fig, k, n, drawn[k], windows[k]) for k, fig in enumerate(figures)]
    info = {"background": background, "people": n, "occluders": occluders, "camera": camera}
    return Scene(image, mask, figures, people, info)


def _window(fig: R.Figure, width: int, height: int) -> tuple[int, int, int, int]:
    """Image rows/cols (y0, y1, x0, x1) that can hold the figure's pixels (with a seat)."""
    lo, hi = fig.extent()
    pad = 0.1 * fig.px + 4
    x0, y0 = (int(max(0, math.floor(v - pad))) for v in lo)
    x1 = int(min(width, math.ceil(hi[0] + pad)))
    y1 = int(min(height, math.ceil(hi[1] + pad)))
    return y0, max(y0, y1), x0, max(x0, x1)


def _own(mask: np.ndarray, window, k: int) -> np.ndarray:
    """Boolean map of person k's pixels inside its window."""
    y0, y1, x0, x1 = window
    sub = mask[y0:y1, x0:x1]
    lo = 1 + R.LABELS_PER_PERSON * k
    return (sub >= lo) & (sub < lo + R.LABELS_PER_PERSON)


def annotate(mask: np.ndarray, fig: R.Figure, k: int, n_people: int, drawn_pixels: int,
             window=None) -> PersonAnnotation | None:
    """COCO keypoints, box and area of person k, read off the final label mask."""
    h, w = mask.shape
    if window is None:
        window = (0, h, 0, w)
    own = _own(mask, window, k)
    area = int(np.count_nonzero(own))
    if area == 0:
        return None
    rows = np.flatnonzero(own.any(1)) + window[0]
    cols = np.flatnonzero(own.any(0)) + window[2]
    bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    lo = 1 + R.LABELS_PER_PERSON * k
    kps = np.zeros((NUM_JOINTS, 3))
    covered = [None] * NUM_JOINTS
    outside = occluded = 0
    for j, (x, y) in enumerate(fig.joints.tolist()):
        x, y = round(x, 2), round(y, 2)
        if not (0 <= x < w and 0 <= y < h):
            outside += 1
            continue
        label = int(mask[int(y), int(x)])
        part = label - lo
        visible = part in B.JOINT_PARTS[j] and bool(fig.body.face_visible[j])
        if not visible:
            occluded += 1
            covered[j] = label
        # The drawing's pixel (col, row) covers [col, col+1); hgpose's (and COCO's keypoint)
        # convention puts a pixel's centre at its index, hence the half pixel, kept inside
        # COCO's keypoint range [0, W - 1].
        kps[j] = (min(max(x - 0.5, 0.0), w - 1), min(max(y - 0.5, 0.0), h - 1), 2 if visible else 1)
    yaw = round(fig.yaw_deg, 2)
    factors = {
        "posture": fig.pose.posture,
        "scale": round(fig.scale, 4),
        "rotation_deg": round(fig.rotation_deg, 2),
        "facing": B.facing_of(yaw),
        "yaw_deg": yaw,
        "lean_deg": round(fig.pose.lean, 2),
        "occluded_joints": occluded,
        "outside_joints": outside,
        "occluded_fraction": round(1.0 - area / max(1, drawn_pixels), 4),
        "people": n_people,
        "depth_rank": k,
    }
    return PersonAnnotation(kps, bbox, area, factors, covered, drawn_pixels)
