"""`hgpose evaluate`: score a trained network on one split of the dataset store.

Which crops the network sees is the *protocol* (evaluate/protocols.py): `thesis` (the
store's crops, placed with the ground-truth keypoints), `gt-box` (each person cropped
from the original image by its annotated box alone; the default) or `detections` (a
detector's boxes, the standard COCO protocol). Two families of metrics:
- the thesis PCK (SPEC §5, evaluate/pck.py): argmax positions on the 64x64 grid against the
  thesis-codec ground truth, < 3.2 heatmap px, per-image mean; all / visible / limbs. It is
  defined on the thesis crops' heatmaps, so it always comes from the store's crops (under
  gt-box too, labelled so; not under detections, where people are not matched to crops);
- standard metrics on original-image coordinates (evaluate/metrics.py): heatmaps decoded
  with the run's codec, mapped back through each crop's box, then PCK@0.2 (box and torso
  normalised) and COCO OKS AP/AR by pycocotools' COCOeval on the original annotations.

OUT_DIR receives metrics.json, metrics.md, per_image.csv, keypoints_<split>_results.json
(COCO results format) and errors.png (the error diagnosis of evaluate/errors.py), as a set: written to a staging folder and moved into OUT_DIR together,
metrics.json last (`hgpose.outputs.staged`), so a failed call (a full disk) leaves OUT_DIR as it
was. OUT_DIR must be new, empty or an earlier evaluate output; that it can be written is
checked before the split is scored. Crops are read from the memory-mapped store batch by
batch, so a split is never loaded whole.
"""

from __future__ import annotations

import contextlib
import csv
import re
import dataclasses
import io
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hgpose.data.crop import to_image
from hgpose.data.store import Split, Store
from hgpose.errors import HgposeError
from hgpose.evaluate import errors as diagnosis
from hgpose.evaluate import metrics as std
from hgpose.evaluate import protocols
from hgpose.evaluate.pck import SUBSETS
from hgpose.evaluate.split_pass import Forward, network_forward, split_pass, store_batches
from hgpose.inference.estimator import decode_to_image, target_peak
from hgpose.io import atomic_path, write_json
from hgpose.outputs import leftover_staging, staged
from hgpose.progress import bar as progress_bar
from hgpose.runs import default_eval_dir
from hgpose.skeleton import JOINTS, NUM_JOINTS
from hgpose.thesis import LABEL as THESIS_LABEL
from hgpose.thesis import PCK as THESIS_PCK
from hgpose.thesis import data_kinds, data_mismatch

# SPEC §7: the thesis's own numbers for its 1-stack SHG, printed beside ours for reference.
THESIS_REFERENCE = THESIS_PCK["SHG"]

@dataclass
class SplitPredictions:
    """Per-person results of one pass over a split, all numpy, in split order."""

    coords: np.ndarray        # float64 [N, 17, 2] predicted (x, y) in original-image pixels
    scores: np.ndarray        # float32 [N, 17] heatmap maxima
    thesis: dict              # subset -> float [N] per-image thesis PCK, NaN = not counted
    correct: np.ndarray       # bool [N, 17] thesis-correct (among labelled joints)
    labelled: np.ndarray      # bool [N, 17] labelled joints (v > 0)
    # bool [N]: False where the person's original image could not be read (gt-box): such
    # people are in no image-coordinate metric. None: every image was read.
    image_read: np.ndarray | None = None


@torch.inference_mode()
def predict_split(split: Split, forward: Forward, codec, *, batch_size: int = 32,
                  progress: bool = False) -> SplitPredictions:
    """Run `forward` over the split's crops in batches (the one pass, `split_pass`) and score
    what it returns. The thesis PCK is computed on the heatmaps' device with the
    implementation training validates with, so evaluate and training cannot disagree."""
    n = len(split)
    if n == 0:
        raise HgposeError(f"split {split.name!r} is empty: nothing to evaluate")
    coords, scores, correct, labelled = [], [], [], []
    per_image = {name: [] for name in SUBSETS}
    boxes = np.asarray(split.boxes)
    with progress_bar(total=n, unit="img", desc=f"evaluate {split.name}", disable=not progress) as bar:
        for batch in split_pass(store_batches(split, batch_size), forward):
            for name, (values, valid) in batch.pck.items():
                per_image[name].append(torch.where(valid, values, torch.nan).cpu())
            correct.append(batch.correct.cpu())
            labelled.append(batch.counted.cpu())
            xy, s = decode_to_image(codec, batch.heatmaps, boxes[batch.rows.numpy()])
            coords.append(xy)
            scores.append(s)
            bar.update(len(batch.rows))
    return SplitPredictions(
        coords=np.concatenate(coords),
        scores=np.concatenate(scores),
        thesis={name: torch.cat(parts).numpy() for name, parts in per_image.items()},
        correct=torch.cat(correct).numpy(),
        labelled=torch.cat(labelled).numpy(),
    )


