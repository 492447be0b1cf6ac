"""Readers for users' own CT formats: DICOM series and slices, NIfTI volumes and label maps (PNG slice + mask
folders: :mod:`rtl_core.data.png_slices`).

Every CT reader returns a :class:`CTVolume` whose array axes are ``(Z, H, W)`` = (slice, row, column) in
the standard radiological display orientation, so volumes from DICOM and NIfTI line up without further
flips:

* ``Z`` runs along the slice normal (inferior -> superior for axial CT),
* ``H`` (rows) runs anterior -> posterior,
* ``W`` (columns) runs patient right -> patient left (the patient's right is on the image's left).

In nibabel axis codes this is ``("S", "P", "L")``. ``affine`` maps a voxel index ``(z, row, col, 1)`` to
world millimetres in RAS+ (the nibabel / NIfTI convention), so ``nibabel.Nifti1Image(vol.hu, vol.affine)``
is a valid image. DICOM geometry is LPS and is converted (x and y negated).

The pretraining data of Jonske et al. (CMPB 2025) are axial CT slices windowed to 8 bit; these readers
bring users' own scans into the same form (see :mod:`rtl_core.data.imagefolder` for the lazy streams).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from rtl_core.errors import DataError

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut
except ImportError:  # pragma: no cover - pydicom 2.x
    from pydicom.pixel_data_handlers.util import apply_modality_lut

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
DISPLAY_AXCODES = ("S", "P", "L")
"""Axis codes of every :class:`CTVolume` array: slices first, rows anterior->posterior, columns right->left."""
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
NON_DICOM_SUFFIXES = frozenset(
    {
        ".txt",
        ".csv",
        ".json",
        ".md",
        ".xml",
        ".html",
        ".pdf",
        ".png",
        ".jpg",
        ".jpeg",
        ".nii",
        ".gz",
        ".zip",
        ".log",
        ".ini",
        ".yaml",
        ".yml",
        ".npy",
        ".npz",
    }
)
"""Files with these suffixes in a DICOM folder are skipped instead of reported as broken DICOM."""


@dataclass
class CTVolume:
    """A CT volume in Hounsfield units, axes ``(Z, H, W)`` oriented ``("S", "P", "L")`` (see module doc).

    ``spacing``: voxel size in mm along (Z, H, W). ``labels``: optional (Z, H, W) label map on the same grid.
    ``source``: the folder or file read; ``label_source``: the label file, if any.
    """

    hu: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    patient_id: str = ""
    series_uid: str = ""
    source: Path = field(default_factory=Path)
    labels: np.ndarray | None = None
    label_source: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Nibabel axis codes of ``affine`` (``("S", "P", "L")`` for axial scans)."""
        return nib.aff2axcodes(self.affine)

    def to_nifti(self, labels: bool = False) -> nib.Nifti1Image:
        """The volume (or its label map) as a nibabel image with this volume's affine."""
        data = self.labels if labels else self.hu
        if data is None:
            raise DataError(f"{self.source}: this volume has no label map to export.")
        return nib.Nifti1Image(np.asarray(data), self.affine)


