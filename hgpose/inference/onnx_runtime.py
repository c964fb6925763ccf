"""ONNX Runtime: the CPU's fp32 engine, where it beats PyTorch.

On a CPU that runs fp32 (no native bf16, or `--precision fp32`), ONNX Runtime's CPU provider
ran the hourglass networks 1.4-1.7x faster than PyTorch's channels-last + folded path
(benchmarks/inference.py; docs/evaluate.md, "Speed"); where bf16 is native, PyTorch under
bf16 autocast is faster still, so ONNX Runtime is used only for fp32 on a CPU.

The graph is written on the first batch (`to_onnx`, also what `hgpose export` writes, with
the mean subtraction inside). Writing it takes 2-4 s on 2 cores for any of the networks,
longer than a whole `predict` on one image, so it is kept in a cache (HGPOSE_CACHE/onnx,
default ~/.cache/hgpose/onnx) under a key made of everything the graph depends on: the
weights' bytes, the module's structure, the input size, the opset and the torch version. A
later process with the same network loads it in about 0.2 s. The newest CACHED_GRAPHS graphs
are kept; HGPOSE_ONNX_CACHE=0 turns the cache off; a damaged cached file is written again.
ONNX Runtime is a dependency of hgpose; where it is missing (or HGPOSE_ONNXRUNTIME=0) PyTorch runs.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import os
import re
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from hgpose.errors import HgposeError
from hgpose.models import StackedHourglass

OPSET = 17
CACHED_GRAPHS = 8      # graphs kept in the cache (the full-size networks' are 26-58 MB each)


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


# Part of every cache key: raise it when what is exported from a network changes (the heads'
# padding, the last stack only, the exporter's arguments), so that no older graph is read.
GRAPH_FORMAT = 1


def graph_key(model: nn.Module, size: int, opset: int = OPSET) -> str:
    """The SHA-256 of everything the graph of `model` (exported as `OnnxRuntimeNetwork`
    exports it, at input `size`) depends on: its structure and weights' bytes, the export's
    format, the opset and the torch version."""
    digest = hashlib.sha256(f"{GRAPH_FORMAT}|{torch.__version__}|{opset}|{size}|{model!r}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def graph_cache() -> Path | None:
    """The folder of cached graphs, None when HGPOSE_ONNX_CACHE=0."""
    if os.environ.get("HGPOSE_ONNX_CACHE") == "0":
        return None
    from hgpose.runs.pretrained import cache_dir

    return cache_dir() / "onnx"


_CACHED_NAME = re.compile(r"[0-9a-f]{64}\.onnx")   # only files this cache wrote are ever removed


def remember_graph(folder: Path, key: str, graph: bytes) -> None:
    """Writes the graph into the cache (atomically) and drops the oldest beyond CACHED_GRAPHS.
    A cache that cannot be written only costs the next process the export: no error."""
    from hgpose.io import write_bytes

    try:
        write_bytes(folder / f"{key}.onnx", graph)
        cached = sorted((p for p in folder.iterdir() if _CACHED_NAME.fullmatch(p.name)),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        for old in cached[CACHED_GRAPHS:]:
            old.unlink(missing_ok=True)
    except (OSError, HgposeError):
        pass


# ONNX Runtime's CPU provider runs convolutions in a channel-blocked layout (NCHWc: blocks of
# 16 channels with AVX-512, 8 with AVX2). A tensor whose channel count is not a whole number of
# blocks leaves that layout: two reorders and an unfused add each time. In Newell's network the
# 17 heatmaps of every stack but the last feed the next stack through a 1x1 conv, so the 8-stack
# left the layout 7 times, and 7 % of its time went to reorders and unfused adds. Zero channels
# added to those heads (zero weights and bias out, zero weights in) change no number.
CHANNEL_BLOCK = 16


def _zero_padded(conv: nn.Conv2d, out_channels: int, in_channels: int) -> nn.Conv2d:
    """`conv` with zero output and input channels appended up to the given counts."""
    padded = nn.Conv2d(in_channels, out_channels, conv.kernel_size, conv.stride, conv.padding)
    with torch.no_grad():
        padded.weight.zero_()
        padded.bias.zero_()
        padded.weight[: conv.out_channels, : conv.in_channels] = conv.weight
        padded.bias[: conv.out_channels] = conv.bias
    return padded


def with_blocked_heads(model: nn.Module) -> nn.Module:
    """A copy of a stacked hourglass whose fed-back heatmap heads have a whole number of
    channel blocks (see CHANNEL_BLOCK); any other network is returned as it is. The copy
    computes the same heatmaps: StackedHourglass returns only the first num_joints channels."""
    fed_back = isinstance(model, StackedHourglass) and model.num_stacks > 1
    if not fed_back or model.num_joints % CHANNEL_BLOCK == 0:
        return model
    width = -(-model.num_joints // CHANNEL_BLOCK) * CHANNEL_BLOCK
    model = copy.deepcopy(model)
    for i, (head, merge) in enumerate(list(zip(model.predictions, model.merge_predictions))):
        model.predictions[i] = _zero_padded(head, width, head.in_channels)
        model.merge_predictions[i] = _zero_padded(merge, merge.out_channels, width)
    return model


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
        self.cached = False              # whether the graph came from the cache
        self.cache: Path | None = None   # the graph cache's folder (None: off), and this graph's key in it
        self.key: str | None = None

    def _cached_session(self, ort, options):
        """A session on the cached graph of this network, or None (not cached, cache off, or
        a damaged file: it is written again)."""
        self.cache = graph_cache()
        if self.cache is None:
            return None
        self.key = graph_key(self.model, self.size)
        path = self.cache / f"{self.key}.onnx"
        if not path.is_file():
            return None
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:   # truncated or damaged: export again, which overwrites it
            return None
        self.cached = True
        try:
            os.utime(path)   # recently used: the last to be dropped
        except OSError:
            pass
        return session

    def _start(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()   # the same cores as PyTorch
        try:
            self.session = self._cached_session(ort, options)
            if self.session is None:
                graph = to_onnx(_LastStack(with_blocked_heads(self.model)), self.size)
                self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
                if self.cache is not None:
                    remember_graph(self.cache, self.key, graph)
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
