"""evaluate's figure: errors.png, the error diagnosis of metrics.json's "errors" (evaluate/errors.py).

Built on matplotlib's object API (`Figure`, no pyplot: no global state, no display backend),
written atomically like every output. The legend goes below the plots, where it covers no bar.
"""

from __future__ import annotations

from pathlib import Path

from hgpose.evaluate.errors import CLASSES, ERROR_TYPES
from hgpose.io import atomic_path

# Good in green; the errors from the mildest (jitter, dark) to the worst (miss, pale), the
# order of the stacks and of the legend.
COLOURS = {"good": "#4a9a6a", "jitter": "#8c4646", "inversion": "#d96459", "swap": "#f2ae72",
           "miss": "#f2e394"}
HATCHES = ("", "//", "..", "xx")     # one per source, when a store has several


def save_errors_figure(errors: dict, path: str | Path) -> Path:
    """Draw `errors` (metrics.json's "errors") and write it as PNG at `path`."""
    path = Path(path)
    fig = errors_figure(errors)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight", pad_inches=0.08)
    return path


def errors_figure(errors: dict):
    """Left: per joint (and all joints), the share of its labelled keypoints in each class,
    stacked. Right: COCO AP gained by correcting each error type."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(12, 4.6), layout="constrained")
    grid = fig.add_gridspec(1, 3)
    _class_bars(fig.add_subplot(grid[0, :2]), errors)
    sources = errors.get("by_source") or {"": errors}
    _gain_bars(fig.add_subplot(grid[0, 2]), sources)
    handles = [Patch(facecolor=COLOURS[c], edgecolor="black", linewidth=0.5, label=c) for c in CLASSES]
    if len(sources) > 1:
        handles += [Patch(facecolor="white", edgecolor="black", hatch=HATCHES[k % len(HATCHES)], label=name)
                    for k, name in enumerate(sources)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    return fig


def _class_bars(ax, errors: dict) -> None:
    joints = list(errors["per_joint"])
    blocks = [errors["per_joint"][j] for j in joints] + [errors]
    labels = [j.replace("left_", "L ").replace("right_", "R ") for j in joints] + ["all"]
    bottom = [0.0] * len(blocks)
    for c in CLASSES:
        share = [b["shares"][c] or 0.0 for b in blocks]
        ax.bar(range(len(blocks)), share, bottom=bottom, color=COLOURS[c], edgecolor="black", linewidth=0.3)
        bottom = [b + s for b, s in zip(bottom, share)]
    ax.set_xticks(range(len(blocks)), labels, rotation=45, ha="right", fontsize=8)
    ax.axvline(len(joints) - 0.5, color="black", linewidth=0.8, linestyle=":")   # the joints | their pool
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of labelled keypoints")
    ax.set_title(f"Keypoint classes per joint ({errors['keypoints']:,d} keypoints)", fontsize=10)


def _gain_bars(ax, sources: dict) -> None:
    kinds = list(ERROR_TYPES)
    width = 0.8 / len(sources)
    baselines = []
    for k, (name, errors) in enumerate(sources.items()):
        gains = [_number(errors["ap"]["gain"][t]) for t in kinds]
        x = [i - 0.4 + width * (k + 0.5) for i in range(len(kinds))]
        ax.bar(x, gains, width=width, color=[COLOURS[t] for t in kinds], edgecolor="black", linewidth=0.5,
               hatch=HATCHES[k % len(HATCHES)])
        for xi, gain in zip(x, gains):     # upright when bars stand side by side, so labels never overlap
            ax.annotate(f"{gain:+.3f}", (xi, gain), textcoords="offset points", xytext=(0, 2), ha="center",
                        va="bottom", fontsize=7, rotation=90 if len(sources) > 1 else 0)
        base = _number(errors["ap"]["baseline"]["AP"])
        baselines.append(f"{name} {base:.3f}" if name else f"{base:.3f}")
    ax.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.margins(y=0.25 if len(sources) > 1 else 0.15)     # room for the values above the bars
    ax.set_ylabel("COCO AP gain when corrected")
    ax.set_title(f"AP gain per corrected type (baseline AP {', '.join(baselines)})", fontsize=10)


def _number(value) -> float:
    """A metric as a float: null (not computable) is drawn as 0."""
    return 0.0 if value is None or value != value else float(value)
