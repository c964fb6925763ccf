"""`hgpose prepare`: datasets -> the thesis dataset store (crops, split, mean RGB).

The datasets (COCO 2017, LSP/LSPET, ...; data/formats/) are read into COCO-17 people first;
from then on every person is cut the same way, whatever its source. A store of several
sources holds, in each split, the first source's crops, then the second's, ...

How it stays fast, bounded in memory and resumable at full COCO scale (134k crops,
~26 GB, more than the RAM of a 24 GB machine):

1. Every annotation file is validated first: a bad file stops the run before anything
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

OUT_DIR is prepare's alone: it must be new, empty, or carry prepare's marker
(`.hgpose-prepare.json`, written before anything else, so an interrupted run is recognised
and resumed) or a store's manifest.json. Any other folder is refused before anything is
written, so prepare never replaces or deletes a file it did not write (`check_out_dir`).

Images are read as stored, whatever their EXIF orientation: COCO's annotations are in the
stored pixel frame (HRNet's reference COCO loader decodes with OpenCV's
IMREAD_IGNORE_ORIENTATION for that reason), and LSP's were made on the same pixels. The
images that carry a turning or mirroring orientation (tags 2-8) are counted
(`exif_oriented_images`), from the header read for the size anyway.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from hgpose import images, thesis
from hgpose.data.crop import CROP_SIZE, ENLARGE, clean_keypoints, cut_crop, thesis_crop_box, to_crop
from hgpose.data.formats import FORMATS, DatasetFormat, ImageTask, Source, derived_annotation_path, read_sources
from hgpose.data.store import FORMAT_VERSION, SPLITS
from hgpose.errors import HgposeError
from hgpose.io import LOCK_NAME, atomic_path, lock_dir, lock_scope, save_npy, write_json
from hgpose.progress import bar as progress_bar
from hgpose.workers import pool_size, process_pool

IMAGE_PROBLEMS = ("missing_image", "corrupt_image", "truncated_image", "size_mismatch", "oversized_image")
PROBLEM_OF = {"empty": "corrupt_image", "corrupt": "corrupt_image", "truncated": "truncated_image",
              "size_mismatch": "size_mismatch", "too_large": "oversized_image"}  # images.ImageProblem.reason
SHARD_ARRAYS = ("keypoints", "boxes", "ids", "sums", "planned")  # small per-crop arrays
CROP_BYTES = CROP_SIZE * CROP_SIZE * 3
MARKER = ".hgpose-prepare.json"  # written first into OUT_DIR: the folder is prepare's


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
    exif_oriented: bool = False  # the file carries an EXIF orientation 2-8 (read as stored all the same)


def read_bgr(path: str, width: int, height: int) -> tuple[np.ndarray | None, str | None, bool]:
    """Decode an image as stored, BGR uint8 [H,W,3] (OpenCV's order), or (None, reason) for a
    broken one; and whether its EXIF orientation would turn or mirror it on display.

    The size is checked from the header first (hgpose.images), so a decompression bomb or an
    image of the wrong size costs no decoding. The EXIF orientation is not applied: the
    annotations are in the stored pixel frame."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError):  # a folder where the image belongs: no image
        return None, "missing_image", False
    except OSError:  # no permission, an I/O error
        return None, "corrupt_image", False
    try:
        image = images.decode_bgr(data, expect=(width, height))
    except images.ImageProblem as e:
        return None, PROBLEM_OF[e.reason], False
    return image, None, images.exif_orientation(data) != 1


def process_image(task: ImageTask) -> ImageResult:
    """Decode one image and cut every person in it with the thesis crop rule."""
    n = len(task.ann_ids)
    image, problem, oriented = read_bgr(task.path, task.width, task.height)
    if problem is not None:
        return ImageResult(
            task.image_id, [], np.zeros((0, 17, 3), np.float32),
            np.zeros((0, 3), np.float32), np.zeros((0, 2), np.int64), np.zeros((0, 3)), problem, n,
        )
    people, outside = clean_keypoints(np.stack(task.keypoints), task.width, task.height)
    crops, kps_out, boxes, ids, sums = [], [], [], [], []
    zero_area = skipped = 0
    extents = task.extent or [None] * len(people)
    for ann_id, bbox, kps, extent in zip(task.ann_ids, task.bboxes, people, extents):
        if not (kps[:, 2] > 0).any():  # every labelled joint was outside the image
            skipped += 1
            continue
        zero_area += not (bbox[2] > 0 and bbox[3] > 0)
        if extent is not None:
            extent = clean_keypoints(extent, task.width, task.height)[0]
        rule_points = kps if extent is None or not (extent[:, 2] > 0).any() else extent
        box = thesis_crop_box(bbox, rule_points, task.width, task.height)
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
        None, skipped, outside, zero_area, oriented,
    )


