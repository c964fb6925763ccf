"""The `probes` part: what each layer knows. Linear probes (Alain & Bengio 2016) with shuffled-
label controls (Hewitt & Liang 2019) across the layers of `layers.default_layers` (or
--probe-layers), for every target of `hgpose.explain.targets`.

It reads the layers through capture-by-name on a seeded sample of --probe-crops of the analysed
crops (the first --limit N of the split), pooled to at most 4x4 cells and cached beside the
latents (`hgpose.explain.layers`); the probes themselves are `hgpose.explain.probing`. Not run
by default (it fits ~2 x (targets) probes per layer): name it in --only.

The fits (~2 x targets x layers) run --probe-jobs at a time, one a CPU core by default.

explain.json's "probes": per layer and target the held-out score, its control, both with
bootstrap intervals, and selectivity = score - control; per layer and group (a joint's
position: the mean over the joints) the same; for each group the first layer where it is
decodable (selectivity's interval above 0) and its best layer; the figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hgpose.errors import HgposeError
from hgpose.explain import layers as layers_mod
from hgpose.explain import probing
from hgpose.explain.options import comma_list
from hgpose.explain.protocol import flag, fragment, require_at_least_one
from hgpose.workers import pool_size

if TYPE_CHECKING:
    from hgpose.explain.context import Context

MIN_CROPS = 40


def short(layer: str) -> str:
    """A layer's name in a figure: hourglass.down.2 -> down.2, hourglasses.1.down.2 -> hg1.down.2."""
    parts = layer.split(".")
    if parts[0] == "hourglass":
        return ".".join(parts[1:]) or "hourglass out"
    if parts[0] == "hourglasses" and len(parts) > 1:   # a stacked network: hg<stack>.down.2
        return f"hg{parts[1]}." + (".".join(parts[2:]) or "out")
    return layer


def _entry(score: float, control: float, boot: np.ndarray, control_boot: np.ndarray, chance: float) -> dict:
    return {"score": float(score), "interval": probing.interval(boot), "control": float(control),
            "control_interval": probing.interval(control_boot), "selectivity": float(score - control),
            "selectivity_interval": probing.interval(boot - control_boot), "chance": float(chance)}


def probe_all(zs: dict[str, np.ndarray], targets, part, seed: int, folds: dict, jobs: int,
              progress: bool = True) -> dict[str, list[dict]]:
    """Every target on every layer (layer -> `probing.probe`'s results, in `targets`' order),
    `jobs` fits at a time: each fit is one core's work (scikit-learn's logistic regression
    runs single-threaded), and the fits are independent, so the cores split them. The results
    do not depend on `jobs`: each fit's randomness comes from `seed` alone."""
    from joblib import Parallel, delayed

    from hgpose.progress import bar as progress_bar

    tasks = [(layer, t) for layer in zs for t in targets]
    results: dict[str, list[dict]] = {layer: [] for layer in zs}
    fits = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(probing.probe)(t, zs[layer], part, seed, folds[t.name]) for layer, t in tasks)
    with progress_bar(total=len(tasks), desc="probes", unit="probe", disable=not progress, leave=False) as bar:
        for (layer, _), r in zip(tasks, fits):
            results[layer].append(r)
            bar.update(1)
    return results


def probe_layer(fitted: list[dict], targets, part) -> tuple[dict, dict]:
    """Every target's results on one layer (`probe_all`'s, in `targets`' order): (target ->
    entry, group -> entry over its targets' mean)."""
    per_target, per_group = {}, {}
    for t, r in zip(targets, fitted):
        per_target[t.name] = {**_entry(r["score"], r["control"], r["score_boot"], r["control_boot"],
                                       probing.chance(t, part)), "group": t.group}
        per_group.setdefault(t.group, []).append((r, probing.chance(t, part)))
    groups = {}
    for group, results in per_group.items():
        mean = lambda key: probing._nanmean(np.stack([r[key] for r, _ in results]), 0)  # noqa: E731
        groups[group] = {**_entry(mean("score"), mean("control"), mean("score_boot"), mean("control_boot"),
                                  float(np.mean([c for _, c in results]))), "targets": len(results)}
    return per_target, groups


def decodable(entry: dict) -> bool:
    """The score's bootstrap interval wholly above its control's: both are estimates with their
    own noise (a held-out quarter of a few hundred crops moves a balanced accuracy by ~0.07), so
    a score merely above the control's point value is no evidence."""
    return entry["interval"][0] > entry["control_interval"][1]


