"""Networks: structure, parameter counts, output contract, latent capture, skip ablation.

Full-size networks are only built (to count parameters) or run once at batch 1; every
other forward pass uses reduced widths and 64x64 inputs so the file stays fast on a CPU.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from hgpose.config import ModelConfig
from hgpose.errors import HgposeError
from hgpose.models import (
    Hourglass,
    LatentAutoencoder,
    Residual,
    StackedHourglass,
    ThesisNetwork,
    UnknownNameError,
    build_model,
    capture,
    skips_disabled,
)
from hgpose.models.capture import capturable

# Derived by hand from the layer lists (docs/models.md) and asserted exactly.
THESIS_PARAMS = 14_526_053
AUTOENCODER_PARAMS = 1_578_994
NEWELL_8_PARAMS = 25_437_960
NEWELL_2_PARAMS = 6_571_170


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These nets are tiny: with 2 threads the OpenMP hand-offs cost more than they save,
    # and on a busy CI machine spinning threads made the file several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def small_networks():
    """(name, model, input size) at reduced width; every network the package builds."""
    torch.manual_seed(0)
    return [
        ("thesis", ThesisNetwork(features=16), 64),
        ("thesis+ae", ThesisNetwork(features=16, autoencoder=True, input_size=64), 64),
        ("newell-1", StackedHourglass(num_stacks=1, features=16), 64),
        ("newell-2", StackedHourglass(num_stacks=2, features=16), 64),
    ]


# --- structure --------------------------------------------------------------------------


def test_thesis_residuals_have_3x3_conv_skips_even_when_widths_match():
    model = ThesisNetwork(features=32)
    residuals = [m for m in model.modules() if isinstance(m, Residual)]
    assert len(residuals) == 3 + 14 + 1  # stem, hourglass, head
    for block in residuals:
        assert isinstance(block.skip, nn.Conv2d)
        assert block.skip.kernel_size == (3, 3) and block.skip.padding == (1, 1)
        assert block.skip.in_channels == block.skip.out_channels == 32
        assert block.conv1.out_channels == block.conv2.out_channels == 16  # mid = out / 2
        assert block.conv2.kernel_size == (3, 3)


def test_newell_residual_skip_is_identity_when_widths_match_else_1x1_conv():
    assert isinstance(Residual(64, 64, skip="identity").skip, nn.Identity)
    widening = Residual(64, 128, skip="identity").skip
    assert isinstance(widening, nn.Conv2d) and widening.kernel_size == (1, 1)

    model = StackedHourglass(num_stacks=2, features=32)
    for hourglass in model.hourglasses:
        for block in hourglass.modules():
            if isinstance(block, Residual):
                assert isinstance(block.skip, nn.Identity)
    assert isinstance(model.stem.res1.skip, nn.Conv2d)  # 64 -> 128
    assert isinstance(model.stem.res2.skip, nn.Identity)  # 128 -> 128
    assert isinstance(model.stem.res3.skip, nn.Conv2d)  # 128 -> features


def test_residual_rejects_unknown_skip_kind():
    with pytest.raises(ValueError, match="conv3x3"):
        Residual(8, 8, skip="conv1x1")


def test_hourglass_layout_thesis_vs_newell():
    thesis = ThesisNetwork(features=16).hourglass
    newell = StackedHourglass(num_stacks=1, features=16).hourglasses[0]
    for hourglass in (thesis, newell):
        assert len(hourglass.skips) == len(hourglass.down) == 4
        assert len(hourglass.up) == 3  # no Residual after the full-resolution addition
    assert len(thesis.bottleneck) == 3
    assert len(newell.bottleneck) == 2  # Newell's low2 + deepest low3


def test_newell_builds_no_merge_layers_for_the_last_stack():
    for stacks in (1, 2, 3):
        model = StackedHourglass(num_stacks=stacks, features=16)
        assert len(model.hourglasses) == len(model.predictions) == stacks
        assert len(model.merge_features) == len(model.merge_predictions) == stacks - 1


# --- parameter counts (full size) -------------------------------------------------------


def test_parameter_counts_full_size():
    thesis = count(ThesisNetwork())
    assert thesis == THESIS_PARAMS
    assert abs(thesis - 14.5e6) < 0.05e6  # the thesis reports 14.5 M

    assert count(LatentAutoencoder()) == AUTOENCODER_PARAMS
    assert count(ThesisNetwork(autoencoder=True)) == THESIS_PARAMS + AUTOENCODER_PARAMS

    newell8 = count(StackedHourglass(num_stacks=8, features=256, num_joints=17))
    assert newell8 == NEWELL_8_PARAMS
    assert abs(newell8 - 25.4e6) <= 0.1e6

    newell2 = count(StackedHourglass(num_stacks=2))
    assert newell2 == NEWELL_2_PARAMS
    assert abs(newell2 - 6.6e6) <= 0.05e6  # SPEC: "2 stacks ~ 6.6 M"


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    for model in (
        StackedHourglass(num_stacks=2, features=32),
        ThesisNetwork(features=16, autoencoder=True, input_size=64),
    ):
        out = model(torch.randn(2, 3, 64, 64))
        out.square().mean().backward()
        unused = [n for n, p in model.named_parameters() if p.grad is None]
        assert unused == [], f"{type(model).__name__} has parameters that never run: {unused}"


# --- forward contract -------------------------------------------------------------------


@pytest.mark.parametrize("index", range(4))
def test_output_shape_is_batch_stacks_joints_quarter_resolution(index):
    name, model, size = small_networks()[index]
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, model.num_stacks, 17, size // 4, size // 4), name
    assert model.num_joints == 17
    if not name.startswith("thesis+ae"):  # the AE's Linear fixes the input size
        with torch.no_grad():
            wide = model(torch.randn(1, 3, 64, 128))
        assert wide.shape == (1, model.num_stacks, 17, 16, 32)


def test_input_size_must_be_a_multiple_of_64():
    with pytest.raises(ValueError, match="multiples of 64"):
        ThesisNetwork(features=8).eval()(torch.randn(1, 3, 96, 96))


def test_channels_last_and_bf16_autocast():
    torch.manual_seed(0)
    for _, model, size in small_networks():
        model.eval()
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            reference = model(x)
            model_cl = model.to(memory_format=torch.channels_last)
            out_cl = model_cl(x.to(memory_format=torch.channels_last))
            torch.testing.assert_close(out_cl, reference, rtol=1e-4, atol=1e-4)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out_bf16 = model(x)
        assert out_bf16.dtype == torch.bfloat16
        assert out_bf16.shape == reference.shape
        error = (out_bf16.float() - reference).abs().max() / reference.abs().max()
        assert error < 0.1


def test_build_model():
    assert isinstance(build_model(ModelConfig(name="thesis", features=8)), ThesisNetwork)
    model = build_model(ModelConfig(name="newell", stacks=2, features=8))
    assert isinstance(model, StackedHourglass) and model.num_stacks == 2
    with pytest.raises(ValueError, match="choose one of thesis, newell"):
        build_model(ModelConfig(name="hrnet"))


class ToyNetwork(torch.nn.Module):
    """A network a contributor adds: one module and one line in MODELS."""

    name = "toy"
    num_stacks = 1
    num_joints = 17
    latent_layer = "conv"

    def __init__(self, features: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, features, 4, stride=4)
        self.head = torch.nn.Conv2d(features, 17, 1)

    @classmethod
    def from_config(cls, config):
        return cls(config.features)

    @staticmethod
    def config_problem(config):
        return None if config.features <= 64 else f"model.features={config.features}: the toy takes at most 64"

    def forward(self, x):
        return self.head(self.conv(x)).unsqueeze(1)


def test_a_registered_model_is_validated_built_trained_and_reloaded(tmp_path, monkeypatch):
    """Adding a model = one class + one registry line: config validation, training and
    every reader of its weights files find it through MODELS alone."""
    from hgpose import config as cfg
    from hgpose.inference import load_network
    from hgpose.models import MODELS
    from hgpose.train import train
    from builders import make_store

    monkeypatch.setitem(MODELS, "toy", ToyNetwork)
    with pytest.raises(HgposeError, match="config model.features=128: the toy takes at most 64"):
        cfg.resolve("thesis", ["model.name=toy", "model.features=128"])
    store = make_store(tmp_path / "store", n_train=6, n_val=2)
    summary = train(store, tmp_path / "run", preset="thesis", epochs=1, batch_size=3,
                    overrides=["model.name=toy", "model.features=8", "data.workers=0", "progress=false",
                               "tensorboard=false"])
    model, metadata = load_network(summary["last"])
    assert isinstance(model, ToyNetwork) and metadata["model"]["name"] == "toy"


# --- latent capture ---------------------------------------------------------------------


def test_capture_thesis_latent_full_size():
    model = ThesisNetwork().eval()
    assert model.latent_layer == "hourglass.bottleneck.2"
    with torch.no_grad(), capture(model, model.latent_layer) as outputs:
        out = model(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 1, 17, 64, 64)
    assert outputs[model.latent_layer].shape == (1, 256, 4, 4)  # 4,096 values
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed


def test_capture_autoencoder_code_and_newell_latent():
    model = ThesisNetwork(features=32, autoencoder=True).eval()  # 256 input -> 4x4 bottleneck
    assert model.latent_layer == "hourglass.autoencoder.code"
    names = [model.latent_layer, model.bottleneck_layer]
    with torch.no_grad(), capture(model, names) as outputs:
        model(torch.randn(2, 3, 256, 256))
    assert outputs["hourglass.autoencoder.code"].shape == (2, 50)
    assert outputs["hourglass.bottleneck.2"].shape == (2, 32, 4, 4)

    newell = StackedHourglass(num_stacks=2, features=16).eval()
    with torch.no_grad(), capture(newell, newell.latent_layer) as outputs:
        newell(torch.randn(1, 3, 64, 64))
    assert newell.latent_layer == "hourglasses.1.bottleneck.1"
    assert outputs[newell.latent_layer].shape == (1, 16, 1, 1)


def test_capture_unknown_layer_names_close_matches_and_leaves_no_hooks():
    model = ThesisNetwork(features=8)
    with pytest.raises(UnknownNameError) as error:
        with capture(model, ["stem.conv", "hourglass.botleneck.2"]):
            pass
    message = str(error.value)
    assert "'hourglass.botleneck.2'" in message and "hourglass.bottleneck.2" in message
    assert isinstance(error.value, HgposeError) and isinstance(error.value, ValueError)
    with pytest.raises(UnknownNameError, match="in ThesisNetwork; its layers are: stem, stem.conv, "):
        with capture(model, "zzz"):
            pass
    assert all(not m._forward_hooks for m in model.modules())


def _expand(outline: str, model: nn.Module) -> set[str]:
    """The names an unknown-layer message stands for: ranges expanded, and the Residual parts
    added under every Residual."""
    layers, _, rest = outline.removeprefix("its layers are: ").partition("; inside each Residual: ")
    found = set()
    for pattern in layers.split(", "):
        names = [""]
        for token in re.findall(r"\{[^}]*\}|[^.]+", pattern):   # {0..3} holds dots itself
            if token.startswith("{"):
                low, high = token[1:-1].split("..")
                options = [str(i) for i in range(int(low), int(high) + 1)]
            else:
                options = [token]
            names = [f"{n}.{o}" if n else o for n in names for o in options]
        found.update(names)
    modules = dict(model.named_modules())
    residuals = {n for n in found if isinstance(modules.get(n), Residual)}
    return found | {n + part for n in residuals for part in rest.split(";")[0].split()}


@pytest.mark.parametrize("model", [ThesisNetwork(features=8), ThesisNetwork(features=8, autoencoder=True),
                                   StackedHourglass(num_stacks=2, features=8)],
                         ids=["thesis", "thesis-ae", "newell-2"])
def test_unknown_layer_lists_every_valid_name(model):
    """Hundreds of names, folded into one line that expands back to exactly the valid ones."""
    with pytest.raises(UnknownNameError) as error:
        with capture(model, "nope"):
            pass
    message = str(error.value)
    assert "\n" not in message and message.endswith(f"; the latent is {model.latent_layer} "
                                                    f"({len(capturable(model))} names in all)")
    if isinstance(model, StackedHourglass):
        assert "hourglasses.{0..1}.skips.{0..3}, hourglasses.{0..1}.down.{0..3}" in message
        assert "merge_features.0, merge_predictions.0" in message
    else:
        assert ("hourglass.skips.{0..3}, hourglass.down.{0..3}, hourglass.bottleneck, "
                "hourglass.bottleneck.{0..2}") in message
    assert "inside each Residual: .bn1 .conv1 .bn2 .conv2 .bn3 .conv3 .skip;" in message
    assert _expand(message[message.index("its layers are: "):], model) == set(capturable(model))


# --- skip ablation ----------------------------------------------------------------------


@pytest.mark.parametrize("network", ["thesis", "newell"])
def test_skips_disabled_changes_output_skips_compute_and_restores(network):
    torch.manual_seed(0)
    if network == "thesis":
        model = ThesisNetwork(features=16).eval()
    else:
        model = StackedHourglass(num_stacks=2, features=16).eval()
    hourglasses = [m for m in model.modules() if isinstance(m, Hourglass)]
    skip_names = [n for n, m in model.named_modules() if n.endswith("skips.0")]
    x = torch.randn(1, 3, 64, 64)

    with torch.no_grad():
        normal = model(x)
        with skips_disabled(model), capture(model, skip_names) as ran:
            assert not any(h.use_skips for h in hourglasses)
            ablated = model(x)
        assert ran == {}  # the skip branches were not even computed
        assert all(h.use_skips for h in hourglasses)
        assert not torch.allclose(normal, ablated)
        torch.testing.assert_close(model(x), normal)

        with pytest.raises(RuntimeError), skips_disabled(model):
            raise RuntimeError("boom")
        assert all(h.use_skips for h in hourglasses)


def test_skips_disabled_needs_an_hourglass():
    with pytest.raises(ValueError, match="no Hourglass"):
        with skips_disabled(nn.Linear(2, 2)):
            pass


# --- initialisation ---------------------------------------------------------------------


def test_thesis_xavier_normal_init():
    torch.manual_seed(0)
    model = ThesisNetwork(features=64, autoencoder=True)
    for name in ("hourglass.skips.0.skip", "stem.res1.conv2", "hourglass.autoencoder.encoder.0"):
        conv = model.get_submodule(name)
        receptive = conv.kernel_size[0] * conv.kernel_size[1]
        fan_in, fan_out = conv.in_channels * receptive, conv.out_channels * receptive
        expected = math.sqrt(2.0 / (fan_in + fan_out))
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05), name
        assert abs(conv.weight.mean().item()) < 0.05 * expected
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            assert torch.count_nonzero(module.bias) == 0


# --- autoencoder ------------------------------------------------------------------------


def test_autoencoder_standalone_and_loadable_into_thesis_network():
    torch.manual_seed(0)
    ae = LatentAutoencoder(channels=256, code=50)
    latents = torch.randn(3, 256, 4, 4)
    code = ae.encode(latents)
    assert code.shape == (3, 50) and (code >= 0).all()
    assert ae.decode(code).shape == (3, 256, 4, 4)
    assert ae(latents).shape == (3, 256, 4, 4)
    assert isinstance(ae.decoder[-2], nn.ConvTranspose2d) and isinstance(ae.decoder[-1], nn.ReLU)
    with pytest.raises(ValueError, match="256x4x4"):
        ae.encode(torch.randn(1, 256, 2, 2))

    small_ae = LatentAutoencoder(channels=16)
    model = ThesisNetwork(features=16, autoencoder=True)
    prefixed = {"hourglass.autoencoder." + k for k in small_ae.state_dict()}
    assert prefixed <= set(model.state_dict())
    model.hourglass.autoencoder.load_state_dict(small_ae.state_dict())
    torch.testing.assert_close(
        model.hourglass.autoencoder.encoder[0].weight, small_ae.encoder[0].weight
    )


def test_onnx_export_with_dynamic_batch():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import io
    import warnings

    model = StackedHourglass(num_stacks=2, features=8).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.randn(1, 3, 64, 64),), buffer, dynamo=False,
            input_names=["image"], output_names=["heatmaps"],
            dynamic_axes={"image": {0: "batch"}, "heatmaps": {0: "batch"}},
        )  # fmt: skip
    session = ort.InferenceSession(buffer.getvalue())
    x = torch.randn(3, 3, 64, 64)
    (out,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=1e-4, atol=1e-4)