def planned_crops(task: ImageTask) -> int:
    """How many crops an image gives if it decodes: its people with a labelled joint
    inside the image. Known from the annotation alone (process_image's rule)."""
    people, _ = clean_keypoints(np.stack(task.keypoints), task.width, task.height)
    return int((people[..., 2] > 0).any(axis=1).sum())


# ----------------------------------------------------------------------------- shards
@dataclass
class ShardStats:
    images: int = 0
    crops: int = 0
    problems: dict = field(default_factory=lambda: {p: 0 for p in IMAGE_PROBLEMS})
    people_all_joints_outside: int = 0
    joints_outside_image: int = 0
    zero_area_boxes: int = 0
    exif_oriented_images: int = 0


@dataclass
class ShardJob:
    """One shard of one source, and where each of its planned crops goes."""

    folder: Path                        # the shard's folder under OUT_DIR/.work/<source>
    tasks: list[ImageTask]
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
            stats.exif_oriented_images += r.exif_oriented
            k += n
    finally:
        for fd in fds.values():
            os.close(fd)
    stats.crops = sum(len(a) for a in small["ids"])
    tmp = job.folder.with_name(f".{job.folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, parts in small.items():
        save_npy(tmp / f"{name}.npy", np.concatenate(parts) if parts else _empty(name))  # a full disk names the file
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


def _part_folder(work: Path, key: tuple[int, str]) -> Path:
    """OUT_DIR/.work/<source index>-<part>: where one part's shards go."""
    return work / f"{key[0]}-{key[1]}"


def _shard_folder(work: Path, key: tuple[int, str], index: int) -> Path:
    return _part_folder(work, key) / f"shard_{index:05d}"


# ----------------------------------------------------------------------------- the split
def source_sizes(fmt: DatasetFormat, test_size, val_size, pool: int) -> tuple:
    """The (test, val) sizes a source uses: the given ones or its format's defaults. A
    default count larger than a small dataset becomes 10 % of it (with a note)."""
    test = fmt.default_test_size if test_size is None else test_size
    val = fmt.default_val_size if val_size is None else val_size
    if test_size is None and isinstance(test, int) and test > pool // 2:
        print(f"note: the default --test-size {test} is more than half of the {pool} crops "
              "available; using 10 % of them (give --test-size to choose)")
        test = 0.1
    return test, val


def split_plan(sources: list, sizes: dict[str, int], sizes_of: dict, seed: int) -> dict:
    """split -> [(part key, indices of the part's crops), ...] in source order: a split's
    rows are the first source's crops, then the second's, ..."""
    plan = {split: [] for split in SPLITS}
    for i, source in enumerate(sources):
        own = {part.name: sizes[part_key(i, part.name)] for part in source.parts}
        test, val = sizes_of[source.name]
        for split, (part, rows) in FORMATS[source.format].plan(own, test, val, seed, source.name).items():
            plan[split].append((part_key(i, part), rows))
    return plan


def part_key(source_index: int, part: str) -> tuple[int, str]:
    """Which source and which of its parts: parts of two sources may share a name."""
    return source_index, part


def _destinations(plan: dict, sizes: dict) -> dict:
    """part key -> (split index, row) of each of its crops, from a split plan."""
    dest = {key: (np.full(n, -1, np.int8), np.zeros(n, np.int64)) for key, n in sizes.items()}
    for i, split in enumerate(SPLITS):
        row = 0
        for key, rows in plan[split]:
            dest[key][0][rows] = i
            dest[key][1][rows] = np.arange(row, row + len(rows))
            row += len(rows)
    return dest


def _split_length(plan: dict, split: str) -> int:
    return sum(len(rows) for _, rows in plan[split])


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
    sources: str | os.PathLike | list,
    out_dir: str | os.PathLike,
    *,
    test_size: int | float | None = None,
    val_size: int | float | None = None,
    seed: int = 0,
    workers: int | None = None,
    keep_work: bool = False,
    shard_images: int = 32,
    progress: bool = True,
) -> dict:
    """Build the dataset store in `out_dir` from one or several datasets; returns the manifest.

    sources: a folder (COCO root or LSP folder, detected) or "coco:PATH" / "lsp:PATH", or a
        list of them: one store holds them all, each crop recording its source.
    test_size / val_size: a count or a fraction in (0, 1), per source; None = the format's
        default (COCO: test = the thesis's count from train2017, val = val2017; LSP: 10 % each).
    Started again after an interruption, it resumes from the finished shards.
    """
    specs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    out_dir = Path(out_dir)
    _check_options(workers, seed, shard_images)
    images.max_pixels()  # HGPOSE_MAX_PIXELS, which the workers read, checked before anything is written
    check_out_dir(out_dir)  # before the annotations are read: a refused OUT_DIR costs nothing
    with lock_scope():  # _prepare locks OUT_DIR once its inputs are valid
        return _prepare(specs, out_dir, test_size, val_size, seed, workers, keep_work, shard_images, progress)


