"""The Python inference API: a trained network as an object you call on images.

    import hgpose
    est = hgpose.load("runs/thesis")              # a run directory, or a .safetensors file
    keypoints = est.predict(image, box=(x, y, w, h))  # [17, 3]: x, y, score in image pixels
    heatmaps = est.heatmaps(image)                # [17, 64, 64] of the person crop

`image` is an RGB uint8 array [H, W, 3] (greyscale [H, W] and RGBA are accepted) or a file
path. Everything `hgpose evaluate`, `predict` and `export` do goes through `Estimator`, so the
commands and a notebook see the same numbers.

The person crop follows the thesis crop rule (SPEC §1) on the given box; without a box the
whole image is taken as the person's box. Heatmaps are decoded with the run's own codec and
mapped back to the image through the crop box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from hgpose.data.crop import CROP_SIZE, CropBox, cut_crop, thesis_crop_box, to_image
from hgpose import images
from hgpose.codec import flip_back
from hgpose.errors import HgposeError
from hgpose.skeleton import NUM_JOINTS, JOINTS

__all__ = ["Estimator", "Prediction", "box_crop", "flip_back", "load", "read_image"]

CHECKPOINT_NAMES = ("best", "last")


# --- finding and loading a checkpoint ------------------------------------------------------

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):  # torch.device would also take "meta", "mps", ...
        raise HgposeError(f"--device {device}: choose auto, cpu, cuda or cuda:N")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HgposeError(f"device {device}: CUDA is not available here; use --device cpu or auto")
    return device


def resolve_checkpoint(source: str | Path, checkpoint: str | Path | None = None) -> tuple[Path, Path | None]:
    """(weights file, run directory or None) for a run directory or a weights file.

    checkpoint: None = best, or last when the run has no best yet (no finite validation
    metric); "best" / "last" exactly; or a path (absolute, relative to the working directory,
    or a file name inside RUN_DIR/checkpoints such as epoch_010.safetensors).
    """
    source = Path(source)
    if source.is_file():
        if checkpoint is not None:
            raise HgposeError(f"{source} is a weights file; --checkpoint only applies to a run directory")
        # A file inside RUN_DIR/checkpoints still knows its run (and thus its codec).
        run_dir = source.parent.parent
        return source, run_dir if (run_dir / "config.json").is_file() else None
    if not source.is_dir():
        raise HgposeError(f"{source}: not found — give a run directory of `hgpose train` "
                          "or a .safetensors weights file")
    ckpt_dir = source / "checkpoints"
    if checkpoint is None or str(checkpoint) in CHECKPOINT_NAMES:
        names = CHECKPOINT_NAMES if checkpoint is None else (str(checkpoint),)
        for name in names:
            path = ckpt_dir / f"{name}.safetensors"
            if path.is_file():
                return path, source
        raise HgposeError(
            f"{ckpt_dir}: no {' or '.join(n + '.safetensors' for n in names)} — is {source} a "
            "run directory of `hgpose train` that finished at least one epoch?"
        )
    path = Path(checkpoint)
    if not path.is_file() and (ckpt_dir / path).is_file():
        path = ckpt_dir / path
    if not path.is_file():
        raise HgposeError(f"--checkpoint {checkpoint}: not found (as a path, or in {ckpt_dir})")
    return path, source


def _codec_for(run_dir: Path | None, metadata: dict, weights: Path):
    """The codec the network was trained with: it decides how heatmaps are decoded.

    The run's config.json is authoritative; a weights file on its own only records its
    preset, whose default codec is then used (right unless target.codec was overridden).
    """
    from hgpose import config as cfg
    from hgpose.train.recipes import build_codec

    if run_dir is not None and (run_dir / "config.json").is_file():
        return build_codec(cfg.load(run_dir / "config.json").target)
    if "target" in metadata:  # newer weights files may carry it themselves
        return build_codec(cfg.from_dict(metadata["target"], cfg.TargetConfig, f"{weights} target"))
    preset = metadata.get("preset", "thesis")
    if preset not in cfg.PRESETS:
        raise HgposeError(f"{weights}: unknown preset {preset!r} in its metadata and no config.json beside it")
    return build_codec(cfg.PRESETS[preset]().target)


def load(source: str | Path, *, checkpoint: str | Path | None = None, device: str = "auto",
         flip: bool = False) -> "Estimator":
    """An `Estimator` from a run directory (best checkpoint by default) or a weights file.

    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    flip: average each crop's heatmaps with those of its mirror image (flip test).
    """
    from hgpose.train.checkpoint import load_model

    weights, run_dir = resolve_checkpoint(source, checkpoint)
    device = resolve_device(device)
    model, metadata = load_model(weights, device)
    codec = _codec_for(run_dir, metadata, weights)
    mean = np.asarray(metadata.get("mean_rgb", (0.0, 0.0, 0.0)), np.float32)
    return Estimator(model, codec, mean, device, flip=flip, checkpoint=weights, metadata=metadata)


# --- images and boxes ----------------------------------------------------------------------

def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3]; HgposeError naming the file if it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HgposeError(f"{path}: not found") from None
    except OSError as e:
        raise HgposeError(f"{path}: cannot be read ({e.strerror or e})") from None
    # The same checks as `hgpose prepare`: empty, truncated, over the pixel limit (read
    # from the header, before decoding), undecodable. Orientation is ignored, as COCO
    # annotates the stored pixels, not the EXIF-rotated view.
    try:
        image = images.decode_bgr(data)
    except images.ImageProblem as e:
        raise HgposeError(f"{path}: {e}") from None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def as_rgb(image) -> np.ndarray:
    """A path, or an array [H, W], [H, W, 3] or [H, W, 4] of uint8 -> RGB uint8 [H, W, 3]."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    array = np.asarray(image)  # also takes PIL images
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(f"expected an image of shape [H, W, 3], got {array.shape}")
    return np.ascontiguousarray(array[..., :3])


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


