"""Pools and tasks from a user's own directories, declared in the study config (``data.pools``/``data.tasks``).

* pools: ``imagefolder`` (ImageNet layout), ``dicom`` (folders of DICOM files, searched recursively),
  ``nifti`` (a folder of ``.nii``/``.nii.gz`` volumes), ``png_slices`` (``images/`` + ``masks/``). ImageFolder,
  DICOM and NIfTI pools are indexed lazily and streamed from disk by DataLoader workers (RadNet scale);
* tasks: ``imagefolder`` classification with ``train/``, ``val/``, ``test/`` sub-folders (missing val / test
  parts are carved out of train, stratified, seeded; grouped by ``group_regex`` when given) streamed from disk;
  ``png_slices`` and ``nifti`` segmentation (slices + label maps, split by patient / volume), held in memory.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from rtl_core.config import UserDataset
from rtl_core.data.arrays import ImageSet
from rtl_core.data.ct_streams import DicomSliceStream, NiftiSliceStream
from rtl_core.data.datasets import TensorImageDataset, render_set
from rtl_core.data.held_out import HeldOutFiles, held_out_digests
from rtl_core.data.imagefolder import (
    FolderIndex,
    ImageFolderStream,
    index_image_folder,
)
from rtl_core.data.medical import list_dicom_files, read_nifti_volume
from rtl_core.data.png_slices import list_png_slices, read_png_slice_folder
from rtl_core.data.pool_check import check_pool_files
from rtl_core.data.splits import grouped_split
from rtl_core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


class ImagesOnly(Dataset):
    """Drop the labels of an (image, label) dataset: an unlabelled pool."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]


def expand(path: str) -> Path:
    """A config path with ``$VARIABLES`` and ``~`` expanded (portable study configs)."""
    return Path(os.path.expandvars(path)).expanduser()


def existing_path(spec: UserDataset, name: str) -> Path:
    path = expand(spec.path)
    if not path.exists():
        raise DataError(f"data.{name}: path {path} does not exist. Fix `path` in the study config.")
    return path


def _nifti_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.name.endswith(NIFTI_SUFFIXES))
    if not files:
        raise DataError(f"{folder}: no .nii / .nii.gz volumes found.")
    return files


@dataclass
class UserPool:
    """A user's pool: its dataset (items: float (3, size, size) in [0, 1]), the files it reads, and how many
    files were left out because they are val/test images of one of the study's tasks."""

    dataset: Dataset
    files: list[str]
    excluded: int = 0


def _excluded(name: str, spec: UserDataset, root: Path, rel: list[str]) -> np.ndarray:
    """Mask of the files (``rel``: posix paths relative to ``root``) matched by the pool's ``exclude`` globs."""
    hit = np.zeros(len(rel), dtype=bool)
    for pattern in spec.exclude:
        matched = np.fromiter((fnmatch.fnmatchcase(r, pattern) for r in rel), dtype=bool, count=len(rel))
        if not matched.any():
            log.warning("data.pools.%s: exclude pattern %r matches no file below %s", name, pattern, root)
        hit |= matched
    return hit


def _without_excluded(name: str, spec: UserDataset, root: Path, files: list[Path]) -> list[Path]:
    """``files`` minus those matched by the pool's ``exclude`` glob patterns (paths relative to ``root``)."""
    if not spec.exclude:
        return files
    rel = [f.relative_to(root).as_posix() if f.is_relative_to(root) else f.as_posix() for f in files]
    return [f for f, h in zip(files, _excluded(name, spec, root, rel)) if not h]