# ----------------------------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------------------------
def _read_dicom(path: Path, *, header_only: bool) -> pydicom.Dataset:
    """``pydicom.dcmread`` with every failure turned into a :class:`DataError` naming the file."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=header_only)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for broken files
        raise DataError(
            f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc}). "
            "Remove it from the folder or re-export it from the scanner / PACS."
        ) from exc


def _dicom_hu(ds: pydicom.Dataset, path: Path, frame: int | None = None) -> np.ndarray:
    """Decode the pixels of ``ds`` and apply the modality LUT (RescaleSlope / RescaleIntercept) -> HU (float)."""
    try:
        pixels = ds.pixel_array
        if frame is not None and pixels.ndim == 3:
            pixels = pixels[frame]
        hu = apply_modality_lut(pixels, ds)
    except Exception as exc:  # noqa: BLE001 - truncated data, unsupported transfer syntax, ...
        raise DataError(
            f"{path}: cannot decode the DICOM pixel data ({type(exc).__name__}: {exc}). The file may be "
            "truncated or use a compression without an installed decoder; remove it or re-export it "
            "(uncompressed or JPEG-2000)."
        ) from exc
    return np.asarray(hu, dtype=np.float32)


def _as_hu_dtype(hu: np.ndarray) -> np.ndarray:
    """int16 when every value is an integer in range (the usual CT case), else float32."""
    if not hu.size:
        return hu.astype(np.float32)
    in_range = hu.min() >= -32768 and hu.max() <= 32767
    if in_range and (hu.dtype.kind in "iu" or np.all(np.mod(hu, 1) == 0)):
        return hu.astype(np.int16)
    return hu.astype(np.float32)


def _geometry(ds: pydicom.Dataset, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_cos, col_cos, pixel_spacing) from a slice header; DataError when missing."""
    try:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
        spacing = np.asarray([float(v) for v in ds.PixelSpacing], dtype=np.float64)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: missing or invalid ImageOrientationPatient / PixelSpacing; cannot place the slice in space. "
            "Re-export the series with full geometry tags."
        ) from exc
    if iop.shape != (6,) or spacing.shape != (2,):
        raise DataError(f"{path}: ImageOrientationPatient must have 6 and PixelSpacing 2 values.")
    return iop[:3], iop[3:], spacing


def _dicom_affine(
    row_cos: np.ndarray, col_cos: np.ndarray, pixel_spacing: np.ndarray, origin: np.ndarray, slice_step: np.ndarray
) -> np.ndarray:
    """RAS affine for array index (z, row, col) from DICOM LPS geometry.

    Increasing column index moves along ``row_cos`` by PixelSpacing[1]; increasing row index moves along
    ``col_cos`` by PixelSpacing[0] (DICOM PS3.3 C.7.6.2.1.1); increasing z moves by ``slice_step``.
    """
    lps = np.eye(4)
    lps[:3, 0] = slice_step
    lps[:3, 1] = col_cos * pixel_spacing[0]
    lps[:3, 2] = row_cos * pixel_spacing[1]
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps


