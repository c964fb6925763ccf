"""The `cka` part: how alike the layers are, within this network and against --compare's.

Linear CKA (Kornblith et al., ICML 2019) between every pair of layers of
`layers.default_layers` (or --cka-layers) on the same crops, and with --compare RUN_DIR2
between every layer of this network and every layer of that one (its default layers): SHG
vs SHG+AE, 1 vs 2 stacks, two seeds, trained vs untrained; with --cka-without-skips, against
the same weights with the hourglass skips switched off (the skip ablation's network). The estimator is the minibatch
one of Nguyen, Raghu & Kornblith (ICLR 2021) with the unbiased HSIC (`hgpose.explain.
similarity`), over minibatches of --cka-batch crops of a seeded sample of --cka-crops: memory
holds one minibatch's Grams, never a Gram of all crops. The layers are read with
capture-by-name, pooled to at most 4x4 cells and cached as the probes' (`hgpose.explain.layers`).

Not run by default: name it in --only (with --compare or --cka-without-skips, the
cross-network maps come too).
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


def figure(names: list[str], within: np.ndarray, others: list[dict], label: str):
    """Left: the layer x layer CKA within this network; then, for each other network (--compare,
    --cka-without-skips), this network's layers (rows) against its layers (columns). Colours
    0 (black) .. 1 (yellow), values written."""
    from matplotlib.figure import Figure

    panels = [(within, names, names, f"{label}: layer × layer")]
    panels += [(np.asarray(o["between"]), names, o["layers"], f"{label} (rows) vs {o['model']} (columns)")
               for o in others]
    side = 0.45 * max([len(names)] + [len(o["layers"]) for o in others])
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
    cka_without_skips: bool = False    # also map against the same network without its skips

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
        parser.add_argument("--cka-without-skips", dest="cka_without_skips", action="store_true",
                            help="also map this network's layers against the same network with its "
                            "hourglass skips switched off (the skip ablation's network), on the same crops")


TITLE = "Layer similarity (CKA)"
# The sections of the networks this one is mapped against (`_others`), in the report's order;
# each names its network in its "model".
OTHERS = ("compare", "without_skips")
TEMPLATE = fragment("cka")
SELECTABLE = True


def wanted(ctx: Context) -> bool:
    return "cka" in ctx.options.only


def check_network(options, checkpoint) -> None:
    """--cka-layers names layers of this network: checked before the latents pass."""
    co = options.parts["cka"]
    if co.cka_layers:
        layers_mod.check_layers(checkpoint.model, list(co.cka_layers), "--cka-layers")


def _features(ctx: Context, checkpoint, names: list[str], rows: np.ndarray, role: str,
              skips: bool = True) -> list[np.ndarray]:
    o = ctx.options
    found = layers_mod.pooled_features(checkpoint, ctx.store, o.split, rows, names, cache_dir(ctx), role=role,
                                       limit=o.limit, batch_size=o.batch_size, device=ctx.device,
                                       progress=o.progress, skips=skips)
    return [found[n] for n in names]


def _others(ctx: Context, names: list[str], rows: np.ndarray) -> list[tuple[str, dict, list[np.ndarray]]]:
    """The networks this one is mapped against: (section key, description, their layers'
    features) for --compare's run and, with --cka-without-skips, this network without skips."""
    from hgpose.explain import latents as latents_mod
    from hgpose.explain.compare import model_name

    o = ctx.options
    out = []
    if o.parts["compare"].compare:
        other = latents_mod.load_checkpoint(o.parts["compare"].compare, o.checkpoint, ctx.device, o.precision)
        other_names = layers_mod.default_layers(other.model)
        out.append(("compare", {"run": str(o.parts["compare"].compare), "model": f"--compare ({model_name(other)})",
                                "layers": other_names},
                    _features(ctx, other, other_names, rows, "compare")))
    if o.parts["cka"].cka_without_skips:
        out.append(("without_skips", {"run": str(ctx.checkpoint.path), "model": "the same network without skips",
                                      "layers": names},
                    _features(ctx, ctx.checkpoint, names, rows, "no-skips", skips=False)))
    return out


def run(ctx: Context) -> dict:
    from hgpose.explain.compare import model_name

    o, co = ctx.options, ctx.options.parts["cka"]
    model = ctx.checkpoint.model
    names = list(co.cka_layers) or layers_mod.default_layers(model)
    rows = layers_mod.sample_rows(len(ctx.latents), co.cka_crops, o.seed)
    if len(rows) < MIN_BATCH:
        raise HgposeError(f"{len(rows)} crops: CKA needs at least {MIN_BATCH}; give a larger --limit")
    reps = _features(ctx, ctx.checkpoint, names, rows, "main")
    others = _others(ctx, names, rows)
    full = minibatch_cka(reps + [r for _, _, features in others for r in features], batch=co.cka_batch, seed=o.seed)
    within = full[: len(names), : len(names)]
    label = f"this run ({model_name(ctx.checkpoint)})"
    section = {"estimator": ESTIMATOR, "crops": len(rows), "batch": co.cka_batch,
               "minibatches": batch_count(len(rows), co.cka_batch),
               "grid": layers_mod.GRID, "layers": names, "dims": [int(r.shape[1]) for r in reps],
               "within": within.tolist(), "structure": structure(names, within), "labels": [label]}
    start = len(names)
    for key, about, features in others:
        stop = start + len(features)
        between = full[: len(names), start:stop]
        section[key] = {**about, "within": full[start:stop, start:stop].tolist(), "between": between.tolist(),
                        "matches": matches(names, about["layers"], between)}
        section["labels"].append(about["model"])
        start = stop
    drawn = [section[key] for key, _, _ in others]
    section["figure"] = ctx.save_figure(figure(names, within, drawn, label), "cka.png")
    return section


def summary_lines(section: dict, result: dict) -> list[str]:
    s = section["structure"]
    lines = [f"  CKA within: down path {_num(s['mean_within_down'])}, up path {_num(s['mean_within_up'])}, "
             f"down vs up {_num(s['mean_down_vs_up'])} (mean linear CKA)"]
    for other in (section[key] for key in OTHERS if key in section):
        same = [m["same_name_cka"] for m in other["matches"] if m["same_name_cka"] is not None]
        if same:
            lines.append(f"  CKA vs {other['model']}, same-named layers: {min(same):.2f} .. {max(same):.2f}")
    return lines


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
