"""Error diagnosis of predicted keypoints (Ronchi & Perona, "Benchmarking and Error Diagnosis in
Multi-Instance Pose Estimation", ICCV 2017).

Each labelled keypoint of a prediction paired with an annotated person is put in one class by
its keypoint similarity ks, COCO's per-joint OKS term exp(-d² / (2 s² k²)) with s² the
person's area and k = 2σ (COCOeval's own constants):

    good       ks ≥ 0.85 against its own joint
    jitter     0.5 ≤ ks < 0.85 against its own joint
    inversion  otherwise, ks ≥ 0.5 against the same person's left/right counterpart
    swap       otherwise, ks ≥ 0.5 against the same joint or its counterpart of another
               annotated person of the image (with that person's area)
    miss       otherwise

and COCO AP is recomputed by pycocotools with each error type corrected as the authors'
coco-analyze corrects it: the keypoint is put on the ray from its own ground truth towards
where it was, at the distance where ks is 0.85 (a jitter becomes good), 0.5 (a miss becomes a
jitter), or the ks it had against the wrong joint (an inversion or a swap, moved onto its own).

Pure numpy and pycocotools: COCO objects and arrays in, dicts out. evaluate.py calls
`diagnose` once per results file and writes what it returns (docs/evaluate.md, "Error
diagnosis").
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hgpose.skeleton import FLIP_INDEX, JOINTS, NUM_JOINTS, OKS_SIGMAS

GOOD_KS = 0.85      # the paper's human error margin: within it a keypoint is good
NEAR_KS = 0.5       # "in the proximity of" a ground-truth joint
MATCH_OKS = 0.1     # coco-analyze pairs detections with people at this OKS (its oksLocThrs)
CLASSES = ("good", "jitter", "inversion", "swap", "miss")
ERROR_TYPES = CLASSES[1:]
GOOD, JITTER, INVERSION, SWAP, MISS = range(len(CLASSES))
NOT_COUNTED = -1    # an unlabelled or unscored joint, or a prediction paired with nobody
AP_STATS = ("AP", "AP50", "AP75")

SIGMAS = np.asarray(OKS_SIGMAS, np.float64)
MIRROR = np.asarray(FLIP_INDEX)
HAS_COUNTERPART = MIRROR != np.arange(NUM_JOINTS)   # the nose is its own mirror: never inverted
EPS = np.spacing(1)                                   # COCOeval adds it to the area


def keypoint_similarity(pred: np.ndarray, target: np.ndarray, area, sigmas: np.ndarray = SIGMAS) -> np.ndarray:
    """ks [..., J] of predicted points pred [..., J, 2] against target points [..., J, 2] of a
    person of `area` [...], exactly as COCOeval.computeOks weighs each joint."""
    squared = ((np.asarray(pred, np.float64) - target) ** 2).sum(-1)
    scale = 2 * (np.asarray(area, np.float64)[..., None] + EPS) * (2 * sigmas) ** 2
    return np.exp(-squared / scale)


@dataclass
class People:
    """The annotated people of some images, stored image by image (so an image's people are
    one slice). Joints outside the scored ones are unlabelled (v = 0)."""

    keypoints: np.ndarray   # float64 [P, J, 3]
    areas: np.ndarray       # float64 [P]
    image_ids: np.ndarray   # int64 [P], ascending
    ann_ids: np.ndarray     # int64 [P]

    @classmethod
    def of(cls, coco: COCO, image_ids, joints: np.ndarray) -> "People":
        """Every non-crowd person annotation of the images (crowds are COCO's ignore regions,
        not people a keypoint can be swapped with)."""
        anns = [a for i in sorted({int(i) for i in image_ids}) for a in coco.imgToAnns.get(i, [])
                if not a.get("iscrowd", 0)]
        keypoints = np.array([a.get("keypoints") or [0.0] * (3 * NUM_JOINTS) for a in anns],
                             np.float64).reshape(-1, NUM_JOINTS, 3)
        keypoints[:, ~np.asarray(joints, bool)] = 0
        return cls(keypoints, np.array([a.get("area", 0.0) for a in anns], np.float64),
                   np.array([a["image_id"] for a in anns], np.int64), np.array([a["id"] for a in anns], np.int64))

    def index(self, ann_ids) -> np.ndarray:
        """Position of each annotation id [N]; -1 where it is not one of these people."""
        ann_ids = np.asarray(ann_ids, np.int64).reshape(-1)
        if len(self.ann_ids) == 0:
            return np.full(len(ann_ids), -1, np.int64)
        order = np.argsort(self.ann_ids, kind="stable")
        at = np.minimum(np.searchsorted(self.ann_ids[order], ann_ids), len(order) - 1)
        return np.where(self.ann_ids[order][at] == ann_ids, order[at], -1)


def own_similarities(pred: np.ndarray, own: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ks against each joint of the own person, ks against its left/right counterpart) [N, J]
    for predictions pred [N, J, 2] of people own [N, J, 3] of areas [N]. A counterpart that is
    unlabelled, or a joint without one, gives 0."""
    ks_own = keypoint_similarity(pred, own[..., :2], areas)
    mirrored = own[:, MIRROR]
    ks_inverted = keypoint_similarity(pred, mirrored[..., :2], areas, SIGMAS[MIRROR])
    return ks_own, np.where((mirrored[..., 2] > 0) & HAS_COUNTERPART, ks_inverted, 0.0)