def list_dicom_files(folder: PathLike, recursive: bool = False) -> list[Path]:
    """Candidate DICOM files in ``folder`` (any name, no extension needed), sorted by name.

    Hidden files, ``DICOMDIR`` and files with obviously non-DICOM suffixes (``.txt``, ``.png``, ...) are
    left out. Uses ``os.scandir`` so that large folders are listed quickly.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: DICOM folder not found. Pass the folder that holds the slice files.")
    out: list[Path] = []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    if recursive:
                        stack.append(Path(entry.path))
                    continue
                if entry.name.upper() == "DICOMDIR" or Path(entry.name).suffix.lower() in NON_DICOM_SUFFIXES:
                    continue
                out.append(Path(entry.path))
    return sorted(out)


def read_dicom_series(folder: PathLike, series_uid: str | None = None, spacing_tol: float = 0.1) -> CTVolume:
    """Read one CT series from a folder of single-slice DICOM files into a :class:`CTVolume`.

    HU = pixel * RescaleSlope + RescaleIntercept (pydicom's modality LUT), per slice. Slices are ordered by
    their position along the slice normal (ImagePositionPatient . (row_cos x col_cos)), never by file name or
    InstanceNumber. The folder must hold one SeriesInstanceUID (else pass ``series_uid``), one image size and
    one orientation; slice gaps deviating from the median spacing by more than ``spacing_tol`` (fraction)
    raise :class:`DataError` (missing slices would make the affine wrong). Files without pixel data
    (reports, presentation states) are skipped with a warning.
    """
    root = Path(folder)
    files = list_dicom_files(root)
    headers: list[tuple[Path, pydicom.Dataset]] = []
    for path in files:
        ds = _read_dicom(path, header_only=True)
        if "Rows" not in ds:  # header-only read: PixelData is not loaded, Rows marks an image
            log.warning("skipping %s: DICOM file without pixel data (%s)", path, ds.get("Modality", "?"))
            continue
        headers.append((path, ds))
    if not headers:
        raise DataError(f"{root}: no DICOM image files found. Pass the folder that directly holds the slices.")

    uids: dict[str, list[Path]] = {}
    for path, ds in headers:
        uids.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(path)
    if series_uid is not None:
        if series_uid not in uids:
            raise DataError(f"{root}: no slice has SeriesInstanceUID {series_uid!r}; found {sorted(uids)}.")
        headers = [(p, ds) for p, ds in headers if str(ds.get("SeriesInstanceUID", "")) == series_uid]
    elif len(uids) > 1:
        listing = "; ".join(
            f"{uid or '<missing>'} ({len(paths)} files, e.g. {paths[0].name})" for uid, paths in sorted(uids.items())
        )
        raise DataError(
            f"{root}: holds {len(uids)} DICOM series: {listing}. Put each series in its own folder or pass "
            "series_uid=... to pick one."
        )
    uid = series_uid if series_uid is not None else next(iter(uids))

    first_path, first = headers[0]
    row_cos, col_cos, pixel_spacing = _geometry(first, first_path)
    size = (int(first.Rows), int(first.Columns))
    normal = np.cross(row_cos, col_cos)
    positions = []
    for path, ds in headers:
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise DataError(
                f"{path}: slice size {ds.Rows}x{ds.Columns} differs from {first_path.name} ({size[0]}x{size[1]}) "
                "in the same series. Remove the odd file (e.g. a scout / localizer image)."
            )
        r, c, s = _geometry(ds, path)
        if not (np.allclose(r, row_cos, atol=1e-4) and np.allclose(c, col_cos, atol=1e-4)):
            raise DataError(
                f"{path}: ImageOrientationPatient differs from {first_path.name}; a series must have one orientation. "
                "Remove localizer / reformatted images from the folder."
            )
        if not np.allclose(s, pixel_spacing, rtol=1e-4):
            raise DataError(
                f"{path}: PixelSpacing {s.tolist()} differs from {first_path.name} {pixel_spacing.tolist()}."
            )
        try:
            ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
        except (AttributeError, TypeError, ValueError) as exc:
            raise DataError(
                f"{path}: missing ImagePositionPatient; cannot order the slice. Re-export the series."
            ) from exc
        positions.append(ipp)
    positions_arr = np.stack(positions)
    along = positions_arr @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    headers = [headers[i] for i in order]
    positions_arr = positions_arr[order]

    if len(headers) > 1:
        gaps = np.diff(along)
        dup = np.flatnonzero(gaps < 1e-3)
        if dup.size:
            a, b = headers[dup[0]][0].name, headers[dup[0] + 1][0].name
            raise DataError(f"{root}: {a} and {b} lie at the same slice position; remove the duplicate slice.")
        step = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - step) > spacing_tol * step)
        if bad.size:
            a, b = headers[bad[0]][0].name, headers[bad[0] + 1][0].name
            raise DataError(
                f"{root}: slice spacing is not uniform (median {step:.3f} mm, {gaps[bad[0]]:.3f} mm between {a} and "
                f"{b}); slices are missing or two stacks are mixed. Re-export the complete series."
            )
        slice_step = (positions_arr[-1] - positions_arr[0]) / (len(headers) - 1)
    else:
        step = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)) or 1.0)
        slice_step = normal * step

    hu = np.empty((len(headers), *size), dtype=np.float32)
    for k, (path, _) in enumerate(headers):
        ds = _read_dicom(path, header_only=False)
        slice_hu = _dicom_hu(ds, path)
        if slice_hu.shape != size:
            raise DataError(f"{path}: pixel data is {slice_hu.shape}, header says {size}; re-export the file.")
        hu[k] = slice_hu
    affine = _dicom_affine(row_cos, col_cos, pixel_spacing, positions_arr[0], slice_step)
    return CTVolume(
        hu=_as_hu_dtype(hu),
        affine=affine,
        spacing=(float(np.linalg.norm(slice_step)), float(pixel_spacing[0]), float(pixel_spacing[1])),
        patient_id=str(first.get("PatientID", "") or ""),
        series_uid=uid,
        source=root,
    )


def read_dicom_slice(path: PathLike) -> CTVolume:
    """Read a single-slice DICOM file (e.g. one exported CT image) as a (1, H, W) :class:`CTVolume`.

    The slice thickness (SpacingBetweenSlices, else SliceThickness, else 1 mm) is the z spacing of the affine.
    Multi-frame files are read as (F, H, W) with the frames in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: DICOM file not found.")
    ds = _read_dicom(path, header_only=False)
    hu = _dicom_hu(ds, path)
    if hu.ndim == 2:
        hu = hu[None]
    row_cos, col_cos, pixel_spacing = _geometry(ds, path)
    try:
        origin = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        origin = np.zeros(3)
    thickness = float(ds.get("SpacingBetweenSlices", ds.get("SliceThickness", 1.0)) or 1.0)
    affine = _dicom_affine(row_cos, col_cos, pixel_spacing, origin, np.cross(row_cos, col_cos) * thickness)
    return CTVolume(
        hu=_as_hu_dtype(hu),
        affine=affine,
        spacing=(thickness, float(pixel_spacing[0]), float(pixel_spacing[1])),
        patient_id=str(ds.get("PatientID", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        source=path,
    )


# ----------------------------------------------------------------------------------------------------------------
# NIfTI
# ----------------------------------------------------------------------------------------------------------------
def _load_nifti(path: Path) -> nib.spatialimages.SpatialImage:
    """nibabel header load (lazy) with DataError on failure; 4-D images with one volume are accepted."""
    if not path.is_file():
        raise DataError(f"{path}: NIfTI file not found.")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DataError(
            f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc}). Remove it or re-export it "
            "(e.g. with dcm2niix)."
        ) from exc
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
    elif len(shape) != 3:
        raise DataError(f"{path}: expected a 3-D volume, got shape {shape}. Split 4-D series into 3-D files.")
    return img


def _nifti_data(img: nib.spatialimages.SpatialImage, path: Path) -> np.ndarray:
    """The (scaled) voxel array of ``img``; DataError naming the file when the data cannot be read."""
    try:
        return np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - EOFError, zlib.error, OSError for truncated files
        raise DataError(
            f"{path}: cannot read the NIfTI voxel data ({type(exc).__name__}: {exc}); the file is probably "
            "truncated or corrupt. Remove it or re-export it."
        ) from exc


def to_display_orientation(
    data: np.ndarray, affine: np.ndarray, target: Sequence[str] = DISPLAY_AXCODES
) -> tuple[np.ndarray, np.ndarray]:
    """Permute / flip a 3-D array (no interpolation) so its axes follow ``target`` axis codes.

    Returns the reoriented array and its affine (nibabel ``io_orientation`` / ``ornt_transform`` /
    ``apply_orientation`` / ``inv_ornt_aff``).
    """
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(target)))
    out = apply_orientation(data, transform)
    return np.ascontiguousarray(out), affine @ inv_ornt_aff(transform, data.shape)


