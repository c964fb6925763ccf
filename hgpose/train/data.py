"""Feeding training batches to the network: sample order, per-batch seeds, `prepare_batch`.

The DataLoader (hgpose/data/dataset.py) only copies uint8 crops and keypoints out of the
memory-mapped store (and pins them on CUDA); everything numeric — the [0, 1] scaling and
mean-RGB subtraction (the inference core's, so training and inference agree), augmentation
and the heatmap targets — happens batched on the training device in `prepare_batch`.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from hgpose.inference.forward import normalise, to_unit
from hgpose.config import AugmentConfig
from hgpose.train import augment as aug


class ResumableSampler(Sampler[int]):
    """This process's indices for one epoch, from a given position within it.

    The order is DistributedSampler's (seeded by seed + epoch, sharded across DDP ranks,
    padded so every rank runs the same number of steps); on top of it, `set_epoch(epoch,
    skip)` drops the first `skip` indices so a run resumed mid-epoch continues with the
    very next batch.
    """

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int, rank: int = 0, world: int = 1):
        self.inner = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                        seed=seed, drop_last=False)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return itertools.islice(iter(self.inner), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


class ShardSampler(Sampler[int]):
    """Validation: every `world`-th index from `rank`, no padding, so each image counts once."""

    def __init__(self, n: int, rank: int = 0, world: int = 1):
        self.indices = range(rank, n, world)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def batch_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from (seed, rank, epoch, step, ...): draws depend on nothing else."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def prepare_batch(images: torch.Tensor, keypoints: torch.Tensor, device: torch.device,
                  mean_rgb: torch.Tensor, *, augment: AugmentConfig | None = None,
                  generator: torch.Generator | None = None, channels_last: bool = False,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [B,H,W,3] crops and [B,17,3] keypoints -> network input [B,3,H,W], keypoints.

    Input = crop / 255 - mean RGB (std 1, as the thesis); with `augment`, colour jitter
    happens before the mean subtraction (it works on [0, 1] colours) and the warp after it,
    so the area outside the source crop is filled with the mean colour (0).
    """
    x = to_unit(images, device)
    kps = keypoints.to(device, non_blocking=True).float()
    if augment is not None and augment.enabled:
        params = aug.draw(x.shape[0], augment, generator).to(device)
        x = normalise(aug.jitter_colour(x, params), mean_rgb)
        centre, zoom = aug.half_body_views(kps, params, size=x.shape[-1])
        m = aug.matrices(params) * zoom[:, None, None]
        x = aug.warp_images(x, m, centre)
        kps = aug.warp_keypoints(kps, m, params.flip, size=x.shape[-1], source_centre=centre)
    else:
        x = normalise(x, mean_rgb)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=memory_format), kps
