"""Lightning data module over cached uint8 images: indexing only, so the CPU trains, not decodes."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler


class CachedImages(Dataset):
    """``(uint8 tensor (1, S, S), label)`` pairs from a preprocessed image array."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        self.images, self.labels, self.indices = images, labels, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = self.indices[i]
        return torch.from_numpy(np.array(self.images[j]))[None], int(self.labels[j])


class CxrDataModule(L.LightningDataModule):
    """Train/val loaders over one cached image array and the split's index sets.

    ``balance="sampler"`` draws classes equally often (WeightedRandomSampler); with
    ``"loss"`` (default) the loss is weighted instead and batches follow the data.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, train_idx, val_idx,
                 batch_size: int = 32, balance: str = "loss", num_workers: int = 0):
        super().__init__()
        if balance not in ("loss", "sampler", "none"):
            raise ValueError(f"balance must be loss, sampler or none, got {balance!r}")
        self.train_set = CachedImages(images, labels, train_idx)
        self.val_set = CachedImages(images, labels, val_idx)
        self.batch_size, self.balance, self.num_workers = batch_size, balance, num_workers

    def _loader(self, ds, **kw) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                          pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0, **kw)

    def _drop_last(self) -> bool:
        """Drop a ragged last batch (noisy BatchNorm statistics) unless the set is tiny."""
        return len(self.train_set) > 2 * self.batch_size

    def train_dataloader(self) -> DataLoader:
        if self.balance == "sampler":
            y = self.train_set.labels[self.train_set.indices]
            weights = 1.0 / np.bincount(y)[y]
            sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), len(y))
            return self._loader(self.train_set, sampler=sampler, drop_last=self._drop_last())
        return self._loader(self.train_set, shuffle=True, drop_last=self._drop_last())

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