def findings(layers: list[str], group_scores: dict, groups: list[str]) -> dict:
    """For each group: the first layer where it is decodable (`decodable`) and the layer where
    its score is highest."""
    out = {}
    for g in groups:
        rows = [(layer, group_scores[layer][g]) for layer in layers if g in group_scores[layer]]
        if not rows:
            continue
        first = next((layer for layer, e in rows if decodable(e)), None)
        best_layer, best = max(rows, key=lambda kv: kv[1]["score"])
        out[g] = {"first_decodable": first, "best_layer": best_layer, "best_score": best["score"],
                  "best_control": best["control"]}
    return out


def figure(layers: list[str], groups: list[str], group_scores: dict, kinds: dict):
    """Layer x target map of selectivity (score - control), each cell's score written in it."""
    from matplotlib.figure import Figure

    sel = np.array([[group_scores[layer].get(g, {}).get("selectivity", np.nan) for layer in layers] for g in groups])
    fig = Figure(figsize=(max(7.0, 2.6 + 0.62 * len(layers)), 1.4 + 0.36 * len(groups)), layout="constrained")
    ax = fig.subplots()
    # at least +-0.5 (a binary property's whole range above chance), so that reports compare by colour
    limit = max(float(np.nanmax(np.abs(sel))) if np.isfinite(sel).any() else 0.5, 0.5)
    image = ax.imshow(sel, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for i, g in enumerate(groups):
        for j, layer in enumerate(layers):
            entry = group_scores[layer].get(g)
            if entry is not None:
                ax.text(j, i, f"{entry['score']:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(entry["selectivity"]) > 0.6 * limit else "black")
    ax.set_xticks(range(len(layers)), [short(layer) for layer in layers], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(groups)), [f"{g} ({'R²' if kinds[g] == 'numeric' else 'bal. acc.'})" for g in groups],
                  fontsize=8)
    ax.set_xlabel("layer (in the order the network runs them)")
    fig.colorbar(image, ax=ax, label="score − shuffled-label control", shrink=0.8)
    fig.suptitle("Linear probes: held-out score (written) and its excess over the control (colour)", fontsize=9)
    return fig


# --- the part ------------------------------------------------------------------------------

@dataclass
class Options:
    probe_layers: tuple[str, ...] = ()   # () = layers.default_layers(model)
    probe_crops: int = 2000              # crops sampled for the probes (of the first --limit N)
    probe_bootstrap: int = 200           # bootstrap resamples of the held-out images
    probe_targets: tuple[str, ...] = ()  # () = every target the store gives; else group names
    probe_jobs: int = 0                  # probes fitted at a time (0 = one a usable CPU core)

    def __post_init__(self):
        self.probe_layers = comma_list(self.probe_layers)
        self.probe_targets = comma_list(self.probe_targets)

    def check(self, options) -> None:
        require_at_least_one(self, ("probe_bootstrap",))
        if self.probe_jobs < 0:
            raise HgposeError(f"{flag('probe_jobs')} {self.probe_jobs}: give 0 (one a CPU core) or more")
        if self.probe_crops < MIN_CROPS:
            raise HgposeError(f"{flag('probe_crops')} {self.probe_crops}: must be at least {MIN_CROPS} "
                              "(a quarter of them are held out)")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--probe-layers", dest="probe_layers", type=comma_list, default=cls.probe_layers,
                            metavar="NAMES", help="layers to probe, comma-separated "
                            "(default: stem, each down level, bottleneck, each up level, hourglass, head)")
        parser.add_argument("--probe-crops", dest="probe_crops", type=int, default=cls.probe_crops, metavar="N",
                            help=f"crops sampled for the probes (default: {cls.probe_crops}); "
                            "a quarter of their images are held out")
        parser.add_argument("--probe-bootstrap", dest="probe_bootstrap", type=int, default=cls.probe_bootstrap,
                            metavar="B", help=f"bootstrap resamples of the held-out images (default: {cls.probe_bootstrap})")
        parser.add_argument("--probe-targets", dest="probe_targets", type=comma_list, default=cls.probe_targets,
                            metavar="GROUPS", help="properties to probe, comma-separated, e.g. 'joint position,facing' "
                            "(default: every one the data gives; the random label always comes)")
        parser.add_argument("--probe-jobs", dest="probe_jobs", type=int, default=cls.probe_jobs, metavar="N",
                            help="probes fitted at a time, one a process; 0 = one a usable CPU core (default: 0); "
                            "the results do not depend on it")


