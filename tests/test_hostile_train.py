"""`hgpose train` used as a hostile but realistic user would: changes on --resume (applied and
recorded, or refused before anything is written), the run's store, a full disk at an epoch's
end, values checked where they enter (config, weights-file metadata, torchrun's environment),
and messages that say what happened and what to run next.

Networks are 8 features wide and stores a dozen random crops, as in test_train.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from builders import make_store
from hgpose import config as cfg
from hgpose.cli import main
from hgpose.errors import HgposeError
from hgpose.inference import load_network, load_run
from hgpose.models import build_model
from hgpose.runs import state as ckpt
from hgpose.runs import weights as weights_file
from hgpose.train import loop, train
from hgpose.train.recipes import PosePhase

TINY = ["model.features=8", "data.workers=0", "progress=false", "tensorboard=false",
        "data.val_batch_size=4", "data.train_limit=4", "data.val_limit=2"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("hostile-train") / "store")


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> Path:
    """A run that finished 1 epoch of 2 steps (batch 2); tests resume copies of it (`run`)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(store, run, epochs=1, batch_size=2, overrides=TINY)
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def cli(*args) -> int:
    return main([str(a) for a in args])


def one_line(capsys, *fragments: str) -> str:
    """The command's only stderr line, holding every fragment."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def files(folder: Path) -> dict[str, bytes]:
    """Every file of a folder (but the lock) and its bytes: to prove a command wrote nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".hgpose.lock"}


def state_of(run: Path) -> dict:
    return ckpt.load_state(run / "checkpoints" / "state.pt")


def weights(run: Path, name: str) -> dict[str, torch.Tensor]:
    return weights_file.load_weights(run / "checkpoints" / f"{name}.safetensors")[0]


# --- a change on --resume: refused before anything is written --------------------------------

@pytest.mark.parametrize("change, fragments", [
    (["--set", "optim.name=sgd"], ["optim.name (rmsprop -> sgd)", "optimiser state"]),
    (["--set", "model.features=16"], ["model.features (8 -> 16)", "saved weights"]),
    (["--set", "target.sigma=2"], ["target.sigma (1.0 -> 2.0)", "learned these targets"]),
    (["--set", "target.foreground=20"], ["target.foreground (0.0 -> 20.0)", "learned these targets"]),
    (["--set", "seed=3"], ["seed (0 -> 3)", "random draw"]),
    (["--set", "optim.schedule=step"], ["optim.schedule (plateau -> step)", "schedule state"]),
    (["--set", "flip_test=true"], ["flip_test (False -> True)", '"best" would compare']),
    (["--set", "data.val_limit=3"], ["data.val_limit (2 -> 3)", '"best" would compare']),
    (["--set", "data.train_limit=3"], ["data.train_limit (4 -> 3)", "trained on that many crops"]),
    (["--set", "ae.epochs=3"], ["ae.epochs (100 -> 3)", "pre-training is over"]),
    (["--set", "recipe=thesis-ae", "model.autoencoder=true"], ["recipe (pose -> thesis-ae)", "phases"]),
])
def test_a_refused_change_on_resume_names_the_key_and_writes_nothing(run, store, capsys, change, fragments):
    before = files(run)
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2, *change) == 2
    one_line(capsys, "hgpose train: error: --resume cannot change ", *fragments,
             f"or start a new run from this one's weights with --init {run}")
    assert files(run) == before


def test_the_optimiser_change_that_wedged_a_run_leaves_it_resumable(run, store, capsys):
    """It used to rewrite config.json, crash (KeyError 'dampening') and make every later
    --resume crash too. Through --set or an edit of config.json alike."""
    config = run / "config.json"
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2, "--set", "optim.name=sgd") == 2
    one_line(capsys, "--resume cannot change optim.name (rmsprop -> sgd)")
    edited = json.loads(config.read_text())
    edited["optim"]["name"] = "sgd"
    original = config.read_bytes()
    config.write_text(json.dumps(edited))
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2) == 2
    one_line(capsys, "--resume cannot change optim.name (rmsprop -> sgd)", f"an edit of {config}")
    config.write_bytes(original)
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2) == 0
    assert state_of(run)["progress"]["epoch"] == 2


