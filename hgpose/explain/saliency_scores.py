"""The saliency part's measurements: every method's maps on a seeded sample of crops, scored
by the PoseIG indices (`attribution_indices`), integrated gradients' completeness error, and
the cascading-randomisation sanity check (`sanity`). `saliency.run` calls `measure`.

The methods, each a function (model, x [1,3,H,W], joints) -> maps [J, H, W] explaining the
peak of each joint's heatmap: occlusion and Grad-CAM (`saliency`), integrated gradients
along the blur path (`integrated_gradients`).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import TYPE_CHECKING

import numpy as np

from hgpose.errors import HgposeError
from hgpose.explain import attribution_indices, sanity
from hgpose.explain.integrated_gradients import integrated_gradients

if TYPE_CHECKING:
    from hgpose.explain.context import Context

METHODS = ("occlusion", "gradcam", "integrated_gradients")
LABELS = {"occlusion": "occlusion", "gradcam": "Grad-CAM", "integrated_gradients": "IG (blur path)"}


def method_functions(o, layer: str, joints: list[int], ig_errors: list | None = None) -> dict:
    """name -> f(model, x) -> maps [len(joints), H, W], at the part's options; IG's completeness
    errors are appended to `ig_errors` when given."""
    from hgpose.explain.saliency import gradcam, occlusion

    def ig(model, x):
        maps, errors = integrated_gradients(model, x, joints, steps=o.ig_steps, sigma_max=o.ig_blur)
        if ig_errors is not None:
            ig_errors.append(errors)
        return maps

    return {
        "occlusion": lambda model, x: occlusion(model, x, o.occlusion_patch, o.occlusion_stride, joints=joints),
        "gradcam": lambda model, x: gradcam(model, x, layer, joints),
        "integrated_gradients": ig,
    }


def crop_input(ctx: Context, row: int):
    """The network input [1, 3, 256, 256] of crop `row`, as the latents pass fed it."""
    import torch

    from hgpose.explain.latents import input_mean
    from hgpose.inference.forward import to_input

    crop = np.array(ctx.images[row])   # a writable copy (torch warns on read-only maps)
    return to_input(torch.from_numpy(crop)[None], input_mean(ctx.checkpoint), ctx.device, channels_last=False)


def sample_rows(n: int, limit: int, seed: int) -> list[int]:
    """`limit` crops of n drawn without replacement by the seed, in row order (all when n <= limit)."""
    rng = np.random.default_rng([seed, 29])
    return sorted(int(r) for r in rng.choice(n, min(n, limit), replace=False))


def person_masks(ctx: Context, rows: list[int]) -> tuple[dict[int, np.ndarray | None], str | None]:
    """row -> the person's mask in crop pixels (bool [256, 256]) from its source's annotation
    file (COCO polygons or RLE, via pycocotools), None where the annotation has none; and why
    foreground is skipped, when no crop has a mask."""
    from hgpose.data.crop import CropBox, cut_padded_crop
    from hgpose.data.formats.coco import load_coco

    split = ctx.store.split(ctx.options.split)
    try:
        files = ctx.store.annotation_files(ctx.options.split)
    except HgposeError as e:
        return {row: None for row in rows}, f"foreground skipped: {e}"
    cocos, masks = {}, {}
    for row in rows:
        source = int(split.source[row])
        if source not in cocos:
            with contextlib.redirect_stdout(io.StringIO()):
                cocos[source] = load_coco(files[source])
        ann = cocos[source].anns.get(int(split.ids[row, 1]))
        if not ann or not ann.get("segmentation"):
            masks[row] = None
            continue
        x0, y0, side = (int(round(float(v))) for v in split.boxes[row])
        with warnings.catch_warnings():   # pycocotools' decode under numpy 2: a DeprecationWarning per call
            warnings.simplefilter("ignore", DeprecationWarning)
            full = cocos[source].annToMask(ann).astype(np.float32)
        masks[row] = cut_padded_crop(full, CropBox(x0, y0, side)) >= 0.5
    missing = sum(m is None for m in masks.values())
    note = None
    if missing == len(rows):
        note = "foreground skipped: the annotations of these crops have no person masks (LSP/LSPET has none)"
    elif missing:
        note = f"foreground measured on the {len(rows) - missing} of {len(rows)} crops whose annotation has a mask"
    return masks, note


def score(ctx: Context, o, model, layer: str, joints: list[int], rows: list[int]) -> dict:
    """The indices of every method on crops `rows`: per crop, and mean ± SE per joint."""
    masks, note = person_masks(ctx, rows)
    ig_errors: list = []
    methods = method_functions(o, layer, joints, ig_errors)
    crops = [(crop_input(ctx, row), np.array(ctx.labels()[row]), masks[row]) for row in rows]
    per_crop = indices_per_crop(model, methods, crops, joints, o.index_radius)
    errors = np.array(ig_errors).reshape(-1, len(joints)) if ig_errors else np.zeros((0, len(joints)))
    return {
        "rows": rows, "radius": o.index_radius, "foreground_note": note,
        "masks": int(sum(m is not None for m in masks.values())),
        "methods": {name: attribution_indices.summarise(per_crop[name], joints) for name in METHODS},
        "per_crop": per_crop,
        "completeness": completeness(errors, joints, o),
    }


def indices_per_crop(model, methods: dict, crops: list[tuple], joints: list[int], radius: float) -> dict:
    """method name -> one `attribution_indices.map_indices` per crop; crops: (input [1,3,H,W],
    keypoints [17, 3] in crop pixels, mask bool [H, W] or None)."""
    per_crop = {name: [] for name in methods}
    for x, keypoints, mask in crops:
        for name, f in methods.items():
            per_crop[name].append(attribution_indices.map_indices(f(model, x), keypoints, joints, radius, mask))
    return per_crop


def completeness(errors: np.ndarray, joints: list[int], o) -> dict:
    """IG's completeness errors [crops, joints]: their median, mean and 90th percentile."""
    from hgpose.skeleton import JOINTS

    finite = errors[np.isfinite(errors)]
    stat = (lambda f: float(f(finite)) if finite.size else None)
    return {"steps": o.ig_steps, "blur_sigma": o.ig_blur, "median": stat(np.median), "mean": stat(np.mean),
            "p90": stat(lambda v: np.percentile(v, 90)), "n": int(finite.size),
            "per_joint_median": {JOINTS[j]: (float(np.nanmedian(errors[:, i])) if np.isfinite(errors[:, i]).any()
                                             else None) for i, j in enumerate(joints)}}


def randomisation(ctx: Context, o, model, layer: str, joints: list[int], rows: list[int]) -> dict | None:
    """The cascading-randomisation curves on the first --sanity-crops of `rows`."""
    chosen = rows[:o.sanity_crops]
    if not chosen:
        return None
    inputs = [crop_input(ctx, row) for row in chosen]
    result = sanity.cascade(model, inputs, method_functions(o, layer, joints), o.sanity_steps, ctx.options.seed)
    return {"rows": chosen, "pass_below": sanity.PASS_BELOW, **result}
