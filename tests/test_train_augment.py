"""On-device augmentation: the keypoints follow the image through every warp."""

import numpy as np
import pytest
import torch

from hgpose.skeleton import FLIP_INDEX, JOINT_INDEX
from hgpose.train import augment as aug
from hgpose.config import AugmentConfig
from hgpose.train.data import prepare_batch

SIZE = 256


def dot_image(points, size=SIZE):
    """[len(points), size, size] float images, one 5x5 dot each at integer (x, y)."""
    img = torch.zeros(len(points), size, size)
    for i, (x, y) in enumerate(points):
        img[i, y - 2:y + 3, x - 2:x + 3] = 1.0
    return img


def centroid(channel: torch.Tensor) -> torch.Tensor:
    """(x, y) centre of mass of a [H, W] image."""
    h, w = channel.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    total = channel.sum()
    return torch.stack(((channel * xs).sum() / total, (channel * ys).sum() / total))


def params(angle, scale, flip):
    b = len(angle)
    one = torch.ones(b)
    return aug.AugmentParams(torch.tensor(angle, dtype=torch.float32),
                             torch.tensor(scale, dtype=torch.float32),
                             torch.tensor(flip), one, one, one)


@pytest.mark.parametrize("angle, scale, flip", [
    (0.0, 1.0, False), (30.0, 1.0, False), (-30.0, 0.8, False), (17.0, 1.25, True), (0.0, 1.0, True),
])
def test_dot_lands_where_the_keypoint_goes(angle, scale, flip):
    rng = np.random.default_rng(0)
    points = rng.integers(70, 186, size=(2, 2))  # two samples, one dot each
    images = dot_image(points)[:, None]          # [2,1,H,W]
    kps = torch.zeros(2, 17, 3)
    joint = JOINT_INDEX["left_wrist"]
    kps[:, joint, :2] = torch.from_numpy(points).float()
    kps[:, joint, 2] = 2
    p = params([angle] * 2, [scale] * 2, [flip] * 2)
    m = aug.matrices(p)
    warped = aug.warp_images(images, m)
    out = aug.warp_keypoints(kps, m, p.flip)
    # A flipped left wrist is the new right wrist.
    where = FLIP_INDEX[joint] if flip else joint
    for i in range(2):
        assert out[i, where, 2] == 2
        torch.testing.assert_close(centroid(warped[i, 0]), out[i, where, :2], atol=0.3, rtol=0)


def test_flip_maps_x_to_255_minus_x():
    p = params([0.0], [1.0], [True])
    kps = torch.tensor([[[10.0, 20.0, 2.0]] * 17])
    out = aug.warp_keypoints(kps, aug.matrices(p), p.flip)
    assert out[0, 0, :2].tolist() == [245.0, 20.0]
    img = torch.arange(SIZE, dtype=torch.float32).expand(1, 1, SIZE, SIZE)
    flipped = aug.warp_images(img, aug.matrices(p))
    torch.testing.assert_close(flipped, img.flip(-1))


def test_warps_turn_about_the_crop_centre():
    """127.5 is the centre of pixels 0..255 (pixel i's centre is coordinate i): every
    rotation, scale and flip keeps it where it is, in the keypoints and in the image."""
    p = params([30.0, -17.0, 0.0], [1.25, 0.8, 1.0], [False, True, True])
    kps = torch.zeros(3, 17, 3)
    kps[..., :2], kps[..., 2] = 127.5, 2
    out = aug.warp_keypoints(kps, aug.matrices(p), p.flip)
    torch.testing.assert_close(out[..., :2], kps[..., :2])
    centre = torch.zeros(3, 1, SIZE, SIZE)
    centre[..., 126:130, 126:130] = 1.0           # a 4x4 square centred on (127.5, 127.5)
    warped = aug.warp_images(centre, aug.matrices(p))
    for i in range(3):
        torch.testing.assert_close(centroid(warped[i, 0]), torch.tensor([127.5, 127.5]),
                                   atol=1e-4, rtol=0)


