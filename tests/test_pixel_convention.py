"""One pixel convention from the image to the heatmap and back (docs/architecture.md,
"Pixel convention": the centre of pixel i is coordinate i, as for COCO's keypoints).

A bright Gaussian dot is drawn at known sub-pixel positions of an image, and the real crop
code cuts crops of 48 to 1,024 px around it. The crop's keypoint must lie where the crop
shows the dot (its intensity centroid), and so must the keypoint the flip augmentation
moves, in the image it flips. From the flipped crop, the keypoint must come back to the
dot in the image through the Gaussian codec, `flip_back` and `to_image`.
Last, on a small network trained here, the flip test must decode at least as well as the
plain prediction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hgpose.codecs import GaussianCodec, flip_back
from hgpose.data.crop import CROP_SIZE, CropBox, cut_crop, to_crop, to_image
from hgpose.skeleton import NUM_JOINTS
from hgpose.train import augment as aug

SIDES = [48, 64, 100, 181, 256, 512, 1024]
# Where the dot lies, as a fraction of the crop side plus a sub-pixel part: away from the
# crop centre, so a flip moves it far.
POSITIONS = [(0.31, 0.42, 0.37, 0.71), (0.27, 0.63, 0.83, 0.05), (0.66, 0.38, 0.5, 0.5)]
DOT_SIGMA = 4.0    # crop px: area-averaged to the 64x64 grid, about the codec's sigma of 1 cell
NOSE = 0           # a joint that is its own mirror image


def gaussian_dot(height: int, width: int, x: float, y: float, sigma: float) -> np.ndarray:
    """uint8 RGB image, black but for a Gaussian dot of peak 250 whose centre is (x, y),
    sampled at pixel centres (pixel (i, j) is at coordinate (i, j))."""
    rows, cols = np.mgrid[0:height, 0:width]
    dot = 250 * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(np.round(dot).astype(np.uint8)[..., None], 3, axis=-1)


def centroid(image: np.ndarray, near, radius: float = 20) -> np.ndarray:
    """(x, y) intensity centroid of a [H, W] image within `radius` px of `near`."""
    rows, cols = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    window = (np.abs(cols - near[0]) <= radius) & (np.abs(rows - near[1]) <= radius)
    weight = image.astype(np.float64) * window
    return np.array([(weight * cols).sum(), (weight * rows).sum()]) / weight.sum()


def dot_crop(side: int, position) -> tuple[np.ndarray, np.ndarray, CropBox, np.ndarray]:
    """A dot drawn in an image and cut out by the crop code: (crop [256,256] grey,
    keypoints [17,3] in crop px with the dot as the nose, the box, the dot's image (x, y))."""
    fx, fy, sub_x, sub_y = position
    box = CropBox(x0=13, y0=9, side=side)
    xy = np.array([box.x0 + int(fx * side) + sub_x, box.y0 + int(fy * side) + sub_y])
    image = gaussian_dot(side + 30, side + 25, *xy, sigma=DOT_SIGMA * side / CROP_SIZE)
    keypoints = np.zeros((NUM_JOINTS, 3))
    keypoints[NOSE] = (*xy, 2)
    return cut_crop(image, box)[..., 0], to_crop(keypoints, box), box, xy


def warp(crop: np.ndarray, keypoints: np.ndarray, angle: float, scale: float, flip: bool):
    """The augmentation's warp of one crop and its keypoints: (image [256,256], keypoints)."""
    one = torch.ones(1)
    params = aug.AugmentParams(torch.tensor([angle]), torch.tensor([scale]), torch.tensor([flip]),
                               one, one, one)
    m = aug.matrices(params)
    image = aug.warp_images(torch.from_numpy(crop).float()[None, None], m)[0, 0]
    moved = aug.warp_keypoints(torch.from_numpy(keypoints).float()[None], m, params.flip)[0]
    return image.numpy(), moved.numpy()


@pytest.mark.parametrize("side", SIDES)
def test_the_crop_shows_the_dot_at_its_keypoint(side):
    # Before one convention: off by 0.5 * (256/side - 1) crop px (2.2 px at side 48).
    for position in POSITIONS:
        crop, keypoints, _, _ = dot_crop(side, position)
        dot = centroid(crop, keypoints[NOSE, :2])
        np.testing.assert_allclose(dot, keypoints[NOSE, :2], atol=0.05)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("angle, scale, flip", [(0.0, 1.0, True), (23.0, 1.2, True), (-30.0, 0.8, False)])
def test_the_augmented_crop_shows_the_dot_at_its_moved_keypoint(side, angle, scale, flip):
    # Before one convention, a flip moved the label (256/side - 1) crop px from the dot
    # relative to the unflipped crop: 3 px at side 64, -0.5 px at side 512.
    for position in POSITIONS:
        crop, keypoints, _, _ = dot_crop(side, position)
        image, moved = warp(crop, keypoints, angle, scale, flip)
        assert moved[NOSE, 2] == 2
        np.testing.assert_allclose(centroid(image, moved[NOSE, :2]), moved[NOSE, :2], atol=0.05)


@pytest.mark.parametrize("side", SIDES)
def test_the_dot_comes_back_to_the_image_through_the_flip_test(side):
    """Flipped crop -> heatmaps -> flip_back -> DARK decode -> to_image, twice: from the
    flipped label encoded by the codec (a perfect network), and from the flipped image itself
    area-averaged onto the 64x64 grid (what a strided network sees in each cell). Errors
    are made in crop px and scaled by side/256 into the image, so they are bounded in crop px.
    Measured: at most 0.001 crop px (label) and 0.045 crop px (image, largest at side 48,
    where the dot is only 0.75 image px wide), at most 0.01 image px either way. Before the
    one convention: 0.08-0.1 crop px (label) and 2.2-3.8 crop px (image).
    """
    codec = GaussianCodec(refine="dark")
    for position in POSITIONS:
        crop, keypoints, box, xy = dot_crop(side, position)
        image, moved = warp(crop, keypoints, 0.0, 1.0, True)
        from_label = torch.from_numpy(codec.encode(moved)[0])[None]
        from_image = torch.zeros_like(from_label)
        cells = F.avg_pool2d(torch.from_numpy(image)[None, None], codec.stride)[0, 0]
        from_image[0, NOSE] = cells / cells.max()
        crop_px_to_image_px = side / CROP_SIZE
        for heatmaps, bound in ((from_label, 0.01), (from_image, 0.1)):
            decoded, _ = codec.decode(flip_back(heatmaps, codec.stride).numpy())
            back = to_image(decoded[0], np.array([box.x0, box.y0, box.side]))[NOSE]
            error = np.linalg.norm(back - xy)
            assert error <= bound * crop_px_to_image_px, (heatmaps is from_label, error)
            assert error <= 0.3


def test_to_image_inverts_to_crop_and_maps_the_box_edges():
    box = CropBox(x0=40, y0=7, side=100)
    keypoints = np.zeros((NUM_JOINTS, 3))
    keypoints[:4] = [(39.5, 6.5, 2),       # the box's outer corner
                     (139.5, 106.5, 2),    # the opposite one
                     (89.5, 56.5, 1),      # the centre of the box's pixels 40..139, 7..106
                     (52.25, 80.6, 2)]
    u = to_crop(keypoints, box)
    np.testing.assert_allclose(u[:3, :2], [[-0.5, -0.5], [255.5, 255.5], [127.5, 127.5]], atol=1e-5)
    np.testing.assert_allclose(to_image(u[:, :2], np.array([box.x0, box.y0, box.side]))[:4],
                               keypoints[:4, :2], atol=1e-4)
    np.testing.assert_array_equal(u[4:], 0)  # unlabelled stay (0, 0, 0)


# --- the flip test on a trained network ------------------------------------------------------

SMALL = 64           # crop size of the toy problem; stride 4 as in hgpose: a 16x16 grid


def dot_batch(n: int, generator: torch.Generator, size: int = SMALL):
    """n grey crops [n,1,size,size] with one Gaussian dot (sigma 1.5 px, random sub-pixel
    centre, random brightness) on noise, and its keypoints [n,17,3] as the nose."""
    xy = 8 + (size - 16) * torch.rand(n, 2, generator=generator)
    peak = 0.5 + 0.5 * torch.rand(n, generator=generator)
    pixel = torch.arange(size, dtype=torch.float32)
    gx = torch.exp(-(pixel - xy[:, :1]) ** 2 / (2 * 1.5 ** 2))
    gy = torch.exp(-(pixel - xy[:, 1:]) ** 2 / (2 * 1.5 ** 2))
    images = peak[:, None, None] * gy[:, :, None] * gx[:, None, :]
    images = images + 0.1 * torch.rand(n, size, size, generator=generator)
    keypoints = torch.zeros(n, NUM_JOINTS, 3)
    keypoints[:, NOSE, :2] = xy
    keypoints[:, NOSE, 2] = 2
    return images[:, None], keypoints


def small_network() -> torch.nn.Module:
    """Two stride-2 convolutions (like the hourglass stem, they are not mirror-symmetric on
    an even grid) to a 16x16 map per joint."""
    layers, channels = [], [1, 16, 24, 32, 32]
    for i, (a, b) in enumerate(zip(channels, channels[1:])):
        layers += [torch.nn.Conv2d(a, b, 3, stride=2 if i in (1, 2) else 1, padding=1), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Conv2d(32, NUM_JOINTS, 1))


def train_dot_finder(codec: GaussianCodec, steps: int, seed: int) -> torch.nn.Module:
    """`small_network` trained to find the dot, with the flip augmentation (p = 0.5) of
    training: images and keypoints through augment's warp, targets from the codec."""
    torch.manual_seed(seed)
    network = small_network()
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed + 1)
    one = torch.ones(16)
    for _ in range(steps):
        images, keypoints = dot_batch(16, generator)
        flip = torch.rand(16, generator=generator) < 0.5
        m = aug.matrices(aug.AugmentParams(0 * one, one, flip, one, one, one))
        targets, weights = codec.encode_torch(aug.warp_keypoints(keypoints, m, flip, size=SMALL))
        heatmaps = network(aug.warp_images(images, m))
        loss = (((heatmaps - targets) ** 2).mean((-2, -1)) * weights).sum() / weights.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return network