# --- flip test -----------------------------------------------------------------------------

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
    """

    input_size = CROP_SIZE

    def __init__(self, model: torch.nn.Module, codec, mean_rgb, device: str | torch.device = "cpu",
                 *, flip: bool = False, checkpoint: str | Path | None = None, metadata: dict | None = None):
        self.device = torch.device(device)
        # NHWC, the layout training uses by default: faster with cuDNN; on the CPU about the
        # same as NCHW (benchmarks/inference.py).
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.codec = codec
        self.mean_rgb = np.asarray(mean_rgb, np.float32).reshape(3)
        self.flip = flip
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.metadata = metadata or {}
        self._mean = torch.from_numpy(self.mean_rgb).to(self.device).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        model = self.metadata.get("model", {})
        return (f"Estimator({model.get('name', type(self.model).__name__)}, "
                f"codec={type(self.codec).__name__}, device={self.device}, flip={self.flip}, "
                f"checkpoint={self.checkpoint!r})")

    @property
    def joints(self) -> np.ndarray:
        """bool [17]: the joints the network was trained on (all for older weights files)."""
        trained = self.metadata.get("joints")
        return np.array([trained is None or name in trained for name in JOINTS], dtype=bool)

    @property
    def target_peak(self) -> float:
        """The height of a perfect visible-joint target: what a confident score looks like
        for this codec (about 0.62 for the thesis codec, 1 for the Gaussian one)."""
        kps = np.zeros((NUM_JOINTS, 3), np.float32)
        kps[:] = (self.input_size / 2, self.input_size / 2, 2)
        return float(self.codec.encode(kps)[0].max())

    # -- crops -> heatmaps ----------------------------------------------------------------

    def to_input(self, crops) -> torch.Tensor:
        """uint8 crops [B, 256, 256, 3] (numpy or tensor) -> network input on the device:
        crop / 255 minus the training crops' mean RGB, as in training (train/data.py)."""
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
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        # NHWC -> NCHW as a view: its strides already are channels-last.
        return (x - self._mean).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def crop_heatmaps(self, crops, flip: bool | None = None) -> torch.Tensor:
        """Heatmaps float32 [B, 17, 64, 64] (last stack) on the device, for uint8 crops."""
        flip = self.flip if flip is None else flip
        x = self.to_input(crops)
        heatmaps = self.model(x)[:, -1].float()
        if flip:
            stride = self.input_size // heatmaps.shape[-1]
            heatmaps = (heatmaps + flip_back(self.model(x.flip(-1))[:, -1].float(), stride)) / 2
        return heatmaps

    # -- images -> keypoints ----------------------------------------------------------------

    def crop(self, image, box=None) -> tuple[np.ndarray, CropBox, tuple, bool]:
        """(crop uint8 [256,256,3], crop box, person box used, whole_image) for one image."""
        image = as_rgb(image)
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
        coords, scores = self.codec.decode_torch(heatmaps)
        xy = to_image(coords.cpu().numpy(), np.array([[crop_box.x0, crop_box.y0, crop_box.side]]),
                      self.input_size)
        keypoints = np.concatenate([xy, scores.cpu().numpy()[..., None]], -1)[0].astype(np.float32)
        keypoints[~self.joints, 2] = 0  # joints it never saw in training (LSP: the face) score 0
        return Prediction(keypoints, heatmaps[0].cpu().numpy(), crop, crop_box, box, whole)

    def predict(self, image, box=None, flip: bool | None = None) -> np.ndarray:
        """Keypoints float32 [17, 3]: (x, y) in image pixels and the joint's score."""
        return self.infer(image, box, flip).keypoints

    def heatmaps(self, image, box=None, flip: bool | None = None) -> np.ndarray:
        """The crop's heatmaps float32 [17, 64, 64] (see `crop` for where the crop lies)."""
        return self.infer(image, box, flip).heatmaps
