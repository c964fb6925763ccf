"""`hgpose prepare`: COCO 2017 -> the thesis dataset store (crops, split, mean RGB).

How it stays fast, bounded in memory and resumable at full COCO scale (134k crops,
~26 GB, more than the RAM of a 24 GB machine):

1. Both annotation files are validated first: a bad file stops the run before anything
   is written to OUT_DIR.
2. Images are decoded and cropped by `workers` processes. Results stream into *shards*
   (a fixed block of images each) under OUT_DIR/.work; a shard is written to a temporary
   folder and renamed into place, so a killed run leaves only whole shards, and a new run
   skips them.
3. The test draw (seeded numpy PCG64, identical on every machine) picks crops of
   train2017; each split is then copied shard by shard into memory-mapped .npy files
   under temporary names and renamed. manifest.json is written last: it marks the store
   as complete.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hgpose.data import coco as coco_io
from hgpose.data.crop import CROP_SIZE, ENLARGE, clean_keypoints, cut_crop, thesis_crop_box, to_crop
from hgpose.data.store import FORMAT_VERSION, SPLITS
from hgpose.errors import HgposeError
from hgpose.io import atomic_path, save_npy, write_json

IMAGE_PROBLEMS = ("missing_image", "corrupt_image", "truncated_image", "size_mismatch")
SHARD_ARRAYS = ("images", "keypoints", "boxes", "ids", "sums")


# ----------------------------------------------------------------------------- one image
@dataclass
class ImageResult:
    image_id: int
    images: np.ndarray          # uint8 [n,256,256,3]
    keypoints: np.ndarray       # float32 [n,17,3] crop coordinates
    boxes: np.ndarray           # float32 [n,3]
    ids: np.ndarray             # int64 [n,2]
    sums: np.ndarray            # float64 [n,3] per-crop channel sums (for the mean RGB)
    problem: str | None = None  # one of IMAGE_PROBLEMS: the image's people were skipped
    people_skipped: int = 0
    joints_outside_image: int = 0
    zero_area_boxes: int = 0


def read_rgb(path: str, width: int, height: int) -> tuple[np.ndarray | None, str | None]:
    """Decode an image as RGB uint8 [H,W,3], or (None, reason) for a broken one."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, "missing_image"
    except OSError:
        return None, "corrupt_image"
    # libjpeg decodes a truncated JPEG with only a warning (grey bottom rows): a JPEG
    # must end with its End-Of-Image marker.
    if data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return None, "truncated_image"
    # IGNORE_ORIENTATION: COCO annotates the stored pixels, not the EXIF-rotated view.
    # IMREAD_COLOR turns greyscale images into 3 equal channels.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        return None, "corrupt_image"
    if image.shape[:2] != (height, width):
        return None, "size_mismatch"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None


def process_image(task: coco_io.ImageTask) -> ImageResult:
    """Decode one image and cut every person in it with the thesis crop rule."""
    n = len(task.ann_ids)
    image, problem = read_rgb(task.path, task.width, task.height)
    if problem is not None:
        return ImageResult(
            task.image_id, np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8), np.zeros((0, 17, 3), np.float32),
            np.zeros((0, 3), np.float32), np.zeros((0, 2), np.int64), np.zeros((0, 3)), problem, n,
        )
    crops, kps_out, boxes, ids, sums = [], [], [], [], []
    outside = zero_area = skipped = 0
    for ann_id, bbox, kps in zip(task.ann_ids, task.bboxes, task.keypoints):
        kps, n_out = clean_keypoints(kps, task.width, task.height)
        outside += n_out
        if not (kps[:, 2] > 0).any():  # every labelled joint was outside the image
            skipped += 1
            continue
        zero_area += not (bbox[2] > 0 and bbox[3] > 0)
        box = thesis_crop_box(bbox, kps, task.width, task.height)
        crop = cut_crop(image, box)
        crops.append(crop)
        kps_out.append(to_crop(kps, box))
        boxes.append((box.x0, box.y0, box.side))
        ids.append((task.image_id, ann_id))
        sums.append(cv2.sumElems(crop)[:3])  # exact for uint8 sums, far faster than numpy here
    return ImageResult(
        task.image_id,
        np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8),
        np.stack(kps_out).astype(np.float32) if kps_out else np.zeros((0, 17, 3), np.float32),
        np.asarray(boxes, np.float32).reshape(-1, 3),
        np.asarray(ids, np.int64).reshape(-1, 2),
        np.asarray(sums, np.float64).reshape(-1, 3),
        None, skipped, outside, zero_area,
    )


