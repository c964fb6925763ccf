"""The inference core: everything that runs a trained network, written once.

Training's validation, `hgpose.load`/`Estimator`, `evaluate`, `predict`, `export` and
`explain` all run a network through this package, and nothing here imports train/,
evaluate/ or explain/:

    load.py       a run folder or weights file -> the network, its metadata and its codec
    device.py     which device, which precision (one rule for training and inference)
    forward.py    crops -> network input (mean RGB) -> heatmaps, the flip test
    fast.py       the fast path every caller takes: BatchNorm folded, channels-last, bf16
                  where the hardware has it (`prepare_network`, `--precision`)
    onnx_runtime.py  ONNX Runtime, the CPU's fp32 engine
    estimator.py  images and boxes -> crops -> heatmaps -> keypoints in image pixels
"""

from hgpose.inference.device import resolve_device
from hgpose.inference.estimator import Estimator, Prediction, box_crop, load
from hgpose.inference.fast import prepare_network
from hgpose.inference.load import LoadedRun, load_network, load_run

__all__ = ["Estimator", "LoadedRun", "Prediction", "box_crop", "load", "load_network", "load_run",
           "prepare_network", "resolve_device"]