def ground_truth(split: Split, coco) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints [N, 17, 3] in image pixels, person box longer side [N]) for the split.

    Keypoints are the stored crop keypoints mapped back through the crop box: exactly the
    joints the thesis PCK counts (prepare drops labels outside the image), and equal to
    the annotation to float precision. `coco`: the split's annotation file (one COCO) or,
    for a store of several sources, {source index: COCO}. A source without person boxes
    (LSP) has the extent of the labelled keypoints as its box.
    """
    cocos = _per_source(split, coco)
    kps = np.asarray(split.keypoints, np.float64)
    xy = to_image(kps[..., :2], np.asarray(split.boxes))
    gt = np.concatenate([xy, kps[..., 2:]], -1)
    box_side = np.zeros(len(split), np.float64)
    for source, rows in _rows_by_source(split).items():
        anns = cocos[source].anns
        box_side[rows] = [max(anns[int(a)]["bbox"][2:]) for a in split.ids[rows, 1]]
    return gt, box_side


def check_annotated(split: Split, cocos: dict) -> None:
    """Every person of the split must be in its source's annotation file."""
    ids = np.asarray(split.ids)
    for source, rows in _rows_by_source(split).items():
        missing = [int(a) for a in ids[rows, 1] if int(a) not in cocos[source].anns]
        if missing:
            # --annotations only replaces the file of a one-source store
            fix = ("pass the right file with --annotations" if len(cocos) == 1 else
                   "put each source's annotation file back where the manifest records it, or re-run `hgpose prepare`")
            raise HgposeError(
                f"the annotation file of source {source} lacks {len(missing)} of the split's people (e.g. "
                f"annotation id {missing[0]}); was the store prepared from other data? {fix}")


def _per_source(split: Split, coco) -> dict:
    return coco if isinstance(coco, dict) else {int(s): coco for s in np.unique(split.source)}


def _rows_by_source(split: Split) -> dict[int, np.ndarray]:
    source = np.asarray(split.source)
    return {int(s): np.flatnonzero(source == s) for s in np.unique(source)}


def score(split: Split, predictions: SplitPredictions, coco, *, source_names: list[str] | None = None,
          joints: np.ndarray | None = None) -> tuple[dict, list[dict], list[dict]]:
    """(metrics, per-image rows, COCO results) from a split's predictions and its annotation
    file(s): one COCO, or {source index: COCO} for a store of several sources.

    joints: bool [17], the joints scored (default all); the others count in no metric.
    Metrics pool every person; COCO AP is per source (image ids are the sources' own), and
    top level where the split has one source.
    """
    cocos = _per_source(split, coco)
    by_source = _rows_by_source(split)
    ids = np.asarray(split.ids)
    check_annotated(split, cocos)
    gt, box_side = ground_truth(split, cocos)
    # A person without a prediction (gt-box: unreadable image, box outside it) is left out
    # of PCK@0.2; in COCO AP it stays ground truth of its image, a miss, unless the image
    # itself could not be read (then the image is not evaluated at all).
    predicted = np.isfinite(predictions.coords).all(axis=(1, 2))
    read = np.ones(len(split), bool) if predictions.image_read is None else predictions.image_read
    gt_predicted = np.where(predicted[:, None, None], gt, 0.0)
    coords = np.where(predicted[:, None, None], predictions.coords, 0.0)
    bbox_pck = std.normalised_pck(coords, gt_predicted, box_side)
    torso_pck = std.normalised_pck(coords, gt_predicted, std.torso_size(gt))
    results = std.to_coco_results(coords[predicted], predictions.scores[predicted], ids[predicted])
    result_of = dict(zip(np.flatnonzero(predicted), results))
    names = source_names or [str(s) for s in range(max(by_source) + 1)]
    coco_stats = {names[s]: std.coco_keypoint_ap(std.split_ground_truth(cocos[s], ids[rows, 1], joints),
                                                 [result_of[i] for i in rows if i in result_of],
                                                 image_ids=np.unique(ids[rows[read[rows]], 0]))
                  for s, rows in by_source.items()}

    thesis = {name: _nanmean(v) for name, v in predictions.thesis.items()}
    n_per_joint = predictions.labelled.sum(0)
    per_joint = {
        JOINTS[j]: (float(predictions.correct[:, j].sum() / n_per_joint[j]) if n_per_joint[j] else None)
        for j in range(NUM_JOINTS)
    }
    metrics = {
        "pck_thesis": thesis,
        "pck_thesis_images": {name: int(np.isfinite(v).sum()) for name, v in predictions.thesis.items()},
        "pck_thesis_per_joint": per_joint,
        "pck@0.2": {"bbox": bbox_pck["mean"], "torso": torso_pck["mean"]},
        "pck@0.2_images": {"bbox": bbox_pck["n_images"], "torso": torso_pck["n_images"]},
        "pck@0.2_per_joint": {"bbox": bbox_pck["per_joint"], "torso": torso_pck["per_joint"]},
        "coco": next(iter(coco_stats.values())) if len(coco_stats) == 1
        else {name: float("nan") for name in std.COCO_STATS},
        "n_images": len(split),
        "n_joints": int(predictions.labelled.sum()),
    }
    if len(by_source) > 1:
        metrics["by_source"] = {names[s]: {
            "n_images": len(rows),
            "pck_thesis": _nanmean(predictions.thesis["all"][rows]),
            "pck@0.2": {"bbox": _nanmean(bbox_pck["per_image"][rows]),
                        "torso": _nanmean(torso_pck["per_image"][rows])},
            "coco": coco_stats[names[s]]} for s, rows in by_source.items()}
    return metrics, _per_image_rows(split, predictions, gt, bbox_pck, torso_pck), results