def user_pool(
    name: str, spec: UserDataset, size: int, held_out: HeldOutFiles | None = None, check: bool = True
) -> UserPool:
    """A streaming, unlabelled pool; files matched by the pool's ``exclude`` patterns and byte copies of
    ``held_out`` (the study's tasks' val/test files, :func:`held_out_files`; compared by size first, then SHA-256,
    :mod:`rtl_core.data.held_out`) are left out. With ``check``,
    every file is read first (:func:`rtl_core.data.pool_check.check_pool_files`: in parallel, remembered by path,
    size and mtime), so a damaged file fails here, naming it, not when a batch first draws it."""
    path = existing_path(spec, f"pools.{name}")
    held_out = held_out or HeldOutFiles()
    if spec.format in ("dicom", "nifti") and spec.window is None:
        raise ConfigError(
            f"data.pools.{name}: HU data need a CT window, e.g. `window: abdomen` or `window: [40, 400]`."
        )
    if spec.exclude and spec.format == "png_slices":
        raise ConfigError(f"data.pools.{name}: `exclude` works for imagefolder, dicom and nifti pools.")
    if spec.format == "imagefolder":
        index = index_image_folder(path)
        if spec.exclude:
            keep = ~_excluded(name, spec, index.root, [os.fsdecode(r) for r in index.rel_paths])
            index = FolderIndex(index.root, index.rel_paths[keep], index.labels[keep], index.class_names)
        root = "" if str(index.root) == "." else os.path.join(str(index.root), "")
        files = [root + os.fsdecode(r) for r in index.rel_paths]  # str(index.root / rel), without a Path per file
        held = held_out.keep(files) if held_out else np.ones(len(files), dtype=bool)
        if not held.all():
            index = FolderIndex(index.root, index.rel_paths[held], index.labels[held], index.class_names)
            files = [f for f, k in zip(files, held) if k]
        if not len(index):
            raise DataError(f"data.pools.{name}: no image files left below {path}.")
        if check:
            check_pool_files(name, files, "imagefolder", root=path)
        stream = ImageFolderStream(index, size, window=spec.window)
        return UserPool(ImagesOnly(stream), files, int((~held).sum()))
    if spec.format == "dicom":
        files = _without_excluded(name, spec, path, [Path(f) for f in list_dicom_files(path, recursive=True)])
        keep = held_out.keep(files) if held_out else np.ones(len(files), dtype=bool)
        kept = [f for f, k in zip(files, keep) if k]
        if not kept:
            raise DataError(f"data.pools.{name}: no DICOM files left below {path}.")
        if check:
            check_pool_files(name, kept, "dicom", root=path)
        return UserPool(DicomSliceStream(kept, spec.window, size), [str(f) for f in kept], len(files) - len(kept))
    if spec.format == "nifti":
        files = _without_excluded(name, spec, path, _nifti_files(path))
        if not files:
            raise DataError(f"data.pools.{name}: no NIfTI volumes left below {path}.")
        if check:
            check_pool_files(name, files, "nifti", root=path)
        return UserPool(NiftiSliceStream(files, spec.window, size), [str(f) for f in files])
    folder = read_png_slice_folder(path, window=spec.window)  # decoded here, in memory: nothing left to check
    images, _ = render_set(folder.to_image_set(name), size)
    return UserPool(
        TensorImageDataset(images, None, name=f"pool:{name}"), [str(folder.root / "images" / n) for n in folder.names]
    )


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


SPLITS = ("train", "val", "test")


@dataclass
class UserTask:
    """A user's task rendered at one size: uint8 splits in memory, and per image its group (patient / scan, or the
    file where no ids are given) and its file (``file#slice`` for volumes), which the saved split lists."""

    name: str
    kind: str
    class_names: list[str] | None
    splits: dict[str, TensorImageDataset]
    groups: dict[str, np.ndarray]
    files: dict[str, np.ndarray] = field(default_factory=dict)


