"""Heatmap codecs: keypoints -> training targets (encode), heatmaps -> keypoints (decode).

One object per codec owns both directions, so a model is always decoded the way its
targets were encoded (as in mmpose).

Common interface (``ThesisCodec`` and ``GaussianCodec``)
--------------------------------------------------------
Constructor takes ``input_size=256, heatmap_size=64`` (square crop and heatmap, in pixels);
``stride = input_size // heatmap_size`` (4).

- ``encode(keypoints)``: numpy float ``[17, 3]`` or ``[B, 17, 3]`` of (x, y, v), x and y in crop
  pixels -> ``(heatmaps float32 [..., 17, 64, 64], weights float32 [..., 17])``.
- ``encode_torch(keypoints)``: the same for a tensor ``[B, 17, 3]`` (or ``[17, 3]``), built
  batched on the tensor's device with no Python loop over samples or joints, so training can
  make its targets on the GPU. Equals ``encode`` up to float32 rounding (~1e-7).
- ``decode(heatmaps)``: numpy ``[17, 64, 64]`` or ``[B, 17, 64, 64]`` ->
  ``(coords float32 [..., 17, 2] as (x, y) in CROP pixels, scores float32 [..., 17])``.
- ``decode_torch(heatmaps)``: the same for a tensor, on its device.

Wrong shapes raise ``ValueError`` naming the expected shape.

Coordinate convention
---------------------
The pixel convention of docs/architecture.md: the centre of pixel i is coordinate i, on the
crop as on the heatmap. Heatmap cell j covers the crop pixels stride*j .. stride*j + stride-1
(what a network's strided pooling sees, and what area-downsampling the crop gives), so its
centre is crop coordinate ``u = stride * j + (stride - 1) / 2`` (4j + 1.5), and
``h = (u - (stride - 1) / 2) / stride`` (``crop_to_grid``, ``grid_to_crop``). The cells
cover the crop edge to edge: h in [-0.5, heatmap_size - 0.5) is u in [-0.5, input_size - 0.5).
The map is symmetric about the crop centre, so a horizontal flip of the crop (u -> 255 - u)
is exactly a reversal of the columns (j -> 63 - j): see ``flip_back``.
Rows are y, columns x; coordinates are always ordered (x, y).

Visibility flags follow COCO: 0 = not labelled, 1 = labelled but occluded, 2 = visible;
labelled means v > 0, visible means v >= 2. One more value exists only in memory, never in
a store: ``ABSENT`` (-1), a joint the crop's dataset does not annotate at all (LSP has no
face joints). Every codec gives it an all-zero map and weight 0, and the training loss
leaves it out, where COCO's v = 0 map still enters the thesis loss (SPEC section 2).

``argmax_2d(heatmaps)`` gives the integer (x, y) grid position of each map's maximum, for
numpy arrays or tensors; the thesis PCK compares exactly these positions on the 64x64 grid.
"""

import math
import numbers

import numpy as np
import torch

from hgpose.skeleton import FLIP_INDEX, NUM_JOINTS

__all__ = ["ABSENT", "ThesisCodec", "GaussianCodec", "argmax_2d", "flip_back"]

ABSENT = -1  # v of a joint the crop's source does not annotate (in memory only)

# Floor for log() in DARK: a zero heatmap value would otherwise give -inf.
_LOG_FLOOR = 1e-10


