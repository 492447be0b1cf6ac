"""Readers for the demo pack's three formats (see the pack README): ``arrays``, ``folder`` and ``medmnist``.

Every reader checks each file against the pack's ``MANIFEST.sha256`` and returns an :class:`ImageSet`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from rtl_core.data.arrays import ImageSet
from rtl_core.data.intensity import HIGH_DEPTH_MODES, decode_8bit
from rtl_core.data.manifest import read_manifest, sha256_file, verify_file
from rtl_core.errors import DataError
from rtl_core.paths import cache_dir

SPLIT_NAMES = {"0": "train", "1": "val", "2": "test"}


def read_meta(folder: Path, root: Path) -> dict[str, Any]:
    """The dataset's ``meta.json`` (checked against the manifest)."""
    path = folder / "meta.json"
    verify_file(root, path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}). Restore it from the data pack.") from exc


def _load_npz(path: Path, root: Path) -> dict[str, np.ndarray]:
    verify_file(root, path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} cannot be read as an .npz archive ({exc}). Restore it from the data pack.") from exc


def read_arrays(root: Path, rel: str, prefix: str = "") -> ImageSet:
    """Read an ``arrays`` dataset (``arrays.npz`` + ``meta.json``); ``prefix`` picks one of several sets in one file
    (e.g. ``ct3mm_`` in ``totalseg_examples``)."""
    folder = root / rel
    meta = read_meta(folder, root)
    path = folder / "arrays.npz"
    arrays = {k[len(prefix) :]: v for k, v in _load_npz(path, root).items() if k.startswith(prefix)}
    if "images" not in arrays:
        raise DataError(
            f"{path} has no '{prefix}images' array (keys: {sorted(arrays)}). Is this the right dataset folder?"
        )
    images = arrays.pop("images")
    n = len(images)
    groups = arrays.pop("group_id", None)
    if groups is None:
        groups = np.array([f"{meta.get('name', rel)}:{i}" for i in range(n)])
    labels = arrays.pop("labels", None)
    masks = arrays.pop("masks", None)
    intensity = "hu" if images.dtype == np.int16 else "uint8"
    if images.dtype not in (np.int16, np.uint8):
        raise DataError(
            f"{path}: images have dtype {images.dtype}; expected uint8 (8-bit) or int16 (Hounsfield units)."
        )
    class_names = list(meta.get("class_names", []))
    return ImageSet(
        name=meta.get("name", folder.name) + (f":{prefix.rstrip('_')}" if prefix else ""),
        images=images,
        groups=groups.astype(str),
        splits=np.full(n, "all", dtype="<U8"),
        labels=None if labels is None else labels.astype(np.int64),
        masks=masks,
        class_names=class_names,
        intensity=intensity,
        domain=folder.parent.name,
        source=str(path),
        extras={k: v for k, v in arrays.items() if len(v) == n},
        meta=meta,
    )


def _decode(blob: bytes, member: str, zip_path: Path) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(blob)) as image:
            image.load()
            mode = "L" if image.mode in ("L", "1", "LA") or image.mode in HIGH_DEPTH_MODES else "RGB"
            return np.asarray(decode_8bit(image, mode, source=f"{zip_path}:{member}"))  # 16-bit: min–max, no clip
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(
            f"{zip_path}: member {member} is not a readable image ({exc}). Restore the zip from the data pack."
        ) from exc


def _cache_key(path: Path, root: Path) -> str:
    manifest = read_manifest(root)
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    digest = manifest.get(rel) or sha256_file(path)
    return hashlib.sha256(f"{rel}:{digest}:v1".encode()).hexdigest()[:16]


def _parse_column(values: list[str]) -> np.ndarray:
    if all(v in ("True", "False") for v in values):
        return np.array([v == "True" for v in values])
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values)


