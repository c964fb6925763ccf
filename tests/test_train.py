"""`hgpose train`: configs, one real step, exact resume, checkpoints, NaN stop, logs, recipes.

Networks here are 8 features wide and stores a dozen crops, so the whole file runs in
about a minute on 2 CPU cores.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hgpose.errors import HgposeError
from hgpose.runs import weights as weights_file
from hgpose.inference import load_network
from hgpose.train import TrainingInterrupted, train
from hgpose.runs import state as ckpt
from hgpose import config as cfg
from hgpose.models import build_model
from hgpose.train.recipes import PosePhase, make_optimizer, scheduled_lr
from builders import make_store

# 8 features; 4 training and 2 validation crops unless a test says otherwise.
TINY = ["model.features=8", "data.workers=0", "progress=false", "tensorboard=false",
        "data.val_batch_size=4", "data.train_limit=4", "data.val_limit=2"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: OpenMP synchronisation costs more than a second thread gains, and a
    busy second core makes it ~20x slower. Restored after this file."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("tiny") / "store")


def weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return weights_file.load_weights(run / "checkpoints" / f"{name}.safetensors")[0]


# --- config --------------------------------------------------------------------------------

def test_thesis_preset_is_spec_section_4():
    c = cfg.preset("thesis")
    assert (c.batch_size, c.epochs, c.data.shuffle, c.augment.enabled) == (16, 100, True, False)
    assert (c.model.name, c.model.features, c.target.codec, c.target.weighted) == ("thesis", 256, "thesis", False)
    o = c.optim
    assert (o.name, o.lr, o.alpha, o.momentum, o.weight_decay) == ("rmsprop", 2.5e-4, 0.99, 0.0, 0.0)
    assert (o.schedule, o.plateau_factor, o.plateau_patience, o.min_lr) == ("plateau", 0.2, 5, 5e-5)
    ae = cfg.preset("thesis-ae")
    assert ae.recipe == "thesis-ae" and ae.model.autoencoder and ae.epochs == 20
    assert (ae.ae.epochs, ae.ae.batch_size, ae.ae.noise) == (100, 16, 0.1)
    assert (ae.ae.optim.name, ae.ae.optim.lr, ae.ae.optim.momentum) == ("sgd", 5e-4, 0.9)
    assert (ae.ae.optim.step_every, ae.ae.optim.step_gamma) == (25, 0.5)
    n = cfg.preset("newell")
    assert (n.model.stacks, n.target.codec, n.target.all_stacks, n.augment.enabled, n.flip_test) == (
        8, "gaussian", True, True, True)


def test_overrides_parse_to_field_types_and_round_trip(tmp_path):
    c = cfg.resolve("newell", ["model.stacks=2", "optim.lr=1e-3", "augment.enabled=no",
                               "optim.step_epochs=5,9", "precision=fp32", "ae.optim.momentum=0.5"],
                    epochs=3, batch_size=4)
    assert c.model.stacks == 2 and isinstance(c.model.stacks, int)
    assert c.optim.lr == 1e-3 and c.augment.enabled is False
    assert c.optim.step_epochs == (5, 9) and c.precision == "fp32" and c.ae.optim.momentum == 0.5
    assert (c.epochs, c.batch_size) == (3, 4)
    cfg.save(c, tmp_path / "config.json")
    assert cfg.load(tmp_path / "config.json") == c


@pytest.mark.parametrize("assignment, message", [
    ("model.width=3", "unknown config key; valid keys: preset, recipe, seed"),
    ("model=3", "unknown config key"),
    ("nope.features=3", "unknown config key"),
    ("model.features=wide", "not a valid int"),
    ("augment.enabled=maybe", "not a valid bool"),
    ("optim.name=lbfgs", "optim.name='lbfgs': choose one of rmsprop, adam, sgd"),
    ("model.features", "expected key=value"),
])
def test_bad_overrides_are_clear_errors(assignment, message):
    with pytest.raises(HgposeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cfg.resolve("thesis", [assignment])


def test_unknown_key_in_config_json_is_an_error(tmp_path):
    data = cfg.to_dict(cfg.preset("thesis"))
    data["optim"]["lr_typo"] = 1
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(HgposeError, match=r"config.json.optim: unknown key\(s\) lr_typo"):
        cfg.load(tmp_path / "config.json")


def test_warmup_and_step_decay_schedule():
    o = cfg.OptimConfig(lr=1.0, schedule="step", warmup_steps=4, step_epochs=(2, 4), step_gamma=0.1)
    assert [scheduled_lr(o, 0, s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert scheduled_lr(o, 2, 100) == pytest.approx(0.1) and scheduled_lr(o, 5, 100) == pytest.approx(0.01)
    ae = cfg.AEConfig().optim  # halved every 25 epochs
    assert [scheduled_lr(ae, e, 10**6) for e in (0, 24, 25, 50)] == [5e-4, 5e-4, 2.5e-4, 1.25e-4]
    plateau = cfg.OptimConfig(lr=1.0, schedule="plateau")
    assert scheduled_lr(plateau, 0, 0) is None  # the plateau scheduler owns the lr


def test_linear_schedule_falls_to_min_lr_at_the_last_epoch():
    o = cfg.OptimConfig(lr=1.0, schedule="linear", warmup_steps=2, min_lr=0.1)
    at = [scheduled_lr(o, int(p), 10**6, position=p, epochs=4) for p in (0, 1, 2.5, 3.6, 4)]
    assert at == pytest.approx([1.0, 0.75, 0.375, 0.1, 0.1])  # floored at min_lr
    assert scheduled_lr(o, 0, 0, position=0, epochs=4) == pytest.approx(0.5)  # warm-up on top
    with pytest.raises(ValueError, match="linear schedule needs"):
        scheduled_lr(o, 0, 10)


def test_thesis_plateau_schedule_drops_lr_by_0_2_after_5_flat_epochs_never_below_5e_5():
    """SPEC §4 on a made-up sequence of validation PCKs, through the scheduler the loop builds."""
    from hgpose.train.loop import plateau_scheduler

    optim = cfg.preset("thesis").optim
    assert all(scheduled_lr(optim, epoch, 10**6) is None for epoch in range(100))  # nothing else sets it
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], optim)
    plateau = plateau_scheduler(optimizer, optim, PosePhase.mode)
    val_pck = [0.10, 0.20,                          # epochs 1-2: improving
               0.19, 0.19, 0.19, 0.19,              # 3-6: four flat epochs ...
               0.25,                                # 7: ... an improvement starts the count again
               0.25002, 0.24, 0.24, 0.24, 0.24,     # 8-12: five flat (+0.00002 is below the 1e-4 threshold)
               0.24,                                # 13: the 6th: lr x 0.2 = 5e-5
               0.24, 0.24, 0.24, 0.24, 0.24, 0.24,  # 14-19: six more, a second drop would give 1e-5 ...
               0.24]                                # ... but min_lr holds it at 5e-5
    lrs = []
    for pck in val_pck:
        plateau.step(pck)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([2.5e-4] * 12 + [5e-5] * 8, rel=1e-9)
    assert plateau_scheduler(optimizer, cfg.preset("newell").optim, "max") is None  # step schedule


# --- one real step -------------------------------------------------------------------------

def test_one_step_on_real_coco_crops_lowers_the_loss(coco_sample_store):
    torch.manual_seed(0)
    config = cfg.resolve("thesis", ["model.features=16"])
    from hgpose.data.store import Store

    split = Store.open(coco_sample_store).split("train")
    images = torch.from_numpy(np.array(split.images[:8]))
    keypoints = torch.from_numpy(np.array(split.keypoints[:8]))
    phase = PosePhase(config, torch.device("cpu"), torch.from_numpy(Store.open(coco_sample_store).mean_rgb))
    model = build_model(config.model)
    optimizer = make_optimizer(model.parameters(), config.optim)
    x, kps = phase.inputs((images, keypoints, None), None, train=False)

    def loss() -> torch.Tensor:
        return phase.loss_of(model(x), kps)

    before = loss()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < 0.9 * before.item(), (before.item(), after.item())


# --- resume --------------------------------------------------------------------------------

def _stop_at(global_step: int, how: str):
    def on_step(info: dict) -> bool:
        if info["global_step"] == global_step:
            if how == "crash":  # an uncaught error: nothing is saved at this step
                raise RuntimeError("simulated crash")
            return True         # a stop request: state saved after this step
        return False
    return on_step


def test_interrupted_and_resumed_run_ends_with_identical_weights(store, tmp_path):
    """6 crops, batch 2 -> 3 steps per epoch; 2 epochs; augmentation on for random draws."""
    overrides = TINY + ["data.train_limit=6", "augment.enabled=true", "save_every_steps=1",
                        "deterministic=true"]
    kwargs = dict(preset="thesis", epochs=2, batch_size=2, overrides=overrides)
    full = train(store, tmp_path / "full", **kwargs)

    # Stopped (Ctrl-C style) inside epoch 1, then crashed inside epoch 2, resumed twice.
    with pytest.raises(TrainingInterrupted, match="after step 2"):
        train(store, tmp_path / "cut", **kwargs, on_step=_stop_at(2, "stop"))
    state = ckpt.load_state(tmp_path / "cut" / "checkpoints" / "state.pt")
    assert (state["progress"]["epoch"], state["progress"]["step"]) == (0, 2)
    with pytest.raises(HgposeError, match="saved mid-epoch by 1 process.* batch size 2"):
        train(store, tmp_path / "cut", resume=True, batch_size=4)
    assert cfg.load(tmp_path / "cut" / "config.json").batch_size == 2  # left as it was
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(store, tmp_path / "cut", resume=True, on_step=_stop_at(5, "crash"))
    resumed = train(store, tmp_path / "cut", resume=True)

    for name in ("last", "best", "epoch_001"):
        a, b = weights(tmp_path / "full", name), weights(tmp_path / "cut", name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    drop_time = lambda h: [{k: v for k, v in row.items() if k not in ("img_per_s", "seconds")} for row in h]
    assert drop_time(resumed["history"]) == drop_time(full["history"])


def test_resume_can_extend_the_run_and_rejects_a_reused_run_dir(store, tmp_path):
    run = tmp_path / "run"
    train(store, run, epochs=1, batch_size=4, overrides=TINY)
    with pytest.raises(HgposeError, match="already holds a run.*--resume"):
        train(store, run, epochs=1, overrides=TINY)
    summary = train(store, run, resume=True, epochs=2)
    assert summary["epochs"] == 2 and [r["epoch"] for r in summary["history"]] == [1, 2]
    assert cfg.load(run / "config.json").epochs == 2
    with pytest.raises(HgposeError, match="holds no run to resume"):
        train(store, tmp_path / "empty", resume=True)


# --- checkpoints ---------------------------------------------------------------------------

def test_missing_and_corrupt_checkpoints_are_clear_errors(store, tmp_path):
    run = tmp_path / "run"
    train(store, run, epochs=1, batch_size=4, overrides=TINY)
    state = run / "checkpoints" / "state.pt"
    last = run / "checkpoints" / "last.safetensors"

    with pytest.raises(HgposeError, match=f"--init {tmp_path / 'nope.safetensors'}: not found"):
        train(store, tmp_path / "other", epochs=1, overrides=TINY, init=tmp_path / "nope.safetensors")
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    with pytest.raises(HgposeError, match=f"{last}: not a readable safetensors checkpoint"):
        load_network(last)
    state.write_bytes(b"this is not a checkpoint")
    with pytest.raises(HgposeError, match=f"{state}: not a readable training state"):
        train(store, run, resume=True, epochs=2)


class _Payload:
    """Pickles to a call that creates a file: proof of code execution at load time."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_state_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "state.pt"
    torch.save({"format_version": 1, "evil": _Payload(marker)}, path)
    with pytest.raises(HgposeError, match="not a readable training state"):
        ckpt.load_state(path)
    assert not marker.exists()
    # The same file through plain pickle would have run it: the test's payload is real.
    with open(path, "rb") as f:
        torch.load(f, weights_only=False)
    assert marker.exists()


