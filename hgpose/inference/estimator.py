"""The Python inference API: a trained network as an object you call on images.

    import hgpose
    est = hgpose.load("runs/thesis")              # a run directory, or a .safetensors file
    keypoints = est.predict(image, box=(x, y, w, h))  # [17, 3]: x, y, score in image pixels
    heatmaps = est.heatmaps(image)                # [17, 64, 64] of the person crop

`image` is an RGB uint8 array [H, W, 3] (greyscale [H, W] and RGBA are accepted), a file
path or a PIL image of any mode (palette, CMYK, YCbCr, HSV, 16-bit, ...: converted to RGB by
Pillow). A file or PIL image is taken as it is displayed: its EXIF orientation is applied
(`hgpose.images.as_rgb`), so the keypoints of a phone photo tagged "rotate 90°" are in the
frame a viewer shows; an array is taken as it is. Everything `hgpose evaluate`, `predict` and
`export` do goes through `Estimator`, so the commands and a notebook see the same numbers
(`evaluate` crops a dataset's stored pixels, the frame its annotations are in).

The person crop follows the thesis crop rule (SPEC §1) on the given box; without a box the
whole image is taken as the person's box. Heatmaps are decoded with the run's own codec and
mapped back to the image through the crop box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hgpose.data.crop import CROP_SIZE, CropBox, cut_crop, thesis_crop_box, to_image
from hgpose.errors import HgposeError
from hgpose.images import as_rgb
from hgpose.inference import forward, onnx_runtime
from hgpose.inference.device import resolve_device
from hgpose.inference.fast import prepare_network
from hgpose.inference.load import load_run
from hgpose.runs import RunDir
from hgpose.skeleton import JOINTS, NUM_JOINTS

__all__ = ["Estimator", "Prediction", "box_crop", "decode_to_image", "load", "target_peak"]


# --- loading a run ---------------------------------------------------------------------------

def load(source: str | Path, *, checkpoint: str | Path | None = None, device: str = "auto",
         flip: bool = False, refine: str | None = None, precision: str = "auto",
         engine: str = "auto") -> "Estimator":
    """An `Estimator` from a run directory (best checkpoint by default) or a weights file.

    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    flip: average each crop's heatmaps with those of its mirror image (flip test).
    refine: how the argmax is refined when decoding (none, quarter, dark; default: the run's
    target.refine).
    precision: "auto" (bf16 where the CPU or GPU computes it natively, else fp32), "bf16",
    "fp16" (CUDA), "fp32" (see `hgpose.inference.device`).
    engine: "auto" (ONNX Runtime for fp32 on a CPU, where installed: faster there; PyTorch
    otherwise) or "torch".
    """
    device = resolve_device(device)
    run = load_run(source, checkpoint, device, refine)
    return Estimator(run.model, run.codec, run.mean_rgb, device, flip=flip, checkpoint=run.weights,
                     metadata=run.metadata, precision=precision, engine=engine, run=run.run)


def decode_to_image(codec, heatmaps: torch.Tensor, crop_boxes, input_size: int = CROP_SIZE
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The way back from heatmaps to the image, for every caller: heatmaps [B, J, h, w] of
    crops cut at crop_boxes [B, 3] (x0, y0, side) -> (x, y in image pixels float64 [B, J, 2],
    scores float32 [B, J]). The codec decodes to crop pixels; `to_image` scales them back."""
    coords, scores = codec.decode_torch(heatmaps.float())
    boxes = np.asarray(crop_boxes, np.float64).reshape(-1, 3)
    return to_image(coords.cpu().numpy(), boxes, input_size), scores.cpu().numpy()


