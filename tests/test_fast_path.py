"""The fast inference path (hgpose/inference/fast.py): folding is exact, the precision rule
follows the CPU's features (forced here with HGPOSE_CPU_BF16), and every command records
what ran. The accuracy of a trained network under it: tests/test_train_learning.py."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hgpose.errors import HgposeError
from hgpose.inference.device import autocast_dtype
from hgpose.inference.fast import fold_batchnorm, prepare_network
from hgpose.models import StackedHourglass, ThesisNetwork

CPU = torch.device("cpu")


def _with_trained_looking_batchnorm(model: nn.Module) -> nn.Module:
    """Untrained BatchNorms are the identity in eval mode; give them statistics and affine
    parameters far from it, so folding them wrongly would show."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.3, 3.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.2, 0.2, generator=g)
    return model.eval()


@pytest.mark.parametrize("build", [lambda: ThesisNetwork(features=16),
                                   lambda: StackedHourglass(num_stacks=2, features=16)],
                         ids=["thesis", "newell-2"])
def test_folding_batchnorm_keeps_the_outputs(build):
    torch.manual_seed(0)
    model = _with_trained_looking_batchnorm(build())
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(2, 3, 256, 256)
    with torch.inference_mode():
        expected = model(x)
        folded = fold_batchnorm(copy.deepcopy(model))
        got = folded(x)
    left = [n for n, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    # only each Residual's bn1 stays (it normalises the block's input, a sum of two branches)
    assert left and all(n.endswith(".bn1") for n in left)
    assert len(left) < before / 2
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_folding_refuses_a_training_model():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(ThesisNetwork(features=8).train())


def test_a_folded_bn_keeps_its_name_for_capture_hooks():
    from hgpose.models import capture

    model = _with_trained_looking_batchnorm(ThesisNetwork(features=8))
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode(), capture(model, ["stem.bn"]) as out:
        model(x)
    expected = out["stem.bn"]
    fold_batchnorm(model)
    with torch.inference_mode(), capture(model, ["stem.bn"]) as out:
        model(x)
    assert torch.allclose(out["stem.bn"], expected, atol=1e-4)


# --- which precision runs --------------------------------------------------------------------

def test_auto_is_bf16_only_on_a_cpu_that_has_it(monkeypatch):
    monkeypatch.setenv("HGPOSE_CPU_BF16", "1")
    assert autocast_dtype("auto", CPU) == torch.bfloat16
    assert autocast_dtype("bf16", CPU) == torch.bfloat16
    assert autocast_dtype("fp32", CPU) is None
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")       # the fallback: fp32, silently
    assert autocast_dtype("auto", CPU) is None
    assert autocast_dtype("fp32", CPU) is None


def test_bf16_on_a_cpu_without_it_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    with pytest.raises(HgposeError, match=r"precision bf16: this CPU has no native bf16.*auto or fp32"):
        autocast_dtype("bf16", CPU)
    with pytest.raises(HgposeError, match="choose one of auto, bf16, fp16, fp32"):
        autocast_dtype("fp8", CPU)


@pytest.mark.parametrize("flag, expected", [("1", "bf16"), ("0", "fp32")])
def test_prepare_network_runs_in_the_precision_it_reports(monkeypatch, flag, expected):
    monkeypatch.setenv("HGPOSE_CPU_BF16", flag)
    model, autocast, precision = prepare_network(ThesisNetwork(features=8), CPU)
    assert precision == expected and not model.training
    assert next(model.parameters()).dtype == torch.float32       # weights stay fp32
    with torch.inference_mode(), autocast():
        out = model(torch.randn(1, 3, 256, 256).contiguous(memory_format=torch.channels_last))
    assert out.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)
    conv = model.stem.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


# --- the commands record what ran ------------------------------------------------------------

@pytest.fixture
def weights_file(tmp_path):
    from hgpose.config import ModelConfig
    from hgpose.runs.weights import save_weights, weights_metadata

    torch.manual_seed(0)
    model = _with_trained_looking_batchnorm(ThesisNetwork(features=8))
    path = tmp_path / "net.safetensors"
    save_weights(path, model, weights_metadata(ModelConfig(name="thesis", features=8), [0.4] * 3,
                                               epoch=1, metrics={}, preset="thesis"))
    return path


@pytest.mark.parametrize("flag, precision, expected", [
    ("1", "auto", "bf16"), ("0", "auto", "fp32"), ("1", "fp32", "fp32")])
