"""K-means on the latents, K = 2..10, chosen by the mean silhouette.

Objective: the ordinary K-means one, the sum of squared Euclidean distances of the latents to
their centroid. It is minimised in the space of the leading principal components that hold
`variance` (default 95 %) of the variance. A latent's squared distance to a centroid is its
distance within that space plus its distance outside it; summed over all points, the outside
part is the residual sum of squares minus what the partition separates outside the space,
so it varies between partitions by at most (1 - variance) of the total. The objective solved
therefore differs from the full one by at most 5 % of the total sum of squares, for a problem
~8x smaller (the thesis's latents need about an eighth of their 4,096 components for 95 %,
hgpose.thesis.COMPONENTS_FOR_95; at 99 % it would
be ~2,700 and K-means alone ~20 minutes on 2 cores instead of ~4). `residual_separation`
measures how much of that slack a found partition actually uses (one pass over the full
latents): ~1e-8 of the total on the benchmark's thesis-like latents, so nothing is lost.

Solvers: "lloyd" (default) is hgpose.explain.lloyd -- exact Lloyd with k-means++ seeding,
all K and restarts in lockstep, fast on large N; "elkan" is scikit-learn's KMeans with Elkan's
exact algorithm; "minibatch" is scikit-learn's MiniBatchKMeans (the same objective,
approximately minimised).

Silhouette: on all points, or on one fixed random sample of `sample` points when there are
more (the same sample for every K, so the K are compared on the same points). Its pairwise
distance matrix (sample^2 float32: 1.6 GB for 20,000) is computed once and reused for
every K; each K then costs one matrix product (distances x one-hot labels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from hgpose.explain.lloyd import kmeans_many

ALGORITHMS = ("lloyd", "elkan", "minibatch")


@dataclass
class KResult:
    k: int
    inertia: float            # the objective on all points
    silhouette: float         # mean silhouette on the sample
    n_iter: int
    seconds: float | None     # per K with scikit-learn; None when all K ran together
    labels: np.ndarray = field(repr=False)      # int16 [N]
    centroids: np.ndarray = field(repr=False)   # float32 [K, d]


def pairwise_distances(z: np.ndarray, block: int = 4096) -> np.ndarray:
    """Euclidean distances [n, n] float32, in row blocks (|a|^2 + |b|^2 - 2 a.b)."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    sq = np.einsum("ij,ij->i", z, z)
    out = np.empty((len(z), len(z)), np.float32)
    for start in range(0, len(z), block):
        stop = min(start + block, len(z))
        d = out[start:stop]
        np.matmul(z[start:stop], z.T, out=d)
        d *= -2.0
        d += sq[start:stop, None]
        d += sq[None, :]
        np.maximum(d, 0.0, out=d)      # rounding can make tiny distances negative
        np.sqrt(d, out=d)
    np.fill_diagonal(out, 0.0)
    return out


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (Rousseeuw) from a distance matrix; as sklearn's silhouette_score with
    metric="precomputed": a point alone in its cluster scores 0."""
    labels = np.asarray(labels)
    ks, inverse = np.unique(labels, return_inverse=True)
    if len(ks) < 2:
        return float("nan")
    onehot = np.zeros((len(labels), len(ks)), np.float32)
    onehot[np.arange(len(labels)), inverse] = 1.0
    sums = distances @ onehot                       # [n, K]: summed distance to each cluster
    counts = onehot.sum(0)
    own = counts[inverse]
    a = sums[np.arange(len(labels)), inverse] / np.maximum(own - 1, 1)
    means = sums / np.maximum(counts, 1)
    means[np.arange(len(labels)), inverse] = np.inf
    b = means.min(1)
    s = (b - a) / np.maximum(np.maximum(a, b), np.finfo(np.float32).tiny)
    s[own <= 1] = 0.0
    return float(s.mean())


def sample_indices(n: int, size: int, seed: int) -> np.ndarray:
    """The silhouette sample: all points when n <= size, else `size` drawn without replacement."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def fit_k(z: np.ndarray, k: int, *, n_init: int, max_iter: int, seed: int, algorithm: str):
    """One K with scikit-learn (elkan, minibatch): (labels, centroids, objective, iterations)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans   # here: the default solver needs none of it

    if algorithm == "minibatch":
        model = MiniBatchKMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed,
                                batch_size=min(len(z), 4096))
    else:
        model = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed,
                       algorithm=algorithm)
    labels = model.fit_predict(z)
    # MiniBatchKMeans' inertia_ is on its last batches; report the objective on all points.
    inertia = float(model.inertia_) if algorithm != "minibatch" else float(-model.score(z))
    return labels.astype(np.int16), model.cluster_centers_.astype(np.float32), inertia, int(model.n_iter_)


def sweep(z: np.ndarray, ks=range(2, 11), *, n_init: int = 10, max_iter: int = 1000, seed: int = 0,
          algorithm: str = "lloyd", sample: int = 20000) -> tuple[list[KResult], np.ndarray, float]:
    """K-means for every K (those below the number of points) and the silhouettes.

    Returns (results per K, the silhouette sample's row positions, seconds of K-means).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown K-means algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    z = np.ascontiguousarray(z, dtype=np.float32)
    ks = [k for k in ks if k < len(z)]      # a silhouette needs 2 <= K <= n - 1
    if algorithm != "lloyd":
        import sklearn.cluster  # noqa: F401  (loaded before the clock starts: the seconds are the solver's)
    start = time.perf_counter()
    fitted, seconds = {}, {}
    if algorithm == "lloyd":
        for k, run in kmeans_many(z, ks, n_init=n_init, max_iter=max_iter, seed=seed).items():
            fitted[k] = (run.labels, run.centres, run.inertia, run.n_iter)
    else:
        for k in ks:
            t = time.perf_counter()
            fitted[k] = fit_k(z, k, n_init=n_init, max_iter=max_iter, seed=seed, algorithm=algorithm)
            seconds[k] = time.perf_counter() - t
    kmeans_seconds = time.perf_counter() - start
    idx = sample_indices(len(z), sample, seed)
    distances = pairwise_distances(z[idx]) if ks else None
    results = []
    for k in ks:
        labels, centroids, inertia, n_iter = fitted[k]
        results.append(KResult(k, inertia, silhouette(distances, labels[idx]), n_iter, seconds.get(k),
                               labels, centroids))
    return results, idx, kmeans_seconds


def residual_separation(values: np.ndarray, rows: np.ndarray | None, labels: np.ndarray, pca, dims: int,
                        chunk: int = 8192) -> float:
    """Share of the total sum of squares that the partition separates *outside* the leading
    `dims` components -- the part of the full objective clustering in those components could
    not see. Between-cluster SS outside = sum_k n_k |P_out(c_k - m)|^2, from the full-space
    cluster means (one pass over the latents)."""
    rows = np.arange(len(values)) if rows is None else np.sort(np.asarray(rows))
    chunk = max(1, min(chunk, 8192 * 4096 // values.shape[1]))   # at most 128 MB of a wide layer at a time
    k = int(labels.max()) + 1
    sums = np.zeros((k, values.shape[1]), np.float64)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    for start in range(0, len(rows), chunk):
        sel = rows[start:start + chunk]
        x = np.asarray(values[sel], dtype=np.float32)
        onehot = np.zeros((len(sel), k), np.float32)
        onehot[np.arange(len(sel)), labels[start:start + chunk]] = 1.0
        sums += onehot.T @ x
    centred = sums / np.maximum(counts, 1)[:, None] - pca.mean[None, :]
    inside = centred @ pca.components[:, :dims].astype(np.float64)
    outside = (centred**2).sum(1) - (inside**2).sum(1)
    total = pca.total_variance * (pca.n - 1)
    return float(max((counts * outside).sum(), 0.0) / total) if total > 0 else 0.0


def best(results: list[KResult]) -> KResult:
    """The K with the highest mean silhouette (the smaller K on a tie)."""
    return max(results, key=lambda r: (np.nan_to_num(r.silhouette, nan=-2.0), -r.k))


def nearest_to_centroids(z: np.ndarray, labels: np.ndarray, centroids: np.ndarray, count: int) -> list[np.ndarray]:
    """Per cluster, the row positions of its `count` members nearest to its centroid."""
    out = []
    for c, centre in enumerate(centroids):
        members = np.flatnonzero(labels == c)
        d = ((z[members] - centre) ** 2).sum(1)
        out.append(members[np.argsort(d, kind="stable")[:count]])
    return out


def cluster_plane(z: np.ndarray, seed: int = 0, fit_rows: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """A cluster's own first two principal components: (coordinates [n, 2], variance ratios [2]).

    Fitted on at most `fit_rows` members (a random subset): the two leading directions of a cloud are
    well determined by a few thousand of its points.
    """
    z = np.asarray(z, dtype=np.float64)
    if len(z) < 3:
        return np.zeros((len(z), 2)), np.zeros(2)
    rng = np.random.default_rng(seed)
    fit = z if len(z) <= fit_rows else z[rng.choice(len(z), fit_rows, replace=False)]
    mean = fit.mean(0)
    # Economy SVD of the (<= fit_rows x d) centred block; right singular vectors = components.
    _, s, vt = np.linalg.svd(fit - mean, full_matrices=False)
    var = s**2
    coords = (z - mean) @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    total = var.sum()
    return coords, (var[:2] / total if total > 0 else np.zeros(2))


# --- figures -------------------------------------------------------------------------------

def silhouette_figure(sweeps: dict[str, dict], labels: dict[str, str]):
    """Mean silhouette (left) and the share of variance left inside clusters (right) per K;
    one legend below both."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from hgpose.explain import figures

    fig = Figure(figsize=(10, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    for (name, s), colour in zip(sweeps.items(), ("#1f77b4", "#ff7f0e")):
        ks = [r["k"] for r in s["per_k"]]
        left.plot(ks, [r["silhouette"] for r in s["per_k"]], "o-", color=colour,
                  label=f"{labels[name]} (chosen K={s['chosen_k']})")
        best = next(r for r in s["per_k"] if r["k"] == s["chosen_k"])
        left.plot([best["k"]], [best["silhouette"]], marker="*", markersize=15, color=colour)
        right.plot(ks, [r["inertia_fraction"] for r in s["per_k"]], "o-", color=colour)
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.25)
    left.set_xlabel("K")
    left.set_ylabel("mean silhouette")
    left.set_title("Mean silhouette per K", fontsize=10)
    right.set_xlabel("K")
    right.set_ylabel("within-cluster SS / total SS")
    right.set_title("K-means objective (share of variance left)", fontsize=10)
    star = Line2D([], [], marker="*", markersize=11, color="grey", linestyle="none", label="chosen K")
    figures.legend_below(fig, [left], extra=[star])
    return fig


def nearest_figure(images, keypoints, nearest: list[np.ndarray], rows: np.ndarray, sizes: list[int],
                   subset_label: str):
    """Per cluster (a row of tiles), its members nearest to the centroid, with ground truth."""
    from hgpose.explain import figures

    cols = max(len(n) for n in nearest)
    tiles, titles = [], []
    for members in nearest:
        for i in range(cols):
            r = rows[members[i]] if i < len(members) else None
            tiles.append(None if r is None else figures.crop_with_skeleton(images[r], keypoints[r]))
            titles.append("" if r is None else f"#{r}")
    labels = [f"cluster {c} (n={size:,})" for c, size in enumerate(sizes)]
    return figures.tile_grid(tiles, cols=cols, titles=titles, row_labels=labels, tile_inches=1.3,
                             title=f"Crops nearest to each centroid, {subset_label}")


def glyph_canvas(coords: np.ndarray, keypoints: np.ndarray, size: int = 540, glyph: int = 52,
                 margin: int = 30):
    """A white canvas with each sample's skeleton drawn small at its 2-D position.

    The axes span the 1st-99th percentiles of the coordinates, so a few far outliers do not
    squash the cloud into a corner; those outside are drawn on the border.
    Returns (canvas uint8 [size,size,3], extent (xmin, xmax, ymin, ymax) in coordinate units).
    """
    from hgpose.draw import draw_skeleton
    from hgpose.explain.figures import GT_MIN_SCORE

    canvas = np.full((size, size, 3), 255, np.uint8)
    if len(coords) == 0:
        return canvas, (0, 1, 0, 1)
    lo, hi = np.percentile(coords, 1, axis=0), np.percentile(coords, 99, axis=0)
    coords = np.clip(coords, lo, hi)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    inner = size - 2 * margin
    # x to the right, y up (image rows grow downwards)
    px = margin + (coords[:, 0] - lo[0]) / span[0] * inner
    py = margin + (hi[1] - coords[:, 1]) / span[1] * inner
    for x, y, kps in zip(px, py, keypoints):
        k = np.array(kps, dtype=np.float32, copy=True)
        k[:, :2] = (k[:, :2] - 128.0) * (glyph / 256.0) + (x, y)
        canvas = draw_skeleton(canvas, k, min_score=GT_MIN_SCORE, thickness=2)
    pad = margin / inner * span
    return canvas, (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])


def scatter_figure(panels: list[dict], subset_label: str):
    """The thesis's figure: per cluster, its own 2-component PCA with every (drawn) sample as a
    small ground-truth skeleton. panels: [{"coords", "keypoints", "ratios", "title"}]."""
    from matplotlib.figure import Figure

    # Two panels a row and a canvas of about the panel's size in pixels (100 dpi): the
    # skeletons are drawn 1:1, not thinned by resampling.
    cols = min(len(panels), 2)
    rows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(5.6 * cols, 5.8 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        canvas, extent = glyph_canvas(panel["coords"], panel["keypoints"])
        ax.imshow(canvas, extent=extent, aspect="auto")
        r = panel["ratios"]
        ax.set_xlabel(f"cluster PC1 ({r[0]:.0%})", fontsize=9)
        ax.set_ylabel(f"cluster PC2 ({r[1]:.0%})", fontsize=9)
        ax.set_title(panel["title"], fontsize=10)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"Each cluster in its own first two principal components, {subset_label} "
                 "(ground-truth skeletons; orange = left, blue = right)", fontsize=12)
    fig.subplots_adjust(hspace=0.3, wspace=0.25)
    return fig
