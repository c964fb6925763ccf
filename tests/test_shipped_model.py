"""The model that ships with hgpose (`lspet-cpu`, docs/models/lspet-cpu.md): it loads by name,
its file is the one registered (sha256), and it finds real people's joints on the example
photos that ship beside it, measured against the COCO annotators' keypoints of those people.

The photos are COCO images (two from train2017, one from val2017); the model saw none of them
(it was trained on LSPET only). Its card measures PCK@0.2 (box) on 1,000 held-out LSPET people
and on the COCO sample's val2017 people; the 12 people here are a small, crowded set (several are
cut by the border or overlap). Measured at fp32: 80 of the 131 labelled body joints (0.611);
three untrained networks of the same shape score 0.04-0.08, the network after 3 of its 14 epochs
0.50. The bar leaves 5 joints of margin: another CPU kind or engine changes the heatmaps by float
rounding only, which can move a joint only where two cells tie."""

from __future__ import annotations

import numpy as np
import pytest

import hgpose
from hgpose.errors import HgposeError
from hgpose import examples
from hgpose.runs import pretrained
from hgpose.skeleton import JOINTS

BODY = [j for j, name in enumerate(JOINTS) if not name.endswith(("eye", "ear", "nose"))]
# Share of the annotated body joints within 0.2 x the person's longer box side (evaluate's
# PCK@0.2 box normaliser).
MIN_PCK = 0.57


def test_the_shipped_model_is_registered_with_its_card_and_fits_the_package_limit():
    entry = pretrained.PRETRAINED["lspet-cpu"]
    path = pretrained.weights_of("lspet-cpu")              # checks the sha256
    assert entry.url is None and path.parent == pretrained.SHIPPED
    assert path.stat().st_size <= 8 * 2 ** 20
    card = pretrained.SHIPPED.parents[1] / "docs" / "models" / entry.card
    assert card.is_file(), f"model card {card} is missing"
    assert entry.sha256 in card.read_text(), "the card names the sha256 of the file it describes"


def test_a_damaged_shipped_file_is_refused_by_its_sha256(tmp_path, monkeypatch):
    entry = pretrained.PRETRAINED["lspet-cpu"]
    damaged = tmp_path / entry.file
    data = bytearray(pretrained.weights_of("lspet-cpu").read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path)
    with pytest.raises(HgposeError, match=r"sha256 .* is not the one registered for model 'lspet-cpu'"):
        pretrained.weights_of("lspet-cpu")


def test_the_shipped_model_places_the_example_peoples_body_joints():
    est = hgpose.load("lspet-cpu", device="cpu", precision="fp32")
    boxes, truth = examples.boxes(), examples.keypoints()
    correct = labelled = 0
    for image in examples.images():
        people = est.predict_people(image, boxes[image.name])
        assert len(people) == len(truth[image.name])
        for keypoints, gt, box in zip(people, truth[image.name], boxes[image.name]):
            gt = np.asarray(gt, float)[BODY]
            seen = gt[:, 2] > 0
            error = np.linalg.norm(keypoints[BODY, :2] - gt[:, :2], axis=1)
            correct += int((error[seen] < 0.2 * max(box[2:])).sum())
            labelled += int(seen.sum())
    assert labelled > 100
    assert correct / labelled >= MIN_PCK, f"PCK@0.2 {correct / labelled:.3f} on the example people"