def swap_similarity(pred: np.ndarray, own: np.ndarray, people: People) -> np.ndarray:
    """ks [N, J]: each predicted keypoint's best similarity to the same joint, or its
    counterpart, of any other annotated person of its image (0 where there is none).

    pred [N, J, 2]; own [N]: index into `people` of each prediction's own person. Vectorised
    over (prediction, person of its image) pairs, so crowded images cost no Python loop."""
    if len(own) == 0:
        return np.zeros((0, NUM_JOINTS))
    images, first = np.unique(people.image_ids, return_index=True)
    size = np.diff(np.append(first, len(people.image_ids)))
    slot = np.searchsorted(images, people.image_ids[own])
    start, count = first[slot], size[slot]             # count >= 1: the own person is there
    offsets = np.cumsum(count) - count
    pair_pred = np.repeat(np.arange(len(own)), count)
    pair_person = np.arange(count.sum()) - np.repeat(offsets, count) + np.repeat(start, count)
    other, areas, xy = people.keypoints[pair_person], people.areas[pair_person], pred[pair_pred]
    same = np.where(other[..., 2] > 0, keypoint_similarity(xy, other[..., :2], areas), 0.0)
    mirrored = other[:, MIRROR]
    counterpart = np.where(mirrored[..., 2] > 0,
                           keypoint_similarity(xy, mirrored[..., :2], areas, SIGMAS[MIRROR]), 0.0)
    ks = np.maximum(same, counterpart)
    ks[pair_person == own[pair_pred]] = 0.0
    return np.maximum.reduceat(ks, offsets, axis=0)


