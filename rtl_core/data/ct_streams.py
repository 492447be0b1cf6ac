"""Lazy axial CT slices streamed from DICOM files or NIfTI volumes, for CT pretraining pools of one's own.

:class:`DicomSliceStream` and :class:`NiftiSliceStream` window HU to [0, 1] (:mod:`rtl_core.data.intensity`
windows) and return ``(3, size, size)`` float32 slices, the CT pretraining pool of Jonske et al. (CMPB 2025).
Indexing reads headers only; pixels are decoded in ``__getitem__``, so DataLoader workers stream from disk.
The readers themselves (HU rescale, orientation, corrupt-file errors) are :mod:`rtl_core.data.medical`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from nibabel.orientations import io_orientation
from torch.utils.data import Dataset

from rtl_core.data.imagefolder import PathLike, encode_paths
from rtl_core.data.intensity import CTWindow, get_window
from rtl_core.data.medical import (
    DISPLAY_AXCODES,
    _dicom_hu,
    _load_nifti,
    _read_dicom,
    list_dicom_files,
    to_display_orientation,
)
from rtl_core.errors import DataError


def _to_square_rgb(x: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) in [0, 1] -> (3, size, size): zero-pad to a square (air after windowing), antialiased resize."""
    h, w = x.shape
    side = max(h, w)
    if h != w:
        top, left = (side - h) // 2, (side - w) // 2
        x = F.pad(x, (left, side - w - left, top, side - h - top))
    if side != size:
        x = F.interpolate(
            x[None, None], size=(size, size), mode="bilinear", align_corners=False, antialias=side > size
        )[0, 0].clamp_(0.0, 1.0)
    return x.expand(3, -1, -1).contiguous()


def _check_size(size: int) -> int:
    if size < 1:
        raise DataError(f"size must be >= 1, got {size}.")
    return int(size)


class DicomSliceStream(Dataset):
    """Lazy CT slices from DICOM files -> windowed float32 ``(3, size, size)`` in [0, 1].

    ``files``: DICOM file paths, or one folder (searched recursively, any file names). Indexing reads headers
    only (``stop_before_pixels``) to count frames of multi-frame files; ``read_headers=False`` skips that and
    takes one slice per file (fast for millions of single-slice files; a header problem then surfaces in
    ``__getitem__``). ``window``: ``(level, width)`` in HU, e.g. ``(40, 400)``, or a preset name of
    :data:`rtl_core.data.intensity.WINDOWS` (``"abdomen"``, ``"lung"``, ...).
    A corrupt file raises :class:`DataError` naming it.
    """

    def __init__(
        self,
        files: Sequence[PathLike] | PathLike,
        window: str | CTWindow | tuple[float, float],
        size: int,
        read_headers: bool = True,
    ) -> None:
        if isinstance(files, (str, os.PathLike)):
            files = list_dicom_files(files, recursive=True)
        paths = [Path(f) for f in files]
        if not paths:
            raise DataError("DicomSliceStream: no DICOM files given.")
        self.window, self.size = get_window(window), _check_size(size)
        frames = []
        for path in paths:
            n = 1
            if read_headers:
                ds = _read_dicom(path, header_only=True)
                if "Rows" not in ds:
                    raise DataError(f"{path}: DICOM file without image data; remove it from the list.")
                n = int(ds.get("NumberOfFrames", 1) or 1)
            frames.append(n)
        counts = np.asarray(frames, dtype=np.int64)
        self.files = encode_paths([str(p) for p in paths])
        self.file_index = np.repeat(np.arange(len(paths), dtype=np.int64), counts)
        self.frame = np.concatenate([np.arange(n, dtype=np.int32) for n in counts])
        self.multi = counts > 1

    def __len__(self) -> int:
        return len(self.file_index)

    def __getitem__(self, i: int) -> torch.Tensor:
        f = int(self.file_index[i])
        path = Path(os.fsdecode(self.files[f]))
        ds = _read_dicom(path, header_only=False)
        hu = _dicom_hu(ds, path, frame=int(self.frame[i]) if self.multi[f] else None)
        if hu.ndim != 2:
            raise DataError(f"{path}: expected one 2-D slice, got pixel data of shape {hu.shape}.")
        return _to_square_rgb(self.window(torch.from_numpy(hu)), self.size)


class NiftiSliceStream(Dataset):
    """Lazy axial slices from NIfTI CT volumes (HU) -> windowed float32 ``(3, size, size)`` in [0, 1].

    Indexing reads headers only (shape and affine; no voxel data): the slice axis is the voxel axis closest
    to superior-inferior, slice 0 is the most inferior. ``__getitem__`` reads one slice through nibabel's
    ``dataobj`` slicing and orients it like :class:`rtl_core.data.medical.CTVolume` (rows anterior -> posterior,
    columns patient right -> left). Plain ``.nii`` files are memory-mapped; ``.nii.gz`` must be decompressed up
    to the slice, so prefer ``.nii`` for large pools. A corrupt file raises :class:`DataError` naming it.
    """

    def __init__(self, paths: Sequence[PathLike], window: str | CTWindow | tuple[float, float], size: int) -> None:
        paths = [Path(p) for p in paths]
        if not paths:
            raise DataError("NiftiSliceStream: no NIfTI files given.")
        self.window, self.size = get_window(window), _check_size(size)
        axes, flips, counts = [], [], []
        for path in paths:
            img = _load_nifti(path)
            ornt = io_orientation(img.affine)
            axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])  # world axis 2 = S/I
            axes.append(axis)
            flips.append(ornt[axis, 1] < 0)  # stored order runs superior -> inferior
            counts.append(int(img.shape[axis]))
        counts_arr = np.asarray(counts, dtype=np.int64)
        self.paths = encode_paths([str(p) for p in paths])
        self.axis = np.asarray(axes, dtype=np.int8)
        self.flip = np.asarray(flips, dtype=bool)
        self.n_slices = counts_arr
        self.file_index = np.repeat(np.arange(len(paths), dtype=np.int64), counts_arr)
        self.slice = np.concatenate([np.arange(n, dtype=np.int32) for n in counts_arr])

    def __len__(self) -> int:
        return len(self.file_index)

    def read_hu(self, i: int) -> np.ndarray:
        """Slice ``i`` in HU, (H, W) float32, display orientation."""
        f = int(self.file_index[i])
        path = Path(os.fsdecode(self.paths[f]))
        img = _load_nifti(path)
        axis, k = int(self.axis[f]), int(self.slice[i])
        if self.flip[f]:
            k = int(self.n_slices[f]) - 1 - k
        slicer: list[slice] = [slice(None)] * 3
        slicer[axis] = slice(k, k + 1)
        try:
            slab = np.asarray(img.dataobj[tuple(slicer)], dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - EOFError, zlib.error, OSError for truncated files
            raise DataError(
                f"{path}: cannot read slice {k} ({type(exc).__name__}: {exc}); the file is probably truncated or "
                "corrupt. Remove it or re-export it."
            ) from exc
        oriented, _ = to_display_orientation(slab, img.affine, DISPLAY_AXCODES)
        return oriented[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return _to_square_rgb(self.window(torch.from_numpy(self.read_hu(i))), self.size)


__all__ = ["DicomSliceStream", "NiftiSliceStream"]
