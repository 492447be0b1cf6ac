"""A task's splits as uint8 tensors, the training subset a protocol uses, and a seeded batch loader.

Training subsets (indices into the training split):

* full-data protocols use the whole training split, or, with ``evaluate.max_train_images``, a class-stratified
  subset of that size fixed by ``data.split_seed`` (the same images for every init and seed);
* low-label protocols use :func:`rtl_core.data.splits.lowlabel_subsets` of the *whole* training split with the
  run's seed, so 1 % ⊂ 10 % for each seed and each seed draws its own subset. Segmentation slices are stratified
  by whether they show any foreground.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from rtl_core.config import DataConfig
from rtl_core.data.datasets import TensorImageDataset
from rtl_core.data.splits import lowlabel_subsets
from rtl_core.data.study import study_task
from rtl_core.evaluate.augment import CropFlip
from rtl_core.evaluate.metrics import expand_metric_names
from rtl_core.evaluate.protocols import Protocol


@dataclass(frozen=True)
class TaskData:
    """One task at one image size: its three splits and what to measure."""

    name: str
    kind: str  # classification | segmentation
    metrics: tuple[str, ...]
    num_classes: int
    train: TensorImageDataset
    val: TensorImageDataset
    test: TensorImageDataset
    val_scans: np.ndarray  # scan / patient id of every validation image (groups of the val split)
    test_scans: np.ndarray  # scan / patient id of every test image (groups of the test split)
    split_seed: int
    fingerprint: str = ""  # of the split assignment (recorded with every run)
    train_scans: np.ndarray | None = None  # scan / patient id of every training image (grouped cross-validation)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """What a run records, primary metric first (see :func:`expand_metric_names`)."""
        return expand_metric_names(self.kind, self.metrics)

    def strata(self) -> np.ndarray:
        """Per training image: its label (classification) or whether it shows foreground (segmentation)."""
        targets = self.train.targets
        if self.kind == "segmentation":
            return (targets.flatten(1) > 0).any(1).numpy().astype(np.int64)
        return targets.numpy()

    def train_indices(self, protocol: Protocol, seed: int, max_train: int | None = None) -> np.ndarray:
        """Indices into the training split that a run of ``protocol`` with ``seed`` trains on."""
        n = len(self.train)
        strata = self.strata()
        if protocol.lowlabel:
            return lowlabel_subsets(strata, (protocol.data_fraction,), seed=seed)[protocol.data_fraction]
        if max_train is None or max_train >= n:
            return np.arange(n)
        # ceil per class can overshoot by up to one image per class; trim to the cap deterministically
        chosen = lowlabel_subsets(strata, (max_train / n,), seed=self.split_seed)[max_train / n]
        if len(chosen) > max_train:
            rng = np.random.default_rng(self.split_seed)
            chosen = np.sort(rng.choice(chosen, max_train, replace=False))
        return chosen


def load_task_data(name: str, size: int, split_seed: int = 0, data: DataConfig | None = None) -> TaskData:
    """Task ``name`` of the study whose data section is ``data`` (demo tasks, the config's own tasks, its
    ``data_dir``; :mod:`rtl_core.data.study`) with its splits rendered at ``size`` px, cached per process."""
    return _load_task_data(name, size, split_seed, data.model_dump_json() if data is not None else "")


@lru_cache(maxsize=16)
def _load_task_data(name: str, size: int, split_seed: int, data_json: str) -> TaskData:
    data = DataConfig.model_validate_json(data_json) if data_json else DataConfig()
    task = study_task(data, name, size, split_seed)
    if task.kind == "segmentation":
        num_classes = int(max(int(p.targets.max()) for p in (task.train, task.val, task.test))) + 1
    else:
        num_classes = len(task.class_names or ()) or int(task.train.targets.max()) + 1
    return TaskData(
        name,
        task.kind,
        task.metrics,
        max(num_classes, 2),
        task.train,
        task.val,
        task.test,
        task.groups["val"],
        task.groups["test"],
        split_seed,
        task.fingerprint,
        task.groups.get("train"),
    )


class BatchLoader:
    """Shuffled mini-batches of ``(float images in [0, 1], targets)`` from uint8 tensors, augmented by ``augment``
    (:mod:`rtl_core.evaluate.augment`, image and mask together) when given.

    A lighter stand-in for ``DataLoader(TensorImageDataset, shuffle=True, generator=g)`` on in-memory data:
    one gather and one conversion per batch instead of one per image. Shuffling draws from a
    ``torch.Generator`` seeded once, so a run's batch order depends only on its seed. A trailing batch of a
    single image is dropped (BatchNorm in train mode cannot normalise one value per channel).
    """

    def __init__(
        self,
        data: TensorImageDataset,
        indices: np.ndarray,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        augment: CropFlip | None = None,
    ) -> None:
        self.images, self.targets = data.images, data.targets
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        self.batch_size = max(1, min(batch_size, len(self.indices)))
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.augment = augment  # its own generator: the batch order is the same with and without augmentation
        self.augment_generator = torch.Generator().manual_seed(seed + 7919)

    def __len__(self) -> int:
        n, b = len(self.indices), self.batch_size
        full, rest = divmod(n, b)
        return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)

    def __iter__(self):
        order = (
            self.indices[torch.randperm(len(self.indices), generator=self.generator)] if self.shuffle else self.indices
        )
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            images, targets = as_float(self.images[idx]), self.targets[idx]
            if self.augment is not None:
                images, targets = self.augment(images, targets, self.augment_generator)
            yield images, targets


def calibration_batches(data: TensorImageDataset, indices: np.ndarray, batch_size: int, limit: int):
    """Un-augmented float batches of at most ``limit`` of the training images ``indices`` (the first ones of a fixed
    draw), for :func:`rtl_core.evaluate.models.recompute_batchnorm`."""
    chosen = np.asarray(indices)
    if len(chosen) > limit:
        chosen = np.sort(np.random.default_rng(0).choice(chosen, limit, replace=False))
    rows = torch.as_tensor(chosen, dtype=torch.long)
    step = max(2, batch_size)
    return [as_float(data.images[rows[i : i + step]]) for i in range(0, len(rows), step) if len(rows[i : i + step]) > 1]


def as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in ``[0, 1]``; anything else (e.g. cached features) unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def batches(data: TensorImageDataset, batch_size: int):
    """Unshuffled batches of a whole split (for prediction), images as float in ``[0, 1]``."""
    for i in range(0, len(data), batch_size):
        yield as_float(data.images[i : i + batch_size]), data.targets[i : i + batch_size]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / max(1, min(batch_size, n))))