def read_folder(root: Path, rel: str, use_cache: bool | None = None) -> ImageSet:
    """Read a ``folder`` dataset: ``images.zip`` (ImageFolder layout inside) + ``index.csv`` + ``meta.json``.

    Decoded arrays are cached under ``artifacts/cache`` keyed by the zip's checksum, so a second load is fast.
    """
    if use_cache is None:
        use_cache = os.environ.get("RTL_CACHE", "1") != "0"
    folder = root / rel
    meta = read_meta(folder, root)
    index_path, zip_path = folder / "index.csv", folder / "images.zip"
    verify_file(root, index_path)
    verify_file(root, zip_path)
    with open(index_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DataError(f"{index_path} lists no images. Restore it from the data pack.")
    for column in ("path", "label", "split"):
        if column not in rows[0]:
            raise DataError(f"{index_path} has no '{column}' column (columns: {list(rows[0])}).")
    has_masks = "mask_path" in rows[0]

    cache = cache_dir() / f"{folder.name}-{_cache_key(zip_path, root)}.npz"
    images = masks = None
    if use_cache and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                images = npz["images"]
                masks = npz["masks"] if has_masks else None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            images = None  # a broken cache is rebuilt below
    if images is None or len(images) != len(rows):
        try:
            archive = zipfile.ZipFile(zip_path)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{zip_path} is not a valid zip archive ({exc}). Restore it from the data pack.") from exc
        with archive:
            names = set(archive.namelist())

            def load(member: str) -> np.ndarray:
                if member not in names:
                    raise DataError(f"{index_path} lists {member}, which is missing from {zip_path}. Restore the pack.")
                return _decode(archive.read(member), member, zip_path)

            decoded = [load(row["path"]) for row in rows]
            shapes = {d.shape for d in decoded}
            if len(shapes) != 1:
                raise DataError(
                    f"{zip_path}: images have differing shapes {sorted(shapes)[:4]}; the pack stores one size per set."
                )
            images = np.stack(decoded)
            if has_masks:
                mask_list = []
                for row, image in zip(rows, decoded):
                    mask = load(row["mask_path"])
                    if mask.shape[:2] != image.shape[:2]:
                        raise DataError(
                            f"{zip_path}: mask {row['mask_path']} is {mask.shape[:2]} but its image {row['path']} is "
                            f"{image.shape[:2]}. Re-export the mask at the image's size."
                        )
                    mask_list.append((mask if mask.ndim == 2 else mask.max(axis=-1)) > 0)
                masks = np.stack(mask_list).astype(np.uint8)
        if use_cache:
            from rtl_core.io import atomic_write

            payload = {"images": images} | ({"masks": masks} if masks is not None else {})

            def save(tmp: Path) -> None:
                with open(tmp, "wb") as handle:
                    np.savez(handle, **payload)

            atomic_write(cache, save)

    try:
        labels = np.array([int(row["label"]) for row in rows], dtype=np.int64)
    except ValueError as exc:
        raise DataError(f"{index_path}: a label is not an integer ({exc}).") from exc
    splits = np.array([row["split"] for row in rows], dtype="<U8")
    groups = np.array([row.get("group_id") or f"{folder.name}:{i}" for i, row in enumerate(rows)])
    if "group_id" in rows[0]:
        groups = np.array([f"{folder.name}:{row['group_id']}" for row in rows])
    skip = {"path", "label", "split", "group_id", "mask_path"}
    extras = {col: _parse_column([row[col] for row in rows]) for col in rows[0] if col not in skip}
    return ImageSet(
        name=meta.get("name", folder.name),
        images=images,
        groups=groups,
        splits=splits,
        labels=labels,
        masks=masks,
        class_names=list(meta.get("class_names", [])),
        intensity="uint8",
        domain=folder.parent.name,
        source=str(zip_path),
        extras=extras,
        meta=meta,
    )


def read_medmnist(root: Path, name: str) -> ImageSet:
    """Read ``medmnist/<name>.npz`` in MedMNIST's own key layout (``train_images``, ``train_labels`` (N×1), …)."""
    path = root / "medmnist" / f"{name}.npz"
    meta_path = root / "medmnist" / f"{name}.json"
    verify_file(root, meta_path)
    meta = json.loads(meta_path.read_text())
    arrays = _load_npz(path, root)
    images, labels, splits = [], [], []
    for split in ("train", "val", "test"):
        key_i, key_l = f"{split}_images", f"{split}_labels"
        if key_i not in arrays or key_l not in arrays:
            raise DataError(f"{path} lacks {key_i!r}/{key_l!r} (keys: {sorted(arrays)}); expected MedMNIST's layout.")
        if len(arrays[key_i]) != len(arrays[key_l]):
            raise DataError(
                f"{path}: {key_i} has {len(arrays[key_i])} images but {key_l} has {len(arrays[key_l])} labels."
            )
        images.append(arrays[key_i])
        labels.append(arrays[key_l].reshape(len(arrays[key_l]), -1)[:, 0].astype(np.int64))
        splits.append(np.full(len(arrays[key_i]), split, dtype="<U8"))
    all_images = np.concatenate(images)
    return ImageSet(
        name=meta.get("name", name),
        images=all_images,
        groups=np.array([f"{name}:{i}" for i in range(len(all_images))]),
        splits=np.concatenate(splits),
        labels=np.concatenate(labels),
        class_names=list(meta.get("class_names", [])),
        intensity="uint8",
        domain="medmnist",
        source=str(path),
        meta=meta,
    )
