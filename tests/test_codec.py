"""Heatmap codecs: exact target values, round trips, numpy == torch, validation."""

import math

import numpy as np
import pytest
import torch

from hgpose.codecs import GaussianCodec, HeatmapCodec, ThesisCodec, argmax_2d, flip_back
from hgpose.skeleton import FLIP_INDEX, NUM_JOINTS

J = NUM_JOINTS


def cell(j):
    """Crop coordinate of heatmap cell j's centre at stride 4 (the pixel convention)."""
    return 4 * j + 1.5


def _peak(sigma, truncate=4.0):
    """Centre of a 2-D normalised, truncated Gaussian kernel, straight from the formula."""
    r = int(truncate * sigma + 0.5)
    one_d = 1.0 / sum(math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-r, r + 1))
    return one_d * one_d


def _all_joints_at(x, y, v):
    return np.tile(np.array([x, y, v], np.float32), (J, 1))


def _random_keypoints(rng, batch, lo=0.0, hi=256.0, vis=(0, 1, 2)):
    k = np.zeros((batch, J, 3), np.float32)
    k[..., :2] = rng.uniform(lo, hi, (batch, J, 2))
    k[..., 2] = rng.choice(vis, (batch, J))
    k[k[..., 2] == 0] = 0  # COCO's convention for unlabelled joints
    return k


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# -- ThesisCodec --------------------------------------------------------------------------

def test_thesis_peaks_are_the_normalised_kernel_centre():
    codec = ThesisCodec()
    vis, _ = codec.encode(_all_joints_at(cell(32), cell(16), 2))
    occ, _ = codec.encode(_all_joints_at(cell(32), cell(16), 1))
    assert vis[0, 16, 32] == pytest.approx(_peak(0.5), abs=1e-6)
    assert occ[0, 16, 32] == pytest.approx(_peak(1.0), abs=1e-6)
    assert round(float(vis.max()), 4) == 0.6187
    assert round(float(occ.max()), 4) == 0.1592
    # Normalised: an interior map holds unit mass, and its maximum is at the joint.
    assert vis[0].sum() == pytest.approx(1.0, abs=1e-5)
    assert occ[0].sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(vis[0].argmax(), (64, 64)) == (16, 32)


def test_thesis_matches_scipy_gaussian_filter_with_zero_border(rng):
    ndimage = pytest.importorskip("scipy.ndimage")
    codec = ThesisCodec()
    k = _random_keypoints(rng, 3, lo=-20, hi=280, vis=(1, 2))  # includes clamped joints
    k[0, 0, :2] = (0.0, 255.9)                                 # two corners
    k[0, 1, :2] = (255.9, 0.0)
    heatmaps, _ = codec.encode(k)
    for b in range(len(k)):
        for j in range(J):
            col, row = np.clip(np.round((k[b, j, :2] - 1.5) / 4), 0, 63).astype(int)
            impulse = np.zeros((64, 64))
            impulse[row, col] = 1.0
            sigma = 0.5 if k[b, j, 2] == 2 else 1.0
            ref = ndimage.gaussian_filter(impulse, sigma, mode="constant", truncate=4.0)
            np.testing.assert_allclose(heatmaps[b, j], ref, atol=1e-7)


def test_thesis_unlabelled_is_zero_map_with_weight_one(rng):
    k = _random_keypoints(rng, 3)
    heatmaps, weights = ThesisCodec().encode(k)
    assert heatmaps.dtype == np.float32 and weights.dtype == np.float32
    unlabelled = k[..., 2] == 0
    assert unlabelled.any() and (~unlabelled).any()
    assert np.all(heatmaps[unlabelled] == 0)
    assert np.all(heatmaps[~unlabelled].max(axis=(-2, -1)) > 0.15)
    np.testing.assert_array_equal(weights, np.ones((3, J), np.float32))


