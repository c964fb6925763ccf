"""Augmentation of the `newell` recipe as batched tensor ops on the training device.

Each sample gets one affine warp (rotation, scale, optional horizontal flip about the crop
centre; with `half_body`, about the centre of the upper or lower body, zoomed in) applied to
the image with `F.affine_grid`/`F.grid_sample` and to its keypoints with the same matrix,
plus a colour jitter. Doing it on the device, a whole batch at once, keeps
the DataLoader down to copying uint8 crops out of the memory map, so it is never the
bottleneck.

Coordinates follow the pixel convention of docs/architecture.md (as the crop, the store and
the codecs do): crop pixel i has its centre at coordinate i, so the crop spans [-0.5, 255.5)
and its centre is 127.5. Rotation, scale and flip are about that centre; a horizontal flip
maps x to 255 - x, which is exactly what reversing the pixel columns does to the image.

The random parameters come from a `torch.Generator` the caller seeds per batch (from seed,
epoch and step), so a resumed run draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hgpose.skeleton import FLIP_INDEX
from hgpose.config import AugmentConfig

# ITU-R 601 luma weights: the grey image that saturation jitter blends towards.
_LUMA = (0.299, 0.587, 0.114)


@dataclass
class AugmentParams:
    """Per-sample draws, each a tensor [B]."""

    angle: torch.Tensor       # degrees, counter-clockwise as seen on screen (y down)
    scale: torch.Tensor       # > 1 zooms in
    flip: torch.Tensor        # bool
    brightness: torch.Tensor  # multiplicative factors around 1
    contrast: torch.Tensor
    saturation: torch.Tensor
    # draw() always sets these two; params built by hand for `matrices` alone may leave them out.
    half_body: torch.Tensor | None = None  # bool: zoom in on the upper or the lower body ...
    upper: torch.Tensor | None = None      # bool: ... the upper one if it has 3 joints or more

    def to(self, device) -> "AugmentParams":
        return AugmentParams(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def draw(batch: int, config: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Random parameters for `batch` samples, on the CPU (a handful of numbers)."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    return AugmentParams(
        angle=uniform(-config.rotation, config.rotation),
        scale=uniform(config.scale_min, config.scale_max),
        flip=torch.rand(batch, generator=generator) < config.flip,
        brightness=uniform(1 - config.colour, 1 + config.colour),
        contrast=uniform(1 - config.colour, 1 + config.colour),
        saturation=uniform(1 - config.colour, 1 + config.colour),
        # Drawn last, so that the draws above are the same with or without half-body views.
        half_body=torch.rand(batch, generator=generator) < config.half_body,
        upper=torch.rand(batch, generator=generator) < 0.5,
    )


def matrices(params: AugmentParams) -> torch.Tensor:
    """[B, 2, 2] linear part M of the warp: out = centre + M @ (in - centre), (x, y) order."""
    rad = params.angle.float() * (math.pi / 180)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # With y pointing down, this rotation turns the picture counter-clockwise on screen.
    rotation = torch.stack((torch.stack((cos, sin), -1), torch.stack((-sin, cos), -1)), -2)
    mirror = torch.ones_like(rad).where(~params.flip, -torch.ones_like(rad))
    # Flip first (x -> -x about the centre), then rotate and scale.
    return rotation * params.scale.float()[:, None, None] * torch.stack(
        (mirror, torch.ones_like(rad)), -1)[:, None, :]


# HRNet's and mmpose's half-body views: upper = COCO joints 0-10 (face, shoulders, elbows,
# wrists), lower = 11-16 (hips, knees, ankles); a person needs more than 8 labelled joints,
# and the chosen half at least 2; the view is the half's extent grown by 1.5.
UPPER_JOINTS = 11
HALF_BODY_MIN_JOINTS = 8
HALF_BODY_PADDING = 1.5
HALF_BODY_MAX_ZOOM = 3.0  # two joints close together would otherwise fill the crop


def half_body_views(keypoints: torch.Tensor, params: AugmentParams, size: int = 256,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each sample's warp is centred, [B, 2], and how far it zooms in, [B].

    A sample drawn for a half-body view (`params.half_body`) with enough labelled joints is
    centred on the extent of its upper or lower body's labelled joints and zoomed so that
    the extent x 1.5 fills the crop (never zoomed out, at most 3x): the views of people cut
    by the image border or occluded below the waist that COCO is full of and whole-body
    datasets (LSP) lack. Every other sample turns about the crop centre, zoom 1.
    """
    labelled = keypoints[..., 2] > 0
    upper = torch.arange(keypoints.shape[1], device=keypoints.device) < UPPER_JOINTS
    n_upper, n_lower = (labelled & upper).sum(1), (labelled & ~upper).sum(1)
    use_upper = (params.upper & (n_upper > 2)) | (n_lower <= 2)
    chosen = labelled & torch.where(use_upper[:, None], upper, ~upper)
    ok = params.half_body & (labelled.sum(1) > HALF_BODY_MIN_JOINTS) & (chosen.sum(1) >= 2)
    xy = keypoints[..., :2].float()
    low = torch.where(chosen[..., None], xy, torch.inf).amin(1)
    high = torch.where(chosen[..., None], xy, -torch.inf).amax(1)
    side = (high - low).amax(1) * HALF_BODY_PADDING
    zoom = (size / side.clamp(min=1e-3)).clamp(1.0, HALF_BODY_MAX_ZOOM)
    centre = torch.where(ok[:, None], (low + high) / 2, torch.full_like(low, (size - 1) / 2))
    return centre, torch.where(ok, zoom, torch.ones_like(zoom))


