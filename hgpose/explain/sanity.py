"""Sanity check of each saliency method: cascading randomisation of the weights (Adebayo et
al., NeurIPS 2018, "Sanity Checks for Saliency Maps").

The network's blocks (`blocks`: the children of its top-level modules, in the order the
forward pass calls them) are re-initialised from the head down, cumulatively, as the
network was initialised (Xavier-normal conv and linear weights, zero biases, BatchNorm
reset to identity). After each step every method's maps are computed again on the same
crops and compared with the trained network's by Spearman's rank correlation of their
absolute values (the paper's choice; per joint and crop, then averaged). A method whose
maps explain the network must change as the network is destroyed: one whose correlation
with the fully randomised network's maps stays at or above `PASS_BELOW` fails.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

PASS_BELOW = 0.5     # rank correlation with the fully randomised network's maps that passes
STEPS = 4            # randomisation steps measured (head only, ..., every block)


def blocks(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the network's blocks with parameters, in the order one forward pass of `x`
    first calls them: each top-level module's children (a module list's items)."""
    import torch
    from torch import nn

    units = []
    for name, child in model.named_children():
        inner = list(child.named_children())
        if not inner:
            units.append((name, child))
        for sub, module in inner:
            items = module.named_children() if isinstance(module, (nn.ModuleList, nn.ModuleDict)) else [("", module)]
            units += [(".".join(p for p in (name, sub, item) if p), m) for item, m in items]
    units = [(n, m) for n, m in units if any(True for _ in m.parameters())]
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda _m, _i, n=n: order.append(n) if n not in order else None)
             for n, m in units]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return order


def cut_points(n_blocks: int, steps: int) -> list[int]:
    """How many blocks (from the head) each measured step randomises: the head alone first,
    every block last, evenly between."""
    if steps <= 1 or n_blocks <= 1:
        return [n_blocks]
    return sorted(set(int(round(v)) for v in np.linspace(1, n_blocks, min(steps, n_blocks))))


def reinitialise(module: nn.Module) -> None:
    """As the network was made: Xavier-normal weights, zero biases; BatchNorm to identity."""
    from torch import nn

    from hgpose.models.blocks import xavier_init

    xavier_init(module)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()   # weight 1, bias 0, running mean 0, variance 1


def randomised_models(model: nn.Module, x: torch.Tensor, steps: int, seed: int):
    """Yields (deepest block randomised, blocks randomised, the network with them re-initialised)
    for each measured step, cumulatively from the head down; `model` itself is not touched."""
    import torch

    order = blocks(model, x)
    random = copy.deepcopy(model).eval()
    modules = dict(random.named_modules())
    done = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for cut in cut_points(len(order), steps):
            for name in reversed(order[len(order) - cut:len(order) - done]):
                reinitialise(modules[name])
            done = cut
            yield order[len(order) - cut], cut, random


def rank_correlation(a: np.ndarray, b: np.ndarray, absolute: bool = True) -> float | None:
    """Spearman's rho of |a| and |b| (of a and b when not `absolute`), flattened. A constant
    map has no ranking to keep: 0 against a map that has one, None (not counted) when both are
    constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if absolute:
        a, b = np.abs(a), np.abs(b)
    flat_a, flat_b = a.min() == a.max(), b.min() == b.max()
    if flat_a or flat_b:
        return None if flat_a and flat_b else 0.0
    return float(spearmanr(a, b).statistic)


def cascade(model: nn.Module, inputs: list[torch.Tensor], methods: dict[str, Callable], steps: int,
            seed: int) -> dict:
    """The randomisation curves: methods maps name -> f(model, x) -> maps [J, H, W].

    Returns {"blocks": total, "steps": [{"down_to", "randomised"}], "methods": name ->
    {"rho", "rho_se": mean and standard error per step of the rank correlation of the absolute
    maps, "rho_signed", "rho_signed_se": the same of the signed maps, "passes": bool}}."""
    from hgpose.explain.attribution_indices import mean_se

    trained = {name: [f(model, x) for x in inputs] for name, f in methods.items()}
    steps_out = []
    curves = {name: {"abs": [], "signed": []} for name in methods}
    for down_to, cut, random in randomised_models(model, inputs[0], steps, seed):
        steps_out.append({"down_to": down_to, "randomised": cut})
        for name, f in methods.items():
            pairs = [(t, r) for maps, x in zip(trained[name], inputs) for t, r in zip(maps, f(random, x))]
            for kind in ("abs", "signed"):
                rhos = [rank_correlation(t, r, absolute=kind == "abs") for t, r in pairs]
                curves[name][kind].append(mean_se(rhos))
    out = {}
    for name, curve in curves.items():
        last = curve["abs"][-1]["mean"]
        out[name] = {"rho": [c["mean"] for c in curve["abs"]], "rho_se": [c["se"] for c in curve["abs"]],
                     "rho_signed": [c["mean"] for c in curve["signed"]],
                     "rho_signed_se": [c["se"] for c in curve["signed"]],
                     "passes": last is not None and last < PASS_BELOW}
    return {"blocks": len(blocks(model, inputs[0])), "steps": steps_out, "methods": out}
