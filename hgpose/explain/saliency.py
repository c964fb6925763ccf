"""The `saliency` part: per-joint saliency (beyond the thesis), with captum.

Both methods explain one number per joint: the peak of the joint's predicted heatmap (the
last stack's), i.e. the network's confidence in the location it reports.

* Occlusion sensitivity (captum `Occlusion`): a patch x patch square of the input is set to
  0 -- the mean colour, since inputs are mean-subtracted -- at every `stride` position; the
  attribution of a pixel is the average drop of the peak over the squares covering it.
  Cost: ((256 - patch) / stride + 1)^2 forward passes per crop (225 for 32/16), shared by all
  joints (the forward returns the 17 peaks at once).
* Grad-CAM (captum `LayerGradCam`) at a layer (default `stem`, the 64x64 features that enter
  the hourglass): channel weights = spatial mean of the peak's gradient, map = ReLU of the
  weighted channel sum, upsampled to the crop. A forward and a backward pass per joint.

Only the positive part of each map is drawn (evidence *for* the peak), over the crop, in a
colour scale from 0 to the map's own maximum, which the tile's title gives (a colour bar
beside the tiles). `locality` = the share of a map's positive mass within `patch` pixels of
the joint's ground-truth position: near 1, the joint is found from local evidence; low, from
context.

The joints: --saliency-joints (default all), only among those the network was trained on
(the weights file's "joints": an LSP-trained network has no face to explain). The crops:
--saliency-rows, else the --saliency-samples crops nearest to each K-means centroid of (i)
(this call's clusters, or those kept from an earlier one; the first of each cluster first),
else random crops -- at most max(1, N // passes per crop) of them for N analysed crops
(`crop_budget`), so that with --limit N saliency costs no more network passes than the
latents pass over those N crops.

The same maps for the people of a photo: `explain_person(estimator, image, box, joints)`
(a notebook) and `hgpose predict --saliency` (`explain_crop` on each prediction's own crop,
drawn by `people_figure`: a row per person, the predicted skeleton first and a cross on each
predicted joint). Every caller's joints pass one check, `refuse_untrained`.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from hgpose.errors import HgposeError
from hgpose.explain import figures
from hgpose.explain.options import comma_list
from hgpose.explain.integrated_gradients import BLUR_SIGMA
from hgpose.explain.integrated_gradients import STEPS as IG_STEPS
from hgpose.explain.protocol import flag, fragment, require_at_least_one
from hgpose.explain.sanity import STEPS as SANITY_STEPS
from hgpose.skeleton import JOINT_INDEX, JOINTS

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hgpose.explain.context import Context

SHORT = {name: name.replace("left_", "L ").replace("right_", "R ") for name in JOINTS}
PATCH, STRIDE = 32, 16   # the occluding square's side and step, in crop pixels (defaults)
SCORED_CROPS = 8         # --saliency-limit: the whole part costs 775 CPU s on lspet-cpu, LSPET test (benchmarks/)


def default_gradcam_layer(model: nn.Module) -> str:
    names = dict(model.named_modules())
    return "stem" if "stem" in names else model.latent_layer


def _peaks(model: nn.Module, joints: list[int] | None = None):
    """The function captum explains: input [B,3,H,W] -> the heatmap peaks [B,17], or only
    those of `joints` [B,len(joints)]."""
    def forward(x):
        peaks = model(x)[:, -1].flatten(2).amax(-1)
        return peaks if joints is None else peaks[:, joints]
    return forward


def occlusion(model: nn.Module, x: torch.Tensor, patch: int, stride: int, batch: int = 16,
              joints: list[int] | None = None) -> np.ndarray:
    """[1,3,H,W] -> [J,H,W] occlusion attributions: the average drop of each joint's peak
    (of `joints` only, in their order, when given: captum sums every output's map over the
    whole input at every position, so 2 joints cost a tenth of all 17's bookkeeping)."""
    import torch
    from captum.attr import Occlusion

    forward = _peaks(model, joints)
    occ = Occlusion(forward)
    kwargs = dict(sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), baselines=0.0,
                  perturbations_per_eval=batch)
    with torch.no_grad():
        joints = forward(x).shape[1]
        attr = occ.attribute(x, **kwargs)
        if attr.shape[0] != joints:
            # Older captum explains one output per call: one target per joint.
            attr = torch.cat([occ.attribute(x, target=j, **kwargs) for j in range(joints)])
    # The square covers the 3 channels at once, so each holds the same drop: their mean is it.
    return attr.mean(1).float().cpu().numpy()


