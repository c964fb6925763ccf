"""`hgpose synth`: write a synthetic COCO 2017 keypoint dataset.

Layout (what `hgpose prepare` reads):

    OUT_DIR/annotations/person_keypoints_train2017.json
    OUT_DIR/annotations/person_keypoints_val2017.json
    OUT_DIR/train2017/<image_id:012d>.jpg
    OUT_DIR/val2017/<image_id:012d>.jpg
    OUT_DIR/synth.json            the parameters and counts of the run (written last)
    OUT_DIR/.hgpose-synth.json    the marker, written first: the folder is synth's

OUT_DIR is synth's alone: it must be new, empty, or carry its marker (or synth.json, for a
folder made before the marker existed). Anything else (a real COCO, say) is refused before
anything is written, since a rerun replaces the annotation files and removes 12-digit .jpg
files an earlier run left. A run first removes the old synth.json and annotation files,
so until its own synth.json is written the folder is visibly incomplete (and `prepare`
refuses it), never an old annotation file beside new images.

Image `i` of split `s` is drawn with `np.random.default_rng([seed, s, i])` (s = 0 for
train2017, 1 for val2017): images can be made in any order by any number of processes and
the result is the same. Image ids are i + 1 (train2017) and 10,000,001 + i (val2017);
annotation ids are image_id * 10 + k for the k-th person drawn (far to near).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from hgpose.errors import HgposeError
from hgpose.io import LOCK_NAME, atomic_path, run_lock, write_bytes, write_json
from hgpose.progress import bar as progress_bar
from hgpose.skeleton import BONES, JOINTS
from hgpose.synth.render import LABELS_PER_PERSON
from hgpose.synth.scene import FACTORS, Scene, render_scene
from hgpose.workers import pool_size, process_pool

SYNTH_FORMAT = 1                     # bump when the same seed would draw different images
SPLITS = ("train2017", "val2017")
SPLIT_CODE = {"train2017": 0, "val2017": 1}
IMAGE_ID_BASE = {"train2017": 1, "val2017": 10_000_001}
JPEG_QUALITY = 90
MAX_SIDE = 4096
_OURS = re.compile(r"^\d{12}\.jpg$")
MARKER = ".hgpose-synth.json"    # written first into OUT_DIR: the folder is synth's
IMAGES_PER_WORKER = 32           # a process is not worth starting for fewer images
# train2017's ids are 1 .. n and val2017's start at 10,000,001: more images per split would
# give two images one id (and file name).
MAX_IMAGES = IMAGE_ID_BASE["val2017"] - IMAGE_ID_BASE["train2017"]

PERSON_CATEGORY = {
    "supercategory": "person",
    "id": 1,
    "name": "person",
    "keypoints": list(JOINTS),
    "skeleton": [[a + 1, b + 1] for a, b in BONES],   # COCO's skeleton is 1-based
}
LICENSES = [{
    "id": 1,
    "name": "CC0 1.0 (synthetic images drawn by hgpose synth)",
    "url": "https://creativecommons.org/publicdomain/zero/1.0/",
}]


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws image `index` of `split` (train2017 / val2017)."""
    return np.random.default_rng([seed, SPLIT_CODE[split], index])


def render_example(seed: int, split: str, index: int, size: tuple[int, int] = (640, 480)) -> Scene:
    """Exactly the scene `generate(..., seed=seed, size=size)` writes as image `index` of
    `split`, with its label mask and figures (for tests, pictures and debugging)."""
    return render_scene(image_rng(seed, split, index), int(size[0]), int(size[1]))


def image_id(split: str, index: int) -> int:
    return IMAGE_ID_BASE[split] + index


