"""Lazy, disk-streaming datasets for users' own image folders (CT files: :mod:`rtl_core.data.ct_streams`).

:func:`index_image_folder` + :class:`ImageFolderStream`: the ImageNet / torchvision ``ImageFolder`` layout
(``root/<class>/**/<image>``), the natural-image pretraining pools of Jonske et al. (CMPB 2025).

Indexing only lists files; pixels are decoded in ``__getitem__``, so DataLoader workers stream from disk and
the index scales to millions of files. Paths are held in NumPy byte arrays,
not Python lists, so forked workers do not copy them page by page (PyTorch issue #13246).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import InterpolationMode, resized_crop

from rtl_core.data.intensity import CTWindow, decode_8bit, get_window
from rtl_core.errors import DataError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""torchvision's ImageFolder extensions."""

PathLike = str | os.PathLike


def encode_paths(paths: Sequence[str]) -> np.ndarray:
    """Paths as a NumPy byte array (forked DataLoader workers share it instead of copying a list page by page)."""
    return np.asarray([os.fsencode(p) for p in paths], dtype=np.bytes_)


@dataclass
class FolderIndex:
    """File list of an ImageFolder tree: ``root / rel_paths[i]`` has label ``labels[i]`` (index into
    ``class_names``)."""

    root: Path
    rel_paths: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.rel_paths)

    def path(self, i: int) -> Path:
        return self.root / os.fsdecode(self.rel_paths[i])

    @property
    def paths(self) -> list[Path]:
        """All file paths (materialised; for millions of files prefer :meth:`path`)."""
        return [self.path(i) for i in range(len(self))]

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.class_names)}

    def counts(self) -> dict[str, int]:
        """Number of images per class."""
        return {
            name: int(n) for name, n in zip(self.class_names, np.bincount(self.labels, minlength=len(self.class_names)))
        }


def _scan_files(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    """Image files below ``folder`` (recursive, ``os.scandir``), relative to ``folder``, sorted."""
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(folder / rel if rel else folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir():
                    stack.append(name)
                elif entry.name.lower().endswith(extensions):
                    found.append(name)
    return sorted(found)


def index_image_folder(root: PathLike, extensions: Sequence[str] = IMG_EXTENSIONS) -> FolderIndex:
    """List an ImageNet-layout tree ``root/<class_name>/**/<image>`` without decoding any image.

    Classes are the sorted sub-folder names (as torchvision ``ImageFolder``). A missing root, a root without
    class folders, or a class folder without images raise :class:`DataError` naming the folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found. Expected root/<class_name>/<image files>.")
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(
            f"{root}: no class folders found. An ImageFolder root holds one sub-folder per class "
            "(root/<class_name>/<image files>)."
        )
    rel_paths: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for label, name in enumerate(classes):  # one class folder's Python strings at a time, kept as bytes arrays
        files = _scan_files(root / name, exts)
        if not files:
            raise DataError(
                f"{root / name}: class folder has no images with extensions {list(exts)}. "
                "Add images or remove the folder."
            )
        rel_paths.append(encode_paths([f"{name}/{f}" for f in files]))
        labels.append(np.full(len(files), label, dtype=np.int64))
    return FolderIndex(
        root=root, rel_paths=np.concatenate(rel_paths), labels=np.concatenate(labels), class_names=classes
    )


class ImageFolderStream(Dataset):
    """Decode one image of a :class:`FolderIndex` per ``__getitem__`` -> ``((3, size, size) image, label)``.

    Images are centre-cropped to a square and resized with bicubic filtering (as ``PIL.ImageOps.fit``);
    ``grey=True`` converts to luminance and replicates it to 3 channels (the 1 -> 3 channel input of the paper's
    ResNets). ``dtype`` ``float32`` gives values in [0, 1], ``uint8`` raw 0–255 (a quarter of the bytes between
    DataLoader workers and the trainer; convert on the device). An undecodable file raises :class:`DataError`
    naming it. 16-bit and float images (exported CT and X-ray) are mapped to 8 bit by
    :func:`rtl_core.data.intensity.decode_8bit`: through ``window`` (in the files' stored values) when given, else
    each image's min–max, never clipped at 255.

    Decoding is sized to the output: a JPEG much larger than ``size`` is decoded at 1/2, 1/4 or 1/8 scale in the
    DCT domain (``Image.draft``, libjpeg's scaled decoding; never below ``size``), and the crop is resized on the
    uint8 tensor by torchvision's antialiased bicubic kernel (PIL's filter, vectorised). ``make bench`` measures this
    against torchvision's ``ImageFolder`` + PIL loader (``data.stream_*``).

    Example::

        index = index_image_folder("imagenet/train")
        stream = ImageFolderStream(index, size=224, dtype="uint8")
        loader = DataLoader(stream, batch_size=256, num_workers=8, shuffle=True)
    """

    def __init__(
        self,
        index: FolderIndex,
        size: int,
        grey: bool = False,
        dtype: str = "float32",
        window: str | CTWindow | tuple[float, float] | None = None,
    ) -> None:
        if size < 1:
            raise DataError(f"ImageFolderStream: size must be >= 1, got {size}.")
        if dtype not in ("float32", "uint8"):
            raise DataError(f"ImageFolderStream: dtype must be 'float32' or 'uint8', got {dtype!r}.")
        self.index, self.size, self.grey, self.dtype = index, int(size), grey, dtype
        self.window = None if window is None else get_window(window)

    def __len__(self) -> int:
        return len(self.index)

    def decode(self, path: Path) -> torch.Tensor:
        """The file at ``path`` as a uint8 ``(1 or 3, size, size)`` tensor: centre square, bicubic, antialiased."""
        mode = "L" if self.grey else "RGB"
        try:
            with Image.open(path) as img:
                full = img.size
                img.draft(mode, (self.size, self.size))  # JPEG only: DCT-domain downscale, result >= size on both sides
                img = decode_8bit(img, mode, self.window, path)  # 16-bit / float: rescaled, never clipped
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, UnidentifiedImageError, SyntaxError, ...
            raise DataError(
                f"{path}: cannot decode the image ({type(exc).__name__}: {exc}). Remove or re-save the file."
            ) from exc
        w, h = img.size
        side = min(w, h)
        if img.size != full:  # decoded at 1/k scale: a small image, where PIL's float crop box keeps the exact centre
            left, top = (w - side) / 2, (h - side) / 2
            img = img.resize((self.size, self.size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
            x = torch.from_numpy(np.array(img))
            return x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        x = torch.from_numpy(np.array(img))
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        # torchvision's uint8 bicubic with antialias: PIL's filter on the tensor, about twice as fast as PIL's resize
        return resized_crop(
            x,
            (h - side) // 2,
            (w - side) // 2,
            side,
            side,
            [self.size, self.size],
            interpolation=InterpolationMode.BICUBIC,
            antialias=True,
        )

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.decode(self.index.path(i))
        x = x.expand(3, -1, -1).contiguous() if self.grey else x.contiguous()
        if self.dtype == "float32":
            x = x.float().div_(255.0)
        return x, int(self.index.labels[i])


__all__ = [
    "IMG_EXTENSIONS",
    "FolderIndex",
    "ImageFolderStream",
    "encode_paths",
    "index_image_folder",
]
