"""Joints a dataset does not annotate (LSP's face) are in no loss and no metric; a network
can work at a lower resolution; CPU bf16 is used only where the CPU has it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from builders import write_lsp_folder
from hgpose.codecs import ABSENT, GaussianCodec, ThesisCodec
from hgpose.data.prepare import prepare
from hgpose.data.store import Store
from hgpose.evaluate.evaluate import load_annotations, predict_split, score
from hgpose.skeleton import JOINT_INDEX
from hgpose.train import augment as aug
from hgpose import config as cfg
from hgpose.data.dataset import CropDataset
from hgpose.train.recipes import PosePhase

FACE = [JOINT_INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]


def _keypoints(batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kps = torch.zeros(batch, 17, 3)
    kps[..., :2] = 40 + 170 * torch.rand(batch, 17, 2, generator=g)
    kps[..., 2] = torch.randint(0, 3, (batch, 17), generator=g).float()
    return kps


@pytest.mark.parametrize("preset", ["thesis", "cpu"])
def test_absent_joints_are_in_no_loss_but_unlabelled_coco_joints_are(preset):
    phase = PosePhase(cfg.resolve(preset), torch.device("cpu"), torch.zeros(3))
    kps = _keypoints()
    kps[0, FACE, :] = 0
    kps[0, FACE, 2] = ABSENT
    heatmaps = torch.rand(2, 1, 17, 64, 64, requires_grad=True)
    loss = phase.loss_of(heatmaps, kps)
    loss.backward()
    assert heatmaps.grad[0, :, FACE].abs().max() == 0          # absent: no gradient at all
    assert heatmaps.grad[1, :, FACE].abs().max() > 0           # the other crop's face counts
    # the value: the mean over the present maps only (here by hand, for the thesis recipe)
    if preset == "thesis":
        targets, _ = ThesisCodec().encode_torch(kps)
        err = ((heatmaps.detach()[:, 0] - targets) ** 2).mean(dim=(2, 3))   # [B, J]
        present = kps[..., 2] >= 0
        assert loss.item() == pytest.approx(err[present].mean().item(), rel=1e-5)
    # a COCO joint that is merely unlabelled (v = 0) still enters the thesis loss as a zero map
    plain = _keypoints()
    plain[0, 0] = 0
    heatmaps.grad = None
    phase.loss_of(heatmaps, plain).backward()
    assert (heatmaps.grad[0, :, 0].abs().max() > 0) == (preset == "thesis")


def test_without_absent_joints_the_loss_is_the_plain_mean():
    phase = PosePhase(cfg.resolve("thesis"), torch.device("cpu"), torch.zeros(3))
    kps = _keypoints(3)
    heatmaps = torch.rand(3, 1, 17, 64, 64)
    targets, _ = ThesisCodec().encode_torch(kps)
    assert phase.loss_of(heatmaps, kps).item() == pytest.approx(((heatmaps[:, 0] - targets) ** 2).mean().item(), rel=1e-6)


def test_codecs_give_absent_joints_zero_maps_and_zero_weight():
    kps = _keypoints(1)[0].numpy()
    kps[3] = (100, 100, ABSENT)
    for codec in (ThesisCodec(), GaussianCodec()):
        maps, weights = codec.encode(kps)
        assert maps[3].max() == 0 and weights[3] == 0
        tmaps, tweights = codec.encode_torch(torch.from_numpy(kps))
        assert tmaps[3].max() == 0 and tweights[3] == 0
    assert ThesisCodec().encode(np.where(np.arange(17)[:, None] == 3, [100, 100, 0], kps))[1][3] == 1


def test_augmentation_keeps_absent_joints_absent_and_swaps_them_with_the_flip():
    kps = _keypoints(1)
    kps[0, JOINT_INDEX["left_eye"]] = torch.tensor([0.0, 0.0, ABSENT])
    kps[0, JOINT_INDEX["right_eye"]] = torch.tensor([120.0, 80.0, 2.0])
    params = aug.AugmentParams(angle=torch.tensor([10.0]), scale=torch.tensor([1.0]), flip=torch.tensor([True]),
                               brightness=torch.ones(1), contrast=torch.ones(1), saturation=torch.ones(1))
    out = aug.warp_keypoints(kps, aug.matrices(params), params.flip)
    assert out[0, JOINT_INDEX["right_eye"], 2] == ABSENT       # the left eye, mirrored
    assert out[0, JOINT_INDEX["left_eye"], 2] == 2


def _mixed_store(tmp_path, coco_sample):
    rng = np.random.default_rng(0)
    joints = np.zeros((6, 14, 3))
    joints[..., 0] = rng.uniform(30, 170, (6, 14))
    joints[..., 1] = rng.uniform(30, 170, (6, 14))
    joints[..., 2] = 1
    images = [rng.integers(0, 255, (200, 200, 3), dtype=np.uint8) for _ in range(6)]
    lsp = write_lsp_folder(tmp_path / "lsp", joints, images)
    out = tmp_path / "mixed"
    prepare([coco_sample, f"lsp:{lsp}"], out, test_size=0.5, val_size=1, workers=1, progress=False)
    return out


def test_training_sees_lsp_face_joints_as_absent_in_a_mixed_store(coco_sample, tmp_path):
    store = _mixed_store(tmp_path, coco_sample)
    data = CropDataset(store, "train")
    split = Store.open(store).split("train")
    source = np.asarray(split.source)
    for i in (0, int(np.flatnonzero(source == 1)[0])):
        _, kps, _ = data[i]
        face = kps[FACE, 2].numpy()
        if source[i] == 1:
            assert (face == ABSENT).all() and (kps[5:, 2] >= 0).all()
        else:
            assert (face >= 0).all()


def test_absent_joints_are_in_no_metric(coco_sample, tmp_path):
    """Perfect heatmaps for every annotated joint and garbage for the absent ones: every
    metric of the mixed store is perfect, per source too."""
    store = _mixed_store(tmp_path, coco_sample)
    split = Store.open(store).split("test")
    codec = GaussianCodec(refine="dark")
    kps = np.asarray(split.keypoints)
    inside = (((kps[..., :2] >= 0) & (kps[..., :2] < 252)).all(-1) | (kps[..., 2] == 0)).all(1)
    assert inside[np.asarray(split.source) == 1].all()
    keep = inside
    from test_evaluate import subset

    people = subset(split, keep)
    people = type(people)(people.name, people.images, people.keypoints, people.boxes, people.ids,
                          np.asarray(split.source)[keep], split.present)

    def heatmaps_of(crops, rows):
        rows = rows.numpy()
        maps = torch.from_numpy(codec.encode(np.asarray(people.keypoints[rows]))[0])
        lsp = torch.from_numpy(np.asarray(people.source[rows]) == 1)
        maps[lsp[:, None] & torch.isin(torch.arange(17), torch.tensor(FACE))[None]] = 1.0  # garbage
        return None, maps

    cocos = {s: load_annotations(p) for s, p in Store.open(store).annotation_files("test").items()}
    metrics, _, _ = score(people, predict_split(people, heatmaps_of, codec), cocos, source_names=["coco", "lsp"])
    assert metrics["pck_thesis"]["all"] == 1.0 and metrics["pck@0.2"] == {"bbox": 1.0, "torso": 1.0}
    assert metrics["by_source"]["lsp"]["pck@0.2"]["bbox"] == 1.0
    assert metrics["by_source"]["lsp"]["coco"]["AP"] == pytest.approx(1.0)
    assert metrics["by_source"]["coco"]["coco"]["AP"] == pytest.approx(1.0)
    assert all(metrics["pck_thesis_per_joint"][n] in (1.0, None) for n in metrics["pck_thesis_per_joint"])


# ----------------------------------------------------------------------------- resolution
def test_a_network_at_128_sees_the_area_downscaled_crop_and_returns_the_64_grid():
    from hgpose.config import ModelConfig
    from hgpose.models import build_model

    torch.manual_seed(0)
    net = build_model(ModelConfig(name="thesis", features=8, resolution=128)).eval()
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        out = net(x)
        inner = net.head(net.hourglass(net.stem(torch.nn.functional.avg_pool2d(x, 2)))).unsqueeze(1)
    assert out.shape == (2, 1, 17, 64, 64) and inner.shape == (2, 1, 17, 32, 32)
    up = torch.nn.functional.interpolate(inner[:, 0], size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[:, 0], up)
    with pytest.raises(Exception, match="model.resolution=100"):
        cfg.resolve("cpu", ["model.resolution=100"])


# ----------------------------------------------------------------------------- CPU bf16
def test_cpu_bf16_is_used_only_where_the_cpu_has_it(monkeypatch):
    from hgpose.train.step import autocast_factory

    config = cfg.resolve("cpu")
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    with autocast_factory(config, torch.device("cpu"))():
        assert not torch.is_autocast_enabled('cpu')
    monkeypatch.setenv("HGPOSE_CPU_BF16", "1")
    with autocast_factory(config, torch.device("cpu"))():
        assert torch.is_autocast_enabled('cpu')
    config.precision = "fp32"
    with autocast_factory(config, torch.device("cpu"))():
        assert not torch.is_autocast_enabled('cpu')
    assert cfg.resolve("thesis").precision == "fp32"   # the thesis recipe stays fp32


def test_a_few_bf16_steps_follow_the_fp32_loss(monkeypatch):
    """Same data, same initial weights: under bf16 autocast the first loss is within 2 % of
    fp32's and a few Adam steps stay close to fp32's (each within 15 %, their mean within 5 %;
    a batch of 4 random images makes single steps noisy in either precision)."""
    from hgpose.train.step import autocast_factory
    from hgpose.models import build_model

    monkeypatch.setenv("HGPOSE_CPU_BF16", "1")
    config = cfg.resolve("cpu", ["model.features=16"])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 256, 256, generator=g)
    kps = _keypoints(4)
    losses = {}
    for amp in ("fp32", "bf16"):
        config.precision = amp
        torch.manual_seed(0)
        net = build_model(config.model)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)  # small steps: a bf16 rounding must not flip an early Adam step
        phase = PosePhase(config, torch.device("cpu"), torch.zeros(3))
        autocast = autocast_factory(config, torch.device("cpu"))
        losses[amp] = []
        for _ in range(4):
            with autocast():
                out = net(x)
            loss = phase.loss_of(out, kps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[amp].append(loss.item())
    bf16, fp32 = np.array(losses["bf16"]), np.array(losses["fp32"])
    assert abs(bf16[0] - fp32[0]) < 0.02 * fp32[0]
    np.testing.assert_allclose(bf16, fp32, rtol=0.15)
    assert abs(bf16.mean() - fp32.mean()) < 0.05 * fp32.mean()