def _labels_dtype(labels: np.ndarray, path: Path) -> np.ndarray:
    """Integer label map as uint8 (ids 0..255) or int16; DataError for non-integer values."""
    if labels.dtype.kind == "f":
        rounded = np.rint(labels)
        if not np.allclose(rounded, labels, atol=1e-3):
            raise DataError(f"{path}: label map has non-integer values; is it an image rather than a label map?")
        labels = rounded
    if labels.size and labels.min() >= 0 and labels.max() <= 255:
        return labels.astype(np.uint8)
    if labels.size and (labels.min() < -32768 or labels.max() > 32767):
        raise DataError(f"{path}: label ids outside the int16 range.")
    return labels.astype(np.int16)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_nifti_volume(path: PathLike, label_path: PathLike | None = None, affine_tol_mm: float = 1e-2) -> CTVolume:
    """Read a CT NIfTI volume (HU) and optionally its label map into a :class:`CTVolume`.

    The array is reoriented (permute / flip only) to ``("S", "P", "L")``: slices first, inferior -> superior,
    rows anterior -> posterior, columns patient right -> left. The label map must have the image's shape and
    an affine equal within ``affine_tol_mm``; it is reoriented identically. ``patient_id`` is the file stem.
    """
    path = Path(path)
    img = _load_nifti(path)
    data = _nifti_data(img, path)
    hu, affine = to_display_orientation(data, img.affine)
    hu = _as_hu_dtype(hu)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    volume = CTVolume(hu=hu, affine=affine, spacing=tuple(float(z) for z in zooms), patient_id=_stem(path), source=path)
    if label_path is None:
        return volume
    lpath = Path(label_path)
    limg = _load_nifti(lpath)
    if tuple(limg.shape) != tuple(img.shape):
        raise DataError(
            f"label map {lpath} has shape {tuple(limg.shape)} but image {path} has {tuple(img.shape)}; "
            "they must be on the same voxel grid. Use the label map produced for this image."
        )
    if not np.allclose(limg.affine, img.affine, atol=affine_tol_mm):
        raise DataError(
            f"label map {lpath} and image {path} have different affines (max difference "
            f"{np.abs(limg.affine - img.affine).max():.4f} mm); they are not on the same voxel grid. "
            "Resample the label map to the image first."
        )
    labels, _ = to_display_orientation(_nifti_data(limg, lpath), limg.affine)
    return replace(volume, labels=_labels_dtype(labels, lpath), label_source=lpath)


