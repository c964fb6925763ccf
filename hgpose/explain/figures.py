"""Shared picture helpers: crops with skeletons, tile grids, legends, colour scales, atomic
PNG writes.

Figures are built on matplotlib's object API (`Figure`, no pyplot): no global state, no
display backend, nothing left open between figures. A legend goes below the plots
(`legend_below`), never inside one, where it would cover curves wherever the data put them;
a picture coloured by value carries its colour scale (`colour_scale`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hgpose.draw import draw_skeleton
from hgpose.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
# Ground truth: occluded joints (v=1) are drawn faded, visible ones (v=2) solid.
GT_MIN_SCORE = 1.5


def save(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG, atomically; returns the path."""
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    return path


def png_bytes(fig: Figure, max_side: int | None = None) -> bytes:
    """A figure as PNG bytes, drawn as `save` draws it; with `max_side`, scaled down (area
    averaging) where its longer side would exceed that many pixels (for callers that bound
    their pictures, such as predict's 2,048 px)."""
    import io

    import cv2

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    data = buffer.getvalue()
    if max_side is None:
        return data
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    height, width = picture.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return data
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    ok, encoded = cv2.imencode(".png", cv2.resize(picture, size, interpolation=cv2.INTER_AREA))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


def save_npz(path: str | Path, **arrays) -> Path:
    """Write arrays to a .npz, atomically (through hgpose.io); returns the path."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:   # a file object: np.savez
        np.savez(f, **arrays)                                                # would add ".npz" to a name
    return path


def crop_with_skeleton(crop: np.ndarray, keypoints: np.ndarray, min_score: float = GT_MIN_SCORE) -> np.ndarray:
    """A crop (uint8 [256,256,3]) with a [17,3] skeleton drawn on it (draw_skeleton's rules)."""
    return draw_skeleton(np.asarray(crop), keypoints, min_score=min_score)


def prediction_keypoints(pred: np.ndarray, gt: np.ndarray, trained: np.ndarray | None = None) -> np.ndarray:
    """Predicted (x, y) with the third value 2 where the joint is labelled (and, given
    `trained` bool [17], one the network was trained on), 0 elsewhere: the thesis PCK only
    scores those joints, so only those are drawn."""
    out = np.array(pred, dtype=np.float32, copy=True)
    shown = gt[:, 2] > 0 if trained is None else (gt[:, 2] > 0) & trained
    out[:, 2] = np.where(shown, 2.0, 0.0)
    return out


def legend_below(fig: Figure, axes=None, ncols: int | None = None, extra: list | None = None) -> None:
    """One legend for the figure, below its plots, where it covers no data: the labelled
    artists of `axes` (default: all), each label once, then `extra` handles. The figure must
    use the constrained layout, which makes room for it."""
    handles, labels = [], []
    for ax in axes or fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    for handle in extra or []:
        handles.append(handle)
        labels.append(handle.get_label())
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols or min(len(labels), 3), fontsize=8,
               frameon=False)


def colour_scale(fig: Figure, axes, cmap: str, label: str, vmin: float = 0.0, vmax: float = 1.0) -> None:
    """A colour bar beside `axes` for a picture coloured with `cmap` from vmin to vmax."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), ax=axes, location="right",
                       shrink=0.6, aspect=30, pad=0.01)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def tile_grid(tiles: list[np.ndarray], *, cols: int, titles: list[str] | None = None,
              row_labels: list[str] | None = None, tile_inches: float = 1.6,
              title: str | None = None, fontsize: float = 8) -> Figure:
    """Images in a grid; empty cells stay blank. Returns the figure."""
    from matplotlib.figure import Figure   # here, not at import: the CLI imports the parts

    n = len(tiles)
    rows = max(1, (n + cols - 1) // cols)
    extra = 0.4 if title else 0.0
    # constrained layout keeps the title right above the tiles whatever the grid's shape
    fig = Figure(figsize=(cols * tile_inches + (0.6 if row_labels else 0), rows * (tile_inches + 0.25) + extra),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i < n and tiles[i] is not None:
            ax.imshow(tiles[i])
            if titles and titles[i]:
                ax.set_title(titles[i], fontsize=fontsize, pad=2)
        else:
            ax.axis("off")
    if row_labels:
        for r, label in enumerate(row_labels[:rows]):
            axes[r, 0].set_ylabel(label, fontsize=fontsize + 1, rotation=90, labelpad=4)
            axes[r, 0].axis("on")
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
    if title:
        fig.suptitle(title, fontsize=fontsize + 3)
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.01, hspace=0.01)
    return fig