def test_a_state_from_before_states_recorded_their_config_is_checked_by_its_optimiser(run, store, capsys):
    state_path = run / "checkpoints" / "state.pt"
    state = state_of(run)
    del state["config"], state["format_version"]
    ckpt.save_state(state_path, state)
    edited = json.loads((run / "config.json").read_text())
    edited["optim"]["name"] = "adam"                  # a run wedged before this check existed
    (run / "config.json").write_text(json.dumps(edited))
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2) == 2
    one_line(capsys, f"{state_path}: saved by the rmsprop optimiser, but config.json says optim.name=adam; "
                     "set it back to rmsprop in config.json to resume")


def test_batch_size_and_order_change_only_at_an_epoch_end(store, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(loop.TrainingInterrupted):
        train(store, run, epochs=2, batch_size=2, overrides=TINY, on_step=lambda s: s["global_step"] == 1)
    state = run / "checkpoints" / "state.pt"
    assert cli("train", store, "--out", run, "--resume", "--batch-size", 4) == 2
    one_line(capsys, f"{state}: saved mid-epoch by 1 process(es) with batch size 2; resume it with the same")
    assert cli("train", store, "--out", run, "--resume", "--set", "data.shuffle=false") == 2
    one_line(capsys, "--resume cannot change data.shuffle (True -> False): the state was saved in epoch 1 "
                     "after step 1")
    assert cli("train", store, "--out", run, "--resume") == 0
    # at an epoch end both apply
    assert cli("train", store, "--out", run, "--resume", "--epochs", 3, "--batch-size", 4,
               "--set", "data.shuffle=false") == 0
    assert state_of(run)["batch_size"] == 4 and cfg.load(run / "config.json").data.shuffle is False


# --- a change on --resume: applied and recorded ----------------------------------------------

def test_applied_changes_take_effect_and_config_and_run_json_say_so(run, store):
    changes = ["optim.lr=1e-3", "optim.momentum=0.5", "optim.plateau_factor=0.5", "optim.min_lr=1e-4",
               "augment.enabled=true", "keep_epoch_checkpoints=false"]
    summary = train(store, run, resume=True, epochs=2, batch_size=4, overrides=changes)
    state = state_of(run)
    group = state["optimizer"]["param_groups"][0]
    assert (group["lr"], group["momentum"]) == (1e-3, 0.5)          # the steps ran with them
    assert (state["plateau"]["factor"], state["plateau"]["min_lrs"]) == (0.5, [1e-4])
    assert summary["history"][1]["lr"] == 1e-3
    assert not (run / "checkpoints" / "epoch_002.safetensors").exists()
    config = cfg.load(run / "config.json")
    assert (config.optim.lr, config.optim.momentum, config.batch_size, config.augment.enabled) == (1e-3, 0.5, 4, True)
    assert cfg.from_dict(state["config"]) == config                  # what the state ran under
    assert json.loads((run / "run.json").read_text())["resumed"] == [{"epoch": 1, "step": 0, "changed": {
        "epochs": [1, 2], "batch_size": [2, 4], "keep_epoch_checkpoints": [True, False],
        "augment.enabled": [False, True], "optim.lr": [0.00025, 0.001], "optim.momentum": [0.0, 0.5],
        "optim.plateau_factor": [0.2, 0.5], "optim.min_lr": [5e-05, 0.0001]}}]


def test_a_plain_resume_keeps_the_lr_the_plateau_lowered(run, store):
    state = state_of(run)
    del state["format_version"]
    state["optimizer"]["param_groups"][0]["lr"] = 1e-4              # as after a plateau drop
    ckpt.save_state(run / "checkpoints" / "state.pt", state)
    summary = train(store, run, resume=True, epochs=2)
    assert summary["history"][1]["lr"] == 1e-4
    assert json.loads((run / "run.json").read_text())["resumed"][-1]["changed"] == {"epochs": [1, 2]}


# --- the run's store -------------------------------------------------------------------------

def test_resume_refuses_another_store_and_accepts_the_same_one_moved(run, store, tmp_path, capsys):
    info = json.loads((run / "run.json").read_text())
    assert info["store"]["path"] == str(store.resolve()) and len(info["store"]["manifest_sha256"]) == 64
    other = make_store(tmp_path / "other", n_train=12)               # another dataset
    before = files(run)
    assert cli("train", other, "--out", run, "--resume", "--epochs", 2) == 2
    one_line(capsys, f"{other}: not the store this run trained on ({store.resolve()}, manifest sha256 "
                     f"{info['store']['manifest_sha256'][:12]}...", "give that store as DATA_DIR")
    assert files(run) == before
    moved = Path(shutil.copytree(store, tmp_path / "moved"))
    assert cli("train", moved, "--out", run, "--resume", "--epochs", 2) == 0
    recorded = json.loads((run / "run.json").read_text())["store"]
    assert recorded == {"path": str(moved.resolve()), "manifest_sha256": info["store"]["manifest_sha256"]}


# --- a full disk at an epoch's end -----------------------------------------------------------

def test_a_full_disk_at_an_epoch_end_keeps_the_last_whole_epoch_and_resume_finishes_it(
        store, tmp_path, capsys, disk_full, monkeypatch):
    args = ["--epochs", 2, "--batch-size", 2, "--set", *TINY, "deterministic=true"]
    full = tmp_path / "full"
    train(store, full, epochs=2, batch_size=2, overrides=TINY + ["deterministic=true"])
    run = tmp_path / "run"
    # config.json and run.json, epoch 1's state, metrics.csv, epoch_001, best and last, then
    # epoch 2's state and metrics.csv: its epoch_002.safetensors finds the disk full.
    disk_full(after=9)
    assert cli("train", store, "--out", run, *args) == 2
    one_line(capsys, f"hgpose train: error: {run / 'checkpoints' / 'epoch_002.safetensors'}: No space left on "
                     "device; check that path (permissions, free space), then add --resume to the same command")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.safetensors", "epoch_001.safetensors", "last.safetensors", "state.pt"]
    assert state_of(run)["progress"]["epoch"] == 1
    assert len((run / "metrics.csv").read_text().splitlines()) == 2    # header + epoch 1
    assert not list(run.rglob("*.tmp"))

    monkeypatch.undo()                                                 # space freed
    assert cli("train", store, "--out", run, *args, "--resume") == 0
    for name in ("epoch_002", "last", "best"):
        a, b = weights(full, name), weights(run, name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_full_disk_in_the_first_epoch_keeps_nothing_and_the_same_command_runs(
        store, tmp_path, capsys, disk_full, monkeypatch):
    run = tmp_path / "run"
    args = ["train", store, "--out", run, "--epochs", 1, "--batch-size", 2, "--set", *TINY]
    disk_full(after=3)                                   # config.json, run.json, epoch 1's state
    assert cli(*args) == 2
    one_line(capsys, f"{run / 'metrics.csv'}: No space left on device", "then run the same command again")
    assert not list((run / "checkpoints").iterdir())
    monkeypatch.undo()
    assert cli(*args) == 0


# --- values checked where they enter ---------------------------------------------------------

@pytest.mark.parametrize("setting, message", [
    ("optim.plateau_factor=1.5", "config optim.plateau_factor=1.5: the plateau schedule's lr factor must be "
                                 "between 0 and 1 (exclusive)"),
    ("seed=4294967296", "config seed=4294967296: must be at most 4294967295 (2**32 - 1, numpy's seed range)"),
    ("optim.alpha=5", "config optim.alpha=5.0: must be at least 0 and below 1"),
    ("optim.momentum=1", "config optim.momentum=1.0: must be at least 0 and below 1"),
    ("ae.optim.plateau_factor=0", "config ae.optim.plateau_factor=0.0: the plateau schedule's lr factor must be "
                                   "between 0 and 1 (exclusive)"),
    ("target.foreground=1e308", "config target.foreground=1e+308: must be between 0 and 1000 (the cpu preset uses 20)"),
    ("target.sigma=1e30", "config target.sigma=1e+30: must be at most 64 heatmap px (the grid is 64 wide)"),
    ("augment.half_body=2", "config augment.half_body=2.0: a probability, between 0 and 1"),
    ("augment.colour=1.5", "config augment.colour=1.5: must be at most 1 (factors 1 ± colour)"),
    ("epochs=0", "config epochs=0: must be at least 1"),
    ("batch_size=-2", "config batch_size=-2: must be at least 1"),
])
def test_bad_config_values_are_one_line_before_anything_is_written(store, tmp_path, capsys, setting, message):
    run = tmp_path / "run"
    assert cli("train", store, "--out", run, "--set", *TINY, setting) == 2
    assert one_line(capsys) == f"hgpose train: error: {message}"
    assert not run.exists()


def test_the_largest_numpy_seed_trains():
    assert cfg.resolve("thesis", ["seed=4294967295"]).seed == 2**32 - 1


def test_a_config_json_with_a_wrong_type_is_one_line(tmp_path):
    data = cfg.to_dict(cfg.preset("thesis"))
    data["optim"]["step_epochs"] = 5                  # not a list: was a TypeError in tuple()
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(HgposeError, match=r"^config optim.step_epochs=5: must be a list of whole numbers$"):
        cfg.load(tmp_path / "config.json")


def _weights_with(tmp_path: Path, damage) -> Path:
    meta = weights_file.weights_metadata(cfg.ModelConfig(features=8), [0.4, 0.4, 0.4], 1, {}, "thesis",
                                         cfg.TargetConfig(codec="gaussian"), ["nose"])
    damage(meta)
    path = tmp_path / "w.safetensors"
    weights_file.save_weights(path, build_model(cfg.ModelConfig(features=8)), meta)
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.update(mean_rgb=[0.4, 0.4]), "metadata mean_rgb=[0.4, 0.4]: must be 3 numbers between 0 and 1"),
    (lambda m: m.update(mean_rgb=["a", "b", "c"]), 'metadata mean_rgb=["a", "b", "c"]: must be 3 numbers'),
    (lambda m: m["model"].update(features="eight"), "metadata model.features='eight': must be a whole number"),
    (lambda m: m["model"].update(resolution=100), "metadata model.resolution=100: choose 64, 128, 192 or 256"),
    (lambda m: m["target"].update(sigma=-1), "metadata target.sigma=-1.0: must be greater than 0"),
    (lambda m: m["target"].update(codec=3), "metadata target.codec=3: must be a string"),
    (lambda m: m.update(model=[8]), "metadata model: expected an object, got list"),
    (lambda m: m["model"].update(width=3), "metadata model: unknown key(s) width"),
    (lambda m: m.pop("mean_rgb"), "has no 'mean_rgb' in its hgpose metadata"),
    (lambda m: m.update(joints="nose"), 'metadata joints="nose": must be a list of COCO-17 joint names'),
    (lambda m: m.update(epoch=-1), "metadata epoch=-1: must be a whole number of at least 0"),
    (lambda m: m.update(preset=["thesis"]), 'metadata preset=["thesis"]: must be a string'),
])
def test_a_weights_file_with_bad_metadata_is_one_line_naming_the_file_and_field(tmp_path, damage, message):
    path = _weights_with(tmp_path, damage)
    with pytest.raises(HgposeError) as error:
        load_run(path)
    assert str(error.value).startswith(f"{path}: {message}")
    assert "\n" not in str(error.value)


