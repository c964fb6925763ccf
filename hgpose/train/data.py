"""Feeding crops from the dataset store to the network.

The DataLoader only copies uint8 crops and keypoints out of the memory-mapped store (and
pins them on CUDA); everything numeric — the [0, 1] scaling, the mean-RGB subtraction,
augmentation and the heatmap targets — happens batched on the training device in
`prepare_batch`.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from hgpose.codec import ABSENT
from hgpose.data.store import open_split
from hgpose.train import augment as aug
from hgpose.config import AugmentConfig


class CropDataset(Dataset):
    """One split of the store: item i = (uint8 [256,256,3] crop, float32 [17,3] keypoints, i).

    Joints the crop's source does not annotate get v = ABSENT (-1), so that the loss can
    tell them from COCO's unlabelled joints (v = 0).

    The split is memory-mapped lazily in each process: pickling a numpy memmap to a worker
    would copy the whole split into RAM, so only the path travels.
    """

    def __init__(self, data_dir, split: str, limit: int = 0):
        self.data_dir = data_dir
        self.split = split
        n = len(open_split(data_dir, split))
        self.length = min(n, limit) if limit > 0 else n
        self._arrays = None

    def _open(self):
        if self._arrays is None:
            self._arrays = open_split(self.data_dir, self.split)
        return self._arrays

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        s = self._open()
        # np.array copies just this crop out of the map.
        keypoints = np.array(s.keypoints[i])
        keypoints[~s.joints_present(i), 2] = ABSENT
        return torch.from_numpy(np.array(s.images[i])), torch.from_numpy(keypoints), i


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


def make_loader(dataset: Dataset, batch_size: int, sampler: Sampler, workers: int,
                device: torch.device) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        pin_memory=device.type == "cuda", drop_last=False,
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
    )


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
    x = images.to(device, non_blocking=True)
    kps = keypoints.to(device, non_blocking=True).float()
    # NHWC -> NCHW as a view: its strides already are channels-last.
    x = x.permute(0, 3, 1, 2).float().div_(255)
    if augment is not None and augment.enabled:
        params = aug.draw(x.shape[0], augment, generator).to(device)
        x = aug.jitter_colour(x, params)
        x = x - mean_rgb.view(1, 3, 1, 1)
        m = aug.matrices(params)
        x = aug.warp_images(x, m)
        kps = aug.warp_keypoints(kps, m, params.flip, size=x.shape[-1])
    else:
        x = x - mean_rgb.view(1, 3, 1, 1)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=memory_format), kps