def flip_test_errors(network: torch.nn.Module, codec: GaussianCodec, seed: int) -> dict:
    """Mean decoding error (crop px) on 128 new dots: of the plain heatmaps, of the flip test,
    and of the flip test with the old flip-back (the mirror moved 0.75 column right)."""
    images, keypoints = dot_batch(128, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        plain = network(images)
        mirrored = flip_back(network(images.flip(-1)), codec.stride)
    shifted = 0.25 * mirrored
    shifted[..., 1:] += 0.75 * mirrored[..., :-1]

    def error(heatmaps):
        xy, _ = codec.decode_torch(heatmaps)
        return (xy[:, NOSE] - keypoints[:, NOSE, :2]).norm(dim=-1).mean().item()

    return {"plain": error(plain), "flip test": error((plain + mirrored) / 2),
            "flip test, old shift": error((plain + shifted) / 2)}


def test_the_flip_test_decodes_a_trained_network_at_least_as_well():
    """Averaging a trained network's heatmaps with those of the mirrored input (flip_back)
    must not decode worse than the plain heatmaps, and must beat the same average taken
    with the old flip-back. Measured (about 3 s of one core): plain 0.092 crop px, flip
    test 0.082, with the old flip-back 1.43; over three seeds, and with 150 steps, the flip
    test was 7-16 % better than the plain heatmaps and the old flip-back always ~1.43."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # faster than two threads for a network this small
    try:
        codec = GaussianCodec(input_size=SMALL, heatmap_size=SMALL // 4, refine="dark")
        errors = flip_test_errors(train_dot_finder(codec, steps=100, seed=0), codec, seed=2)
    finally:
        torch.set_num_threads(threads)
    print("mean error, crop px:", {k: round(v, 3) for k, v in errors.items()})
    assert errors["plain"] < 1.0                  # it learned to find the dot
    assert errors["flip test"] <= errors["plain"]
    assert errors["flip test"] < errors["flip test, old shift"] - 0.5