def test_thesis_round_trip_within_rounding(rng):
    codec = ThesisCodec()
    # Inside the crop, [-0.5, 255.5), every joint rounds to its own cell without reaching the
    # clamp: each axis is off by at most half a cell, 2 px.
    k = _random_keypoints(rng, 32, lo=-0.5, hi=255.5, vis=(1, 2))
    coords, scores = codec.decode(codec.encode(k)[0])
    err = np.abs(coords - k[..., :2])
    assert err.max() <= 2.0 + 1e-5
    assert err.mean() == pytest.approx(1.0, abs=0.1)  # uniform rounding error averages 1 px
    np.testing.assert_allclose((coords - 1.5) % 4, 0)  # cell centres only
    expected = np.where(k[..., 2] == 2, _peak(0.5), _peak(1.0))
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_thesis_clamps_at_the_border():
    codec = ThesisCodec()
    k = _all_joints_at(0, 0, 2)
    k[0] = (257.6, 257.6, 2)   # grid 64.03: rounds to 64 -> clamped to 63
    k[1] = (-7.0, 300.0, 1)    # off the crop on both sides
    k[2] = (255.4, 3.4, 2)     # grid 63.475 -> 63, 0.475 -> 0
    heatmaps, _ = codec.encode(k)
    assert argmax_2d(heatmaps[0]).tolist() == [63, 63]
    assert argmax_2d(heatmaps[1]).tolist() == [0, 63]
    assert argmax_2d(heatmaps[2]).tolist() == [63, 0]
    # The zero border drops the mass past the edge but keeps the peak height.
    assert heatmaps[0, 63, 63] == pytest.approx(_peak(0.5), abs=1e-6)
    coords, _ = codec.decode(heatmaps)
    np.testing.assert_array_equal(coords[:3], [[253.5, 253.5], [1.5, 253.5], [253.5, 1.5]])


def test_thesis_rounding_is_identical_in_numpy_and_torch():
    # Exact halves (grid k + 0.5, u = 4k + 3.5) are where round-half-to-even and
    # round-half-up disagree.
    codec = ThesisCodec()
    k = _all_joints_at(0, 0, 2)
    k[:, 0] = np.arange(J) * 4 + 3.5
    k[:, 1] = np.arange(J) * 4 + 3.5
    a = argmax_2d(codec.encode(k)[0])
    b = argmax_2d(codec.encode_torch(torch.from_numpy(k))[0]).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, 0], np.round(np.arange(J) + 0.5))


# -- GaussianCodec ------------------------------------------------------------------------

def test_gaussian_peak_one_at_subpixel_position():
    codec = GaussianCodec(sigma=1.5)
    on_grid, w = codec.encode(_all_joints_at(cell(32), cell(16), 1))
    assert on_grid[0, 16, 32] == pytest.approx(1.0)
    np.testing.assert_array_equal(w, np.ones(J))
    u, v = 101.3, 57.8
    heatmaps, _ = codec.encode(_all_joints_at(u, v, 2))
    cx, cy = (u - 1.5) / 4, (v - 1.5) / 4
    for row, col in [(14, 25), (15, 25), (14, 26), (10, 30), (0, 0)]:
        expected = math.exp(-((col - cx) ** 2 + (row - cy) ** 2) / (2 * 1.5 ** 2))
        assert heatmaps[0, row, col] == pytest.approx(expected, rel=1e-5, abs=1e-12)
    assert heatmaps.max() < 1.0  # the true peak lies between cells


def test_gaussian_same_sigma_for_visible_and_occluded():
    codec = GaussianCodec()
    vis, _ = codec.encode(_all_joints_at(100.0, 100.0, 2))
    occ, _ = codec.encode(_all_joints_at(100.0, 100.0, 1))
    np.testing.assert_array_equal(vis, occ)


