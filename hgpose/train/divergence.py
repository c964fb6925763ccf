"""What `hgpose train` says when training diverges (a NaN or infinite loss, or weights):
the files that were kept, the settings of this run that can make it diverge, and what to
run next, by the resume rule (`resume.py`): a setting --resume applies is changed there, one
it refuses needs a new run."""

from __future__ import annotations

from hgpose import config as cfg
from hgpose.runs import RunDir
from hgpose.train import resume

# Settings that make a run diverge when set high, named when they differ from the preset's
# (the learning rate is always named: it is the first suspect).
RISKY = ("target.foreground", "alpha", "momentum", "weight_decay", "step_gamma")


def advice(config: cfg.TrainConfig, run: RunDir, phase: str) -> str:
    """"training stopped; <what was kept>. <suspects>; <what to run>" (one line)."""
    state, last = run.state_path, run.weights("last")
    if state.exists():
        kept = f"the last good state is {state}" + (f" (weights: {last})" if last.exists() else "")
    else:
        kept = "nothing of this run was saved"
    suspects = _suspects(config, phase)
    shown = ", ".join(_setting(key, value, default, config.preset) for key, value, default in suspects)
    return f"training stopped; {kept}. Settings that can make it diverge: {shown}; {_next(suspects, state, phase)}"


def _setting(key: str, value, default, preset: str) -> str:
    text = f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
    return text + (f" (preset {preset}: {default:g})" if default is not None else "")


def _suspects(config: cfg.TrainConfig, phase: str) -> list[tuple[str, object, object]]:
    """(key, value, the preset's value where it differs) of the lr, mixed precision and the
    risky settings this run changed from its preset."""
    optim = "ae.optim." if phase == "ae" else "optim."
    preset = cfg.PRESETS[config.preset]() if config.preset in cfg.PRESETS else cfg.TrainConfig()
    suspects = [(optim + "lr", cfg.get_value(config, optim + "lr"), None)]
    if config.precision != "fp32":
        suspects.append(("precision", config.precision, None))
    for key in RISKY:
        key = key if "." in key else optim + key
        value, default = cfg.get_value(config, key), cfg.get_value(preset, key)
        if value != default:
            suspects.append((key, value, default))
    return suspects


def _next(suspects: list, state, phase: str) -> str:
    """What to run: the same command with other values while nothing was saved, else
    --resume for the settings it applies and a new run for those it refuses."""
    if not state.exists():
        return "change them (--set, --precision) and run the command again"
    keys = [key for key, _, _ in suspects]  # the lr first, which --resume always applies
    applied = [k for k in keys if resume.refusal(k, phase) is None and k != "precision"]
    refused = [k for k in keys if resume.refusal(k, phase) is not None]
    text = f"add --resume with a lower {applied[0]}"
    if applied[1:]:
        text += f" (or other {', '.join(applied[1:])})"
    if "precision" in keys:
        text += " or --precision fp32"
    text += " to go on from that state"
    if refused:
        text += f"; {', '.join(refused)} cannot change on --resume: start a new run for that (--init keeps the weights)"
    return text
