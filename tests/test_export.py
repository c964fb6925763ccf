"""`hgpose export --onnx`: the graph runs in ONNX Runtime with any batch size and matches PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hgpose
from hgpose.export import export_onnx
from builders import make_run

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.parametrize("preset, model", [("thesis", {}), ("newell", {"stacks": 2})])
def test_onnx_matches_pytorch_with_a_dynamic_batch(tmp_path, preset, model):
    run = make_run(tmp_path / "run", preset, checkpoints=("best",), random_batchnorm=True, **model)
    info = export_onnx(run, tmp_path / "model.onnx")
    assert info["max_abs_diff"] is not None and info["max_abs_diff"] < 1e-4

    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("input", "heatmaps") and inp.shape[0] == out.shape[0] == "batch"
    est = hgpose.load(run, precision="fp32")    # the graph is fp32 (BatchNorm folded in)
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
    run = make_run(tmp_path / "run", checkpoints=("best",), random_batchnorm=True)
    assert cli.main(["export", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "max |difference|" in capsys.readouterr().out and (tmp_path / "m.onnx").is_file()
    assert cli.main(["export", str(tmp_path / "nothing"), "--onnx", str(tmp_path / "x.onnx")]) == 2