def test_a_weights_file_with_good_metadata_loads(tmp_path):
    model, meta = load_network(_weights_with(tmp_path, lambda m: None))
    assert meta["mean_rgb"] == [0.4, 0.4, 0.4] and not model.training


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "two"}, "environment variable WORLD_SIZE='two': must be a whole number of at least 0"),
    ({"RANK": "1"}, "environment variables RANK=1, WORLD_SIZE=1: need 0 <= RANK < WORLD_SIZE"),
    ({"WORLD_SIZE": "0"}, "environment variables RANK=0, WORLD_SIZE=0: need 0 <= RANK < WORLD_SIZE"),
    ({"LOCAL_RANK": "-1"}, "environment variable LOCAL_RANK='-1': must be a whole number of at least 0"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "environment variable MASTER_ADDR is not set, but WORLD_SIZE=2: start "
                                       "the processes with torchrun"),
])
def test_torchrun_variables_are_checked_before_anything(store, tmp_path, capsys, monkeypatch, env, message):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = tmp_path / "run"
    assert cli("train", store, "--out", run, "--set", *TINY) == 2
    one_line(capsys, message)
    assert not run.exists()


def test_data_workers_beyond_the_cores_are_capped():
    cores = len(os.sched_getaffinity(0))
    assert loop.loader_workers(cfg.resolve("thesis", ["data.workers=100000"])) == cores
    assert loop.loader_workers(cfg.resolve("thesis", ["data.workers=0"])) == 0
    # On the CPU the training process reads the crops itself, whatever data.workers says.
    assert loop.loader_workers(cfg.resolve("thesis", ["data.workers=2"]), torch.device("cpu")) == 0
    assert loop.loader_workers(cfg.resolve("thesis", ["data.workers=2"]), torch.device("cuda")) == min(2, cores)


