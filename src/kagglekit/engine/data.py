"""Data loaders whose randomness is a pure function of (seed, epoch, item): resume is exact and
independent of the worker count; workers persist across epochs (:class:`EpochLoader`)."""
from __future__ import annotations

import os
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


def resolve_num_workers(requested: int, cuda: bool) -> int:
    """``requested`` ≥ 0 as given; -1 = from the machine: the CPUs this process may use, shared by
    the ranks on this node (``LOCAL_WORLD_SIZE``), one kept for the training process, at most 8 (a
    GPU step rarely needs more; each worker holds a copy of the dataset). On CPU training the
    workers compete with torch's own threads, so auto keeps a quarter of the share (0 on a 2-core box)."""
    if requested >= 0:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    return min(8, share - 1) if cuda else min(8, share // 4)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The 32-bit seed of item ``index`` in pass ``epoch``: its augmentation is a pure function of
    (seed, epoch, index), whatever the worker count, worker reuse or resume point."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class EpochItems(Dataset):
    """``dataset`` addressed by ``(epoch, index)``: each item reseeds Python, NumPy, torch and the
    dataset's albumentations pipeline from :func:`item_seed` and tells the dataset its pass
    (``set_epoch``) inside the worker that loads it, so workers can persist across epochs (a
    persistent worker's dataset copy never sees the main process's ``set_epoch``)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, None
        self.collate_fn = getattr(dataset, "collate_fn", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch
        seed = item_seed(self.seed, epoch, index)
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        reseed_dataset(self.dataset, seed)
        return self.dataset[index]


class EpochSampler(Sampler[tuple[int, int]]):
    """The pass's index sampler, swapped in by :meth:`EpochLoader.epoch` before each pass (a
    DataLoader's sampler cannot be replaced, but it re-iterates this one every pass); yields
    ``(epoch, index)`` for :class:`EpochItems`."""

    def __init__(self) -> None:
        self.epoch, self.inner = 0, None

    def set(self, epoch: int, inner: Sampler[int]) -> None:
        self.epoch, self.inner = epoch, inner

    def __iter__(self):
        return ((self.epoch, int(i)) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class EpochLoader:
    """One DataLoader over ``dataset`` for a whole run: workers start once and persist across
    epochs and validations (``persistent_workers``), ``prefetch_factor`` batches each ahead,
    pinned host memory on CUDA; each pass is drawn by :meth:`epoch`.

    Train passes shuffle with a permutation seeded by ``(seed, epoch)`` (resume-exact); under
    torchrun each rank takes its interleaved shard of that same permutation. A dataset with a
    ``sample_weights`` attribute (N,) is drawn with replacement in proportion to it instead
    (single process; under DDP the plain sharded permutation is used); one with
    ``repeat_factors`` (N,) uses :class:`RepeatFactorSampler`. Items are seeded per
    (seed, epoch, index) (:class:`EpochItems`)."""

    def __init__(self, dataset: Dataset, batch_size: int, *, train: bool, seed: int, num_workers: int = 0,
                 drop_last: bool | None = None, persistent: bool = True, prefetch_factor: int = 2,
                 pin_memory: bool | None = None) -> None:
        self.dataset, self.train, self.seed = dataset, train, seed
        self.sampler = EpochSampler()
        workers = max(0, num_workers)
        self.loader = DataLoader(
            EpochItems(dataset, seed), batch_size=batch_size, sampler=self.sampler, num_workers=workers,
            drop_last=train if drop_last is None else drop_last, worker_init_fn=_worker_init,
            generator=torch.Generator().manual_seed(seed), collate_fn=getattr(dataset, "collate_fn", None),
            pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
            persistent_workers=persistent and workers > 0, prefetch_factor=prefetch_factor if workers > 0 else None)

    def epoch(self, epoch: int, skip_batches: int = 0) -> DataLoader:
        """The loader drawing pass ``epoch``, starting ``skip_batches`` batches in (mid-pass resume
        without loading the skipped items)."""
        if hasattr(self.dataset, "set_epoch"):  # the main process's copy (num_workers=0, samplers)
            self.dataset.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        sampler = _train_or_eval_sampler(self.dataset, self.train, self.seed, epoch, generator)
        if skip_batches > 0:
            sampler = SkipSampler(sampler, skip_batches * self.loader.batch_size)
        self.sampler.set(epoch, sampler)
        return self.loader

    def close(self) -> None:
        """Stop persistent workers now (they would otherwise live until garbage collection)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int, epoch: int,
                num_workers: int = 0, drop_last: bool | None = None, skip_batches: int = 0) -> DataLoader:
    """A one-pass loader (no persistent workers) of pass ``epoch``: see :class:`EpochLoader`."""
    loader = EpochLoader(dataset, batch_size, train=train, seed=seed, num_workers=num_workers,
                         drop_last=drop_last, persistent=False)
    return loader.epoch(epoch, skip_batches)


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
