"""What every heatmap codec shares: the interface, the grid geometry, argmax and the flip.

Common interface (every codec in ``hgpose.codecs.CODECS`` subclasses ``HeatmapCodec``)
------------------------------------------------------------------------------------
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

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from hgpose.skeleton import FLIP_INDEX

ABSENT = -1  # v of a joint the crop's source does not annotate (in memory only)

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
    return grid_max(flat_maps(heatmaps), heatmaps.shape[-1])[0]


def flat_maps(heatmaps):
    """[..., H, W] -> [..., H*W], numpy or torch."""
    return heatmaps.reshape(tuple(heatmaps.shape[:-2]) + (heatmaps.shape[-2] * heatmaps.shape[-1],))


def grid_max(flat, width):
    """Each map's first maximum: ((x, y) int64 [..., 2], value [...]); flat [..., H*W]."""
    if isinstance(flat, torch.Tensor):
        scores, idx = flat.max(-1)      # one pass; first maximum on ties, like argmax
        return torch.stack((idx % width, idx // width), -1), scores
    idx = flat.argmax(-1)
    scores = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    return np.stack((idx % width, idx // width), -1).astype(np.int64), scores


def check_sigma(name, sigma):
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not (0 < sigma < math.inf):
        raise ValueError(f"{name} must be a positive number of heatmap pixels, got {sigma!r}")
    return float(sigma)


class HeatmapCodec:
    """Shared geometry and input validation, and what the registry needs of every codec.

    A codec class also has:
      name         its key in ``hgpose.codecs.CODECS`` (the ``target.codec`` config value)
      refinements  the decode refinements it knows (``target.refine`` / ``--refine`` values
                   besides "auto", which means the codec's own rule); ``decoding`` says it
                   in words
      from_config  classmethod: a ``TargetConfig`` -> the codec object
      parameters() its own settings, for ``describe`` (the ONNX export's metadata)
    """

    name = ""
    refinements: tuple[str, ...] = ("none",)
    decoding = "plain argmax"   # in words, for error messages
    refine = "none"             # the refinement this object decodes with

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

    def parameters(self) -> dict:
        return {}

    def describe(self) -> dict:
        """How to decode this codec's heatmaps without hgpose (written into an ONNX export):
        heatmap cell (column) j is centred on crop pixel u = stride * j + (stride - 1) / 2."""
        decode = "argmax" if self.refine == "none" else f"argmax+{self.refine}"
        return {"name": self.name, "decode": decode, **self.parameters(), "stride": self.stride,
                "cell_centre": f"u = {self.stride} * column + {self.cell_offset:g}"}

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


def take(flat, idx):
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
