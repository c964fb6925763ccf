"""`hgpose prepare`: COCO 2017 -> the thesis dataset store (crops, split, mean RGB).

How it stays fast, bounded in memory and resumable at full COCO scale (134k crops,
~26 GB, more than the RAM of a 24 GB machine):

1. Both annotation files are validated first: a bad file stops the run before anything
   is written to OUT_DIR.
2. The split is planned from the annotations alone: how many crops each image gives
   (its people with a labelled joint inside the image) is known before any pixel is
   decoded, so the seeded test draw (numpy PCG64, identical on every machine) fixes the
   split and row of every crop up front. Each split's images.npy is preallocated as a
   *draft* under OUT_DIR/.work/drafts.
3. Workers decode and crop the images a *shard* (a fixed block of images) at a time and
   write every crop straight to its row of its draft, so each crop is written once and
   pixels never travel between processes. A shard's small arrays and counts are written
   last, to a temporary folder renamed into place: a killed run leaves only whole shards,
   and a new run redoes only the others (rewriting the same rows).
4. The drafts are renamed into OUT_DIR/<split>/images.npy. Only when an image turned out
   to be broken (missing, corrupt, truncated: its crops are missing) is the split drawn
   again over the crops that exist and copied out of the drafts, so the result is the
   same as if the broken images had never been listed. manifest.json is written last:
   it marks the store as complete.
"""

from __future__ import annotations

import errno
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

from hgpose import images
from hgpose.data import coco as coco_io
from hgpose.data.crop import CROP_SIZE, ENLARGE, clean_keypoints, cut_crop, thesis_crop_box, to_crop
from hgpose.data.store import FORMAT_VERSION, SPLITS
from hgpose.errors import HgposeError
from hgpose.io import atomic_path, lock_dir, lock_scope, save_npy, write_json

IMAGE_PROBLEMS = ("missing_image", "corrupt_image", "truncated_image", "size_mismatch", "oversized_image")
PROBLEM_OF = {"empty": "corrupt_image", "corrupt": "corrupt_image", "truncated": "truncated_image",
              "size_mismatch": "size_mismatch", "too_large": "oversized_image"}  # images.ImageProblem.reason
SHARD_ARRAYS = ("keypoints", "boxes", "ids", "sums", "planned")  # small per-crop arrays
CROP_BYTES = CROP_SIZE * CROP_SIZE * 3


# ----------------------------------------------------------------------------- one image
@dataclass
class ImageResult:
    image_id: int
    images: list[np.ndarray]    # n crops, uint8 [256,256,3] each
    keypoints: np.ndarray       # float32 [n,17,3] crop coordinates
    boxes: np.ndarray           # float32 [n,3]
    ids: np.ndarray             # int64 [n,2]
    sums: np.ndarray            # float64 [n,3] per-crop channel sums (for the mean RGB)
    problem: str | None = None  # one of IMAGE_PROBLEMS: the image's people were skipped
    people_skipped: int = 0
    joints_outside_image: int = 0
    zero_area_boxes: int = 0


