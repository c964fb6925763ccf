"""The Python inference API: a trained network as an object you call on images.

    import hgpose
    est = hgpose.load("runs/thesis")              # a run directory, or a .safetensors file
    keypoints = est.predict(image, box=(x, y, w, h))  # [17, 3]: x, y, score in image pixels
    people = est.predict_people(image, [box1, box2])  # one [17, 3] array per person box
    heatmaps = est.heatmaps(image)                # [17, 64, 64] of the person crop

`image` is an RGB uint8 array [H, W, 3] (greyscale [H, W] and RGBA are accepted), a file
path or a PIL image of any mode (palette, CMYK, YCbCr, HSV, 16-bit, ...: converted to RGB by
Pillow). A file or PIL image is taken as it is displayed: its EXIF orientation is applied
(`hgpose.images.as_rgb`), so the keypoints of a phone photo tagged "rotate 90°" are in the
frame a viewer shows; an array is taken as it is. Everything `hgpose evaluate`, `predict` and
`export` do goes through `Estimator`, so the commands and a notebook see the same numbers
(`evaluate` crops a dataset's stored pixels, the frame its annotations are in).

A person known by a box is cropped as `hgpose evaluate`'s default protocol (gt-box) crops
it: a square on the box's longer side times `BOX_PADDING` (1.25, as mmpose and HRNet),
centred on the box, the part past the image's border black (`box_crop`). Without a box the
whole image is the one person's crop, padded to a square so that nothing of it is cut
(`whole_image_crop`). Heatmaps are decoded with the run's own codec and mapped back to the
image through the crop box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hgpose.data.crop import BOX_PADDING, CROP_SIZE, CropBox, box_centred_crop, cut_padded_crop, to_image
from hgpose.errors import HgposeError
from hgpose.images import as_rgb
from hgpose.inference import forward, onnx_runtime
from hgpose.inference.device import resolve_device
from hgpose.inference.fast import prepare_network
from hgpose.inference.load import load_run
from hgpose.runs import RunDir
from hgpose.skeleton import JOINTS, NUM_JOINTS

__all__ = ["BOX_PADDING", "Estimator", "Prediction", "box_crop", "decode_to_image", "load", "target_peak",
           "whole_image_crop"]

# Crops per forward pass when an image has several people: the memory of one batch
# (crops, heatmaps), whatever the number of boxes.
PEOPLE_BATCH = 16


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

def box_crop(box, width: int, height: int, what: str = "box") -> CropBox:
    """The crop of a person known only by a box (x, y, w, h) in a width x height image:
    centred on the box centre, square side = the box's longer side x `BOX_PADDING` (1.25),
    whole pixels. The very crop of `hgpose evaluate --protocol gt-box` (`box_centred_crop`),
    so predict and evaluate see a person alike: the box is first clipped to the image (only
    that part holds the person) and the square may reach past the border, where
    `cut_padded_crop` fills it with black. HgposeError naming `what` when the box is not
    finite, has no area, or lies outside the image."""
    x, y, w, h = (float(v) for v in box)
    label = f"{what} {x:g},{y:g},{w:g},{h:g}"
    if not all(np.isfinite((x, y, w, h))) or w <= 0 or h <= 0:
        raise HgposeError(f"{label}: give x,y,w,h with w > 0 and h > 0")
    # the part of the box inside the image must have an area: a box touching the image only
    # along an edge holds nobody
    if min(x + w, width) <= max(x, 0) or min(y + h, height) <= max(y, 0):
        raise HgposeError(f"{label} lies outside the {width}x{height} image")
    return box_centred_crop((x, y, w, h), width, height, BOX_PADDING)


def whole_image_crop(width: int, height: int) -> CropBox:
    """The crop of an image without a person box: the whole image padded to a square (side =
    its longer side, the image centred, the padding black), so that a person anywhere in
    it, at the edges too, is in the crop. (A centre square would cut off the sides of a wide
    photo.)"""
    side = max(width, height)
    return CropBox((width - side) // 2, (height - side) // 2, side)


def person_boxes(boxes) -> np.ndarray:
    """`boxes` (a sequence of (x, y, w, h)) as float64 [N, 4]; HgposeError if it is not one."""
    try:
        array = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        array = None
    if array is not None and array.size == 0:
        return np.zeros((0, 4))
    if array is None or array.ndim != 2 or array.shape[1] != 4:
        raise HgposeError("boxes: give a list of person boxes (x, y, w, h), e.g. [(120, 40, 200, 380)]")
    return array


# --- the estimator -------------------------------------------------------------------------

@dataclass
class Prediction:
    """Everything known about one person in one image."""

    keypoints: np.ndarray   # float32 [17, 3]: x, y in image pixels, score
    heatmaps: np.ndarray    # float32 [17, 64, 64] of the crop (flip-averaged if flip)
    crop: np.ndarray        # uint8 [256, 256, 3]: what the network saw
    crop_box: CropBox       # where the crop lies in the image
    box: tuple              # the person box (x, y, w, h) the crop started from (the image's
                            # own box (0, 0, W, H) when none was given)
    whole_image: bool       # True when no box was given: the whole image, padded to a square

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
        (a path or PIL image as displayed: EXIF orientation applied). With a box: `box_crop`;
        without: the whole image padded to a square (`whole_image_crop`)."""
        image = as_rgb(image, exif=True)
        height, width = image.shape[:2]
        whole = box is None
        if whole:
            crop_box, box = whole_image_crop(width, height), (0, 0, width, height)
        else:
            crop_box = box_crop(box, width, height)
        return (cut_padded_crop(image, crop_box, self.input_size), crop_box,
                tuple(float(v) for v in box), whole)

    def infer(self, image, box=None, flip: bool | None = None) -> Prediction:
        """Crop, run, decode and map back one person: the full `Prediction`."""
        crop, crop_box, box, whole = self.crop(image, box)
        return self._predictions(np.stack([crop]), [crop_box], [box], whole, flip)[0]

    def predict(self, image, box=None, flip: bool | None = None) -> np.ndarray:
        """Keypoints float32 [17, 3]: (x, y) in image pixels and the joint's score. Without a
        box, one person in the whole image (padded to a square)."""
        return self.infer(image, box, flip).keypoints

    def heatmaps(self, image, box=None, flip: bool | None = None) -> np.ndarray:
        """The crop's heatmaps float32 [17, 64, 64] (see `crop` for where the crop lies)."""
        return self.infer(image, box, flip).heatmaps

    # -- several people in one image --------------------------------------------------------

    def iter_people(self, image, boxes, flip: bool | None = None):
        """One `Prediction` per person box (x, y, w, h) of one image, in the boxes' order,
        computed `PEOPLE_BATCH` crops per forward pass, so memory stays that of one batch
        however many boxes there are. Every box is checked first: an HgposeError naming the
        box (its index) before any work."""
        image = as_rgb(image, exif=True)
        boxes = person_boxes(boxes)
        height, width = image.shape[:2]
        crop_boxes = [box_crop(b, width, height, f"box {i}") for i, b in enumerate(boxes)]
        for start in range(0, len(boxes), PEOPLE_BATCH):
            chunk = crop_boxes[start:start + PEOPLE_BATCH]
            crops = np.stack([cut_padded_crop(image, c, self.input_size) for c in chunk])
            chunk_boxes = [tuple(float(v) for v in b) for b in boxes[start:start + PEOPLE_BATCH]]
            yield from self._predictions(crops, chunk, chunk_boxes, False, flip)

    def infer_people(self, image, boxes, flip: bool | None = None) -> list[Prediction]:
        """The full `Prediction` of every person box (x, y, w, h) of one image (`iter_people`)."""
        return list(self.iter_people(image, boxes, flip))

    def predict_people(self, image, boxes, flip: bool | None = None) -> list[np.ndarray]:
        """Keypoints float32 [17, 3] (x, y in image pixels, score) of every person box."""
        return [p.keypoints for p in self.iter_people(image, boxes, flip)]

    def _predictions(self, crops: np.ndarray, crop_boxes: list[CropBox], boxes: list[tuple],
                     whole: bool, flip: bool | None) -> list[Prediction]:
        """Run a batch of crops and decode each back to the image through its crop box."""
        heatmaps = self.crop_heatmaps(crops, flip)
        keypoints = self.decode(heatmaps, crop_boxes)
        maps = heatmaps.cpu().numpy()
        return [Prediction(keypoints[i], maps[i], crops[i], crop_boxes[i], boxes[i], whole)
                for i in range(len(crops))]
