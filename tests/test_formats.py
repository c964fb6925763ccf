"""Dataset formats (hgpose/data/formats/): each format's split rule, the registry, and a
third format added by a test with one class and one registry entry, read end to end by
`prepare` into a store that every later stage can use."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from hgpose.data import formats
from hgpose.data.crop import to_image
from hgpose.data.dataset import CropDataset
from hgpose.data.formats import FORMATS, DatasetFormat, ImageTask, Part, Source
from hgpose.data.formats.coco import load_coco
from hgpose.data.prepare import format_summary, prepare
from hgpose.data.splits import resolve_size
from hgpose.data.store import SPLITS, Store
from hgpose.errors import HgposeError
from hgpose.images import file_size
from hgpose.skeleton import JOINT_INDEX, JOINTS

from builders import make_store


def _as_lists(plan: dict) -> dict:
    return {split: (part, rows.tolist()) for split, (part, rows) in plan.items()}


# --- each format's split rule ---------------------------------------------------------------

def test_coco_split_rule_val_is_val2017_and_test_is_drawn_from_train2017():
    coco = FORMATS["coco"]
    assert coco.split_parts == {"train": "train2017", "val": "val2017", "test": "train2017"}
    # the values the seeded draw gave before formats had modules of their own
    assert _as_lists(coco.plan({"train2017": 10, "val2017": 4}, 3, None, 0, "coco")) == {
        "train": ("train2017", [0, 1, 2, 3, 4, 7, 8]),
        "val": ("val2017", [0, 1, 2, 3]),
        "test": ("train2017", [5, 6, 9]),
    }
    # --val-size does not apply: val is all of val2017 whatever is asked
    assert _as_lists(coco.plan({"train2017": 10, "val2017": 4}, 0.2, 5, 1, "coco")) == {
        "train": ("train2017", [0, 1, 2, 3, 6, 7, 8, 9]),
        "val": ("val2017", [0, 1, 2, 3]),
        "test": ("train2017", [4, 5]),
    }
    assert coco.default_val_size is None and coco.default_test_size == 5_064


def test_lsp_split_rule_draws_val_and_test_from_its_one_part():
    lsp = FORMATS["lsp"]
    assert lsp.split_parts == {"train": "all", "val": "all", "test": "all"}
    assert _as_lists(lsp.plan({"all": 10}, 2, 3, 0, "lspet")) == {
        "train": ("all", [0, 1, 5, 8, 9]),
        "val": ("all", [2, 3, 7]),
        "test": ("all", [4, 6]),
    }
    assert _as_lists(lsp.plan({"all": 10}, lsp.default_test_size, lsp.default_val_size, 0, "lspet")) == {
        "train": ("all", [0, 1, 2, 3, 5, 7, 8, 9]),
        "val": ("all", [6]),
        "test": ("all", [4]),
    }
    with pytest.raises(HgposeError, match="ask for 6 \\+ 5 of the 10 crops of lspet; give smaller sizes"):
        lsp.plan({"all": 10}, 5, 6, 0, "lspet")


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_plans_each_split_from_the_part_its_rule_names(name):
    fmt = FORMATS[name]
    assert set(fmt.split_parts) == set(SPLITS) and set(fmt.split_parts.values()) <= set(fmt.parts)
    plan = fmt.plan({part: 20 for part in fmt.parts}, 0.2, 0.2, 0, name)
    assert {split: part for split, (part, _) in plan.items()} == fmt.split_parts
    for part in fmt.parts:  # every crop of a part lands in exactly one split
        rows = np.concatenate([r for p, r in plan.values() if p == part])
        assert sorted(rows.tolist()) == list(range(20))


def test_val_size_for_sources_with_their_own_val_split_is_one_line(coco_sample, tmp_path):
    with pytest.raises(HgposeError) as error:
        prepare(coco_sample, tmp_path / "out", val_size=5, workers=1, progress=False)
    message = str(error.value)
    assert message.startswith("--val-size applies to sources whose val split is drawn (lsp)")
    assert "coco-sample: val2017" in message and message.endswith("drop --val-size")
    assert not (tmp_path / "out").exists()


# --- a third format, added by a test ---------------------------------------------------------

class CsvFormat(DatasetFormat):
    """A toy format: people.csv (one person per row: the image's file name, then x and y of
    each of its joints, empty where not labelled) and images/. Six body joints; no person
    boxes; val = the first rows, test = the last rows, train = those between."""

    name = "csv"
    folder = "a CSV folder"
    layout = "people.csv + images/"
    parts = ("rows",)
    joints = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee")
    split_parts = {"train": "rows", "val": "rows", "test": "rows"}
    default_test_size = 2
    default_val_size = 2
    rule = "val = the first rows, test = the last rows"

    def looks_like(self, path: Path) -> bool:
        return (path / "people.csv").is_file()

    def read(self, name: str, path: Path) -> Source:
        tasks = []
        with open(path / "people.csv", newline="") as f:
            for n, row in enumerate(csv.DictReader(f), start=1):
                keypoints = np.zeros((17, 3))
                for joint in self.joints:
                    if row[f"{joint}_x"]:
                        keypoints[JOINT_INDEX[joint]] = (float(row[f"{joint}_x"]), float(row[f"{joint}_y"]), 2)
                image = path / "images" / row["image"]
                width, height = file_size(image)
                tasks.append(ImageTask(str(image), width, height, n, [n], [[0.0, 0.0, 0.0, 0.0]], [keypoints]))
        counts = {"people": len(tasks), "crowd": 0, "no_keypoints": 0}
        return Source(name, self.name, path, self.joints, [Part("rows", tasks, counts)], files={},
                      derived_annotations=_coco_annotations(tasks))

    def plan(self, sizes, test_size, val_size, seed, name) -> dict:
        n = sizes["rows"]
        n_val = resolve_size(val_size, n, "--val-size", f"crops of {name}")
        n_test = resolve_size(test_size, n, "--test-size", f"crops of {name}")
        rows = {"train": np.arange(n_val, n - n_test), "val": np.arange(n_val),
                "test": np.arange(n - n_test, n)}
        return {split: (self.split_parts[split], rows[split]) for split in rows}

    def image_folder(self, root: Path, split: str) -> Path:
        return root / "images"


def _coco_annotations(tasks: list[ImageTask]) -> dict:
    """The toy format's people as a COCO keypoints file (boxes: the keypoints' extent)."""
    images, annotations = [], []
    for task in tasks:
        kps = task.keypoints[0]
        labelled = kps[kps[:, 2] > 0, :2]
        (x0, y0), (x1, y1) = labelled.min(0), labelled.max(0)
        images.append({"id": task.image_id, "file_name": Path(task.path).name,
                       "width": task.width, "height": task.height})
        annotations.append({"id": task.ann_ids[0], "image_id": task.image_id, "category_id": 1,
                            "iscrowd": 0, "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "area": (x1 - x0) * (y1 - y0), "num_keypoints": len(labelled),
                            "keypoints": kps.ravel().tolist()})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": list(JOINTS), "skeleton": []}]}


def write_csv_folder(root: Path, n: int, seed: int = 0) -> tuple[Path, np.ndarray]:
    """n images of 160 x 120 with one person each; returns the folder and the keypoints
    [n, 6, 2] written (the last joint of every third person left unlabelled)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    points = rng.uniform([30, 20], [130, 100], (n, len(CsvFormat.joints), 2)).round(1)
    with open(root / "people.csv", "w", newline="") as f:
        columns = [f"{j}_{axis}" for j in CsvFormat.joints for axis in "xy"]
        writer = csv.DictWriter(f, ["image", *columns])
        writer.writeheader()
        for k in range(n):
            name = f"person{k:02d}.png"
            cv2.imwrite(str(root / "images" / name), rng.integers(0, 255, (120, 160, 3), np.uint8))
            values = [str(v) for v in points[k].ravel()]
            if k % 3 == 0:
                values[-2:] = ["", ""]
            writer.writerow(dict(zip(["image", *columns], [name, *values])))
    return root, points


