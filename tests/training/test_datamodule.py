"""training.datamodule: loaders over the cache, and their distributed samplers."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

from cxrkit.training.datamodule import CxrDataModule, DistributedWeightedSampler


def test_weighted_sampler_shares_one_balanced_draw_between_ranks():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)  # heavily imbalanced
    weights = 1.0 / np.bincount(labels)[labels]
    shards = [list(DistributedWeightedSampler(weights, 3, rank, seed=7)) for rank in range(3)]
    assert [len(s) for s in shards] == [34, 34, 34]  # ceil(100 / 3) each
    draw = [i for triple in zip(*shards) for i in triple]  # rank r holds positions r::3
    again = [
        i for triple in zip(*(DistributedWeightedSampler(weights, 3, r, seed=7) for r in range(3))) for i in triple
    ]
    assert draw == again  # every process computes the same draw without talking to the others
    per_class = Counter(labels[draw].tolist())
    assert all(abs(n / len(draw) - 1 / 3) < 0.12 for n in per_class.values())  # balanced, not 80/15/5
    s = DistributedWeightedSampler(weights, 3, 0, seed=7)
    s.set_epoch(1)
    assert list(s) != shards[0]  # a new draw each epoch


def test_distributed_loaders_shard_train_and_keep_val_unpadded():
    images = np.zeros((23, 8, 8), np.uint8)
    labels = np.arange(23) % 3
    dm = CxrDataModule(images, labels, np.arange(16), np.arange(16, 23), batch_size=4, balance="loss")
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    val = dm.val_dataloader()
    assert isinstance(val.sampler, UnrepeatedDistributedSampler) and len(list(val.sampler)) == 3  # 7 = 4 + 3
    train_idx = list(dm.train_dataloader().sampler)
    assert len(train_idx) == 8 and set(train_idx) <= set(range(16))
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0)
    assert len(list(dm.val_dataloader())[0][0]) == 4
