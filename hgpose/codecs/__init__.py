"""Heatmap codecs: keypoints -> training targets (encode), heatmaps -> keypoints (decode).

One object per codec owns both directions, so a network is always decoded the way its
targets were encoded (as in mmpose). `CODECS` is the registry, the `target.codec` config
value -> the class; config validation, training, inference (`--refine`) and the ONNX
export's metadata all read it. Adding a codec is one module with a `HeatmapCodec` subclass
(`name`, `refinements`, `from_config`, see `base.py`) and one line in `CODECS`.

    thesis.py    ThesisCodec    the thesis's blurred impulse, plain argmax (SPEC section 2)
    gaussian.py  GaussianCodec  Newell/MSRA: sub-pixel Gaussian, quarter or DARK decoding
    base.py      the interface, the grid geometry, argmax_2d, flip_back, ABSENT
"""

from __future__ import annotations


from hgpose.codecs.base import ABSENT, HeatmapCodec, argmax_2d, flip_back
from hgpose.codecs.gaussian import GaussianCodec
from hgpose.codecs.thesis import ThesisCodec


CODECS: dict[str, type[HeatmapCodec]] = {"thesis": ThesisCodec, "gaussian": GaussianCodec}


def refine_problem(name: str, refine: str) -> str | None:
    """Why the registered codec `name` cannot decode with `refine` ("decodes by ...; choose
    ..."), None when it can. "auto" is every codec's own rule; any other refinement must be
    one the codec lists."""
    codec = CODECS[name]
    if refine != "auto" and refine not in codec.refinements:
        return f"decodes by {codec.decoding}; choose {' or '.join(('auto', *codec.refinements))}"
    return None


def build_codec(target) -> HeatmapCodec:
    """The codec a run's target config (a `hgpose.config.TargetConfig`, read by field: this
    package does not import hgpose.config, which validates through it) describes: training
    encodes with it, every reader of the run decodes with it."""
    return CODECS[target.codec].from_config(target)


__all__ = ["ABSENT", "CODECS", "GaussianCodec", "HeatmapCodec", "ThesisCodec", "argmax_2d",
           "build_codec", "flip_back", "refine_problem"]
