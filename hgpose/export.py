"""`hgpose export --onnx`: the network as an ONNX graph with a dynamic batch axis.

The graph takes what any image library gives after a crop, so a deployment needs no hgpose:

    input     float32 [B, 3, 256, 256]  RGB crop scaled to [0, 1] (pixel / 255), NCHW
    heatmaps  float32 [B, 17, 64, 64]   the last stack's heatmaps

The mean-RGB subtraction of training is inside the graph. Decoding is not: the model's
metadata (`metadata_props`) records the codec, the joint names, the mean RGB and the crop
rule, so a consumer can decode the heatmaps the way the network was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hgpose import __version__
from hgpose.errors import HgposeError
from hgpose.inference.forward import normalise
from hgpose.inference.onnx_runtime import OPSET, to_onnx
from hgpose.io import write_bytes
from hgpose.skeleton import JOINTS

# Opset 9 is the first that can express the hourglass's nearest-neighbour upsampling; the
# last is the newest the (TorchScript) exporter writes.
MIN_OPSET = 9
try:
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as MAX_OPSET
except ImportError:  # private constant: keep a known-good value when it moves
    MAX_OPSET = 20


class ExportedNetwork(nn.Module):
    """[B, 3, H, W] in [0, 1] -> last-stack heatmaps: normalisation + network + stack pick."""

    def __init__(self, model: nn.Module, mean_rgb):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean_rgb, np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(normalise(x, self.mean))[:, -1]


def export_onnx(source, out_path: str | Path, *, checkpoint=None, opset: int = OPSET,
                verify: bool = True) -> dict:
    """Export a run's network (or a weights file) to ONNX; returns a summary dict.

    verify: run the file in ONNX Runtime (when installed) on a batch of 2 and report the
    largest absolute difference from PyTorch ("max_abs_diff"; None when not checked).
    """
    from hgpose.inference import load

    out_path = Path(out_path)
    if out_path.is_dir():
        raise HgposeError(f"--onnx {out_path}: is a folder; give the file to write, e.g. {out_path / 'model.onnx'}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise HgposeError(f"--opset {opset}: this exporter writes opsets {MIN_OPSET} to {MAX_OPSET}")
    try:
        import onnx
    except ImportError:
        raise HgposeError("ONNX export needs the `onnx` package: pip install onnx onnxruntime") from None
    # fp32: the graph holds fp32 weights (BatchNorm folded in) for any runtime to run
    est = load(source, checkpoint=checkpoint, device="cpu", precision="fp32", engine="torch")
    size = est.input_size
    wrapper = ExportedNetwork(est.model, est.mean_rgb).eval()
    graph = onnx.load_from_string(to_onnx(wrapper, size, opset))
    meta = {
        "hgpose_version": __version__,
        "checkpoint": est.checkpoint,
        "model": json.dumps(est.metadata.get("model", {})),
        "input": f"float32 [batch, 3, {size}, {size}] RGB in [0, 1] (pixel / 255); mean RGB "
                 "is subtracted inside the graph",
        "output": "float32 [batch, 17, 64, 64] heatmaps (last stack)",
        "mean_rgb": json.dumps([float(v) for v in est.mean_rgb]),
        "codec": json.dumps(est.codec.describe()),
        "joints": json.dumps(list(JOINTS)),
        "crop_rule": "thesis (SPEC §1): square on the person box's longer side, centred, x1.1, "
                     "fitted into the image, resized to 256x256; x = x0 + (u + 0.5) * side / 256 - 0.5 "
                     "(a pixel's centre is its index)",
    }
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph)
    data = graph.SerializeToString()
    write_bytes(out_path, data)

    diff = verify_onnx(data, wrapper, size) if verify else None
    return {"path": str(out_path), "bytes": len(data), "checkpoint": est.checkpoint,
            "opset": opset, "max_abs_diff": diff}


def verify_onnx(model_bytes: bytes, reference: nn.Module, size: int, batch: int = 2) -> float | None:
    """Largest |ONNX Runtime - PyTorch| over a random batch; None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    (onnx_out,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        torch_out = reference(x).numpy()
    return float(np.abs(onnx_out - torch_out).max())
