"""The standard (Newell / MSRA) heatmap codec: sub-pixel Gaussian targets, refined decoding."""

from __future__ import annotations

import numpy as np
import torch

from hgpose.codecs.base import HeatmapCodec, check_sigma, flat_maps, grid_max, take
from hgpose.skeleton import NUM_JOINTS

# Floor for log() in DARK: a zero heatmap value would otherwise give -inf.
_LOG_FLOOR = 1e-10


class GaussianCodec(HeatmapCodec):
    """The standard (Newell / MSRA) codec: sub-pixel Gaussian targets, refined decoding.

    Encode: exp(-d² / 2σ²) with peak 1 at the joint's sub-pixel grid position
    (``crop_to_grid``: h = (u - 1.5) / 4), evaluated analytically on the whole grid (no 3σ
    window: no truncation edge, and DARK sees a true Gaussian; far values underflow to 0).
    One σ for all labelled joints. Weight = 1 for a labelled joint (v > 0) that lies on one of
    the heatmap's cells, -0.5 <= h < 63.5 — equivalently inside the crop,
    [-0.5, input_size - 0.5); otherwise (unlabelled, pushed out of the crop by augmentation,
    or non-finite) weight 0 and an all-zero map.

    Decode (``refine``):
      - ``"none"``: plain argmax.
      - ``"quarter"``: argmax, then a shift of 0.25 heatmap px toward the larger neighbour, in
        x and y separately (Newell / MSRA). No shift on an axis where the argmax sits on the
        border (it has only one neighbour) or the neighbours are equal.
      - ``"dark"``: DARK (Zhang et al. 2020): smooth the map with a Gaussian of the codec's σ
        (radius int(3σ + 0.5)), take the log, and move from the argmax by the Newton step
        -H⁻¹∇ of its second-order Taylor expansion (central differences on the 3×3
        neighbourhood). Skipped on border cells or where the Hessian is not negative definite
        (not a maximum: e.g. a flat or zero map). The smoothing uses a zero border, not the
        reflect border of the reference code (cv2's default): a reflected border mirrors a
        second lobe onto a joint near the edge: on exact σ=1 targets 1-2 heatmap px from the
        outer cells it is off by up to ~2.7 crop px, a zero border by <= 0.22 px (<= 0.004 px
        farther in).
    Near the edge no refinement can help: within 1 heatmap px of the outer cells' centres
    (h < 1 or h > 62, which includes the outer 2 crop px on each side, beyond those centres)
    decoding can be off by up to half a cell, 2 crop px.
    Coordinates = ``grid_to_crop`` of the refined grid position. Score = the map's maximum
    (before smoothing).
    """

    name = "gaussian"
    refinements = ("none", "quarter", "dark")
    decoding = "argmax with a quarter-pixel shift by default, or DARK"

    @classmethod
    def from_config(cls, target) -> "GaussianCodec":
        """target.refine "auto" is this codec's own rule, the quarter-pixel shift."""
        return cls(sigma=target.sigma, refine="quarter" if target.refine == "auto" else target.refine)

    def parameters(self) -> dict:
        return {"sigma": self.sigma}

    def __init__(self, sigma: float = 1.0, refine: str = "quarter", input_size: int = 256,
                 heatmap_size: int = 64, num_joints: int = NUM_JOINTS):
        super().__init__(input_size, heatmap_size, num_joints)
        self.sigma = check_sigma("sigma", sigma)
        if refine not in self.refinements:
            raise ValueError(f"refine must be one of {self.refinements}, got {refine!r}")
        self.refine = refine
        # DARK's smoothing kernel (normalised, truncated at 3σ) as a 3 × (2r+3) band matrix:
        # row a smooths the cell a-1 (relative to the argmax) from the patch around it.
        r = int(3.0 * self.sigma + 0.5)
        kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / self.sigma) ** 2)
        self._blur_band = np.zeros((3, 2 * r + 3))
        for a in range(3):
            self._blur_band[a, a:a + 2 * r + 1] = kernel / kernel.sum()

    # -- encode ---------------------------------------------------------------------------

    def encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self._check_keypoints(keypoints, torch_in=False)
        centre = self.crop_to_grid(k[..., :2])                                      # [..., J, 2]
        weights = (k[..., 2] > 0) & np.all(self._on_grid(centre), -1)
        d = np.arange(self.heatmap_size) - centre[..., None]                        # [..., J, 2, H]
        g = np.exp(-0.5 * (d / self.sigma) ** 2)
        heatmaps = np.where(weights[..., None, None], g[..., 1, :, None] * g[..., 0, None, :], 0.0)
        return heatmaps.astype(np.float32), weights.astype(np.float32)

    def encode_torch(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self._check_keypoints(keypoints, torch_in=True)
        centre = self.crop_to_grid(k[..., :2])
        weights = (k[..., 2] > 0) & self._on_grid(centre).all(-1)
        d = torch.arange(self.heatmap_size, device=k.device, dtype=k.dtype) - centre[..., None]
        g = torch.exp(-0.5 * (d / self.sigma) ** 2)
        # where(), not a product: a NaN centre must give zeros, not NaN.
        outer = g[..., 1, :, None] * g[..., 0, None, :]
        heatmaps = torch.where(weights[..., None, None], outer, 0.0)
        return heatmaps, weights.float()

    def _on_grid(self, centre):
        """Per axis: does the grid position lie on one of the cells, [-0.5, size - 0.5)?
        False for NaN. Numpy or torch."""
        return (centre >= -0.5) & (centre < self.heatmap_size - 0.5)

    # -- decode ---------------------------------------------------------------------------

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._decode(flat_maps(self._check_heatmaps(heatmaps, torch_in=False)))

    def decode_torch(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._decode(flat_maps(self._check_heatmaps(heatmaps, torch_in=True).float()))

    # From here on numpy and torch share the code: the few calls that differ go through
    # `lib` (np or torch), and `take` does the per-map indexing.

    def _decode(self, flat):
        """flat [..., H*W] (numpy or torch) -> (coords [..., 2] crop px, scores), float32."""
        lib = torch if isinstance(flat, torch.Tensor) else np
        xy, scores = grid_max(flat, self.heatmap_size)
        if self.refine == "quarter":
            shift = 0.25 * self._quarter_sign(flat, xy, lib)
        elif self.refine == "dark":
            shift = self._dark_offset(flat if lib is torch else flat.astype(np.float64), xy, lib)
        else:
            shift = 0.0
        coords = self.grid_to_crop(xy + shift)
        if lib is torch:
            return coords.float(), scores.float()
        return coords.astype(np.float32), scores.astype(np.float32)

    def _quarter_sign(self, flat, xy, lib):
        """±1 per axis toward the larger neighbour, 0 on the border or on a tie; [..., 2]."""
        n = self.heatmap_size
        x, y = xy[..., 0], xy[..., 1]
        at = lambda px, py: take(flat, py.clip(0, n - 1) * n + px.clip(0, n - 1))
        sx = lib.sign(at(x + 1, y) - at(x - 1, y)) * ((x > 0) & (x < n - 1))
        sy = lib.sign(at(x, y + 1) - at(x, y - 1)) * ((y > 0) & (y < n - 1))
        return lib.stack((sx, sy), -1)

    def _dark_offset(self, flat, xy, lib):
        """DARK's Newton step -H⁻¹∇ of the smoothed log-heatmap at the argmax, [..., 2] in
        heatmap px.

        Taylor needs the smoothed map only on the 3×3 cells around the argmax, so only those
        are smoothed: from the (2r+3)² patch around it (zero outside the map = the zero
        border), as T @ patch @ Tᵀ with T the 3 × (2r+3) band matrix of the 1-D kernel.
        Far cheaper than blurring whole maps, which dominated decoding on CPU.
        """
        n, band = self.heatmap_size, self._blur_band
        x, y = xy[..., 0], xy[..., 1]
        inner = (x > 0) & (x < n - 1) & (y > 0) & (y < n - 1)
        xs, ys = x.clip(1, n - 2), y.clip(1, n - 2)        # keep border lookups harmless
        reach = band.shape[1] // 2
        if lib is torch:
            off = torch.arange(-reach, reach + 1, device=flat.device)
            band = torch.as_tensor(band, dtype=flat.dtype, device=flat.device)
        else:
            off = np.arange(-reach, reach + 1)
        rows = ys[..., None, None] + off[:, None]           # [..., K, 1]
        cols = xs[..., None, None] + off[None, :]           # [..., 1, K]
        on_map = (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
        patch = take(flat, rows.clip(0, n - 1) * n + cols.clip(0, n - 1)) * on_map
        smooth = band @ patch @ band.T                      # [..., 3, 3], rows y, cols x
        log = lib.log(smooth.clip(_LOG_FLOOR, None))
        at = lambda dx, dy: log[..., 1 + dy, 1 + dx]
        c = at(0, 0)
        gx = 0.5 * (at(1, 0) - at(-1, 0))
        gy = 0.5 * (at(0, 1) - at(0, -1))
        hxx = at(1, 0) - 2 * c + at(-1, 0)
        hyy = at(0, 1) - 2 * c + at(0, -1)
        hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = hxx * hyy - hxy * hxy
        ok = inner & (hxx < 0) & (det > 0)                  # negative definite: a real maximum
        det = lib.where(ok, det, 1.0)
        ox = lib.where(ok, -(hyy * gx - hxy * gy) / det, 0.0)
        oy = lib.where(ok, -(hxx * gy - hxy * gx) / det, 0.0)
        return lib.stack((ox, oy), -1)
