"""The thesis's heatmap codec (SPEC section 2): a blurred impulse, decoded by plain argmax."""

from __future__ import annotations

import math

import numpy as np
import torch

from hgpose.codecs.base import HeatmapCodec, check_sigma, flat_maps, grid_max
from hgpose.skeleton import NUM_JOINTS


class ThesisCodec(HeatmapCodec):
    """The thesis's targets: a blurred impulse, decoded by plain argmax.

    Encode: an impulse of 1 at the joint's cell, (round(h), round(k)) with (h, k) its grid
    position (``crop_to_grid``: (u - 1.5) / 4), clamped to the grid [0, 63], blurred
    with a normalised Gaussian truncated at radius int(4σ + 0.5) — the kernel of
    ``scipy.ndimage.gaussian_filter(..., truncate=4)`` — with σ = ``sigma_visible`` for v = 2 and
    ``sigma_occluded`` for v = 1; v = 0 gives an all-zero map. The boundary is zero
    ('constant', where scipy's default is 'reflect'): mass blurred past the edge is dropped
    rather than folded back, so a joint's map is the same kernel wherever it lies and its peak
    has the same height on the border as inside. Peaks are not rescaled (≈0.6187 for σ 0.5,
    ≈0.1592 for σ 1), so occluded joints are also weaker targets.
    Rounding is numpy/torch ``round`` (half to even), identical in both paths.

    Weights are 1 (0 only for ``ABSENT`` joints): in the thesis the all-zero maps of unlabelled
    joints still enter the MSE loss (the network is taught to predict nothing there), and
    reproducing the thesis means reproducing that.

    Decode: argmax on the grid, mapped to the cell's centre, x = col·4 + 1.5 (``grid_to_crop``);
    score = the map's maximum.
    """

    name = "thesis"
    refinements = ("none",)
    decoding = "plain argmax (SPEC section 2)"

    @classmethod
    def from_config(cls, target) -> "ThesisCodec":
        return cls()

    def parameters(self) -> dict:
        return {"sigma_visible": self.sigma_visible, "sigma_occluded": self.sigma_occluded}

    def __init__(self, sigma_visible: float = 0.5, sigma_occluded: float = 1.0,
                 input_size: int = 256, heatmap_size: int = 64, num_joints: int = NUM_JOINTS):
        super().__init__(input_size, heatmap_size, num_joints)
        self.sigma_visible = check_sigma("sigma_visible", sigma_visible)
        self.sigma_occluded = check_sigma("sigma_occluded", sigma_occluded)
        # (σ, truncation radius, kernel sum = normaliser) per class, as scipy builds the kernel.
        self._visible = self._kernel_params(self.sigma_visible)
        self._occluded = self._kernel_params(self.sigma_occluded)

    @staticmethod
    def _kernel_params(sigma):
        r = int(4.0 * sigma + 0.5)
        return sigma, r, sum(math.exp(-0.5 * (i / sigma) ** 2) for i in range(-r, r + 1))

    def _per_joint(self, v, where):
        """(σ, radius, normaliser) per joint, shaped [..., J, 1, 1]; v = 0 is masked later."""
        return [where(v >= 2, a, b)[..., None, None] for a, b in zip(self._visible, self._occluded)]

    def encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self._check_keypoints(keypoints, torch_in=False)
        v = k[..., 2]
        centre = np.clip(np.round(self.crop_to_grid(k[..., :2])), 0, self.heatmap_size - 1)  # [.., J, 2]
        # The blurred impulse is separable: map[y, x] = g(y - cy) * g(x - cx) with g the
        # normalised, truncated 1-D kernel; the zero boundary just drops what falls off the grid.
        sigma, radius, norm = self._per_joint(v, np.where)
        d = np.arange(self.heatmap_size) - centre[..., None]                      # [..., J, 2, H]
        labelled = (v > 0)[..., None, None]
        g = np.exp(-0.5 * (d / sigma) ** 2) / norm * (np.abs(d) <= radius) * labelled
        heatmaps = g[..., 1, :, None] * g[..., 0, None, :]
        return heatmaps.astype(np.float32), (v >= 0).astype(np.float32)

    def encode_torch(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self._check_keypoints(keypoints, torch_in=True)
        v = k[..., 2]
        centre = torch.clamp(torch.round(self.crop_to_grid(k[..., :2])), 0, self.heatmap_size - 1)
        sigma, radius, norm = self._per_joint(v, torch.where)
        d = torch.arange(self.heatmap_size, device=k.device, dtype=k.dtype) - centre[..., None]
        labelled = (v > 0)[..., None, None]
        g = torch.exp(-0.5 * (d / sigma) ** 2) / norm * (d.abs() <= radius) * labelled
        heatmaps = g[..., 1, :, None] * g[..., 0, None, :]
        return heatmaps, (v >= 0).to(v.dtype)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = self._check_heatmaps(heatmaps, torch_in=False)
        xy, scores = grid_max(flat_maps(h), self.heatmap_size)
        return self.grid_to_crop(xy).astype(np.float32), scores.astype(np.float32)

    def decode_torch(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._check_heatmaps(heatmaps, torch_in=True)
        xy, scores = grid_max(flat_maps(h), self.heatmap_size)
        return self.grid_to_crop(xy.float()), scores.float()
