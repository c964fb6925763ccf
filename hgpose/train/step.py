"""One optimiser step, as `hgpose train` takes it, for the loop and for anyone timing it.

    trainer = Trainer.build(phase, model, config.optim, config, device)
    loss, n = trainer.step(batch, generator)      # uint8 crops -> ... -> loss -> update

A `Trainer` holds what a step needs: the phase (its inputs, augmentation, targets and loss:
recipes.py), the network on its device in the config's memory format, the optimiser, the
loss scaler (fp16 on CUDA only) and the autocast of the config's precision. The loop
(`loop.fit`) adds epochs, schedules, validation, checkpoints and resume around it; the
benchmarks time it alone, so they measure the code that trains, not a copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from hgpose.config import OptimConfig, TrainConfig
from hgpose.cpu import keep_freed_memory
from hgpose.inference.device import autocast_context, autocast_dtype
from hgpose.train.recipes import make_optimizer


def autocast_factory(config: TrainConfig, device: torch.device) -> Callable:
    """A zero-argument factory of the run's autocast context: `config.precision` on `device`
    by the one rule of training and inference (`hgpose.inference.device`)."""
    return autocast_context(device, autocast_dtype(config.precision, device))


@dataclass
class Trainer:
    """The network of one phase with its optimiser, loss scaler and precision."""

    phase: object                     # recipes.PosePhase or recipes.AEPhase
    model: nn.Module                  # on the device, in the config's memory format
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: Callable

    @classmethod
    def build(cls, phase, model: nn.Module, optim: OptimConfig, config: TrainConfig,
              device: torch.device) -> "Trainer":
        if device.type == "cpu":
            keep_freed_memory()   # the activations outgrow malloc's mmap threshold (hgpose.cpu)
        model = model.to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and config.precision == "fp16")
        return cls(phase, model, make_optimizer(model.parameters(), optim), scaler,
                   autocast_factory(config, device))

    def step(self, batch, generator: torch.Generator | None = None, *, network: nn.Module | None = None,
             check: Callable[[float], None] | None = None) -> tuple[float, int]:
        """One step on `batch`: (loss, samples). `network` is the module the forward runs
        (a DDP or compiled wrapper of `model`; default `model`); `check` sees the loss before
        the weights change (the loop stops on a NaN there)."""
        network = self.model if network is None else network
        loss, n = self.phase.train_loss(network, batch, generator, self.autocast)
        value = loss.item()
        if check is not None:
            check(value)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value, n