def test_gaussian_weights_mask_unlabelled_and_off_crop(rng):
    codec = GaussianCodec()
    k = _random_keypoints(rng, 2, lo=10, hi=240)
    k[0, 0] = (-0.51, 50, 2)    # just left of the crop, which begins at -0.5
    k[0, 1] = (50, 255.5, 2)    # just below it
    k[0, 2] = (-0.5, 255.49, 1) # inside (corner)
    k[0, 3] = (np.nan, 10, 2)   # garbage coordinate
    k[0, 4] = (0, 0, 0)
    heatmaps, weights = codec.encode(k)
    expected = ((k[..., 2] > 0) & (k[..., :2] >= -0.5).all(-1) & (k[..., :2] < 255.5).all(-1))
    expected[0, :5] = [False, False, True, False, False]
    np.testing.assert_array_equal(weights, expected.astype(np.float32))
    assert np.all(heatmaps[weights == 0] == 0)
    assert np.all(heatmaps[weights == 1].max(axis=(-2, -1)) > 0.5)
    assert np.isfinite(heatmaps).all()
    h_t, w_t = codec.encode_torch(torch.from_numpy(k))
    np.testing.assert_array_equal(w_t.numpy(), weights)
    np.testing.assert_allclose(h_t.numpy(), heatmaps, atol=1e-6)


@pytest.mark.parametrize("refine, bound", [("none", 2.0), ("quarter", 1.0), ("dark", 0.25)])
def test_gaussian_round_trip(rng, refine, bound):
    codec = GaussianCodec(refine=refine)
    # Centres in [2, 61] heatmap px: 2+ px from the outer cells, where no refinement applies.
    k = _random_keypoints(rng, 32, lo=cell(2), hi=cell(61), vis=(1, 2))
    coords, scores = codec.decode(codec.encode(k)[0])
    err = np.abs(coords - k[..., :2])
    assert err.max() <= bound + 1e-4
    assert np.all(scores > math.exp(-0.25))   # the nearest cell is within 0.5 px on each axis
    if refine == "dark":
        assert np.linalg.norm(coords - k[..., :2], axis=-1).max() < 0.05
    if refine == "quarter":
        assert err.mean() < 0.6   # well below plain argmax's ~1 px


def test_quarter_shift_goes_toward_larger_neighbour():
    codec = GaussianCodec()
    h = np.zeros((J, 64, 64), np.float32)
    h[0, 10, 20], h[0, 10, 21], h[0, 10, 19] = 1.0, 0.6, 0.2   # right larger
    h[0, 9, 20], h[0, 11, 20] = 0.5, 0.3                       # up larger
    h[1, 30, 30], h[1, 30, 29], h[1, 30, 31] = 1.0, 0.4, 0.4   # tie in x
    h[2, 0, 63] = 1.0                                          # corner: no neighbours
    h[2, 1, 63], h[2, 0, 62] = 0.9, 0.9
    coords, scores = codec.decode(h)
    np.testing.assert_allclose(coords[0], [cell(20 + 0.25), cell(10 - 0.25)])
    np.testing.assert_allclose(coords[1], [cell(30), cell(30)])
    np.testing.assert_allclose(coords[2], [cell(63), cell(0)])
    np.testing.assert_allclose(coords[3], [cell(0), cell(0)])  # all-zero map
    np.testing.assert_allclose(scores[:4], [1, 1, 1, 0])


def test_dark_recovers_a_tilted_elliptical_peak():
    # Real predictions are not isotropic: the cross term of the Hessian matters here (it is
    # zero for the codec's own targets). Smoothing a Gaussian with a Gaussian keeps its centre.
    cx, cy = 30.37, 21.81
    cov_inv = np.linalg.inv(np.array([[4.0, 2.2], [2.2, 2.0]]))
    yy, xx = np.mgrid[0:64, 0:64]
    d = np.stack([xx - cx, yy - cy], -1)
    peak = np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, cov_inv, d))
    h = np.zeros((J, 64, 64), np.float32)
    h[0] = peak
    codec = GaussianCodec(refine="dark")
    coords, _ = codec.decode(h)
    coords_t, _ = codec.decode_torch(torch.from_numpy(h))
    np.testing.assert_allclose(coords[0], [cell(cx), cell(cy)], atol=0.05)
    np.testing.assert_allclose(coords_t[0].numpy(), [cell(cx), cell(cy)], atol=0.05)


