"""The example photos that ship with hgpose: present, readable, attributed, with boxes inside."""

from __future__ import annotations

from hgpose import examples
from hgpose.images import read_image


def test_every_example_photo_has_boxes_inside_it_and_an_attribution():
    photos = examples.images()
    boxes = examples.boxes()
    attribution = (examples.FOLDER / "ATTRIBUTION.md").read_text()
    assert len(photos) == 3 and sorted(boxes) == [p.name for p in photos]
    for photo in photos:
        height, width = read_image(photo, exif=True).shape[:2]
        assert photo.name in attribution and "creativecommons.org/licenses/" in attribution
        assert len(boxes[photo.name]) >= 2                      # several people each
        for x, y, w, h in boxes[photo.name]:
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= width + 1 and y + h <= height + 1
