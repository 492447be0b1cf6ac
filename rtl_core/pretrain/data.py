"""The unlabelled pool a pretraining run reads: a demo pool held in memory, or a user's pool streamed from disk.

Demo pools (``ct``, ``natural``, ``mixed``) are rendered once to uint8 ``(N, 3, S, S)`` and batches are uint8
(a quarter of the float bytes), augmented on the training device. A pool named in ``config.data.pools`` is
streamed by DataLoader workers (``data.num_workers``) from an image folder, DICOM files or NIfTI volumes; each
worker decodes, windows and resizes an item and hands it over as uint8 too (:class:`UInt8Items`), so a batch
crosses to the trainer and to the GPU at a quarter of the float bytes.

:func:`pool_loader` on a CUDA machine: batches in pinned (page-locked) memory, so the copy to the GPU runs
asynchronously beside the step; each worker keeps :data:`PREFETCH` batches ready ahead of the step; workers persist
across epochs (no restart, no re-fork of the index). On a CPU-only machine the same, without pinning (there is no
device copy to overlap); a demo pool is read in the training process (``num_workers`` 0: it is in memory already).
``make bench`` measures a worker's rate per format through this loader (``data.stream_loader_*``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from rtl_core.config import StudyConfig
from rtl_core.provenance import fingerprint_arrays


class UInt8Images(Dataset):
    """Items are the uint8 ``(3, S, S)`` rows of an in-memory image tensor."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


PREFETCH = 4
"""Batches each DataLoader worker of a streamed pool keeps ready ahead of the step (PyTorch's default is 2)."""


class ImagesOnly(Dataset):
    """Drop the label of ``(image, label)`` items (an ImageFolder used as an unlabelled pool)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.dataset[index]
        return item[0] if isinstance(item, tuple) else item


class UInt8Items(ImagesOnly):
    """Items of a streamed pool as uint8 ``(3, S, S)``: a float image in [0, 1] is scaled to 0–255 and rounded in
    the DataLoader worker (exact for 8-bit sources; windowed CT is quantised to 8 bits, as the demo CT pool is)."""

    def __getitem__(self, index: int) -> torch.Tensor:
        image = super().__getitem__(index)
        if image.dtype == torch.uint8:
            return image
        return image.mul(255).round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class PretrainPool:
    """A pool ready for a DataLoader, with the fingerprint recorded in the checkpoint sidecar."""

    name: str
    dataset: Dataset
    fingerprint: str
    streaming: bool

    def __len__(self) -> int:
        return len(self.dataset)


def known_pools(config: StudyConfig) -> list[str]:
    from rtl_core.names import DEMO_POOLS

    return sorted(set(DEMO_POOLS) | set(config.data.pools))


def load_pretrain_pool(config: StudyConfig, pool: str, check: bool = True) -> PretrainPool:
    """The pool ``pool`` as the study resolves it (:func:`rtl_core.data.study.study_pool`; ``check``: read every
    file of a user pool first): a user pool of ``config.data.pools`` (streamed, uint8 items), else a demo pool (in
    memory, uint8)."""
    from rtl_core.data.study import study_pool

    found = study_pool(config, pool, check=check)
    if found.streaming:
        dataset = UInt8Items(found.dataset)
        fingerprint = fingerprint_arrays(np.asarray([str(config.data.pools[pool].path).encode()]), found.listing)
        return PretrainPool(pool, dataset, fingerprint, streaming=True)
    images = found.dataset.images
    return PretrainPool(pool, UInt8Images(images), fingerprint_arrays(images.numpy()), streaming=False)


def pool_loader(
    pool: PretrainPool, batch_size: int, world_size: int, rank: int, seed: int, num_workers: int = 0
) -> DataLoader:
    """Shuffled batches of ``batch_size`` per device; the order depends only on (seed, epoch), so a resumed
    run sees the batches an uninterrupted run would (Lightning calls ``set_epoch`` on the sampler)."""
    sampler = DistributedSampler(
        pool.dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    workers = num_workers if pool.streaming else 0
    return DataLoader(
        pool.dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH if workers > 0 else None,
    )
