"""The `cka` part: how alike the layers are, within this network and against --compare's.

Linear CKA (Kornblith et al., ICML 2019) between every pair of layers of
`layers.default_layers` (or --cka-layers) on the same crops, and with --compare RUN_DIR2
between every layer of this network and every layer of that one (its default layers): SHG
vs SHG+AE, 1 vs 2 stacks, two seeds, trained vs untrained. The estimator is the minibatch
one of Nguyen, Raghu & Kornblith (ICLR 2021) with the unbiased HSIC (`hgpose.explain.
similarity`), over minibatches of --cka-batch crops of a seeded sample of --cka-crops: memory
holds one minibatch's Grams, never a Gram of all crops. The layers are read with
capture-by-name, pooled to at most 4x4 cells and cached as the probes' (`hgpose.explain.layers`).

Not run by default: name it in --only (with --compare, the cross-network map comes too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hgpose.errors import HgposeError
from hgpose.explain import layers as layers_mod
from hgpose.explain.options import comma_list
from hgpose.explain.probes import cache_dir, short
from hgpose.explain.protocol import flag, fragment
from hgpose.explain.similarity import MIN_BATCH, batch_count, minibatch_cka

if TYPE_CHECKING:
    from hgpose.explain.context import Context

ESTIMATOR = ("linear CKA, minibatch estimator with the unbiased HSIC (Nguyen, Raghu & Kornblith, ICLR 2021, "
             "'Do Wide and Deep Networks Learn the Same Things?', section 3.1)")


def structure(names: list[str], matrix: np.ndarray) -> dict:
    """What the within-network map says in a few numbers: each layer's CKA with the next one,
    and the mean CKA of the layers of the down path, the up path and between them."""
    adjacent = [{"from": a, "to": b, "cka": float(matrix[i, i + 1])} for i, (a, b) in enumerate(zip(names, names[1:]))]
    down = [i for i, n in enumerate(names) if ".down." in n or n == "stem"]
    up = [i for i, n in enumerate(names) if ".up." in n]
    block = lambda a, b: float(np.nanmean(matrix[np.ix_(a, b)])) if a and b else None  # noqa: E731
    off = lambda a: float(np.nanmean(matrix[np.ix_(a, a)][~np.eye(len(a), dtype=bool)])) if len(a) > 1 else None  # noqa: E731
    return {"adjacent": adjacent, "mean_within_down": off(down), "mean_within_up": off(up),
            "mean_down_vs_up": block(down, up)}


def matches(names: list[str], other_names: list[str], between: np.ndarray) -> list[dict]:
    """For each layer here: the layer of --compare's most like it, and the CKA with the layer of
    the same name there (None where it has none)."""
    out = []
    for i, name in enumerate(names):
        j = int(np.nanargmax(between[i])) if np.isfinite(between[i]).any() else None
        same = other_names.index(name) if name in other_names else None
        out.append({"layer": name, "most_alike": other_names[j] if j is not None else None,
                    "most_alike_cka": float(between[i, j]) if j is not None else None,
                    "same_name_cka": float(between[i, same]) if same is not None else None})
    return out


def figure(names: list[str], within: np.ndarray, between: np.ndarray | None, other_names: list[str] | None,
           labels: tuple[str, str]):
    """Left: the layer x layer CKA within this network; right (with --compare): this network's
    layers against the other's. Colours 0 (black) .. 1 (yellow), values written."""
    from matplotlib.figure import Figure

    panels = [(within, names, names, f"{labels[0]}: layer × layer")]
    if between is not None:
        panels.append((between, names, other_names, f"{labels[0]} (rows) vs {labels[1]} (columns)"))
    side = 0.45 * max(len(names), len(other_names or []))
    fig = Figure(figsize=(2.2 + (side + 1.2) * len(panels), 1.8 + side), layout="constrained")
    for ax, (m, rows, cols, title) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        image = ax.imshow(m, vmin=0, vmax=1, cmap="magma", origin="upper")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if m[i, j] > 0.6 else "white")
        ax.set_xticks(range(len(cols)), [short(c) for c in cols], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), [short(r) for r in rows], fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=fig.axes, label="linear CKA", shrink=0.8)
    return fig


# --- the part ------------------------------------------------------------------------------