def _per_image_rows(split: Split, predictions, gt, bbox_pck, torso_pck) -> list[dict]:
    ids, source = np.asarray(split.ids), np.asarray(split.source)
    labelled = gt[..., 2] > 0
    rows = []
    for i in range(len(split)):
        rows.append({
            "index": i, "source": int(source[i]), "image_id": int(ids[i, 0]), "ann_id": int(ids[i, 1]),
            "labelled": int(labelled[i].sum()), "visible": int((gt[i, :, 2] >= 2).sum()),
            **{f"pck_thesis_{name}": _cell(predictions.thesis[name][i]) for name in SUBSETS},
            "pck@0.2_bbox": _cell(bbox_pck["per_image"][i]),
            "pck@0.2_torso": _cell(torso_pck["per_image"][i]),
            "mean_score": _cell(float(predictions.scores[i].mean()), 5),
        })
    return rows


def annotation_file(store: Store, split: str, override: str | Path | None = None) -> Path:
    """The annotation file of a split of a one-source store (see `Store.annotation_files`)."""
    return store.annotation_files(split, override)[0]


def load_annotations(path: Path):
    from hgpose.data.formats.coco import load_coco

    if path.is_dir():
        raise HgposeError(f"{path}: is a folder; give the COCO annotation file itself "
                          "(e.g. annotations/person_keypoints_val2017.json) with --annotations")
    if not path.is_file():
        raise HgposeError(f"{path}: COCO annotation file not found (the store records where it was "
                          "when prepared); pass its new location with --annotations")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return load_coco(path)


JOINT_SETS = ("trained", "all", "body")


def select_joints(spec: str, trained: np.ndarray) -> np.ndarray:
    """bool [17] from --joints: "trained" (the joints the network saw in training), "all",
    "body" (the 12 without the face) or comma-separated joint names."""
    if spec == "trained":
        return np.asarray(trained, bool)
    if spec == "all":
        return np.ones(NUM_JOINTS, bool)
    if spec == "body":
        return np.array([j >= 5 for j in range(NUM_JOINTS)])
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in JOINTS]
    if unknown or not names:
        raise HgposeError(f"--joints {spec}: give one of {', '.join(JOINT_SETS)} or joint names from "
                          f"{', '.join(JOINTS)}")
    return np.array([name in names for name in JOINTS])


def only_joints(split: Split, joints: np.ndarray) -> Split:
    """The split with every joint outside `joints` unlabelled, in memory (the store is
    untouched), so no metric counts it."""
    if np.all(joints):
        return split
    keypoints = np.array(split.keypoints)
    keypoints[:, ~joints] = 0
    return dataclasses.replace(split, keypoints=keypoints)