def test_dark_is_safe_on_flat_and_border_maps():
    codec = GaussianCodec(refine="dark")
    h = np.zeros((2, J, 64, 64), np.float32)
    h[0, 1] = 0.3                          # constant map: Hessian 0
    h[0, 2, 0, 5] = 1.0                    # peak on the top row: skipped
    coords, scores = codec.decode(h)
    ct, st = codec.decode_torch(torch.from_numpy(h))
    assert np.isfinite(coords).all() and torch.isfinite(ct).all()
    np.testing.assert_array_equal(coords[1], cell(0))
    np.testing.assert_allclose(coords[0, :3], [[cell(0), cell(0)], [cell(0), cell(0)], [cell(5), cell(0)]])
    np.testing.assert_allclose(ct.numpy(), coords, atol=1e-4)


# -- the pixel convention on the grid -----------------------------------------------------

@pytest.mark.parametrize("input_size, heatmap_size", [(256, 64), (128, 64), (64, 64), (256, 32)])
def test_cell_centres_are_the_middle_of_their_crop_pixels(input_size, heatmap_size):
    codec = GaussianCodec(input_size=input_size, heatmap_size=heatmap_size)
    stride, j = codec.stride, np.arange(heatmap_size)
    # Cell j covers crop pixels stride*j .. stride*j + stride-1; its centre is their mean.
    pixels = stride * j[:, None] + np.arange(stride)
    np.testing.assert_allclose(codec.grid_to_crop(j), pixels.mean(1))
    np.testing.assert_allclose(codec.crop_to_grid(codec.grid_to_crop(j + 0.3)), j + 0.3)
    # Edge to edge: the grid's outer edges are the crop's, [-0.5, input_size - 0.5).
    assert codec.grid_to_crop(-0.5) == -0.5
    assert codec.grid_to_crop(heatmap_size - 0.5) == input_size - 0.5


@pytest.mark.parametrize("codec", [GaussianCodec(), GaussianCodec(input_size=128, heatmap_size=64),
                                   ThesisCodec()], ids=["gaussian", "gaussian-stride-2", "thesis"])
def test_flip_back_undoes_the_crop_flip_exactly(rng, codec):
    size = codec.input_size
    k = _random_keypoints(rng, 4, lo=-0.5, hi=size - 0.5)
    # The flip augmentation's labels: x -> (size-1) - x, and the mirrored person's left is
    # our right.
    mirrored = k[:, list(FLIP_INDEX)].copy()
    mirrored[..., 0] = np.where(mirrored[..., 2] > 0, size - 1 - mirrored[..., 0], 0)
    predicted_for_mirror = torch.from_numpy(codec.encode(mirrored)[0])
    back = flip_back(predicted_for_mirror, codec.stride)
    torch.testing.assert_close(back, torch.from_numpy(codec.encode(k)[0]), atol=1e-5, rtol=0)
    assert back.shape == predicted_for_mirror.shape
    assert not torch.equal(back, predicted_for_mirror)  # a new tensor; the input is kept


# -- numpy == torch -----------------------------------------------------------------------

@pytest.mark.parametrize("codec", [ThesisCodec(), ThesisCodec(0.8, 1.7), GaussianCodec(),
                                   GaussianCodec(sigma=2.0)],
                         ids=["thesis", "thesis-0.8-1.7", "gaussian", "gaussian-2"])
def test_encode_torch_equals_numpy(rng, codec):
    k = _random_keypoints(rng, 8, lo=-12, hi=268)   # mixed v, some off the crop
    h_np, w_np = codec.encode(k)
    h_t, w_t = codec.encode_torch(torch.from_numpy(k))
    assert h_t.shape == (8, J, 64, 64) and w_t.shape == (8, J)
    assert h_t.dtype == torch.float32 and w_t.dtype == torch.float32
    np.testing.assert_allclose(h_t.numpy(), h_np, atol=1e-6)
    np.testing.assert_array_equal(w_t.numpy(), w_np)
    # A single sample ([17, 3]) gives the same as its row of the batch.
    h1, w1 = codec.encode(k[3])
    np.testing.assert_array_equal(h1, h_np[3])
    np.testing.assert_array_equal(w1, w_np[3])


