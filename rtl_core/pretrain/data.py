"""The unlabelled pool a pretraining run reads: a demo pool held in memory, or a user's pool streamed from disk.

Demo pools (``ct``, ``natural``, ``mixed``) are rendered once to uint8 ``(N, 3, S, S)`` and batches are uint8
(a quarter of the float bytes), augmented on the training device. A pool named in ``config.data.pools`` is
streamed by DataLoader workers (``data.num_workers``) from an image folder, DICOM files or NIfTI volumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from rtl_core.config import StudyConfig
from rtl_core.errors import ConfigError
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
    from rtl_core.data.registry import POOLS

    return sorted(set(POOLS) | set(config.data.pools))


def load_pretrain_pool(config: StudyConfig, pool: str) -> PretrainPool:
    """The pool ``pool``: a user pool of ``config.data.pools`` if named there, else a demo pool."""
    from rtl_core.data.registry import POOLS

    size = config.data.image_size
    if pool in config.data.pools:
        return _user_pool(pool, config.data.pools[pool], size)
    if pool not in POOLS:
        raise ConfigError(
            f"Unknown pool {pool!r} (--pool / pretrain.pools). Known pools: {', '.join(known_pools(config))}; "
            "add your own under data.pools in the config file."
        )
    from rtl_core.data.datasets import pool_dataset

    data = pool_dataset(pool, size=size, pool_size=config.data.pool_size, seed=config.data.split_seed,
                        split_seed=config.data.split_seed, ct_window=config.data.ct_window, root=config.data.data_dir)
    return PretrainPool(pool, UInt8Images(data.images), fingerprint_arrays(data.images.numpy()), streaming=False)


def _user_pool(name: str, spec, size: int) -> PretrainPool:
    from rtl_core.data.imagefolder import (
        DicomSliceStream,
        ImageFolderStream,
        NiftiSliceStream,
        index_image_folder,
    )

    path = Path(spec.path).expanduser()
    if spec.format == "imagefolder":
        index = index_image_folder(path)
        dataset: Dataset = ImagesOnly(ImageFolderStream(index, size=size))
        listing = index.rel_paths
    elif spec.format in ("dicom", "nifti"):
        if spec.window is None:
            raise ConfigError(f"data.pools.{name}.window: a {spec.format} pool holds HU values; give a CT window "
                              "(a preset such as 'abdomen' or [level, width]).")
        if spec.format == "dicom":
            dataset = DicomSliceStream(path, spec.window, size)
            listing = dataset.files
        else:
            files = sorted(p for p in path.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
            if not files:
                raise ConfigError(f"data.pools.{name}.path: no .nii/.nii.gz files below {path}.")
            dataset = NiftiSliceStream(files, spec.window, size)
            listing = dataset.paths
    else:
        raise ConfigError(f"data.pools.{name}.format: {spec.format!r} is not a pool format; use imagefolder, dicom or nifti.")
    fingerprint = fingerprint_arrays(np.asarray([str(path).encode()]), np.asarray(listing))
    return PretrainPool(name, dataset, fingerprint, streaming=True)


def pool_loader(pool: PretrainPool, batch_size: int, world_size: int, rank: int, seed: int,
                num_workers: int = 0) -> DataLoader:
    """Shuffled batches of ``batch_size`` per device; the order depends only on (seed, epoch), so a resumed
    run sees the batches an uninterrupted run would (Lightning calls ``set_epoch`` on the sampler)."""
    sampler = DistributedSampler(pool.dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    workers = num_workers if pool.streaming else 0
    return DataLoader(pool.dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)
