"""Torch ``Dataset``s over tasks and pools.

Shapes and value ranges (every dataset here, and the streaming ones in ``imagefolder``/``medical``):

* image: ``float32`` tensor ``(3, S, S)`` in ``[0, 1]``: grey images are replicated to three channels, HU
  images are rendered through their CT window first; normalisation (mean/std) belongs to the model;
* classification target: ``int64`` scalar class index;
* segmentation target: ``int64`` tensor ``(S, S)`` of label ids (``0`` = background);
* pool item: the image alone.

Demo-pack data is rendered once to a ``uint8`` tensor ``(N, 3, S, S)`` (a quarter of the float memory) and
converted per item; :attr:`TensorImageDataset.images` gives the whole uint8 batch to code that augments on
the device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from rtl_core.data.arrays import ImageSet
from rtl_core.data.demo_pools import load_pool
from rtl_core.data.intensity import render, resize_masks
from rtl_core.data.registry import get_task, load_task
from rtl_core.errors import DataError


class TensorImageDataset(Dataset):
    """Images held as uint8 ``(N, 3, S, S)``; items are ``image`` or ``(image, target)`` (see module doc)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor | None = None, name: str = "") -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"{name}: expected uint8 images (N, 3, S, S), got {images.dtype} {tuple(images.shape)}.")
        if targets is not None and len(targets) != len(images):
            raise DataError(f"{name}: {len(targets)} targets for {len(images)} images.")
        self.images, self.targets, self.name = images, targets, name

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index].float().div_(255)
        return image if self.targets is None else (image, self.targets[index])


def render_set(data: ImageSet, size: int, window=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images ``(N, 3, size, size)`` and targets (labels or resized masks) of an :class:`ImageSet`."""
    images = render(data.images, data.intensity, window, size)
    if data.masks is not None:
        return images, resize_masks(data.masks, size)
    return images, None if data.labels is None else torch.from_numpy(data.labels.astype(np.int64))


def task_dataset(
    name: str, split: str, size: int = 64, split_seed: int = 0, root: str | Path | None = None, window=None
) -> TensorImageDataset:
    """The ``split`` (train/val/test) of a registered task at ``size`` px."""
    if split not in ("train", "val", "test"):
        raise DataError(f"Unknown split {split!r}; use train, val or test.")
    spec = get_task(name)
    part = load_task(name, split_seed=split_seed, root=root).split(split)
    images, targets = render_set(part, size, window or spec.window)
    return TensorImageDataset(images, targets, name=f"{name}:{split}")


def pool_dataset(
    name: str, size: int = 64, pool_size: int | None = None, seed: int = 0, **kwargs
) -> TensorImageDataset:
    """An unlabelled pretraining pool (items are images only)."""
    pool = load_pool(name, size=size, pool_size=pool_size, seed=seed, **kwargs)
    images = torch.from_numpy(pool.images).permute(0, 3, 1, 2).contiguous()
    return TensorImageDataset(images, None, name=f"pool:{name}")