# --- messages that say what happened and what to run -----------------------------------------

@pytest.fixture
def nan_at_step_2(monkeypatch) -> list:
    """The training loss turns NaN at the second step (clear the returned list to count anew)."""
    original, calls = PosePhase.train_loss, []

    def poisoned(self, *args, **kwargs):
        loss, n = original(self, *args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 2 else loss), n

    monkeypatch.setattr(PosePhase, "train_loss", poisoned)
    return calls


def test_a_nan_names_the_settings_that_cause_it_and_only_files_that_exist(store, tmp_path, capsys, nan_at_step_2):
    run = tmp_path / "run"
    assert cli("train", store, "--out", run, "--epochs", 1, "--batch-size", 2,
               "--set", *TINY, "target.foreground=50") == 2
    err = one_line(capsys, "loss became nan in epoch 1 at step 2; training stopped; nothing of this run was saved. "
                           "Settings that can make it diverge: optim.lr=0.00025, target.foreground=50 "
                           "(preset thesis: 0); change them (--set, --precision) and run the command again")
    assert "last.safetensors" not in err

    # saved after step 1, before any weights file: the state is cited, no weights file
    nan_at_step_2.clear()
    assert cli("train", store, "--out", tmp_path / "run2", "--epochs", 1, "--batch-size", 2,
               "--set", *TINY, "target.foreground=50", "save_every_steps=1") == 2
    state = tmp_path / "run2" / "checkpoints" / "state.pt"
    err = one_line(capsys, f"the last good state is {state}. Settings", "add --resume with a lower optim.lr to "
                   "go on from that state; target.foreground cannot change on --resume: start a new run")
    assert "weights:" not in err


