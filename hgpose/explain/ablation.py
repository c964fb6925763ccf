"""The `ablation` part, skip connections (SPEC §6): the same weights with the hourglass skips
switched off.

The with-skips side comes from the latents pass (its predictions of every crop); this part
runs one more pass with `skips_disabled` and compares per-image thesis PCK, both scored over
the joints the network was trained on (`accuracy.per_image_pck`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hgpose import thesis
from hgpose.explain import accuracy, figures
from hgpose.explain.protocol import NoOptions, fragment

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hgpose.data.store import Store
    from hgpose.explain.context import Context
    from hgpose.explain.latents import Checkpoint, Latents

MAX_DRAWN = 20
BINS = np.linspace(0.0, 1.0, 21)
# The thesis's means (SPEC §6), as explain.json's ablation section records them.
THESIS = {"mean_with_skips": thesis.ABLATION_MEAN_PCK_WITH_SKIPS,
          "mean_without_skips": thesis.ABLATION_MEAN_PCK_WITHOUT_SKIPS}


def without_skips(checkpoint: Checkpoint, latents: Latents, store: Store, split: str, *, limit: int = 0,
                  batch_size: int = 32, workers: int = 0, device=None, progress: bool = True):
    """Per-image PCK [N, 3] and predictions [N, 17, 3] without skips (rows as in `latents`)."""
    from hgpose.evaluate.pck import SUBSETS
    from hgpose.explain.latents import forward_pass

    n = len(latents)
    pck = np.full((n, len(SUBSETS)), np.nan, np.float32)
    pred = np.zeros_like(latents.pred)
    for index, _, p, q in forward_pass(checkpoint, store, split, skips=False, limit=limit,
                                       batch_size=batch_size, workers=workers, device=device,
                                       progress=progress, desc=f"no skips ({split})"):
        pred[index], pck[index] = p, q
    return pck, pred


def summarise(with_skips: np.ndarray, without: np.ndarray) -> dict:
    """Means (over images with a counted joint) and counts, per subset."""
    from hgpose.evaluate.pck import SUBSETS

    out = {}
    for i, name in enumerate(SUBSETS):
        a, b = with_skips[:, i], without[:, i]
        valid = ~np.isnan(a)
        out[name] = {
            "images": int(valid.sum()),
            "mean_with_skips": float(a[valid].mean()) if valid.any() else None,
            "mean_without_skips": float(b[valid].mean()) if valid.any() else None,
            "fully_right_with_skips": int((a[valid] == 1).sum()),
            "fully_right_without_skips": int((b[valid] == 1).sum()),
        }
    return out


def histogram_figure(with_skips: np.ndarray, without: np.ndarray, split: str) -> Figure:
    """Two histograms of per-image PCK (all counted joints) on one figure, means marked; the
    legend below the plot."""
    from matplotlib.figure import Figure

    a = with_skips[~np.isnan(with_skips[:, 0]), 0]
    b = without[~np.isnan(without[:, 0]), 0]
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.hist(a, bins=BINS, alpha=0.6, color="#1f77b4", label=f"with skips (mean {a.mean():.3f})")
    ax.hist(b, bins=BINS, alpha=0.6, color="#d62728", label=f"without skips (mean {b.mean():.3f})")
    for values, colour in ((a, "#1f77b4"), (b, "#d62728")):
        ax.axvline(values.mean(), color=colour, linestyle="--", linewidth=1.5)
    ax.set_xlabel("per-image thesis PCK (trained, labelled joints; < 3.2 heatmap px)")
    ax.set_ylabel("images")
    ax.set_title(f"Skip-connection ablation, {split} split ({len(a):,} images)", fontsize=10)
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.25)
    figures.legend_below(fig)
    return fig


def skeletons_figure(images: np.ndarray, keypoints: np.ndarray, rows: np.ndarray,
                     pred_with: np.ndarray, pred_without: np.ndarray,
                     pck_with: np.ndarray, pck_without: np.ndarray, trained: np.ndarray) -> Figure:
    """Pairs of tiles: prediction with skips | the same crop without skips (the joints the
    network was trained on)."""
    tiles, titles = [], []
    for r in rows:
        gt = keypoints[r]
        for pred, pck, name in ((pred_with, pck_with, "skips"), (pred_without, pck_without, "no skips")):
            tiles.append(figures.crop_with_skeleton(images[r], figures.prediction_keypoints(pred[r], gt, trained)))
            titles.append(f"#{r} {name}: {pck[r, 0]:.2f}")
    return figures.tile_grid(tiles, cols=8, titles=titles, tile_inches=1.55,
                             title="Fully right with skips (left of each pair) vs. the same weights without skips")


def write_figures(out_dir: Path, split: str, images, keypoints, latents: Latents, pck_with: np.ndarray,
                  pck_without: np.ndarray, pred_without: np.ndarray, trained: np.ndarray) -> dict:
    paths = {"histogram": figures.save(histogram_figure(pck_with, pck_without, split),
                                       out_dir / "ablation_histogram.png")}
    # Up to 20 fully right images, those with the most labelled joints first (the most telling).
    order = np.argsort(-latents.labelled, kind="stable")
    rows = [r for r in order if pck_with[r, 0] == 1][:MAX_DRAWN]
    if rows:
        fig = skeletons_figure(images, keypoints, np.asarray(rows), latents.pred, pred_without,
                               pck_with, pck_without, trained)
        paths["skeletons"] = figures.save(fig, out_dir / "ablation_skeletons.png")
    return paths


# --- the part ------------------------------------------------------------------------------

# No options of its own: the pass uses the common ones (--batch-size, --workers, --limit).
Options = NoOptions


TITLE = "Skip ablation"
TEMPLATE = fragment("ablation")
SELECTABLE = True


def wanted(ctx: Context) -> bool:
    return ctx.asked("ablation")


def run(ctx: Context) -> dict:
    """explain.json's ablation section; the per-image PCK both ways goes to ablation.npz."""
    o, lat = ctx.options, ctx.latents
    _, pred_without = without_skips(
        ctx.checkpoint, lat, ctx.store, o.split, limit=o.limit, batch_size=o.batch_size,
        workers=o.workers, device=ctx.device, progress=o.progress)
    trained, labels = ctx.checkpoint.trained, ctx.labels()
    pck_with, pck_without = (accuracy.per_image_pck(accuracy.grid_cells(pred[..., :2]), labels, trained)
                             for pred in (lat.pred, pred_without))
    paths = write_figures(ctx.fig_dir, o.split, ctx.images, ctx.keypoints, lat, pck_with, pck_without,
                          pred_without, trained)
    figures.save_npz(ctx.write_dir / "ablation.npz", ids=lat.ids, pck_with_skips=pck_with,
                     pck_without_skips=pck_without)
    return {"summary": summarise(pck_with, pck_without),
            "thesis": THESIS,
            "figures": {k: ctx.rel(v) for k, v in paths.items()}}


def summary_lines(section: dict, result: dict) -> list[str]:
    a = section["summary"]["all"]
    return [f"  skip ablation: mean PCK {a['mean_with_skips']:.3f} with skips, "
            f"{a['mean_without_skips']:.3f} without ({a['images']:,} images)"]
