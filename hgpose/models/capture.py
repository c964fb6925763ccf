"""Read intermediate outputs (the latent, the AE code, ...) by module name, without editing the model."""

from __future__ import annotations

import difflib
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import HgposeError


class UnknownNameError(HgposeError, ValueError):
    """A model or layer name that does not exist; the message lists what does."""


@contextmanager
def capture(model: nn.Module, names: str | list[str]):
    """Record the outputs of the named modules during forward passes inside the block.

        with capture(model, [model.latent_layer]) as outputs:
            model(images)
        latent = outputs[model.latent_layer]        # [B, 256, 4, 4] for the thesis net

    Names are those of `model.named_modules()`. Each forward overwrites the previous
    entry, so call `outputs[...]` after every batch when collecting many. Outputs are
    stored as returned (not detached), so gradients can flow through them (Grad-CAM);
    run under `torch.no_grad()` when only collecting values. Hooks are removed on exit.
    """
    if isinstance(names, str):
        names = [names]
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            raise UnknownNameError(_unknown_layer_message(model, name, list(modules)))

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
    if close:
        hint = "did you mean: " + ", ".join(close)
    else:
        top = [n for n in known if n and "." not in n]
        hint = "top-level modules are: " + ", ".join(top)
    return (
        f"no layer named {name!r} in {type(model).__name__}; {hint} "
        f"(all names: [n for n, _ in model.named_modules()])"
    )
