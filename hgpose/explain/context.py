"""What the parts of one `hgpose explain` call share: the `Context` every part's `run(ctx)` reads.

It holds the options, where the report and its figures go, the split's crops and keypoints,
their latents, the loaded checkpoint, the device and the data store, and the explain.json
sections as they stand (kept from an earlier call, or computed by a part before this one:
saliency reads K-means' clusters), and a place for what several parts share once computed:
the PCA of each subset and its projection, which `pca.spaces(ctx)` fits on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hgpose.explain import figures

if TYPE_CHECKING:
    import torch

    from hgpose.data.store import Store
    from hgpose.explain.latents import Checkpoint, Latents
    from hgpose.explain.options import ExplainOptions


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
    pca: dict | None = None                              # subset -> pca.PCASpace, once fitted (pca.spaces)
    pca_skipped: dict = field(default_factory=dict)      # subset -> why it has no PCA
    # Where this call's files go (figures/ under it, .npz files): the staging folder whose
    # files move into out_dir together when the call succeeds (`hgpose.outputs`); out_dir
    # itself when not given. Paths in explain.json are relative to it, so the same in out_dir.
    write_dir: Path | None = None
    _labels: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.write_dir is None:
            self.write_dir = self.out_dir

    def asked(self, name: str) -> bool:
        """Named by --only, or --only not given."""
        return self.options.asks(name)

    def rel(self, path: Path) -> str:
        """A written file's path in explain.json: relative to the report folder."""
        return Path(path).relative_to(self.write_dir).as_posix()

    def save_figure(self, fig, name: str) -> str:
        """Write a figure to figures/<name>; returns its path relative to REPORT_DIR."""
        return self.rel(figures.save(fig, self.fig_dir / name))

    def labels(self) -> np.ndarray:
        """float32 [N, 17, 3]: the analysed crops' keypoints, with the joints their source does
        not annotate unlabelled, as the latents pass scored them (read once)."""
        if self._labels is None:
            n = len(self.latents)
            keypoints = np.array(self.keypoints[:n], dtype=np.float32)
            keypoints[~self.store.split(self.options.split).joints_present(slice(0, n)), 2] = 0
            self._labels = keypoints
        return self._labels

    def rows(self, subset: str) -> np.ndarray:
        chosen = self.subsets[subset]
        return np.arange(len(self.latents)) if chosen is None else np.sort(chosen)
