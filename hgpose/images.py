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
import math
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
    """The current pixel limit (width x height); HgposeError naming HGPOSE_MAX_PIXELS when
    the variable is set to something that is not a finite count >= 1 (prepare checks it
    before it writes anything: its worker processes read it)."""
    text = os.environ.get(ENV_MAX_PIXELS)
    if not text:
        return DEFAULT_MAX_PIXELS
    value = pixel_count(text)
    if value is None:
        # An unusable setting must not silently switch the protection off.
        raise HgposeError(f"{ENV_MAX_PIXELS}={text!r}: give a finite whole pixel count >= 1, e.g. 100000000 or 1e8")
    return value


def pixel_count(value) -> int | None:
    """`value` (a number, or its text as in 1e8) as a whole pixel count >= 1, else None
    (also for inf, nan and numbers too large for a float, such as 1e400)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not (math.isfinite(number) and number >= 1 and number == int(number)):
        return None
    return int(number)


def set_max_pixels(limit: int | None) -> None:
    """Set the pixel limit for this process and the worker processes it starts later
    (None: back to the default)."""
    if limit is None:
        os.environ.pop(ENV_MAX_PIXELS, None)
        return
    value = pixel_count(limit)
    if value is None:
        raise HgposeError(f"--max-pixels {limit}: give a finite whole pixel count >= 1, e.g. 100000000 or 1e8")
    os.environ[ENV_MAX_PIXELS] = str(value)


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


def jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's image data ends with its End-Of-Image marker (FF D9).

    The marker is looked for after the first Start-Of-Scan, where the entropy-coded data
    cannot hold it (an FF there is stuffed as FF 00), and not at the end of the file: a phone's
    "motion photo" appends a video after the marker, and an EXIF thumbnail (in an APP segment
    before the scan) has an end marker of its own."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:    # no marker where one belongs: not a JPEG's structure, the decoder judges it
            return True
        marker = data[at + 1]
        if marker == 0xDA:                                    # Start Of Scan: the image data follows
            return data.find(b"\xff\xd9", at + 2) >= 0
        if marker == 0xFF or 0xD0 <= marker <= 0xD8 or marker == 0x01:   # fill byte, markers without a length
            at += 1 if marker == 0xFF else 2
            continue
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")  # a segment: skip its length
    return False


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag of an image file (1..8; 1, also where there is none, means
    the stored pixels are shown as they are)."""
    from PIL import Image, UnidentifiedImageError

    with _PIL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(io.BytesIO(data)) as im:
                value = im.getexif().get(0x0112, 1)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return 1
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def decode_bgr(data: bytes, expect: tuple[int, int] | None = None, *, exif: bool = False) -> np.ndarray:
    """Decode image bytes as BGR uint8 [H, W, 3] (OpenCV's order), or raise ImageProblem.

    expect: (width, height) the stored image must have (e.g. from an annotation file);
    checked from the header, so a wrong image is refused without decoding it.
    exif: turn the pixels as the file's EXIF orientation says (a photo as it is displayed);
    by default the stored pixels, which is what datasets annotate (COCO; HRNet's reference
    loader decodes with OpenCV's IMREAD_IGNORE_ORIENTATION for that reason).
    """
    if not data:
        raise ImageProblem("empty", "empty file (0 bytes)")
    # libjpeg decodes a truncated JPEG with only a warning (grey bottom rows): a JPEG's
    # image data must end with its End-Of-Image marker.
    if data[:2] == b"\xff\xd8" and not jpeg_complete(data):
        raise ImageProblem("truncated", "truncated JPEG (no end-of-image marker after its image data)")
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
        # IMREAD_COLOR turns greyscale images into 3 equal channels (and applies the EXIF
        # orientation unless told to ignore it).
        flags = cv2.IMREAD_COLOR if exif else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        image = None
    if image is None:
        raise ImageProblem("corrupt", "not an image OpenCV can decode")
    if exif and exif_orientation(data) >= 5:                # orientations 5-8 turn by 90 degrees
        width, height = height, width
    if image.shape[:2] != (height, width):  # a header that lies about the pixels
        raise ImageProblem("corrupt", f"decodes to {image.shape[1]}x{image.shape[0]}, its header says {width}x{height}")
    return image


# --- for inference: a file or an array -> RGB --------------------------------------------

def read_image(path: str | Path, *, exif: bool = False) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3]; HgposeError naming the file if it cannot be read.

    exif: as displayed, turned by its EXIF orientation (what `predict` and the Python API
    use for a user's photo); by default the stored pixels, the frame dataset annotations
    (COCO) are in, which is what `evaluate` crops from."""
    path = Path(path)
    if path.is_dir():
        raise HgposeError(f"{path}: is a folder, not an image file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HgposeError(f"{path}: not found") from None
    except OSError as e:
        raise HgposeError(f"{path}: cannot be read ({e.strerror or e})") from None
    # The same checks as `hgpose prepare`: empty, truncated, over the pixel limit (read
    # from the header, before decoding), undecodable.
    try:
        image = decode_bgr(data, exif=exif)
    except ImageProblem as e:
        raise HgposeError(f"{path}: {e}") from None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def as_rgb(image, *, exif: bool = True) -> np.ndarray:
    """A path, a PIL image, or an array [H, W], [H, W, 3] or [H, W, 4] of uint8 -> RGB uint8
    [H, W, 3]. A file or PIL image is taken as displayed (EXIF orientation applied; exif=False
    keeps the stored pixels), and a PIL image of any mode (palette, CMYK, YCbCr, HSV, 16-bit,
    ...) is converted to RGB by Pillow rather than read band by band."""
    if isinstance(image, (str, Path)):
        return read_image(image, exif=exif)
    if _is_pil(image):
        from PIL import ImageOps

        image = (ImageOps.exif_transpose(image) if exif else image).convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(f"expected an image of shape [H, W, 3], got {array.shape}")
    return np.ascontiguousarray(array[..., :3])


def _is_pil(image) -> bool:
    return type(image).__module__.startswith("PIL.")