def user_task(name: str, spec: UserDataset, size: int, split_seed: int = 0, num_workers: int = 0) -> UserTask:
    """A user task's train/val/test splits, grouped by patient where ``group_regex`` (or the slice naming) says,
    stratified and seeded where the folders do not give a split."""
    path = existing_path(spec, f"tasks.{name}")
    if spec.exclude:
        raise ConfigError(f"data.tasks.{name}: `exclude` works for pools only; move the files out of the task folder.")
    fractions = (1 - spec.val_fraction - spec.test_fraction, spec.val_fraction, spec.test_fraction)
    if spec.format == "imagefolder":
        return _imagefolder_task(name, spec, path, size, split_seed, num_workers)
    if spec.format == "dicom":
        raise ConfigError(
            f"data.tasks.{name}: DICOM folders are supported as pools; for a task use nifti or png_slices."
        )
    if spec.kind != "segmentation":
        raise ConfigError(f"data.tasks.{name}: format {spec.format} holds masks; set `kind: segmentation`.")
    if spec.format == "png_slices":
        folder = read_png_slice_folder(path, group_regex=spec.group_regex or r"^([^_]+)_", window=spec.window)
        data = folder.to_image_set(name)
        files = np.asarray([str(folder.root / "images" / n) for n in folder.names])
    else:
        data = _nifti_slices(name, spec, path)
        files = np.char.add(np.char.add(data.groups.astype(str), "#"), np.arange(len(data)).astype(str))
    data.splits = grouped_split(None, data.groups, fractions=fractions, seed=split_seed, name=name)
    out, groups, listed = {}, {}, {}
    for part in SPLITS:
        chosen = data.splits == part
        images, masks = render_set(data.split(part), size, spec.window)
        out[part] = TensorImageDataset(images, masks, name=f"{name}:{part}")
        groups[part], listed[part] = data.groups[chosen].astype(str), files[chosen]
    return UserTask(name, "segmentation", None, out, groups, listed)


def user_task_splits(name: str, spec: UserDataset, size: int, split_seed: int = 0) -> dict[str, Dataset]:
    """``{"train": ..., "val": ..., "test": ...}`` datasets of a user task (see :func:`user_task`)."""
    return user_task(name, spec, size, split_seed).splits


def task_split_files(name: str, spec: UserDataset, split_seed: int = 0) -> dict[str, list[str]]:
    """The files of each split of an ``imagefolder`` or ``png_slices`` task, as :func:`user_task` splits them,
    without decoding any image (listing and the seeded grouped split only)."""
    path = existing_path(spec, f"tasks.{name}")
    if spec.format == "imagefolder":
        return {
            p: [str(f) for f in index.paths] for p, index in _imagefolder_parts(name, spec, path, split_seed).items()
        }
    if spec.format != "png_slices":
        raise ConfigError(f"data.tasks.{name}: split files are listed for imagefolder and png_slices tasks only.")
    files, groups = list_png_slices(path, spec.group_regex or r"^([^_]+)_")
    fractions = (1 - spec.val_fraction - spec.test_fraction, spec.val_fraction, spec.test_fraction)
    splits = grouped_split(None, groups, fractions=fractions, seed=split_seed, name=name)
    return {p: [str(f) for f, s in zip(files, splits) if s == p] for p in SPLITS}


def held_out_files(tasks: dict[str, UserDataset], split_seed: int = 0) -> HeldOutFiles:
    """The val/test image files of the user's tasks (a pool must not contain them): listed without decoding,
    hashed once per set of files (:func:`rtl_core.data.held_out.held_out_digests`)."""
    files: list[str] = []
    for name, spec in tasks.items():
        if spec.format in ("imagefolder", "png_slices"):
            parts = task_split_files(name, spec, split_seed)
            files += parts.get("val", []) + parts.get("test", [])
    return held_out_digests(files) if files else HeldOutFiles()


def _materialise(dataset: Dataset, name: str, num_workers: int) -> TensorImageDataset:
    """Decode a streamed (image, label) dataset once into uint8 images and int64 labels."""
    from torch.utils.data import DataLoader

    images, labels = [], []
    for x, y in DataLoader(dataset, batch_size=64, shuffle=False, num_workers=num_workers):
        images.append(x.mul(255).round_().clamp_(0, 255).to(torch.uint8))
        labels.append(torch.as_tensor(y, dtype=torch.int64))
    if not images:
        raise DataError(f"{name}: no images.")
    return TensorImageDataset(torch.cat(images), torch.cat(labels), name=name)


