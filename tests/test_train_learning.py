"""Learning, on synthetic people: a reduced-width thesis network trained for about a minute
of CPU reaches a validation thesis-PCK far above the same network untrained.

Recipe: the thesis network at 16 features, with the settings that make heatmaps emerge in a
few hundred steps instead of thousands: Gaussian targets (sigma 2) with per-joint weights,
extra weight on the peaks (target.foreground=20), Adam at 1e-3, batch 4, 2 epochs over ~450
crops (~220 steps). Measured on a busy 2-core machine: untrained 0.014, trained 0.284 after
73 s of training. Without the peak weight the network sits on the "predict zero everywhere"
plateau of heatmap MSE far longer than a test can wait (Gaussian sigma 2: val PCK 0.03 after
10 epochs; thesis targets with a peak weight of 50: 0.03 after 3).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from hgpose.codecs import ThesisCodec, argmax_2d
from hgpose.config import resolve
from hgpose.data.dataset import CropDataset, make_loader
from hgpose.data.store import Store
from hgpose.evaluate.pck import thesis_pck
from hgpose.inference import load_network
from hgpose.train import train
from hgpose.train.data import ShardSampler
from hgpose.train.loop import Runtime, validate
from hgpose.train.step import autocast_factory
from hgpose.models import build_model
from hgpose.train.recipes import PosePhase

OVERRIDES = [
    "model.features=16", "target.codec=gaussian", "target.sigma=2", "target.weighted=true",
    "target.foreground=20", "optim.name=adam", "optim.lr=1e-3",
    "data.workers=0", "progress=false", "tensorboard=false", "keep_epoch_checkpoints=false",
]


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory):
    synth = pytest.importorskip("hgpose.synth")
    from hgpose.data.prepare import prepare

    root = tmp_path_factory.mktemp("synth")
    synth.generate(root / "coco", train_images=300, val_images=40, seed=0, workers=1, progress=False)
    prepare(root / "coco", root / "store", test_size=0.05, seed=0, workers=1, progress=False)
    return root / "store"


def val_pck(model, store, config) -> float:
    cpu = torch.device("cpu")
    phase = PosePhase(config, cpu, torch.from_numpy(Store.open(store).mean_rgb))
    dataset = CropDataset(store, "val")
    loader = make_loader(dataset, 32, ShardSampler(len(dataset)), 0, cpu)
    return validate(phase, model, loader, autocast_factory(config, cpu), Runtime(cpu))["val_pck"]


@pytest.fixture(scope="module")
def trained(synth_store, tmp_path_factory):
    """The reduced-width thesis network, untrained PCK and trained run (done once)."""
    run = tmp_path_factory.mktemp("learned") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_train.py: faster than 2 threads for this size
    try:
        config = resolve("thesis", OVERRIDES, epochs=2, batch_size=4)
        torch.manual_seed(config.seed)  # the initial weights of the training run
        untrained = val_pck(build_model(config.model), synth_store, config)
        start = time.perf_counter()
        summary = train(synth_store, run, config=config)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    return {"config": config, "run": run, "summary": summary, "untrained": untrained, "seconds": seconds}


def test_reduced_width_thesis_network_learns_synthetic_people(trained, synth_store):
    model, _ = load_network(trained["run"] / "checkpoints" / "best.safetensors")
    trained_pck = val_pck(model, synth_store, trained["config"])
    untrained, summary = trained["untrained"], trained["summary"]
    print(f"val thesis-PCK: untrained {untrained:.3f}, trained {trained_pck:.3f} "
          f"({summary['epochs']} epochs, {trained['seconds']:.0f} s)")
    assert trained_pck == pytest.approx(summary["best"], abs=1e-6)
    assert trained_pck > untrained + 0.1 and trained_pck > 3 * untrained, (untrained, trained_pck)


# --- the fast inference path keeps this network's accuracy -----------------------------------

@pytest.mark.parametrize("bf16", ["1", "0"], ids=["bf16-cpu", "cpu-without-bf16"])
def test_the_fast_path_keeps_the_trained_accuracy(trained, synth_store, monkeypatch, bf16):
    """The default path (BatchNorm folded, channels-last, bf16 where native) against plain
    eager NCHW fp32 with BatchNorm unfolded. HGPOSE_CPU_BF16 forces the CPU feature flag, so
    both kinds of CPU are checked on any machine (forced bf16 is emulated where the CPU lacks
    it: slower, the same numbers).

    Without bf16 the default engine is ONNX Runtime where it is installed (fp32, faster).
    The criterion (the owner's, for every CPU kind) is tie-aware, so no tolerance depends on
    the machine:
    - fp32 gives the fp32 keypoints exactly, wherever the reference's decision is not a tie
      within the float rounding of folding: with d the largest heatmap difference measured,
      a joint whose argmax (and quarter-pixel neighbours) differ by more than 2d cannot
      change, and must not; d itself stays at float-rounding size.
    - bf16 rounds every layer's output to ~3 significant digits, which moves the argmax between
      cells the fp32 network scores alike: it may only ever pick a cell within 5 % of the fp32
      maximum (docs/evaluate.md, "Speed").
    - Both: the mean keypoint error against the ground truth within 2 %, and the thesis PCK
      differing by no more than the share of joints whose cell moved (a joint's correctness
      can only change with its cell)."""
    import hgpose
    from hgpose.inference import onnx_runtime

    monkeypatch.setenv("HGPOSE_CPU_BF16", bf16)
    split = Store.open(synth_store).split("val")
    crops, keypoints = np.array(split.images), torch.from_numpy(np.array(split.keypoints))
    est = hgpose.load(trained["run"], device="cpu")
    assert est.precision == ("bf16" if bf16 == "1" else "fp32")
    onnx = est.precision == "fp32" and onnx_runtime.available()
    assert est.engine == ("onnxruntime" if onnx else "torch")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and not n.endswith(".bn1")  # bn1: on a sum
                   for n, m in est.model.named_modules())
    fast, reference = est.crop_heatmaps(crops), _eager_fp32(trained["run"], crops, est.mean_rgb)

    targets, _ = ThesisCodec().encode_torch(keypoints)        # thesis PCK compares argmaxes
    pck_fast, pck_ref = (thesis_pck(h, targets, keypoints[..., 2])["all"] for h in (fast, reference))
    moved = argmax_2d(fast).ne(argmax_2d(reference)).any(-1)                   # [N, 17]
    counted = keypoints[..., 2] > 0
    moved_share = (moved & counted).sum(1) / counted.sum(1).clamp(min=1)       # per image
    (xy_fast, _), (xy_ref, _) = est.codec.decode_torch(fast), est.codec.decode_torch(reference)
    err_fast, err_ref = ((xy - keypoints[..., :2]).norm(dim=-1)[counted].mean().item() for xy in (xy_fast, xy_ref))
    print(f"precision {est.precision}: PCK {_mean(pck_fast):.4f} vs fp32 {_mean(pck_ref):.4f}; cells moved "
          f"{moved[counted].float().mean():.2%}; error to truth {err_fast:.2f} vs {err_ref:.2f} px")
    assert abs(_mean(pck_fast) - _mean(pck_ref)) <= moved_share[pck_ref[1]].mean().item() + 1e-9
    assert err_fast == pytest.approx(err_ref, rel=0.02)
    if est.precision == "fp32":
        d = (fast - reference).abs().max().item()
        assert d <= 1e-3 * reference.abs().max().item()          # float rounding, not bf16's 1e-2
        decided = _decision_margin(reference) > 2 * d            # [N, 17]: no tie within d
        assert torch.equal(xy_fast[decided], xy_ref[decided])
    else:
        cell = fast.flatten(2).argmax(-1, keepdim=True)
        picked, best = reference.flatten(2).gather(-1, cell).squeeze(-1), reference.flatten(2).amax(-1)
        assert ((best - picked) <= 0.05 * best.abs()).all()


def _eager_fp32(run, crops: np.ndarray, mean_rgb) -> torch.Tensor:
    """The plain network: eager, NCHW, fp32, BatchNorm unfolded; last-stack heatmaps."""
    from hgpose.inference.forward import to_input

    plain, _ = load_network(run / "checkpoints" / "best.safetensors")
    with torch.inference_mode():
        x = to_input(torch.from_numpy(crops), torch.tensor(mean_rgb), "cpu", channels_last=False)
        return plain.eval()(x)[:, -1].float()


def _decision_margin(heatmaps: torch.Tensor) -> torch.Tensor:
    """[N, J]: how far each map is from changing its decoded keypoint: the gap between its
    best and second-best cell, and (the quarter-pixel shift) between the argmax's left and
    right and its upper and lower neighbours."""
    n, j, h, w = heatmaps.shape
    top2 = heatmaps.flatten(2).topk(2, dim=-1).values
    margin = top2[..., 0] - top2[..., 1]
    x, y = argmax_2d(heatmaps).unbind(-1)
    padded = torch.nn.functional.pad(heatmaps, (1, 1, 1, 1))
    at = lambda dx, dy: padded.flatten(2).gather(-1, ((y + 1 + dy) * (w + 2) + x + 1 + dx)[..., None])[..., 0]
    return torch.minimum(margin, torch.minimum((at(1, 0) - at(-1, 0)).abs(), (at(0, 1) - at(0, -1)).abs()))


def _mean(pck: tuple) -> float:
    values, valid = pck
    return float(values[valid].mean())
