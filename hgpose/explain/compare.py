"""The `compare` part, SHG vs SHG+AE (`--compare`): thesis PCK and the components each latent
needs for 95 %. It runs only with --compare RUN_DIR2.

The thesis's point: the hourglass latent (4,096 values) needs hundreds of components for 95 %
of its variance, the autoencoder's 50-dim code a handful, at a better PCK (its numbers:
hgpose.thesis). Each model is analysed on its own `latent_layer` (the AE network's is its
code) over the same split, and every table and figure names that split: the thesis's own
numbers come from two others (PCK on its test split, PCA on all training latents).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hgpose import thesis
from hgpose.errors import HgposeError
from hgpose.explain import accuracy, figures
from hgpose.explain import pca as pca_mod
from hgpose.explain.pca import PCAResult
from hgpose.explain.protocol import fragment

if TYPE_CHECKING:
    from hgpose.explain.context import Context
    from hgpose.explain.latents import Checkpoint, Latents

THESIS = {model: {"pck": thesis.PCK[model]["test"]["all"], "pck_split": "test",
                  "components_for_95": thesis.COMPONENTS_FOR_95[model], "pca_split": thesis.PCA_SPLIT}
          for model in ("SHG", "SHG+AE")}


def model_name(checkpoint: Checkpoint) -> str:
    model = checkpoint.metadata.get("model") or {}
    if model.get("autoencoder"):
        return "SHG+AE"
    if model.get("name") == "newell":
        return f"Newell {model.get('stacks')}-stack"
    return "SHG"


def row(role: str, checkpoint: Checkpoint, latents: Latents, layer: str, pca_all: PCAResult,
        pca_full: PCAResult | None, keypoints: np.ndarray) -> dict:
    """One model's row: its thesis PCK on the crops (`keypoints`, over the joints it was
    trained on) and its latent's PCA."""
    cells = accuracy.grid_cells(latents.pred[..., :2])
    pck = accuracy.means(accuracy.per_image_pck(cells, keypoints, checkpoint.trained))
    return {
        "role": role,
        "model": model_name(checkpoint),
        "checkpoint": str(checkpoint.path),
        "layer": layer,
        "dim": int(latents.values.shape[1]),
        "pck": pck,
        "components_for_95": pca_all.n_for(0.95),
        "components_for_95_fully_annotated": pca_full.n_for(0.95) if pca_full else None,
        "pc1_ratio": float(pca_all.ratios[0]),
        "cumulative": [float(f"{c:.6g}") for c in pca_all.cumulative[:max(pca_all.rank, 1)]],
    }


THESIS_DIMS = {"SHG": thesis.LATENT_DIM, "SHG+AE": thesis.AE_CODE_DIM}


def thesis_shown(rows: list[dict], kinds) -> dict:
    """Which of the thesis's rows compare with ours, and why not: its PCK on the same data
    (COCO), its components for 95 % also only beside our model of that name with a latent
    of the thesis's size."""
    data = thesis.data_mismatch(kinds)
    out = {"pck": {"comparable": data is None, "why_not": data}, "components_for_95": {}}
    for name, dim in THESIS_DIMS.items():
        ours = [r["dim"] for r in rows if r["model"] == name]
        if ours:
            why = thesis.latent_mismatch(kinds, ours[0], dim)
        else:
            why = data or f"neither model here is an {name}"
        out["components_for_95"][name] = {"comparable": why is None, "why_not": why}
    return out


def section(rows: list[dict], split: str, figure_path: str, kinds=("coco",)) -> dict:
    """explain.json's compare part: both models' rows, measured on `split`, beside the
    thesis's numbers, the splits those came from and which of them compare with ours."""
    return {"split": split, "models": rows, "thesis": THESIS, "thesis_shown": thesis_shown(rows, kinds),
            "figure": figure_path}


def figure(rows: list[dict], split: str):
    """Cumulative explained variance of each model's latent on `split`, 95 % marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for r, colour in zip(rows, ("#1f77b4", "#d62728")):
        c = np.asarray(r["cumulative"])
        ax.plot(np.arange(1, len(c) + 1), c, color=colour,
                label=f"{r['model']} ({r['role']}): {r['dim']}-dim, 95 % at {r['components_for_95']}, "
                      f"PCK {r['pck']['all']:.3f}")
        n = r["components_for_95"]
        ax.plot([n], [c[n - 1]], "o", color=colour)
    ax.axhline(0.95, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("number of components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.01)
    ax.set_title(f"Latent PCA of both models on the {split} split, side by side", fontsize=10)
    figures.legend_below(fig, ncols=1)
    ax.grid(alpha=0.25, which="both")
    return fig


# --- the part ------------------------------------------------------------------------------

@dataclass
class Options:
    compare: str | None = None            # a second run (SHG+AE), for the `compare` part

    def check(self, options) -> None:
        if "compare" in options.only and not self.compare:
            raise HgposeError("--only compare needs --compare RUN_DIR2 (the SHG+AE run)")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--compare", dest="compare", default=cls.compare, metavar="RUN_DIR2",
                            help="a second run (typically SHG+AE) to compare: PCK and components for 95 %% variance")


TITLE = "SHG vs SHG+AE"
TEMPLATE = fragment("compare")
SELECTABLE = True


def wanted(ctx: Context) -> bool:
    return ctx.asked("compare") and bool(ctx.options.parts["compare"].compare)


def run(ctx: Context) -> dict:
    """explain.json's compare section: this run's and --compare's latents side by side."""
    from hgpose.explain import latents as latents_mod

    o = ctx.options
    device = ctx.device
    other = latents_mod.load_checkpoint(o.parts["compare"].compare, o.checkpoint, device, o.precision)
    other_layer = other.model.latent_layer
    n = len(ctx.latents)
    if n >= pca_mod.MIN_ROWS:   # before --compare's latents pass, as for this run's (pipeline.check_costs)
        pca_mod.check_memory(n, latents_mod.layer_size(other, other_layer, device), f"--compare's layer {other_layer}")
    other_lat = latents_mod.load_latents(
        other, ctx.store, o.split, Path(o.cache_dir) if o.cache_dir else ctx.out_dir / "latents",
        layer=other_layer, role="compare", limit=o.limit, batch_size=o.batch_size,
        workers=o.workers, device=device, progress=o.progress)
    other_all = pca_mod.fit_pca(other_lat.values, progress=o.progress, desc="PCA compare")
    full = other_lat.fully_annotated
    other_full = pca_mod.fit_pca(other_lat.values, full) if len(full) >= pca_mod.MIN_ROWS else None
    spaces = pca_mod.spaces(ctx)
    keypoints = ctx.labels()
    rows = [row("this run", ctx.checkpoint, ctx.latents, ctx.layer, spaces["all"].pca,
                spaces["full"].pca if "full" in spaces else None, keypoints),
            row("--compare", other, other_lat, other_layer, other_all, other_full, keypoints)]
    path = ctx.save_figure(figure(rows, o.split), "compare_variance.png")
    for r in rows:
        r.pop("cumulative")   # plotted; the per-run PCA section holds the curves
    return section(rows, o.split, path, ctx.sections["thesis_reference"]["data"])


def summary_lines(section: dict, result: dict) -> list[str]:
    compared_on = section.get("split", result["data"]["split"])  # older explain.json: the run's
    return [f"  {m['model']} ({m['role']}), {compared_on} split: PCK {m['pck']['all']:.3f}, "
            f"{m['components_for_95']} components for 95 % of {m['dim']}"
            for m in section.get("models", [])]