def _init_worker() -> None:
    cv2.setNumThreads(1)  # parallelism comes from the processes


# ----------------------------------------------------------------------------- shards
@dataclass
class ShardStats:
    images: int = 0
    crops: int = 0
    problems: dict = field(default_factory=lambda: {p: 0 for p in IMAGE_PROBLEMS})
    people_all_joints_outside: int = 0
    joints_outside_image: int = 0
    zero_area_boxes: int = 0


def crop_shard(job: tuple[Path, list[coco_io.ImageTask]]) -> int:
    """Crop every image of one shard and write the shard; runs in a worker process.

    The worker writes its own files, so pixel data never travels between processes.
    The folder appears atomically (temp folder + rename). Returns the number of images.
    """
    folder, tasks = job
    results = [process_image(task) for task in tasks]
    stats = ShardStats(images=len(results))
    arrays = {name: np.concatenate([getattr(r, name) for r in results]) for name in SHARD_ARRAYS}
    stats.crops = len(arrays["ids"])
    for r in results:
        if r.problem:
            stats.problems[r.problem] += r.people_skipped
        else:
            stats.people_all_joints_outside += r.people_skipped
        stats.joints_outside_image += r.joints_outside_image
        stats.zero_area_boxes += r.zero_area_boxes
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", array)
    write_json(tmp / "stats.json", stats.__dict__)
    os.replace(tmp, folder)
    return len(tasks)


def _shard_folder(work: Path, source: str, index: int) -> Path:
    return work / source / f"shard_{index:05d}"


def _pending_shards(tasks, work: Path, source: str, shard_images: int):
    """Split a source's tasks into shards; return all shard folders and those still to do."""
    shards = [tasks[i:i + shard_images] for i in range(0, len(tasks), shard_images)]
    folders = [_shard_folder(work, source, i) for i in range(len(shards))]
    (work / source).mkdir(parents=True, exist_ok=True)
    for stale in (work / source).glob(".shard_*.tmp"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    pending = [(folders[i], shard) for i, shard in enumerate(shards) if not (folders[i] / "stats.json").is_file()]
    return folders, pending


# ----------------------------------------------------------------------------- the store
def resolve_test_size(test_size: int | float, pool: int) -> int:
    """A count, or a fraction in (0,1) of the train2017 crops; never more than the pool."""
    if isinstance(test_size, float) and 0 < test_size < 1:
        return int(round(test_size * pool))
    count = int(test_size)
    if count < 0 or count != test_size:
        raise HgposeError(f"--test-size {test_size}: give a whole count >= 0 or a fraction in (0, 1)")
    if count > pool:
        raise HgposeError(
            f"--test-size {count} is larger than the {pool} train2017 crops available; "
            f"give a smaller count or a fraction such as 0.1"
        )
    return count


def draw_test(n_train2017: int, test_size: int | float, seed: int) -> np.ndarray:
    """Indices (sorted) of the train2017 crops that form the test split.

    numpy's PCG64 generator gives the same draw for the same seed on any machine.
    """
    k = resolve_test_size(test_size, n_train2017)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_train2017, size=k, replace=False))


