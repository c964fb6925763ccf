"""Can `hgpose explain` analyse full COCO train (124,040 x 4,096 float32 latents, ~2 GB)
within 24 GB and ~15 minutes on 2 cores? Times each step of the analysis on generated
latents with the thesis's structure, and reports the peak memory.

    python benchmarks/explain_scale.py                 # full size (takes a while)
    python benchmarks/explain_scale.py --n 20000       # quicker, same structure

The latents are generated chunk by chunk into a memory map (never whole in RAM) as
mean + (scores * sqrt(eigenvalues)) @ Q^T with a random orthogonal Q and
* a spectrum interpolated through the thesis's anchors (SPEC §7): PC1 0.534, PC2 0.028,
  PC3 0.018, 65 % at 10 components, 82 % at 100, 95 % at 541, 100 % at 4,096;
* clusters: the PC1 scores are a two-group mixture (60/40; the thesis's "nearly fully
  annotated vs. many joints missing"), PCs 2-5 carry four smaller groups, the rest is
  Gaussian. So K-means has something to find and the silhouette is not that of noise.
A random 5.7 % of the rows plays the fully annotated subset (7,017 / 124,040 in the thesis).

The analysis runs in a child process with exactly the functions `hgpose explain` uses
(hgpose.explain.pca / clusters), so its peak RSS (ru_maxrss of the child) is the analysis's
alone. That peak includes the pages of the memory-mapped latents it touched (up to ~2 GB
of reclaimable page cache), so it overstates the memory the analysis really needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THESIS_CUMULATIVE = ((1, 0.534), (2, 0.562), (3, 0.580), (10, 0.65), (100, 0.82), (541, 0.95))
FULL_SHARE = 7017 / 124040


def spectrum(dim: int) -> np.ndarray:
    """Eigenvalues (summing to 1) whose cumulative curve passes through the thesis's anchors,
    linear in log(component) between them, reaching 1 at `dim`."""
    anchors = [(k, c) for k, c in THESIS_CUMULATIVE if k < dim] + [(dim, 1.0)]
    ks, cs = np.array([a[0] for a in anchors], float), np.array([a[1] for a in anchors])
    k = np.arange(1, dim + 1, dtype=float)
    cumulative = np.interp(np.log(k), np.log(ks), cs)
    cumulative[0] = cs[0]
    return np.diff(np.concatenate([[0.0], cumulative]))


def generate(path: Path, n: int, dim: int, seed: int, chunk: int = 8192) -> dict:
    rng = np.random.default_rng(seed)
    lam = spectrum(dim)
    scale = np.sqrt(lam * dim).astype(np.float32)       # total variance = dim (unit per value)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim), dtype=np.float32))  # a random rotation
    qt = np.ascontiguousarray(q.T, dtype=np.float32)
    mean = rng.uniform(0.0, 2.0, dim).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = rng.standard_normal((m, dim), dtype=np.float32)
        # PC1: two groups at -/+ (unit variance overall): 60 % at -0.8, 40 % at +1.2, spread 0.3.
        group = rng.random(m) < 0.4
        z[:, 0] = np.where(group, 1.2, -0.8) + 0.3 * z[:, 0]
        z[:, 0] /= np.sqrt(0.96 + 0.09)
        # PCs 2-5: four groups, each shifted along one of them.
        sub = rng.integers(0, 4, m)
        z[np.arange(m), 1 + sub] += 1.5
        z[:, 1:5] /= np.sqrt(1 + 1.5**2 * 0.1875)
        out[start:start + m] = (z * scale) @ qt + mean
    out.flush()
    del out
    return {"cumulative_at": {str(k): float(np.cumsum(lam)[k - 1]) for k, _ in THESIS_CUMULATIVE if k <= dim}}


def analyse(args) -> None:
    """The child process: the steps of `hgpose explain` PCA and K-means, each timed."""
    from hgpose.explain import clusters, pca

    values = np.load(args.path, mmap_mode="r")
    n = len(values)
    full = np.sort(np.random.default_rng(1).choice(n, max(3, int(round(FULL_SHARE * n))), replace=False))
    report = {}

    def step(name, fn):
        start = time.perf_counter()
        result = fn()
        report[name] = {"seconds": round(time.perf_counter() - start, 1), "peak_rss_gb": _peak_gb()}
        print(json.dumps({name: report[name]}), flush=True)
        return result

    for subset, rows in (("all", None), ("full", full)):
        p = step(f"pca_{subset}", lambda: pca.fit_pca(values, rows))
        dims = p.n_for(args.variance)
        walk = [k - 1 for k in pca.walk_components(p)]
        columns = sorted(set(range(dims)) | set(walk))
        scores, sq = step(f"project_{subset}", lambda: pca.project(values, p, columns, rows))
        step(f"walks_{subset}", lambda: [pca.walk_nearest(scores[:, columns.index(k)], sq, p.eigenvalues[k])
                                         for k in walk])
        z = np.ascontiguousarray(scores[:, :dims])
        del scores
        results, sample, seconds = step(f"kmeans_{subset}", lambda: clusters.sweep(
            z, range(2, args.k_max + 1), n_init=args.n_init, max_iter=args.max_iter, seed=0,
            algorithm=args.algorithm, sample=args.sample))
        per_k = [{"k": r.k, "silhouette": round(r.silhouette, 4), "n_iter": r.n_iter} for r in results]
        chosen = clusters.best(results)
        unseen = step(f"residual_{subset}", lambda: clusters.residual_separation(values, rows, chosen.labels, p, dims))
        report[f"pca_{subset}"].update({
            "rows": len(z), "pc1": round(float(p.ratios[0]), 4),
            "components_for": {f"{f:.2f}": p.n_for(f) for f in pca.FRACTIONS}, "kmeans_dims": dims})
        report[f"kmeans_{subset}"].update({"per_k": per_k, "chosen_k": chosen.k, "kmeans_seconds": round(seconds, 1),
                                           "silhouette_points": len(sample), "residual_separation": unseen})
        del z, results
    print("RESULT " + json.dumps(report), flush=True)


def _peak_gb() -> float:
    # ru_maxrss is in KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=124040, help="rows (default: full COCO train, 124040)")
    parser.add_argument("--dim", type=int, default=4096, help="values per latent (default: 4096)")
    parser.add_argument("--k-max", type=int, default=10)
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--algorithm", default="lloyd", choices=("lloyd", "elkan", "minibatch"),
                        help="K-means solver, as `hgpose explain --kmeans` (default: lloyd)")
    parser.add_argument("--variance", type=float, default=0.95,
                        help="cluster in the components holding this share (as --kmeans-variance)")
    parser.add_argument("--sample", type=int, default=20000, help="silhouette sample (default: 20000)")
    parser.add_argument("--dir", default=None, help="where the latents go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated latents")
    parser.add_argument("--path", help=argparse.SUPPRESS)          # child mode
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.path:
        analyse(args)
        return

    work = Path(args.dir or tempfile.mkdtemp(prefix="explain_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "latents.npy"
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}; "
          f"{args.n:,} x {args.dim:,} float32 = {args.n * args.dim * 4 / 2**30:.2f} GiB -> {path}")
    start = time.perf_counter()
    info = generate(path, args.n, args.dim, seed=0)
    print(f"generate: {time.perf_counter() - start:.1f} s (spectrum: {info['cumulative_at']})", flush=True)

    start = time.perf_counter()
    child = [sys.executable, __file__, "--path", str(path), "--k-max", str(args.k_max),
             "--n-init", str(args.n_init), "--max-iter", str(args.max_iter), "--algorithm", args.algorithm,
             "--variance", str(args.variance), "--sample", str(args.sample)]
    report = None
    with subprocess.Popen(child, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:            # each step as it finishes, then the summary
            if line.startswith("RESULT "):
                report = json.loads(line[7:])
            else:
                print("  " + line.rstrip(), flush=True)
    total = time.perf_counter() - start
    if proc.returncode != 0 or report is None:
        sys.exit(f"analysis failed with exit code {proc.returncode}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"\nanalysis ({args.algorithm}, n_init {args.n_init}, K 2..{args.k_max}, "
          f"silhouette sample {args.sample:,}, clustering at {args.variance:.0%} variance):")
    for name, r in report.items():
        extra = ""
        if name.startswith("pca_"):
            extra = (f"  rows {r['rows']:,}, PC1 {r['pc1']:.3f}, components for 90/95/99 %: "
                     f"{'/'.join(str(v) for v in r['components_for'].values())}, K-means in {r['kmeans_dims']} dims")
        if name.startswith("kmeans_"):
            ks = ", ".join(f"K={k['k']} s={k['silhouette']:.3f} ({k['n_iter']} it)" for k in r["per_k"])
            extra = (f"  (K-means {r['kmeans_seconds']:.0f} s, silhouettes the rest) chosen K={r['chosen_k']}, "
                     f"separation outside the clustered components {r['residual_separation']:.2e} of total SS; {ks}")
        print(f"  {name:14s} {r['seconds']:8.1f} s   peak RSS so far {r['peak_rss_gb']:.2f} GiB{extra}")
    print(f"  {'total':14s} {total:8.1f} s   peak RSS {peak:.2f} GiB (includes mapped latents pages)")
    if not args.keep:
        path.unlink(missing_ok=True)
        if args.dir is None:
            work.rmdir()


if __name__ == "__main__":
    main()