def argmax_2d(heatmaps: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Integer grid position (x = column, y = row) of the maximum of each map.

    ``[..., H, W]`` numpy array or tensor -> int64 ``[..., 2]`` of the same kind (tensor on
    the same device). Ties go to the first maximum in row-major order, so an all-zero map
    gives (0, 0) in both numpy and torch.
    """
    if not isinstance(heatmaps, torch.Tensor):
        heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim < 2:
        raise ValueError(f"expected heatmaps of shape [..., H, W], got {tuple(heatmaps.shape)}")
    return _grid_max(_flat(heatmaps), heatmaps.shape[-1])[0]


def _flat(heatmaps):
    """[..., H, W] -> [..., H*W], numpy or torch."""
    return heatmaps.reshape(tuple(heatmaps.shape[:-2]) + (heatmaps.shape[-2] * heatmaps.shape[-1],))


def _grid_max(flat, width):
    """Each map's first maximum: ((x, y) int64 [..., 2], value [...]); flat [..., H*W]."""
    if isinstance(flat, torch.Tensor):
        scores, idx = flat.max(-1)      # one pass; first maximum on ties, like argmax
        return torch.stack((idx % width, idx // width), -1), scores
    idx = flat.argmax(-1)
    scores = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    return np.stack((idx % width, idx // width), -1).astype(np.int64), scores


def _check_sigma(name, sigma):
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not (0 < sigma < math.inf):
        raise ValueError(f"{name} must be a positive number of heatmap pixels, got {sigma!r}")
    return float(sigma)


class _HeatmapCodec:
    """Shared geometry and input validation."""

    def __init__(self, input_size, heatmap_size, num_joints):
        if heatmap_size <= 0 or input_size <= 0 or input_size % heatmap_size:
            raise ValueError(
                f"input_size ({input_size}) must be a positive multiple of "
                f"heatmap_size ({heatmap_size})")
        self.input_size = int(input_size)
        self.heatmap_size = int(heatmap_size)
        self.num_joints = int(num_joints)
        self.stride = self.input_size // self.heatmap_size
        # Crop coordinate of cell 0's centre: the middle of the crop pixels 0 .. stride-1.
        self.cell_offset = (self.stride - 1) / 2

    def crop_to_grid(self, u):
        """Crop coordinates -> heatmap coordinates (numpy or torch, any shape)."""
        return (u - self.cell_offset) / self.stride

    def grid_to_crop(self, h):
        """Heatmap coordinates (cell j = j) -> crop coordinates: the inverse of crop_to_grid."""
        return h * self.stride + self.cell_offset

    def _check_keypoints(self, keypoints, torch_in):
        if torch_in and not isinstance(keypoints, torch.Tensor):
            raise TypeError(f"encode_torch expects a torch.Tensor, got {type(keypoints).__name__}")
        k = keypoints.float() if torch_in else np.asarray(keypoints, dtype=np.float64)
        if k.ndim not in (2, 3) or tuple(k.shape[-2:]) != (self.num_joints, 3):
            j = self.num_joints
            raise ValueError(
                f"expected keypoints of shape [{j}, 3] or [B, {j}, 3] (x, y, v in crop pixels), "
                f"got {tuple(k.shape)}")
        return k

    def _check_heatmaps(self, heatmaps, torch_in):
        if torch_in and not isinstance(heatmaps, torch.Tensor):
            raise TypeError(f"decode_torch expects a torch.Tensor, got {type(heatmaps).__name__}")
        h = heatmaps if torch_in else np.asarray(heatmaps)
        s, j = self.heatmap_size, self.num_joints
        if h.ndim not in (3, 4) or tuple(h.shape[-3:]) != (j, s, s):
            raise ValueError(f"expected heatmaps of shape [{j}, {s}, {s}] or [B, {j}, {s}, {s}], "
                             f"got {tuple(h.shape)}")
        return h


class ThesisCodec(_HeatmapCodec):
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

    def __init__(self, sigma_visible: float = 0.5, sigma_occluded: float = 1.0,
                 input_size: int = 256, heatmap_size: int = 64, num_joints: int = NUM_JOINTS):
        super().__init__(input_size, heatmap_size, num_joints)
        self.sigma_visible = _check_sigma("sigma_visible", sigma_visible)
        self.sigma_occluded = _check_sigma("sigma_occluded", sigma_occluded)
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
        xy, scores = _grid_max(_flat(h), self.heatmap_size)
        return self.grid_to_crop(xy).astype(np.float32), scores.astype(np.float32)

    def decode_torch(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._check_heatmaps(heatmaps, torch_in=True)
        xy, scores = _grid_max(_flat(h), self.heatmap_size)
        return self.grid_to_crop(xy.float()), scores.float()


class GaussianCodec(_HeatmapCodec):
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

    REFINES = ("none", "quarter", "dark")

    def __init__(self, sigma: float = 1.0, refine: str = "quarter", input_size: int = 256,
                 heatmap_size: int = 64, num_joints: int = NUM_JOINTS):
        super().__init__(input_size, heatmap_size, num_joints)
        self.sigma = _check_sigma("sigma", sigma)
        if refine not in self.REFINES:
            raise ValueError(f"refine must be one of {self.REFINES}, got {refine!r}")
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
        return self._decode(_flat(self._check_heatmaps(heatmaps, torch_in=False)))

    def decode_torch(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._decode(_flat(self._check_heatmaps(heatmaps, torch_in=True).float()))

    # From here on numpy and torch share the code: the few calls that differ go through
    # `lib` (np or torch), and _take does the per-map indexing.

    def _decode(self, flat):
        """flat [..., H*W] (numpy or torch) -> (coords [..., 2] crop px, scores), float32."""
        lib = torch if isinstance(flat, torch.Tensor) else np
        xy, scores = _grid_max(flat, self.heatmap_size)
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
        at = lambda px, py: _take(flat, py.clip(0, n - 1) * n + px.clip(0, n - 1))
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
        patch = _take(flat, rows.clip(0, n - 1) * n + cols.clip(0, n - 1)) * on_map
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


def _take(flat, idx):
    """``flat[..., idx]`` map by map: flat [..., N], int idx [..., *rest] -> [..., *rest]."""
    lead, rest = idx.shape[:flat.ndim - 1], tuple(idx.shape[flat.ndim - 1:])
    idx = idx.reshape(tuple(lead) + (math.prod(rest),))
    if isinstance(flat, torch.Tensor):
        return flat.gather(-1, idx).reshape(tuple(lead) + rest)
    return np.take_along_axis(flat, idx, -1).reshape(tuple(lead) + rest)


def flip_back(heatmaps: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """Heatmaps predicted for a mirrored crop [B, J, H, W] -> heatmaps of the crop itself.

    Reverse the columns and swap left and right joints (FLIP_INDEX: the mirrored person's
    left is our right). Under the pixel convention this is the exact inverse of the image
    flip, with no shift: the crop mirrors about its centre, u -> (W*stride - 1) - u, and that
    takes cell j's centre (crop coordinate stride*j + (stride-1)/2) to the centre of cell
    W-1-j, for every stride. `stride` is accepted for callers that pass it; the result does
    not depend on it.
    """
    return heatmaps.flip(-1)[:, list(FLIP_INDEX)]
