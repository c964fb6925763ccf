"""Reading images: the EXIF orientation where a user's photo is meant as displayed, the stored
pixels where a dataset annotated them; any Pillow mode as RGB; a JPEG with bytes after its
end marker (a phone's motion photo) is complete."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hgpose.errors import HgposeError
from hgpose.images import ImageProblem, as_rgb, decode_bgr, exif_orientation, jpeg_complete, read_image


def tagged_jpeg(orientation: int) -> tuple[bytes, np.ndarray]:
    """A 60 x 40 JPEG (white top-left block) with an EXIF orientation tag and a thumbnail."""
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:10, :20] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue(), pixels


def test_a_photo_is_read_as_displayed_and_a_dataset_image_as_stored(tmp_path):
    data, pixels = tagged_jpeg(6)        # 6: shown turned 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    path.write_bytes(data)
    assert exif_orientation(data) == 6
    stored = read_image(path)                      # evaluate: the frame COCO annotates
    shown = read_image(path, exif=True)            # predict and the API: the photo as displayed
    assert stored.shape == (40, 60, 3) and shown.shape == (60, 40, 3)
    # turned clockwise: the stored top-left block is now top-right
    assert stored[:10, :20].mean() > 200 and shown[:20, -10:].mean() > 200 and shown[:20, :10].mean() < 50
    np.testing.assert_array_equal(as_rgb(path), shown)
    np.testing.assert_array_equal(as_rgb(Image.open(path)), shown)
    np.testing.assert_array_equal(as_rgb(Image.open(path), exif=False), stored)


@pytest.mark.parametrize("mode", ["P", "CMYK", "YCbCr", "HSV", "LA", "I;16", "1"])
def test_a_pil_image_of_any_mode_is_converted_to_rgb(mode):
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:, :15] = 255
    image = Image.fromarray(pixels)
    image = image.convert("HSV") if mode == "HSV" else image.convert(mode) if mode != "I;16" \
        else Image.fromarray((pixels[..., 0].astype(np.uint16) * 257))
    rgb = as_rgb(image)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert rgb[:, :15].min() >= 200 and rgb[:, 15:].max() <= 55, mode   # white left, black right, whatever the bands


def test_a_motion_photo_is_complete_and_a_cut_jpeg_truncated():
    data, _ = tagged_jpeg(1)
    assert jpeg_complete(data) and jpeg_complete(data + b"\x00\x00\x00\x18ftypmp42" * 1000)
    assert decode_bgr(data + b"\x00\x00\x00\x18ftypmp42" * 1000).shape == (40, 60, 3)
    assert not jpeg_complete(data[:-200])
    with pytest.raises(ImageProblem) as e:
        decode_bgr(data[:-200])
    assert e.value.reason == "truncated"


def test_a_folder_given_as_an_image_is_named_as_a_folder(tmp_path):
    (tmp_path / "im0001.jpg").mkdir()
    with pytest.raises(HgposeError, match="im0001.jpg: is a folder, not an image file"):
        read_image(tmp_path / "im0001.jpg")