def classify(ks_own: np.ndarray, ks_inverted: np.ndarray, ks_swapped: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """int8 [N, J] class codes (GOOD ... MISS; NOT_COUNTED where not labelled). Its own joint
    comes first, then the counterpart, then other people: a keypoint near its own joint is
    never called an error because it is nearer still to someone else's."""
    codes = np.select([ks_own >= GOOD_KS, ks_own >= NEAR_KS, ks_inverted >= NEAR_KS, ks_swapped >= NEAR_KS],
                      [GOOD, JITTER, INVERSION, SWAP], MISS)
    return np.where(labelled, codes, NOT_COUNTED).astype(np.int8)


def corrected_points(pred: np.ndarray, own: np.ndarray, areas: np.ndarray, codes: np.ndarray,
                     ks_inverted: np.ndarray, ks_swapped: np.ndarray) -> dict[str, np.ndarray]:
    """{error type: pred [N, J, 2] with the keypoints of that type moved as coco-analyze
    corrects them}: onto the ray from the own ground truth towards the prediction, at the
    distance where ks reaches its target: 0.85 for a jitter, 0.5 for a miss, the ks it had
    against the wrong joint for an inversion or a swap."""
    target = np.select([codes == JITTER, codes == MISS, codes == INVERSION, codes == SWAP],
                       [GOOD_KS, NEAR_KS, ks_inverted, ks_swapped], 1.0)
    target = np.clip(target, np.finfo(np.float64).tiny, 1.0)
    distance = np.sqrt(-np.log(target) * 2 * (areas[:, None] + EPS) * (2 * SIGMAS) ** 2)
    offset = pred - own[..., :2]
    length = np.linalg.norm(offset, axis=-1, keepdims=True)
    direction = np.where(length > 0, offset / np.where(length > 0, length, 1.0), [1.0, 0.0])
    moved = own[..., :2] + direction * distance[..., None]
    return {name: np.where((codes == code)[..., None], moved, pred)
            for code, name in zip((JITTER, INVERSION, SWAP, MISS), ERROR_TYPES)}


def class_counts(codes: np.ndarray) -> dict:
    """Counts and shares of the classes, over all counted keypoints and per joint; a joint
    with no counted keypoint (unscored, absent from the dataset, never labelled) is left out."""
    per_joint = np.stack([(codes == c).sum(0) for c in range(len(CLASSES))], 1)   # [J, 5]
    return _summary(per_joint)


def _summary(per_joint: np.ndarray) -> dict:
    def block(counts: np.ndarray) -> dict:
        total = int(counts.sum())
        return {"keypoints": total, "counts": dict(zip(CLASSES, map(int, counts))),
                "shares": {c: (float(n / total) if total else None) for c, n in zip(CLASSES, counts)}}
    return {**block(per_joint.sum(0)),
            "per_joint": {JOINTS[j]: block(per_joint[j]) for j in range(NUM_JOINTS) if per_joint[j].sum()}}


def pooled(diagnoses: list[dict]) -> dict:
    """The counts and shares of several diagnoses (the sources of a store) added up."""
    per_joint = np.zeros((NUM_JOINTS, len(CLASSES)), np.int64)
    for d in diagnoses:
        for name, joint in d["per_joint"].items():
            per_joint[JOINTS.index(name)] += [joint["counts"][c] for c in CLASSES]
    return _summary(per_joint)


def coco_matches(gt: COCO, results: list[dict], image_ids) -> np.ndarray:
    """The annotation id [R] COCOeval pairs each result with at OKS MATCH_OKS (greedy by
    score, at most 20 per image, as its AP does); -1 where it pairs it with nobody or with a
    person COCOeval ignores (a crowd, no keypoints)."""
    matched = np.full(len(results), -1, np.int64)
    if not results:
        return matched
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes([dict(r) for r in results]), "keypoints")  # loadRes writes into them
        evaluator.params.imgIds = sorted({int(i) for i in image_ids})
        evaluator.params.iouThrs = np.array([MATCH_OKS])
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluator.evaluate()
    done = [e for e in evaluator.evalImgs if e is not None]
    if not done:
        return matched
    dt_ids = np.concatenate([e["dtIds"] for e in done]).astype(np.int64)
    gt_ids = np.concatenate([e["dtMatches"][0] for e in done]).astype(np.int64)
    ignored = np.concatenate([e["dtIgnore"][0] for e in done]).astype(bool)
    paired = (gt_ids > 0) & ~ignored
    matched[dt_ids[paired] - 1] = gt_ids[paired]        # loadRes numbers results 1, 2, ... in order
    return matched