def test_a_nan_after_an_epoch_cites_its_state_and_weights(run, store, capsys, nan_at_step_2):
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2, "--set", "optim.lr=1e-3") == 2
    checkpoints = run / "checkpoints"
    one_line(capsys, f"loss became nan in epoch 2 at step 2; training stopped; the last good state is "
                     f"{checkpoints / 'state.pt'} (weights: {checkpoints / 'last.safetensors'}). Settings that can "
                     "make it diverge: optim.lr=0.001; add --resume with a lower optim.lr to go on from that state")


def _double_ctrl_c_at(monkeypatch, global_step: int) -> None:
    """Two SIGINTs after that optimiser step: the second stops the run at once, unsaved."""
    original = loop._Fit.step

    def step(self, epoch, batch):
        result = original(self, epoch, batch)
        if self.progress["global_step"] == global_step:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(loop._Fit, "step", step)


def test_a_double_ctrl_c_says_what_runs_the_training_on(store, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    args = ["train", store, "--out", run, "--epochs", 2, "--batch-size", 2, "--set", *TINY]
    _double_ctrl_c_at(monkeypatch, 1)                      # in epoch 1: nothing saved yet
    assert cli(*args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "hgpose train: interrupted without saving; run the same command again"
    monkeypatch.undo()
    _double_ctrl_c_at(monkeypatch, 3)                      # in epoch 2: epoch 1 saved
    assert cli(*args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("hgpose train: interrupted without saving; add --resume to the same command to continue "
                       "from the last saved state")
    monkeypatch.undo()
    assert cli(*args, "--resume") == 0
    assert state_of(run)["progress"]["epoch"] == 2


def test_init_accepts_a_run_folder_by_the_best_last_rule(trained, store, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", store, "--out", run, "--epochs", 1, "--batch-size", 2, "--init", trained, "--set", *TINY) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["init"] == str((trained / "checkpoints" / "best.safetensors").resolve())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("train", store, "--out", tmp_path / "run2", "--init", empty, "--set", *TINY) == 2
    one_line(capsys, f"--init {empty / 'checkpoints'}: no best.safetensors or last.safetensors")
    assert cli("train", store, "--out", tmp_path / "run2", "--init", tmp_path / "nope", "--set", *TINY) == 2
    one_line(capsys, f"--init {tmp_path / 'nope'}: not found — give a run directory of `hgpose train`, a "
                     ".safetensors weights file or a registered model name")


# --- more hostile cases ------------------------------------------------------------------------

def test_resume_refuses_init_and_another_preset_it_would_ignore(run, store, trained, capsys):
    before = files(run)
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2, "--init", trained) == 2
    one_line(capsys, f"--init {trained}: a resumed run goes on from its saved state")
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2, "--preset", "newell") == 2
    one_line(capsys, f"--preset newell: the run in {run} was started with preset thesis; --resume goes on with "
                     "its own config (drop --preset)")
    assert files(run) == before
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2, "--preset", "thesis") == 0


def test_a_lost_config_json_comes_back_from_the_state(run, store):
    saved = (run / "config.json").read_bytes()
    (run / "config.json").unlink()
    train(store, run, resume=True, epochs=2)
    assert cfg.load(run / "config.json") == cfg.update(cfg.from_dict(json.loads(saved)), epochs=2)


def test_a_lost_state_with_weights_is_refused_instead_of_training_over_them(run, store, capsys):
    (run / "checkpoints" / "state.pt").unlink()
    before = files(run)
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2) == 2
    one_line(capsys, f"{run / 'checkpoints' / 'state.pt'}: not found, but {run / 'checkpoints'} holds weights; "
                     f"--resume needs the state: start a new run from them with --init {run}")
    assert files(run) == before


