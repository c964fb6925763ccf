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

from hgpose.explain.options import ExplainOptions
from hgpose.explain.parts import PARTS
from hgpose.explain.pipeline import explain
from hgpose.explain.report import render

__all__ = ["PARTS", "ExplainOptions", "explain", "render"]
