"""The `pca` part: PCA of the latents, exact, from the covariance or the Gram matrix,
accumulated in chunks.

On (i) all crops and (ii) the fully annotated ones: the explained-variance table and curves,
the components for 90/95/99 %, and the thesis's PC walks (`run`; the fit and projection
themselves are shared with the other parts: `spaces(ctx)` fits them once per call).

Why this algorithm: with D = 4,096 the covariance is only 4,096 x 4,096 (128 MB in float64)
however many rows there are, and accumulating it is one BLAS matrix product per chunk
(2 N D^2 flops: about a minute for 124,040 rows on two cores). Its eigendecomposition then
gives *every* component and eigenvalue exactly, which the explained-variance table, the
"components for 99 %" count and the walk along the last component all need; a randomised
or incremental PCA would give only the top ones, approximately, for no saving.

With fewer rows than values (N < D: a wide layer such as stem.relu, D = 131,072, or a small
--limit) the D x D covariance would be wasted: it has rank N - 1 at most. The N x N Gram
matrix of the centred rows has the same non-zero eigenvalues, and each eigenvector u gives
the component X^T u / sqrt((N - 1) lambda): the same components, for 2 N^2 D + N^3 flops
instead of 2 N D^2 + D^3 (4 crops at D = 8,192: milliseconds instead of 149 s and 3.3 GB).
Memory: one chunk of rows (at most CHUNK_BYTES) plus the D x D (or N x N) matrix and its
eigendecomposition; `memory_needed` states it, and `check_memory` refuses, with that estimate
and a --limit that fits, before any latent is computed.

The data are centred with a first pass (the mean) before the products of the second:
the one-pass "sum of x x^T minus n m m^T" loses the small eigenvalues to cancellation in
float32 when the mean is large next to the spread.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hgpose import thesis
from hgpose.errors import HgposeError
from hgpose.explain.protocol import NoOptions, fragment
from hgpose.progress import bar as progress_bar

if TYPE_CHECKING:
    from hgpose.explain.context import Context

CHUNK = 8192            # rows per product: 8192 x 4096 float32 = 128 MB
CHUNK_BYTES = CHUNK * 4096 * 4   # and at most this much of a wider layer at a time
# Every row is projected on the leading components up to this many (and on the walks' and
# K-means' components): the factors part relates them to the known generating factors.
SCORED_COMPONENTS = 10
FRACTIONS = (0.90, 0.95, 0.99)
WALK_COMPONENTS = (1, 2, 3, 10, 30, 50, 100)   # 1-based, plus the last (thesis)
WALK_STEPS = (-3, -2, -1, 0, 1, 2, 3)          # multiples of sqrt(eigenvalue); 0 = the mean
# The thesis's numbers on all training latents (SPEC §7), for the report's table.
THESIS_RATIOS = thesis.PCA_RATIOS
THESIS_CUMULATIVE = thesis.PCA_CUMULATIVE
THESIS_N95 = thesis.COMPONENTS_FOR_95["SHG"]
MIN_ROWS = 3   # a subset with fewer rows has no PCA (PCA and K=2 need a few)
SUBSET_LABELS = {"all": "(i) all crops", "full": "(ii) fully annotated crops (every joint of their dataset labelled)"}


@dataclass
class PCAResult:
    mean: np.ndarray          # float64 [D]
    eigenvalues: np.ndarray   # float64 [D], descending: the variance along each component
    # float32 [D, min(N, D)]; column k is component k+1 (unit length; zero for a component
    # without variance found through the Gram matrix, which has no direction of its own)
    components: np.ndarray
    n: int                    # rows it was fitted on

    @property
    def total_variance(self) -> float:
        return float(self.eigenvalues.sum())

    @property
    def ratios(self) -> np.ndarray:
        total = self.total_variance
        return self.eigenvalues / total if total > 0 else np.zeros_like(self.eigenvalues)

    @property
    def cumulative(self) -> np.ndarray:
        return np.cumsum(self.ratios)

    @property
    def rank(self) -> int:
        """Components with a variance above rounding level: at most min(n - 1, D).

        The covariance is summed from float32 products, whose relative rounding (~1e-7 of
        the largest eigenvalue) is the level below which an eigenvalue means nothing.
        """
        if self.eigenvalues[0] <= 0:
            return 0
        tol = self.eigenvalues[0] * np.finfo(np.float32).eps
        return int(min((self.eigenvalues > tol).sum(), max(self.n - 1, 0)))

    def n_for(self, fraction: float) -> int:
        """The fewest leading components whose variance adds up to `fraction` of the total."""
        k = int(np.searchsorted(self.cumulative, fraction - 1e-12) + 1)
        return min(k, max(self.rank, 1))


def _chunks(n_rows: int, rows: np.ndarray | None, chunk: int):
    """Row selections of at most `chunk` rows: slices when all rows are used (no copy of the
    map's index), sorted index arrays for a subset (sorted = sequential reads)."""
    if rows is None:
        for start in range(0, n_rows, chunk):
            yield slice(start, min(start + chunk, n_rows))
    else:
        for start in range(0, len(rows), chunk):
            yield rows[start:start + chunk]


def rows_per_chunk(d: int, chunk: int = CHUNK) -> int:
    """Rows read at a time: `chunk`, fewer for a layer so wide that they would pass CHUNK_BYTES."""
    return max(1, min(chunk, CHUNK_BYTES // (4 * max(d, 1))))


def fit_pca(values: np.ndarray, rows: np.ndarray | None = None, *, chunk: int = CHUNK,
            progress: bool = False, desc: str = "PCA", method: str = "auto") -> PCAResult:
    """Exact PCA of `values[rows]` ([N, D], may be a memory map); rows=None: every row.

    method: "covariance" (D x D), "gram" (N x N) or "auto": the smaller of the two.
    HgposeError when the values hold NaN or inf (a network whose layer output is not finite).
    """
    rows = None if rows is None else np.sort(np.asarray(rows))
    n = len(values) if rows is None else len(rows)
    d = values.shape[1]
    if n < 2:
        raise ValueError(f"PCA needs at least 2 rows, got {n}")
    if method not in ("auto", "covariance", "gram"):
        raise ValueError(f"unknown PCA method {method!r}")
    chunk = rows_per_chunk(d, chunk)
    steps = 2 * ((n + chunk - 1) // chunk)
    with progress_bar(total=steps, desc=desc, unit="chunk", disable=not progress, leave=False) as bar:
        mean = _mean(values, rows, n, chunk, bar)
        gram = method == "gram" or (method == "auto" and n < d)
        fit = _by_gram if gram else _by_covariance
        eigenvalues, components = fit(values, rows, mean, n, chunk, bar)
    return PCAResult(mean=mean, eigenvalues=eigenvalues, components=components, n=n)


def _mean(values, rows, n: int, chunk: int, bar) -> np.ndarray:
    total = np.zeros(values.shape[1], np.float64)
    for sel in _chunks(len(values), rows, chunk):
        total += np.asarray(values[sel], dtype=np.float32).sum(0, dtype=np.float64)
        bar.update()
    if not np.isfinite(total).all():
        raise HgposeError("the latents hold NaN or inf values: the network's output at this layer is not "
                          "finite for some crops; use another checkpoint (--checkpoint) or layer (--layer)")
    return total / n


def _by_covariance(values, rows, mean: np.ndarray, n: int, chunk: int, bar) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues [D] and components [D, D] from the D x D covariance."""
    d = values.shape[1]
    cov = np.zeros((d, d), np.float64)
    mean32 = mean.astype(np.float32)
    for sel in _chunks(len(values), rows, chunk):
        x = np.asarray(values[sel], dtype=np.float32) - mean32
        cov += x.T @ x        # float32 product per chunk (fast BLAS), float64 running sum
        bar.update()
    cov /= n - 1
    eigenvalues, vectors = np.linalg.eigh(cov)            # ascending
    del cov
    order = slice(None, None, -1)
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)  # tiny negatives are rounding
    return eigenvalues, np.ascontiguousarray(vectors[:, order], dtype=np.float32)


def _by_gram(values, rows, mean: np.ndarray, n: int, chunk: int, bar) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues [D] (zero beyond N) and components [D, N] from the N x N Gram matrix of
    the centred rows: the eigenvectors u of X X^T / (N - 1) give the components X^T u /
    sqrt((N - 1) lambda), with the same eigenvalues lambda as the covariance's."""
    d = values.shape[1]
    x = np.empty((n, d), np.float32)                      # the centred rows: N x D < D x D
    mean32, at = mean.astype(np.float32), 0
    for sel in _chunks(len(values), rows, chunk):
        block = np.asarray(values[sel], dtype=np.float32) - mean32
        x[at:at + len(block)] = block
        at += len(block)
        bar.update()
    gram = np.zeros((n, n), np.float64)
    for start in range(0, d, CHUNK):                      # float32 products, float64 running sum
        part = np.ascontiguousarray(x[:, start:start + CHUNK])
        gram += part @ part.T
    gram /= n - 1
    eigenvalues, vectors = np.linalg.eigh(gram)
    del gram
    eigenvalues = np.clip(eigenvalues[::-1], 0.0, None)
    vectors = np.ascontiguousarray(vectors[:, ::-1], dtype=np.float32)
    components = x.T @ vectors                             # [D, N]
    del x
    norms = np.linalg.norm(components, axis=0)
    real = eigenvalues > eigenvalues[0] * np.finfo(np.float32).eps   # above rounding: a direction
    components *= np.where(real, 1.0 / np.where(real, norms, 1.0), 0.0).astype(np.float32)
    full = np.zeros(d, np.float64)
    full[:n] = eigenvalues
    return full, components


# --- what a PCA costs, stated before it runs --------------------------------------------------

def memory_needed(n: int, d: int) -> int:
    """Bytes a `fit_pca` of n rows x d values needs at its peak (the method it chooses): the
    D x D or N x N matrix with its eigendecomposition (a copy, the vectors and LAPACK's
    workspace: about 5 matrices), a chunk of rows, and for the Gram method the centred rows
    and the components (2 x N x D float32)."""
    chunk = min(n, rows_per_chunk(d)) * d * 4
    if n < d:
        return 5 * n * n * 8 + 2 * n * d * 4 + chunk
    return 5 * d * d * 8 + chunk


def available_memory() -> int | None:
    """Memory the system can give this process now (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_memory(n: int, d: int, what: str, available: int | None = None) -> None:
    """Refuse, before anything is computed, a PCA of n rows x d values that needs more memory
    than is available: one line with the estimate and the largest --limit that fits."""
    available = available_memory() if available is None else available
    need = memory_needed(n, d)
    if available is None or need <= available:
        return
    fits = max((m for m in _halvings(n) if memory_needed(m, d) <= available), default=0)
    advice = (f"use --limit {fits:,} or fewer crops, or a narrower --layer" if fits >= MIN_ROWS
              else "choose a narrower --layer")
    method = f"the {min(n, d):,} x {min(n, d):,} {'Gram' if n < d else 'covariance'} matrix"
    raise HgposeError(f"PCA of {n:,} crops x {d:,} values ({what}) needs about {size(need)} of memory "
                      f"({method} and its eigendecomposition), more than the {size(available)} available; {advice}")


def size(n_bytes: int) -> str:
    """Bytes in words: GiB from 1 GiB on, else MiB."""
    return f"{n_bytes / 2**30:,.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:,.0f} MiB"


def _halvings(n: int):
    while n >= MIN_ROWS:
        yield n
        n //= 2


def project(values: np.ndarray, pca: PCAResult, columns, rows: np.ndarray | None = None, *,
            chunk: int = CHUNK, progress: bool = False, desc: str = "projection"):
    """Scores on the given (0-based) components and each row's squared distance to the mean.

    Returns (scores float32 [n, len(columns)], sq_dist float64 [n]); one pass over the rows.
    The squared distance lets the PC walks find nearest samples in the full latent space
    without another pass: |x - q|^2 = |x - m|^2 - 2 c s (x - m).v + c^2 s^2 for q = m + c s v.
    """
    rows = None if rows is None else np.sort(np.asarray(rows))
    columns = np.asarray(columns, dtype=np.int64)
    basis = pca.components[:, columns]
    mean32 = pca.mean.astype(np.float32)
    n = len(values) if rows is None else len(rows)
    scores = np.empty((n, len(columns)), np.float32)
    sq_dist = np.empty(n, np.float64)
    at = 0
    chunks = list(_chunks(len(values), rows, rows_per_chunk(values.shape[1], chunk)))
    with progress_bar(total=len(chunks), desc=desc, unit="chunk", disable=not progress, leave=False) as bar:
        for sel in chunks:
            x = np.asarray(values[sel], dtype=np.float32) - mean32
            m = len(x)
            scores[at:at + m] = x @ basis
            sq_dist[at:at + m] = np.einsum("ij,ij->i", x, x, dtype=np.float64)
            at += m
            bar.update(1)
    return scores, sq_dist


def walk_components(pca: PCAResult) -> list[int]:
    """1-based components the thesis walks along (1, 2, 3, 10, 30, 50, 100 and the last
    with a non-zero variance), keeping those that exist."""
    last = pca.rank
    chosen = [k for k in WALK_COMPONENTS if k <= last]
    if last >= 1 and last not in chosen:
        chosen.append(last)
    return chosen


def walk_nearest(score: np.ndarray, sq_dist: np.ndarray, eigenvalue: float,
                 steps=WALK_STEPS) -> np.ndarray:
    """For each step c, the row nearest (full latent space) to mean + c sqrt(eigenvalue) v.

    score: the rows' scores on v; sq_dist: |x - mean|^2. Returns row positions [len(steps)].
    """
    s = np.sqrt(max(eigenvalue, 0.0))
    c = np.asarray(steps, dtype=np.float64)[:, None]
    d2 = sq_dist[None, :] - 2.0 * c * s * score[None, :].astype(np.float64)  # + c^2 s^2, same for all rows
    return d2.argmin(1)


def numbers(pca: PCAResult, top: int = 10) -> dict:
    """The numbers of one PCA for explain.json."""
    ratios, cumulative = pca.ratios, pca.cumulative
    anchors = sorted({*range(1, top + 1), 30, 50, 100, THESIS_N95} & set(range(1, len(ratios) + 1)))
    return {
        "n": pca.n,
        "dim": len(ratios),
        "rank": pca.rank,
        "total_variance": pca.total_variance,
        "components_for": {f"{f:.2f}": pca.n_for(f) for f in FRACTIONS},
        "table": [{"component": k, "ratio": float(ratios[k - 1]), "cumulative": float(cumulative[k - 1])}
                  for k in anchors],
        "ratios_sum": float(ratios.sum()),
        # The full curves, rounded: plotting and later comparison need no refit.
        "ratios": [float(f"{r:.6g}") for r in ratios[:max(pca.rank, 1)]],
    }


# --- figures -------------------------------------------------------------------------------

def variance_figure(pcas: dict[str, PCAResult], labels: dict[str, str]):
    """Explained-variance ratio per component (left) and cumulative (right), per subset; one
    legend below both."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from hgpose.explain import figures

    fig = Figure(figsize=(11, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c")
    markers = dict(zip(FRACTIONS, ("o", "s", "^")))
    for (name, pca), colour in zip(pcas.items(), colours):
        r = max(pca.rank, 1)
        k = np.arange(1, r + 1)
        left.plot(k, pca.ratios[:r], color=colour, label=f"{labels[name]} (n={pca.n:,})")
        right.plot(k, pca.cumulative[:r], color=colour)
        for f, marker in markers.items():
            n = pca.n_for(f)
            right.plot([n], [pca.cumulative[n - 1]], marker=marker, color=colour, markersize=6,
                       linestyle="none")
            right.annotate(f"{n}", (n, pca.cumulative[n - 1]), textcoords="offset points",
                           xytext=(4, -11), fontsize=8, color=colour)
    left.set_xscale("log")
    if all(p.ratios[0] > 0 for p in pcas.values()):   # latents without variance have nothing to log-scale
        left.set_yscale("log")
    left.set_xlabel("component")
    left.set_ylabel("explained variance ratio")
    left.set_title("Explained variance per component", fontsize=10)
    right.set_xscale("log")
    right.set_xlabel("number of components")
    right.set_ylabel("cumulative explained variance")
    right.set_title("Cumulative explained variance", fontsize=10)
    for f in FRACTIONS:
        right.axhline(f, color="grey", linewidth=0.8, linestyle=":")
    # Start the axis a little below the smallest first-component share, so that a dominant
    # PC1 (0.95 on small models) does not flatten the curves against the top.
    first = min(float(p.cumulative[0]) for p in pcas.values())
    right.set_ylim(max(0.0, min(0.85, first) - 0.05), 1.005)
    for ax in (left, right):
        ax.grid(alpha=0.25, which="both")
    extra = [Line2D([], [], marker=m, color="grey", linestyle="none", label=f"components for {f:.0%}")
             for f, m in markers.items()]
    figures.legend_below(fig, [left], ncols=len(pcas) + len(extra), extra=extra)
    return fig


def walk_runs(picks, steps=WALK_STEPS) -> list[tuple[int, list[int]]]:
    """The walk's picks with consecutive repeats collapsed: [(pick, the steps it covers)], in
    step order. A crop that wins several steps in a row is one tile, not several copies."""
    runs: list[tuple[int, list[int]]] = []
    for pick, step in zip(picks, steps):
        if runs and runs[-1][0] == pick:
            runs[-1][1].append(step)
        else:
            runs.append((pick, [step]))
    return runs


def step_name(step: int) -> str:
    return "mean" if step == 0 else f"{step:+d}√λ"


def steps_name(steps: list[int]) -> str:
    """A tile's steps: "+2√λ", or "-3√λ … -1√λ" for a run."""
    return step_name(steps[0]) if len(steps) == 1 else f"{step_name(steps[0])} … {step_name(steps[-1])}"


def walk_figure(images, keypoints, rows: np.ndarray, z: np.ndarray, component: int, ratio: float,
                subset_label: str, steps=WALK_STEPS):
    """One component's walk: for each step, the nearest real crop with its ground truth, a
    crop that wins consecutive steps drawn once and titled with the steps it covers.

    rows: dataset rows of the nearest samples per step; z: their scores on the component in
    units of sqrt(eigenvalue), to show how far along the component each really lies.
    """
    from hgpose.explain import figures

    runs = walk_runs(np.asarray(rows).tolist(), steps)
    at = {step: i for i, step in enumerate(steps)}
    tiles = [figures.crop_with_skeleton(images[r], keypoints[r]) for r, _ in runs]
    titles = [f"{steps_name(covered)}\n(z={z[at[covered[0]]]:+.1f}, #{r})" for r, covered in runs]
    title = (f"Walk along PC{component} ({ratio:.2%} of the variance), {subset_label}: "
             f"nearest real crop to mean + c·√λ·v")
    return figures.tile_grid(tiles, cols=len(runs), titles=titles, tile_inches=1.7, title=title)


# --- the PCA space the parts share ----------------------------------------------------------

@dataclass
class PCASpace:
    """One subset's PCA and the projection of its rows on the components the parts use."""

    pca: PCAResult
    columns: list[int]        # projected components, 0-based, ascending: 0..dims-1 first
    scores: np.ndarray        # float32 [n, len(columns)]
    sq_dist: np.ndarray       # float64 [n]: each row's squared distance to the mean
    dims: int                 # leading components holding --kmeans-variance: K-means' space


def spaces(ctx: Context) -> dict[str, PCASpace]:
    """Each subset's PCA and one projection of its latents (K-means' space, the PC walks'
    scores and the factors' components in one pass), fitted on the first call of an explain
    call whichever part asks first, and timed once ("pca_fit"). Subsets too small for a PCA
    are left out (`skipped`)."""
    if ctx.pca is None:
        started = time.perf_counter()
        ctx.pca = {}
        for name, chosen in ctx.subsets.items():
            n = len(ctx.latents) if chosen is None else len(chosen)
            if n < MIN_ROWS:
                ctx.pca_skipped[name] = f"only {n} crops (need {MIN_ROWS})"
            else:
                ctx.pca[name] = _space(ctx, name, chosen)
        ctx.timings["pca_fit"] = round(time.perf_counter() - started, 2)
    return ctx.pca


def skipped(ctx: Context) -> dict[str, str]:
    """subset -> why it has no PCA."""
    spaces(ctx)
    return dict(ctx.pca_skipped)


def recomputed(ctx: Context) -> bool:
    """Whether this call has fitted a PCA (of at least one subset)."""
    return bool(ctx.pca)


def _space(ctx: Context, name: str, chosen: np.ndarray | None) -> PCASpace:
    progress = ctx.options.progress
    values = ctx.latents.values
    p = fit_pca(values, chosen, progress=progress, desc=f"PCA {name}")
    dims = p.n_for(ctx.options.parts["kmeans"].kmeans_variance)
    walk = [k - 1 for k in walk_components(p)]
    top = min(SCORED_COMPONENTS, p.rank, len(p.ratios))
    columns = sorted(set(range(max(dims, top))) | set(walk))
    check_projection(p.n, len(columns), dims)
    scores, sq_dist = project(values, p, columns, chosen, progress=progress, desc=f"projection {name}")
    return PCASpace(p, columns, scores, sq_dist, dims)


def check_projection(n: int, columns: int, dims: int, available: int | None = None) -> None:
    """Refuse, before the pass, a projection whose scores (n x columns float32) and K-means'
    copy of its leading `dims` columns would not fit in the available memory."""
    available = available_memory() if available is None else available
    need = n * (columns + dims) * 4 + n * 8
    if available is not None and need > available:
        raise HgposeError(f"projecting {n:,} crops on {columns:,} principal components (K-means clusters in "
                          f"{dims:,}: those holding --kmeans-variance of the variance) needs about {size(need)} "
                          f"of memory, more than the {size(available)} available; lower --kmeans-variance or use --limit")


# --- the part ------------------------------------------------------------------------------

# No options of its own: the components it shows are the thesis's.
Options = NoOptions


TITLE = "PCA"
TEMPLATE = fragment("pca")
SELECTABLE = True


def wanted(ctx: Context) -> bool:
    return ctx.asked("pca")


def run(ctx: Context) -> dict:
    """explain.json's pca section: per subset its numbers and walks, the variance figure."""
    fitted = spaces(ctx)
    out = {"subsets": {}, "skipped": skipped(ctx), "thesis": {
        "ratios": THESIS_RATIOS, "cumulative": THESIS_CUMULATIVE, "components_for_95": THESIS_N95}}
    if not fitted:
        return out
    fits = {name: space.pca for name, space in fitted.items()}
    out["variance_figure"] = ctx.save_figure(
        variance_figure(fits, {k: SUBSET_LABELS[k] for k in fits}), "pca_variance.png")
    for name, space in fitted.items():
        entry = numbers(space.pca)
        entry["walks"] = [_walk(ctx, name, space, k) for k in walk_components(space.pca)]
        out["subsets"][name] = entry
    return out


def _walk(ctx: Context, name: str, space, k: int) -> dict:
    """The walk along component k: the nearest real crop to mean + c·sqrt(lambda)·v."""
    rows = ctx.rows(name)
    col = space.columns.index(k - 1)
    lam = float(space.pca.eigenvalues[k - 1])
    picks = walk_nearest(space.scores[:, col], space.sq_dist, lam)
    z = space.scores[picks, col] / np.sqrt(lam) if lam > 0 else np.zeros(len(picks))
    fig = walk_figure(ctx.images, ctx.keypoints, rows[picks], z, k, float(space.pca.ratios[k - 1]),
                      SUBSET_LABELS[name])
    return {"component": k, "steps": list(WALK_STEPS),
            "rows": rows[picks].tolist(), "z": [round(float(v), 3) for v in z],
            "distinct": int(len(set(picks.tolist()))),
            # what the figure shows: one tile per run of steps won by the same crop
            "tiles": [{"row": int(r), "steps": covered} for r, covered in walk_runs(rows[picks].tolist())],
            "figure": ctx.save_figure(fig, f"pca_walk_{name}_pc{k}.png")}


def summary_lines(section: dict, result: dict) -> list[str]:
    lines = []
    for name, s in section.get("subsets", {}).items():
        c = s["components_for"]
        lines.append(f"  PCA {name}: PC1 {s['ratios'][0]:.3f}; components for 90/95/99 %: "
                     f"{c['0.90']}/{c['0.95']}/{c['0.99']}")
    return lines