@dataclass
class Options:
    cka_layers: tuple[str, ...] = ()   # () = layers.default_layers(model)
    cka_crops: int = 4000              # crops sampled (of the first --limit N) for the CKA maps
    cka_batch: int = 256               # the minibatch of the estimator

    def __post_init__(self):
        self.cka_layers = comma_list(self.cka_layers)

    def check(self, options) -> None:
        for name in ("cka_crops", "cka_batch"):
            if getattr(self, name) < MIN_BATCH:
                raise HgposeError(f"{flag(name)} {getattr(self, name)}: must be at least {MIN_BATCH} "
                                  "(the unbiased HSIC of a minibatch needs 4 crops)")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--cka-layers", dest="cka_layers", type=comma_list, default=cls.cka_layers,
                            metavar="NAMES", help="this network's layers for the CKA maps, comma-separated "
                            "(default: as --probe-layers'); --compare's network uses its default layers")
        parser.add_argument("--cka-crops", dest="cka_crops", type=int, default=cls.cka_crops, metavar="N",
                            help=f"crops sampled for CKA (default: {cls.cka_crops})")
        parser.add_argument("--cka-batch", dest="cka_batch", type=int, default=cls.cka_batch, metavar="M",
                            help=f"minibatch of the CKA estimator (default: {cls.cka_batch})")


TITLE = "Layer similarity (CKA)"
TEMPLATE = fragment("cka")
SELECTABLE = True


def wanted(ctx: Context) -> bool:
    return "cka" in ctx.options.only


def _features(ctx: Context, checkpoint, names: list[str], rows: np.ndarray, role: str) -> list[np.ndarray]:
    o = ctx.options
    found = layers_mod.pooled_features(checkpoint, ctx.store, o.split, rows, names, cache_dir(ctx), role=role,
                                       limit=o.limit, batch_size=o.batch_size, device=ctx.device,
                                       progress=o.progress)
    return [found[n] for n in names]


def run(ctx: Context) -> dict:
    from hgpose.explain import latents as latents_mod
    from hgpose.explain.compare import model_name

    o, co = ctx.options, ctx.options.parts["cka"]
    model = ctx.checkpoint.model
    names = list(co.cka_layers) or layers_mod.default_layers(model)
    layers_mod.check_layers(model, names, "--cka-layers")
    rows = layers_mod.sample_rows(len(ctx.latents), co.cka_crops, o.seed)
    if len(rows) < MIN_BATCH:
        raise HgposeError(f"{len(rows)} crops: CKA needs at least {MIN_BATCH}; give a larger --limit")
    reps = _features(ctx, ctx.checkpoint, names, rows, "main")
    other_path = o.parts["compare"].compare
    other_names, labels = [], (f"this run ({model_name(ctx.checkpoint)})", "")
    if other_path:
        other = latents_mod.load_checkpoint(other_path, o.checkpoint, ctx.device, o.precision)
        other_names = layers_mod.default_layers(other.model)
        reps += _features(ctx, other, other_names, rows, "compare")
        labels = (labels[0], f"--compare ({model_name(other)})")
    full = minibatch_cka(reps, batch=co.cka_batch, seed=o.seed)
    within = full[: len(names), : len(names)]
    section = {"estimator": ESTIMATOR, "crops": len(rows), "batch": co.cka_batch,
               "minibatches": batch_count(len(rows), co.cka_batch),
               "grid": layers_mod.GRID, "layers": names, "dims": [int(r.shape[1]) for r in reps[: len(names)]],
               "within": within.tolist(), "structure": structure(names, within)}
    between = None
    if other_path:
        between = full[: len(names), len(names):]
        section["compare"] = {"run": str(other_path), "model": labels[1], "layers": other_names,
                              "within": full[len(names):, len(names):].tolist(), "between": between.tolist(),
                              "matches": matches(names, other_names, between)}
    section["labels"] = list(labels)
    section["figure"] = ctx.save_figure(figure(names, within, between, other_names or None, labels), "cka.png")
    return section


def summary_lines(section: dict, result: dict) -> list[str]:
    s = section["structure"]
    lines = [f"  CKA within: down path {_num(s['mean_within_down'])}, up path {_num(s['mean_within_up'])}, "
             f"down vs up {_num(s['mean_down_vs_up'])} (mean linear CKA)"]
    if "compare" in section:
        same = [m["same_name_cka"] for m in section["compare"]["matches"] if m["same_name_cka"] is not None]
        if same:
            lines.append(f"  CKA vs --compare, same-named layers: {min(same):.2f} .. {max(same):.2f}")
    return lines


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
