"""The `kmeans` part: K-means of the latents for K = k-min..k-max on (i) and (ii), K chosen by
the mean silhouette; per cluster its size, joints, the crops nearest to its centroid and its
own 2-component scatter drawn as skeletons.

It clusters in the leading principal components of the shared PCA space (`pca.spaces`)
that hold --kmeans-variance of the variance; the sweep, silhouette and figures are in
`clusters`, the lockstep Lloyd solver in `lloyd` (`kmeans_many`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hgpose.errors import HgposeError
from hgpose.explain import clusters
from hgpose.explain import pca
from hgpose.explain.pca import SUBSET_LABELS, PCASpace
from hgpose.explain.protocol import fragment, require_at_least_one
from hgpose.explain.figures import save_npz

if TYPE_CHECKING:
    from hgpose.explain.context import Context


@dataclass
class Options:
    k_min: int = 2
    k_max: int = 10
    n_init: int = 10
    max_iter: int = 1000
    kmeans_algorithm: str = "lloyd"       # lloyd | elkan | minibatch
    kmeans_variance: float = 0.95         # cluster in the components holding this share
    silhouette_sample: int = 20000
    # the Python API's only (no flag):
    nearest: int = 8                      # crops nearest to each centroid shown
    scatter_points: int = 200             # skeletons drawn per cluster scatter

    def check(self, options) -> None:
        if not 2 <= self.k_min <= self.k_max:
            raise HgposeError(f"K range {self.k_min}..{self.k_max}: need 2 <= k-min <= k-max")
        require_at_least_one(self, ("n_init", "max_iter", "nearest", "silhouette_sample"))
        if not 0 < self.kmeans_variance <= 1:
            raise HgposeError(f"--kmeans-variance {self.kmeans_variance}: give a share in (0, 1]")
        if self.kmeans_algorithm not in clusters.ALGORITHMS:
            raise HgposeError(f"--kmeans {self.kmeans_algorithm}: choose one of {', '.join(clusters.ALGORITHMS)}")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--k-min", dest="k_min", type=int, metavar="N", default=cls.k_min,
                            help=f"smallest K (default: {cls.k_min})")
        parser.add_argument("--k-max", dest="k_max", type=int, metavar="N", default=cls.k_max,
                            help=f"largest K (default: {cls.k_max})")
        parser.add_argument("--n-init", dest="n_init", type=int, metavar="N", default=cls.n_init,
                            help=f"K-means initialisations per K (default: {cls.n_init})")
        parser.add_argument("--max-iter", dest="max_iter", type=int, metavar="N", default=cls.max_iter,
                            help=f"K-means iterations at most (default: {cls.max_iter})")
        parser.add_argument("--kmeans", dest="kmeans_algorithm", default=cls.kmeans_algorithm,
                            choices=clusters.ALGORITHMS,
                            help="K-means solver: lloyd = exact Lloyd with k-means++, every K and restart "
                                 "advanced together (fast on large N); elkan = scikit-learn's exact Elkan; "
                                 "minibatch = scikit-learn's MiniBatchKMeans, the same objective minimised "
                                 f"approximately (default: {cls.kmeans_algorithm})")
        parser.add_argument("--kmeans-variance", dest="kmeans_variance", type=float, metavar="SHARE",
                            default=cls.kmeans_variance,
                            help="cluster in the leading principal components holding this share of the "
                                 "variance; the objective then differs from the full one by at most 1 - SHARE "
                                 "of the total sum of squares, and explain.json reports how much the chosen "
                                 f"clusters really separate outside them (default: {cls.kmeans_variance})")
        parser.add_argument("--silhouette-sample", dest="silhouette_sample", type=int, metavar="N",
                            default=cls.silhouette_sample,
                            help="silhouette on all crops up to N, else on a fixed random N (the same for "
                                 f"every K) (default: {cls.silhouette_sample})")


def check_silhouette_memory(n: int, sample: int, available: int | None = None) -> None:
    """Refuse, before any latent is computed, a silhouette sample whose distance matrix
    (min(n, sample)^2 float32, computed once for every K) would not fit in memory."""
    size = min(n, sample)
    available = pca.available_memory() if available is None else available
    need = size * size * 4
    if available is not None and need > available:
        fits = int((available / 4) ** 0.5)
        raise HgposeError(f"--silhouette-sample {sample}: the distance matrix of {size:,} crops needs about "
                          f"{pca.size(need)}, more than the {pca.size(available)} available; use "
                          f"--silhouette-sample {fits:,} or fewer")


TITLE = "K-means"
TEMPLATE = fragment("kmeans")
SELECTABLE = True


def wanted(ctx: Context) -> bool:
    return ctx.asked("kmeans")


def run(ctx: Context) -> dict:
    """explain.json's kmeans section: the K sweep of each subset and the silhouette figure."""
    o = ctx.options.parts["kmeans"]
    spaces = pca.spaces(ctx)
    out = {"subsets": {}, "skipped": pca.skipped(ctx), "algorithm": o.kmeans_algorithm,
           "n_init": o.n_init, "max_iter": o.max_iter, "variance_kept": o.kmeans_variance}
    for name, space in spaces.items():
        entry = _subset(ctx, o, name, space, out["skipped"])
        if entry is not None:
            out["subsets"][name] = entry
    if out["subsets"]:
        fig = clusters.silhouette_figure(out["subsets"], {k: SUBSET_LABELS[k] for k in out["subsets"]})
        out["silhouette_figure"] = ctx.save_figure(fig, "kmeans_silhouette.png")
    return out


