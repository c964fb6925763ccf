"""ONNX Runtime: the CPU's fp32 engine, where it beats PyTorch.

On a CPU that runs fp32 (no native bf16, or `--precision fp32`), ONNX Runtime's CPU provider
ran the hourglass networks 1.3-1.8x faster than PyTorch's channels-last + folded path
(benchmarks/inference.py; docs/evaluate.md, "Speed"); where bf16 is native, PyTorch under
bf16 autocast is faster still, so ONNX Runtime is used only for fp32 on a CPU.

The graph is written here, once per estimator, on the first batch (1-4 s for the full-size
networks): `to_onnx` is also what `hgpose export` writes (with the mean subtraction inside).
ONNX Runtime is optional (`pip install onnxruntime`); without it PyTorch runs.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import warnings

import torch
from torch import nn

OPSET = 17


def available() -> bool:
    """Whether ONNX Runtime can be used: installed, and not turned off with HGPOSE_ONNXRUNTIME=0."""
    return os.environ.get("HGPOSE_ONNXRUNTIME") != "0" and importlib.util.find_spec("onnxruntime") is not None


def to_onnx(module: nn.Module, size: int, opset: int = OPSET) -> bytes:
    """`module` ([B, 3, size, size] -> heatmaps) as an ONNX graph with a dynamic batch axis,
    input "input" and output "heatmaps"."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter warns about its own deprecation; the dynamo one
        # would also need onnxscript, which hgpose does not depend on.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (torch.rand(1, 3, size, size),), buffer, dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["heatmaps"],
            dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}},
        )
    return buffer.getvalue()


class _LastStack(nn.Module):
    """The network's last stack only, [B, 1, J, h, w]: the graph computes nothing unused."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, -1:]


class OnnxRuntimeNetwork:
    """A network's last stack run by ONNX Runtime (fp32, CPU), called like the PyTorch
    network on the normalised input: [B, 3, H, W] float32 -> [B, 1, J, H/4, W/4]. The
    graph is written lazily, on the first call. A network the exporter cannot write (or a
    session ONNX Runtime cannot start) runs in PyTorch instead, with a one-line note."""

    def __init__(self, model: nn.Module, size: int):
        self.model, self.size, self.session = model, size, None
        self.failed: str | None = None   # why ONNX Runtime is not running, once it is known

    def _start(self) -> None:
        import onnxruntime as ort

        try:
            graph = to_onnx(_LastStack(self.model), self.size)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()   # the same cores as PyTorch
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # the exporter's errors embed the whole graph: keep one line
            self.failed = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"
            print(f"hgpose: note: ONNX Runtime could not run this network ({self.failed}); "
                  "running it in PyTorch", file=sys.stderr)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.session is None and self.failed is None:
            self._start()
        if self.failed is not None:
            return self.model(x)
        (out,) = self.session.run(None, {"input": x.detach().float().contiguous().cpu().numpy()})
        return torch.from_numpy(out)
