"""Throughput of `hgpose prepare` against the bound of only decoding the same JPEGs.

    python benchmarks/prepare.py COCO_ROOT [--workers 2] [--repeat 8]

`--repeat R` builds a temporary COCO root in which every image (a symlink) and its
annotations appear R times, so that a small sample runs long enough to measure steady
throughput. Prints images/s and crops/s of prepare, images/s of decode-only with the same
library (OpenCV) and the same number of processes, and their ratio (target >= 0.6).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hgpose.data.formats import coco as coco_io
from hgpose.data.prepare import prepare


def repeated_root(coco_root: Path, repeat: int, into: Path) -> Path:
    (into / "annotations").mkdir(parents=True)
    for source in coco_io.PARTS:
        data = json.loads(coco_io.annotation_path(coco_root, source).read_text())
        (into / source).mkdir()
        images, anns = [], []
        for r in range(repeat):
            offset = r * 10**9
            for im in data["images"]:
                name = f"r{r}_{im['file_name']}"
                (into / source / name).symlink_to((coco_root / source / im["file_name"]).resolve())
                images.append({**im, "id": im["id"] + offset, "file_name": name})
            anns += [{**a, "id": a["id"] + offset, "image_id": a["image_id"] + offset} for a in data["annotations"]]
        (into / "annotations" / f"person_keypoints_{source}.json").write_text(
            json.dumps({**data, "images": images, "annotations": anns}))
    return into


def decode(path: str) -> int:
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return 0 if image is None else image.shape[0]


def _init() -> None:
    cv2.setNumThreads(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("coco_root", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=8)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hgpose-bench-"))
    try:
        root = repeated_root(args.coco_root, args.repeat, tmp / "coco")
        paths = []
        for source in coco_io.PARTS:
            tasks, _ = coco_io.person_tasks(coco_io.load_coco(coco_io.annotation_path(root, source)), root / source)
            paths += [t.path for t in tasks]

        t0 = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(args.workers, initializer=_init) as pool:
            list(pool.imap(decode, paths, chunksize=4))
        decode_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        manifest = prepare(root, tmp / "store", test_size=0.1, workers=args.workers, progress=False)
        prepare_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    crops = manifest["splits"]["train"] + manifest["splits"]["val"] + manifest["splits"]["test"]
    n = len(paths)
    print(f"images with people: {n}  crops: {crops}  workers: {args.workers}  (repeat {args.repeat})")
    print(f"decode only (OpenCV): {n / decode_s:8.1f} img/s  ({decode_s:.2f} s)")
    print(f"prepare (all stages): {n / prepare_s:8.1f} img/s  {crops / prepare_s:8.1f} crops/s  ({prepare_s:.2f} s)")
    print(f"ratio prepare / decode-only: {decode_s / prepare_s:.2f}  (target >= 0.6)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
