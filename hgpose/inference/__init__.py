"""The inference core: everything that runs a trained network, written once.

Training's validation, `hgpose.load`/`Estimator`, `evaluate`, `predict`, `export` and
`explain` all run a network through this package, and nothing here imports train/:

    weights.py    the weights file (safetensors + metadata) -> the network (`load_network`)
    build.py      a run's config -> its network and heatmap codec
    runs.py       which weights file of a run (one best/last rule), which device, which codec
    forward.py    crops -> network input (mean RGB) -> heatmaps, the flip test
    fast.py       the fast path every caller takes: BatchNorm folded, channels-last, bf16
                  where the hardware has it (`prepare_network`, `--precision`)
    estimator.py  images and boxes -> crops -> heatmaps -> keypoints in image pixels
"""

from hgpose.inference.estimator import Estimator, Prediction, box_crop, load
from hgpose.inference.fast import PRECISIONS, prepare_network
from hgpose.inference.runs import resolve_checkpoint, resolve_device
from hgpose.inference.weights import load_network

__all__ = ["PRECISIONS", "Estimator", "Prediction", "box_crop", "load", "load_network",
           "prepare_network", "resolve_checkpoint", "resolve_device"]