def gradcam(model: nn.Module, x: torch.Tensor, layer: str, joints: list[int]) -> np.ndarray:
    """[1,3,H,W] -> [len(joints),H,W] Grad-CAM maps at `layer`, upsampled to the input."""
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    module = dict(model.named_modules())[layer]
    cam = LayerGradCam(_peaks(model), module)
    maps = []
    with torch.enable_grad():
        for j in joints:
            a = cam.attribute(x, target=j, relu_attributions=True)
            a = LayerAttribution.interpolate(a.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
            maps.append(a[0].sum(0))
    return torch.stack(maps).float().cpu().numpy()


def locality(maps: np.ndarray, keypoints: np.ndarray, joints: list[int], radius: float) -> list[float | None]:
    """Share of each map's positive mass within `radius` px of its joint (None: unlabelled)."""
    h, w = maps.shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for m, j in zip(maps, joints):
        x, y, v = keypoints[j]
        pos = np.clip(m, 0, None)
        total = pos.sum()
        if v <= 0 or total <= 0:
            out.append(None)
            continue
        near = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        out.append(float(pos[near].sum() / total))
    return out


def _mark(tile: np.ndarray, keypoint) -> np.ndarray:
    """A white cross on the joint's ground-truth position (when labelled)."""
    x, y, v = keypoint
    if v > 0:
        cv2.drawMarker(tile, (int(round(x)), int(round(y))), (255, 255, 255), cv2.MARKER_CROSS, 14, 2)
        cv2.drawMarker(tile, (int(round(x)), int(round(y))), (0, 0, 0), cv2.MARKER_CROSS, 14, 1)
    return tile


COLOURS = "jet"   # the saliency tiles' colour map; their colour bar uses the same
SCALE = "share of each map's maximum (the maximum: in each tile's title)"


def saliency_tile(crop: np.ndarray, saliency: np.ndarray, alpha: float = 0.55) -> tuple[np.ndarray, float]:
    """The crop with a map's positive part laid over it in COLOURS, from 0 to the map's own
    maximum; returns (tile uint8 [H,W,3], that maximum)."""
    from matplotlib import colormaps

    positive = np.clip(np.asarray(saliency, np.float32), 0, None)
    peak = float(positive.max())
    share = positive / peak if peak > 0 else positive
    colour = (colormaps[COLOURS](share)[..., :3] * 255).astype(np.uint8)
    return cv2.addWeighted(np.ascontiguousarray(crop), 1 - alpha, colour, alpha, 0), peak


def _index_note(indices: dict | None, i: int) -> str:
    """A tile's index values as a title line: "LI 3.2, inv 0.4" (those measured)."""
    if not indices:
        return ""
    shown = (("localisation", "LI"), ("inversion", "inv"))
    values = [f"{short} {indices[name][i]:.1f}" for name, short in shown if indices[name][i] is not None]
    return "\n" + ", ".join(values) if values else ""


def sample_figure(crop: np.ndarray, keypoints: np.ndarray, pred: np.ndarray, joints: list[int],
                  maps: dict[str, np.ndarray], title: str, trained: np.ndarray | None = None,
                  indices: dict[str, dict] | None = None):
    """Per joint a tile per method (`maps`: label -> [len(joints), H, W], in that order), after
    a first pair (ground truth | prediction of the joints the network was trained on), and the
    colour scale; `indices` (label -> `attribution_indices.map_indices`) adds each tile's
    localisation and inversion to its title."""
    tiles = [figures.crop_with_skeleton(crop, keypoints),
             figures.crop_with_skeleton(crop, figures.prediction_keypoints(pred, keypoints, trained))]
    titles = ["ground truth", "prediction"]
    while len(tiles) % len(maps):    # each joint's tiles start a group of len(maps) columns
        tiles.append(None)
        titles.append("")
    for i, j in enumerate(joints):
        for name, method_maps in maps.items():
            tile, peak = saliency_tile(crop, method_maps[i])
            tiles.append(_mark(tile, keypoints[j]))
            note = _index_note((indices or {}).get(name), i)
            titles.append(f"{SHORT[JOINTS[j]]}: {name}\n(max {peak:.2g}){note}")
    fig = figures.tile_grid(tiles, cols=6, titles=titles, tile_inches=1.75, title=title, fontsize=8.5)
    figures.colour_scale(fig, fig.axes, COLOURS, SCALE)
    return fig


def explain_sample(model: nn.Module, x: torch.Tensor, *, patch: int, stride: int, layer: str,
                   joints: list[int], batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(occlusion [len(joints),H,W], Grad-CAM [len(joints),H,W]) for one input [1,3,H,W]."""
    occ = occlusion(model, x, patch, stride, batch, joints)
    cam = gradcam(model, x, layer, joints)
    return occ, cam


def write_sample(out_dir: Path, row: int, crop, keypoints, pred, joints, maps: dict, title: str,
                 trained: np.ndarray | None = None, indices: dict | None = None) -> Path:
    fig = sample_figure(crop, keypoints, pred, joints, maps, title, trained, indices)
    return figures.save(fig, out_dir / f"saliency_{row}.png")


def occlusion_passes(patch: int, stride: int, size: int = 256) -> int:
    """Forward passes of the occlusion map of one crop: one per position of the square."""
    return ((size - patch) // stride + 1) ** 2


def passes_per_crop(patch: int, stride: int, joints: int, ig_steps: int = 0) -> int:
    """A crop's network passes: the occlusion's forward passes, for Grad-CAM a forward and a
    backward pass per joint (a backward counted as one pass), and for integrated gradients
    (`ig_steps` > 0) a forward pass of each of the steps + 1 path images and, per joint, a
    backward pass of each."""
    ig = (ig_steps + 1) * (1 + joints) if ig_steps > 0 else 0
    return occlusion_passes(patch, stride) + 2 * joints + ig


def crop_budget(analysed: int, passes: int) -> int:
    """How many crops saliency explains at most when N crops are analysed: as many as cost no
    more passes than the latents pass over the N (one pass each), and at least one."""
    return max(1, analysed // passes)


def explained_joints(o: Options, trained: np.ndarray) -> list[int]:
    """The joints to explain: --saliency-joints (default all) among those the network was
    trained on, in COCO order."""
    asked = [JOINT_INDEX[j] for j in o.saliency_joints] or list(range(len(JOINTS)))
    return [j for j in sorted(asked) if trained[j]]


def check_network(options, checkpoint) -> None:
    """Refuse --saliency-joints naming a joint the network was never trained on (the part
    protocol's check, once the checkpoint is read, before any pass): its map would explain
    nothing it learned."""
    refuse_untrained(options.parts["saliency"].saliency_joints, checkpoint.trained, "--saliency-joints",
                     "or leave the flag out")


def refuse_untrained(names, trained: np.ndarray, flag: str, otherwise: str = "") -> None:
    """The one check of explain's --saliency-joints, predict's --saliency and `explain_person`:
    an HgposeError naming the joints among `names` the network was not trained on (`trained`
    bool [17], from its weights file's "joints") and the joints it knows."""
    untrained = [j for j in names if not trained[JOINT_INDEX[j]]]
    if untrained:
        known = [name for name, keep in zip(JOINTS, trained) if keep]
        raise HgposeError(f"{flag} {','.join(untrained)}: the network was not trained on "
                          f"{'this joint' if len(untrained) == 1 else 'these joints'} (its weights file lists "
                          f"{len(known)}: {', '.join(known)}); name joints from that list"
                          + (f", {otherwise}" if otherwise else ""))


# --- one person of a photo: `hgpose predict --saliency`, and notebooks ---------------------

DEFAULT_JOINTS = ("left_wrist", "right_wrist")   # `predict --saliency` alone: both wrists, the
                                                  # limb ends every training set labels (LSP too)
# `predict --saliency` explains at most this many people of an image (the first, in the
# boxes' order) unless told otherwise: each costs about 230 passes, a crowd would take minutes
PEOPLE_PER_IMAGE = 3


def parse_joints(spec, flag: str = "joints") -> tuple[str, ...]:
    """Joint names from "left_wrist,right_ankle" (or a sequence of names), in that order, each
    once; "all" gives () = every joint the network was trained on. An HgposeError naming
    `flag` for a name that is no COCO joint."""
    names = tuple(dict.fromkeys(comma_list(spec)))
    if names == ("all",):
        return ()
    bad = [n for n in names if n not in JOINT_INDEX]
    if bad or not names:
        shown = ",".join(comma_list(spec)) if not isinstance(spec, str) else spec
        # `--saliency photo.jpg`: argparse gave the image to the flag
        hint = ("; an image right after --saliency is taken for its joints: put the images first"
                if any("." in n or "/" in n for n in bad) and flag == "--saliency" else "")
        what = f"{bad[0]!r} is not a joint" if bad else "no joint named"
        raise HgposeError(f"{flag} {shown}: {what}; give comma-separated COCO joint names ({', '.join(JOINTS)}) "
                          f"or all{hint}")
    return names


def trained_joints(names: tuple[str, ...], trained: np.ndarray, flag: str = "joints",
                   otherwise: str = "") -> list[int]:
    """The indices of `names` (parsed by `parse_joints`; () = all the network was trained
    on), in their order, after `refuse_untrained`."""
    refuse_untrained(names, trained, flag, otherwise)
    return [JOINT_INDEX[n] for n in names] or [j for j in range(len(JOINTS)) if trained[j]]


def explain_crop(estimator, crop: np.ndarray, joints: list[int], *, patch: int = PATCH, stride: int = STRIDE,
                 layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(occlusion, Grad-CAM), each float32 [len(joints), 256, 256], of one uint8 crop [256, 256, 3]
    through an `Estimator`'s network: its input normalisation (`Estimator.to_input`), its
    PyTorch model in fp32 (as `hgpose explain` runs it; the heatmap peak without the flip
    test), Grad-CAM at `layer` (default `default_gradcam_layer`)."""
    model = estimator.model
    x = estimator.to_input(crop)   # the very input the prediction ran on (channels-last)
    return explain_sample(model, x, patch=patch, stride=stride, layer=layer or default_gradcam_layer(model),
                          joints=joints)


def explain_person(estimator, image, box=None, joints=DEFAULT_JOINTS, *, patch: int = PATCH, stride: int = STRIDE,
                   layer: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Saliency of one person of a photo: (crop uint8 [256, 256, 3], occlusion [J, 256, 256],
    Grad-CAM [J, 256, 256]), map i for joints[i].

    The crop is the one `estimator.infer(image, box)` predicts from (`Estimator.crop`: the
    box x 1.25, or without a box the whole image padded to a square), so the maps lie over the
    prediction's crop pixel for pixel. `joints`: COCO names ("left_wrist,right_ankle" or a
    list), "all" for every joint the network was trained on; a joint it was not trained on is
    refused before any pass. Cost: ((256 - patch) // stride + 1)^2 forward passes (225 at the
    defaults) plus a forward and a backward pass per joint.
    """
    indices = trained_joints(parse_joints(joints), estimator.joints)
    crop = estimator.crop(image, box)[0]
    occ, cam = explain_crop(estimator, crop, indices, patch=patch, stride=stride, layer=layer)
    return crop, occ, cam


@dataclass
class PersonSaliency:
    """One row of `people_figure`: a person's crop, its predicted keypoints in crop pixels
    ([17, 3]: x, y, score) and its maps (`explain_crop`)."""

    crop: np.ndarray
    keypoints: np.ndarray
    occ: np.ndarray
    cam: np.ndarray
    label: str


JOINTS_PER_ROW = 4   # a person's joints wrap after this many (occlusion | Grad-CAM) pairs


def people_figure(people: list[PersonSaliency], joints: list[int], title: str, min_score: float,
                  max_side: int = 2048):
    """Rows per person: its crop with the predicted skeleton (joints scoring below
    `min_score` faded), then per joint its occlusion and Grad-CAM tiles drawn as in
    `sample_figure` (a cross on the predicted joint), JOINTS_PER_ROW joints a row; and the
    colour scale. Tiles shrink with the grid so the figure stays about `max_side` pixels."""
    per_row = max(1, min(len(joints), JOINTS_PER_ROW))
    lines = math.ceil(len(joints) / per_row)
    cols, rows = 1 + 2 * per_row, len(people) * lines
    room = max_side / figures.DPI - 1.5                     # inches, less the colour bar and margins
    tile_inches = min(1.75, room / cols, room / (rows * 1.25))   # a row's titles take a quarter tile
    tiles, titles = [], []
    for person in people:
        for line in range(lines):
            first = line == 0
            tiles.append(figures.crop_with_skeleton(person.crop, person.keypoints, min_score) if first else None)
            titles.append(f"{person.label}: prediction" if first else "")
            for i in range(line * per_row, min(len(joints), (line + 1) * per_row)):
                for name, maps in (("occlusion", person.occ), ("Grad-CAM", person.cam)):
                    tile, peak = saliency_tile(person.crop, maps[i])
                    tiles.append(_mark(tile, person.keypoints[joints[i]]))
                    titles.append(f"{SHORT[JOINTS[joints[i]]]}: {name}\n(max {peak:.2g})")
            while len(tiles) % cols:                         # the row's empty cells
                tiles.append(None)
                titles.append("")
    fig = figures.tile_grid(tiles, cols=cols, titles=titles, tile_inches=tile_inches, title=title,
                            fontsize=max(5.0, 8.5 * tile_inches / 1.75))
    figures.colour_scale(fig, fig.axes, COLOURS, SCALE)
    return fig


# --- the part ------------------------------------------------------------------------------

def _rows_flag(text: str) -> tuple[int, ...]:
    """`--saliency-rows`: comma-separated row numbers."""
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated row numbers, e.g. 0,15,220") from None


@dataclass
class Options:
    saliency_samples: int = 2             # per cluster (random crops without K-means)
    saliency_rows: tuple[int, ...] = ()   # explicit crops (rows of the split) instead
    saliency_joints: tuple[str, ...] = () # joint names; () = all the network was trained on
    occlusion_patch: int = PATCH
    occlusion_stride: int = STRIDE
    gradcam_layer: str | None = None      # default: "stem"
    saliency_limit: int = SCORED_CROPS    # crops of the seeded sample the indices are measured on
    index_radius: float = float(PATCH)    # localisation's disc, crop pixels
    ig_steps: int = IG_STEPS              # integrated gradients: steps of the blur path
    ig_blur: float = BLUR_SIGMA           # its most blurred image's sigma, crop pixels
    sanity_crops: int = 1                 # crops of the randomisation check (0: no check)
    sanity_steps: int = SANITY_STEPS      # its randomisation steps, head down

    def __post_init__(self):
        # "left_wrist,nose" and "0,15" from Python callers, as on the command line
        self.saliency_joints = comma_list(self.saliency_joints)
        self.saliency_rows = tuple(int(r) for r in comma_list(self.saliency_rows))

    def check(self, options) -> None:
        if not (1 <= self.occlusion_stride <= self.occlusion_patch <= 256):
            raise HgposeError(f"occlusion patch {self.occlusion_patch} / stride {self.occlusion_stride}: "
                              "need 1 <= stride <= patch <= 256")
        for name in ("saliency_limit", "sanity_crops"):
            if getattr(self, name) < 0:
                raise HgposeError(f"{flag(name)} {getattr(self, name)}: must be 0 or more")
        require_at_least_one(self, ("ig_steps", "sanity_steps"))
        for name in ("index_radius", "ig_blur"):
            if not getattr(self, name) > 0:
                raise HgposeError(f"{flag(name)} {getattr(self, name)}: must be a positive number of crop pixels")
        bad = [j for j in self.saliency_joints if j not in JOINT_INDEX]
        if bad:
            raise HgposeError(f"--saliency-joints {','.join(bad)}: unknown joint; joints are {', '.join(JOINTS)}")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--saliency-samples", dest="saliency_samples", type=int, metavar="N",
                            default=cls.saliency_samples,
                            help="saliency for the N crops nearest to each K-means centroid of all crops "
                                 "(N random crops without K-means). Each crop costs ((256 - patch) / stride + 1)^2 "
                                 "forward passes (occlusion: 225 at the defaults) plus a forward and a backward "
                                 "pass per joint (Grad-CAM); of the M crops analysed (--limit M) at most "
                                 "max(1, M / those passes) are explained, so saliency costs no more passes than "
                                 f"the latents pass (default: {cls.saliency_samples})")
        parser.add_argument("--saliency-rows", dest="saliency_rows", type=_rows_flag, metavar="I,J,...",
                            default=cls.saliency_rows, help="saliency for these crops (rows of the split) instead")
        parser.add_argument("--saliency-joints", dest="saliency_joints", type=comma_list, metavar="NAMES",
                            default=cls.saliency_joints,
                            help="joints to explain, comma-separated COCO names, e.g. left_wrist,right_knee; "
                                 "only joints the network was trained on (default: all it was trained on)")
        parser.add_argument("--occlusion-patch", dest="occlusion_patch", type=int, metavar="PX",
                            default=cls.occlusion_patch,
                            help=f"side of the occluding square in crop pixels (default: {cls.occlusion_patch})")
        parser.add_argument("--occlusion-stride", dest="occlusion_stride", type=int, metavar="PX",
                            default=cls.occlusion_stride,
                            help="step between occlusions; cost = ((256 - patch) / stride + 1)^2 passes per "
                                 f"crop (default: {cls.occlusion_stride})")
        parser.add_argument("--gradcam-layer", dest="gradcam_layer", metavar="NAME", default=cls.gradcam_layer,
                            help="layer for Grad-CAM (default: stem, the 64x64 features entering the hourglass)")
        parser.add_argument("--saliency-limit", dest="saliency_limit", type=int, metavar="N",
                            default=cls.saliency_limit,
                            help="score every method (localisation, inversion, diffusion, foreground) on N crops "
                                 "drawn by --seed; each costs the passes of a saliency crop; 0: no scores "
                                 f"(default: {cls.saliency_limit})")
        parser.add_argument("--index-radius", dest="index_radius", type=float, metavar="PX",
                            default=cls.index_radius,
                            help=f"localisation/inversion: attribution within PX of the joint (default: {cls.index_radius})")
        parser.add_argument("--ig-steps", dest="ig_steps", type=int, metavar="S", default=cls.ig_steps,
                            help="integrated gradients: steps of the blur path; (S + 1) x (1 + joints) passes per crop "
                                 f"(default: {cls.ig_steps})")
        parser.add_argument("--ig-blur", dest="ig_blur", type=float, metavar="SIGMA", default=cls.ig_blur,
                            help=f"integrated gradients: Gaussian sigma of the path's start (default: {cls.ig_blur})")
        parser.add_argument("--sanity-crops", dest="sanity_crops", type=int, metavar="N", default=cls.sanity_crops,
                            help="cascading-randomisation check of every method on the first N scored crops; each "
                                 f"costs a crop's passes per step; 0: no check (default: {cls.sanity_crops})")
        parser.add_argument("--sanity-steps", dest="sanity_steps", type=int, metavar="N", default=cls.sanity_steps,
                            help=f"randomisation steps from the head down (default: {cls.sanity_steps})")


TITLE = "Saliency"
TEMPLATE = fragment("saliency")
SELECTABLE = True


def wanted(ctx: Context) -> bool:
    return ctx.asked("saliency")


def run(ctx: Context) -> dict:
    """explain.json's saliency section: per chosen crop its figure, localities and indices;
    the indices of every method on the seeded sample, IG's completeness and the sanity check."""
    o = ctx.options.parts["saliency"]
    model = ctx.checkpoint.model.to(ctx.device).eval()
    layer = _gradcam_layer(model, o.gradcam_layer)
    trained = ctx.checkpoint.trained
    joints = explained_joints(o, trained)
    passes = passes_per_crop(o.occlusion_patch, o.occlusion_stride, len(joints), o.ig_steps)
    chosen = _chosen_rows(ctx, o)
    budget = crop_budget(len(ctx.latents), passes)
    samples = [_sample(ctx, o, model, layer, joints, trained, row, cluster) for row, cluster in chosen[:budget]]
    return {"patch": o.occlusion_patch, "stride": o.occlusion_stride, "gradcam_layer": layer,
            "joints": [JOINTS[j] for j in joints],
            "untrained_joints": [name for name, keep in zip(JOINTS, trained) if not keep],
            "cost": {"passes_per_crop": passes, "analysed_crops": len(ctx.latents), "crop_budget": budget,
                     "chosen": len(chosen), "left_out": max(0, len(chosen) - budget)},
            "samples": samples, "mean_locality": _mean_locality(samples, joints),
            **_measurements(ctx, o, model, layer, joints)}


def _measurements(ctx: Context, o: Options, model, layer: str, joints: list[int]) -> dict:
    """"indices" (every method's PoseIG indices on the --saliency-limit sample, IG's
    completeness) and "sanity" (the randomisation curves), each with its figure; None when
    --saliency-limit (or --sanity-crops) is 0."""
    from hgpose.explain import saliency_figures, saliency_scores

    rows = saliency_scores.sample_rows(len(ctx.latents), o.saliency_limit, ctx.options.seed)
    if not rows:
        return {"indices": None, "sanity": None}
    names = [JOINTS[j] for j in joints]
    indices = saliency_scores.score(ctx, o, model, layer, joints, rows)
    title = (f"PoseIG indices per joint: {len(rows)} crops, mean \u00b1 SE, radius {o.index_radius:g} px, "
             f"Grad-CAM at {layer}")
    indices["figure"] = ctx.save_figure(saliency_figures.index_figure(indices, names, title), "attribution_indices.png")
    checked = saliency_scores.randomisation(ctx, o, model, layer, joints, rows)
    if checked is not None:
        title = f"Cascading randomisation: {len(checked['rows'])} crop x {len(joints)} joints"
        checked["figure"] = ctx.save_figure(saliency_figures.sanity_figure(checked, title), "randomisation_check.png")
    return {"indices": indices, "sanity": checked}


def _sample(ctx: Context, o: Options, model, layer: str, joints: list[int], trained: np.ndarray,
            row: int, cluster: int | None) -> dict:
    """One crop's maps: its figure, each joint's localities and each method's indices."""
    from hgpose.explain.attribution_indices import map_indices
    from hgpose.explain.saliency_scores import crop_input, method_functions

    crop = np.array(ctx.images[row])
    kps = np.array(ctx.keypoints[row])
    x = crop_input(ctx, row)
    maps = {name: f(model, x) for name, f in method_functions(o, layer, joints).items()}
    indices = {name: map_indices(m, np.array(ctx.labels()[row]), joints, o.index_radius) for name, m in maps.items()}
    ids = ctx.latents.ids[row].tolist()
    where = f", cluster {cluster}" if cluster is not None else ""
    title = (f"Crop #{row} (image {ids[0]}, annotation {ids[1]}{where}): occlusion "
             f"{o.occlusion_patch}px/{o.occlusion_stride}px | Grad-CAM at {layer} | IG, blur path of "
             f"{o.ig_steps} steps; + = ground truth; LI = localisation, inv = inversion")
    short = {"occlusion": "occlusion", "gradcam": "Grad-CAM", "integrated_gradients": "IG"}
    path = write_sample(ctx.fig_dir, row, crop, kps, ctx.latents.pred[row], joints,
                        {short[name]: m for name, m in maps.items()}, title, trained,
                        {short[name]: v for name, v in indices.items()})
    return {
        "row": row, "ids": ids, "cluster": cluster,
        "peaks": [float(ctx.latents.pred[row, j, 2]) for j in joints],
        "occlusion_locality": locality(maps["occlusion"], kps, joints, o.occlusion_patch),
        "gradcam_locality": locality(maps["gradcam"], kps, joints, o.occlusion_patch),
        "indices": indices,
        "figure": ctx.rel(path),
    }


def _gradcam_layer(model: nn.Module, name: str | None) -> str:
    """--gradcam-layer, or the default; an unknown name raises the error listing the layers."""
    layer = name or default_gradcam_layer(model)
    if layer not in dict(model.named_modules()):
        from hgpose.models import capture

        with capture(model, [layer]):   # raises the error that lists the layer names
            pass
    return layer


def _chosen_rows(ctx: Context, o: Options) -> list[tuple[int, int | None]]:
    """(row, cluster) pairs: explicit rows, else the crops nearest to each centroid of (i),
    else random crops."""
    n = len(ctx.latents)
    if o.saliency_rows:
        bad = [r for r in o.saliency_rows if not 0 <= r < n]
        if bad:
            raise HgposeError(f"--saliency-rows {bad}: rows of split {ctx.options.split!r} run from 0 to {n - 1}")
        return [(int(r), None) for r in o.saliency_rows]
    entry = (ctx.sections.get("kmeans") or {}).get("subsets", {}).get("all")
    if entry:
        # the nearest crop of every cluster, then the second of each, ...: a cut by the
        # crop budget keeps as many clusters as it can
        ranked = [(rank, c["cluster"], r) for c in entry["clusters"]
                  for rank, r in enumerate(c["nearest_rows"][:o.saliency_samples])]
        return [(r, cluster) for _, cluster, r in sorted(ranked)]
    rng = np.random.default_rng(ctx.options.seed)
    return [(int(r), None) for r in np.sort(rng.choice(n, min(n, o.saliency_samples), replace=False))]


def _mean_locality(samples: list[dict], joints: list[int]) -> dict:
    out = {}
    for method in ("occlusion", "gradcam"):
        per_joint = {}
        for i, j in enumerate(joints):
            values = [s[f"{method}_locality"][i] for s in samples if s[f"{method}_locality"][i] is not None]
            per_joint[JOINTS[j]] = float(np.mean(values)) if values else None
        out[method] = per_joint
    return out


def summary_lines(section: dict, result: dict) -> list[str]:
    crops = len(section["samples"])
    line = f"  saliency: {crops} crop{'s' if crops != 1 else ''} x {len(section['joints'])} joints"
    cost = section.get("cost")
    if cost:
        line += f", {cost['passes_per_crop']:,} network passes per crop"
        if cost["left_out"]:
            line += (f"; {cost['left_out']} more left out, to cost no more passes than the latents "
                     f"pass over the {cost['analysed_crops']:,} crops analysed")
    return [line] + _measurement_lines(section)


def _measurement_lines(section: dict) -> list[str]:
    """The indices' overall localisation per method, IG's completeness, the sanity verdicts."""
    from hgpose.explain.saliency_scores import LABELS

    lines = []
    indices = section.get("indices")
    if indices:
        li = ", ".join(f"{LABELS[m]} {_mean_text(v['localisation']['all'])}" for m, v in indices["methods"].items())
        lines.append(f"  saliency indices on {len(indices['rows'])} crops: localisation {li}")
        c = indices["completeness"]
        if c["median"] is not None:
            lines.append(f"  integrated gradients: median completeness error {c['median']:.2f} at {c['steps']} steps")
    checked = section.get("sanity")
    if checked:
        verdicts = ", ".join(f"{LABELS[m]} {'passes' if v['passes'] else 'FAILS'}" for m, v in checked["methods"].items())
        lines.append(f"  randomisation check: {verdicts}")
    return lines


def _mean_text(stats: dict) -> str:
    if stats["mean"] is None:
        return "n/a"
    return f"{stats['mean']:.2f}" + (f" \u00b1 {stats['se']:.2f}" if stats["se"] is not None else "")
