"""The typed run configuration: fields that choose behaviour, checked by their effect."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hgpose import config as cfg
from hgpose.codecs import GaussianCodec, ThesisCodec, build_codec
from hgpose.errors import HgposeError
from hgpose.inference.device import autocast_dtype
from hgpose.skeleton import NUM_JOINTS
from hgpose.train.step import autocast_factory


# --- target.refine: how the argmax of a heatmap is refined ----------------------------------

def sharp_heatmaps(x: float, y: float) -> np.ndarray:
    """Exact sigma-1 targets [17, 64, 64] with every joint at heatmap position (x, y)."""
    codec = GaussianCodec(sigma=1.0)
    keypoints = np.tile([codec.grid_to_crop(x), codec.grid_to_crop(y), 2.0], (NUM_JOINTS, 1))
    return codec.encode(keypoints)[0]


def test_dark_refinement_moves_the_argmax_to_the_sub_pixel_peak():
    # The peak sits at (20.3, 30.7) heatmap px: the argmax cell is (20, 31), 0.3 px off on
    # each axis. Plain argmax stays there; DARK must move right in x and up in y, onto it.
    heatmaps = sharp_heatmaps(20.3, 30.7)
    none = build_codec(cfg.resolve("newell", ["target.refine=none"]).target)
    dark = build_codec(cfg.resolve("newell", ["target.refine=dark"]).target)
    assert (none.refine, dark.refine) == ("none", "dark")
    at_argmax = none.decode(heatmaps)[0][0]
    refined = dark.decode(heatmaps)[0][0]
    np.testing.assert_array_equal(at_argmax, [81.5, 125.5])               # cell (20, 31): 4j + 1.5
    assert refined[0] > at_argmax[0] and refined[1] < at_argmax[1]         # toward (82.7, 124.3)
    np.testing.assert_allclose(refined, [82.7, 124.3], atol=0.02)          # exact Gaussian: on it


def test_refine_auto_is_each_codecs_own_decoding():
    """The default keeps what runs decoded with before the field existed."""
    assert cfg.TargetConfig().refine == "auto"
    gaussian = build_codec(cfg.preset("newell").target)
    assert isinstance(gaussian, GaussianCodec) and gaussian.refine == "quarter"
    # argmax (20, 31) moved a quarter cell toward the higher neighbour: (20.25, 30.75)
    np.testing.assert_array_equal(gaussian.decode(sharp_heatmaps(20.3, 30.7))[0][0], [82.5, 124.5])
    assert isinstance(build_codec(cfg.preset("thesis").target), ThesisCodec)
    assert isinstance(build_codec(cfg.resolve("thesis", ["target.refine=none"]).target), ThesisCodec)


def test_refine_is_saved_with_the_run_and_read_back(tmp_path):
    config = cfg.resolve("newell", ["target.refine=dark"])
    cfg.save(config, tmp_path / "config.json")
    assert cfg.load(tmp_path / "config.json").target.refine == "dark"
    assert cfg.to_dict(config)["target"]["refine"] == "dark"   # also what weights files carry
    # A config.json written before the field existed decodes as it always did.
    old = cfg.to_dict(cfg.preset("newell"))
    del old["target"]["refine"]
    assert cfg.from_dict(old).target.refine == "auto"


@pytest.mark.parametrize("preset, assignment, message", [
    ("newell", "target.refine=taylor", "config target.refine='taylor': choose one of auto, none, quarter, dark"),
    ("thesis", "target.refine=dark", "config target.refine=dark: the thesis codec decodes by plain argmax"),
])
def test_bad_refine_is_a_one_line_error(preset, assignment, message):
    with pytest.raises(HgposeError) as error:
        cfg.resolve(preset, [assignment])
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


# --- precision: one vocabulary for training and inference -----------------------------------

@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU that computes bf16 natively, so only the config decides."""
    monkeypatch.setenv("HGPOSE_CPU_BF16", "1")


CUDA, CPU = torch.device("cuda", 0), torch.device("cpu")


@pytest.mark.parametrize("preset", ["thesis", "thesis-ae"])
def test_thesis_presets_train_in_fp32_on_cuda_and_cpu(bf16_cpu, preset):
    config = cfg.preset(preset)
    assert config.precision == "fp32"
    assert autocast_dtype(config.precision, CUDA) is None
    assert autocast_dtype(config.precision, CPU) is None
    with autocast_factory(config, CPU)():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_mixed_precision_is_what_the_config_sets(bf16_cpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(cfg.resolve("thesis", ["precision=bf16"]).precision, CUDA) == torch.bfloat16
    assert autocast_dtype(cfg.resolve("thesis", ["precision=fp16"]).precision, CUDA) == torch.float16
    with_bf16 = cfg.resolve("thesis", ["precision=bf16"])
    assert autocast_dtype(with_bf16.precision, CPU) == torch.bfloat16
    with autocast_factory(with_bf16, CPU)():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    # The presets beyond the thesis run bf16 where the device has it natively.
    for preset in ("newell", "cpu"):
        assert cfg.preset(preset).precision == "auto"
    assert autocast_dtype("auto", CUDA) == torch.bfloat16
    assert autocast_dtype("auto", CPU) == torch.bfloat16


def test_precision_follows_one_policy_in_training_and_inference(monkeypatch):
    """auto falls back to fp32 where bf16 is not native; an explicit bf16 there is a one-line
    error, the same for `--precision bf16` and `--set precision=bf16`; fp16 is CUDA's."""
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    assert autocast_dtype("auto", CPU) is None
    with pytest.raises(HgposeError, match=r"precision bf16: this CPU has no native bf16.*use auto or fp32"):
        autocast_factory(cfg.resolve("cpu", ["precision=bf16"]), CPU)
    with pytest.raises(HgposeError, match=r"precision fp16: runs on CUDA only"):
        autocast_dtype("fp16", CPU)
    with pytest.raises(HgposeError, match="config precision='fp8': choose one of auto, bf16, fp16, fp32"):
        cfg.resolve("cpu", ["precision=fp8"])


@pytest.mark.parametrize("old, new", [
    ({"amp": "none", "cpu_amp": "none"}, "fp32"),      # the thesis presets
    ({"amp": "bf16", "cpu_amp": "auto"}, "auto"),      # newell, cpu
    ({"amp": "fp16", "cpu_amp": "auto"}, "fp16"),
    ({"amp": "none", "cpu_amp": "bf16"}, "auto"),
])
def test_a_config_from_before_the_precision_vocabulary_still_loads(tmp_path, old, new):
    data = cfg.to_dict(cfg.preset("cpu"))
    del data["precision"]
    data.update(old)
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert cfg.load(tmp_path / "config.json").precision == new