def evaluate(run_dir: str | Path, data_dir: str | Path, *, split: str = "test", protocol: str = "gt-box",
             boxes: str | Path | None = None, box_score_threshold: float | None = None,
             checkpoint: str | Path | None = None, flip: bool = False, refine: str | None = None,
             out_dir: str | Path | None = None, batch_size: int = 32, device: str = "auto",
             annotations: str | Path | None = None, joints: str = "trained",
             precision: str = "auto", progress: bool = True) -> dict:
    """Evaluate a run (or a weights file) on a split; writes OUT_DIR and returns metrics.json's
    content plus "out_dir".

    protocol: "thesis", "gt-box" or "detections" (see evaluate/protocols.py); detections
        needs `boxes`, a COCO detection results file, whose boxes scoring below
        `box_score_threshold` (default 0: all) are left out.
    checkpoint: None = best (last if the run has no best), "best", "last" or a path.
    refine: decode with none, quarter or dark instead of the run's target.refine.
    out_dir: default RUN_DIR/eval/<split>-<protocol>-<checkpoint name>[-flip].
    annotations: the split's COCO annotation file, if it moved since `hgpose prepare`.
    joints: which joints are scored (see `select_joints`); by default those the network
        was trained on, so an LSP-trained network is not scored on faces it never saw.
    precision: auto (bf16 where the hardware has it natively), bf16 or fp32; recorded.
    """
    from hgpose.inference import load

    protocols.check_options(protocol, boxes, box_score_threshold)
    if batch_size < 1:
        raise HgposeError(f"--batch-size {batch_size}: give at least 1")
    if out_dir is not None:
        check_out_dir(Path(out_dir))    # found now, not after the whole split has been scored
    detections = protocols.read_detections(boxes) if protocol == "detections" else None
    est = load(run_dir, checkpoint=checkpoint, device=device, flip=flip, refine=refine, precision=precision)
    scored = select_joints(joints, est.joints)
    store = Store.open(data_dir)
    data, cocos = _annotated_split(store, split, annotations, scored, protocol)
    _check_scored_joints(data, scored, joints)
    folders = None if protocol == "thesis" else store.image_folders(split, annotations)
    if out_dir is None:
        out_dir = default_eval_dir(Path(est.checkpoint), est.run, split, protocol, flip)
        check_out_dir(out_dir)
    note = store.old_pixel_convention
    if note:
        print(f"hgpose evaluate: note: {note}", file=sys.stderr)
    run = Scoring.of(est, data, cocos, names=[s["name"] for s in store.sources], joints=scored,
                     batch_size=batch_size, progress=progress)
    # The staging folder is made before the split is scored: a folder that cannot be
    # written (a read-only run folder) stops the command at once.
    with staged(out_dir, last=(METRICS_FILE,), what="evaluate output folder (--out)") as stage:
        metrics, rows, results = _score(run, protocol, folders, detections, boxes, box_score_threshold)
        metrics.update(protocol=protocol, protocol_description=protocols.DESCRIPTIONS[protocol],
                       checkpoint=est.checkpoint, split=split, flip=bool(flip),
                       codec=type(est.codec).__name__, refine=getattr(est.codec, "refine", "none"),
                       precision=est.precision, engine=est.engine, data_dir=str(Path(data_dir).resolve()),
                       data=data_kinds(store.sources),
                       joints=[name for name, keep in zip(JOINTS, scored) if keep])
        write_outputs(stage.path, metrics, rows, results)
        for name in os.listdir(out_dir):    # results files of an earlier call that this one has not
            if RESULTS_FILE.fullmatch(name):
                stage.forget(name)
    return {**metrics, "out_dir": str(out_dir)}


def _score(run: "Scoring", protocol: str, folders, detections, boxes, box_score_threshold):
    """(metrics, rows, results files) of the protocol, with its error diagnosis."""
    if protocol == "detections":
        threshold = protocols.BOX_SCORE_THRESHOLD if box_score_threshold is None else float(box_score_threshold)
        metrics, rows, files = score_detected_people(run, folders[0], detections, threshold=threshold,
                                                     boxes_file=boxes)
    else:
        metrics, rows, files = score_split_people(run, folders)
    metrics["errors"] = diagnose_errors(run, protocol, rows, files)
    return metrics, rows, files