def read_bgr(path: str, width: int, height: int) -> tuple[np.ndarray | None, str | None]:
    """Decode an image as BGR uint8 [H,W,3] (OpenCV's order), or (None, reason) for a broken one.

    The size is checked from the header first (hgpose.images), so a decompression bomb or an
    image of the wrong size costs no decoding."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, "missing_image"
    except OSError:
        return None, "corrupt_image"
    try:
        return images.decode_bgr(data, expect=(width, height)), None
    except images.ImageProblem as e:
        return None, PROBLEM_OF[e.reason]


def process_image(task: coco_io.ImageTask) -> ImageResult:
    """Decode one image and cut every person in it with the thesis crop rule."""
    n = len(task.ann_ids)
    image, problem = read_bgr(task.path, task.width, task.height)
    if problem is not None:
        return ImageResult(
            task.image_id, [], np.zeros((0, 17, 3), np.float32),
            np.zeros((0, 3), np.float32), np.zeros((0, 2), np.int64), np.zeros((0, 3)), problem, n,
        )
    people, outside = clean_keypoints(np.stack(task.keypoints), task.width, task.height)
    crops, kps_out, boxes, ids, sums = [], [], [], [], []
    zero_area = skipped = 0
    for ann_id, bbox, kps in zip(task.ann_ids, task.bboxes, people):
        if not (kps[:, 2] > 0).any():  # every labelled joint was outside the image
            skipped += 1
            continue
        zero_area += not (bbox[2] > 0 and bbox[3] > 0)
        box = thesis_crop_box(bbox, kps, task.width, task.height)
        # cut in BGR, then swap the channels of the small crop only (the same pixels:
        # resizing works on each channel alone)
        crop = cv2.cvtColor(cut_crop(image, box), cv2.COLOR_BGR2RGB)
        crops.append(crop)
        kps_out.append(to_crop(kps, box))
        boxes.append((box.x0, box.y0, box.side))
        ids.append((task.image_id, ann_id))
        sums.append(cv2.sumElems(crop)[:3])  # exact for uint8 sums, far faster than numpy here
    return ImageResult(
        task.image_id,
        crops,
        np.stack(kps_out).astype(np.float32) if kps_out else np.zeros((0, 17, 3), np.float32),
        np.asarray(boxes, np.float32).reshape(-1, 3),
        np.asarray(ids, np.int64).reshape(-1, 2),
        np.asarray(sums, np.float64).reshape(-1, 3),
        None, skipped, outside, zero_area,
    )


def planned_crops(task: coco_io.ImageTask) -> int:
    """How many crops an image gives if it decodes: its people with a labelled joint
    inside the image. Known from the annotation alone (process_image's rule)."""
    people, _ = clean_keypoints(np.stack(task.keypoints), task.width, task.height)
    return int((people[..., 2] > 0).any(axis=1).sum())


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


@dataclass
class ShardJob:
    """One shard of one source, and where each of its planned crops goes."""

    folder: Path                        # the shard's folder under OUT_DIR/.work/<source>
    tasks: list[coco_io.ImageTask]
    first: int                          # planned index (within the source) of its first crop
    split: np.ndarray                   # int8 [planned crops of the shard]: index into SPLITS
    row: np.ndarray                     # int64: the crop's row in that split
    drafts: dict[str, tuple[str, int]]  # split -> (draft images.npy, header bytes before row 0)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def crop_shard(job: ShardJob) -> int:
    """Crop every image of one shard and write each crop to its row of its split's draft;
    runs in a worker process. Then the shard's small arrays and counts appear atomically
    (temp folder + rename): they mark the shard as done. Returns the number of images."""
    stats = ShardStats(images=len(job.tasks))
    small = {name: [] for name in SHARD_ARRAYS}
    fds: dict[str, int] = {}
    try:
        k = 0  # planned crops of this shard so far
        for task in job.tasks:
            r = process_image(task)
            # a decoded image gives exactly its planned crops (the same clean_keypoints rule)
            n = planned_crops(task) if r.problem else len(r.ids)
            if r.problem:
                stats.problems[r.problem] += r.people_skipped
            else:
                stats.people_all_joints_outside += r.people_skipped
                for crop, split, row in zip(r.images, job.split[k:k + n], job.row[k:k + n]):
                    name = SPLITS[split]
                    if name not in fds:
                        fds[name] = os.open(job.drafts[name][0], os.O_WRONLY)
                    _pwrite_all(fds[name], memoryview(crop).cast("B"),
                                job.drafts[name][1] + int(row) * CROP_BYTES)
                for name in ("keypoints", "boxes", "ids", "sums"):
                    small[name].append(getattr(r, name))
                small["planned"].append(np.arange(job.first + k, job.first + k + n, dtype=np.int64))
            stats.joints_outside_image += r.joints_outside_image
            stats.zero_area_boxes += r.zero_area_boxes
            k += n
    finally:
        for fd in fds.values():
            os.close(fd)
    stats.crops = sum(len(a) for a in small["ids"])
    tmp = job.folder.with_name(f".{job.folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, parts in small.items():
        np.save(tmp / f"{name}.npy", np.concatenate(parts) if parts else _empty(name))
    write_json(tmp / "stats.json", stats.__dict__)
    os.replace(tmp, job.folder)
    return len(job.tasks)


EMPTY = {  # name -> (dtype, shape after N): what a shard without a single crop stores
    "keypoints": (np.float32, (17, 3)), "boxes": (np.float32, (3,)), "ids": (np.int64, (2,)),
    "sums": (np.float64, (3,)), "planned": (np.int64, ()),
}


def _empty(name: str) -> np.ndarray:
    dtype, shape = EMPTY[name]
    return np.zeros((0, *shape), dtype)


def _shard_folder(work: Path, source: str, index: int) -> Path:
    return work / source / f"shard_{index:05d}"


# ----------------------------------------------------------------------------- the split
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


def split_plan(n_train2017: int, n_val2017: int, test_size: int | float, seed: int) -> dict:
    """split -> (source, indices of the source's crops in the split, in order)."""
    test_rows = draw_test(n_train2017, test_size, seed)
    return {
        "train": ("train2017", np.setdiff1d(np.arange(n_train2017), test_rows)),
        "val": ("val2017", np.arange(n_val2017)),
        "test": ("train2017", test_rows),
    }


def _destinations(plan: dict, sizes: dict) -> dict:
    """source -> (split index, row) of each of its crops, from a split plan."""
    dest = {source: (np.full(n, -1, np.int8), np.zeros(n, np.int64)) for source, n in sizes.items()}
    for i, split in enumerate(SPLITS):
        source, rows = plan[split]
        dest[source][0][rows] = i
        dest[source][1][rows] = np.arange(len(rows))
    return dest


# ----------------------------------------------------------------------------- drafts
def _npy_header(n: int) -> dict:
    return {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
            "shape": (n, CROP_SIZE, CROP_SIZE, 3)}


def _read_header(path: Path) -> tuple[tuple, int]:
    """Shape and header size of an .npy file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read(f)
        return shape, f.tell()


def _create_draft(path: Path, n: int) -> int:
    """An .npy for n crops with its disk space reserved (so a full disk fails now, not
    hours in); an existing draft of the right size is kept (resume). Returns the header size."""
    if path.is_file():
        try:
            shape, header = _read_header(path)
        except (OSError, ValueError):  # not an .npy of ours (e.g. an unrelated file): remade
            shape = None
        if shape == _npy_header(n)["shape"]:
            return header
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, _npy_header(n))
        header = f.tell()
        if n:
            try:
                os.posix_fallocate(f.fileno(), header, n * CROP_BYTES)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise HgposeError(
                        f"{path.parent}: not enough disk space for {n:,d} crops ({n * CROP_BYTES / 1e9:.1f} GB); "
                        "free some space or choose another OUT_DIR") from None
                # file systems without fallocate: a sparse file grows as rows are written
        f.truncate(header + n * CROP_BYTES)
    return header


def _copy_rows(path: Path, drafts: dict[str, Path], split_index: np.ndarray, rows: np.ndarray,
               chunk: int = 256) -> None:
    """Write an images.npy whose i-th crop is row rows[i] of draft SPLITS[split_index[i]]."""
    sources = {i: np.load(drafts[name], mmap_mode="r") for i, name in enumerate(SPLITS)
               if (split_index == i).any()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, _npy_header(len(rows)))
        for start in range(0, len(rows), chunk):
            where, at = split_index[start:start + chunk], rows[start:start + chunk]
            block = np.empty((len(at), CROP_SIZE, CROP_SIZE, 3), np.uint8)
            for i, source in sources.items():
                block[where == i] = source[at[where == i]]
            block.tofile(f)


def _load_meta(folders: list[Path]) -> tuple[dict, dict]:
    """Small per-crop arrays of every shard, concatenated, and the summed statistics."""
    meta = {name: [] for name in SHARD_ARRAYS}
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
    return {k: np.concatenate(v) if v else _empty(k) for k, v in meta.items()}, totals


# ----------------------------------------------------------------------------- prepare
def prepare(
    coco_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    test_size: int | float = 5064,
    seed: int = 0,
    workers: int | None = None,
    keep_work: bool = False,
    shard_images: int = 32,
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
    # The workers start first, so that their start-up overlaps the reading of the annotations.
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) if workers > 1 else None
    try:
        with lock_scope():  # _prepare locks OUT_DIR once its inputs are validated
            return _prepare(coco_root, out_dir, test_size, seed, pool, keep_work, shard_images, progress)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _prepare(coco_root: Path, out_dir: Path, test_size: int | float, seed: int, pool, keep_work: bool,
             shard_images: int, progress: bool) -> dict:
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

    # 2. the plan: every crop's split and row, from the annotations alone (an impossible
    #    --test-size fails here, before anything is written)
    per_image = {source: [planned_crops(t) for t in tasks[source]] for source in coco_io.SOURCES}
    planned = {source: int(sum(n)) for source, n in per_image.items()}
    plan = split_plan(planned["train2017"], planned["val2017"], test_size, seed)
    dest = _destinations(plan, planned)

    lock_dir(out_dir, "hgpose prepare", "OUT_DIR")  # a second prepare into OUT_DIR stops here
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

    # 3. drafts and shards (resumable)
    work = out_dir / ".work"
    params_path = work / "params.json"
    work_settings = {**settings, "seed": seed, "test_size": test_size, "shard_images": shard_images,
                     "layout": "drafts"}
    if params_path.is_file() and json.loads(params_path.read_text()) != work_settings:
        print(f"{work}: made from other sources or settings; starting over")
        shutil.rmtree(work)
    write_json(params_path, work_settings)
    started = time.perf_counter()
    drafts = {split: work / "drafts" / f"{split}.npy" for split in SPLITS}
    for split, draft in drafts.items():
        final = out_dir / split / "images.npy"
        if not draft.is_file() and final.is_file():  # moved into place by a run killed before the manifest
            draft.parent.mkdir(parents=True, exist_ok=True)  # .work may be gone (other settings)
            os.replace(final, draft)
    headers = {split: _create_draft(drafts[split], len(plan[split][1])) for split in SPLITS}
    draft_info = {split: (str(drafts[split]), headers[split]) for split in SPLITS}

    folders, pending = {}, []
    for source in coco_io.SOURCES:
        (work / source).mkdir(parents=True, exist_ok=True)
        for stale in (work / source).glob(".shard_*.tmp"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        folders[source] = []
        first = 0
        for index, begin in enumerate(range(0, len(tasks[source]), shard_images)):
            shard = tasks[source][begin:begin + shard_images]
            n = sum(per_image[source][begin:begin + shard_images])
            folder = _shard_folder(work, source, index)
            folders[source].append(folder)
            if not (folder / "stats.json").is_file():
                pending.append(ShardJob(folder, shard, first, dest[source][0][first:first + n],
                                        dest[source][1][first:first + n], draft_info))
            first += n
    total = sum(len(t) for t in tasks.values())
    bar = tqdm(total=total, initial=total - sum(len(job.tasks) for job in pending), unit="img",
               desc="prepare", disable=not progress, dynamic_ncols=True)
    done = pool.imap_unordered(crop_shard, pending) if pool is not None and len(pending) > 1 else map(crop_shard, pending)
    with bar:
        for n_images in done:
            bar.update(n_images)

    # 4. the final split over the crops that exist: the plan itself unless images were broken
    meta, stats = {}, {}
    for source in coco_io.SOURCES:
        meta[source], stats[source] = _load_meta(folders[source])
    final_plan = split_plan(len(meta["train2017"]["ids"]), len(meta["val2017"]["ids"]), test_size, seed)
    moves = []
    for i, split in enumerate(SPLITS):
        source, rows = final_plan[split]
        split_dir = out_dir / split
        for name in ("keypoints", "boxes", "ids"):
            save_npy(split_dir / f"{name}.npy", meta[source][name][rows])
        where = meta[source]["planned"][rows]
        split_index, draft_rows = dest[source][0][where], dest[source][1][where]
        if len(rows) == len(plan[split][1]) and (split_index == i).all() and (draft_rows == np.arange(len(rows))).all():
            moves.append((drafts[split], split_dir / "images.npy"))
        else:  # broken images left gaps: copy the crops that exist, in order
            _copy_rows(split_dir / "images.npy", drafts, split_index, draft_rows)
    for draft, final in moves:  # after every copy, which may read any draft
        os.replace(draft, final)

    train_rows = final_plan["train"][1]
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
        "splits": {split: int(len(final_plan[split][1])) for split in SPLITS},
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
