"""`hgpose explain`: run the parts in order and write explain.json, the figures and report.html.

    latents (cached) -> pca -> kmeans -> ablation -> saliency -> compare -> factors -> report

REPORT_DIR/
    explain.json          every number, and the figures of each part (paths relative to it)
    report.html           one self-contained page (figures embedded)
    figures/*.png
    kmeans_<subset>.npz   cluster labels of every K (rows, ids), for further analysis
    latents/              the latents cache (unless --cache elsewhere)

Re-running with `--only` recomputes those parts and keeps the others' results, as long as
they were made from the same checkpoint, split, layer and limit; otherwise it starts over.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from hgpose import __version__
from hgpose.data.store import Store
from hgpose.errors import HgposeError
from hgpose.explain import ablation, clusters, compare, factors, figures, latents as latents_mod, pca as pca_mod
from hgpose.explain import saliency
from hgpose.inference.forward import to_input
from hgpose.config import PRECISIONS
from hgpose.inference.device import resolve_device
from hgpose.io import write_json
from hgpose.skeleton import JOINT_INDEX, JOINTS

FORMAT_VERSION = 1
PARTS = ("pca", "kmeans", "ablation", "saliency", "compare")
SUBSET_LABELS = {"all": "(i) all crops", "full": "(ii) fully annotated crops (every joint of their dataset labelled)"}
MIN_ROWS = 3   # a subset with fewer rows is skipped (PCA and K=2 need a few)


@dataclass
class ExplainOptions:
    split: str = "train"
    layer: str | None = None              # default: the model's latent_layer
    checkpoint: str | None = None         # None = best (else last) | best | last | a file in RUN_DIR/checkpoints | a path
    compare: str | None = None            # a second run (SHG+AE), for the `compare` part
    only: tuple[str, ...] = ()            # parts to run; () = all (compare only with --compare)
    cache_dir: str | None = None          # latents cache; default REPORT_DIR/latents
    device: str = "auto"
    precision: str = "auto"               # forward passes: auto (bf16 where native) | bf16 | fp32
    batch_size: int = 32
    workers: int = 0                      # DataLoader processes reading crops
    limit: int = 0                        # use the first N crops of the split (0 = all)
    k_min: int = 2
    k_max: int = 10
    n_init: int = 10
    max_iter: int = 1000
    kmeans_algorithm: str = "lloyd"       # lloyd | elkan | minibatch
    kmeans_variance: float = 0.95         # cluster in the components holding this share
    silhouette_sample: int = 20000
    seed: int = 0
    nearest: int = 8                      # crops nearest to each centroid shown
    scatter_points: int = 200             # skeletons drawn per cluster scatter
    saliency_samples: int = 2             # per cluster (random crops without K-means)
    saliency_rows: tuple[int, ...] = ()   # explicit crops (rows of the split) instead
    saliency_joints: tuple[str, ...] = () # joint names; () = all 17
    occlusion_patch: int = 32
    occlusion_stride: int = 16
    gradcam_layer: str | None = None      # default: "stem"
    progress: bool = True

    def parts(self) -> list[str]:
        chosen = list(self.only) if self.only else [p for p in PARTS if p != "compare" or self.compare]
        return [p for p in PARTS if p in chosen]


def check_options(o: ExplainOptions) -> None:
    unknown = set(o.only) - set(PARTS)
    if unknown:
        raise HgposeError(f"--only {','.join(sorted(unknown))}: unknown part; choose from {','.join(PARTS)}")
    if "compare" in o.parts() and not o.compare:
        raise HgposeError("--only compare needs --compare RUN_DIR2 (the SHG+AE run)")
    if not 2 <= o.k_min <= o.k_max:
        raise HgposeError(f"K range {o.k_min}..{o.k_max}: need 2 <= k-min <= k-max")
    for name in ("n_init", "max_iter", "batch_size", "nearest", "silhouette_sample"):
        if getattr(o, name) < 1:
            raise HgposeError(f"--{name.replace('_', '-')} {getattr(o, name)}: must be at least 1")
    if not 0 < o.kmeans_variance <= 1:
        raise HgposeError(f"--kmeans-variance {o.kmeans_variance}: give a share in (0, 1]")
    if o.precision not in PRECISIONS:
        raise HgposeError(f"--precision {o.precision}: choose one of {', '.join(PRECISIONS)}")
    if o.kmeans_algorithm not in clusters.ALGORITHMS:
        raise HgposeError(f"--kmeans {o.kmeans_algorithm}: choose one of {', '.join(clusters.ALGORITHMS)}")
    if not (1 <= o.occlusion_stride <= o.occlusion_patch <= 256):
        raise HgposeError(f"occlusion patch {o.occlusion_patch} / stride {o.occlusion_stride}: "
                          "need 1 <= stride <= patch <= 256")
    bad = [j for j in o.saliency_joints if j not in JOINT_INDEX]
    if bad:
        raise HgposeError(f"--saliency-joints {','.join(bad)}: unknown joint; joints are {', '.join(JOINTS)}")


def explain(run_dir, data_dir, out_dir, options: ExplainOptions | None = None, **changes) -> dict:
    """Run the analysis; returns what is written to REPORT_DIR/explain.json.

        explain("runs/thesis", "data/coco", "reports/thesis-train", split="train")
        explain(run, data, out, ExplainOptions(only=("pca",), limit=10000))
    """
    options = _normalised(options, changes)
    check_options(options)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HgposeError(f"--out {out_dir}: is a file, not a folder; give a folder for the report")
    fig_dir = out_dir / "figures"
    device = resolve_device(options.device)
    started = time.perf_counter()

    ckpt = latents_mod.load_checkpoint(run_dir, options.checkpoint, device, options.precision)
    layer = options.layer or ckpt.model.latent_layer
    cache_dir = Path(options.cache_dir) if options.cache_dir else out_dir / "latents"
    store = Store.open(data_dir)
    t = time.perf_counter()
    lat = latents_mod.load_latents(
        ckpt, store, options.split, cache_dir, layer=layer, limit=options.limit,
        batch_size=options.batch_size, workers=options.workers, device=device, progress=options.progress)
    timings = {"latents": round(time.perf_counter() - t, 2)}

    identity = {"checkpoint_sha256": ckpt.sha256, "precision": ckpt.precision,
                "split": options.split, "layer": layer,
                "limit": options.limit, "data_dir": str(Path(data_dir).resolve())}
    result = _previous(out_dir, identity)
    parts = options.parts()
    for part in parts:
        _forget(out_dir, result.pop(part, None))
    result.update({
        "format_version": FORMAT_VERSION,
        "hgpose": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "identity": identity,
        "checkpoint": ckpt.describe(),
        "data": _data_summary(data_dir, options, lat),
        "layer": {"name": layer, "dim": int(lat.values.shape[1])},
        "latents": {**lat.meta, "reused": lat.reused, "path": str(cache_dir)},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
    })
    result.setdefault("timings", {}).update(timings)

    split = store.split(options.split)
    ctx = _Context(options, out_dir, fig_dir, split.images, split.keypoints, lat,
                   {"all": None, "full": lat.fully_annotated})
    _run_parts(ctx, parts, result, ckpt, layer, store, device)
    result["timings"]["total"] = round(time.perf_counter() - started, 2)

    write_json(out_dir / "explain.json", result)
    from hgpose.explain.report import render

    render(out_dir)
    return result


def _normalised(options: ExplainOptions | None, changes: dict) -> ExplainOptions:
    """Options with `changes` applied; "pca,kmeans"-style strings become tuples."""
    options = ExplainOptions(**{**(asdict(options) if options else {}), **changes})
    for name in ("only", "saliency_joints", "saliency_rows"):
        value = getattr(options, name)
        value = tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else tuple(value)
        setattr(options, name, tuple(int(v) for v in value) if name == "saliency_rows" else value)
    return options


def _run_parts(ctx: "_Context", parts: list[str], result: dict, ckpt, layer: str, store: Store, device) -> None:
    """Each asked-for part in order, its section and its time into `result`."""
    if "pca" in parts or "kmeans" in parts or "compare" in parts:
        t = time.perf_counter()
        ctx.fit_pcas()
        result["timings"]["pca_fit"] = round(time.perf_counter() - t, 2)
    if "pca" in parts:
        t = time.perf_counter()
        result["pca"] = _pca_part(ctx)
        result["timings"]["pca"] = round(time.perf_counter() - t + result["timings"]["pca_fit"], 2)
    if "kmeans" in parts:
        t = time.perf_counter()
        result["kmeans"] = _kmeans_part(ctx)
        result["timings"]["kmeans"] = round(time.perf_counter() - t, 2)
    if "ablation" in parts:
        t = time.perf_counter()
        result["ablation"] = _ablation_part(ctx, ckpt, store, device)
        result["timings"]["ablation"] = round(time.perf_counter() - t, 2)
    if "saliency" in parts:
        t = time.perf_counter()
        result["saliency"] = _saliency_part(ctx, ckpt, store, device, result.get("kmeans"))
        result["timings"]["saliency"] = round(time.perf_counter() - t, 2)
    if "compare" in parts:
        t = time.perf_counter()
        result["compare"] = _compare_part(ctx, ckpt, layer, store, device)
        result["timings"]["compare"] = round(time.perf_counter() - t, 2)
    if ctx.pcas:   # the factors follow the PCA (and clusters) just computed
        _forget(ctx.out_dir, result.pop("factors", None))
        found = _factors_part(ctx, store)
        if found is not None:
            result["factors"] = found


# --- bookkeeping -----------------------------------------------------------------------------

def _previous(out_dir: Path, identity: dict) -> dict:
    """The previous explain.json's results if made from the same checkpoint/split/layer/limit."""
    try:
        previous = json.loads((out_dir / "explain.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if previous.get("format_version") != FORMAT_VERSION or previous.get("identity") != identity:
        for part in (*PARTS, "factors"):
            _forget(out_dir, previous.get(part))
        return {}
    return previous


def _forget(out_dir: Path, section: dict | None) -> None:
    """Delete the figure files of a section that is being replaced."""
    for rel in _figure_paths(section):
        (out_dir / rel).unlink(missing_ok=True)


def _figure_paths(obj) -> list[str]:
    """Every figure path (relative, under figures/) found in a nested section."""
    found = []
    if isinstance(obj, dict):
        for value in obj.values():
            found += _figure_paths(value)
    elif isinstance(obj, list):
        for value in obj:
            found += _figure_paths(value)
    elif isinstance(obj, str) and obj.startswith("figures/") and obj.endswith(".png"):
        found.append(obj)
    return found


def _data_summary(data_dir, options: ExplainOptions, lat) -> dict:
    return {
        "dir": str(Path(data_dir).resolve()),
        "split": options.split,
        "crops": len(lat),
        "limit": options.limit,
        "fully_annotated": int(len(lat.fully_annotated)),
        "mean_labelled": float(lat.labelled.mean()),
        "mean_visible": float(lat.visible.mean()),
    }


@dataclass
class _Context:
    """What every part of one explain call reads: the options, where figures go, the crops
    and their latents, and the PCA of each subset (fitted once, used by PCA, K-means,
    compare and the factors)."""

    options: ExplainOptions
    out_dir: Path
    fig_dir: Path
    images: np.ndarray
    keypoints: np.ndarray
    lat: object
    subsets: dict
    pcas: dict = field(default_factory=dict)        # subset -> PCAResult
    scores: dict = field(default_factory=dict)      # subset -> (columns, scores, sq_dist, dims)
    skipped: dict = field(default_factory=dict)     # subset -> reason
    labels: dict = field(default_factory=dict)      # subset -> chosen-K labels

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    def rows(self, subset: str) -> np.ndarray:
        chosen = self.subsets[subset]
        return np.arange(len(self.lat)) if chosen is None else np.sort(chosen)

    def fit_pcas(self) -> None:
        o = self.options
        for name, chosen in self.subsets.items():
            n = len(self.lat) if chosen is None else len(chosen)
            if n < MIN_ROWS:
                self.skipped[name] = f"only {n} crops (need {MIN_ROWS})"
                continue
            p = pca_mod.fit_pca(self.lat.values, chosen, progress=o.progress, desc=f"PCA {name}")
            self.pcas[name] = p
            # One projection pass gives the K-means space, the walk scores and the factor scores.
            dims = p.n_for(o.kmeans_variance)
            walk = [k - 1 for k in pca_mod.walk_components(p)]
            columns = sorted(set(range(max(dims, min(factors.TOP, p.rank, len(p.ratios))))) | set(walk))
            s, sq = pca_mod.project(self.lat.values, p, columns, chosen, progress=o.progress,
                                    desc=f"projection {name}")
            self.scores[name] = (columns, s, sq, dims)


# --- PCA -------------------------------------------------------------------------------------

def _pca_part(ctx: _Context) -> dict:
    out = {"subsets": {}, "skipped": dict(ctx.skipped), "thesis": {
        "ratios": pca_mod.THESIS_RATIOS, "cumulative": pca_mod.THESIS_CUMULATIVE,
        "components_for_95": pca_mod.THESIS_N95}}
    if not ctx.pcas:
        return out
    labels = {k: SUBSET_LABELS[k] for k in ctx.pcas}
    out["variance_figure"] = ctx.rel(figures.save(
        pca_mod.variance_figure(ctx.pcas, labels), ctx.fig_dir / "pca_variance.png"))
    for name, p in ctx.pcas.items():
        entry = pca_mod.summary(p)
        entry["walks"] = [_pc_walk(ctx, name, p, k) for k in pca_mod.walk_components(p)]
        out["subsets"][name] = entry
    return out


def _pc_walk(ctx: _Context, name: str, p, k: int) -> dict:
    """The walk along component k: the nearest real crop to mean + c·sqrt(lambda)·v."""
    columns, s, sq, _ = ctx.scores[name]
    rows = ctx.rows(name)
    col = columns.index(k - 1)
    lam = float(p.eigenvalues[k - 1])
    picks = pca_mod.walk_nearest(s[:, col], sq, lam)
    z = s[picks, col] / np.sqrt(lam) if lam > 0 else np.zeros(len(picks))
    fig = pca_mod.walk_figure(ctx.images, ctx.keypoints, rows[picks], z, k,
                              float(p.ratios[k - 1]), SUBSET_LABELS[name])
    path = figures.save(fig, ctx.fig_dir / f"pca_walk_{name}_pc{k}.png")
    return {"component": k, "steps": list(pca_mod.WALK_STEPS),
            "rows": rows[picks].tolist(), "z": [round(float(v), 3) for v in z],
            "distinct": int(len(set(picks.tolist()))), "figure": ctx.rel(path)}


# --- K-means ---------------------------------------------------------------------------------

def _kmeans_part(ctx: _Context) -> dict:
    o = ctx.options
    out = {"subsets": {}, "skipped": dict(ctx.skipped), "algorithm": o.kmeans_algorithm,
           "n_init": o.n_init, "max_iter": o.max_iter, "variance_kept": o.kmeans_variance}
    for name, p in ctx.pcas.items():
        entry = _kmeans_subset(ctx, name, p)
        if entry is None:
            out["skipped"][name] = f"only {len(ctx.rows(name))} crops: too few for K={o.k_min}"
        else:
            out["subsets"][name] = entry
    if out["subsets"]:
        out["silhouette_figure"] = ctx.rel(figures.save(
            clusters.silhouette_figure(out["subsets"], {k: SUBSET_LABELS[k] for k in out["subsets"]}),
            ctx.fig_dir / "kmeans_silhouette.png"))
    return out


def _kmeans_subset(ctx: _Context, name: str, p) -> dict | None:
    """The K sweep on one subset's PCA space, the chosen K, its clusters and figures."""
    o = ctx.options
    columns, s, _, dims = ctx.scores[name]
    z = s[:, :dims]     # columns start with 0..dims-1
    rows = ctx.rows(name)
    results, sample, seconds = clusters.sweep(
        z, range(o.k_min, o.k_max + 1), n_init=o.n_init, max_iter=o.max_iter, seed=o.seed,
        algorithm=o.kmeans_algorithm, sample=o.silhouette_sample)
    if not results:
        return None
    chosen = clusters.best(results)
    ctx.labels[name] = chosen.labels
    total_ss = float(p.eigenvalues[:dims].sum()) * (p.n - 1)
    nearest = clusters.nearest_to_centroids(z, chosen.labels, chosen.centroids, o.nearest)
    per_cluster = [_cluster_summary(ctx, rows, chosen.labels == c, nearest[c], c) for c in range(chosen.k)]
    np.savez(ctx.out_dir / f"kmeans_{name}.npz", rows=rows, ids=ctx.lat.ids[rows],
             ks=np.array([r.k for r in results]), labels=np.stack([r.labels for r in results]))
    return {
        "n": int(len(z)), "dims": int(dims),
        "variance_in_dims": float(p.cumulative[dims - 1]),
        "silhouette_sample": {"size": int(len(sample)), "of": int(len(z)), "seed": o.seed,
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
        "residual_separation": clusters.residual_separation(ctx.lat.values, ctx.subsets[name],
                                                            chosen.labels, p, dims),
        "clusters": per_cluster,
        "labels_file": f"kmeans_{name}.npz",
        "nearest_figure": ctx.rel(figures.save(
            clusters.nearest_figure(ctx.images, ctx.keypoints, nearest, rows,
                                    [c["size"] for c in per_cluster], SUBSET_LABELS[name]),
            ctx.fig_dir / f"kmeans_{name}_nearest.png")),
        "scatter_figure": ctx.rel(figures.save(
            _scatter(ctx, z, chosen.labels, rows, name), ctx.fig_dir / f"kmeans_{name}_scatter.png")),
    }


def _cluster_summary(ctx: _Context, rows: np.ndarray, members: np.ndarray, nearest, c: int) -> dict:
    return {
        "cluster": c,
        "size": int(members.sum()),
        "mean_labelled": float(ctx.lat.labelled[rows[members]].mean()),
        "mean_visible": float(ctx.lat.visible[rows[members]].mean()),
        "fully_annotated_share": float(ctx.lat.complete[rows[members]].mean()),
        "nearest_rows": rows[nearest].tolist(),
        "nearest_ids": ctx.lat.ids[rows[nearest]].tolist(),
    }


def _scatter(ctx: _Context, z, labels, rows, name):
    rng = np.random.default_rng(ctx.options.seed)
    panels = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        coords, ratios = clusters.cluster_plane(z[members], seed=ctx.options.seed)
        drawn = members if len(members) <= ctx.options.scatter_points else \
            rng.choice(members, ctx.options.scatter_points, replace=False)
        where = np.searchsorted(members, drawn)
        order = np.argsort(drawn)   # sorted rows: sequential reads from the store
        kps = np.asarray(ctx.keypoints[np.sort(rows[drawn])])
        panels.append({"coords": coords[where][order], "keypoints": kps, "ratios": ratios,
                       "title": f"cluster {c}: {len(members):,} crops"
                                + (f" ({len(drawn)} drawn)" if len(drawn) < len(members) else "")})
    return clusters.scatter_figure(panels, SUBSET_LABELS[name])


# --- the other parts ---------------------------------------------------------------------------

def _ablation_part(ctx: _Context, ckpt, store: Store, device) -> dict:
    o = ctx.options
    pck_without, pred_without = ablation.run(
        ckpt, ctx.lat, store, o.split, limit=o.limit, batch_size=o.batch_size, workers=o.workers,
        device=device, progress=o.progress)
    paths = ablation.write_figures(ctx.fig_dir, o.split, ctx.images, ctx.keypoints, ctx.lat,
                                   pck_without, pred_without)
    np.savez(ctx.out_dir / "ablation.npz", ids=ctx.lat.ids, pck_with_skips=ctx.lat.pck,
             pck_without_skips=pck_without)
    return {"summary": ablation.summarise(ctx.lat.pck, pck_without),
            "thesis": ablation.THESIS,
            "figures": {k: ctx.rel(v) for k, v in paths.items()}}


def _saliency_rows(ctx: _Context, kmeans: dict | None) -> list[tuple[int, int | None]]:
    """(row, cluster) pairs: explicit rows, else the crops nearest to each centroid of (i),
    else random crops."""
    o = ctx.options
    n = len(ctx.lat)
    if o.saliency_rows:
        bad = [r for r in o.saliency_rows if not 0 <= r < n]
        if bad:
            raise HgposeError(f"--saliency-rows {bad}: rows of split {o.split!r} run from 0 to {n - 1}")
        return [(int(r), None) for r in o.saliency_rows]
    entry = (kmeans or {}).get("subsets", {}).get("all")
    if entry:
        return [(r, c["cluster"]) for c in entry["clusters"] for r in c["nearest_rows"][:o.saliency_samples]]
    rng = np.random.default_rng(o.seed)
    return [(int(r), None) for r in np.sort(rng.choice(n, min(n, o.saliency_samples), replace=False))]


def _saliency_part(ctx: _Context, ckpt, store: Store, device, kmeans: dict | None) -> dict:
    o = ctx.options
    model = ckpt.model.to(device).eval()
    layer = o.gradcam_layer or saliency.default_gradcam_layer(model)
    if layer not in dict(model.named_modules()):
        from hgpose.models import capture

        with capture(model, [layer]):   # raises the error that lists the layer names
            pass
    joints = [JOINT_INDEX[j] for j in o.saliency_joints] or list(range(len(JOINTS)))
    mean = latents_mod.input_mean(ckpt)
    samples = []
    for row, cluster in _saliency_rows(ctx, kmeans):
        crop = np.array(ctx.images[row])   # a writable copy (torch warns on read-only maps)
        kps = np.array(ctx.keypoints[row])
        x = to_input(torch.from_numpy(crop)[None], mean, device, channels_last=False)
        occ, cam = saliency.explain_sample(model, x, patch=o.occlusion_patch, stride=o.occlusion_stride,
                                           layer=layer, joints=joints)
        ids = ctx.lat.ids[row].tolist()
        where = f", cluster {cluster}" if cluster is not None else ""
        title = (f"Crop #{row} (image {ids[0]}, annotation {ids[1]}{where}): occlusion "
                 f"{o.occlusion_patch}px/{o.occlusion_stride}px | Grad-CAM at {layer}; + = ground truth")
        path = saliency.write_sample(ctx.fig_dir, row, crop, kps, ctx.lat.pred[row], joints, occ, cam, title)
        samples.append({
            "row": row, "ids": ids, "cluster": cluster,
            "peaks": [float(ctx.lat.pred[row, j, 2]) for j in joints],
            "occlusion_locality": saliency.locality(occ, kps, joints, o.occlusion_patch),
            "gradcam_locality": saliency.locality(cam, kps, joints, o.occlusion_patch),
            "figure": ctx.rel(path),
        })
    return {"patch": o.occlusion_patch, "stride": o.occlusion_stride, "gradcam_layer": layer,
            "joints": [JOINTS[j] for j in joints], "samples": samples,
            "mean_locality": _mean_locality(samples, joints)}


def _mean_locality(samples: list[dict], joints: list[int]) -> dict:
    out = {}
    for method in ("occlusion", "gradcam"):
        per_joint = {}
        for i, j in enumerate(joints):
            values = [s[f"{method}_locality"][i] for s in samples if s[f"{method}_locality"][i] is not None]
            per_joint[JOINTS[j]] = float(np.mean(values)) if values else None
        out[method] = per_joint
    return out


def _compare_part(ctx: _Context, ckpt, layer: str, store: Store, device) -> dict:
    o = ctx.options
    other = latents_mod.load_checkpoint(o.compare, o.checkpoint, device, o.precision)
    other_layer = other.model.latent_layer
    other_lat = latents_mod.load_latents(
        other, store, o.split, Path(o.cache_dir) if o.cache_dir else ctx.out_dir / "latents",
        layer=other_layer, role="compare", limit=o.limit, batch_size=o.batch_size,
        workers=o.workers, device=device, progress=o.progress)
    other_all = pca_mod.fit_pca(other_lat.values, progress=o.progress, desc="PCA compare")
    full = other_lat.fully_annotated
    other_full = pca_mod.fit_pca(other_lat.values, full) if len(full) >= MIN_ROWS else None
    rows = [compare.row("this run", ckpt, ctx.lat, layer, ctx.pcas["all"], ctx.pcas.get("full")),
            compare.row("--compare", other, other_lat, other_layer, other_all, other_full)]
    path = figures.save(compare.figure(rows, o.split), ctx.fig_dir / "compare_variance.png")
    for r in rows:
        r.pop("cumulative")   # plotted; the per-run PCA section holds the curves
    return compare.section(rows, o.split, ctx.rel(path))


def _factors_part(ctx: _Context, store: Store) -> dict | None:
    if "all" not in ctx.pcas:
        return None
    found = factors.load(store, ctx.options.split, ctx.lat.ids)
    if found is None:
        return None
    columns, s, _, _ = ctx.scores["all"]
    top = [columns.index(i) for i in range(min(factors.TOP, len(columns))) if i in columns]
    scores = s[:, top]
    result = factors.analyse(found, scores, ctx.labels.get("all"))
    result["figure"] = ctx.rel(figures.save(factors.figure(scores, found, result),
                                            ctx.fig_dir / "factors.png"))
    return result


def format_summary(result: dict, out_dir) -> str:
    """A few lines for the terminal: what was analysed, the headline numbers, where to look."""
    d = result["data"]
    lines = [f"explained {result['checkpoint']['path']} on {d['split']}: {d['crops']:,} crops "
             f"({d['fully_annotated']:,} fully annotated), latent {result['layer']['name']} "
             f"({result['layer']['dim']:,} values{', cached' if result['latents'].get('reused') else ''})"]
    for name, s in result.get("pca", {}).get("subsets", {}).items():
        c = s["components_for"]
        lines.append(f"  PCA {name}: PC1 {s['ratios'][0]:.3f}; components for 90/95/99 %: "
                     f"{c['0.90']}/{c['0.95']}/{c['0.99']}")
    for name, s in result.get("kmeans", {}).get("subsets", {}).items():
        best = next(k for k in s["per_k"] if k["k"] == s["chosen_k"])
        sizes = ", ".join(f"{c['size']:,}" for c in s["clusters"])
        lines.append(f"  K-means {name}: K={s['chosen_k']} (silhouette {best['silhouette']:.3f}); sizes {sizes}")
    if "ablation" in result:
        a = result["ablation"]["summary"]["all"]
        lines.append(f"  skip ablation: mean PCK {a['mean_with_skips']:.3f} with skips, "
                     f"{a['mean_without_skips']:.3f} without ({a['images']:,} images)")
    if "saliency" in result:
        lines.append(f"  saliency: {len(result['saliency']['samples'])} crops x "
                     f"{len(result['saliency']['joints'])} joints")
    compared_on = result.get("compare", {}).get("split", d["split"])  # older explain.json: the run's
    for m in result.get("compare", {}).get("models", []):
        lines.append(f"  {m['model']} ({m['role']}), {compared_on} split: PCK {m['pck']['all']:.3f}, "
                     f"{m['components_for_95']} components for 95 % of {m['dim']}")
    lines.append(f"report: {Path(out_dir) / 'report.html'} ({result['timings']['total']:.0f} s)")
    return "\n".join(lines)