def _grid_mismatch_voxels(affine_a: np.ndarray, affine_b: np.ndarray, shape: Sequence[int]) -> float:
    """Largest index offset (in voxels) between grid A and grid B over the 8 corners of A's grid."""
    corners = np.array(
        [[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)]
    )
    in_b = (np.linalg.inv(affine_b) @ affine_a @ corners.T).T[:, :3]
    return float(np.abs(in_b - corners[:, :3]).max())


def resample_labels_to(volume: CTVolume, label_path: PathLike, tol_voxels: float = 0.1) -> CTVolume:
    """Bring a NIfTI label map onto ``volume``'s voxel grid (e.g. a TotalSegmentator map onto its DICOM series).

    The label map must sample the same grid, possibly with a different axis order or flips (dcm2niix writes
    DICOM series as LAS / LPS NIfTI): it is permuted / flipped with nibabel orientations, never interpolated.
    If, after reorientation, its voxel centres deviate from the volume's by more than ``tol_voxels`` (voxel
    units, checked at the grid corners) or its shape differs, :class:`DataError` names both sources.
    Returns a copy of ``volume`` with ``labels`` set.
    """
    lpath = Path(label_path)
    limg = _load_nifti(lpath)
    target = nib.aff2axcodes(volume.affine)
    transform = ornt_transform(io_orientation(limg.affine), axcodes2ornt(target))
    new_shape = tuple(int(s) for s in np.asarray(limg.shape)[transform[:, 0].argsort()])
    label_affine = limg.affine @ inv_ornt_aff(transform, limg.shape)
    if new_shape != volume.shape:
        raise DataError(
            f"label map {lpath} has shape {tuple(limg.shape)} ({new_shape} after reorientation to {target}) but "
            f"{volume.source} is {volume.shape}; they are not on the same voxel grid. Use the label map made "
            "from this series, or resample it first."
        )
    mismatch = _grid_mismatch_voxels(volume.affine, label_affine, volume.shape)
    if mismatch > tol_voxels:
        raise DataError(
            f"label map {lpath} and {volume.source} are offset by up to {mismatch:.2f} voxels (tolerance "
            f"{tol_voxels}); their affines do not describe the same voxel grid. Check that the label map belongs to "
            "this series (same slices, same field of view)."
        )
    labels = np.ascontiguousarray(apply_orientation(_nifti_data(limg, lpath), transform))
    return replace(volume, labels=_labels_dtype(labels, lpath), label_source=lpath)