def diagnose_errors(run: "Scoring", protocol: str, rows: list[dict], files: dict) -> dict:
    """metrics.json's "errors" (evaluate/errors.py) from what the protocol wrote: its results
    files and its rows. Under detections a prediction is paired with the person COCOeval
    pairs it with; under thesis and gt-box with the person it was predicted for. A store of
    several sources: each source's diagnosis, and their counts pooled."""
    if protocol == "detections":
        evaluated = [row["image_id"] for row in rows if row["status"] == "evaluated"]
        return diagnosis.diagnose(std.images_ground_truth(run.cocos[0], evaluated, run.scored),
                                  next(iter(files.values())), evaluated, joints=run.scored)
    names = run.names or [str(s) for s in range(max(run.cocos) + 1)]
    by_source = {}
    for (source, coco), results in zip(run.cocos.items(), files.values()):   # one results file per source
        mine = [row for row in rows if row["source"] == source]
        # A source's results file holds, in split order, its people that got a prediction.
        predicted = [row["ann_id"] for row in mine if row.get("status", protocols.PREDICTED) == protocols.PREDICTED]
        assert len(predicted) == len(results), f"{len(results)} results for {len(predicted)} predicted people"
        evaluated = sorted({row["image_id"] for row in mine if row.get("status") != protocols.UNREADABLE})
        by_source[names[source]] = diagnosis.diagnose(
            std.split_ground_truth(coco, [row["ann_id"] for row in mine], run.scored), results, evaluated,
            joints=run.scored, own=predicted, annotations=coco)
    if len(by_source) == 1:
        return next(iter(by_source.values()))
    return {**diagnosis.pooled(list(by_source.values())), "by_source": by_source}


def _check_scored_joints(data: Split, scored: np.ndarray, spec: str) -> None:
    """Refuse, before scoring, a --joints choice that no person of the split has labelled:
    every metric would be empty."""
    if not (np.asarray(data.keypoints[..., 2]) > 0).any():
        names = [name for name, keep in zip(JOINTS, scored) if keep]
        raise HgposeError(f"--joints {spec}: no person of the {data.name} split has any of the scored joints "
                          f"({', '.join(names) or 'none'}) labelled; every metric would be empty: choose joints "
                          "its dataset annotates (--joints all or body)")


# --- the output folder -----------------------------------------------------------------------

METRICS_FILE = "metrics.json"
ERRORS_FIGURE = "errors.png"
RESULTS_FILE = re.compile(r"keypoints_.+_results\.json")
OWN_FILES = (METRICS_FILE, "metrics.md", "per_image.csv", ERRORS_FIGURE)


def check_out_dir(out_dir: Path) -> None:
    """OUT_DIR may be new, empty or hold what evaluate writes (an earlier call's results,
    which are replaced); a file evaluate did not write is never replaced: one line."""
    if out_dir.exists() and not out_dir.is_dir():
        raise HgposeError(f"--out {out_dir}: is a file, not a folder; give a folder for the results")
    if not out_dir.is_dir():
        return
    names = sorted(n for n in os.listdir(out_dir) if not leftover_staging(n))
    stranger = next((n for n in names if n not in OWN_FILES and not RESULTS_FILE.fullmatch(n)), None)
    if stranger is None and METRICS_FILE in names and not _own_metrics(out_dir / METRICS_FILE):
        stranger = METRICS_FILE
    if stranger is not None:
        raise HgposeError(f"--out {out_dir}: holds {stranger}, which evaluate did not write; hgpose never "
                          "replaces such files: give a new or empty folder")


def _own_metrics(path: Path) -> bool:
    try:
        metrics = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and {"protocol", "n_images", "coco"} <= set(metrics)


def _annotated_split(store: Store, split: str, annotations, scored: np.ndarray, protocol: str) -> tuple[Split, dict]:
    """(the split with only the scored joints, source -> its COCO annotations)."""
    data = only_joints(store.split(split), scored)
    if len(data) == 0:
        raise HgposeError(f"split {split!r} of {store.path} is empty: nothing to evaluate")
    files = store.annotation_files(split, annotations)
    if protocol == "detections" and len(files) > 1:
        raise HgposeError(f"--protocol detections: {store.path} holds {len(files)} sources, and a detection "
                          "file names images by id, which each source numbers on its own; evaluate a "
                          "store of one source")
    cocos = {s: load_annotations(path) for s, path in files.items()}
    check_annotated(data, cocos)
    return data, cocos