def test_temporary_files_of_a_killed_save_are_removed_and_nothing_else(run, store):
    checkpoints = run / "checkpoints"
    killed = [checkpoints / ".state.pt.k2j4_x9a.pt.tmp", checkpoints / ".last.safetensors.abcdefgh.safetensors.tmp",
              run / ".metrics.csv.q1w2e3r4.tmp"]
    theirs = [checkpoints / "notes.tmp", run / ".state.pt.user.tmp"]
    for path in killed + theirs:
        path.write_bytes(b"partial")
    train(store, run, resume=True, epochs=2)
    assert [p.exists() for p in killed] == [False] * 3
    assert [p.read_bytes() for p in theirs] == [b"partial"] * 2


def test_a_damaged_run_json_is_one_line_on_resume(run, store, capsys):
    (run / "run.json").write_text("{not json")
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2) == 2
    one_line(capsys, f"{run / 'run.json'}: not valid JSON")
    (run / "run.json").write_text("[]")
    assert cli("train", store, "--out", run, "--resume", "--epochs", 2) == 2
    one_line(capsys, f"{run / 'run.json'}: expected a JSON object")


def test_a_new_run_never_writes_among_a_strangers_files(store, tmp_path, capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text('{"learning_rate": 0.1}')     # another tool's
    (folder / "notes.txt").write_text("mine")
    before = files(folder)
    assert cli("train", store, "--out", folder, "--epochs", 1, "--set", *TINY) == 2
    one_line(capsys, f"{folder}: holds config.json and 1 more, and is not a run folder of `hgpose train`; "
                     "give a new or empty folder as --out")
    assert files(folder) == before
    # a run folder whose first start failed (its config.json only) is started again
    run = tmp_path / "run"
    run.mkdir()
    cfg.save(cfg.resolve("thesis", ["model.features=16"]), run / "config.json")
    assert cli("train", store, "--out", run, "--epochs", 1, "--batch-size", 2, "--set", *TINY) == 0
    assert cfg.load(run / "config.json").model.features == 8