def test_inside_the_crop_is_its_pixels_extent():
    """The crop spans [-0.5, 255.5): joints on its outer edge are inside, past it outside."""
    p = params([0.0], [1.0], [False])
    kps = torch.zeros(1, 17, 3)
    kps[0, :, :2] = 100.0
    kps[0, :, 2] = 2
    kps[0, :6, 0] = torch.tensor([-0.5, -0.51, 255.49, 255.5, 0.0, 255.0])
    out = aug.warp_keypoints(kps, aug.matrices(p), p.flip)
    assert out[0, :6, 2].tolist() == [2, 0, 2, 0, 2, 2]


def test_joints_warped_outside_become_unlabelled():
    p = params([0.0], [1.25], [False])
    kps = torch.zeros(1, 17, 3)
    kps[0, :, 2] = 1
    kps[0, 0, :2] = torch.tensor([5.0, 128.0])     # near the border: zoomed out of the crop
    kps[0, 1, :2] = torch.tensor([128.0, 128.0])   # centre stays
    out = aug.warp_keypoints(kps, aug.matrices(p), p.flip)
    assert out[0, 0, 2] == 0 and out[0, 1, 2] == 1


def test_prepare_batch_keeps_keypoints_on_the_image_with_random_draws():
    """Full path: colour jitter + random warp; one dot per joint in its own colour channel."""
    rng = np.random.default_rng(1)
    b = 4
    points = rng.integers(80, 176, size=(b, 3, 2))   # 3 joints per sample: nose, l/r wrist
    joints = [JOINT_INDEX["nose"], JOINT_INDEX["left_wrist"], JOINT_INDEX["right_wrist"]]
    images = torch.zeros(b, SIZE, SIZE, 3, dtype=torch.uint8)
    kps = torch.zeros(b, 17, 3)
    for i in range(b):
        for c, j in enumerate(joints):
            x, y = points[i, c]
            images[i, y - 2:y + 3, x - 2:x + 3, c] = 255
            kps[i, j] = torch.tensor([x, y, 2.0])
    config = AugmentConfig(enabled=True, colour=0.0)  # colour 0: dots stay pure
    gen = torch.Generator().manual_seed(3)
    x, out = prepare_batch(images, kps, torch.device("cpu"), torch.zeros(3), augment=config,
                           generator=gen)
    flips = aug.draw(b, config, torch.Generator().manual_seed(3)).flip
    assert flips.any() and not flips.all()  # this seed exercises both cases
    for i in range(b):
        for c, j in enumerate(joints):
            where = FLIP_INDEX[j] if flips[i] else j
            torch.testing.assert_close(centroid(x[i, c]), out[i, where, :2], atol=0.3, rtol=0)


