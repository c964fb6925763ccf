"""Synthetic people in COCO format, with known generating factors (`hgpose synth`).

Articulated figures on the COCO-17 skeleton (a 3-D kinematic tree, posed from named
posture families, turned, projected, rotated, scaled and placed) drawn with OpenCV over
cluttered backgrounds, sometimes several and overlapping, sometimes behind occluders.
Keypoint visibility, boxes and areas are read off a per-part label mask drawn alongside,
so the annotation is true to the picture. Each annotation carries its generating factors
in an extra "synth" field (docs/synth.md).

    from hgpose.synth import generate
    summary = generate("data/synth", train_images=400, val_images=100, seed=0)

Modules: body (kinematics, postures), render (drawing), scene (one image), dataset (the
COCO writer), gallery (the README picture).
"""

from hgpose.synth.body import FACINGS, JOINT_PARTS, PARTS, POSTURES
from hgpose.synth.dataset import format_summary, generate, image_rng, render_example
from hgpose.synth.render import LABELS_PER_PERSON, OBJECT_LABEL, draw_figure
from hgpose.synth.scene import FACTORS, Scene, render_scene, sample_figure


def render_person(
    rng=None,
    size: tuple[int, int] = (640, 480),
    *,
    posture: str | None = None,
    return_mask: bool = False,
):
    """Draw one person alone on a plain grey canvas.

    Returns the BGR image, its annotation (keypoints [17,3], bbox, area, factors) and,
    with `return_mask`, the label mask (1 + part index per pixel, see PARTS) and the
    figure (with `.parts`, the draw order far to near).
    """
    import numpy as np

    from hgpose.synth.draws import Draws
    from hgpose.synth.scene import annotate

    d = Draws(rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng))
    width, height = size
    image = np.full((height, width, 3), 128, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    fig = sample_figure(d, width, height, 1, posture=posture)
    draw_figure(image, mask, fig, 0, (0.6, -0.8))
    ann = annotate(mask, fig, 0, 1, int(((mask > 0) & (mask <= LABELS_PER_PERSON)).sum()))
    if return_mask:
        return image, ann, mask, fig
    return image, ann


__all__ = [
    "FACINGS", "FACTORS", "JOINT_PARTS", "LABELS_PER_PERSON", "OBJECT_LABEL", "PARTS", "POSTURES",
    "Scene", "format_summary", "generate", "image_rng", "render_example", "render_person", "render_scene",
]
