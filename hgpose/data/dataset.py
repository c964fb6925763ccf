"""A split of the store as a torch Dataset, and the DataLoader every pass over crops uses.

Training, validation, the latents of explain and thesis-ae all read crops this way.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from hgpose.codecs import ABSENT
from hgpose.data.store import Store


class CropDataset(Dataset):
    """One split of the store: item i = (uint8 [256,256,3] crop, float32 [17,3] keypoints, i).

    Joints the crop's source does not annotate get v = ABSENT (-1), so that the loss can
    tell them from COCO's unlabelled joints (v = 0).

    `store` is a `Store` or its folder. The split is memory-mapped lazily in each process:
    pickling a numpy memmap to a worker would copy the whole split into RAM, so only the
    store (its path and manifest) travels.
    """

    def __init__(self, store: Store | str | os.PathLike, split: str, limit: int = 0):
        self.store = store if isinstance(store, Store) else Store.open(store)
        self.data_dir = self.store.path
        self.split = split
        n = len(self.store.split(split))
        self.length = min(n, limit) if limit > 0 else n
        self._arrays = None

    def _open(self):
        if self._arrays is None:
            self._arrays = self.store.split(self.split)
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


def make_loader(dataset: Dataset, batch_size: int, sampler: Sampler, workers: int,
                device: torch.device) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        pin_memory=device.type == "cuda", drop_last=False,
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
    )
