"""`hgpose export --onnx`: the graph runs in ONNX Runtime with any batch size and matches PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hgpose
from hgpose.evaluate.export import export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def make_run(run_dir: Path, preset: str = "thesis", **model) -> Path:
    """A run directory as `hgpose train` leaves it, with an untrained narrow network."""
    from hgpose.train import checkpoint as ckpt
    from hgpose.train import config as cfg
    from hgpose.train.recipes import build_network

    config = cfg.resolve(preset, [f"model.{k}={v}" for k, v in {"features": 8, **model}.items()])
    torch.manual_seed(0)
    network = build_network(config.model)
    # Non-trivial BatchNorm statistics, so a normalisation slip would show.
    for m in network.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    cfg.save(config, run_dir / "config.json")
    meta = ckpt.weights_metadata(config.model, [0.41, 0.37, 0.35], 1, {}, config.preset)
    ckpt.save_weights(run_dir / "checkpoints" / "best.safetensors", network, meta)
    return run_dir


@pytest.mark.parametrize("preset, model", [("thesis", {}), ("newell", {"stacks": 2})])
def test_onnx_matches_pytorch_with_a_dynamic_batch(tmp_path, preset, model):
    run = make_run(tmp_path / "run", preset, **model)
    info = export_onnx(run, tmp_path / "model.onnx")
    assert info["max_abs_diff"] is not None and info["max_abs_diff"] < 1e-4

    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("input", "heatmaps") and inp.shape[0] == out.shape[0] == "batch"
    est = hgpose.load(run)
    crops = np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    # The graph takes pixel / 255 in NCHW; the mean-RGB subtraction is inside it.
    x = crops.transpose(0, 3, 1, 2).astype(np.float32) / 255
    (heatmaps,) = session.run(None, {"input": x})
    assert heatmaps.shape == (3, 17, 64, 64)
    expected = est.crop_heatmaps(crops).numpy()
    assert np.abs(heatmaps - expected).max() < 1e-4

    meta = session.get_modelmeta().custom_metadata_map
    codec = json.loads(meta["codec"])
    assert codec["name"] == ("thesis" if preset == "thesis" else "gaussian") and codec["stride"] == 4
    np.testing.assert_allclose(json.loads(meta["mean_rgb"]), [0.41, 0.37, 0.35], rtol=1e-6)
    assert len(json.loads(meta["joints"])) == 17


def test_cli_export(tmp_path, capsys):
    from hgpose import cli

    if "export" not in cli.COMMANDS:
        pytest.skip("export is not registered in hgpose.cli yet")
    run = make_run(tmp_path / "run")
    assert cli.main(["export", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "max |difference|" in capsys.readouterr().out and (tmp_path / "m.onnx").is_file()
    assert cli.main(["export", str(tmp_path / "nothing"), "--onnx", str(tmp_path / "x.onnx")]) == 2
