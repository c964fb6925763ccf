"""Explain what a pose network learned (`hgpose explain`, SPEC §6): PCA and K-means of its
latent space, the skip-connection ablation, per-joint saliency, SHG vs SHG+AE, and a
self-contained HTML report.

    from hgpose.explain import explain
    result = explain("runs/thesis", "data/coco", "reports/train", split="train")

Each analysis is one module following the part protocol (protocol): pca, kmeans (with
clusters, the sweep and silhouette, and lloyd, the solver), ablation, saliency, compare,
factors (synthetic data's known factors). pipeline registers them in PARTS and runs them;
context is what they share; latents is the cached network pass; accuracy scores the network
on the crops beside what learning nothing scores (the report's warning); figures and report draw.
See docs/explain.md.
"""

import importlib

# Read on first use (PEP 562): importing one module of the package (predict uses figures and
# saliency) then does not import every part, the pipeline and the report with it.
_EXPORTS = {"ExplainOptions": "hgpose.explain.options", "PARTS": "hgpose.explain.parts",
            "explain": "hgpose.explain.pipeline", "render": "hgpose.explain.report"}

__all__ = ["PARTS", "ExplainOptions", "explain", "render"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