def test_the_estimator_says_its_precision(monkeypatch, weights_file, flag, precision, expected):
    import hgpose

    monkeypatch.setenv("HGPOSE_CPU_BF16", flag)
    monkeypatch.setenv("HGPOSE_ONNXRUNTIME", "0")
    est = hgpose.load(weights_file, device="cpu", precision=precision)
    assert est.precision == expected and f"precision={expected}" in repr(est)
    assert est.engine == "torch"
    heatmaps = est.crop_heatmaps(torch.zeros(2, 256, 256, 3, dtype=torch.uint8))
    assert heatmaps.dtype == torch.float32 and heatmaps.shape == (2, 17, 64, 64)


def test_predict_cli_refuses_bf16_on_a_cpu_without_it(monkeypatch, weights_file, tmp_path, capsys):
    from hgpose.cli import main

    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    image = tmp_path / "person.png"
    from PIL import Image

    Image.new("RGB", (64, 96), (120, 90, 60)).save(image)
    code = main(["predict", str(weights_file), str(image), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--precision", "bf16"])
    err = capsys.readouterr().err
    assert code != 0 and "precision bf16: this CPU has no native bf16" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_the_latents_cache_is_keyed_by_precision(monkeypatch, weights_file, tmp_path):
    """Latents computed in bf16 are not reused for an fp32 run, nor the other way round."""
    from builders import make_store
    from hgpose.data.store import Store
    from hgpose.explain import latents

    monkeypatch.setenv("HGPOSE_CPU_BF16", "1")
    store = Store.open(make_store(tmp_path / "store", 1, 1, 1))
    keys = {}
    for precision in ("auto", "fp32"):
        ckpt = latents.load_checkpoint(weights_file, device="cpu", precision=precision)
        assert ckpt.describe()["precision"] == ckpt.precision
        keys[ckpt.precision] = latents.cache_key(ckpt, store, "train", "hourglass.bottleneck.2", 0)
    assert keys["bf16"]["precision"] == "bf16" and keys["fp32"]["precision"] == "fp32"
    assert {k: v for k, v in keys["bf16"].items() if k != "precision"} == \
        {k: v for k, v in keys["fp32"].items() if k != "precision"}


# --- ONNX Runtime, the fp32 CPU engine -------------------------------------------------------

def test_onnx_runtime_runs_fp32_on_a_cpu_and_matches_pytorch(monkeypatch, weights_file):
    import hgpose

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    crops = torch.randint(0, 256, (3, 256, 256, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    est = hgpose.load(weights_file, device="cpu")
    assert (est.precision, est.engine) == ("fp32", "onnxruntime") and "engine=onnxruntime" in repr(est)
    onnx = est.crop_heatmaps(crops, flip=True)
    torch_est = hgpose.load(weights_file, device="cpu", engine="torch")
    assert torch_est.engine == "torch"
    expected = torch_est.crop_heatmaps(crops, flip=True)
    assert onnx.shape == expected.shape == (3, 17, 64, 64) and onnx.dtype == torch.float32
    assert (onnx - expected).abs().max() < 1e-4


def test_onnx_runtime_is_not_used_where_bf16_is_faster_or_when_turned_off(monkeypatch, weights_file):
    import hgpose

    monkeypatch.setenv("HGPOSE_CPU_BF16", "1")
    assert hgpose.load(weights_file, device="cpu").engine == "torch"           # bf16 in PyTorch
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    monkeypatch.setenv("HGPOSE_ONNXRUNTIME", "0")
    assert hgpose.load(weights_file, device="cpu").engine == "torch"
    with pytest.raises(HgposeError, match="engine 'onnx': choose auto or torch"):
        hgpose.load(weights_file, device="cpu", engine="onnx")


@pytest.mark.parametrize("cache, expected", [("0", ["torch", "auto"]), ("1", ["auto", "auto"])])
def test_predict_leaves_a_few_images_to_pytorch_without_the_graph_cache(monkeypatch, weights_file, tmp_path,
                                                                      cache, expected):
    """Writing the ONNX graph costs seconds: with the graph cache off, predict on fewer than
    ONNX_RUNTIME_FROM images runs PyTorch; with it on, that cost is paid once per network."""
    from PIL import Image

    from hgpose import predict as predict_mod
    from hgpose.inference import load as real_load

    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    monkeypatch.setenv("HGPOSE_ONNX_CACHE", cache)
    engines = []
    monkeypatch.setattr("hgpose.inference.load", lambda *a, **k: engines.append(k["engine"]) or real_load(*a, **k))
    for n in (1, predict_mod.ONNX_RUNTIME_FROM):
        folder = tmp_path / f"in{n}"
        folder.mkdir()
        for i in range(n):
            Image.new("RGB", (48, 64), (100 + i, 90, 60)).save(folder / f"p{i}.png")
        summary = predict_mod.predict(weights_file, [folder], tmp_path / f"out{n}", device="cpu")
        assert len(summary.outcomes) == n and not summary.failed
    assert engines == expected


def test_a_network_onnx_cannot_take_runs_in_pytorch_with_a_note(monkeypatch, weights_file, capsys):
    import hgpose
    from hgpose.inference import onnx_runtime

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")

    def refuse(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator X\n%1 : Float(...) = ... (a whole graph)")

    monkeypatch.setattr(onnx_runtime, "to_onnx", refuse)
    crops = torch.zeros(2, 256, 256, 3, dtype=torch.uint8)
    assert not onnx_runtime.graph_cache().exists()   # nothing cached to fall back on
    est = hgpose.load(weights_file, device="cpu")
    heatmaps = est.crop_heatmaps(crops)
    note = capsys.readouterr().err.strip().splitlines()
    assert note == ["hgpose: note: ONNX Runtime could not run this network (RuntimeError: Unsupported: "
                    "ONNX export of operator X); running it in PyTorch"]
    assert est.engine == "torch"
    expected = hgpose.load(weights_file, device="cpu", engine="torch").crop_heatmaps(crops)
    assert torch.equal(heatmaps, expected)


def test_a_network_working_at_128_exports_and_downsamples_as_area_means():
    from hgpose.inference import onnx_runtime
    from hgpose.models.blocks import to_resolution

    x = torch.rand(2, 3, 256, 256)
    assert torch.allclose(to_resolution(x, 128), torch.nn.functional.interpolate(x, size=(128, 128), mode="area"))
    model = StackedHourglass(num_stacks=1, features=16, resolution=128).eval()
    if onnx_runtime.available():
        import onnxruntime as ort

        session = ort.InferenceSession(onnx_runtime.to_onnx(model, 256), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"input": x.numpy()})
        with torch.inference_mode():
            assert abs(out - model(x).numpy()).max() < 1e-4


def test_onnx_runtime_copy_pads_the_fed_back_heads_and_computes_the_same_heatmaps():
    """The 17-channel heads that feed the next stack get zero channels up to a whole block of
    16 (ONNX Runtime's blocked layout); the copy's heatmaps are the network's, and the
    network itself is untouched."""
    from hgpose.inference import onnx_runtime

    torch.manual_seed(0)
    model = StackedHourglass(num_stacks=3, features=32).eval()
    blocked = onnx_runtime.with_blocked_heads(model)
    assert [p.out_channels for p in blocked.predictions] == [32, 32, 17]
    assert [m.in_channels for m in blocked.merge_predictions] == [32, 32]
    assert [p.out_channels for p in model.predictions] == [17, 17, 17]
    x = torch.rand(2, 3, 256, 256)
    with torch.inference_mode():
        expected = model(x)
        assert torch.allclose(blocked(x), expected, atol=1e-5)
    assert onnx_runtime.with_blocked_heads(ThesisNetwork(features=16).eval()).__class__ is ThesisNetwork
    if onnx_runtime.available():
        import onnxruntime as ort

        graph = onnx_runtime.to_onnx(onnx_runtime._LastStack(blocked), 256)
        (out,) = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
        assert out.shape == (2, 1, 17, 64, 64)
        assert abs(out - expected[:, -1:].numpy()).max() < 1e-4


# --- the ONNX graph cache ------------------------------------------------------------------

def test_the_onnx_graph_is_written_once_and_read_by_the_next_estimator(monkeypatch, weights_file, capsys):
    import hgpose
    from hgpose.inference import onnx_runtime

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    crops = torch.randint(0, 256, (2, 256, 256, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    first = hgpose.load(weights_file, device="cpu")
    expected = first.crop_heatmaps(crops)
    cached = sorted(onnx_runtime.graph_cache().iterdir())
    assert [p.suffix for p in cached] == [".onnx"] and not first.network.cached

    def refuse(*args, **kwargs):
        raise AssertionError("the graph was exported again")

    monkeypatch.setattr(onnx_runtime, "to_onnx", refuse)
    second = hgpose.load(weights_file, device="cpu")
    assert torch.equal(second.crop_heatmaps(crops), expected) and second.network.cached
    assert second.engine == "onnxruntime" and capsys.readouterr().err == ""
    # Other weights are another graph: the key holds the weights' bytes, not only the structure.
    with torch.no_grad():
        second.model.stem.conv.weight.add_(1.0)
    assert onnx_runtime.graph_key(second.model, 256) != onnx_runtime.graph_key(first.model, 256)


def test_a_damaged_cached_graph_is_written_again(monkeypatch, weights_file):
    import hgpose
    from hgpose.inference import onnx_runtime

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    crops = torch.zeros(1, 256, 256, 3, dtype=torch.uint8)
    expected = hgpose.load(weights_file, device="cpu").crop_heatmaps(crops)
    (graph,) = onnx_runtime.graph_cache().iterdir()
    size = graph.stat().st_size
    graph.write_bytes(graph.read_bytes()[: size // 3])          # a copy cut short
    again = hgpose.load(weights_file, device="cpu")
    assert torch.equal(again.crop_heatmaps(crops), expected) and not again.network.cached
    assert graph.stat().st_size == size


def test_the_cache_keeps_the_newest_graphs_and_only_ever_removes_its_own(monkeypatch, tmp_path):
    import os

    from hgpose.inference import onnx_runtime

    monkeypatch.setattr(onnx_runtime, "CACHED_GRAPHS", 2)
    folder = tmp_path / "onnx"
    folder.mkdir()
    (folder / "mine.onnx").write_bytes(b"a user's own graph")
    keys = [f"{i:064x}" for i in range(3)]
    for age, key in enumerate(keys):
        onnx_runtime.remember_graph(folder, key, b"graph " + key.encode())
        os.utime(folder / f"{key}.onnx", (1000 + age, 1000 + age))
    onnx_runtime.remember_graph(folder, "f" * 64, b"newest")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["mine.onnx", f"{keys[2]}.onnx", "f" * 64 + ".onnx"])


@pytest.mark.parametrize("how", ["a file in the way", "a full disk"])
def test_a_cache_that_cannot_be_written_only_costs_the_export(monkeypatch, weights_file, tmp_path, disk_full, how):
    import hgpose
    from hgpose.inference import onnx_runtime

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("HGPOSE_CPU_BF16", "0")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    if how == "a file in the way":
        monkeypatch.setenv("HGPOSE_CACHE", str(blocker))
    else:
        disk_full(after=0)
    est = hgpose.load(weights_file, device="cpu")
    assert est.crop_heatmaps(torch.zeros(1, 256, 256, 3, dtype=torch.uint8)).shape == (1, 17, 64, 64)
    assert est.engine == "onnxruntime" and blocker.read_text() == "not a folder"
    if how == "a full disk":   # nothing half-written left in the cache
        assert list(onnx_runtime.graph_cache().iterdir()) == []


# --- the C allocator (hgpose.cpu.keep_freed_memory) ---------------------------------------

FAULTS = r"""
import resource, sys, torch
from hgpose.cpu import keep_freed_memory
kept = keep_freed_memory()
for _ in range(10):                               # the heap settles (it grew 0-3 times more)
    torch.ones(16 * 2**20).sum()                  # 64 MiB, above malloc's mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 * 2**20).sum()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(code: str, env: dict) -> str:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_kept_memory_ends_the_page_faults_of_large_activations():
    """64 MiB tensors made and freed: with glibc's defaults each is a fresh mmap whose pages
    the kernel faults in one by one (>= 64 MiB / 2 MiB faults even with huge pages); kept, the
    freed memory is reused (the heap may still grow a few times: at most 3 in 20 seen)."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator setting is glibc's")
    plain_kept, plain = _run(FAULTS, {"HGPOSE_KEEP_MEMORY": "0"})
    kept_kept, kept = _run(FAULTS, {})
    assert (plain_kept, kept_kept) == ("False", "True")
    assert int(plain) >= 20 * 32 and int(kept) < int(plain) / 4


STEPS = r"""
import hashlib, torch
from hgpose import thesis
from hgpose.config import resolve
from hgpose.models import build_model
from hgpose.train.recipes import PosePhase
from hgpose.train.step import Trainer
torch.set_num_threads(1)
torch.manual_seed(0)
config = resolve("newell", ["model.stacks=2", "model.features=16", "precision=fp32"], batch_size=4)
phase = PosePhase(config, torch.device("cpu"), torch.tensor(thesis.TRAIN_MEAN_RGB))
trainer = Trainer.build(phase, build_model(config.model).train(), config.optim, config, torch.device("cpu"))
g = torch.Generator().manual_seed(0)
batch = (torch.randint(0, 256, (4, 256, 256, 3), dtype=torch.uint8, generator=g),
         torch.cat([torch.rand(4, 17, 2, generator=g) * 256, torch.full((4, 17, 1), 2.0)], -1), torch.arange(4))
for step in range(3):
    trainer.step(batch, torch.Generator().manual_seed(step))
digest = hashlib.sha256()
for tensor in trainer.model.state_dict().values():
    digest.update(tensor.contiguous().numpy().tobytes())
print(digest.hexdigest())
"""


def test_kept_memory_changes_no_weight():
    """Where memory comes from changes no number: three augmented training steps give
    bit-identical weights with and without it."""
    assert _run(STEPS, {"HGPOSE_KEEP_MEMORY": "0"}) == _run(STEPS, {})