def _assemble_split(out_dir: Path, split: str, folders: list[Path], rows: np.ndarray, meta: dict) -> None:
    """Copy the chosen rows (global indices over a source's shards, sorted) into the
    split's final files, streaming image data shard by shard."""
    split_dir = out_dir / split
    split_dir.mkdir(parents=True, exist_ok=True)
    for name in ("keypoints", "boxes", "ids"):
        save_npy(split_dir / f"{name}.npy", meta[name][rows])
    with atomic_path(split_dir / "images.npy") as tmp:
        dest = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(rows), CROP_SIZE, CROP_SIZE, 3))
        start = pos = 0
        for folder in folders:
            shard = np.load(folder / "images.npy", mmap_mode="r")
            stop = start + len(shard)
            lo, hi = np.searchsorted(rows, [start, stop])
            if hi > lo:
                dest[pos:pos + hi - lo] = shard[rows[lo:hi] - start]
                pos += hi - lo
            start = stop
        dest.flush()
        del dest


def _load_meta(folders: list[Path]) -> tuple[dict, dict]:
    """Small per-crop arrays of every shard, concatenated, and the summed statistics."""
    meta = {name: [] for name in SHARD_ARRAYS if name != "images"}
    totals = ShardStats().__dict__
    for folder in folders:
        for name in meta:
            meta[name].append(np.load(folder / f"{name}.npy"))
        stats = json.loads((folder / "stats.json").read_text())
        for key, value in stats.items():
            if isinstance(value, dict):
                for k, v in value.items():
                    totals[key][k] += v
            else:
                totals[key] += value
    empty = {"keypoints": (0, 17, 3), "boxes": (0, 3), "ids": (0, 2), "sums": (0, 3)}
    return {k: np.concatenate(v) if v else np.zeros(empty[k]) for k, v in meta.items()}, totals