@dataclass
class Scoring:
    """What the protocols need besides the crops: where heatmaps come from (the network in
    `evaluate`, the ground truth in tests), the split, its annotations and options."""

    split: Split
    cocos: dict                             # source index -> the split's COCO annotations
    codec: object                           # decodes heatmaps (the run's codec)
    store_forward: Forward                  # the store's crops -> heatmaps (split_pass)
    crop_heatmaps: protocols.CropHeatmaps   # (crops, people, crop boxes) -> heatmaps
    names: list[str] | None = None          # source names (default "0", "1", ...)
    joints: np.ndarray | None = None        # bool [17] scored joints (default all)
    input_size: int = 256
    batch_size: int = 32
    progress: bool = False

    @classmethod
    def of(cls, est, split: Split, cocos: dict, **options) -> "Scoring":
        """Scoring with a loaded network (`hgpose.load`)."""
        return cls(split, cocos, est.codec,
                   store_forward=network_forward(est.network, est.mean_rgb, est.device, autocast=est.autocast,
                                                 flip=est.flip),
                   crop_heatmaps=lambda crops, *_: est.crop_heatmaps(crops),
                   input_size=est.input_size, **options)

    @property
    def scored(self) -> np.ndarray:
        return np.ones(NUM_JOINTS, bool) if self.joints is None else np.asarray(self.joints, bool)


def score_split_people(run: Scoring, folders: dict | None = None) -> tuple[dict, list[dict], dict]:
    """The thesis protocol (folders None) or gt-box (folders: source index -> image folder):
    one prediction per person of the split. (metrics, per-person rows, results files).
    The thesis PCK always comes from the store's thesis crops."""
    data = run.split
    predictions = predict_split(data, run.store_forward, run.codec, batch_size=run.batch_size,
                                progress=run.progress)
    by_box = None
    if folders is not None:
        people = protocols.split_people(data, run.cocos, folders)
        by_box = protocols.predict_people(people, run.crop_heatmaps, run.codec, input_size=run.input_size,
                                          batch_size=run.batch_size, progress=run.progress,
                                          desc=f"evaluate {data.name} (gt-box)")
        predictions = dataclasses.replace(predictions, coords=by_box.coords, scores=by_box.scores,
                                          image_read=by_box.status != protocols.UNREADABLE)
    metrics, rows, results = score(data, predictions, run.cocos, source_names=run.names, joints=run.joints)
    metrics["pck_thesis_crops"] = "thesis crops from the store (placed with the ground-truth keypoints)"
    if by_box is not None:
        metrics["skipped"] = protocols.skipped_summary(by_box)
        for row, status, (x0, y0, side) in zip(rows, by_box.status, by_box.crop_boxes):
            row.update(status=status, crop_x0=int(x0), crop_y0=int(y0), crop_side=int(side))
    # The results files: one per source (image ids are each source's own).
    if len(run.cocos) == 1:
        return metrics, rows, {f"keypoints_{data.name}_results.json": results}
    names = run.names or [str(s) for s in range(max(run.cocos) + 1)]
    source = np.asarray(data.source)[np.isfinite(predictions.coords).all(axis=(1, 2))]
    return metrics, rows, {f"keypoints_{data.name}_{names[s]}_results.json":
                           [r for r, own in zip(results, source) if own == s] for s in run.cocos}


def score_detected_people(run: Scoring, folder: Path, detections: list[dict], *, threshold: float,
                          boxes_file: str | Path = "--boxes") -> tuple[dict, list[dict], dict]:
    """The detections protocol on a one-source store: every detector box on the split's
    images. (metrics, per-image rows, results files)."""
    data, coco = run.split, run.cocos[0]
    image_ids = np.unique(np.asarray(data.ids)[:, 0])
    people, counts = protocols.detected_people(detections, image_ids, coco, folder, threshold=threshold,
                                               path=boxes_file)
    predictions = protocols.predict_people(people, run.crop_heatmaps, run.codec, input_size=run.input_size,
                                           batch_size=run.batch_size, progress=run.progress,
                                           desc=f"evaluate {data.name} (detections)")
    confident = protocols.CONFIDENT_JOINT * target_peak(run.codec)
    metrics, rows, results = protocols.score_detections(people, predictions, coco, image_ids,
                                                        joints=run.scored, confident=confident)
    metrics.update(
        # the thesis PCK and PCK@0.2 need each prediction paired with one annotated person
        pck_thesis=None, **{"pck@0.2": None}, n_images=len(image_ids), n_people=len(data),
        detections={"file": str(Path(boxes_file).resolve()), "box_score_threshold": threshold, **counts,
                    "kept_after_nms": metrics.pop("kept_after_nms"),
                    "oks_nms_threshold": protocols.OKS_NMS_THRESHOLD, "confident_joint_score": confident},
        skipped=protocols.skipped_summary(predictions))
    return metrics, rows, {f"keypoints_{data.name}_results.json": results}


# --- output files --------------------------------------------------------------------------

