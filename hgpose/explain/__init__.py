"""Explain what a pose network learned (`hgpose explain`, SPEC §6): PCA and K-means of its
latent space, the skip-connection ablation, per-joint saliency, SHG vs SHG+AE, and a
self-contained HTML report.

    from hgpose.explain import explain
    result = explain("runs/thesis", "data/coco", "reports/train", split="train")

Modules: latents (the cached network pass), pca, clusters, ablation, saliency, compare,
factors (synthetic data's known factors), figures, report, pipeline (the order of it all).
See docs/explain.md.
"""

from hgpose.explain.pipeline import PARTS, ExplainOptions, explain
from hgpose.explain.report import render

__all__ = ["PARTS", "ExplainOptions", "explain", "render"]