def target_peak(codec) -> float:
    """The height of a perfect visible-joint target of `codec`: a confident score's scale
    (about 0.62 for the thesis codec, 1 for the Gaussian one)."""
    centre = codec.grid_to_crop(codec.heatmap_size // 2)  # on a cell centre: the full peak
    keypoints = np.zeros((NUM_JOINTS, 3), np.float32)
    keypoints[:] = (centre, centre, 2)
    return float(np.asarray(codec.encode(keypoints)[0]).max())


# --- images and boxes ----------------------------------------------------------------------

def box_crop(box, width: int, height: int) -> CropBox:
    """The thesis crop rule for a person known only by a box (x, y, w, h): square on the
    box's longer side, centred on the box centre, enlarged 10 %, fitted into the image.

    The rule in crop.py also centres on the labelled keypoints' extent; giving it the box's
    two corners as the only "keypoints" makes that extent the box itself, so this is the
    very same rule (steps 1-6), not a second implementation of it.
    """
    x, y, w, h = (float(v) for v in box)
    if not all(np.isfinite((x, y, w, h))) or w <= 0 or h <= 0:
        raise HgposeError(f"box {x:g},{y:g},{w:g},{h:g}: give x,y,w,h with w > 0 and h > 0")
    # Only the part of the box inside the image holds the person.
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        raise HgposeError(f"box {x:g},{y:g},{w:g},{h:g} lies outside the {width}x{height} image")
    corners = np.zeros((NUM_JOINTS, 3))
    corners[0] = (x0, y0, 2)
    corners[1] = (x1, y1, 2)
    return thesis_crop_box((x0, y0, x1 - x0, y1 - y0), corners, width, height)


# --- the estimator -------------------------------------------------------------------------

@dataclass
class Prediction:
    """Everything known about one person in one image."""

    keypoints: np.ndarray   # float32 [17, 3]: x, y in image pixels, score
    heatmaps: np.ndarray    # float32 [17, 64, 64] of the crop (flip-averaged if flip)
    crop: np.ndarray        # uint8 [256, 256, 3]: what the network saw
    crop_box: CropBox       # where the crop lies in the image
    box: tuple              # the person box (x, y, w, h) the crop rule started from
    whole_image: bool       # True when no box was given and the whole image was used

    def to_coco(self, image_id: int | None = None) -> dict:
        """One COCO keypoint result (image_id, category_id 1, 51 values, score = mean joint score)."""
        return {
            "image_id": image_id,
            "category_id": 1,
            "keypoints": [round(float(v), 3) for v in self.keypoints.ravel()],
            "score": round(float(self.keypoints[:, 2].mean()), 5),
        }


class Estimator:
    """A loaded pose network with its codec, input normalisation and device.

    Built by `hgpose.load(...)`; construct it directly only for a model you built yourself.
    The model is made ready for fast inference in place (`prepare_network`: eval mode,
    BatchNorm folded into the convolutions, channels-last); pass a copy to keep yours
    trainable. `precision` and `engine` as in `load`; `self.precision` ("bf16" or "fp32")
    and `self.engine` ("torch" or "onnxruntime") say what runs.
    """

    input_size = CROP_SIZE

    def __init__(self, model: torch.nn.Module, codec, mean_rgb, device: str | torch.device = "cpu",
                 *, flip: bool = False, checkpoint: str | Path | None = None, metadata: dict | None = None,
                 precision: str = "auto", engine: str = "auto", run: RunDir | None = None):
        if engine not in ("auto", "torch"):
            raise HgposeError(f"engine {engine!r}: choose auto or torch")
        self.device = torch.device(device)
        self.model, self.autocast, self.precision = prepare_network(model, self.device, precision)
        onnx = (engine == "auto" and self.device.type == "cpu" and self.precision == "fp32"
                and onnx_runtime.available())
        # What runs: ONNX Runtime's session or the prepared model, called alike on the input.
        self.network = onnx_runtime.OnnxRuntimeNetwork(self.model, self.input_size) if onnx else self.model
        self.codec = codec
        self.mean_rgb = np.asarray(mean_rgb, np.float32).reshape(3)
        self.flip = flip
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.run = run   # the run folder the weights belong to, when there is one
        self.metadata = metadata or {}
        self._mean = torch.from_numpy(self.mean_rgb).to(self.device)

    def __repr__(self) -> str:
        model = self.metadata.get("model", {})
        return (f"Estimator({model.get('name', type(self.model).__name__)}, "
                f"codec={type(self.codec).__name__}, device={self.device}, precision={self.precision}, "
                f"engine={self.engine}, flip={self.flip}, "
                f"checkpoint={self.checkpoint!r})")

    @property
    def engine(self) -> str:
        """What runs the network: "onnxruntime" (fp32 on a CPU, where installed and the
        network exports) or "torch"."""
        onnx = isinstance(self.network, onnx_runtime.OnnxRuntimeNetwork) and self.network.failed is None
        return "onnxruntime" if onnx else "torch"

    @property
    def joints(self) -> np.ndarray:
        """bool [17]: the joints the network was trained on (all for older weights files)."""
        trained = self.metadata.get("joints")
        return np.array([trained is None or name in trained for name in JOINTS], dtype=bool)

    @property
    def target_peak(self) -> float:
        """What a confident score looks like for this run's codec (see `target_peak`)."""
        return target_peak(self.codec)

    # -- crops -> heatmaps ----------------------------------------------------------------

    def to_input(self, crops) -> torch.Tensor:
        """uint8 crops [B, 256, 256, 3] (numpy or tensor) -> network input on the device
        (`hgpose.inference.forward.to_input`: crop / 255 minus the training crops' mean RGB)."""
        if isinstance(crops, torch.Tensor):
            x = crops
        else:
            crops = np.asarray(crops)
            # torch warns on read-only arrays (memory-mapped store slices): copy those
            x = torch.from_numpy(crops if crops.flags.writeable else crops.copy())
        if x.ndim == 3:
            x = x[None]
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected uint8 crops [B, {self.input_size}, {self.input_size}, 3], "
                             f"got {x.dtype} {tuple(x.shape)}")
        return forward.to_input(x, self._mean, self.device)

    @torch.inference_mode()
    def crop_heatmaps(self, crops, flip: bool | None = None) -> torch.Tensor:
        """Heatmaps float32 [B, 17, 64, 64] (last stack) on the device, for uint8 crops."""
        flip = self.flip if flip is None else flip
        return forward.last_stack(self.network, self.to_input(crops), flip, self.autocast)

    def decode(self, heatmaps: torch.Tensor, crop_boxes) -> np.ndarray:
        """Heatmaps [B, 17, h, w] of crops cut at crop_boxes ([B, 3]: x0, y0, side, or
        CropBoxes) -> keypoints float32 [B, 17, 3]: x, y in image pixels and the joint's
        score (0 for a joint the network was never trained on)."""
        boxes = [[b.x0, b.y0, b.side] if isinstance(b, CropBox) else b for b in crop_boxes]
        xy, scores = decode_to_image(self.codec, heatmaps, boxes, self.input_size)
        keypoints = np.concatenate([xy, scores[..., None]], -1).astype(np.float32)
        keypoints[:, ~self.joints, 2] = 0  # joints it never saw in training (LSP: the face) score 0
        return keypoints

    # -- images -> keypoints ----------------------------------------------------------------

    def crop(self, image, box=None) -> tuple[np.ndarray, CropBox, tuple, bool]:
        """(crop uint8 [256,256,3], crop box, person box used, whole_image) for one image
        (a path or PIL image as displayed: EXIF orientation applied)."""
        image = as_rgb(image, exif=True)
        height, width = image.shape[:2]
        whole = box is None
        if whole:
            box = (0.0, 0.0, float(width), float(height))
        crop_box = box_crop(box, width, height)
        return cut_crop(image, crop_box, self.input_size), crop_box, tuple(float(v) for v in box), whole

    def infer(self, image, box=None, flip: bool | None = None) -> Prediction:
        """Crop, run, decode and map back one person: the full `Prediction`."""
        crop, crop_box, box, whole = self.crop(image, box)
        heatmaps = self.crop_heatmaps(crop, flip)
        keypoints = self.decode(heatmaps, [crop_box])[0]
        return Prediction(keypoints, heatmaps[0].cpu().numpy(), crop, crop_box, box, whole)

    def predict(self, image, box=None, flip: bool | None = None) -> np.ndarray:
        """Keypoints float32 [17, 3]: (x, y) in image pixels and the joint's score."""
        return self.infer(image, box, flip).keypoints

    def heatmaps(self, image, box=None, flip: bool | None = None) -> np.ndarray:
        """The crop's heatmaps float32 [17, 64, 64] (see `crop` for where the crop lies)."""
        return self.infer(image, box, flip).heatmaps
