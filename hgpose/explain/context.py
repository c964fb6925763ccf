"""What the parts of one `hgpose explain` call share: the `Context` every part's `run(ctx)` reads.

It holds the options, where the report and its figures go, the split's crops and keypoints,
their latents, the loaded checkpoint, the device and the data store, and the explain.json
sections as they stand (kept from an earlier call, or computed by a part before this one:
saliency reads K-means' clusters). It also computes, on first use, what several parts need:
the PCA of each subset and one projection of the latents on its components (K-means' space,
the PC walks' scores and the factors' top components in one pass over the latents), so that
it is computed once and timed once ("pca_fit") whichever part asks first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hgpose.explain import factors, figures
from hgpose.explain import pca as pca_mod

if TYPE_CHECKING:
    import torch

    from hgpose.data.store import Store
    from hgpose.explain.latents import Checkpoint, Latents
    from hgpose.explain.pipeline import ExplainOptions


@dataclass
class PCASpace:
    """One subset's PCA and the projection of its rows on the components the parts use."""

    pca: pca_mod.PCAResult
    columns: list[int]        # projected components, 0-based, ascending: 0..dims-1 first
    scores: np.ndarray        # float32 [n, len(columns)]
    sq_dist: np.ndarray       # float64 [n]: each row's squared distance to the mean
    dims: int                 # leading components holding --kmeans-variance: K-means' space


@dataclass
class Context:
    options: ExplainOptions
    store: Store                   # the dataset store the crops come from
    out_dir: Path
    fig_dir: Path
    checkpoint: Checkpoint
    layer: str                     # the latent's module name
    device: torch.device
    images: np.ndarray             # the split's crops, uint8 [N,256,256,3] (a memory map)
    keypoints: np.ndarray          # float32 [N,17,3]
    latents: Latents
    sections: dict                 # explain.json as it stands; parts add theirs in run order
    timings: dict                  # explain.json's timings: shared computations add theirs
    subsets: dict = field(default_factory=dict)          # name -> rows (None = every row)
    cluster_labels: dict = field(default_factory=dict)   # subset -> chosen-K labels (K-means)
    _spaces: dict | None = None                          # subset -> PCASpace, once computed
    _skipped: dict = field(default_factory=dict)         # subset -> why it has no PCA

    def asked(self, name: str) -> bool:
        """Named by --only, or --only not given."""
        return not self.options.only or name in self.options.only

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    def save_figure(self, fig, name: str) -> str:
        """Write a figure to figures/<name>; returns its path relative to REPORT_DIR."""
        return self.rel(figures.save(fig, self.fig_dir / name))

    def rows(self, subset: str) -> np.ndarray:
        chosen = self.subsets[subset]
        return np.arange(len(self.latents)) if chosen is None else np.sort(chosen)

    def pca_spaces(self) -> dict[str, PCASpace]:
        """Each subset's PCA and projection (subsets too small for a PCA are left out, see
        `pca_skipped`): computed on first use."""
        if self._spaces is None:
            started = time.perf_counter()
            self._spaces = {}
            for name, chosen in self.subsets.items():
                n = len(self.latents) if chosen is None else len(chosen)
                if n < pca_mod.MIN_ROWS:
                    self._skipped[name] = f"only {n} crops (need {pca_mod.MIN_ROWS})"
                else:
                    self._spaces[name] = self._space(name, chosen)
            self.timings["pca_fit"] = round(time.perf_counter() - started, 2)
        return self._spaces

    def pca_skipped(self) -> dict[str, str]:
        self.pca_spaces()
        return dict(self._skipped)

    def pca_recomputed(self) -> bool:
        """Whether this call has fitted a PCA (of at least one subset)."""
        return bool(self._spaces)

    def _space(self, name: str, chosen: np.ndarray | None) -> PCASpace:
        progress = self.options.progress
        values = self.latents.values
        p = pca_mod.fit_pca(values, chosen, progress=progress, desc=f"PCA {name}")
        # One projection pass gives the K-means space, the walk scores and the factor scores.
        dims = p.n_for(self.options.parts["kmeans"].kmeans_variance)
        walk = [k - 1 for k in pca_mod.walk_components(p)]
        top = min(factors.TOP, p.rank, len(p.ratios))
        columns = sorted(set(range(max(dims, top))) | set(walk))
        scores, sq_dist = pca_mod.project(values, p, columns, chosen, progress=progress,
                                          desc=f"projection {name}")
        return PCASpace(p, columns, scores, sq_dist, dims)