def _check_options(workers, seed, shard_images) -> None:
    if workers is not None and (not _whole(workers) or workers < 1):
        raise HgposeError(f"--workers {workers!r}: give a whole number of processes >= 1")
    if not _whole(seed) or seed < 0:
        raise HgposeError(f"--seed {seed!r}: give a whole number >= 0")
    if not _whole(shard_images) or shard_images < 1:
        raise HgposeError(f"shard_images {shard_images!r}: give a whole number of images >= 1")


def _whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_out_dir(out_dir: Path) -> None:
    """Refuse, with one line, an OUT_DIR that holds anything `hgpose prepare` did not write.

    Prepare's own: a new or empty folder, one carrying its marker (written before anything
    else, so an interrupted run is recognised), a store's manifest.json (made before the
    marker existed; `_finished_store` then judges its settings) or the .work/params.json of
    such a store's interrupted run. Reads only: nothing is written here."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return  # new (or a file: ensure_dir says so when the folder is locked)
    names = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK_NAME)
    if not names or (out_dir / MARKER).is_file():
        return
    if _json_dict(out_dir / "manifest.json").get("format_version") is not None:
        return
    if _json_dict(out_dir / ".work" / "params.json").get("layout") == "drafts":
        return
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise HgposeError(f"{out_dir}: holds {shown}, which `hgpose prepare` did not write (no {MARKER} "
                      "nor a store's manifest.json); give a new or empty OUT_DIR")


def _json_dict(path: Path) -> dict:
    """The JSON object in `path`, or {} when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):  # missing, a folder, not JSON, not UTF-8
        return {}
    return value if isinstance(value, dict) else {}


