"""`hgpose export --onnx`: the network as an ONNX graph with a dynamic batch axis.

The graph takes what any image library gives after a crop, so a deployment needs no hgpose:

    input     float32 [B, 3, 256, 256]  RGB crop scaled to [0, 1] (pixel / 255), NCHW
    heatmaps  float32 [B, 17, 64, 64]   the last stack's heatmaps

The mean-RGB subtraction of training is inside the graph. Decoding is not: the model's
metadata (`metadata_props`) records the codec, the joint names, the mean RGB and the crop
rule, so a consumer can decode the heatmaps the way the network was trained.

Every export is checked before it is put in place: the written file is run in ONNX Runtime
and compared with the network computed in float64; it must agree within a tolerance taken
from fp32 rounding (what PyTorch's own fp32 result differs by). A file that does not is
removed and the command fails in one line. Which opsets work (the TorchScript exporter):

    working resolution   opsets
    256 (every preset but cpu)   9 to the newest
    64, 128 (cpu: 128)   11 to the newest: the heatmaps' bilinear resampling back to the
                         64x64 grid (align_corners=False) needs Resize's coordinate mode,
                         which opset 11 added; opsets 9 and 10 resample with another mapping
                         (heatmaps off by 0.1, the argmax on other cells)
    192                  none: its 3/4 area resampling has no ONNX form
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hgpose import __version__
from hgpose.errors import HgposeError
from hgpose.inference.forward import normalise
from hgpose.inference.onnx_runtime import OPSET, to_onnx
from hgpose.io import atomic_path
from hgpose.skeleton import JOINTS

# Opset 9 is the first that can express the hourglass's nearest-neighbour upsampling; the
# last is the newest the (TorchScript) exporter writes.
MIN_OPSET = 9
try:
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as MAX_OPSET
except ImportError:  # private constant: keep a known-good value when it moves
    MAX_OPSET = 20
RESAMPLING_OPSET = 11       # the first opset whose Resize maps pixel centres as PyTorch does
FULL_RESOLUTION = 256
# The check: |ONNX Runtime - float64| <= max(ROUNDING_FACTOR x |PyTorch fp32 - float64|,
# FLOOR_ULPS fp32 steps of the largest heatmap value). Measured: ONNX Runtime's difference is
# 1.0-1.1x PyTorch's (2e-7 to 7e-7); a wrong graph is off by 1e-1.
ROUNDING_FACTOR = 16
FLOOR_ULPS = 64


class ExportedNetwork(nn.Module):
    """[B, 3, H, W] in [0, 1] -> last-stack heatmaps: normalisation + network + stack pick."""

    def __init__(self, model: nn.Module, mean_rgb):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean_rgb, np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(normalise(x, self.mean))[:, -1]


def opset_problem(resolution: int, opset: int) -> str | None:
    """Why `--opset` cannot export a network working at `resolution` px, or None."""
    if resolution not in (64, 128, FULL_RESOLUTION):
        return (f"a network working at {resolution} px brings its input to that size by area averaging, "
                "which the ONNX exporter cannot write at any opset; export works for networks at 256 px "
                f"(opsets {MIN_OPSET}-{MAX_OPSET}) and at 64 or 128 px (opsets {RESAMPLING_OPSET}-{MAX_OPSET})")
    if resolution != FULL_RESOLUTION and opset < RESAMPLING_OPSET:
        return (f"a network working at {resolution} px resamples its heatmaps bilinearly, which ONNX "
                f"writes as PyTorch computes it from opset {RESAMPLING_OPSET} on (opsets {MIN_OPSET}-{MAX_OPSET} "
                f"work at 256 px); use --opset {RESAMPLING_OPSET} or later")
    return None


def export_onnx(source, out_path: str | Path, *, checkpoint=None, opset: int = OPSET,
                verify: bool = True) -> dict:
    """Export a run's network (or a weights file) to ONNX; returns a summary dict.

    verify: run the written file in ONNX Runtime on a batch of 2 and compare it with the
    network in float64 before the file is put in place: "max_abs_diff" (from PyTorch's fp32
    result) and "tolerance"; a difference above the tolerance raises HgposeError and leaves
    no file. verify=False skips the check (the known opset limits still apply).
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
    if verify and not _onnxruntime():
        raise HgposeError("the export is checked in ONNX Runtime, which is not installed: pip install "
                          "onnxruntime, or pass --no-verify to write the file unchecked")
    if out_path.exists() and not written_by_hgpose(out_path):
        raise HgposeError(f"--onnx {out_path}: exists and was not written by `hgpose export`; hgpose never "
                          "replaces a file it did not write: choose another name")
    # fp32: the graph holds fp32 weights (BatchNorm folded in) for any runtime to run
    est = load(source, checkpoint=checkpoint, device="cpu", precision="fp32", engine="torch")
    resolution = int(getattr(est.model, "resolution", FULL_RESOLUTION))
    problem = opset_problem(resolution, opset)
    if problem:
        raise HgposeError(f"--opset {opset}: {problem}")
    size = est.input_size
    wrapper = ExportedNetwork(est.model, est.mean_rgb).eval()
    data = _graph(onnx, wrapper, size, opset, _metadata(est, size))
    check = None
    with atomic_path(out_path, suffix=".onnx") as tmp:
        tmp.write_bytes(data)
        if verify:   # the file as written, before it takes the name asked for
            check = verify_onnx(tmp, wrapper, size)
            if check["error"] > check["tolerance"]:
                raise HgposeError(
                    f"--onnx {out_path}: the exported graph differs from PyTorch by {check['error']:.1e} "
                    f"(tolerance {check['tolerance']:.1e}, from fp32 rounding) at opset {opset}, resolution "
                    f"{resolution}; nothing was written: try another --opset (default {OPSET})")
    return {"path": str(out_path), "bytes": len(data), "checkpoint": est.checkpoint, "opset": opset,
            "resolution": resolution, "max_abs_diff": None if check is None else check["max_abs_diff"],
            "tolerance": None if check is None else check["tolerance"]}


