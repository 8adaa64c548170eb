"""Data loaders whose randomness is a pure function of (seed, epoch, worker): resume is exact."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler, WeightedRandomSampler
from torch.utils.data.distributed import DistributedSampler

from kagglekit.engine import distributed as dist_utils


def reseed_dataset(dataset: Any, seed: int) -> None:
    """Seed an albumentations pipeline (its own RNG, not NumPy's global one) if the dataset has one."""
    transform = getattr(dataset, "transform", None)
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # derived by torch from the loader's generator + worker id
    random.seed(seed)
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        reseed_dataset(info.dataset, seed)


class RepeatFactorSampler(Sampler[int]):
    """LVIS repeat-factor sampling (Gupta et al. 2019, detectron2 ``RepeatFactorTrainingSampler``):
    item i appears floor(r_i) times plus once more with probability frac(r_i), drawn afresh each
    epoch from ``(seed, epoch)``, then shuffled; rank r of N takes every N-th index."""

    def __init__(self, repeat_factors: np.ndarray, seed: int, epoch: int, rank: int = 0, world: int = 1) -> None:
        rng = np.random.default_rng([seed, epoch, 7])
        factors = np.asarray(repeat_factors, dtype=np.float64)
        counts = np.floor(factors).astype(np.int64) + (rng.random(len(factors)) < factors - np.floor(factors))
        indices = np.repeat(np.arange(len(factors)), counts)
        self.indices = indices[rng.permutation(len(indices))][rank::world].tolist()

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SkipSampler(Sampler[int]):
    """The wrapped sampler's indices after the first ``skip`` (resuming mid-pass without loading
    the skipped items)."""

    def __init__(self, sampler: Sampler[int], skip: int) -> None:
        self.indices = list(sampler)[skip:]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int, epoch: int,
                num_workers: int = 0, drop_last: bool | None = None, skip_batches: int = 0) -> DataLoader:
    """Train loaders shuffle with a permutation seeded by ``(seed, epoch)`` (resume-exact); under
    torchrun each rank takes its interleaved shard of that same permutation. A dataset with a
    ``sample_weights`` attribute (N,) is drawn with replacement in proportion to it instead
    (single process; under DDP the plain sharded permutation is used); one with
    ``repeat_factors`` (N,) uses :class:`RepeatFactorSampler`. ``skip_batches`` starts the pass
    that many batches in; a dataset with ``set_epoch`` is told the pass number (so per-item
    augmentation can be seeded by (epoch, index) and survive a mid-pass resume with workers)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    reseed_dataset(dataset, seed * 7_919 + epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler = _train_or_eval_sampler(dataset, train, seed, epoch, generator)
    if skip_batches > 0:
        sampler = SkipSampler(sampler, skip_batches * batch_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=train if drop_last is None else drop_last, generator=generator,
                      worker_init_fn=_worker_init, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False, collate_fn=getattr(dataset, "collate_fn", None))


def _train_or_eval_sampler(dataset: Dataset, train: bool, seed: int, epoch: int,
                           generator: torch.Generator) -> Sampler[int]:
    weights = getattr(dataset, "sample_weights", None) if train else None
    repeat = getattr(dataset, "repeat_factors", None) if train else None
    if repeat is not None:
        sampler = RepeatFactorSampler(repeat, seed, epoch, dist_utils.rank(), dist_utils.world_size())
    elif weights is not None and not dist_utils.is_distributed():
        # Weighted sampling (e.g. inverse label-combination frequency), seeded per epoch like the rest.
        sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(dataset),
                                        replacement=True, generator=generator)
    elif train:
        # The same seeded permutation whatever the world size (rank r takes every world-th index),
        # so 1 process with batch B sees exactly the samples of N processes with batch B/N.
        sampler = DistributedSampler(dataset, num_replicas=dist_utils.world_size(), rank=dist_utils.rank(),
                                     shuffle=True, seed=seed, drop_last=False)
        sampler.set_epoch(epoch)
    else:
        sampler = SequentialSampler(dataset)
    return sampler
