"""What a change on `--resume` means: applied from the resumed position on and recorded, or
refused before anything is written.

A resumed run compares the config it is asked to run (RUN_DIR/config.json plus `--set`,
`--epochs`, `--batch-size`, `--precision`) with the config its state.pt was saved under.
Each key that differs is either

    applied   it takes effect from the resumed position on; config.json says it and
              run.json's "resumed" list records it (epoch, step, old and new value);
    refused   one line naming the key and why, before any file is written, so the run
              stays resumable as it was.

The rule per key (docs/training.md, "Resume"): what the network is (model.*), what it
learns (target.*), where its randomness comes from (seed), its recipe and preset, the
optimiser kind and schedule (their saved states belong to them), the crops it trains on
(data.train_limit) and what "best" compares (data.val_limit, flip_test) are refused.
How long and how fast it trains, the schedule's numbers, the optimiser's settings,
augmentation, precision, device, workers, logging and checkpoint keeping are applied.
The batch size and the sample order (data.shuffle) change at an epoch end only: a
mid-epoch position counts batches of the old size in the old order.
"""

from __future__ import annotations

import torch

from hgpose import config as cfg
from hgpose.errors import HgposeError

# key or "prefix." -> why it cannot change on --resume
REFUSED = {
    "preset": "it names the recipe the run started from",
    "recipe": "the run's phases follow it",
    "seed": "the sample order and every random draw of the epochs so far came from it",
    "model.": "the saved weights are those of the configured network",
    "target.": "the network learned these targets, and every weights file of the run records them",
    "optim.name": "state.pt holds the run's optimiser state, which another optimiser cannot use",
    "optim.schedule": "state.pt holds the run's schedule state (the plateau's counters, or none)",
    "data.train_limit": "the epochs so far trained on that many crops",
    "data.val_limit": "\"best\" would compare validation scores over different crops",
    "flip_test": "\"best\" would compare validation scores measured differently",
    "ae.noise": "the autoencoder's pre-training so far learned with it",
    "ae.optim.name": "state.pt holds the run's optimiser state, which another optimiser cannot use",
    "ae.optim.schedule": "state.pt holds the run's schedule state",
}
# Changes that need the state saved at an epoch end (a mid-epoch position counts batches).
AT_EPOCH_END = ("batch_size", "data.shuffle", "ae.batch_size")
AE_OVER = "the autoencoder's pre-training is over (or not part of this run)"


def refusal(key: str, phase: str) -> str | None:
    """Why `key` cannot change when resuming a state of `phase` ("pose" or "ae"), or None."""
    if phase == "pose" and key.startswith("ae."):
        return AE_OVER
    for rule, why in REFUSED.items():
        if key == rule or (rule.endswith(".") and key.startswith(rule)):
            return why
    return None


def changes(ran: cfg.TrainConfig, new: cfg.TrainConfig) -> dict[str, tuple]:
    """key -> (value the run was saved with, value asked for now), for every key that differs."""
    return {key: (cfg.get_value(ran, key), cfg.get_value(new, key)) for key in cfg.valid_keys()
            if cfg.get_value(ran, key) != cfg.get_value(new, key)}


def check(changed: dict[str, tuple], phase: str, position: tuple[int, int], run_path) -> None:
    """Refuse the first change that cannot be applied (one line naming the key and why)."""
    epoch, step = position
    for key, (old, new) in changed.items():
        why = refusal(key, phase)
        if why is None and key in AT_EPOCH_END and step > 0:
            why = (f"the state was saved in epoch {epoch + 1} after step {step}, a position counted in "
                   "batches of the old size and order; resume without it, and change it at an epoch end")
        if why is not None:
            raise HgposeError(
                f"--resume cannot change {key} ({_shown(old)} -> {_shown(new)}): {why}; drop the change "
                f"(--set or an edit of {run_path}/config.json), or start a new run from this one's "
                f"weights with --init {run_path}")


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def ran_config(state: dict, fallback: cfg.TrainConfig | None, where) -> cfg.TrainConfig | None:
    """The config a state was saved under: recorded in it (since states carry it), else
    `fallback` (the run's config.json before this command)."""
    if "config" not in state:
        return fallback
    try:
        config = cfg.from_dict(state["config"], cfg.TrainConfig, f"{where} config")
        cfg.validate(config)
    except HgposeError as e:
        raise HgposeError(f"{e}; the state is damaged: resume from another copy, or start a new run "
                          "with --init") from None
    return config


# What the optimiser state loaded from state.pt says about the optimiser that saved it:
# a key of its param groups no other optimiser of `optim.name` has (states that predate
# the recorded config).
SIGNATURE = {"rmsprop": "alpha", "adam": "betas", "sgd": "dampening"}


def check_optimizer_kind(saved: dict, name: str, where) -> None:
    """A state saved by another optimiser than `optim.name` (a config.json edited before
    states recorded their config) would fail at the first step, and on every resume after."""
    groups = saved.get("param_groups") or [{}]
    kinds = [kind for kind, key in SIGNATURE.items() if key in groups[0]]
    if kinds and name not in kinds:
        raise HgposeError(f"{where}: saved by the {kinds[0]} optimiser, but config.json says "
                          f"optim.name={name}; set it back to {kinds[0]} in config.json to resume")


def apply_optim(optimizer: torch.optim.Optimizer, plateau, optim: cfg.OptimConfig,
                lr_changed: bool) -> None:
    """The optimiser settings of `optim` over those loaded from the state (which
    `load_state_dict` restores as they were saved). The lr of the state is kept (a plateau
    schedule lowers it as it goes) unless `optim.lr` itself changed: then the schedule
    goes on from the new lr; it never falls below `optim.min_lr`."""
    for group in optimizer.param_groups:
        for key in ("alpha", "momentum", "weight_decay"):
            if key in group:
                group[key] = getattr(optim, key)
        if lr_changed:
            group["lr"] = optim.lr
        if optim.schedule == "plateau":
            group["lr"] = max(group["lr"], optim.min_lr)
    _momentum_buffers(optimizer)
    if plateau is not None:
        plateau.factor, plateau.patience = optim.plateau_factor, optim.plateau_patience
        plateau.default_min_lr = optim.min_lr
        plateau.min_lrs = [optim.min_lr] * len(optimizer.param_groups)


def _momentum_buffers(optimizer: torch.optim.Optimizer) -> None:
    """RMSprop creates its momentum buffer only when a run starts with momentum: one that
    gains momentum on --resume starts it at zero, as a new run would."""
    if not isinstance(optimizer, torch.optim.RMSprop):
        return
    for group in optimizer.param_groups:
        if group["momentum"] > 0:
            for p in group["params"]:
                state = optimizer.state.get(p)
                if state and "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def record(changed: dict[str, tuple], position: tuple[int, int]) -> dict:
    """One entry of run.json's "resumed" list: where the run went on and what changed there."""
    epoch, step = position
    return {"epoch": epoch, "step": step,
            "changed": {key: [_json(old), _json(new)] for key, (old, new) in changed.items()}}


def _json(value):
    return list(value) if isinstance(value, tuple) else value  # config values are JSON but tuples
