"""Exact K-means (Lloyd's algorithm, k-means++ seeding) for many K and restarts at once.

Why not scikit-learn's KMeans: it runs one (K, restart) after the other, and each Lloyd step
multiplies the data by only K centroids; on 124,040 x 500+ float32 scores that product is
limited by reading the data from memory (~4 GFLOPS here), so K = 2..10 with 10 restarts
took well over the 15-minute budget. Here every run's centroids sit side by side in one
matrix (K = 2..10 x 10 restarts = 540 columns), so each step is one large matrix product
for all runs together -- compute-bound, ~60 GFLOPS on the same 2 cores -- and finished
runs drop out. The algorithm and the objective are the ordinary ones:

* seeding: greedy k-means++ (as scikit-learn): the first centre is a random point, each
  next one the best, by the resulting objective, of 2 + ln K candidates drawn with
  probability proportional to the squared distance to the nearest centre so far;
* Lloyd steps: assign every point to its nearest centre, move each centre to the mean of its
  points; a centre left without points jumps to the point farthest from its centre;
* stop: when no label changes, or when the centres move (sum of squared shifts) by at most
  tol x the mean per-dimension variance (scikit-learn's rule), or after max_iter steps; then
  one last assignment to the final centres gives the labels and the objective reported;
* of the restarts of each K, the lowest objective wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHUNK = 16384   # rows per product: 16384 x 540 float32 distances = 35 MB


@dataclass
class Run:
    k: int
    centres: np.ndarray            # float32 [k, d]
    labels: np.ndarray             # int16 [N]
    inertia: float = math.inf
    n_iter: int = 0
    finishing: bool = False        # the next assignment is the last one
    done: bool = False


def _sq_norms(z: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", z, z)


def _distances(zc: np.ndarray, sq: np.ndarray, centres: np.ndarray, centre_sq: np.ndarray) -> np.ndarray:
    """Squared distances [m, C] of a chunk of points to centres (clamped at 0)."""
    d = zc @ centres.T
    d *= -2.0
    d += sq[:, None]
    d += centre_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def seed_plus_plus(z: np.ndarray, sq: np.ndarray, ks: list[int], rng: np.random.Generator,
                   chunk: int = CHUNK) -> list[np.ndarray]:
    """Greedy k-means++ centres (row indices) for every run, all runs advanced together."""
    n = len(z)
    chosen = [[int(rng.integers(n))] for _ in ks]
    first = np.array([c[0] for c in chosen])
    closest = np.empty((len(ks), n), np.float32)    # squared distance to the nearest centre
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        closest[:, start:stop] = _distances(z[start:stop], sq[start:stop], z[first], sq[first]).T
    for step in range(1, max(ks)):
        growing = [r for r, k in enumerate(ks) if k > step]
        candidates, owner = [], []
        for r in growing:
            trials = 2 + int(math.log(ks[r]))
            weights = closest[r].astype(np.float64)
            cumulative = np.cumsum(weights)
            picks = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right")
            candidates += np.minimum(picks, n - 1).tolist()
            owner += [r] * trials
        candidates = np.array(candidates)
        owner = np.array(owner)
        dist = np.empty((n, len(candidates)), np.float32)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            dist[start:stop] = _distances(z[start:stop], sq[start:stop], z[candidates], sq[candidates])
        for r in growing:
            cols = np.flatnonzero(owner == r)
            pooled = np.minimum(dist[:, cols], closest[r][:, None])
            best = int(np.argmin(pooled.sum(0, dtype=np.float64)))
            chosen[r].append(int(candidates[cols[best]]))
            closest[r] = pooled[:, best]
    return [np.array(c) for c in chosen]


def kmeans_many(z: np.ndarray, ks, n_init: int = 10, max_iter: int = 1000, tol: float = 1e-4,
                seed: int = 0, chunk: int = CHUNK) -> dict[int, Run]:
    """The best of `n_init` K-means runs for every K in `ks`: {K: Run}."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    n = len(z)
    ks = [int(k) for k in ks if 1 <= k <= n]
    sq = _sq_norms(z)
    rng = np.random.default_rng(seed)
    run_ks = [k for k in ks for _ in range(n_init)]
    seeds = seed_plus_plus(z, sq, run_ks, rng, chunk)
    runs = [Run(k, z[idx].copy(), np.full(n, -1, np.int16)) for k, idx in zip(run_ks, seeds)]
    # mean per-dimension variance, without a float64 copy of z
    column_mean = z.sum(0, dtype=np.float64) / n
    tol_abs = tol * float((sq.sum(dtype=np.float64) / n - (column_mean**2).sum()) / z.shape[1])

    while True:
        active = [r for r in runs if not r.done]
        if not active:
            break
        _step(z, sq, active, chunk, tol_abs, max_iter)

    best = {}
    for r in runs:
        if r.k not in best or r.inertia < best[r.k].inertia:
            best[r.k] = r
    return best


