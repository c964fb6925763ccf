"""Models with a name: shipped in the package, or downloaded from a URL into a cache on first
use, checked by sha256, with one line naming the file to place by hand when there is no network."""

from __future__ import annotations

import pytest
from builders import make_run

import hgpose
from hgpose.errors import HgposeError
from hgpose.io import file_sha256
from hgpose.runs import pretrained, resolve_checkpoint


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A tiny trained-network file served at a file:// URL, registered as "tiny", the cache empty."""
    run = make_run(tmp_path / "run")
    weights = run / "checkpoints" / "best.safetensors"
    entry = pretrained.Pretrained("tiny-v1.safetensors", file_sha256(weights), url=weights.as_uri())
    monkeypatch.setitem(pretrained.PRETRAINED, "tiny", entry)
    monkeypatch.setenv("HGPOSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return weights, entry


def test_a_registered_model_is_downloaded_once_checked_and_loaded_by_name(served, tmp_path):
    weights, entry = served
    est = hgpose.load("tiny", device="cpu")
    cached = tmp_path / "cache" / "tiny-v1.safetensors"
    assert est.checkpoint == str(cached) and cached.read_bytes() == weights.read_bytes()
    weights.unlink()                                   # the second use reads the cache
    assert resolve_checkpoint("tiny") == (cached, None)


def test_a_damaged_download_or_cached_file_is_refused_by_its_sha256(served, tmp_path, monkeypatch):
    weights, entry = served
    monkeypatch.setitem(pretrained.PRETRAINED, "tiny", pretrained.Pretrained(entry.file, "0" * 64, entry.url))
    with pytest.raises(HgposeError, match="gave a file whose sha256 .* is not the registered 0000000000000000…; nothing was kept"):
        hgpose.load("tiny", device="cpu")
    assert not (tmp_path / "cache" / "tiny-v1.safetensors").exists()
    (tmp_path / "cache").mkdir(exist_ok=True)
    (tmp_path / "cache" / "tiny-v1.safetensors").write_bytes(b"not the model")
    with pytest.raises(HgposeError, match=r"tiny-v1.safetensors: sha256 .* is not the one registered for model 'tiny' .* delete it to download it again"):
        hgpose.load("tiny", device="cpu")


def test_without_network_the_message_names_the_file_to_place_by_hand(served, tmp_path, monkeypatch):
    _, entry = served
    offline = pretrained.Pretrained(entry.file, entry.sha256, url="http://127.0.0.1:9/tiny-v1.safetensors")
    monkeypatch.setitem(pretrained.PRETRAINED, "tiny", offline)
    with pytest.raises(HgposeError) as e:
        hgpose.load("tiny", device="cpu")
    message = str(e.value)
    assert message.startswith("model 'tiny': cannot download http://127.0.0.1:9/tiny-v1.safetensors")
    assert f"place it at {tmp_path / 'cache' / 'tiny-v1.safetensors'} (sha256 {entry.sha256})" in message
    assert "\n" not in message


def test_a_folder_of_that_name_wins_and_an_unknown_name_lists_the_registered_ones(served, tmp_path):
    make_run(tmp_path / "tiny")                        # a run folder called "tiny" in the current directory
    assert resolve_checkpoint("tiny")[1] is not None
    with pytest.raises(HgposeError, match=r"nonesuch: not found — give a run directory .* or a registered model name \(.*tiny"):
        resolve_checkpoint("nonesuch")


@pytest.mark.parametrize("dtype, rel", [("fp16", 2 ** -11), ("bf16", 2 ** -8)])
def test_a_packed_model_is_half_the_size_and_predicts_as_the_full_one_within_its_rounding(tmp_path, dtype, rel):
    import numpy as np
    import torch

    from hgpose.runs.weights import load_weights

    weights = make_run(tmp_path / "run", random_batchnorm=True) / "checkpoints" / "best.safetensors"
    packed = pretrained.pack(weights, tmp_path / f"tiny-{dtype}.safetensors", dtype)
    tensors, metadata = load_weights(packed)
    full, full_meta = load_weights(weights)
    assert metadata == dict(full_meta, stored_as=dtype)
    assert all(tensors[k].dtype == (torch.float16 if dtype == "fp16" else torch.bfloat16)
               for k in tensors if full[k].is_floating_point())
    # every weight is the full one rounded to the half format: within half a unit in its last place
    for k in full:
        if full[k].is_floating_point():
            assert torch.allclose(tensors[k].float(), full[k], rtol=rel, atol=1e-7 if dtype == "fp16" else 0), k
    float_bytes = sum(t.nbytes for t in full.values() if t.is_floating_point())
    assert sum(t.nbytes for t in tensors.values() if t.is_floating_point()) * 2 == float_bytes
    # the file shrinks by those bytes, give or take its JSON header (names, offsets, "stored_as")
    assert abs(weights.stat().st_size - packed.stat().st_size - float_bytes / 2) < 1024
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    full_net = hgpose.load(weights, device="cpu", precision="fp32")
    a = full_net.heatmaps(image)
    b = hgpose.load(packed, device="cpu", precision="fp32").heatmaps(image)
    assert a.dtype == b.dtype == np.float32
    # Each weight moves by <= rel of itself; independent roundings add up like a random walk
    # over the convolutions they pass through, so the heatmaps move by about sqrt(convs) * rel
    # of their range (measured about 2.5 rel here); a weight lost or mis-cast moves them by ~1.
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in full_net.model.modules())
    assert np.abs(a - b).max() <= 2 * convs ** 0.5 * rel * np.abs(a).max()


def test_pack_refuses_an_unknown_precision(tmp_path):
    weights = make_run(tmp_path / "run") / "checkpoints" / "best.safetensors"
    with pytest.raises(HgposeError, match="--dtype fp8: choose one of fp16, bf16"):
        pretrained.pack(weights, tmp_path / "x.safetensors", "fp8")
