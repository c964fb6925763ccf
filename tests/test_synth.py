"""`hgpose synth`: COCO validity, annotation truth (parts, depth order, boxes), factors,
determinism, posture families, the CLI, and that `prepare` consumes the output."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from hgpose.cli import main as cli_main
from hgpose.skeleton import BONES, JOINT_INDEX, JOINTS
from hgpose.synth import FACTORS, JOINT_PARTS, LABELS_PER_PERSON, OBJECT_LABEL, POSTURES, generate, render_example
from hgpose.synth import body as B
from hgpose.synth import render as R
from hgpose.synth.dataset import SPLITS
from hgpose.synth.draws import Draws
from hgpose.synth.scene import sample_figure

SEED = 3
SIZE = (320, 240)          # small frames keep the tests fast; the code path is the same
N_TRAIN, N_VAL = 48, 16    # >= 64 images, so that workers=2 really uses two processes


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "coco"
    generate(out, train_images=N_TRAIN, val_images=N_VAL, seed=SEED, size=SIZE, workers=2, progress=False)
    return out


def annotations(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"person_keypoints_{split}.json").read_text())


# ----------------------------------------------------------------------------- COCO validity
def test_pycocotools_loads_a_valid_coco_keypoints_file(synth_dir):
    for split, n in zip(SPLITS, (N_TRAIN, N_VAL)):
        coco = load_coco(synth_dir / "annotations" / f"person_keypoints_{split}.json")
        assert len(coco.imgs) == n
        cat = coco.loadCats(1)[0]
        assert cat["name"] == "person" and cat["keypoints"] == list(JOINTS)
        assert cat["skeleton"] == [[a + 1, b + 1] for a, b in BONES]
        data = coco.dataset
        assert {"info", "licenses", "images", "annotations", "categories"} <= set(data)
        ids = [a["id"] for a in data["annotations"]]
        assert len(ids) == len(set(ids)) > n      # some images hold several people
        for img in data["images"]:
            path = synth_dir / split / img["file_name"]
            assert path.is_file()
            assert cv2.imread(str(path)).shape == (img["height"], img["width"], 3) == (SIZE[1], SIZE[0], 3)
        for a in data["annotations"]:
            assert a["category_id"] == 1 and a["iscrowd"] == 0 and a["image_id"] in coco.imgs
            assert len(a["keypoints"]) == 51 and len(a["bbox"]) == 4 and a["area"] > 0
            kps = np.asarray(a["keypoints"], float).reshape(17, 3)
            assert set(kps[:, 2]) <= {0, 1, 2}
            assert a["num_keypoints"] == int((kps[:, 2] > 0).sum())
            assert (kps[kps[:, 2] == 0] == 0).all()                  # unlabelled: (0, 0, 0)
            lab = kps[kps[:, 2] > 0]
            assert ((lab[:, 0] >= 0) & (lab[:, 0] < SIZE[0]) & (lab[:, 1] >= 0) & (lab[:, 1] < SIZE[1])).all()
        # the image ids of train and val do not collide (prepare keeps (image_id, ann_id))
    assert not set(i["id"] for i in annotations(synth_dir, "train2017")["images"]) & set(
        i["id"] for i in annotations(synth_dir, "val2017")["images"])


# ----------------------------------------------------------------------------- truth of the annotation
def _scenes(root: Path, split: str, count: int):
    """Re-render the written images (same seeds) next to their JSON annotations."""
    data = annotations(root, split)
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for index, img in enumerate(data["images"][:count]):
        scene = render_example(SEED, split, index, SIZE)
        yield img, scene, by_image.get(img["id"], [])


def _figure_alone(fig, shape) -> np.ndarray:
    """Where a figure covers the frame when drawn alone (no other people or objects)."""
    img = np.zeros((*shape, 3), np.uint8)
    mask = np.zeros(shape, np.uint8)
    R.draw_figure(img, mask, fig, 0, (1.0, 0.0))
    person = (mask > 0) & (mask <= LABELS_PER_PERSON)
    return person | (mask == OBJECT_LABEL)                  # a sitter's stool hides what is behind it


def test_annotation_matches_the_rendered_scene(synth_dir):
    """The JSON is what the (re-rendered) scene says: same people, keypoints, boxes."""
    for img, scene, anns in _scenes(synth_dir, "train2017", 12):
        assert scene.image.shape[:2] == (img["height"], img["width"])
        by_k = {a["id"] - img["id"] * 10: a for a in anns}
        assert set(by_k) == {k for k, p in enumerate(scene.people) if p is not None}
        for k, a in by_k.items():
            p = scene.people[k]
            np.testing.assert_allclose(np.asarray(a["keypoints"], float).reshape(17, 3)[:, :2],
                                       np.where(p.keypoints[:, 2:] > 0, p.keypoints[:, :2], 0))
            assert a["bbox"] == [float(v) for v in p.bbox]


def test_every_labelled_keypoint_lies_on_its_own_body_part(synth_dir):
    """Drawn alone, one of the joint's own parts covers the keypoint's pixel (for all
    labelled joints, visible or not); for visible ones it is also on top in the final mask."""
    checked = 0
    for img, scene, anns in _scenes(synth_dir, "train2017", 16):
        shape = scene.mask.shape
        for a in anns:
            k = a["id"] - img["id"] * 10
            fig = scene.figures[k]
            kps = np.asarray(a["keypoints"], float).reshape(17, 3)
            alone = {part: R.part_mask(fig, part, shape) for part in range(B.NUM_PARTS)}
            for j in np.flatnonzero(kps[:, 2] > 0):
                # a pixel's centre is its index: the keypoint's pixel is the nearest index
                col, row = int(np.floor(kps[j, 0] + 0.5)), int(np.floor(kps[j, 1] + 0.5))
                assert any(alone[part][row, col] for part in JOINT_PARTS[j]), (a["id"], JOINTS[j])
                if kps[j, 2] == 2:
                    label = int(scene.mask[row, col]) - 1 - LABELS_PER_PERSON * k
                    assert label in JOINT_PARTS[j], (a["id"], JOINTS[j], label)
                checked += 1
    assert checked > 300


def test_occlusion_flags_follow_the_depth_order(synth_dir):
    """v is recomputed from the draw order alone: a labelled joint is occluded (v=1) iff a
    part of its own body drawn after its own part, a person drawn later, or an object
    covers its pixel, or it is a face point on the far side of the head."""
    n_occluded = {"own": 0, "person": 0, "object": 0, "face": 0}
    for img, scene, anns in _scenes(synth_dir, "train2017", 16):
        shape = scene.mask.shape
        later_people = []                       # coverage of people drawn after person k
        alone = [_figure_alone(f, shape) for f in scene.figures]
        for a in sorted(anns, key=lambda a: a["id"]):
            k = a["id"] - img["id"] * 10
            fig = scene.figures[k]
            later_people = np.zeros(shape, bool)
            for later in alone[k + 1:]:
                later_people |= later
            order = [part for _, part, _, _ in fig.parts]       # far to near
            kps = np.asarray(a["keypoints"], float).reshape(17, 3)
            for j in np.flatnonzero(kps[:, 2] > 0):
                # a pixel's centre is its index: the keypoint's pixel is the nearest index
                col, row = int(np.floor(kps[j, 0] + 0.5)), int(np.floor(kps[j, 1] + 0.5))
                own = [p for p in JOINT_PARTS[j] if R.part_mask(fig, p, shape)[row, col]]
                last_own = max(order.index(p) for p in own)
                by_own = any(R.part_mask(fig, p, shape)[row, col] for p in order[last_own + 1:])
                by_person = bool(later_people[row, col])
                by_object = int(scene.mask[row, col]) == OBJECT_LABEL
                facing_away = not fig.body.face_visible[j]
                expected = 1 if (by_own or by_person or by_object or facing_away) else 2
                assert kps[j, 2] == expected, (a["id"], JOINTS[j], by_own, by_person, by_object, facing_away)
                if expected == 1:
                    n_occluded["face" if facing_away else "own" if by_own else "person" if by_person else "object"] += 1
    # the data set exercises each cause of occlusion
    assert all(v > 0 for v in n_occluded.values()), n_occluded


def test_bbox_and_area_are_tight_around_the_drawn_person(synth_dir):
    for img, scene, anns in _scenes(synth_dir, "val2017", 16):
        for a in anns:
            k = a["id"] - img["id"] * 10
            lo = 1 + LABELS_PER_PERSON * k
            person = (scene.mask >= lo) & (scene.mask < lo + LABELS_PER_PERSON)
            rows, cols = np.flatnonzero(person.any(1)), np.flatnonzero(person.any(0))
            x, y, w, h = a["bbox"]
            assert (x, y, x + w - 1, y + h - 1) == (cols[0], rows[0], cols[-1], rows[-1])
            assert a["area"] == person.sum()
            # and the box holds the drawn person's pixels in the image: they differ from
            # a re-drawn background without people
            assert 0 <= x and 0 <= y and x + w <= SIZE[0] and y + h <= SIZE[1]


def test_figure_masks_match_the_image():
    """The label mask is drawn with the same shapes as the picture: the people's pixels
    differ from the same scene's background drawn without them."""
    for index in range(4):
        scene = render_example(SEED, "train2017", index, SIZE)
        bg, _ = R.draw_background(Draws(np.random.default_rng([SEED, 0, index])), *SIZE)
        person = (scene.mask > 0) & (scene.mask != OBJECT_LABEL)
        inner = cv2.erode(person.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        outside = cv2.dilate(scene.mask.astype(bool).astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
        diff = np.abs(scene.image.astype(int) - bg.astype(int)).max(-1)
        assert np.median(diff[outside]) < 25          # noise/blur/JPEG only
        if inner.sum() > 200:
            assert np.mean(diff[inner] > 25) > 0.6     # the figures are drawn where the mask says


# ----------------------------------------------------------------------------- factors
def test_factors_present_and_within_declared_ranges(synth_dir):
    seen = {"posture": set(), "facing": set(), "people": set()}
    for split in SPLITS:
        data = annotations(synth_dir, split)
        images = {i["id"]: i for i in data["images"]}
        declared = data["info"]["hgpose_synth"]["factors"]
        assert set(declared) == set(FACTORS)
        for a in data["annotations"]:
            f = a["synth"]
            assert set(f) == set(FACTORS), set(f) ^ set(FACTORS)
            for name, spec in FACTORS.items():
                if isinstance(spec[0], str):
                    assert f[name] in spec, (name, f[name])
                else:
                    assert spec[0] <= f[name] <= spec[1], (name, f[name], spec)
            kps = np.asarray(a["keypoints"]).reshape(17, 3)
            assert f["occluded_joints"] == int((kps[:, 2] == 1).sum())
            assert f["outside_joints"] == int((kps[:, 2] == 0).sum())
            assert f["facing"] == B.facing_of(f["yaw_deg"])
            assert f["people"] == images[a["image_id"]]["synth"]["people"]
            assert f["depth_rank"] == a["id"] % 10 < f["people"]
            for key in seen:
                seen[key].add(f[key])
    assert seen["posture"] == set(POSTURES)
    assert seen["facing"] == set(B.FACINGS)
    assert seen["people"] == {1, 2, 3}


# ----------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_files_whatever_the_workers(synth_dir, tmp_path):
    again = tmp_path / "again"
    generate(again, train_images=N_TRAIN, val_images=N_VAL, seed=SEED, size=SIZE, workers=1, progress=False)
    for split in SPLITS:
        name = f"annotations/person_keypoints_{split}.json"
        assert (again / name).read_bytes() == (synth_dir / name).read_bytes()
        for jpg in sorted((synth_dir / split).glob("*.jpg")):
            assert (again / split / jpg.name).read_bytes() == jpg.read_bytes(), jpg.name
    other = tmp_path / "other"
    generate(other, train_images=2, val_images=1, seed=SEED + 1, size=SIZE, workers=1, progress=False)
    a = annotations(other, "train2017")["annotations"]
    b = [x for x in annotations(synth_dir, "train2017")["annotations"] if x["image_id"] <= 2]
    assert [x["keypoints"] for x in a] != [x["keypoints"] for x in b]


def test_rerun_into_the_same_folder_replaces_the_old_output(tmp_path):
    out = tmp_path / "coco"
    generate(out, train_images=5, val_images=2, seed=0, size=SIZE, workers=1, progress=False)
    generate(out, train_images=3, val_images=1, seed=0, size=SIZE, workers=1, progress=False)
    assert len(list((out / "train2017").glob("*.jpg"))) == 3          # stale images removed
    assert len(annotations(out, "train2017")["images"]) == 3
    assert json.loads((out / "synth.json").read_text())["splits"]["train2017"]["images"] == 3


# ----------------------------------------------------------------------------- postures and views
def _figure(posture: str, yaw: float, seed: int) -> R.Figure:
    d = Draws(np.random.default_rng(seed))
    pose = B.sample_pose(d, posture)
    return R.place_figure(d, 400, 400, pose, B.Build(), R.sample_palette(d), yaw, 0.8, 0.0)


@pytest.mark.parametrize("seed", range(8))
def test_posture_families_look_like_their_names(seed):
    J = JOINT_INDEX

    def body(posture):   # 3-D joints of a front-facing figure: y down, in standing heights
        return B.pose_body(B.sample_pose(Draws(np.random.default_rng(seed)), posture), B.Build(), 0.0).joints

    j = body("standing")
    assert j[J["left_ankle"], 1] - j[J["left_hip"], 1] > 0.42            # legs straight down
    assert j[J["nose"], 1] < j[J["left_shoulder"], 1] < j[J["left_hip"], 1]
    j = body("sitting")
    for side in ("left", "right"):
        thigh = j[J[f"{side}_knee"]] - j[J[f"{side}_hip"]]
        assert abs(thigh[1]) < 0.5 * np.linalg.norm(thigh)                # thighs near horizontal
        assert j[J[f"{side}_ankle"], 1] > j[J[f"{side}_knee"], 1]          # shins hang down
    j = body("arms_raised")
    assert min(j[J["left_wrist"], 1], j[J["right_wrist"], 1]) < j[J["left_shoulder"], 1]  # a hand up
    j = body("bending")
    mid_sh = (j[J["left_shoulder"]] + j[J["right_shoulder"]]) / 2
    mid_hip = (j[J["left_hip"]] + j[J["right_hip"]]) / 2
    assert mid_sh[2] - mid_hip[2] > 0.15                                  # upper body forward
    j = body("walking")
    assert abs(j[J["left_ankle"], 2] - j[J["right_ankle"], 2]) > 0.02 or seed % 4 == 0   # a stride (phase ~0 aside)


def test_facing_gives_the_expected_self_occlusion():
    """Front: face and both shoulders visible. Back: nose/eyes hidden (v=1), ears seen.
    Facing right (left side away): the left hip is behind the near half of the torso."""
    J = JOINT_INDEX
    for seed in range(3):
        img = np.zeros((400, 400, 3), np.uint8)
        for yaw, check in ((0.0, "front"), (180.0, "back"), (90.0, "right")):
            fig = _figure("standing", yaw, seed)
            mask = np.zeros((400, 400), np.uint8)
            R.draw_figure(img, mask, fig, 0, (1.0, 0.0))
            from hgpose.synth.scene import annotate

            v = annotate(mask, fig, 0, 1, 1).keypoints[:, 2]
            if check == "front":
                assert (v[[J["nose"], J["left_eye"], J["right_eye"]]] == 2).all()
                assert (v[[J["left_shoulder"], J["right_shoulder"]]] == 2).all()
            elif check == "back":
                assert (v[[J["nose"], J["left_eye"], J["right_eye"]]] == 1).all()
                assert (v[[J["left_ear"], J["right_ear"]]] == 2).all()
            else:
                assert v[J["left_hip"]] == 1 and v[J["right_hip"]] == 2
                assert v[J["left_eye"]] == 1 and v[J["right_eye"]] == 2


def test_left_limbs_warm_right_limbs_cool():
    """The colour cue for left/right that the docs promise."""
    for seed in range(20):
        pal = R.sample_palette(Draws(np.random.default_rng(seed)))
        for colour in (*pal.arm["left"], *pal.leg["left"]):
            h = int(cv2.cvtColor(np.uint8([[colour]]), cv2.COLOR_BGR2HSV_FULL)[0, 0, 0]) * 360 / 256
            assert h <= 62 or h >= 330, h
        for colour in (*pal.arm["right"], *pal.leg["right"]):
            h = int(cv2.cvtColor(np.uint8([[colour]]), cv2.COLOR_BGR2HSV_FULL)[0, 0, 0]) * 360 / 256
            assert 155 <= h <= 275, h


def test_limbs_stay_visible_at_the_smallest_scale():
    d = Draws(np.random.default_rng(0))
    fig = sample_figure(d, 640, 480, 3)
    fig.px = R.SCALE_RANGE[0] * 480
    for _, _, kind, geo in R.plan_parts(fig):
        if kind == "limb":
            assert min(geo[4], geo[5]) >= R.MIN_RADIUS_PX


def test_render_person_returns_a_mask():
    from hgpose.synth import PARTS, render_person

    image, ann, mask, fig = render_person(5, (256, 256), posture="walking", return_mask=True)
    assert image.shape == (256, 256, 3) and mask.shape == (256, 256)
    assert set(np.unique(mask)) <= set(range(0, len(PARTS) + 1)) | {OBJECT_LABEL}
    assert ann.factors["posture"] == "walking"
    assert len(fig.parts) == len(PARTS)


# ----------------------------------------------------------------------------- CLI and prepare
def test_cli_writes_a_dataset_and_reports_user_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["synth", str(out), "--train-images", "3", "--val-images", "1", "--size", "160", "120",
                     "--seed", "1", "--workers", "1"]) == 0
    assert "hgpose prepare" in capsys.readouterr().out
    assert len(list((out / "train2017").glob("*.jpg"))) == 3
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.pdf").write_text("x")
    assert cli_main(["synth", str(tmp_path / "busy")]) == 2
    assert "did not write" in capsys.readouterr().err
    assert cli_main(["synth", str(tmp_path / "tiny"), "--size", "10", "10"]) == 2
    assert cli_main(["synth", str(tmp_path / "none"), "--train-images", "0", "--val-images", "0"]) == 2
    with pytest.raises(SystemExit):
        cli_main(["synth", "--help"])
    assert "--train-images" in capsys.readouterr().out


def test_prepare_consumes_the_output_and_centres_each_person(synth_dir, tmp_path):
    from hgpose.data.prepare import prepare
    from hgpose.data.store import Store

    store = tmp_path / "store"
    manifest = prepare(synth_dir, store, test_size=0.2, seed=0, workers=1, progress=False)
    people = {split: [a for a in annotations(synth_dir, split)["annotations"] if a["num_keypoints"] > 0]
              for split in SPLITS}
    assert manifest["splits"]["train"] + manifest["splits"]["test"] == len(people["train2017"])
    assert manifest["splits"]["val"] == len(people["val2017"])
    by_id = {a["id"]: a for split in SPLITS for a in people[split]}
    centred = 0
    for split in ("train", "val", "test"):
        s = Store.open(store).split(split)
        assert len(s) > 0
        for i in range(len(s)):
            ann = by_id[int(s.ids[i, 1])]
            assert int(s.ids[i, 0]) == ann["image_id"]
            kps = np.asarray(s.keypoints[i])
            ref = np.asarray(ann["keypoints"], float).reshape(17, 3)
            assert (kps[:, 2] == ref[:, 2]).all()
            x0, y0, side = (float(v) for v in s.boxes[i])
            lab = kps[:, 2] > 0
            np.testing.assert_allclose(kps[lab, :2], (ref[lab, :2] - (x0, y0) + 0.5) * 256 / side - 0.5, atol=1e-3)
            assert s.images[i].std() > 5                                   # not a blank crop
            mid = (kps[lab, :2].min(0) + kps[lab, :2].max(0)) / 2
            for axis, (start, limit) in enumerate(((x0, SIZE[0]), (y0, SIZE[1]))):
                pushed = start <= 0 or start + side >= limit                # moved back inside the image
                if not pushed:
                    assert abs(mid[axis] - 128) < 15, (ann["id"], axis, mid)
                    centred += 1
    assert centred > 40


def test_gallery_picture(coco_sample, tmp_path):
    from hgpose.synth.gallery import make_gallery

    path = make_gallery(tmp_path / "grid.png", coco_root=coco_sample, width=512)
    img = cv2.imread(str(path))
    assert img.shape[1] == 512 and img.shape[0] > 3 * 64         # synthetic frames, crops, real crops
    assert path.stat().st_size < 500_000
    from hgpose.errors import HgposeError

    with pytest.raises(HgposeError):
        make_gallery(tmp_path / "x.png", coco_root=tmp_path / "no-coco")