TITLE = "Linear probes"
TEMPLATE = fragment("probes")
SELECTABLE = True


def wanted(ctx: Context) -> bool:
    return "probes" in ctx.options.only   # ~2 probes per target and layer: only when asked


def cache_dir(ctx: Context) -> Path:
    return Path(ctx.options.cache_dir) if ctx.options.cache_dir else ctx.out_dir / "latents"


def by_reason(skipped: dict[str, str]) -> dict[str, list[str]]:
    """The skipped targets grouped by why (LSP's 12 "visible" targets share one reason)."""
    out: dict[str, list[str]] = {}
    for name, why in skipped.items():
        out.setdefault(why, []).append(name)
    return out


def chosen(targets: list, groups: tuple[str, ...]) -> list:
    """The targets of the groups --probe-targets names (all when none), the random label always."""
    from hgpose.explain.targets import RANDOM

    known = list(dict.fromkeys(t.group for t in targets))
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise HgposeError(f"--probe-targets {','.join(unknown)}: not a property of this data; "
                          f"choose from {', '.join(known)}")
    return [t for t in targets if not groups or t.group in groups or t.group == RANDOM]


def check_network(options, checkpoint) -> None:
    """--probe-layers names layers of this network: checked once the checkpoint is read,
    before the latents pass."""
    po = options.parts["probes"]
    if po.probe_layers:
        layers_mod.check_layers(checkpoint.model, list(po.probe_layers), "--probe-layers")


def run(ctx: Context) -> dict:
    from hgpose.explain.targets import store_targets

    o, po = ctx.options, ctx.options.parts["probes"]
    model = ctx.checkpoint.model
    names = list(po.probe_layers) or layers_mod.default_layers(model)
    rows = layers_mod.sample_rows(len(ctx.latents), po.probe_crops, o.seed)
    features = layers_mod.pooled_features(ctx.checkpoint, ctx.store, o.split, rows, names, cache_dir(ctx),
                                          limit=o.limit, batch_size=o.batch_size, device=ctx.device,
                                          progress=o.progress)
    part = probing.partition(np.asarray(ctx.latents.ids[rows, 0]), o.seed, po.probe_bootstrap)
    targets = chosen(store_targets(ctx.store, o.split, rows, o.seed), po.probe_targets)
    skipped = {t.name: why for t in targets if (why := probing.too_small(t, part))}
    targets = [t for t in targets if t.name not in skipped]
    folds = {t.name: probing.class_folds(t, part, o.seed) for t in targets}
    zs = {layer: probing.reduce(features[layer], part.train) for layer in names}
    jobs = pool_size(po.probe_jobs or None, len(names) * len(targets))
    fitted = probe_all(zs, targets, part, o.seed, folds, jobs, progress=o.progress)
    scores, group_scores = {}, {}
    for layer in names:
        scores[layer], group_scores[layer] = probe_layer(fitted[layer], targets, part)
    groups = list(dict.fromkeys(t.group for t in targets))
    kinds = {t.group: t.kind for t in targets}
    return {
        "crops": len(rows), "layers": [{"name": n, "dim": int(features[n].shape[1])} for n in names],
        "pca_dims": probing.PCA_DIMS, "grid": layers_mod.GRID, "bootstrap": po.probe_bootstrap,
        "partition": {"train_crops": len(part.train), "test_crops": len(part.test),
                      "train_images": len(np.unique(part.groups[part.train])),
                      "test_images": len(np.unique(part.groups[part.test]))},
        "targets": {t.name: {"group": t.group, "kind": t.kind, "crops": int(t.valid.sum())} for t in targets},
        "skipped": skipped, "skipped_reasons": by_reason(skipped), "groups": groups, "kinds": kinds,
        "scores": scores, "group_scores": group_scores,
        "findings": findings(names, group_scores, groups),
        "figure": ctx.save_figure(figure(names, groups, group_scores, kinds), "probes.png"),
    }


def summary_lines(section: dict, result: dict) -> list[str]:
    lines = []
    for group, f in section.get("findings", {}).items():
        where = f"decodable from {f['first_decodable']}" if f["first_decodable"] else "not decodable at any layer"
        lines.append(f"  probe {group}: {where}; best {f['best_layer']} {f['best_score']:.2f} "
                     f"(control {f['best_control']:.2f})")
    return lines