def _nifti_slices(name: str, spec: UserDataset, path: Path) -> ImageSet:
    if spec.labels_path is None:
        raise ConfigError(
            f"data.tasks.{name}: a NIfTI segmentation task needs `labels_path` (label maps with the same names)."
        )
    if spec.window is None:
        raise ConfigError(f"data.tasks.{name}: HU data need a CT window, e.g. `window: liver`.")
    labels_root = expand(spec.labels_path)
    images, masks, groups = [], [], []
    for file in _nifti_files(path):
        label_file = labels_root / file.relative_to(path)
        volume = read_nifti_volume(file, label_file)
        images.append(volume.hu.astype(np.int16))
        masks.append(volume.labels.astype(np.uint8))
        groups += [file.name] * len(volume.hu)
    shapes = {im.shape[1:] for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"{path}: volumes have different in-plane sizes {sorted(shapes)}; resample them to one grid first."
        )
    return ImageSet(
        name=name,
        images=np.concatenate(images),
        groups=np.array(groups),
        splits=np.full(len(groups), "all"),
        masks=np.concatenate(masks),
        intensity="hu",
        domain="ct",
        source=str(path),
    )


def _imagefolder_parts(name: str, spec: UserDataset, path: Path, split_seed: int) -> dict[str, FolderIndex]:
    """Each split's files of an imagefolder task (its folders; val / test carved out of train where absent)."""
    parts = {p: path / p for p in SPLITS if (path / p).is_dir()}
    if "train" not in parts:
        raise DataError(
            f"{path}: an imagefolder task needs a train/ sub-folder (and optionally val/, test/), each in ImageNet "
            "layout."
        )
    indexes = {p: index_image_folder(folder) for p, folder in parts.items()}
    classes = indexes["train"].class_names
    folders = [str(parts["train"] / c) for c in classes]
    if len(classes) < 2:
        raise DataError(
            f"{parts['train']}: task {name} has {len(classes)} class folder ({folders[0]}); a classification task "
            "needs at least two class folders (train/<class>/<images>, one folder per class)."
        )
    for p, index in indexes.items():
        if index.class_names != classes:
            raise DataError(
                f"{parts[p]}: classes {index.class_names} differ from train/'s {classes}; use the same class folders."
            )
    chosen: dict[str, tuple[FolderIndex, np.ndarray]] = {
        p: (index, np.arange(len(index))) for p, index in indexes.items()
    }
    missing = [p for p in ("val", "test") if p not in indexes]
    if missing:
        train = indexes["train"]
        groups = _groups_from_paths(train.paths, spec.group_regex)
        fractions = (
            1 - (spec.val_fraction if "val" in missing else 0) - (spec.test_fraction if "test" in missing else 0),
            spec.val_fraction if "val" in missing else 0.0,
            spec.test_fraction if "test" in missing else 0.0,
        )
        splits = grouped_split(
            np.asarray(train.labels), groups, fractions=fractions, seed=split_seed, name=name, class_names=folders
        )
        for p in ["train"] + missing:
            chosen[p] = (train, np.flatnonzero(splits == p))
    out: dict[str, FolderIndex] = {}
    for p, (index, rows) in chosen.items():
        out[p] = FolderIndex(index.root, index.rel_paths[rows], index.labels[rows], index.class_names)
        if not len(out[p]):
            raise DataError(f"{path}: the {p} split of task {name} is empty; add images or change val/test_fraction.")
    return out


def _imagefolder_task(
    name: str, spec: UserDataset, path: Path, size: int, split_seed: int, num_workers: int
) -> UserTask:
    out, groups_out, files = {}, {}, {}
    classes: list[str] = []
    for p, sub in _imagefolder_parts(name, spec, path, split_seed).items():
        out[p] = _materialise(ImageFolderStream(sub, size, window=spec.window), f"{name}:{p}", num_workers)
        paths = sub.paths
        groups_out[p] = _groups_from_paths(paths, spec.group_regex)
        files[p] = np.asarray([str(f) for f in paths])
        classes = sub.class_names
    return UserTask(name, "classification", list(classes), out, groups_out, files)
