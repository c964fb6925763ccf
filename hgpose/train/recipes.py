"""What is trained and how it is scored: networks, codecs, optimisers, losses, validation.

Two kinds of phase share the loop in loop.py:
    pose  the network on crops -> heatmaps (thesis and newell recipes, thesis-ae fine-tuning)
    ae    the latent autoencoder alone on saved bottleneck latents (thesis-ae pre-training)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from hgpose.codecs import ThesisCodec, build_codec
from hgpose.evaluate.pck import PCKAccumulator
from hgpose.evaluate.split_pass import network_forward, split_pass
from hgpose.io import npy_rows
from hgpose.models import ThesisNetwork
from hgpose.config import OptimConfig, TrainConfig
from hgpose.train.data import prepare_batch

AE_PREFIX = "hourglass.autoencoder."  # where ThesisNetwork(autoencoder=True) keeps its AE


def make_optimizer(params, config: OptimConfig) -> torch.optim.Optimizer:
    if config.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, alpha=config.alpha,
                                   momentum=config.momentum, weight_decay=config.weight_decay)
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def scheduled_lr(config: OptimConfig, epoch: int, global_step: int,
                 position: float | None = None, epochs: int | None = None) -> float | None:
    """The lr for this step from warm-up and the schedule; None leaves it to the plateau scheduler.

    epoch is 0-based: step_epochs=(70, 90) decays from the 71st and the 91st epoch on.
    "linear" needs `position`, the epochs done so far including this one's fraction, and
    `epochs`, the run's length: lr falls in a straight line from `lr` at 0 to `min_lr` at
    `epochs` (a budgeted run ends exactly when its lr reaches the floor).
    """
    warm = min(1.0, (global_step + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
    if config.schedule == "plateau":
        return config.lr * warm if warm < 1.0 else None
    if config.schedule == "linear":
        if position is None or not epochs:
            raise ValueError("the linear schedule needs the position within the run and its epochs")
        left = max(0.0, 1.0 - position / epochs)
        return max(config.lr * warm * left, config.min_lr * warm)
    decays = 0
    if config.schedule == "step":
        decays = sum(epoch >= e for e in config.step_epochs)
        if config.step_every > 0:
            decays += epoch // config.step_every
    return max(config.lr * warm * config.step_gamma**decays, config.min_lr * warm)


# --- pose ----------------------------------------------------------------------------------

class PosePhase:
    """Loss and validation of a pose network (any preset)."""

    name = "pose"
    metric = "val_pck"
    mode = "max"

    def __init__(self, config: TrainConfig, device: torch.device, mean_rgb: torch.Tensor):
        self.config = config
        self.device = device
        self.mean_rgb = mean_rgb.to(device)
        self.codec = build_codec(config.target)
        self.thesis_codec = ThesisCodec()  # PCK ground truth is always the thesis's argmax
        self.channels_last = config.channels_last

    def inputs(self, batch, generator: torch.Generator | None, train: bool):
        images, keypoints, _ = batch
        augment = self.config.augment if train else None
        return prepare_batch(images, keypoints, self.device, self.mean_rgb, augment=augment,
                             generator=generator, channels_last=self.channels_last)

    def loss_of(self, heatmaps: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """MSE between [B,S,J,64,64] predictions and targets; summed over supervised stacks.

        The mean runs over the maps of the joints each crop's source annotates: an ABSENT
        joint (v < 0, e.g. an LSP person's nose) is in no loss, not even as a zero map.
        """
        targets, weights = self.codec.encode_torch(keypoints)
        present = (keypoints[..., 2] >= 0).float()                       # [B, J]
        heatmaps = heatmaps.float()  # the loss in fp32 even under autocast: targets peak at 0.16
        if not self.config.target.all_stacks:
            heatmaps = heatmaps[:, -1:]
        err = (heatmaps - targets[:, None]) ** 2
        if self.config.target.foreground:
            err = err * (1 + self.config.target.foreground * targets[:, None])
        if self.config.target.weighted:
            err = err * weights[:, None, :, None, None]
        per_map = err.mean(dim=(3, 4)) * present[:, None]               # [B, S, J]
        return (per_map.sum(dim=(0, 2)) / present.sum().clamp(min=1)).sum()

    def train_loss(self, model: nn.Module, batch, generator: torch.Generator, autocast) -> tuple[torch.Tensor, int]:
        x, kps = self.inputs(batch, generator, train=True)
        with autocast():
            heatmaps = model(x)
        return self.loss_of(heatmaps, kps), x.shape[0]

    @torch.no_grad()
    def validate(self, model: nn.Module, loader, autocast) -> tuple[dict, torch.Tensor]:
        """Returns metrics and [loss sum, samples] (for the DDP all-reduce); PCK accumulated.
        The pass over the split is evaluate's (`split_pass`), with this phase's input layout
        and flip test."""
        pck = PCKAccumulator(self.device)
        loss_sum = torch.zeros(2, dtype=torch.float64, device=self.device)
        forward = network_forward(model, self.mean_rgb, self.device, autocast=autocast,
                                  flip=self.config.flip_test, channels_last=self.channels_last)
        for batch in split_pass(loader, forward):
            n = len(batch.rows)
            loss_sum[0] += self.loss_of(batch.outputs, batch.keypoints).double() * n
            loss_sum[1] += n
            pck.add(batch.pck)
        return pck, loss_sum


# --- autoencoder (thesis-ae) ---------------------------------------------------------------

class LatentDataset(Dataset):
    """Saved bottleneck latents float32 [N, C, 4, 4] from a .npy, memory-mapped per process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.length = len(np.load(self.path, mmap_mode="r"))
        self._array = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.array(self._array[i])), i


class AEPhase:
    """Denoising pre-training of the latent autoencoder (SPEC §4)."""

    name = "ae"
    metric = "val_loss"
    mode = "min"

    def __init__(self, config: TrainConfig, device: torch.device):
        self.noise = config.ae.noise
        self.device = device

    def train_loss(self, model: nn.Module, batch, generator: torch.Generator, autocast):
        x = batch[0].to(self.device, non_blocking=True)
        # x + 0.1 * x * N(0, 1): noise proportional to each activation; reconstruct the clean x.
        noise = torch.randn(x.shape, generator=generator).to(self.device)
        with autocast():
            recon = model(x + self.noise * x * noise)
        return F.mse_loss(recon.float(), x), x.shape[0]

    @torch.no_grad()
    def validate(self, model: nn.Module, loader, autocast):
        loss_sum = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch in loader:
            x = batch[0].to(self.device, non_blocking=True)
            with autocast():
                recon = model(x)
            loss_sum[0] += F.mse_loss(recon.float(), x).double() * x.shape[0]
            loss_sum[1] += x.shape[0]
        return None, loss_sum


@torch.no_grad()
def extract_latents(model: ThesisNetwork, loader, device: torch.device, mean_rgb: torch.Tensor,
                    out_path: Path, n: int) -> None:
    """Save the bottleneck latent (3rd bottleneck residual) of every crop to a .npy, atomically.

    Written through a memory map (`io.npy_rows`), so the latents of full COCO (~2 GB) never
    sit in RAM.
    """
    model.eval()
    forward = network_forward(model, mean_rgb, device, channels_last=False)
    with npy_rows(out_path, n, empty_shape=(0, model.features, 4, 4)) as write:
        for batch in split_pass(loader, forward, layer=(model, model.bottleneck_layer)):
            write(batch.rows.cpu().numpy(), batch.layer.float().cpu().numpy())