def write_outputs(out_dir: Path, metrics: dict, rows: list[dict], results: dict[str, list[dict]]) -> None:
    """metrics.md, per_image.csv, errors.png (with an error diagnosis), each COCO results file
    (name -> results) and metrics.json, the file that marks a complete set, last."""
    with atomic_path(out_dir / "metrics.md") as tmp:
        tmp.write_text(format_tables(metrics, per_joint=True))
    with atomic_path(out_dir / "per_image.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if "errors" in metrics:
        from hgpose.evaluate.figures import save_errors_figure   # matplotlib only when drawing

        save_errors_figure(metrics["errors"], out_dir / ERRORS_FIGURE)
    # Compact: pycocotools loads it as is (`COCO.loadRes(path)`).
    for name, entries in results.items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(json.dumps(entries))
    write_json(out_dir / METRICS_FILE, _json_safe(metrics))


def format_tables(metrics: dict, per_joint: bool = False) -> str:
    """Markdown tables a person reads: the main table (printed) and, for metrics.md, per joint.
    Every table says which crops its numbers come from (the protocol)."""
    protocol = metrics.get("protocol", "thesis")
    lines = _header(metrics, protocol)
    if metrics.get("pck_thesis") is not None:
        lines += _thesis_table(metrics, protocol)
    lines += _image_table(metrics, protocol)
    scored = metrics.get("joints")
    if scored is not None and len(scored) < NUM_JOINTS:
        lines += ["", f"Scored joints: {len(scored)} of {NUM_JOINTS} ({', '.join(scored)}); the others "
                  "count in no metric (--joints)."]
    if "by_source" in metrics:
        thesis = "thesis PCK" + (" (thesis crops)" if protocol != "thesis" else "")
        lines += ["", f"| source | people | {thesis} | PCK@0.2 box | PCK@0.2 torso | COCO AP |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {m['n_images']:,d} | {_fmt(m['pck_thesis'])} | {_fmt(m['pck@0.2']['bbox'])} | "
                  f"{_fmt(m['pck@0.2']['torso'])} | {_fmt(m['coco'].get('AP'))} |"
                  for name, m in metrics["by_source"].items()]
    if per_joint and metrics.get("pck_thesis") is not None:
        pj, box, torso = (metrics["pck_thesis_per_joint"], metrics["pck@0.2_per_joint"]["bbox"],
                          metrics["pck@0.2_per_joint"]["torso"])
        lines += ["", "| joint | thesis PCK | PCK@0.2 box | PCK@0.2 torso |", "|---|---|---|---|"]
        lines += [f"| {j} | {_fmt(pj[j])} | {_fmt(box[j])} | {_fmt(torso[j])} |" for j in JOINTS]
    if per_joint and "errors" in metrics:
        lines += _errors_table(metrics["errors"])
    if per_joint:
        shown = metrics.get("pck_thesis") is not None and _thesis_mismatch(metrics) is None
        lines += ["", (f"thesis SHG column: the thesis's own results ({THESIS_LABEL}; SPEC §7). "
                       if shown else "")
                  + COCO_NOTES[protocol]]
    return "\n".join(lines) + "\n"


# What the COCO AP of each protocol can be compared with.
COCO_NOTES = {
    "thesis": "COCO AP on the thesis crops, which the ground-truth keypoints place and size: "
              "comparable with no published number.",
    "gt-box": "COCO AP with ground-truth person boxes: comparable with other ground-truth-box "
              "results, not with detector-based leaderboard numbers.",
    "detections": "COCO AP on detected boxes: the standard COCO protocol of the leaderboards "
                  "(which score all of val2017).",
}
COCO_CROPS = {"thesis": "thesis crops", "gt-box": "GT boxes", "detections": "detected boxes"}


def _header(metrics: dict, protocol: str) -> list[str]:
    split = metrics.get("split", "?")
    if protocol == "detections":
        d = metrics["detections"]
        title = (f"# Evaluation, protocol detections: {split} split, {metrics['n_images']:,d} images, "
                 f"{d['boxes_above_threshold']:,d} person boxes scoring >= {d['box_score_threshold']:g} "
                 f"({d['kept_after_nms']:,d} kept by OKS NMS)")
    else:
        title = (f"# Evaluation, protocol {protocol}: {split} split, {metrics['n_images']:,d} people, "
                 f"{metrics['n_joints']:,d} labelled joints")
    lines = [title, "", f"protocol {protocol}: {protocols.DESCRIPTIONS[protocol]}.", "",
             f"checkpoint `{metrics.get('checkpoint')}`, codec {metrics.get('codec', '?')}, "
             f"flip test {'on' if metrics.get('flip') else 'off'}"]
    skipped = metrics.get("skipped")
    if skipped and (skipped["images_unreadable"] or skipped["boxes_outside_image"]):
        lines += ["", f"Skipped: {skipped['images_unreadable']:,d} unreadable images "
                  f"({skipped['people_in_unreadable_images']:,d} people, in no metric; first: "
                  f"{skipped['first_unreadable']}); {skipped['boxes_outside_image']:,d} boxes outside "
                  "their image (no prediction)."]
    return lines


def _thesis_mismatch(metrics: dict) -> str | None:
    """Why the thesis's COCO column does not belong beside these numbers (None: it does):
    only a store whose every source is COCO's own data compares with it ("data": what each
    source holds, `hgpose.thesis.data_kinds`)."""
    return data_mismatch(metrics.get("data"))


def _thesis_table(metrics: dict, protocol: str) -> list[str]:
    """Our thesis PCK, beside the thesis SHG's on the same split of COCO when the store is
    COCO; elsewhere a line saying why that column is left out."""
    ref = THESIS_REFERENCE.get(metrics.get("split", "?"), {})
    thesis, counted = metrics["pck_thesis"], metrics["pck_thesis_images"]
    title = ("thesis PCK (64x64 argmax, < 3.2 px)" if protocol == "thesis" else
             "thesis PCK on the thesis crops (placed with the GT keypoints; 64x64 argmax, < 3.2 px)")
    mismatch = _thesis_mismatch(metrics)
    labels = {"all": "all labelled (v=1,2)", "visible": "visible (v=2)", "limbs": "limbs"}
    if mismatch:
        lines = ["", f"| {title} | ours | images |", "|---|---|---|"]
        lines += [f"| {labels[name]} | {_fmt(thesis[name])} | {counted[name]:,d} |" for name in SUBSETS]
        return lines + ["", f"No thesis column: {mismatch}, so its PCK does not compare with these."]
    lines = ["", f"| {title} | ours | images | thesis SHG |", "|---|---|---|---|"]
    for name in SUBSETS:
        lines.append(f"| {labels[name]} | {_fmt(thesis[name])} | {counted[name]:,d} | {_fmt(ref.get(name))} |")
    return lines


def _image_table(metrics: dict, protocol: str) -> list[str]:
    coco = metrics["coco"]
    lines = ["", f"| image coordinates ({protocol} crops) | value |", "|---|---|"]
    if metrics.get("pck@0.2") is not None:
        pck = metrics["pck@0.2"]
        lines += [f"| PCK@0.2, box-normalised | {_fmt(pck['bbox'])} |",
                  f"| PCK@0.2, torso-normalised | {_fmt(pck['torso'])} |"]
    lines += [f"| COCO {key} (OKS, {COCO_CROPS[protocol]}) | {_fmt(coco.get(key))} |"
              for key in ("AP", "AP50", "AP75", "APm", "APl", "AR")]
    return lines


def _errors_table(errors: dict) -> list[str]:
    """The error diagnosis: the share of each class, and per source COCO AP with that error
    type corrected (its gain in brackets). Per joint: metrics.json and errors.png."""
    lines = ["", f"| error diagnosis (Ronchi & Perona 2017) | {' | '.join(diagnosis.CLASSES)} |",
             "|---|" + "---|" * len(diagnosis.CLASSES),
             f"| share of {errors['keypoints']:,d} labelled keypoints | "
             + " | ".join(_fmt(errors["shares"][c]) for c in diagnosis.CLASSES) + " |"]
    for name, source in (errors.get("by_source") or {"": errors}).items():
        ap = source["ap"]
        lines.append(f"| COCO AP{' ' + name if name else ''} with that type corrected (now "
                     f"{_fmt(ap['baseline']['AP'])}) | — | "
                     + " | ".join(_corrected(ap, kind) for kind in diagnosis.ERROR_TYPES) + " |")
    return lines + ["", "Classes by keypoint similarity ks: good ks >= 0.85; jitter 0.5 <= ks < 0.85; "
                    "inversion, swap: ks >= 0.5 against the person's left/right counterpart, another "
                    "person's joint; miss: none of these (docs/evaluate.md, \"Error diagnosis\"; per joint: errors.png)."]


def _corrected(ap: dict, kind: str) -> str:
    gain = ap["gain"][kind]
    return _fmt(ap["corrected"][kind]["AP"]) + ("" if gain is None or not math.isfinite(gain) else f" ({gain:+.3f})")


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def _cell(value, digits: int = 4) -> str:
    """A CSV cell: empty where a person is not counted."""
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _fmt(value) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _json_safe(obj):
    """NaN is not JSON: metrics that could not be computed become null."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