def _step(z, sq, active: list[Run], chunk: int, tol_abs: float, max_iter: int) -> None:
    """One assignment pass over the data for all active runs, then their updates."""
    n, d = z.shape
    offsets = np.cumsum([0] + [r.k for r in active])
    centres = np.concatenate([r.centres for r in active])
    centre_sq = _sq_norms(centres)
    total = offsets[-1]
    sums = np.zeros((total, d), np.float64)
    counts = np.zeros(total, np.int64)
    inertia = np.zeros(len(active), np.float64)
    far_value = np.full(len(active), -1.0)
    far_index = np.zeros(len(active), np.int64)
    new_labels = [np.empty(n, np.int16) for _ in active]
    # runs with the same K are handled together: their columns are contiguous
    groups = {}
    for i, r in enumerate(active):
        groups.setdefault(r.k, []).append(i)

    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        m = stop - start
        dist = _distances(z[start:stop], sq[start:stop], centres, centre_sq)
        onehot = np.zeros((m, total), np.float32)
        rows = np.arange(m)[:, None]
        for k, members in groups.items():
            members = np.array(members)
            # runs of the same K whose columns may be separated by other runs: gather them
            cols = offsets[members][:, None] + np.arange(k)[None, :]             # [g, k]
            block = dist[:, cols]                                                # [m, g, k]
            labels = block.argmin(-1)                                            # [m, g]
            nearest = np.take_along_axis(block, labels[..., None], -1)[..., 0]   # [m, g]
            inertia[members] += nearest.sum(0, dtype=np.float64)
            where = nearest.argmax(0)
            better = nearest[where, np.arange(len(members))] > far_value[members]
            far_value[members] = np.where(better, nearest[where, np.arange(len(members))], far_value[members])
            far_index[members] = np.where(better, start + where, far_index[members])
            for j, i in enumerate(members):
                new_labels[i][start:stop] = labels[:, j]
            onehot[rows, offsets[members][None, :] + labels] = 1.0
        sums += onehot.T @ z[start:stop]
        counts += onehot.sum(0).astype(np.int64)
    _update(z, active, offsets, sums, counts, inertia, far_index, new_labels, tol_abs, max_iter)


def _update(z, active: list[Run], offsets, sums, counts, inertia, far_index, new_labels, tol_abs: float,
            max_iter: int) -> None:
    """Each active run after an assignment pass: done when its labels stopped changing (or
    it was finishing), else its centres moved to the means of their points."""
    n = len(z)
    for i, r in enumerate(active):
        r.n_iter += 1
        unchanged = bool(np.array_equal(new_labels[i], r.labels))
        r.labels = new_labels[i]
        r.inertia = float(inertia[i])
        if r.finishing or (unchanged and r.n_iter > 1):
            # labels and objective are those of the final centres: done (a run whose labels
            # did not change already has its centres at the means of those labels)
            r.done = True
            r.n_iter -= 1 if r.finishing else 0
            continue
        c = counts[offsets[i]:offsets[i + 1]]
        new = (sums[offsets[i]:offsets[i + 1]] / np.maximum(c, 1)[:, None]).astype(np.float32)
        empty = np.flatnonzero(c == 0)
        if len(empty):
            new[empty[0]] = z[far_index[i]]          # the point worst served by its centre
            for e in empty[1:]:                      # more than one empty: rare; any points
                new[e] = z[np.random.default_rng(int(e)).integers(n)]
        shift = float(((new.astype(np.float64) - r.centres) ** 2).sum())
        r.centres = new
        if shift <= tol_abs or r.n_iter >= max_iter:
            r.finishing = True