def _subset(ctx: Context, o: Options, name: str, space: PCASpace, skipped: dict) -> dict | None:
    """The K sweep on one subset's PCA space, the chosen K, its clusters and figures; None,
    with the reason in `skipped`, when there is no K to choose."""
    seed = ctx.options.seed
    dims = space.dims
    z = space.scores[:, :dims]     # the projected columns start with 0..dims-1
    rows = ctx.rows(name)
    results, sample, seconds = clusters.sweep(
        z, range(o.k_min, o.k_max + 1), n_init=o.n_init, max_iter=o.max_iter, seed=seed,
        algorithm=o.kmeans_algorithm, sample=o.silhouette_sample)
    if not results:
        skipped[name] = f"only {len(rows)} crops: too few for K={o.k_min}"
        return None
    if not any(np.isfinite(r.silhouette) for r in results):
        # the highest of undefined silhouettes would be an arbitrary K presented as chosen
        skipped[name] = (f"no K could be chosen: for every K from {o.k_min} to {o.k_max} the silhouette is "
                         f"undefined, because K-means left all {len(sample):,} crops of the silhouette sample "
                         f"in one cluster (their latents are identical or nearly so: PCA rank {space.pca.rank})")
        return None
    chosen = clusters.best(results)
    ctx.cluster_labels[name] = chosen.labels
    p = space.pca
    total_ss = float(p.eigenvalues[:dims].sum()) * (p.n - 1)
    nearest = clusters.nearest_to_centroids(z, chosen.labels, chosen.centroids, o.nearest)
    per_cluster = [_cluster(ctx, rows, chosen.labels == c, nearest[c], c) for c in range(chosen.k)]
    save_npz(ctx.write_dir / f"kmeans_{name}.npz", rows=rows, ids=ctx.latents.ids[rows],
             ks=np.array([r.k for r in results]), labels=np.stack([r.labels for r in results]))
    return {
        "n": int(len(z)), "dims": int(dims),
        "variance_in_dims": float(p.cumulative[dims - 1]),
        "silhouette_sample": {"size": int(len(sample)), "of": int(len(z)), "seed": seed,
                              "sampled": bool(len(sample) < len(z))},
        "per_k": [{"k": r.k, "inertia": r.inertia,
                   "inertia_fraction": r.inertia / total_ss if total_ss > 0 else None,
                   "silhouette": r.silhouette, "n_iter": r.n_iter,
                   "seconds": None if r.seconds is None else round(r.seconds, 2)}
                  for r in results],
        "chosen_k": chosen.k,
        "kmeans_seconds": round(seconds, 2),
        # how much the chosen partition separates outside the clustered components
        # (share of the total SS): the part of the full objective it could not see
        "residual_separation": clusters.residual_separation(ctx.latents.values, ctx.subsets[name],
                                                            chosen.labels, p, dims),
        "clusters": per_cluster,
        "labels_file": f"kmeans_{name}.npz",
        "nearest_figure": ctx.save_figure(
            clusters.nearest_figure(ctx.images, ctx.keypoints, nearest, rows,
                                    [c["size"] for c in per_cluster], SUBSET_LABELS[name]),
            f"kmeans_{name}_nearest.png"),
        "scatter_figure": ctx.save_figure(_scatter(ctx, o, z, chosen.labels, rows, name),
                                          f"kmeans_{name}_scatter.png"),
    }


def _cluster(ctx: Context, rows: np.ndarray, members: np.ndarray, nearest, c: int) -> dict:
    lat = ctx.latents
    return {
        "cluster": c,
        "size": int(members.sum()),
        "mean_labelled": float(lat.labelled[rows[members]].mean()),
        "mean_visible": float(lat.visible[rows[members]].mean()),
        "fully_annotated_share": float(lat.complete[rows[members]].mean()),
        "nearest_rows": rows[nearest].tolist(),
        "nearest_ids": lat.ids[rows[nearest]].tolist(),
    }


def _scatter(ctx: Context, o: Options, z, labels, rows, name):
    """Each cluster in its own two leading components, at most --scatter-points skeletons."""
    seed = ctx.options.seed
    rng = np.random.default_rng(seed)
    panels = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        coords, ratios = clusters.cluster_plane(z[members], seed=seed)
        drawn = members if len(members) <= o.scatter_points else \
            rng.choice(members, o.scatter_points, replace=False)
        where = np.searchsorted(members, drawn)
        order = np.argsort(drawn)   # sorted rows: sequential reads from the store
        kps = np.asarray(ctx.keypoints[np.sort(rows[drawn])])
        panels.append({"coords": coords[where][order], "keypoints": kps, "ratios": ratios,
                       "title": f"cluster {c}: {len(members):,} crops"
                                + (f" ({len(drawn)} drawn)" if len(drawn) < len(members) else "")})
    return clusters.scatter_figure(panels, SUBSET_LABELS[name])


def summary_lines(section: dict, result: dict) -> list[str]:
    lines = []
    for name, s in section.get("subsets", {}).items():
        best = next(k for k in s["per_k"] if k["k"] == s["chosen_k"])
        sizes = ", ".join(f"{c['size']:,}" for c in s["clusters"])
        lines.append(f"  K-means {name}: K={s['chosen_k']} (silhouette {best['silhouette']:.3f}); sizes {sizes}")
    return lines
