"""The `factors` part, known generating factors (synthetic data only): does the analysis find them?

`hgpose synth` records in every annotation why the person looks as it does (posture, scale,
rotation, facing, ...; docs/synth.md). When the store was prepared from such a dataset, this
part relates the principal components and the K-means clusters to those factors:

* numeric factors: Pearson correlation with the scores of the top principal components;
* categorical factors (posture, facing): eta^2, the share of a component's variance that the
  categories explain (between-group / total sum of squares), and the adjusted Rand index
  between the chosen K-means clusters and the categories (0 = chance, 1 = identical);
* for each, a chance level from shuffling the factor across the crops.

Real COCO has no such field, and this part is then skipped. It follows the PCA: it runs
whenever this call fitted the PCA (for the pca, kmeans or compare part), with the clusters of
(i) when K-means ran too, so that its numbers always describe the PCA in explain.json; `--only`
does not name it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hgpose.explain import pca
from hgpose.explain.protocol import NoOptions, fragment

if TYPE_CHECKING:
    from hgpose.data.store import Store
    from hgpose.explain.context import Context

NUMERIC = ("scale", "rotation_deg", "lean_deg", "yaw_deg", "occluded_joints", "outside_joints",
           "occluded_fraction", "people")
CATEGORICAL = ("posture", "facing")
TOP = pca.SCORED_COMPONENTS   # components related to the factors
PERMUTATIONS = 200  # shuffles for the chance levels


def load(store: Store, split: str, ids: np.ndarray) -> dict[str, np.ndarray] | None:
    """The synth factors of each crop (rows as `ids`), or None when the data is not synthetic
    (or the store holds several sources: synthetic people come alone)."""
    sources = store.sources
    if len(sources) != 1:
        return None
    path = (sources[0].get("annotations") or {}).get(split)
    # `hgpose synth` writes OUT_DIR/synth.json beside annotations/: checking for it first
    # avoids parsing a 240 MB COCO file only to find no factors in it.
    if not path or not Path(path).is_file() or not (Path(path).parent.parent / "synth.json").is_file():
        return None
    annotations = json.loads(Path(path).read_text()).get("annotations", [])
    by_id = {a["id"]: a.get("synth") for a in annotations}
    rows = [by_id.get(int(i)) for i in ids[:, 1]]
    if not rows or any(r is None for r in rows):
        return None
    names = [n for n in NUMERIC + CATEGORICAL if n in rows[0]]
    return {n: np.array([r[n] for r in rows]) for n in names}


def eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    total = ((values - values.mean()) ** 2).sum()
    if total <= 0:
        return 0.0
    between = sum((groups == g).sum() * (values[groups == g].mean() - values.mean()) ** 2
                  for g in np.unique(groups))
    return float(between / total)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def _chance(statistic, scores: np.ndarray, values: np.ndarray, rng, permutations: int) -> float:
    """The 99th percentile of the best statistic over the components when the factor is
    shuffled across crops: what "best of k components" reaches by chance alone."""
    best = [max(statistic(scores[:, i], shuffled) for i in range(scores.shape[1]))
            for shuffled in (rng.permutation(values) for _ in range(permutations))]
    return float(np.quantile(best, 0.99))


def analyse(factors: dict[str, np.ndarray], scores: np.ndarray, labels: np.ndarray | None, *,
            permutations: int = PERMUTATIONS, seed: int = 0) -> dict:
    """Relate the top components' scores [n, >=1] (and the clusters) to the factors.

    Each factor's best statistic over the top components comes with its chance level: the
    99th percentile of the same best statistic over `permutations` shuffles of the factor
    (on at most 5,000 random crops, which pins that percentile down well enough).
    """
    from sklearn.metrics import adjusted_rand_score

    k = min(TOP, scores.shape[1])
    n = len(scores)
    rng = np.random.default_rng(seed)
    sub = np.arange(n) if n <= 5000 else rng.choice(n, 5000, replace=False)
    top = scores[:, :k]
    out = {"n": n, "components": k, "permutations": permutations, "numeric": {}, "categorical": {}}
    abs_r = lambda a, b: abs(correlation(a, b))  # noqa: E731
    for name in NUMERIC:
        if name in factors and np.ptp(factors[name].astype(np.float64)) > 0:   # constants say nothing
            r = [correlation(top[:, i], factors[name]) for i in range(k)]
            best = int(np.argmax(np.abs(r)))
            out["numeric"][name] = {"r": r, "best_component": best + 1, "best_r": r[best],
                                    "chance_abs_r": _chance(abs_r, top[sub], factors[name][sub], rng, permutations)}
    for name in CATEGORICAL:
        if name in factors and len(np.unique(factors[name])) > 1:
            groups = factors[name]
            eta = [eta_squared(top[:, i], groups) for i in range(k)]
            best = int(np.argmax(eta))
            entry = {"eta2": eta, "best_component": best + 1, "best_eta2": eta[best],
                     "chance_eta2": _chance(eta_squared, top[sub], groups[sub], rng, permutations),
                     "categories": sorted(map(str, np.unique(groups)))}
            if labels is not None:
                entry["ari"] = float(adjusted_rand_score(groups, labels))
                entry["contingency"] = {
                    str(c): {str(g): int(((labels == c) & (groups == g)).sum()) for g in entry["categories"]}
                    for c in np.unique(labels)}
            out["categorical"][name] = entry
    return out


def panels(result: dict) -> dict:
    """What `figure` draws, for its caption: the component posture explains best (left) and
    the numeric factor with the strongest correlation and its component (right)."""
    out = {}
    if "posture" in result["categorical"]:
        out["posture_component"] = result["categorical"]["posture"]["best_component"]
    if result["numeric"]:
        name, best = max(result["numeric"].items(), key=lambda kv: abs(kv[1]["best_r"]))
        out.update(numeric=name, numeric_component=best["best_component"])
    return out


def figure(scores: np.ndarray, factors: dict[str, np.ndarray], result: dict):
    """Left: the component that posture explains best, per posture family (box plots with the
    crops as dots). Right: the numeric factor that correlates best with a top component,
    against that component. Axes span the 1st-99th percentiles (outliers on the edge)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    rng = np.random.default_rng(0)
    if "posture" in result["categorical"]:
        cat = result["categorical"]["posture"]
        c = cat["best_component"] - 1
        groups = cat["categories"]
        values = [scores[factors["posture"] == g, c] for g in groups]
        left.boxplot(values, showfliers=False, widths=0.6, **_horizontal())
        for i, v in enumerate(values, start=1):
            left.scatter(v, i + rng.uniform(-0.18, 0.18, len(v)), s=6, alpha=0.5, color="#1f77b4")
        left.set_yticks(range(1, len(groups) + 1), [f"{g} ({len(v)})" for g, v in zip(groups, values)])
        left.set_xlabel(f"PC{c + 1} score")
        _robust_limits(left.set_xlim, scores[:, c])
        ari = f"; cluster ARI {cat['ari']:.2f}" if "ari" in cat else ""
        left.set_title(f"Posture vs PC{c + 1}: eta² {cat['best_eta2']:.2f} (chance {cat['chance_eta2']:.2f}){ari}",
                       fontsize=10)
    if result["numeric"]:
        name, best = max(result["numeric"].items(), key=lambda kv: abs(kv[1]["best_r"]))
        c = best["best_component"] - 1
        right.scatter(factors[name], scores[:, c], s=9, alpha=0.6, color="#444")
        _robust_limits(right.set_ylim, scores[:, c])
        right.set_xlabel(name)
        right.set_ylabel(f"PC{c + 1} score")
        right.set_title(f"Strongest numeric factor: {name} vs PC{c + 1}, r = {best['best_r']:+.2f} "
                        f"(chance |r| {best['chance_abs_r']:.2f})", fontsize=10)
    for ax in (left, right):
        ax.grid(alpha=0.25)
    return fig


