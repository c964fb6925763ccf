"""Example photos shipped with hgpose, to try it without a download: three COCO photos with
several people each, and their annotated person boxes (see ATTRIBUTION.md for the sources and
licences).

    from hgpose import examples
    examples.images()       # [Path, ...] the JPEG files
    examples.boxes()        # {"000000252219.jpg": [[x, y, w, h], ...], ...}
"""

from __future__ import annotations

import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def images() -> list[Path]:
    """The example photos, in a fixed order."""
    return sorted(FOLDER.glob("*.jpg"))


def boxes() -> dict[str, list[list[float]]]:
    """file name -> the person boxes (x, y, w, h in pixels) of that photo."""
    return json.loads((FOLDER / "boxes.json").read_text())