def _graph(onnx, wrapper: nn.Module, size: int, opset: int, meta: dict) -> bytes:
    """The checked ONNX graph with hgpose's metadata, serialised; one line if the exporter fails."""
    try:
        graph = onnx.load_from_string(to_onnx(wrapper, size, opset))
    except RuntimeError as e:   # torch.onnx's errors; their messages embed the whole graph
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise HgposeError(f"--opset {opset}: the ONNX exporter cannot write this network "
                          f"({type(e).__name__}: {first}); try another --opset (default {OPSET})") from None
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph)
    return graph.SerializeToString()


def _metadata(est, size: int) -> dict:
    return {
        "hgpose_version": __version__,
        "checkpoint": est.checkpoint,
        "model": json.dumps(est.metadata.get("model", {})),
        "input": f"float32 [batch, 3, {size}, {size}] RGB in [0, 1] (pixel / 255); mean RGB "
                 "is subtracted inside the graph",
        "output": "float32 [batch, 17, 64, 64] heatmaps (last stack)",
        "mean_rgb": json.dumps([float(v) for v in est.mean_rgb]),
        "codec": json.dumps(est.codec.describe()),
        "joints": json.dumps(list(JOINTS)),
        "crop_rule": "a person box (x, y, w, h): a square on its longer side x1.25, centred, the part "
                     "outside the image padded black (hgpose predict); training crops used the thesis "
                     "rule (x1.1, fitted into the image); resized to 256x256; "
                     "x = x0 + (u + 0.5) * side / 256 - 0.5 (a pixel's centre is its index)",
    }


def written_by_hgpose(path: Path) -> bool:
    """Whether an existing file is an ONNX model `hgpose export` wrote (its metadata says so)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:   # not ONNX at all (or unreadable): not ours either way
        return False
    return any(p.key == "hgpose_version" for p in model.metadata_props)


def _onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def verify_onnx(model: str | Path | bytes, reference: nn.Module, size: int, batch: int = 2) -> dict:
    """Run an ONNX model in ONNX Runtime on a random batch and compare it with `reference`:
    "max_abs_diff" from PyTorch's fp32 result, "error" from the float64 result, and the
    "tolerance" the error must stay within, from fp32 rounding (module constants)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                   providers=["CPUExecutionProvider"])
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    (onnx_out,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        fp32 = reference(x).double().numpy()
        exact = copy.deepcopy(reference).double()(x.double()).numpy()
    rounding = float(np.abs(fp32 - exact).max())
    scale = max(float(np.abs(exact).max()), float(np.finfo(np.float32).tiny))
    tolerance = max(ROUNDING_FACTOR * rounding, FLOOR_ULPS * float(np.finfo(np.float32).eps) * scale)
    return {"max_abs_diff": float(np.abs(onnx_out - fp32).max()), "error": float(np.abs(onnx_out - exact).max()),
            "tolerance": tolerance}
