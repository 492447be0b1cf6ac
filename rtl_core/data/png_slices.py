"""PNG slice + mask folders (``images/`` + ``masks/``, one patient per file-name prefix): a user's 2-D segmentation
task, decoded to 8-bit grey by :func:`rtl_core.data.intensity.decode_8bit` as every other reader."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rtl_core.data.intensity import decode_8bit
from rtl_core.errors import DataError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


@dataclass
class SliceFolder:
    """2-D slices with masks read from an ``images/`` + ``masks/`` folder pair.

    ``images``: uint8 (N, H, W) grey; ``masks``: uint8 (N, H, W) label maps (0 = background);
    ``groups``: patient id per slice (split by it, never by slice); ``names``: file names.
    """

    images: np.ndarray
    masks: np.ndarray
    groups: np.ndarray
    names: list[str]
    root: Path

    def __len__(self) -> int:
        return len(self.images)

    def to_image_set(self, name: str, domain: str = "ct") -> Any:
        """As an :class:`rtl_core.data.arrays.ImageSet` (split ``all``; make grouped splits afterwards)."""
        from rtl_core.data.arrays import ImageSet

        return ImageSet(
            name=name,
            images=self.images,
            groups=self.groups,
            splits=np.full(len(self), "all"),
            masks=self.masks,
            class_names=["background", "foreground"],
            intensity="uint8",
            domain=domain,
            source=str(self.root),
        )


def _open_png(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError ...
        raise DataError(
            f"{path}: cannot decode the image ({type(exc).__name__}: {exc}); remove or re-export it."
        ) from exc
    return img


def _decode_mask(img: Image.Image, mask_rgb: tuple[int, int, int] | None, rgb_tol: float) -> np.ndarray:
    """Mask file -> uint8 label map.

    With ``mask_rgb``: 1 where the pixel is within ``rgb_tol`` (Euclidean, 0..255 units) of that colour.
    Without: grey masks with values {0, 255} (or {0, 1}) become 0/1, other grey values are kept as label ids;
    colour masks become 1 wherever the pixel is not black.
    """
    if mask_rgb is not None:
        rgb = np.asarray(img.convert("RGB"), dtype=np.int32)
        dist = np.sqrt(((rgb - np.asarray(mask_rgb, dtype=np.int32)) ** 2).sum(axis=-1))
        return (dist <= rgb_tol).astype(np.uint8)
    if img.mode in ("RGB", "RGBA", "P"):
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            return (rgb.max(axis=-1) > 0).astype(np.uint8)
        grey = rgb[..., 0]
    else:
        grey = np.asarray(img.convert("L") if img.mode not in ("L", "1") else img, dtype=np.uint8)
        if img.mode == "1":
            grey = grey.astype(bool).astype(np.uint8)
    values = np.unique(grey)
    if set(values.tolist()) <= {0, 255}:
        return (grey > 0).astype(np.uint8)
    return grey.astype(np.uint8)


def _listing(folder: Path, exts: set[str]) -> dict[str, Path]:
    """``{file name: path}`` of the image files directly in ``folder`` (hidden files left out)."""
    with os.scandir(folder) as entries:
        return {
            e.name: Path(e.path)
            for e in entries
            if e.is_file() and not e.name.startswith(".") and Path(e.name).suffix.lower() in exts
        }


def _group(pattern: re.Pattern[str], name: str, path: Path) -> str:
    """The patient id of slice file ``name``: ``pattern``'s first group in the stem (the whole match without one)."""
    match = pattern.search(Path(name).stem)
    if match is None:
        raise DataError(f"{path}: cannot parse a patient id from the name with group_regex={pattern.pattern!r}.")
    return match.group(1) if match.groups() else match.group(0)


def list_png_slices(
    root: PathLike, group_regex: str = r"^([^_]+)_", images_dir: str = "images", extensions: Sequence[str] = (".png",)
) -> tuple[list[Path], np.ndarray]:
    """The slice image files of a folder :func:`read_png_slice_folder` reads, in its order, and each one's patient
    id, without decoding any file (to list a task's split files)."""
    folder = Path(root) / images_dir
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found. Expected {root}/{images_dir}/ and its masks folder.")
    images = _listing(folder, {e.lower() for e in extensions})
    pattern = re.compile(group_regex)
    names = sorted(images)
    return [images[n] for n in names], np.asarray([_group(pattern, n, images[n]) for n in names])


def read_png_slice_folder(
    root: PathLike,
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_rgb: tuple[int, int, int] | None = None,
    rgb_tol: float = 30.0,
    group_regex: str = r"^([^_]+)_",
    extensions: Sequence[str] = (".png",),
    window: str | tuple[float, float] | None = None,
) -> SliceFolder:
    """Read ``root/images/<name>.png`` paired by file name with ``root/masks/<name>.png``.

    Images are converted to 8-bit grey; 16-bit and float images by :func:`rtl_core.data.intensity.decode_8bit`
    (``window`` in the stored values, else each image's min–max). Masks may be binary grey or colour-coded; pass
    ``mask_rgb`` (e.g. ``(180, 40, 40)`` for the 3D-IRCADb liver export) to select one colour.
    ``group_regex``'s first group parsed from the file stem is the patient id (default: the prefix before the
    first ``_``). A missing mask, an image/mask size mismatch, differing image sizes or an unparsable name raise
    :class:`DataError` naming the files. Masks without an image are ignored with a warning.
    No orientation change is applied (some exports are stored upside down; check visually).
    """
    root = Path(root)
    img_root, mask_root = root / images_dir, root / masks_dir
    for folder in (img_root, mask_root):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found. Expected {root}/{images_dir}/ and {root}/{masks_dir}/.")
    exts = {e.lower() for e in extensions}
    images, masks = _listing(img_root, exts), _listing(mask_root, exts)
    if not images:
        raise DataError(f"{img_root}: no {sorted(exts)} images found.")
    missing = sorted(set(images) - set(masks))
    if missing:
        shown = ", ".join(str(images[n]) for n in missing[:5])
        raise DataError(
            f"{len(missing)} image(s) have no mask of the same name in {mask_root}: {shown}"
            f"{' ...' if len(missing) > 5 else ''}. Add the masks or remove those images."
        )
    orphans = sorted(set(masks) - set(images))
    if orphans:
        log.warning("%d mask(s) in %s have no image and are ignored, e.g. %s", len(orphans), mask_root, orphans[0])

    pattern = re.compile(group_regex)
    names = sorted(images)
    out_img, out_mask, groups = [], [], []
    for name in names:
        ipath, mpath = images[name], masks[name]
        image = np.asarray(decode_8bit(_open_png(ipath), "L", window, ipath), dtype=np.uint8)
        mask = _decode_mask(_open_png(mpath), mask_rgb, rgb_tol)
        if mask.shape != image.shape:
            raise DataError(
                f"mask {mpath} is {mask.shape[1]}x{mask.shape[0]} px but image {ipath} is "
                f"{image.shape[1]}x{image.shape[0]} px; re-export the mask at the image resolution."
            )
        if out_img and image.shape != out_img[0].shape:
            raise DataError(
                f"{ipath} is {image.shape[1]}x{image.shape[0]} px but {images[names[0]]} is "
                f"{out_img[0].shape[1]}x{out_img[0].shape[0]} px; resize all slices to one size first."
            )
        out_img.append(image)
        out_mask.append(mask)
        groups.append(_group(pattern, name, ipath))
    return SliceFolder(
        images=np.stack(out_img), masks=np.stack(out_mask), groups=np.asarray(groups), names=names, root=root
    )
