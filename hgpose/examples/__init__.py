"""Example photos shipped with hgpose, to try it without a download: three COCO photos with
several people each, and their annotated person boxes (see ATTRIBUTION.md for the sources and
licences).

    from hgpose import examples
    examples.images()       # [Path, ...] the JPEG files
    examples.boxes()        # {"000000252219.jpg": [[x, y, w, h], ...], ...}
    examples.keypoints()    # the same people's COCO keypoints: {name: [[x, y, v] * 17, ...]}

`hgpose predict RUN_DIR --examples` predicts every person of them with these boxes
(`BOXES`, a boxes file in the JSON-object format `hgpose predict --boxes` reads).
"""

from __future__ import annotations

import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
BOXES = FOLDER / "boxes.json"
KEYPOINTS = FOLDER / "keypoints.json"


def images() -> list[Path]:
    """The example photos, in a fixed order."""
    return sorted(FOLDER.glob("*.jpg"))


def boxes() -> dict[str, list[list[float]]]:
    """file name -> the person boxes (x, y, w, h in pixels) of that photo."""
    return json.loads(BOXES.read_text())


def keypoints() -> dict[str, list[list[list[float]]]]:
    """file name -> the annotators' COCO-17 keypoints of each person in `boxes()`, in the same
    order: [x, y, v] per joint, v = 0 not labelled, 1 labelled but hidden, 2 visible. What the
    shipped model's value test measures against."""
    return json.loads(KEYPOINTS.read_text())