def coco_records(scene: Scene, split: str, index: int) -> tuple[dict, list[dict]]:
    """The COCO `images` entry and `annotations` of one rendered scene."""
    h, w = scene.mask.shape
    iid = image_id(split, index)
    image = {"id": iid, "file_name": f"{iid:012d}.jpg", "width": w, "height": h, "license": 1,
             "synth": scene.info}
    anns = []
    for k, person in enumerate(scene.people):
        if person is None:          # hidden completely or outside the frame: not annotated
            continue
        kps = []
        for x, y, v in person.keypoints.tolist():
            kps += [x, y, int(v)] if v > 0 else [0, 0, 0]
        anns.append({
            "id": iid * 10 + k,
            "image_id": iid,
            "category_id": 1,
            "keypoints": kps,
            "num_keypoints": int((person.keypoints[:, 2] > 0).sum()),
            "bbox": [float(v) for v in person.bbox],
            "area": float(person.area),
            "iscrowd": 0,
            "segmentation": person_segmentation(scene.mask, k),
            "synth": person.factors,
        })
    return image, anns


def person_segmentation(mask: np.ndarray, k: int) -> dict:
    """Person k's pixels in a label mask (the k-th figure drawn, far to near) as COCO's
    compressed RLE, the counts as text: what pycocotools' `annToMask` and COCO tools read."""
    from pycocotools import mask as mask_utils

    lo = 1 + LABELS_PER_PERSON * k
    own = (mask >= lo) & (mask < lo + LABELS_PER_PERSON)
    rle = mask_utils.encode(np.asfortranarray(own.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _make_image(job: tuple) -> tuple[dict, list[dict]]:
    """Render, encode and (atomically) write one image; returns its COCO records."""
    seed, split, index, width, height, folder, quality = job
    scene = render_scene(image_rng(seed, split, index), width, height)
    image, anns = coco_records(scene, split, index)
    ok, buf = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 always encodes a uint8 BGR image
        raise RuntimeError(f"JPEG encoding of {image['file_name']} failed")
    write_bytes(Path(folder) / image["file_name"], buf.tobytes())
    return image, anns


def _coco_text(split: str, images: list, anns: list, seed: int, size) -> str:
    """One split's COCO keypoints file, as written."""
    data = {
        "info": {
            "description": f"hgpose synth: synthetic people with known generating factors ({split})",
            "version": str(SYNTH_FORMAT),
            "contributor": "hgpose synth",
            "url": "",
            "year": 2024,
            "date_created": "",
            "hgpose_synth": {"format": SYNTH_FORMAT, "seed": seed, "size": list(size), "split": split,
                             "factors": {k: list(v) for k, v in FACTORS.items()}},
        },
        "licenses": LICENSES,
        "images": images,
        "annotations": anns,
        "categories": [PERSON_CATEGORY],
    }
    return json.dumps(data, separators=(",", ":")) + "\n"


def _write_annotations(out_dir: Path, results: dict, seed: int, size) -> dict[str, str]:
    """Both splits' annotation files, both or neither: each is written to a temporary file,
    and they are renamed into place together once both are whole."""
    paths = {split: out_dir / "annotations" / f"person_keypoints_{split}.json" for split in SPLITS}
    with ExitStack() as stack:
        tmps = {split: stack.enter_context(atomic_path(path)) for split, path in paths.items()}
        for split, tmp in tmps.items():
            tmp.write_text(_coco_text(split, *results[split], seed, size))
    return {split: str(path) for split, path in paths.items()}


def check_out_dir(out_dir: str | os.PathLike) -> None:
    """Refuse, with one line, an OUT_DIR that holds anything `hgpose synth` did not write
    (reads only). Synth's own: new, empty, or marked by its marker or synth.json; and its
    image and annotation folders real folders, not links into someone else's data."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise HgposeError(f"{out_dir}: exists and is not a folder; choose a new OUT_DIR")
    names = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK_NAME)
    if not names:
        return
    if not (out_dir / MARKER).is_file() and not _finished(out_dir):
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise HgposeError(f"{out_dir}: holds {shown}, which `hgpose synth` did not write (no {MARKER} "
                          "nor synth.json); choose a new or empty OUT_DIR")
    for name in (*SPLITS, "annotations"):
        folder = out_dir / name
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise HgposeError(f"{folder}: is a {'link' if folder.is_symlink() else 'file'}, where `hgpose "
                              "synth` keeps a folder of its own; move it away or choose another OUT_DIR")


def _finished(out_dir: Path) -> bool:
    """Whether OUT_DIR holds the synth.json of a finished `hgpose synth` run."""
    try:
        summary = json.loads((out_dir / "synth.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"format", "seed", "splits"} <= summary.keys()


def recorded_settings(out_dir: str | os.PathLike) -> dict | None:
    """What a finished synth in `out_dir` was made with (train_images, val_images, seed,
    size), from its synth.json; None when there is none."""
    out_dir = Path(out_dir)
    if not _finished(out_dir):
        return None
    summary = json.loads((out_dir / "synth.json").read_bytes())
    splits = summary["splits"]
    return {"train_images": splits.get("train2017", {}).get("images"),
            "val_images": splits.get("val2017", {}).get("images"),
            "seed": summary["seed"], "size": summary.get("size")}


def _remove_stale(folder: Path, keep: set[str]) -> int:
    """Images of an earlier, larger run and temp files of a killed run."""
    removed = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if (_OURS.match(p.name) and p.name not in keep) or (p.name.startswith(".") and p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def _split_stats(images: list, anns: list) -> dict:
    kps = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, 17, 3)
    return {
        "images": len(images),
        "people": len(anns),
        "people_per_image": dict(sorted(Counter(i["synth"]["people"]
                                                for i in images).items())),
        "visible_joints": int((kps[..., 2] == 2).sum()),
        "occluded_joints": int((kps[..., 2] == 1).sum()),
        "unlabelled_joints": int((kps[..., 2] == 0).sum()),
        "postures": dict(sorted(Counter(a["synth"]["posture"] for a in anns).items())),
        "facings": dict(sorted(Counter(a["synth"]["facing"] for a in anns).items())),
    }


def generate(
    out_dir: str | os.PathLike,
    *,
    train_images: int = 400,
    val_images: int = 100,
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
    workers: int | None = None,
    quality: int = JPEG_QUALITY,
    progress: bool = True,
) -> dict:
    """Write a synthetic COCO 2017 person-keypoint dataset to `out_dir`; returns a summary.

    The same arguments give byte-identical annotation files (and images, with the same
    OpenCV/libjpeg), whatever `workers` is.
    """
    out_dir = Path(out_dir)
    counts = {"train2017": train_images, "val2017": val_images}
    width, height = check_settings(counts, seed, size, quality)
    total = train_images + val_images
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise HgposeError(f"--workers {workers!r}: give a whole number of processes >= 1")
    workers = pool_size(workers, total // IMAGES_PER_WORKER)
    check_out_dir(out_dir)
    with run_lock(out_dir, "hgpose synth", "OUT_DIR"):  # a second synth into OUT_DIR stops here
        check_out_dir(out_dir)
        _start(out_dir, {"train_images": train_images, "val_images": val_images, "seed": seed,
                         "size": [width, height], "format": SYNTH_FORMAT})
        jobs = _image_jobs(out_dir, counts, seed, width, height, quality)
        started = time.perf_counter()
        results = _draw(jobs, workers, progress)
        seconds = time.perf_counter() - started
        files = _write_annotations(out_dir, results, seed, (width, height))
        summary = {
            "out_dir": str(out_dir),
            "format": SYNTH_FORMAT,
            "seed": seed,
            "size": [width, height],
            "workers": workers,
            "seconds": round(seconds, 2),
            "images_per_second": round(total / max(seconds, 1e-9), 1),
            "annotations": files,
            "splits": {split: _split_stats(*results[split]) for split in SPLITS},
        }
        write_json(out_dir / "synth.json", summary)  # last: the set is complete
    return summary


def _start(out_dir: Path, settings: dict) -> None:
    """Mark OUT_DIR as synth's, then remove what says an earlier run finished (its synth.json
    and annotation files), so an interrupted run never leaves old annotations beside new
    images."""
    write_json(out_dir / MARKER, {"written_by": "hgpose synth", "settings": settings, "note": (
        "this folder is a dataset of hgpose synth, which writes and replaces files here only "
        "because this marker is here")})
    (out_dir / "synth.json").unlink(missing_ok=True)
    for split in SPLITS:
        (out_dir / "annotations" / f"person_keypoints_{split}.json").unlink(missing_ok=True)


def check_settings(counts: dict, seed, size, quality: int) -> tuple[int, int]:
    """One-line errors for every setting, before anything is written; returns (width, height)."""
    for name, n in counts.items():
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 <= n <= MAX_IMAGES:
            option = "--train-images" if name == "train2017" else "--val-images"
            raise HgposeError(f"{option} {n!r}: give a whole count from 0 to {MAX_IMAGES:,d} (image ids "
                              "of train2017 must stay below those of val2017)")
    if sum(counts.values()) == 0:
        raise HgposeError("nothing to make: give --train-images and/or --val-images > 0")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HgposeError(f"--seed {seed!r}: give a whole number >= 0")
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise HgposeError(f"--size {size!r}: give width and height in pixels") from None
    if not (64 <= width <= MAX_SIDE and 64 <= height <= MAX_SIDE):
        raise HgposeError(f"--size {width} {height}: width and height must be between 64 and {MAX_SIDE} pixels")
    if not 1 <= quality <= 100:
        raise HgposeError(f"JPEG quality {quality}: give 1..100")
    return width, height


def _image_jobs(out_dir: Path, counts: dict, seed: int, width: int, height: int, quality: int) -> list[tuple]:
    """One job per image to draw, in split order; the image folders made and cleared of
    images a previous call with other counts left."""
    jobs = []
    for split in SPLITS:
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        keep = {f"{image_id(split, i):012d}.jpg" for i in range(counts[split])}
        _remove_stale(folder, keep)
        jobs += [(seed, split, i, width, height, str(folder), quality) for i in range(counts[split])]
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    return jobs


def _draw(jobs: list[tuple], workers: int, progress: bool) -> dict:
    """Draw and write every image (in worker processes); split -> (images, annotations)."""
    results = {split: ([], []) for split in SPLITS}
    bar = progress_bar(total=len(jobs), unit="img", desc="synth", disable=not progress)
    with process_pool(workers) as pool, bar:
        stream = pool.imap(_make_image, jobs, chunksize=8) if pool else map(_make_image, jobs)
        for job, (image, anns) in zip(jobs, stream):
            results[job[1]][0].append(image)
            results[job[1]][1].extend(anns)
            bar.update(1)
    return results


def format_summary(summary: dict) -> str:
    """What `hgpose synth` prints at the end."""
    lines = [f"{'':28s}{'train2017':>12s}{'val2017':>12s}"]
    s = summary["splits"]
    for label, key in (("images", "images"), ("people", "people"), ("joints visible (v=2)", "visible_joints"),
                       ("joints occluded (v=1)", "occluded_joints"), ("joints unlabelled (v=0)", "unlabelled_joints")):
        lines.append(f"{label:28s}{s['train2017'][key]:>12,d}{s['val2017'][key]:>12,d}")
    for posture in FACTORS["posture"]:
        lines.append(f"{'  ' + posture:28s}{s['train2017']['postures'].get(posture, 0):>12,d}"
                     f"{s['val2017']['postures'].get(posture, 0):>12,d}")
    w, h = summary["size"]
    lines.append("")
    lines.append(f"{w}x{h} JPEGs, seed {summary['seed']}, {summary['seconds']:.1f} s "
                 f"({summary['images_per_second']:.0f} images/s, {summary['workers']} process"
                 f"{'es' if summary['workers'] > 1 else ''}) -> {summary['out_dir']}")
    lines.append(f"next: hgpose prepare {summary['out_dir']} DATA_DIR --test-size 0.2")
    return "\n".join(lines)