def prepare(
    coco_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    test_size: int | float = 5064,
    seed: int = 0,
    workers: int | None = None,
    keep_work: bool = False,
    shard_images: int = 64,
    progress: bool = True,
) -> dict:
    """Build the dataset store in `out_dir` from COCO 2017 in `coco_root`; returns the manifest.

    Started again after an interruption, it resumes from the finished shards.
    """
    coco_root, out_dir = Path(coco_root), Path(out_dir)
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise HgposeError(f"--workers {workers}: give at least 1")
    if not coco_root.is_dir():
        raise HgposeError(f"{coco_root}: not a folder — give the COCO root holding annotations/, train2017/, val2017/")

    # 1. validate everything that can be validated before writing anything
    cocos, sources = {}, {}
    for source in coco_io.SOURCES:
        path = coco_io.annotation_path(coco_root, source)
        cocos[source] = coco_io.load_coco(path)
        if not (coco_root / source).is_dir():
            raise HgposeError(f"{coco_root / source}: not found — COCO_ROOT must hold the {source} images")
        sources[source] = {"annotations": str(path.resolve()), "sha256": coco_io.sha256_of(path)}
    tasks, counts = {}, {}
    for source in coco_io.SOURCES:
        tasks[source], counts[source] = coco_io.person_tasks(cocos[source], coco_root / source)
    del cocos
    people_with_keypoints = sum(len(t.ann_ids) for t in tasks["train2017"])
    resolve_test_size(test_size, people_with_keypoints)  # an impossible size fails now

    crop_params = {"rule": "thesis", "size": CROP_SIZE, "enlarge": ENLARGE}
    settings = {"format_version": FORMAT_VERSION, "crop": crop_params, "sources": sources}
    manifest_path = out_dir / "manifest.json"
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        same = ({k: old.get(k) for k in settings} == settings
                and old.get("seed") == seed and old.get("test_size") == test_size)
        if same:
            return old
        raise HgposeError(
            f"{out_dir} already holds a finished dataset store made from other sources or "
            f"settings (seed {old.get('seed')}, test size {old.get('test_size')}); "
            "choose another OUT_DIR or delete this one"
        )

    # 2. shards (resumable)
    work = out_dir / ".work"
    params_path = work / "params.json"
    work_settings = {**settings, "shard_images": shard_images}
    if params_path.is_file():
        if json.loads(params_path.read_text()) != work_settings:
            print(f"{work}: made from other sources or settings; starting over")
            shutil.rmtree(work)
    write_json(params_path, work_settings)
    started = time.perf_counter()
    folders, pending = {}, []
    for source in coco_io.SOURCES:
        folders[source], todo = _pending_shards(tasks[source], work, source, shard_images)
        pending += todo
    pending_tasks = [task for _, shard in pending for task in shard]
    total = sum(len(t) for t in tasks.values())
    bar = tqdm(total=total, initial=total - len(pending_tasks), unit="img", desc="prepare",
               disable=not progress, dynamic_ncols=True)
    pool = None
    if workers > 1 and len(pending) > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
        done = pool.imap_unordered(crop_shard, pending)
    else:
        done = map(crop_shard, pending)
    try:
        for n_images in done:
            bar.update(n_images)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()

    # 3. split and assemble
    meta, stats = {}, {}
    for source in coco_io.SOURCES:
        meta[source], stats[source] = _load_meta(folders[source])
    n_train2017 = len(meta["train2017"]["ids"])
    test_rows = draw_test(n_train2017, test_size, seed)
    train_rows = np.setdiff1d(np.arange(n_train2017), test_rows)
    plan = {
        "train": ("train2017", train_rows),
        "val": ("val2017", np.arange(len(meta["val2017"]["ids"]))),
        "test": ("train2017", test_rows),
    }
    for split in SPLITS:
        source, rows = plan[split]
        _assemble_split(out_dir, split, folders[source], rows, meta[source])

    n_pixels = len(train_rows) * CROP_SIZE * CROP_SIZE
    mean = meta["train2017"]["sums"][train_rows].sum(axis=0) / (255.0 * max(n_pixels, 1))
    manifest = {
        **settings,
        "preset": "thesis",
        "seed": seed,
        "test_size": test_size,
        "counts": {
            source: {
                **counts[source],
                **stats[source]["problems"],
                "people_all_joints_outside_image": stats[source]["people_all_joints_outside"],
                "joints_outside_image": stats[source]["joints_outside_image"],
                "zero_area_boxes": stats[source]["zero_area_boxes"],
                "images": stats[source]["images"],
                "crops": stats[source]["crops"],
            }
            for source in coco_io.SOURCES
        },
        "splits": {split: int(len(plan[split][1])) for split in SPLITS},
        "mean_rgb": [round(float(m), 6) for m in mean],
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(manifest_path, manifest)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def format_summary(manifest: dict) -> str:
    """The counts table printed at the end of `prepare` (like the thesis's Table 1)."""
    rows = [
        ("people (person annotations)", "people"),
        ("  skipped: crowd", "crowd"),
        ("  skipped: no labelled keypoint", "no_keypoints"),
        ("  skipped: all keypoints outside image", "people_all_joints_outside_image"),
        *[(f"  skipped: {p.replace('_', ' ')}", p) for p in IMAGE_PROBLEMS],
        ("crops", "crops"),
        ("joints outside image -> unlabelled", "joints_outside_image"),
        ("zero-area boxes -> keypoint extent", "zero_area_boxes"),
    ]
    c = manifest["counts"]
    lines = [f"{'':40s}{'train2017':>12s}{'val2017':>12s}"]
    for label, key in rows:
        lines.append(f"{label:40s}{c['train2017'].get(key, 0):>12,d}{c['val2017'].get(key, 0):>12,d}")
    s = manifest["splits"]
    lines.append("")
    lines.append(f"splits: train {s['train']:,d} (train2017 minus test) | val {s['val']:,d} (val2017) | "
                 f"test {s['test']:,d} (drawn from train2017, seed {manifest['seed']})")
    r, g, b = manifest["mean_rgb"]
    lines.append(f"mean RGB of the train crops: ({r:.3f}, {g:.3f}, {b:.3f})   [thesis: (0.410, 0.374, 0.354)]")
    return "\n".join(lines)
