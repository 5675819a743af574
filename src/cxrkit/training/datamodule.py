"""Lightning data module over cached uint8 images: indexing only, so the CPU trains, not decodes.

The images are a memory-mapped cache on disk (:mod:`cxrkit.data.cache`): every process of a
distributed run maps the same file and reads only the pages of its own samples, so no process
holds the whole decoded dataset and the OS page cache is shared between processes.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, WeightedRandomSampler

from ..data.groups import balanced_weights
from ..errors import UsageError

BALANCE = ("loss", "sampler", "group", "none")


class CachedImages(Dataset):
    """``(uint8 tensor (1, S, S), label)`` pairs from a preprocessed image array.

    With ``groups`` ((N, K) int codes, -1 unknown; :mod:`cxrkit.data.groups`) each item also
    carries its K group codes, for the de-confounding heads.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, groups: np.ndarray | None = None):
        self.images, self.labels, self.indices, self.groups = images, labels, np.asarray(indices), groups

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = self.indices[i]
        x = torch.from_numpy(np.array(self.images[j]))[None]
        if self.groups is None:
            return x, int(self.labels[j])
        return x, int(self.labels[j]), torch.from_numpy(self.groups[j])


class DistributedWeightedSampler(Sampler[int]):
    """Class-balanced sampling shared out between processes.

    Every process draws the same weighted sequence of ``len(weights)`` indices (seeded by
    ``seed`` and the epoch) and keeps every ``num_replicas``-th one from ``rank``, so together
    they see one balanced epoch and no two processes train on the same draw.
    """

    def __init__(self, weights, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        draw = torch.multinomial(self.weights, len(self) * self.num_replicas, replacement=True, generator=g)
        return iter(draw[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return -(-len(self.weights) // self.num_replicas)


class CxrDataModule(L.LightningDataModule):
    """Train/val loaders over one cached image array and the split's index sets.

    ``balance="sampler"`` draws classes equally often; ``"group"`` also draws the groups of
    ``balance_groups`` (e.g. adult and pediatric normals) equally often within each class;
    with ``"loss"`` (default) the loss is weighted instead and batches follow the data.
    In a distributed run (the Trainer must have ``use_distributed_sampler=False``: the
    samplers here are the distributed ones) each process
    trains on its share of every epoch and validates on a disjoint, unpadded share of val, so
    the synced val metrics are those of the whole val set, each image counted once.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        train_idx,
        val_idx,
        batch_size: int = 32,
        balance: str = "loss",
        num_workers: int = 0,
        seed: int = 0,
        groups: np.ndarray | None = None,
        balance_groups: np.ndarray | None = None,
    ):
        super().__init__()
        if balance not in BALANCE:
            raise UsageError(f"balance must be one of {', '.join(BALANCE)}, got {balance!r}")
        if balance == "group" and balance_groups is None:
            raise UsageError("balance 'group' needs group codes of every image (a manifest with a population column)")
        self.balance_groups = balance_groups
        self.train_set = CachedImages(images, labels, train_idx, groups)
        self.val_set = CachedImages(images, labels, val_idx)
        self.batch_size, self.balance, self.num_workers, self.seed = batch_size, balance, num_workers, seed

    def _world(self) -> tuple[int, int]:
        """(number of processes, this process's rank); (1, 0) outside a distributed run."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, ds, **kw) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            **kw,
        )

    def _drop_last(self) -> bool:
        """Drop a ragged last batch (noisy BatchNorm statistics) unless the set is tiny."""
        return len(self.train_set) > 2 * self.batch_size

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        if self.balance in ("sampler", "group"):
            y = self.train_set.labels[self.train_set.indices]
            if self.balance == "group":
                weights = balanced_weights(y, self.balance_groups[self.train_set.indices])
            else:
                weights = 1.0 / np.bincount(y)[y]
            if world > 1:
                sampler = DistributedWeightedSampler(weights, world, rank, self.seed)
            else:
                sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), len(y))
            return self._loader(self.train_set, sampler=sampler, drop_last=self._drop_last())
        if world > 1:
            sampler = DistributedSampler(self.train_set, world, rank, shuffle=True, seed=self.seed)
            return self._loader(self.train_set, sampler=sampler, drop_last=self._drop_last())
        return self._loader(self.train_set, shuffle=True, drop_last=self._drop_last())

    def val_dataloader(self) -> DataLoader:
        world, rank = self._world()
        if world > 1:
            sampler = UnrepeatedDistributedSampler(self.val_set, num_replicas=world, rank=rank, shuffle=False)
            return self._loader(self.val_set, sampler=sampler)
        return self._loader(self.val_set, shuffle=False)