def warp_images(images: torch.Tensor, m: torch.Tensor, source_centre: torch.Tensor | None = None,
                ) -> torch.Tensor:
    """Warp [B, C, H, W] (H = W) by M about the centre; outside the source is filled with 0.

    affine_grid maps OUTPUT to INPUT coordinates, so it gets M's inverse. With
    align_corners=False the normalised coordinate of pixel i is (2i + 1) / W - 1 =
    (i - (W-1)/2) / (W/2): centre (W-1)/2 and the image's outer edges at ±1, the same centre
    `warp_keypoints` uses, so image and keypoints move together; a square image keeps the map
    isotropic. With `source_centre` ([B, 2] crop coordinates), that point of the source
    lands on the centre instead: out = centre + M (in - source_centre).
    """
    inverse = torch.linalg.inv(m.float())
    size = images.shape[-1]
    shift = torch.zeros_like(inverse[:, :, 0]) if source_centre is None else (
        (source_centre.to(inverse) - (size - 1) / 2) / (size / 2))
    theta = torch.cat((inverse, shift[:, :, None]), dim=2).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_keypoints(keypoints: torch.Tensor, m: torch.Tensor, flip: torch.Tensor,
                   size: int = 256, source_centre: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the same warp to [B, J, 3] keypoints (x, y, v); returns a new tensor.

    A flipped person's left joints are where the right ones were: the joint axis is
    permuted with FLIP_INDEX. Labelled joints that end up outside the crop, [-0.5, size - 0.5)
    (the pixel convention), become unlabelled (v = 0); ABSENT joints (v < 0) stay absent.
    """
    centre = (size - 1) / 2
    xy = keypoints[..., :2] - (centre if source_centre is None else source_centre[:, None, :].to(keypoints))
    xy = torch.einsum("bij,bkj->bki", m.to(xy.dtype), xy) + centre
    out = torch.cat((xy, keypoints[..., 2:]), dim=-1)
    swapped = out[:, list(FLIP_INDEX)]
    out = torch.where(flip[:, None, None], swapped, out)
    inside = ((out[..., :2] >= -0.5) & (out[..., :2] < size - 0.5)).all(-1)
    out[..., 2] = torch.where(inside | (out[..., 2] < 0), out[..., 2], torch.zeros_like(out[..., 2]))
    return out


def jitter_colour(images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Brightness, contrast, saturation on RGB images in [0, 1], [B, 3, H, W]; clamped to [0, 1]."""
    def per_sample(t: torch.Tensor) -> torch.Tensor:
        return t.to(images.dtype)[:, None, None, None]

    luma = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    x = images * per_sample(params.brightness)
    grey_mean = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (x - grey_mean) * per_sample(params.contrast) + grey_mean
    grey = (x * luma).sum(1, keepdim=True)
    x = (x - grey) * per_sample(params.saturation) + grey
    return x.clamp_(0, 1)
