"""Read intermediate outputs (the latent, the AE code, ...) by module name, without editing the model."""

from __future__ import annotations

import difflib
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import HgposeError
from .blocks import Residual


class UnknownNameError(HgposeError, ValueError):
    """A model or layer name that does not exist; the message lists what does."""


@contextmanager
def capture(model: nn.Module, names: str | list[str]):
    """Record the outputs of the named modules during forward passes inside the block.

        with capture(model, [model.latent_layer]) as outputs:
            model(images)
        latent = outputs[model.latent_layer]        # [B, 256, 4, 4] for the thesis net

    Names are those of `capturable(model)`: `model.named_modules()` but the model itself and
    its ModuleLists; an unknown one raises `UnknownNameError` listing them. Each forward overwrites the previous
    entry, so call `outputs[...]` after every batch when collecting many. Outputs are
    stored as returned (not detached), so gradients can flow through them (Grad-CAM);
    run under `torch.no_grad()` when only collecting values. Hooks are removed on exit.
    """
    if isinstance(names, str):
        names = [names]
    modules = dict(model.named_modules())
    valid = capturable(model)   # a ModuleList is never called: it has no output to record
    for name in names:
        if name not in valid:
            raise UnknownNameError(_unknown_layer_message(model, name, valid))

    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        handles.append(modules[name].register_forward_hook(_recorder(outputs, name)))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def _recorder(outputs: dict, name: str):
    def hook(module, inputs, output):
        outputs[name] = output

    return hook


def _unknown_layer_message(model: nn.Module, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    hint = f"did you mean: {', '.join(close)}; " if close else ""
    return (f"no layer named {name!r} in {type(model).__name__}; {hint}{layer_outline(model)}")


def capturable(model: nn.Module) -> list[str]:
    """Every name whose output `capture` records, in definition order: all modules but the
    model itself and the containers that are never called (ModuleList, ModuleDict)."""
    return [n for n, m in model.named_modules()
            if n and not isinstance(m, (nn.ModuleList, nn.ModuleDict))]


def layer_outline(model: nn.Module) -> str:
    """All capturable names in one line (a network has hundreds): indices folded into ranges
    (`hourglass.skips.{0..3}`), and the parts inside a Residual named once for all of them.

    Expanding the ranges and adding the parts to every Residual gives back every name.
    """
    names = capturable(model)
    residuals = [n for n, m in model.named_modules() if isinstance(m, Residual)]
    inside = [n for n in names if any(n.startswith(r + ".") for r in residuals)]
    parts = list(dict.fromkeys(n.rsplit(".", 1)[1] for n in inside))
    outer = [n for n in names if n not in set(inside)]
    text = f"its layers are: {', '.join(_fold_indices(outer))}"
    if parts:
        text += f"; inside each Residual: {' '.join('.' + p for p in parts)}"
    latent = getattr(model, "latent_layer", None)
    if latent:
        text += f"; the latent is {latent}"
    return f"{text} ({len(names)} names in all)"


def _fold_indices(names: list[str]) -> list[str]:
    """Names that differ only in one numeric part become one with a range:
    hourglass.skips.0 ... hourglass.skips.3 -> hourglass.skips.{0..3}. Deepest parts first,
    repeated, so the stacks of a Newell network fold as well (hourglasses.{0..7}.up.{0..2});
    only names that exist are ever folded together, so every range is exact."""
    parts = [tuple(n.split(".")) for n in names]
    for position in range(max((len(p) for p in parts), default=0) - 1, -1, -1):
        groups: dict[tuple, list[int]] = {}
        for p in parts:
            if position < len(p) and p[position].isdigit():
                groups.setdefault(p[:position] + ("#",) + p[position + 1:], []).append(int(p[position]))
            else:
                groups.setdefault(p, [])
        parts = [key if not values else
                 key[:position] + (_index_range(values),) + key[position + 1:]
                 for key, values in groups.items()]
    return [".".join(p) for p in parts]


def _index_range(values: list[int]) -> str:
    values = sorted(values)
    if len(values) == 1:
        return str(values[0])
    if values == list(range(values[0], values[-1] + 1)):
        return f"{{{values[0]}..{values[-1]}}}"
    return "{" + ",".join(map(str, values)) + "}"
