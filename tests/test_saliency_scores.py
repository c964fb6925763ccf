"""Saliency you can score: the PoseIG indices, integrated gradients along the blur path, the
cascading-randomisation check, and the synthetic people's masks -- each on maps, networks and
images where the right value is known."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hgpose.explain import attribution_indices as ai
from hgpose.explain import sanity, saliency_scores
from hgpose.explain.integrated_gradients import blur_path, completeness_error, integrated_gradients
from hgpose.skeleton import FLIP_INDEX, JOINT_INDEX

H = W = 256
L_WRIST, R_WRIST, NOSE = JOINT_INDEX["left_wrist"], JOINT_INDEX["right_wrist"], JOINT_INDEX["nose"]


def keypoints(**where) -> np.ndarray:
    kps = np.zeros((17, 3), np.float32)
    for name, (x, y) in where.items():
        kps[JOINT_INDEX[name]] = (x, y, 2)
    return kps


# --- the indices on maps whose answer is known ----------------------------------------------

def test_a_uniform_map_scores_one_and_full_diffusion():
    uniform = np.ones((H, W))
    kps = keypoints(left_wrist=(100, 120), right_wrist=(40, 200))
    mask = np.zeros((H, W), bool)
    mask[50:150, 60:200] = True
    got = ai.map_indices(uniform[None], kps, [L_WRIST], radius=20, mask=mask)
    assert got["localisation"][0] == pytest.approx(1.0) and got["inversion"][0] == pytest.approx(1.0)
    assert got["foreground"][0] == pytest.approx(1.0) and got["diffusion"][0] == pytest.approx(100.0)


def test_mass_on_the_joint_is_localisation_and_on_the_counterpart_is_inversion():
    kps = keypoints(left_wrist=(100.0, 120.0), right_wrist=(40.0, 200.0))
    disc = ai.disc((H, W), 100.0, 120.0, 10)
    on_joint = np.where(disc, 1.0, 0.0) - 0.5 * (~disc)     # negative elsewhere: not counted
    got = ai.map_indices(np.stack([on_joint, on_joint]), kps, [L_WRIST, R_WRIST], radius=10)
    everything_in_disc = H * W / disc.sum()                  # all mass inside the disc
    assert got["localisation"][0] == pytest.approx(everything_in_disc)
    assert got["inversion"][0] == 0.0                        # no mass near the right wrist
    # the same map read for the right wrist: its mass sits on the counterpart
    assert got["inversion"][1] == pytest.approx(everything_in_disc) and got["localisation"][1] == 0.0


def test_diffusion_is_100_times_one_minus_gini():
    one_pixel = np.zeros((H, W))
    one_pixel[3, 4] = 5.0
    assert ai.diffusion(one_pixel) == pytest.approx(100.0 / (H * W))   # Gini = 1 - 1/n
    half = np.zeros((H, W))
    half[: H // 2] = 1.0                                     # Gini 0.5: half the pixels hold it all
    assert ai.diffusion(half) == pytest.approx(50.0)
    assert ai.diffusion(-np.ones((H, W))) is None            # no positive mass


def test_foreground_is_the_mass_on_the_mask_against_its_share():
    mask = np.zeros((H, W), bool)
    mask[:64] = True                                          # a quarter of the crop
    only_on_mask = mask.astype(float)
    assert ai.foreground(only_on_mask, mask) == pytest.approx(4.0)
    assert ai.foreground(only_on_mask, None) is None


def test_indices_are_none_where_they_cannot_be_measured():
    kps = keypoints(left_wrist=(100, 120))                    # right wrist unlabelled
    got = ai.map_indices(np.ones((2, H, W)), kps, [L_WRIST, NOSE], radius=10)
    assert got["inversion"] == [None, None]                   # counterpart unlabelled; nose has none
    assert got["localisation"] == [pytest.approx(1.0), None]  # the nose is unlabelled
    assert got["foreground"] == [None, None]


def test_mean_and_standard_error():
    assert ai.mean_se([1.0, None, 3.0]) == {"mean": 2.0, "se": pytest.approx(1.0), "n": 2}
    assert ai.mean_se([None]) == {"mean": None, "se": None, "n": 0}
    assert ai.mean_se([4.0]) == {"mean": 4.0, "se": None, "n": 1}
    crops = [{"localisation": [2.0, 1.0], "inversion": [0.5, None], "diffusion": [10, 20], "foreground": [None, None]},
             {"localisation": [4.0, 3.0], "inversion": [1.5, None], "diffusion": [30, 40], "foreground": [None, None]}]
    s = ai.summarise(crops, [L_WRIST, NOSE])
    assert s["localisation"]["joints"]["left_wrist"]["mean"] == 3.0
    assert s["localisation"]["all"] == {"mean": 2.5, "se": pytest.approx(np.std([2, 1, 4, 3], ddof=1) / 2), "n": 4}
    assert s["inversion"]["joints"]["nose"]["n"] == 0 and s["foreground"]["all"]["mean"] is None


# --- integrated gradients ------------------------------------------------------------------

class LinearHeatmaps(nn.Module):
    """Heatmaps [B, 1, 17, 4, 4] that are, everywhere, a fixed weighted sum of the input's values
    (weights [17, 3, H, W]): each peak is linear in the input, so integrated gradients are
    exact whatever the path, A = w (x - x_0)."""

    def __init__(self, size: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(17, 3, size, size))

    def forward(self, x):
        value = torch.einsum("bchw,jchw->bj", x, self.weights)
        return value[:, None, :, None, None].expand(-1, 1, -1, 4, 4)


def test_integrated_gradients_are_exact_for_a_linear_target():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    model = LinearHeatmaps(64)
    maps, errors = integrated_gradients(model, x, [L_WRIST, R_WRIST], steps=5, sigma_max=6.0)
    start = blur_path(x, 5, 6.0)[0]
    for i, j in enumerate((L_WRIST, R_WRIST)):
        expected = (model.weights[j].detach() * (x[0] - start)).sum(0).numpy()   # summed over channels
        np.testing.assert_allclose(maps[i], expected, rtol=1e-4, atol=1e-6)
    assert np.all(errors < 1e-4)


def test_the_blur_path_runs_from_blurred_to_the_crop():
    x = torch.zeros(1, 3, 32, 32)
    x[..., 16, 16] = 1.0
    path = blur_path(x, 4, 3.0)
    assert path.shape == (5, 3, 32, 32)
    assert torch.equal(path[-1], x[0])
    peaks = path[:, 0, 16, 16]
    assert torch.all(peaks[1:] >= peaks[:-1]) and peaks[0] < 0.05 < peaks[1]   # sharper at each step
    assert completeness_error(1.1, 1.0) == pytest.approx(0.1) and math.isnan(completeness_error(1.0, 0.0))


# --- the randomisation check ---------------------------------------------------------------

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.body = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)])
        self.head = nn.Conv2d(4, 17, 1)

    def forward(self, x):
        x = self.stem(x)
        for conv in self.body:
            x = torch.relu(conv(x))
        return self.head(x)[:, None]


def test_blocks_are_found_in_forward_order_and_randomised_from_the_head_down():
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.rand(1, 3, 16, 16)
    assert sanity.blocks(model, x) == ["stem.0", "stem.1", "body.0", "body.1", "head"]
    assert sanity.cut_points(5, 3) == [1, 3, 5] and sanity.cut_points(5, 1) == [5]
    original = copy.deepcopy(model.state_dict())
    steps = []
    for down_to, cut, random in sanity.randomised_models(model, x, 3, seed=0):
        changed = {k.rsplit(".", 1)[0] for k, v in random.state_dict().items()
                   if v.dtype.is_floating_point and not torch.equal(v, original[k])}
        steps.append((down_to, cut, sorted(changed)))
    assert steps == [("head", 1, ["head"]),
                     ("body.0", 3, ["body.0", "body.1", "head"]),
                     ("stem.0", 5, ["body.0", "body.1", "head", "stem.0"])]   # BN at its init already
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())   # untouched


def test_rank_correlation():
    a = np.arange(100.0).reshape(10, 10) - 50
    assert sanity.rank_correlation(a, a) == pytest.approx(1.0)
    assert sanity.rank_correlation(a, -a) == pytest.approx(1.0)                  # absolute values
    assert sanity.rank_correlation(a, -a, absolute=False) == pytest.approx(-1.0)
    assert sanity.rank_correlation(a, np.zeros_like(a)) == 0.0
    assert sanity.rank_correlation(np.ones_like(a), np.zeros_like(a)) is None


# --- the synthetic people's masks ----------------------------------------------------------

def test_synth_writes_each_persons_segmentation_as_coco_reads_it():
    from pycocotools.coco import COCO

    from hgpose.synth import render_example
    from hgpose.synth.dataset import coco_records
    from hgpose.synth.render import LABELS_PER_PERSON

    scene = render_example(3, "train2017", 5)
    image, anns = coco_records(scene, "train2017", 5)
    coco = COCO()
    coco.dataset = {"images": [image], "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    coco.createIndex()
    assert anns
    for ann in anns:
        k = ann["id"] - image["id"] * 10
        lo = 1 + LABELS_PER_PERSON * k
        own = (scene.mask >= lo) & (scene.mask < lo + LABELS_PER_PERSON)
        assert np.array_equal(coco.annToMask(ann).astype(bool), own)
        assert own.sum() == ann["area"] and isinstance(ann["segmentation"]["counts"], str)


# --- validated where the truth is known: the network trained on synthetic people -----------

LATERAL = [JOINT_INDEX[n] for n in ("left_elbow", "right_elbow", "left_wrist", "right_wrist",
                                    "left_knee", "right_knee", "left_ankle", "right_ankle")]
FAST = SimpleNamespace(occlusion_patch=64, occlusion_stride=64, ig_steps=4, ig_blur=20.0)


def swap_left_right(model: nn.Module, layer: str = "head.conv2") -> nn.Module:
    """A copy of the network whose output channels of every left/right joint pair are swapped."""
    swapped = copy.deepcopy(model)
    conv = dict(swapped.named_modules())[layer]
    with torch.no_grad():
        conv.weight.copy_(conv.weight[list(FLIP_INDEX)])
        conv.bias.copy_(conv.bias[list(FLIP_INDEX)])
    return swapped


@pytest.fixture(scope="module")
def scored(synthetic_people):
    """Each method's indices on 4 held-out synthetic crops (val) for the trained network, the same
    network untrained, and the trained one with left/right outputs swapped."""
    from hgpose.data.store import Store
    from hgpose.explain.latents import input_mean, load_checkpoint
    from hgpose.inference.forward import to_input
    from hgpose.models import ThesisNetwork

    checkpoint = load_checkpoint(synthetic_people / "run")
    trained = checkpoint.model.float().eval()
    torch.manual_seed(0)
    networks = {"trained": trained, "untrained": ThesisNetwork(features=16).eval(),
                "swapped": swap_left_right(trained)}
    split = Store.open(synthetic_people / "store").split("val")
    mean = input_mean(checkpoint)
    crops = [(to_input(torch.from_numpy(np.array(split.images[r]))[None], mean, torch.device("cpu"),
                       channels_last=False), np.array(split.keypoints[r]), None) for r in range(4)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: {method: ai.summarise(per_crop, LATERAL) for method, per_crop in saliency_scores.indices_per_crop(
                    net, saliency_scores.method_functions(FAST, "stem", LATERAL), crops, LATERAL, 32.0).items()}
                for name, net in networks.items()}
    finally:
        torch.set_num_threads(before)


def overall(scores, network, method, index):
    return scores[network][method][index]["all"]


@pytest.mark.parametrize("method", saliency_scores.METHODS)
def test_a_trained_network_looks_at_the_joint_and_not_its_counterpart(scored, method):
    """Measured (4 val crops x 8 limb joints, radius 32): localisation trained / untrained:
    IG 4.9 / 1.9, occlusion 4.4 / 1.9, Grad-CAM 2.6 / 1.7; localisation minus inversion:
    IG 2.9 / 0.1, occlusion 3.1 / 0.4, Grad-CAM 1.6 / 0.1."""
    t_li, u_li = overall(scored, "trained", method, "localisation"), overall(scored, "untrained", method, "localisation")
    t_inv, u_inv = overall(scored, "trained", method, "inversion"), overall(scored, "untrained", method, "inversion")
    print(f"\n{method}: LI {t_li['mean']:.2f} vs {u_li['mean']:.2f}; inversion {t_inv['mean']:.2f} vs {u_inv['mean']:.2f}")
    assert t_li["mean"] > 1.3 * u_li["mean"]
    # left from right: the trained network's preference for its own joint over the mirror one
    assert t_li["mean"] - t_inv["mean"] > 1.0 + (u_li["mean"] - u_inv["mean"])
    if method == "gradcam":   # Grad-CAM's inversion itself drops (1.0 vs 1.6); IG's and occlusion's
        assert t_inv["mean"] < u_inv["mean"]   # rise with the mass on the body (see docs/explain.md)


@pytest.mark.parametrize("method", saliency_scores.METHODS)
def test_swapped_left_right_outputs_show_as_inversion(scored, method):
    li, inv = overall(scored, "swapped", method, "localisation"), overall(scored, "swapped", method, "inversion")
    assert inv["mean"] > li["mean"] + 1.0
    # the swapped network's map of a joint is the trained one's of its counterpart
    assert inv["mean"] == pytest.approx(overall(scored, "trained", method, "localisation")["mean"], rel=1e-6)


def test_evaluate_counts_a_left_right_swapped_networks_errors_as_inversions(synthetic_people, tmp_path):
    """Measured on the 24 val people: inversions 11 (trained) -> 66 (swapped), good + jitter 91 -> 36;
    misses are the same keypoints (below 0.5 against both sides of the joint)."""
    from hgpose.evaluate.evaluate import evaluate
    from hgpose.runs.weights import load_weights, save_tensors

    best = synthetic_people / "run" / "checkpoints" / "best.safetensors"
    tensors, metadata = load_weights(best)
    for name in ("head.conv2.weight", "head.conv2.bias"):
        tensors[name] = tensors[name][list(FLIP_INDEX)]
    save_tensors(tmp_path / "swapped.safetensors", tensors, metadata)
    errors = {name: evaluate(weights, synthetic_people / "store", split="val", out_dir=tmp_path / name,
                             device="cpu", progress=False)["errors"]["counts"]
              for name, weights in (("trained", best), ("swapped", tmp_path / "swapped.safetensors"))}
    trained, swapped = errors["trained"], errors["swapped"]
    assert swapped["inversion"] > 4 * max(1, trained["inversion"])
    assert swapped["inversion"] > swapped["good"] + swapped["jitter"]
    assert swapped["miss"] == trained["miss"]


def test_index_figure_of_crops_without_masks_keeps_its_layout(tmp_path):
    """12 joints and no masks, for a long reason (a moved annotation file): the foreground
    panel's note fits inside it (once, a note wider than the panel collapsed every panel of
    the figure to nothing)."""
    import warnings

    from hgpose.explain import figures
    from hgpose.explain.saliency_figures import index_figure
    from hgpose.explain.saliency_scores import METHODS

    joints = ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
              "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
    stat = lambda value: {j: {"mean": value, "se": None if value is None else 0.1, "n": 2} for j in joints}  # noqa: E731
    indices = {"foreground_note": "foreground skipped: /data/old/place/annotations/lspet.json: not found — "
                                  "/data/lspet-store/manifest.json records the test annotation file of source "
                                  "'lspet' there; put it back there, or pass its new location with --annotations",
               "methods": {m: {"localisation": {"joints": stat(3.0)}, "inversion": {"joints": stat(2.0)},
                               "diffusion": {"joints": stat(20.0)}, "foreground": {"joints": stat(None)}}
                           for m in METHODS}}
    fig = index_figure(indices, joints, "PoseIG indices per joint: 8 crops, mean \u00b1 SE, radius 32 px, "
                                        "Grad-CAM at stem")
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # matplotlib warns when constrained layout collapses
        figures.save(fig, tmp_path / "attribution_indices.png")
    heights = [ax.get_position().height for ax in fig.axes]
    assert len(heights) == 4 and min(heights) > 0.1