def _horizontal() -> dict:
    """Horizontal box plots: `orientation=` from matplotlib 3.10, `vert=False` before."""
    import matplotlib

    major, minor = (int(v) for v in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _robust_limits(set_limits, values: np.ndarray) -> None:
    lo, hi = np.percentile(values, [1, 99])
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    set_limits(lo - pad, hi + pad)


# --- the part ------------------------------------------------------------------------------

# No options of its own: the components (TOP) and shuffles (PERMUTATIONS) are fixed.
Options = NoOptions


TITLE = "Known factors"
TEMPLATE = fragment("factors")
SELECTABLE = False


def wanted(ctx: Context) -> bool:
    return pca.recomputed(ctx)


def run(ctx: Context) -> dict | None:
    """explain.json's factors section, or None when the crops carry no synth factors."""
    spaces = pca.spaces(ctx)
    if "all" not in spaces:
        return None
    found = load(ctx.store, ctx.options.split, ctx.latents.ids)
    if found is None:
        return None
    space = spaces["all"]
    top = [space.columns.index(i) for i in range(min(TOP, len(space.columns))) if i in space.columns]
    scores = space.scores[:, top]
    result = analyse(found, scores, ctx.cluster_labels.get("all"))
    result["figure"] = ctx.save_figure(figure(scores, found, result), "factors.png")
    result["panels"] = panels(result)
    return result


def summary_lines(section: dict, result: dict) -> list[str]:
    return []   # the report's table says it; the terminal keeps to the thesis's headline numbers
