"""Figures of the saliency part's measurements: the per-joint index bars of every method and
the cascading-randomisation curves."""

from __future__ import annotations

import textwrap

import numpy as np

from hgpose.explain import figures
from hgpose.explain.attribution_indices import INDICES
from hgpose.explain.saliency_scores import LABELS, METHODS

# What "no better than uniform" is for each index: the dashed reference line of its panel.
UNIFORM = {"localisation": 1.0, "inversion": 1.0, "foreground": 1.0, "diffusion": 100.0}
COLOURS = {"occlusion": "tab:blue", "gradcam": "tab:orange", "integrated_gradients": "tab:green"}


def index_figure(indices: dict, joints: list[str], title: str):
    """One panel per index (rows), bars per joint, one colour per method, ± standard error;
    an index no crop could measure (foreground without masks) says so in its panel."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(7.5, 0.62 * len(joints) + 2), 2.1 * len(INDICES) + 0.8), layout="constrained")
    axes = fig.subplots(len(INDICES), 1, sharex=True)
    x = np.arange(len(joints))
    width = 0.8 / len(METHODS)
    for ax, name in zip(axes, INDICES):
        measured = False
        for k, method in enumerate(METHODS):
            stats = indices["methods"][method][name]["joints"]
            mean = np.array([np.nan if stats[j]["mean"] is None else stats[j]["mean"] for j in joints])
            se = np.array([0.0 if stats[j]["se"] is None else stats[j]["se"] for j in joints])
            measured |= bool(np.isfinite(mean).any())
            ax.bar(x + (k - 1) * width, np.nan_to_num(mean), width, yerr=se, color=COLOURS[method],
                   label=LABELS[method], error_kw={"elinewidth": 0.8, "capsize": 1.5})
        ax.axhline(UNIFORM[name], color="0.3", linestyle="--", linewidth=0.8,
                   label="uniform map" if name == "localisation" else None)
        ax.set_ylabel(name, fontsize=9)
        if not measured:
            # wrapped, and left out of the layout: a note wider than the panel would
            # otherwise squeeze every panel to nothing
            note = textwrap.fill("not measured: " + (indices.get("foreground_note") or "no values"), 90)
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.3",
                    in_layout=False)
    axes[-1].set_xticks(x, [j.replace("left_", "L ").replace("right_", "R ") for j in joints], rotation=45,
                        ha="right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    figures.legend_below(fig, ncols=4)
    return fig


def sanity_figure(result: dict, title: str):
    """Rank correlation with the trained network's maps (y) per randomisation step (x, from
    the head down): a line per method (absolute maps, ± standard error; the verdict), dotted
    the same for the signed maps, and the pass line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    steps = result["steps"]
    x = np.arange(len(steps) + 1)
    for method in METHODS:
        curve = result["methods"][method]
        rho = np.array([1.0] + [np.nan if v is None else v for v in curve["rho"]])
        se = np.array([0.0] + [0.0 if v is None else v for v in curve["rho_se"]])
        verdict = "passes" if curve["passes"] else "FAILS"
        ax.errorbar(x, rho, yerr=se, marker="o", color=COLOURS[method], capsize=2,
                    label=f"{LABELS[method]} ({verdict})")
        signed = np.array([1.0] + [np.nan if v is None else v for v in curve["rho_signed"]])
        ax.plot(x, signed, linestyle=":", marker=".", color=COLOURS[method], label=f"{LABELS[method]}, signed maps")
    ax.axhline(result["pass_below"], color="0.3", linestyle="--", linewidth=0.8,
               label=f"pass: below {result['pass_below']} when all is randomised")
    ax.set_xticks(x, ["trained"] + [f"down to\n{s['down_to']}\n({s['randomised']})" for s in steps], fontsize=7)
    ax.set_ylim(-0.5, 1.05)
    ax.set_ylabel("Spearman rank correlation with the trained maps")
    ax.set_xlabel(f"blocks re-initialised from the head down (of {result['blocks']})")
    fig.suptitle(title, fontsize=10)
    figures.legend_below(fig, ncols=3)
    return fig