@pytest.mark.parametrize("codec", [ThesisCodec(), GaussianCodec(refine="none"), GaussianCodec(),
                                   GaussianCodec(refine="dark")],
                         ids=["thesis", "none", "quarter", "dark"])
def test_decode_torch_equals_numpy(rng, codec):
    k = _random_keypoints(rng, 8)
    h, _ = GaussianCodec().encode(k)
    h = (h + rng.normal(0, 0.02, h.shape)).astype(np.float32)   # predictions are noisy
    c_np, s_np = codec.decode(h)
    c_t, s_t = codec.decode_torch(torch.from_numpy(h))
    assert c_t.shape == (8, J, 2) and s_t.shape == (8, J)
    assert c_np.dtype == np.float32 and s_np.dtype == np.float32
    # DARK's Newton step runs in float64 in numpy, float32 in torch.
    atol = 1e-3 if getattr(codec, "refine", None) == "dark" else 0
    np.testing.assert_allclose(c_t.numpy(), c_np, atol=atol)
    np.testing.assert_array_equal(s_t.numpy(), s_np)


def test_argmax_2d_numpy_and_torch(rng):
    h = rng.random((3, 5, 7, 9)).astype(np.float32)
    xy = argmax_2d(h)
    assert xy.dtype == np.int64 and xy.shape == (3, 5, 2)
    np.testing.assert_array_equal(argmax_2d(torch.from_numpy(h)).numpy(), xy)
    b, j = 1, 2
    row, col = np.unravel_index(h[b, j].argmax(), (7, 9))
    assert xy[b, j].tolist() == [col, row]
    ties = np.zeros((2, 4, 4))
    ties[1, 2, 1] = ties[1, 3, 0] = 1.0
    assert argmax_2d(ties).tolist() == [[0, 0], [1, 2]]
    assert argmax_2d(torch.from_numpy(ties)).tolist() == [[0, 0], [1, 2]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("codec", [ThesisCodec(), GaussianCodec(refine="quarter"),
                                   GaussianCodec(refine="dark")], ids=["thesis", "quarter", "dark"])
def test_torch_paths_run_on_cuda(rng, codec):
    k = torch.from_numpy(_random_keypoints(rng, 16, lo=-8, hi=264))
    h_cpu, w_cpu = codec.encode_torch(k)
    h_gpu, w_gpu = codec.encode_torch(k.cuda())
    assert h_gpu.is_cuda and w_gpu.is_cuda
    torch.testing.assert_close(h_gpu.cpu(), h_cpu, atol=1e-6, rtol=0)
    torch.testing.assert_close(w_gpu.cpu(), w_cpu)
    c_cpu, s_cpu = codec.decode_torch(h_cpu)
    c_gpu, s_gpu = codec.decode_torch(h_gpu)
    assert c_gpu.is_cuda
    torch.testing.assert_close(c_gpu.cpu(), c_cpu, atol=1e-3, rtol=0)
    torch.testing.assert_close(s_gpu.cpu(), s_cpu, atol=1e-6, rtol=0)


# -- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("codec", [ThesisCodec(), GaussianCodec()], ids=["thesis", "gaussian"])
@pytest.mark.parametrize("shape", [(J, 2), (16, 3), (2, 3, J, 3), (3,)])
def test_encode_rejects_wrong_keypoint_shapes(codec, shape):
    with pytest.raises(ValueError, match=r"\[17, 3\] or \[B, 17, 3\]"):
        codec.encode(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"\[17, 3\] or \[B, 17, 3\]"):
        codec.encode_torch(torch.zeros(shape))


@pytest.mark.parametrize("codec", [ThesisCodec(), GaussianCodec(refine="dark")],
                         ids=["thesis", "dark"])
@pytest.mark.parametrize("shape", [(J, 32, 32), (J, 64), (2, 16, 64, 64), (1, 2, J, 64, 64),
                                   (J, 64, 48)])
def test_decode_rejects_wrong_heatmap_shapes(codec, shape):
    with pytest.raises(ValueError, match=r"\[17, 64, 64\] or \[B, 17, 64, 64\]"):
        codec.decode(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"\[17, 64, 64\] or \[B, 17, 64, 64\]"):
        codec.decode_torch(torch.zeros(shape))


def test_torch_methods_want_tensors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        GaussianCodec().encode_torch(np.zeros((J, 3), np.float32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ThesisCodec().decode_torch(np.zeros((J, 64, 64), np.float32))


def test_constructor_validation():
    assert ThesisCodec().stride == 4 and GaussianCodec(input_size=128, heatmap_size=32).stride == 4
    with pytest.raises(ValueError, match="refine"):
        GaussianCodec(refine="taylor")
    with pytest.raises(ValueError, match="sigma"):
        GaussianCodec(sigma=0)
    with pytest.raises(ValueError, match="sigma_occluded"):
        ThesisCodec(sigma_occluded=-1.0)
    with pytest.raises(ValueError, match="multiple"):
        ThesisCodec(input_size=250)


def test_other_sizes_follow_the_stride():
    codec = GaussianCodec(input_size=128, heatmap_size=64, refine="dark")   # stride 2
    k = _all_joints_at(71.3, 40.6, 2)
    heatmaps, _ = codec.encode(k)
    assert heatmaps.shape == (J, 64, 64)
    coords, _ = codec.decode(heatmaps)
    np.testing.assert_allclose(coords, k[:, :2], atol=0.02)


# --- the registry: a codec a contributor adds ------------------------------------------------

class ToyCodec(HeatmapCodec):
    """A codec added as one class and one line in CODECS: Gaussian maps of a fixed width,
    decoded by plain argmax."""

    name = "toy"
    refinements = ("none",)
    decoding = "plain argmax of sigma-1.5 maps"

    def __init__(self):
        super().__init__(256, 64, J)
        self._maps = GaussianCodec(sigma=1.5, refine="none")

    @classmethod
    def from_config(cls, target):
        return cls()

    def parameters(self) -> dict:
        return {"sigma": 1.5}

    def encode(self, keypoints):
        return self._maps.encode(keypoints)

    def encode_torch(self, keypoints):
        return self._maps.encode_torch(keypoints)

    def decode(self, heatmaps):
        return self._maps.decode(heatmaps)

    def decode_torch(self, heatmaps):
        return self._maps.decode_torch(heatmaps)


def test_a_registered_codec_is_validated_trained_decoded_and_exported(tmp_path, monkeypatch):
    """Adding a codec = one class + one registry line: config validation, training's targets,
    `hgpose.load`'s decoding and the ONNX export's metadata all find it through CODECS."""
    import json

    import onnx

    import hgpose
    from builders import make_store
    from hgpose import config as cfg
    from hgpose.codecs import CODECS
    from hgpose.errors import HgposeError
    from hgpose.export import export_onnx
    from hgpose.train import train

    monkeypatch.setitem(CODECS, "toy", ToyCodec)
    with pytest.raises(HgposeError, match="target.refine=dark: the toy codec decodes by plain argmax of sigma-1.5"):
        cfg.resolve("thesis", ["target.codec=toy", "target.refine=dark"])
    store = make_store(tmp_path / "store", n_train=4, n_val=2)
    run = tmp_path / "run"
    train(store, run, preset="thesis", epochs=1, batch_size=2,
          overrides=["target.codec=toy", "model.features=8", "data.workers=0", "progress=false", "tensorboard=false"])
    est = hgpose.load(run, device="cpu")
    assert isinstance(est.codec, ToyCodec)
    assert est.predict(np.zeros((64, 48, 3), np.uint8)).shape == (J, 3)
    export_onnx(run, tmp_path / "toy.onnx", verify=False)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "toy.onnx")).metadata_props}
    assert json.loads(meta["codec"]) == {"name": "toy", "decode": "argmax", "sigma": 1.5, "stride": 4,
                                         "cell_centre": "u = 4 * column + 1.5"}