def _prepare(specs: list, out_dir: Path, test_size, val_size, seed: int, workers: int | None, keep_work: bool,
             shard_images: int, progress: bool) -> dict:
    # 1. read and validate every source before anything is written
    sources = read_sources(specs)
    tasks = {part_key(i, part.name): part.tasks for i, s in enumerate(sources) for part in s.parts}

    # 2. the plan: every crop's split and row, from the annotations alone (an impossible
    #    --test-size fails here, before anything is written)
    per_image = {key: [planned_crops(t) for t in ts] for key, ts in tasks.items()}
    planned = {key: int(sum(n)) for key, n in per_image.items()}
    sizes_of = _sizes_of(sources, planned, test_size, val_size)
    plan = split_plan(sources, planned, sizes_of, seed)
    dest = _destinations(plan, planned)

    lock_dir(out_dir, "hgpose prepare", "OUT_DIR")  # a second prepare into OUT_DIR stops here
    check_out_dir(out_dir)  # again, now that no other prepare can be filling it
    settings = _settings(sources, seed, test_size, val_size)
    finished = _finished_store(out_dir, settings)
    if finished is not None:
        return finished

    # 3. drafts and shards (resumable), in a folder marked as prepare's before anything else
    started = time.perf_counter()
    write_json(out_dir / MARKER, {"written_by": "hgpose prepare", "note": (
        "this folder is a dataset store of hgpose prepare, which writes and replaces files here only "
        "because this marker is here")})
    work = out_dir / ".work"
    drafts = _start_work(work, out_dir, {**settings, "shard_images": shard_images, "layout": "drafts"}, plan)
    folders, pending = _shard_jobs(work, tasks, per_image, dest, drafts, shard_images)
    # The pool starts now that the work is known: never more processes than shards left to crop.
    with process_pool(pool_size(workers, len(pending))) as pool:
        _run_shards(pending, sum(len(t) for t in tasks.values()), pool, progress)

    # 4. the final split over the crops that exist: the plan itself unless images were broken
    meta, stats = {}, {}
    for key, part_folders in folders.items():
        meta[key], stats[key] = _load_meta(part_folders)
    final_plan = split_plan(sources, {k: len(m["ids"]) for k, m in meta.items()}, sizes_of, seed)
    _write_splits(out_dir, final_plan, meta, dest, {split: path for split, (path, _) in drafts.items()})
    for source in sources:
        if source.derived_annotations is not None:
            write_json(derived_annotation_path(out_dir, source.name), source.derived_annotations)
    manifest = _manifest(sources, settings, final_plan, meta, stats, sizes_of, out_dir)
    manifest["seconds"] = round(time.perf_counter() - started, 1)
    write_json(out_dir / "manifest.json", manifest)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def _sizes_of(sources: list[Source], planned: dict, test_size, val_size) -> dict:
    """source name -> (test size, val size) it uses; --val-size must apply to some source."""
    formats = [FORMATS[s.format] for s in sources]
    if val_size is not None and all(f.default_val_size is None for f in formats):
        drawn = ", ".join(name for name, f in FORMATS.items() if f.default_val_size is not None)
        own = ", ".join(f"{s.name}: {f.split_parts['val']}" for s, f in zip(sources, formats))
        raise HgposeError(f"--val-size applies to sources whose val split is drawn ({drawn}); each "
                          f"source here has a val split of its own ({own}) — drop --val-size")
    sizes = {}
    for i, (s, fmt) in enumerate(zip(sources, formats)):
        pool = planned[part_key(i, fmt.split_parts["test"])]  # the part the test crops come from
        sizes[s.name] = source_sizes(fmt, test_size, val_size, pool)
    return sizes


def _settings(sources: list[Source], seed: int, test_size, val_size) -> dict:
    """Everything that decides a store's content (for resume and the finished-store check)."""
    return {"format_version": FORMAT_VERSION,
            "crop": {"rule": "thesis", "size": CROP_SIZE, "enlarge": ENLARGE},
            "sources": [s.identity() for s in sources],
            "seed": seed, "test_size": test_size, "val_size": val_size}


def _finished_store(out_dir: Path, settings: dict) -> dict | None:
    """The manifest of a finished store made with these settings, None if there is none;
    a finished store made otherwise is an error (never overwritten)."""
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        old = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = None
    if not isinstance(old, dict):
        raise HgposeError(f"{manifest_path}: not a readable manifest; delete {out_dir} and run "
                          "`hgpose prepare` again")
    old_sources = old.get("sources")
    identity_keys = settings["sources"][0].keys()
    same = (isinstance(old_sources, list)
            and [{k: s.get(k) for k in identity_keys} for s in old_sources] == settings["sources"]
            and all(old.get(k) == v for k, v in settings.items() if k != "sources"))
    if same:
        return old
    if old.get("format_version") != settings["format_version"]:
        raise HgposeError(
            f"{out_dir} holds a store of format_version {old.get('format_version')}, made by an older "
            f"hgpose (this one writes {settings['format_version']}: keypoints in its pixel convention); "
            "delete it and run `hgpose prepare` again, or choose another OUT_DIR")
    raise HgposeError(
        f"{out_dir} already holds a finished dataset store made from other sources or "
        f"settings (seed {old.get('seed')}, test size {old.get('test_size')}); "
        "choose another OUT_DIR or delete this one"
    )


