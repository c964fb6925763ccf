"""Image headers: an image's size without decoding its pixels."""

from __future__ import annotations

from pathlib import Path


def read_image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the file header (Pillow reads only the header here), or None
    for a file that is missing or not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None