def test_a_format_added_with_one_class_and_one_registry_entry_is_prepared_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setitem(FORMATS, "csv", CsvFormat())
    folder, points = write_csv_folder(tmp_path / "toy", 8)
    assert formats.detect(folder) == "csv"   # found by its layout: no prefix needed

    manifest = prepare(folder, tmp_path / "store", workers=1, progress=False)

    source = manifest["sources"][0]
    assert (source["format"], source["joints"]) == ("csv", list(CsvFormat.joints))
    assert manifest["splits"] == {"train": 4, "val": 2, "test": 2}
    store = Store.open(tmp_path / "store")
    ids = {split: store.split(split).ids[:, 0].tolist() for split in SPLITS}
    assert ids == {"train": [3, 4, 5, 6], "val": [1, 2], "test": [7, 8]}   # the format's own rule
    # every labelled joint maps back to where the CSV put it; the face is absent, not unlabelled
    train = store.split("train")
    present = train.joints_present(slice(None))
    assert (present == np.isin(np.arange(17), [JOINT_INDEX[j] for j in CsvFormat.joints])).all()
    for row, (image_id, _) in enumerate(train.ids):
        kps = np.array(train.keypoints[row])
        labelled = [JOINT_INDEX[j] for j in CsvFormat.joints][: 5 if (image_id - 1) % 3 == 0 else 6]
        np.testing.assert_allclose(to_image(kps[labelled, :2], train.boxes[row]),
                                   points[image_id - 1, : len(labelled)], atol=0.01)
        assert (kps[[j for j in range(17) if j not in labelled]] == 0).all()
    assert store.trained_joints == [j for j in JOINTS if j in CsvFormat.joints]

    # the derived annotation file and the original images, where evaluate looks for them
    files = store.annotation_files("test")
    assert files == {0: (tmp_path / "store" / "annotations" / "toy.json").resolve()}
    assert len(load_coco(files[0]).anns) == 8
    assert store.image_folders("test") == {0: folder / "images"}
    assert "(val = the first rows, test = the last rows)" in format_summary(manifest)


# --- the store reads its manifest once --------------------------------------------------------

def test_a_store_reads_its_manifest_once_for_everything_a_command_asks(tmp_path, manifest_reads):
    root = make_store(tmp_path / "store", 6, 4, 2)
    store = Store.open(root)
    # what evaluate, train and explain ask of a store, in turn
    store.split("test")
    store.sources, store.mean_rgb, store.joints_present, store.trained_joints
    store.old_pixel_convention, store.manifest_sha256
    dataset = CropDataset(store, "train")
    # a DataLoader worker receives the store by pickle: the path and manifest, no memory map
    copy = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset)) < 10_000
    image, keypoints, index = copy[3]
    assert image.shape == (256, 256, 3) and index == 3
    assert manifest_reads == [str(root / "manifest.json")]


def test_a_stores_manifest_digest_is_the_files_sha256(tmp_path):
    from hgpose.io import file_sha256

    root = make_store(tmp_path / "store")
    assert Store.open(root).manifest_sha256 == file_sha256(root / "manifest.json")