def _start_work(work: Path, out_dir: Path, work_settings: dict, plan: dict) -> dict:
    """OUT_DIR/.work for these settings (started over if made for others), with one draft
    images.npy per split, its space reserved. Returns split -> (draft path, header bytes)."""
    params_path = work / "params.json"
    if work.exists() and _json_dict(params_path) != work_settings:
        print(f"{work}: made from other sources or settings; starting over")
        shutil.rmtree(work)
    write_json(params_path, work_settings)
    drafts = {}
    for split in SPLITS:
        draft, final = work / "drafts" / f"{split}.npy", out_dir / split / "images.npy"
        if not draft.is_file() and final.is_file():  # moved into place by a run killed before the manifest
            draft.parent.mkdir(parents=True, exist_ok=True)  # .work may be gone (other settings)
            os.replace(final, draft)
        drafts[split] = (draft, _create_draft(draft, _split_length(plan, split)))
    return drafts


def _shard_jobs(work: Path, tasks: dict, per_image: dict, dest: dict, drafts: dict,
                shard_images: int) -> tuple[dict, list]:
    """Every part's shard folders (in order) and the jobs of the shards not done yet."""
    draft_info = {split: (str(path), header) for split, (path, header) in drafts.items()}
    folders, pending = {}, []
    for key, part_tasks in tasks.items():
        _part_folder(work, key).mkdir(parents=True, exist_ok=True)
        for stale in _part_folder(work, key).glob(".shard_*.tmp"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        folders[key] = []
        first = 0
        for index, begin in enumerate(range(0, len(part_tasks), shard_images)):
            shard = part_tasks[begin:begin + shard_images]
            n = sum(per_image[key][begin:begin + shard_images])
            folder = _shard_folder(work, key, index)
            folders[key].append(folder)
            if not (folder / "stats.json").is_file():
                pending.append(ShardJob(folder, shard, first, dest[key][0][first:first + n],
                                        dest[key][1][first:first + n], draft_info))
            first += n
    return folders, pending


def _run_shards(pending: list[ShardJob], total: int, pool, progress: bool) -> None:
    bar = progress_bar(total=total, initial=total - sum(len(job.tasks) for job in pending), unit="img",
                       desc="prepare", disable=not progress)
    done = pool.imap_unordered(crop_shard, pending) if pool is not None and len(pending) > 1 else map(crop_shard, pending)
    with bar:
        for n_images in done:
            bar.update(n_images)


def _write_splits(out_dir: Path, plan: dict, meta: dict, dest: dict, drafts: dict[str, Path]) -> None:
    """Each split's arrays from the final plan; its images.npy is its draft moved into place,
    or, where broken images left gaps, the crops that exist copied in order."""
    moves = []
    for i, split in enumerate(SPLITS):
        split_dir = out_dir / split
        for name in ("keypoints", "boxes", "ids"):
            save_npy(split_dir / f"{name}.npy", _gather(plan[split], meta, lambda m: m[name]))
        save_npy(split_dir / "source.npy", np.concatenate(
            [np.full(len(rows), source, np.uint8) for (source, _), rows in plan[split]]
            or [np.zeros(0, np.uint8)]))
        where = [(key, meta[key]["planned"][rows]) for key, rows in plan[split]]
        split_index = np.concatenate([dest[key][0][w] for key, w in where] or [np.zeros(0, np.int8)])
        draft_rows = np.concatenate([dest[key][1][w] for key, w in where] or [np.zeros(0, np.int64)])
        n_draft = _read_header(drafts[split])[0][0]
        if len(draft_rows) == n_draft and (split_index == i).all() and (draft_rows == np.arange(n_draft)).all():
            moves.append((drafts[split], split_dir / "images.npy"))
        else:  # broken images left gaps: copy the crops that exist, in order
            _copy_rows(split_dir / "images.npy", drafts, split_index, draft_rows)
    for draft, final in moves:  # after every copy, which may read any draft
        os.replace(draft, final)


def _gather(entries: list, meta: dict, pick) -> np.ndarray:
    """The rows of several parts' arrays, concatenated in plan order."""
    return np.concatenate([pick(meta[key])[rows] for key, rows in entries])


def _manifest(sources: list[Source], settings: dict, plan: dict, meta: dict, stats: dict,
              sizes_of: dict, out_dir: Path) -> dict:
    train_sums = _gather(plan["train"], meta, lambda m: m["sums"])
    n_pixels = len(train_sums) * CROP_SIZE * CROP_SIZE
    mean = train_sums.sum(axis=0) / (255.0 * max(n_pixels, 1))
    described = []
    for i, (source, identity) in enumerate(zip(sources, settings["sources"])):
        counts = {part.name: _part_counts(part.counts, stats[part_key(i, part.name)]) for part in source.parts}
        own = {split: int(sum(len(rows) for key, rows in plan[split] if key[0] == i))
               for split in SPLITS}
        test, val = sizes_of[source.name]
        described.append({**identity, "annotations": FORMATS[source.format].annotation_files(source, out_dir),
                          "test_size": test, "val_size": val, "counts": counts, "splits": own})
    return {
        **settings,
        "sources": described,
        "preset": "thesis",
        "splits": {split: _split_length(plan, split) for split in SPLITS},
        "mean_rgb": [round(float(m), 6) for m in mean],
    }


def _part_counts(counts: dict, stats: dict) -> dict:
    return {
        **counts,
        **stats["problems"],
        "people_all_joints_outside_image": stats["people_all_joints_outside"],
        "joints_outside_image": stats["joints_outside_image"],
        "zero_area_boxes": stats["zero_area_boxes"],
        "images": stats["images"],
        # images whose EXIF orientation (2-8) a viewer would apply; cropped as stored all the same
        "exif_oriented_images": stats.get("exif_oriented_images", 0),
        "crops": stats["crops"],
    }


def format_summary(manifest: dict) -> str:
    """The counts table printed at the end of `prepare` (like the thesis's Table 1): one
    column per part of each source."""
    rows = [
        ("people (person annotations)", "people"),
        ("  skipped: crowd", "crowd"),
        ("  skipped: no labelled keypoint", "no_keypoints"),
        ("  skipped: all keypoints outside image", "people_all_joints_outside_image"),
        *[(f"  skipped: {p.replace('_', ' ')}", p) for p in IMAGE_PROBLEMS],
        ("crops", "crops"),
        ("joints outside image -> unlabelled", "joints_outside_image"),
        ("zero-area boxes -> keypoint extent", "zero_area_boxes"),
        ("images with EXIF orientation (as stored)", "exif_oriented_images"),
    ]
    columns = [(f"{s['name']}/{part}" if len(manifest["sources"]) > 1 else part, c)
               for s in manifest["sources"] for part, c in s["counts"].items()]
    width = max(12, *(len(name) + 2 for name, _ in columns))
    lines = [f"{'':40s}" + "".join(f"{name:>{width}s}" for name, _ in columns)]
    for label, key in rows:
        lines.append(f"{label:40s}" + "".join(f"{c.get(key, 0):>{width},d}" for _, c in columns))
    lines.append("")
    s = manifest["splits"]
    lines.append(f"splits: train {s['train']:,d} | val {s['val']:,d} | test {s['test']:,d} (seed {manifest['seed']})")
    for source in manifest["sources"]:
        sp = source["splits"]
        rule = FORMATS[source["format"]].rule
        absent = 17 - len(source["joints"])
        lines.append(f"  {source['name']} ({source['format']}): train {sp['train']:,d} | val {sp['val']:,d} | "
                     f"test {sp['test']:,d} ({rule}); {len(source['joints'])} of 17 joints"
                     + (f" ({absent} absent: never in a loss or metric)" if absent else ""))
    r, g, b = manifest["mean_rgb"]
    reference = ", ".join(f"{v:.3f}" for v in thesis.TRAIN_MEAN_RGB)
    lines.append(f"mean RGB of the train crops: ({r:.3f}, {g:.3f}, {b:.3f})   [thesis: ({reference})]")
    return "\n".join(lines)
