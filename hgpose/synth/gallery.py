"""The picture of what the demo trains on: synthetic frames and crops next to real COCO crops.

    python -m hgpose.synth.gallery docs/images/synth_grid.png [--coco-root ../shared/data/coco-sample]

Row 1: synthetic frames with every person's keypoints; row 2: synthetic person crops cut
with the thesis crop rule (as `hgpose prepare` cuts them); row 3: real COCO crops from
`--coco-root` (left out when it is not given or not found). Filled dots are visible joints
(v=2), rings occluded ones (v=1); the person's left side is orange, the right side blue.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from hgpose.draw import draw_skeleton
from hgpose.errors import HgposeError
from hgpose.images import read_image
from hgpose.io import atomic_path
from hgpose.synth.dataset import render_example

# the real sample beside the checkout (as the tests find it), unless HGPOSE_COCO_SAMPLE says otherwise
DEFAULT_COCO = Path(os.environ.get("HGPOSE_COCO_SAMPLE",
                                   Path(__file__).resolve().parents[3] / "shared" / "data" / "coco-sample"))


def _skeleton(image: np.ndarray, kps: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Ground-truth keypoints [17,3] (times `scale`) drawn the one way hgpose draws a pose."""
    k = np.asarray(kps, np.float64).reshape(17, 3) * (scale, scale, 1)
    return draw_skeleton(image, k, thickness=1, labels=True)


def person_crop(image: np.ndarray, bbox, kps: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The thesis crop of one person (as `prepare` cuts it) with its keypoints in crop pixels."""
    from hgpose.data.crop import clean_keypoints, cut_crop, thesis_crop_box, to_crop

    h, w = image.shape[:2]
    k, _ = clean_keypoints(np.asarray(kps, np.float64).reshape(17, 3), w, h)
    if not (k[:, 2] > 0).any():
        return None
    box = thesis_crop_box(bbox, k, w, h)
    return cut_crop(image, box, size), to_crop(k, box, size)


def _label(width: int, text: str) -> np.ndarray:
    bar = np.full((26, width, 3), 250, np.uint8)
    cv2.putText(bar, text, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (30, 30, 30), 1, cv2.LINE_AA)
    return bar


def synthetic_rows(seed: int, frames: int, crops: int, frame_w: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    tiles, crop_tiles = [], []
    index = 0
    while len(tiles) < frames or len(crop_tiles) < crops:
        scene = render_example(seed, "train2017", index)
        rgb = cv2.cvtColor(scene.image, cv2.COLOR_BGR2RGB)  # scenes are BGR, as written to JPEG
        index += 1
        people = [p for p in scene.people if p is not None and (p.keypoints[:, 2] > 0).sum() >= 8]
        if len(tiles) < frames:
            s = frame_w / rgb.shape[1]
            t = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            for p in scene.people:
                if p is not None:
                    t = _skeleton(t, p.keypoints, s)
            tiles.append(t)
        for p in people[:1]:
            if len(crop_tiles) < crops:
                c = person_crop(rgb, p.bbox, p.keypoints, crop)
                if c is not None:
                    img, k = c
                    crop_tiles.append(_skeleton(img, k))
    return np.hstack(tiles), np.hstack(crop_tiles)


def coco_row(coco_root: Path, crops: int, crop: int) -> np.ndarray | None:
    """Crops of the best-annotated people of the real sample (most labelled joints)."""
    ann_path = coco_root / "annotations" / "person_keypoints_val2017.json"
    if not ann_path.is_file():
        return None
    data = json.loads(ann_path.read_text())
    images = {i["id"]: i for i in data["images"]}
    people = [a for a in data["annotations"]
              if not a.get("iscrowd") and a.get("num_keypoints", 0) >= 10 and a["bbox"][3] >= 120]
    people.sort(key=lambda a: (-a["num_keypoints"], a["id"]))
    tiles, seen = [], set()
    for a in people:
        if a["image_id"] in seen:
            continue
        path = coco_root / "val2017" / images[a["image_id"]]["file_name"]
        try:
            image = read_image(path)
        except HgposeError:  # a missing or broken file: the next person
            continue
        c = person_crop(image, a["bbox"], np.asarray(a["keypoints"], np.float64), crop)
        if c is None:
            continue
        img, k = c
        tiles.append(_skeleton(img, k))
        seen.add(a["image_id"])
        if len(tiles) == crops:
            break
    if len(tiles) < crops:
        return None
    return np.hstack(tiles)


def make_gallery(out_png: str | Path, *, coco_root: str | Path | None = None, seed: int = 0,
                 width: int = 1024, frames: int = 4, crops: int = 8) -> Path:
    """Render the picture and write it (palette PNG, atomically); returns its path."""
    crop = width // crops
    rows = []
    frame_row, crop_row = synthetic_rows(seed, frames, crops, width // frames, crop)
    rows += [_label(width, f"hgpose synth (seed {seed}): frames with their keypoints"), frame_row,
             _label(width, "hgpose synth: person crops (thesis crop rule, as `hgpose prepare` cuts them)"), crop_row]
    root = Path(coco_root) if coco_root else DEFAULT_COCO
    real = coco_row(root, crops, crop) if root.is_dir() else None
    if real is not None:
        rows += [_label(width, "real COCO val2017 crops (coco-sample) with their annotated keypoints"), real]
    elif coco_root:
        raise HgposeError(f"{coco_root}: no COCO val2017 person keypoints with enough labelled people found")
    legend = _label(width, "dots: visible joints (v=2), rings: occluded (v=1); orange = person's left, blue = right")
    grid = np.vstack(rows + [legend])
    out_png = Path(out_png)
    try:
        from PIL import Image

        pil = Image.fromarray(grid).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        with atomic_path(out_png, suffix=".png") as tmp:
            pil.save(tmp, format="PNG", optimize=True)
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        with atomic_path(out_png, suffix=".png") as tmp:
            tmp.write_bytes(buf.tobytes())
    return out_png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hgpose.synth.gallery", description=__doc__.split("\n\n")[0])
    p.add_argument("out_png", metavar="OUT.png", help="where the picture is written")
    p.add_argument("--coco-root", default=None,
                   help=f"a COCO root for the real crops (default: {DEFAULT_COCO} when present)")
    p.add_argument("--seed", type=int, default=0, help="synth seed of the synthetic rows (default: 0)")
    p.add_argument("--width", type=int, default=1024, help="picture width in pixels (default: 1024)")
    args = p.parse_args(argv)
    try:
        path = make_gallery(args.out_png, coco_root=args.coco_root, seed=args.seed, width=args.width)
    except HgposeError as e:
        print(f"gallery: error: {e}", file=sys.stderr)
        return 2
    print(f"{path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
