"""The unlabelled pool a pretraining run reads: a demo pool held in memory, or a user's pool streamed from disk.

Demo pools (``ct``, ``natural``, ``mixed``) are rendered once to uint8 ``(N, 3, S, S)`` and batches are uint8
(a quarter of the float bytes), augmented on the training device. A pool named in ``config.data.pools`` is
streamed by DataLoader workers (``data.num_workers``) from an image folder, DICOM files or NIfTI volumes.
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


class ImagesOnly(Dataset):
    """Drop the label of ``(image, label)`` items (an ImageFolder used as an unlabelled pool)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.dataset[index]
        return item[0] if isinstance(item, tuple) else item


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


def load_pretrain_pool(config: StudyConfig, pool: str) -> PretrainPool:
    """The pool ``pool`` as the study resolves it (:func:`rtl_core.data.study.study_pool`): a user pool of
    ``config.data.pools`` (streamed), else a demo pool (in memory, uint8)."""
    from rtl_core.data.study import study_pool

    found = study_pool(config, pool)
    if found.streaming:
        dataset = ImagesOnly(found.dataset)
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
    )