def test_init_loads_weights_strictly_and_explains_a_mismatch(store, tmp_path):
    model = build_model(cfg.ModelConfig(name="thesis", features=8))
    path = tmp_path / "init.safetensors"
    weights_file.save_weights(path, model, weights_file.weights_metadata(cfg.ModelConfig(features=8), [0, 0, 0], 0, {}, "x"))
    rebuilt, meta = load_network(path)
    assert meta["model"]["features"] == 8
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))
    with pytest.raises(HgposeError, match=r"weights do not fit this model \(shape mismatch"):
        train(store, tmp_path / "run", epochs=1, overrides=TINY + ["model.features=16"], init=path)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(store, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(store, run, epochs=1, batch_size=2, overrides=TINY)
    good_state = (run / "checkpoints" / "state.pt").read_bytes()
    good_last = (run / "checkpoints" / "last.safetensors").read_bytes()

    original = PosePhase.train_loss
    calls = []

    def poisoned(self, *args, **kwargs):
        loss, n = original(self, *args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 2 else loss), n

    monkeypatch.setattr(PosePhase, "train_loss", poisoned)
    with pytest.raises(HgposeError, match=r"loss became nan in epoch 2 at step 2; training stopped"):
        train(store, run, resume=True, epochs=2)
    assert (run / "checkpoints" / "state.pt").read_bytes() == good_state
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == good_last
    assert not (run / "checkpoints" / "epoch_002.safetensors").exists()


# --- logs and recipes ----------------------------------------------------------------------

def test_run_directory_holds_config_csv_tensorboard_and_checkpoints(store, tmp_path):
    run = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith("tensorboard")]
    summary = train(store, run, epochs=2, batch_size=4, overrides=overrides)
    assert cfg.load(run / "config.json") == cfg.resolve("thesis", overrides, epochs=2, batch_size=4)
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "val_loss", "val_pck", "val_pck_visible", "val_pck_limbs", "lr",
            "img_per_s"} <= set(rows[0])
    assert list((run / "tb").glob("events.out.tfevents.*"))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.safetensors", "epoch_001.safetensors", "epoch_002.safetensors",
                     "last.safetensors", "state.pt"]
    assert summary["best_epoch"] in (1, 2) and 0 <= summary["best"] <= 1
    _, meta = weights_file.load_weights(run / "checkpoints" / "best.safetensors")
    assert meta["epoch"] == summary["best_epoch"] and meta["mean_rgb"] == pytest.approx([0.41, 0.374, 0.354])
    assert meta["metrics"]["val_pck"] == summary["best"]