def test_same_generator_seed_gives_same_batch():
    images = torch.randint(0, 256, (2, SIZE, SIZE, 3), dtype=torch.uint8)
    kps = torch.rand(2, 17, 3) * 255
    kps[..., 2] = 2
    config = AugmentConfig(enabled=True)
    mean = torch.tensor([0.4, 0.37, 0.35])
    a = prepare_batch(images, kps, torch.device("cpu"), mean, augment=config,
                      generator=torch.Generator().manual_seed(5))
    b = prepare_batch(images, kps, torch.device("cpu"), mean, augment=config,
                      generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_colour_jitter_stays_in_range():
    x = torch.rand(3, 3, 8, 8)
    p = aug.AugmentParams(torch.zeros(3), torch.ones(3), torch.zeros(3, dtype=torch.bool),
                          torch.tensor([0.8, 1.2, 1.0]), torch.tensor([1.2, 0.8, 1.0]),
                          torch.tensor([0.8, 1.2, 1.0]))
    y = aug.jitter_colour(x.clone(), p)
    assert y.min() >= 0 and y.max() <= 1
    torch.testing.assert_close(y[2], x[2])  # factors of 1 change nothing


def half_body_params(b, half, upper):
    p = params([0.0] * b, [1.0] * b, [False] * b)
    p.half_body, p.upper = torch.tensor(half), torch.tensor(upper)
    return p


def standing_person(b=1):
    """[b, 17, 3]: a person 200 px tall, face at the top, ankles at the bottom, all labelled."""
    ys = torch.tensor([30, 28, 28, 30, 30, 60, 60, 95, 95, 125, 125, 130, 130, 180, 180, 228, 228.])
    xs = torch.tensor([128, 124, 132, 118, 138, 100, 156, 90, 166, 86, 170, 112, 144, 110, 146, 108, 148.])
    kps = torch.stack((xs, ys, torch.full((17,), 2.0)), -1)
    return kps.expand(b, 17, 3).clone()


def test_half_body_view_fills_the_crop_with_one_half_and_drops_the_other():
    kps = standing_person(3)
    kps[2, 5:, 2] = 0                         # third: 5 labelled joints, too few for a half view
    p = half_body_params(3, [True, True, True], [True, False, True])
    centre, zoom = aug.half_body_views(kps, p)
    m = aug.matrices(p) * zoom[:, None, None]
    out = aug.warp_keypoints(kps, m, p.flip, source_centre=centre)
    up, low = slice(0, aug.UPPER_JOINTS), slice(aug.UPPER_JOINTS, 17)
    # Upper body: x 86..170, y 28..125 -> centred, its longer side (97 px) x 1.5 = the crop.
    torch.testing.assert_close(centre[0], torch.tensor([128.0, 76.5]))
    assert zoom[0].item() == pytest.approx(256 / (97 * 1.5))
    xy = out[0, up, :2]
    torch.testing.assert_close((xy.amin(0) + xy.amax(0)) / 2, torch.tensor([127.5, 127.5]))
    assert (xy.amax(0) - xy.amin(0)).amax().item() == pytest.approx(256 / 1.5, abs=1e-3)
    assert (out[0, 13:, 2] == 0).all() and (out[0, up, 2] == 2).all()   # knees, ankles: off the crop
    # Lower body: hips to ankles, 98 px tall -> zoom 256 / 147; the face leaves the crop.
    assert zoom[1].item() == pytest.approx(256 / 147) and (out[1, :5, 2] == 0).all()
    assert (out[1, low, 2] == 2).all()
    # Too few labelled joints: the plain warp about the crop centre.
    assert zoom[2].item() == 1.0 and centre[2].tolist() == [127.5, 127.5]
    torch.testing.assert_close(out[2], kps[2])


def test_half_body_image_follows_its_keypoints():
    kps = standing_person(2)
    images = torch.zeros(2, 1, SIZE, SIZE)
    joint = JOINT_INDEX["left_wrist"]
    x, y = (int(v) for v in kps[0, joint, :2])
    images[:, 0, y - 2:y + 3, x - 2:x + 3] = 1.0
    p = half_body_params(2, [True, True], [True, True])
    p.angle, p.flip = torch.tensor([20.0, -10.0]), torch.tensor([False, True])
    centre, zoom = aug.half_body_views(kps, p)
    m = aug.matrices(p) * zoom[:, None, None]
    warped = aug.warp_images(images, m, centre)
    out = aug.warp_keypoints(kps, m, p.flip, source_centre=centre)
    for i, where in enumerate((joint, FLIP_INDEX[joint])):
        assert out[i, where, 2] == 2
        torch.testing.assert_close(centroid(warped[i, 0]), out[i, where, :2], atol=0.5, rtol=0)


def test_half_body_draws_come_after_the_others():
    """Turning half-body views on leaves every other draw of a seed as it was."""
    plain = aug.draw(16, AugmentConfig(enabled=True), torch.Generator().manual_seed(5))
    half = aug.draw(16, AugmentConfig(enabled=True, half_body=0.5), torch.Generator().manual_seed(5))
    for name in ("angle", "scale", "flip", "brightness", "contrast", "saturation"):
        torch.testing.assert_close(getattr(plain, name), getattr(half, name))
    assert not plain.half_body.any() and half.half_body.any() and not half.half_body.all()
