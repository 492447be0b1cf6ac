"""Pools and tasks from a user's own directories, declared in the study config (``data.pools``/``data.tasks``).

* pools: ``imagefolder`` (ImageNet layout), ``dicom`` (folders of DICOM files, searched recursively),
  ``nifti`` (a folder of ``.nii``/``.nii.gz`` volumes), ``png_slices`` (``images/`` + ``masks/``). ImageFolder,
  DICOM and NIfTI pools are indexed lazily and streamed from disk by DataLoader workers (RadNet scale);
* tasks: ``imagefolder`` classification with ``train/``, ``val/``, ``test/`` sub-folders (missing val / test
  parts are carved out of train, stratified, seeded; grouped by ``group_regex`` when given) streamed from disk;
  ``png_slices`` and ``nifti`` segmentation (slices + label maps, split by patient / volume), held in memory.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from rtl_core.config import UserDataset
from rtl_core.data.arrays import ImageSet
from rtl_core.data.datasets import TensorImageDataset, render_set
from rtl_core.data.imagefolder import DicomSliceStream, ImageFolderStream, NiftiSliceStream, index_image_folder
from rtl_core.data.medical import read_nifti_volume, read_png_slice_folder
from rtl_core.data.splits import grouped_split
from rtl_core.errors import ConfigError, DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


class ImagesOnly(Dataset):
    """Drop the labels of an (image, label) dataset: an unlabelled pool."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]


def _existing(spec: UserDataset, name: str) -> Path:
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise DataError(f"data.{name}: path {path} does not exist. Fix `path` in the study config.")
    return path


def _nifti_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.name.endswith(NIFTI_SUFFIXES))
    if not files:
        raise DataError(f"{folder}: no .nii / .nii.gz volumes found.")
    return files


def user_pool(name: str, spec: UserDataset, size: int) -> Dataset:
    """A streaming, unlabelled pool (items: float (3, size, size) in [0, 1])."""
    path = _existing(spec, f"pools.{name}")
    if spec.format == "imagefolder":
        return ImagesOnly(ImageFolderStream(index_image_folder(path), size))
    if spec.format in ("dicom", "nifti") and spec.window is None:
        raise ConfigError(f"data.pools.{name}: HU data need a CT window, e.g. `window: abdomen` or `window: [40, 400]`.")
    if spec.format == "dicom":
        return DicomSliceStream(path, spec.window, size)
    if spec.format == "nifti":
        return NiftiSliceStream(_nifti_files(path), spec.window, size)
    folder = read_png_slice_folder(path)
    images, _ = render_set(folder.to_image_set(name), size)
    return TensorImageDataset(images, None, name=f"pool:{name}")


def _groups_from_paths(paths: list[Path], regex: str | None) -> np.ndarray:
    if regex is None:
        return np.array([str(p) for p in paths])
    pattern = re.compile(regex)
    groups = []
    for p in paths:
        match = pattern.search(str(p))
        if not match:
            raise DataError(f"group_regex {regex!r} does not match {p}; fix `group_regex` in the study config.")
        groups.append(match.group(1))
    return np.array(groups)


def user_task_splits(name: str, spec: UserDataset, size: int, split_seed: int = 0) -> dict[str, Dataset]:
    """``{"train": ..., "val": ..., "test": ...}`` datasets of a user task."""
    path = _existing(spec, f"tasks.{name}")
    fractions = (1 - spec.val_fraction - spec.test_fraction, spec.val_fraction, spec.test_fraction)
    if spec.format == "imagefolder":
        return _imagefolder_splits(name, spec, path, size, split_seed)
    if spec.format == "dicom":
        raise ConfigError(f"data.tasks.{name}: DICOM folders are supported as pools; for a task use nifti or png_slices.")
    if spec.kind != "segmentation":
        raise ConfigError(f"data.tasks.{name}: format {spec.format} holds masks; set `kind: segmentation`.")
    if spec.format == "png_slices":
        data = read_png_slice_folder(path, group_regex=spec.group_regex or r"^([^_]+)_").to_image_set(name)
    else:
        data = _nifti_slices(name, spec, path)
    data.splits = grouped_split(None, data.groups, fractions=fractions, seed=split_seed, name=name)
    out = {}
    for part in ("train", "val", "test"):
        images, masks = render_set(data.split(part), size, spec.window)
        out[part] = TensorImageDataset(images, masks, name=f"{name}:{part}")
    return out


def _nifti_slices(name: str, spec: UserDataset, path: Path) -> ImageSet:
    if spec.labels_path is None:
        raise ConfigError(f"data.tasks.{name}: a NIfTI segmentation task needs `labels_path` (label maps with the same names).")
    if spec.window is None:
        raise ConfigError(f"data.tasks.{name}: HU data need a CT window, e.g. `window: liver`.")
    labels_root = Path(spec.labels_path).expanduser()
    images, masks, groups = [], [], []
    for file in _nifti_files(path):
        label_file = labels_root / file.relative_to(path)
        volume = read_nifti_volume(file, label_file)
        images.append(volume.hu.astype(np.int16))
        masks.append(volume.labels.astype(np.uint8))
        groups += [file.name] * len(volume.hu)
    shapes = {im.shape[1:] for im in images}
    if len(shapes) > 1:
        raise DataError(f"{path}: volumes have different in-plane sizes {sorted(shapes)}; resample them to one grid first.")
    return ImageSet(name=name, images=np.concatenate(images), groups=np.array(groups), splits=np.full(len(groups), "all"),
                    masks=np.concatenate(masks), intensity="hu", domain="ct", source=str(path))


def _imagefolder_splits(name: str, spec: UserDataset, path: Path, size: int, split_seed: int) -> dict[str, Dataset]:
    parts = {p: path / p for p in ("train", "val", "test") if (path / p).is_dir()}
    if "train" not in parts:
        raise DataError(f"{path}: an imagefolder task needs a train/ sub-folder (and optionally val/, test/), each in ImageNet layout.")
    indexes = {p: index_image_folder(folder) for p, folder in parts.items()}
    classes = indexes["train"].class_names
    for p, index in indexes.items():
        if index.class_names != classes:
            raise DataError(f"{parts[p]}: classes {index.class_names} differ from train/'s {classes}; use the same class folders.")
    out: dict[str, Dataset] = {p: ImageFolderStream(index, size) for p, index in indexes.items()}
    missing = [p for p in ("val", "test") if p not in out]
    if missing:
        train = indexes["train"]
        groups = _groups_from_paths(train.paths, spec.group_regex)
        fractions = (
            1 - (spec.val_fraction if "val" in missing else 0) - (spec.test_fraction if "test" in missing else 0),
            spec.val_fraction if "val" in missing else 0.0,
            spec.test_fraction if "test" in missing else 0.0,
        )
        splits = grouped_split(np.asarray(train.labels), groups, fractions=fractions, seed=split_seed, name=name)
        full = out["train"]
        for p in ["train"] + missing:
            out[p] = Subset(full, np.flatnonzero(splits == p).tolist())
    return out