def test_newell_recipe_runs_with_stacks_flip_test_and_augmentation(store, tmp_path):
    # Newell's stem is 64-128 channels wide whatever `features` is: one step on 2 crops.
    summary = train(store, tmp_path / "run", preset="newell", epochs=1, batch_size=2,
                    overrides=TINY + ["model.stacks=2", "data.train_limit=2", "data.val_limit=1"])
    row = summary["history"][0]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_pck"])
    assert row["lr"] == pytest.approx(1e-3 / 1000)  # first of 1,000 warm-up steps
    model, meta = load_network(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert meta["model"]["stacks"] == 2 and model(torch.zeros(1, 3, 256, 256)).shape == (1, 2, 17, 64, 64)


def test_linear_schedule_in_the_loop_decays_per_step_over_the_run(store, tmp_path):
    # 8 crops in batches of 4: 2 steps an epoch; the last steps sit at 0.5 and 1.5 of 2 epochs.
    summary = train(store, tmp_path / "run", epochs=2, batch_size=4,
                    overrides=TINY + ["optim.schedule=linear", "data.train_limit=8"])
    lrs = [row["lr"] for row in summary["history"]]
    assert lrs == pytest.approx([2.5e-4 * 0.75, 2.5e-4 * 0.25])


def test_thesis_ae_pretrains_on_saved_latents_then_fine_tunes(store, tmp_path):
    base = tmp_path / "thesis"
    train(store, base, epochs=1, batch_size=4, overrides=TINY)
    with pytest.raises(HgposeError, match="thesis-ae needs --init"):
        train(store, tmp_path / "no-init", preset="thesis-ae", epochs=1, overrides=TINY)
    run = tmp_path / "ae"
    init = base / "checkpoints" / "best.safetensors"
    summary = train(store, run, preset="thesis-ae", epochs=1, batch_size=2, init=init,
                    overrides=TINY + ["ae.epochs=2", "ae.batch_size=4"])
    latents = np.load(run / "ae" / "latents" / "train.npy", mmap_mode="r")
    assert latents.shape == (4, 8, 4, 4) and np.abs(latents).sum() > 0
    assert np.load(run / "ae" / "latents" / "val.npy").shape == (2, 8, 4, 4)
    assert summary["ae"]["epochs"] == 2 and summary["ae"]["metric"] == "val_loss"
    assert (run / "ae" / "metrics.csv").exists() and summary["epochs"] == 1
    model, meta = load_network(run / "checkpoints" / "last.safetensors")
    assert meta["model"]["autoencoder"] and model.hourglass.autoencoder is not None
    # Fine-tuning started from the thesis weights: the stem moved only one epoch away.
    base_w = weights(base, "best")
    tuned = weights(run, "last")
    assert set(base_w) < set(tuned) and any(k.startswith("hourglass.autoencoder.") for k in tuned)


def test_sampler_shards_disjointly_and_resumes_mid_epoch():
    from hgpose.train.data import ResumableSampler, ShardSampler

    data = list(range(10))
    ranks = [ResumableSampler(data, shuffle=True, seed=3, rank=r, world=2) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(4)
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == 5 and sorted(a + b) == data        # disjoint, complete
    ranks[0].set_epoch(5)
    assert list(ranks[0]) != a                                      # a new order each epoch
    ranks[0].set_epoch(4, skip=2)
    assert list(ranks[0]) == a[2:] and len(ranks[0]) == 3           # resume position
    shards = [list(ShardSampler(7, r, 2)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(7))          # validation: no padding