class CorrectedAp:
    """COCO AP, AP50, AP75 by pycocotools' COCOeval of a results list, and of the same list
    with some results' keypoints moved. COCOeval matches each image on its own
    (`evaluateImg`) and pools the images in `accumulate`, so a correction re-evaluates only
    the images whose results moved and reuses the others' matches: the AP is COCOeval's own,
    at a fraction of a full evaluation (a test compares it with one)."""

    def __init__(self, gt: COCO, results: list[dict], image_ids):
        self.gt, self.results = gt, results
        self.image_of = np.array([r["image_id"] for r in results], np.int64)
        self.evaluator = self._evaluated(results, image_ids)
        self.images = {int(i): k for k, i in enumerate(self.evaluator.params.imgIds)}
        self.matched = list(self.evaluator.evalImgs)
        self.baseline = self._pooled(self.matched)

    def __call__(self, rows: np.ndarray, points: np.ndarray) -> dict:
        """The stats with results[rows[k]]'s (x, y) moved to points[k] [J, 2] where they differ."""
        keypoints = np.array([self.results[r]["keypoints"] for r in rows], np.float64).reshape(-1, NUM_JOINTS, 3)
        moves = (keypoints[..., :2] != points).any(axis=(1, 2))
        if not moves.any():
            return dict(self.baseline)
        keypoints[..., :2] = points
        replaced = {int(r): {**self.results[r], "keypoints": k.ravel().tolist()}
                    for r, k, m in zip(rows, keypoints, moves) if m}
        images = np.unique(self.image_of[rows[moves]])
        mine = np.flatnonzero(np.isin(self.image_of, images))
        again = self._evaluated([replaced.get(int(r), self.results[r]) for r in mine], images)
        matched = list(self.matched)
        per_category, again_per_category = len(self.images), len(again.params.imgIds)
        for c in range(len(again.params.catIds)):       # evalImgs: category-major, then image
            for k, image in enumerate(again.params.imgIds):
                matched[c * per_category + self.images[int(image)]] = again.evalImgs[c * again_per_category + k]
        return self._pooled(matched)

    def _evaluated(self, results: list[dict], image_ids) -> COCOeval:
        """COCOeval of the results on the images, evaluated (matched) for the "all" area range
        only: the AP of every size, the only one reported here."""
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(self.gt, self.gt.loadRes([dict(r) for r in results]), "keypoints")
            evaluator.params.imgIds = sorted({int(i) for i in image_ids})
            evaluator.params.areaRng, evaluator.params.areaRngLbl = evaluator.params.areaRng[:1], ["all"]
            evaluator.evaluate()
        return evaluator

    def _pooled(self, matched: list) -> dict:
        self.evaluator.evalImgs = matched
        with contextlib.redirect_stdout(io.StringIO()):
            self.evaluator.accumulate()
            self.evaluator.summarize()
        # COCOeval writes -1 for a statistic without ground truth
        return {name: float(v) if v >= 0 else float("nan") for name, v in zip(AP_STATS, self.evaluator.stats)}


def diagnose(gt: COCO, results: list[dict], image_ids, *, joints: np.ndarray | None = None,
             own: np.ndarray | None = None, annotations: COCO | None = None) -> dict:
    """The error diagnosis of one results file against the ground truth its COCO AP is
    computed on: metrics.json's "errors" (class counts and shares, overall and per joint;
    COCO AP with each error type corrected, and the gain over the baseline).

    joints: bool [J], the scored joints (default all); the others count nowhere.
    own: the annotation id each result was predicted for (a person's own box or crop);
        None: the person COCOeval pairs it with at OKS 0.1 (detections).
    annotations: where the other people of an image are found (default gt): under the
        split-people protocols gt holds only the split's people, not everyone in the image.
    """
    joints = np.ones(NUM_JOINTS, bool) if joints is None else np.asarray(joints, bool)
    paired = coco_matches(gt, results, image_ids) if own is None else np.asarray(own, np.int64)
    people = People.of(annotations or gt, image_ids, joints)
    at = people.index(paired)
    rows = np.flatnonzero(at >= 0)
    pred = np.array([r["keypoints"] for r in results], np.float64).reshape(-1, NUM_JOINTS, 3)[rows, :, :2]
    person, areas = people.keypoints[at[rows]], people.areas[at[rows]]
    ks_own, ks_inverted = own_similarities(pred, person, areas)
    ks_swapped = swap_similarity(pred, at[rows], people)
    codes = classify(ks_own, ks_inverted, ks_swapped, person[..., 2] > 0)
    points = corrected_points(pred, person, areas, codes, ks_inverted, ks_swapped)
    corrected = {name: float("nan") for name in AP_STATS}
    before, after = dict(corrected), {name: dict(corrected) for name in ERROR_TYPES}
    if results:
        ap = CorrectedAp(gt, results, image_ids)
        before = ap.baseline
        after = {name: ap(rows, points[name]) for name in ERROR_TYPES}
    return {
        **class_counts(codes),
        "predictions": len(results), "predictions_paired": int(len(rows)),
        "pairing": "own person" if own is not None else f"COCOeval at OKS {MATCH_OKS:g}",
        "thresholds": {"good": GOOD_KS, "near": NEAR_KS},
        "ap": {"baseline": before, "corrected": after,
               "gain": {name: after[name]["AP"] - before["AP"] for name in after}},
    }
