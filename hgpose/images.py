"""Decoding image files safely: the size is checked from the header before any pixel is decoded.

A 600-byte JPEG can declare 30,000 x 30,000 pixels; decoding it costs gigabytes before it
fails (a "decompression bomb"). Every image hgpose reads (`prepare`, `predict`, the Python
API) therefore goes through `decode_bgr`, which reads the width and height from the file's
header with Pillow (header only, no pixels) and refuses images over a pixel limit.

The limit is process-wide: 100 megapixels by default (a 12,000 x 8,000 photo fits), changed
with `set_max_pixels` (the CLI's `--max-pixels`) or the environment variable
HGPOSE_MAX_PIXELS. `set_max_pixels` also sets the variable, so worker processes started
afterwards (prepare's pool) apply the same limit.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np

from hgpose.errors import HgposeError

DEFAULT_MAX_PIXELS = 100_000_000
ENV_MAX_PIXELS = "HGPOSE_MAX_PIXELS"
_PIL_LOCK = threading.Lock()


class ImageProblem(Exception):
    """An image that cannot be used. `reason`: empty | corrupt | truncated | too_large |
    size_mismatch; the message says what is wrong (without the file name)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def max_pixels() -> int:
    """The current pixel limit (width x height)."""
    text = os.environ.get(ENV_MAX_PIXELS)
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        # An unusable setting must not silently switch the protection off.
        from hgpose.errors import HgposeError

        raise HgposeError(f"{ENV_MAX_PIXELS}={text!r}: give a pixel count >= 1, e.g. 100000000")
    return value


def set_max_pixels(limit: int | None) -> None:
    """Set the pixel limit for this process and the worker processes it starts later
    (None: back to the default)."""
    if limit is None:
        os.environ.pop(ENV_MAX_PIXELS, None)
    else:
        if int(limit) < 1:
            from hgpose.errors import HgposeError

            raise HgposeError(f"--max-pixels {limit}: give a pixel count >= 1, e.g. 100000000")
        os.environ[ENV_MAX_PIXELS] = str(int(limit))


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding a pixel."""
    from PIL import Image, UnidentifiedImageError

    # Pillow has its own bomb guard (an error above ~179 MP) that would hide the real size
    # and ignore a higher limit chosen on purpose; ours replaces it while the header is read.
    with _PIL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise ImageProblem("corrupt", f"not an image hgpose can read ({type(e).__name__})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def file_size(path) -> tuple[int, int] | None:
    """(width, height) of an image file from its header, or None for a file that is
    missing or not a readable image (the crop step then counts it as broken)."""
    try:
        with open(path, "rb") as f:
            return header_size(f.read())
    except (OSError, ImageProblem):
        return None


def decode_bgr(data: bytes, expect: tuple[int, int] | None = None) -> np.ndarray:
    """Decode image bytes as BGR uint8 [H, W, 3] (OpenCV's order), or raise ImageProblem.

    expect: (width, height) the image must have (e.g. from an annotation file); checked
    from the header, so a wrong image is refused without decoding it.
    """
    if not data:
        raise ImageProblem("empty", "empty file (0 bytes)")
    # libjpeg decodes a truncated JPEG with only a warning (grey bottom rows): a JPEG
    # must end with its End-Of-Image marker.
    if data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise ImageProblem("truncated", "truncated JPEG (no end-of-image marker)")
    width, height = header_size(data)
    limit = max_pixels()
    if width * height > limit:
        raise ImageProblem(
            "too_large",
            f"{width}x{height} = {width * height / 1e6:,.0f} megapixels, over the limit of "
            f"{limit / 1e6:g} MP; raise it with --max-pixels (or {ENV_MAX_PIXELS}) if the image is genuine")
    if expect is not None and (width, height) != tuple(expect):
        raise ImageProblem("size_mismatch", f"{width}x{height}, expected {expect[0]}x{expect[1]}")
    try:
        # IGNORE_ORIENTATION: COCO annotates the stored pixels, not the EXIF-rotated view.
        # IMREAD_COLOR turns greyscale images into 3 equal channels.
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        image = None
    if image is None:
        raise ImageProblem("corrupt", "not an image OpenCV can decode")
    if image.shape[:2] != (height, width):  # a header that lies about the pixels
        raise ImageProblem("corrupt", f"decodes to {image.shape[1]}x{image.shape[0]}, its header says {width}x{height}")
    return image


# --- for inference: a file or an array -> RGB --------------------------------------------

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
        image = decode_bgr(data)
    except ImageProblem as e:
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
