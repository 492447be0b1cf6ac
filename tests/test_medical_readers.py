"""Readers of users' medical / natural formats, on the demo pack's real raw samples (damaged copies for bad input)."""

from __future__ import annotations

import json
import random
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform
from PIL import Image
from torch.utils.data import DataLoader

from rtl_core.data.ct_streams import DicomSliceStream, NiftiSliceStream
from rtl_core.data.imagefolder import (
    ImageFolderStream,
    index_image_folder,
)
from rtl_core.data.intensity import CTWindow
from rtl_core.data.medical import (
    read_dicom_series,
    read_dicom_slice,
    read_nifti_volume,
    resample_labels_to,
)
from rtl_core.data.png_slices import read_png_slice_folder
from rtl_core.errors import DataError
from rtl_core.paths import DEFAULT_DATA_DIR

DATA = DEFAULT_DATA_DIR
RAW = DATA / "raw-samples"
SERIES = RAW / "dicom_series_totalseg"
NIFTI = RAW / "nifti_totalseg"
TCGA = RAW / "dicom_tcga"
PNG = RAW / "png_slices_ircad"
LABEL_NAMES = {
    int(k): v for k, v in json.loads((DATA / "ct/totalseg_examples/meta.json").read_text())["label_names"].items()
}
LUNG = {k for k, v in LABEL_NAMES.items() if v.startswith("lung_")}
BONE = {k for k, v in LABEL_NAMES.items() if v.startswith(("vertebrae_", "rib_"))}
LIVER = 5
MIN_VOXELS = 50


@pytest.fixture(scope="module")
def series():
    return read_dicom_series(SERIES)


def _damage(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _check_label_hu(hu: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Organ labels must land on plausible HU; returns the medians checked."""
    present = {int(v) for v in np.unique(labels)} - {0}
    medians = {k: float(np.median(hu[labels == k])) for k in present if (labels == k).sum() >= MIN_VOXELS}
    assert LIVER in medians
    assert 20 <= medians[LIVER] <= 200, medians[LIVER]
    for k in LUNG & set(medians):
        assert medians[k] < -500, (LABEL_NAMES[k], medians[k])
    bones = [medians[k] for k in BONE & set(medians)]
    assert bones, "no vertebra / rib label present"
    assert max(bones) > 150 and min(bones) > 100, bones
    return {LABEL_NAMES[k]: v for k, v in medians.items()}


# ---------------------------------------------------------------------------------------------------------- DICOM
def test_series_geometry_and_hu(series):
    assert series.shape == (20, 512, 512)
    assert series.hu.dtype == np.int16
    assert series.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert series.axcodes == ("S", "P", "L")
    # slice 0 is the most inferior one: the file with the lowest ImagePositionPatient z (LPS z = RAS z)
    headers = {p: pydicom.dcmread(p, stop_before_pixels=True) for p in SERIES.iterdir()}
    lowest = min(headers, key=lambda p: float(headers[p].ImagePositionPatient[2]))
    ds = pydicom.dcmread(lowest)
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(series.hu[0], expected)
    # voxel (0, 0, 0) sits at that file's position, converted LPS -> RAS
    ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
    np.testing.assert_allclose(series.affine[:3, 3], ipp * [-1, -1, 1])
    assert np.all(np.diff([(series.affine @ [k, 0, 0, 1])[2] for k in range(20)]) > 0)
    # air in front of the body (top rows, anterior) is about -1000 HU; nothing below the padding value
    assert abs(np.median(series.hu[:, :20, 200:300]) + 1000) < 50
    assert series.hu.min() >= -1024


def test_series_order_ignores_file_names_and_instance_numbers(series, tmp_path):
    files = sorted(SERIES.iterdir())
    shuffled = files[:]
    random.Random(0).shuffle(shuffled)
    numbers = list(range(1, len(files) + 1))
    random.Random(1).shuffle(numbers)
    out = tmp_path / "series"
    out.mkdir()
    for i, (src, number) in enumerate(zip(shuffled, numbers)):
        ds = pydicom.dcmread(src)
        ds.InstanceNumber = number
        ds.save_as(out / f"img{i:02d}")
    (out / "notes.txt").write_text("not a DICOM file")
    copy = read_dicom_series(out)
    np.testing.assert_array_equal(copy.hu, series.hu)
    np.testing.assert_allclose(copy.affine, series.affine)


def test_series_errors(tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(SERIES, mixed)
    shutil.copy(TCGA / "ID_0000_AGE_0060_CONTRAST_1_CT.dcm", mixed)
    uid_tcga = str(
        pydicom.dcmread(TCGA / "ID_0000_AGE_0060_CONTRAST_1_CT.dcm", stop_before_pixels=True).SeriesInstanceUID
    )
    with pytest.raises(DataError, match="2 DICOM series") as err:
        read_dicom_series(mixed)
    assert uid_tcga in str(err.value)

    broken = tmp_path / "broken"
    shutil.copytree(SERIES, broken)
    victim = sorted(broken.iterdir())[7]
    _damage(victim, victim)
    with pytest.raises(DataError, match=victim.name):
        read_dicom_series(broken)

    gap = tmp_path / "gap"
    shutil.copytree(SERIES, gap)
    (gap / sorted(p.name for p in SERIES.iterdir())[10]).unlink()
    with pytest.raises(DataError, match="not uniform"):
        read_dicom_series(gap)


def test_tcga_single_slices(tmp_path):
    files = sorted(TCGA.glob("*.dcm"))
    assert len(files) == 4
    for path in files:
        vol = read_dicom_slice(path)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert vol.shape == (1, 512, 512)
        assert vol.patient_id == ds.PatientID and vol.patient_id.startswith("TCGA-")
        assert vol.spacing[1:] == pytest.approx([float(v) for v in ds.PixelSpacing])
        assert abs(np.median(vol.hu[0, :15, 200:300]) + 1000) < 50  # air above the patient
        hu = vol.hu[0]
        assert ((hu > -100) & (hu < 300)).mean() > 0.15  # soft tissue
        assert 0.001 < (hu > 300).mean() < 0.05  # bone / contrast, a small part of the slice
    bad = _damage(files[0], tmp_path / files[0].name)
    with pytest.raises(DataError, match=files[0].name):
        read_dicom_slice(bad)
    with pytest.raises(DataError, match=files[0].name):
        DicomSliceStream([bad], window=(40, 400), size=32)[0]


# ---------------------------------------------------------------------------------------------------------- labels
def test_dicom_series_with_totalseg_labels(series):
    aligned = resample_labels_to(series, NIFTI / "example_seg_dicom.nii.gz")
    assert aligned.labels.shape == series.hu.shape and aligned.labels.dtype == np.uint8
    medians = _check_label_hu(aligned.hu, aligned.labels)
    assert medians["liver"] > 50  # contrast-enhanced liver
    # the raw NIfTI array (LAS, rows flipped) does not line up without reorientation
    raw = np.asanyarray(nib.load(NIFTI / "example_seg_dicom.nii.gz").dataobj)
    assert raw.shape != aligned.labels.shape


def test_misaligned_label_map_is_rejected(series, tmp_path):
    img = nib.load(NIFTI / "example_seg_dicom.nii.gz")
    data = np.asanyarray(img.dataobj)
    shifted = img.affine.copy()
    shifted[:3, 3] += shifted[:3, 0] * 2  # two voxels along the first axis
    path = tmp_path / "shifted.nii"
    nib.save(nib.Nifti1Image(data, shifted), path)
    with pytest.raises(DataError, match="shifted.nii"):
        resample_labels_to(series, path)
    cropped = tmp_path / "cropped.nii"
    nib.save(nib.Nifti1Image(data[:, :, :10], img.affine), cropped)
    with pytest.raises(DataError, match="cropped.nii"):
        resample_labels_to(series, cropped)


def test_nifti_volume_with_labels():
    vol = read_nifti_volume(NIFTI / "example_ct_sm.nii.gz", NIFTI / "example_seg.nii.gz")
    assert vol.shape == (30, 101, 122) == vol.labels.shape  # (S, P, L): slices first
    assert vol.axcodes == ("S", "P", "L")
    assert vol.spacing == pytest.approx((3.0, 3.0, 3.0))
    medians = _check_label_hu(vol.hu, vol.labels)
    assert any(k.startswith("lung_") for k in medians)
    with pytest.raises(DataError, match="example_seg_dicom.nii.gz") as err:
        read_nifti_volume(NIFTI / "example_ct_sm.nii.gz", NIFTI / "example_seg_dicom.nii.gz")
    assert "example_ct_sm.nii.gz" in str(err.value)


def _reoriented_copy(src: Path, dst: Path, axcodes: tuple[str, str, str]) -> Path:
    img = nib.load(src)
    transform = ornt_transform(io_orientation(img.affine), axcodes2ornt(axcodes))
    data = apply_orientation(np.asanyarray(img.dataobj), transform)
    nib.save(nib.Nifti1Image(data, img.affine @ inv_ornt_aff(transform, img.shape)), dst)
    return dst


def test_nifti_axis_order_does_not_matter(tmp_path):
    ref = read_nifti_volume(NIFTI / "example_ct_sm.nii.gz", NIFTI / "example_seg.nii.gz")
    for codes in [("I", "L", "A"), ("P", "S", "R")]:
        tag = "".join(codes)
        img = _reoriented_copy(NIFTI / "example_ct_sm.nii.gz", tmp_path / f"ct_{tag}.nii", codes)
        seg = _reoriented_copy(NIFTI / "example_seg.nii.gz", tmp_path / f"seg_{tag}.nii", codes)
        vol = read_nifti_volume(img, seg)
        np.testing.assert_array_equal(vol.hu, ref.hu)
        np.testing.assert_array_equal(vol.labels, ref.labels)
        np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
        stream = NiftiSliceStream([img], window=(40, 400), size=32)
        for k in (0, 17):
            np.testing.assert_array_equal(stream.read_hu(k), ref.hu[k].astype(np.float32))


def test_corrupt_nifti(tmp_path):
    bad = _damage(NIFTI / "example_ct_sm.nii.gz", tmp_path / "ct.nii.gz")
    with pytest.raises(DataError, match="ct.nii.gz") as err:
        read_nifti_volume(bad)
    assert "re-export" in str(err.value)
    stream = NiftiSliceStream([bad], window=(40, 400), size=32)  # header still readable
    with pytest.raises(DataError, match="ct.nii.gz"):
        stream[len(stream) - 1]
    header_gone = _damage(NIFTI / "example_ct_sm.nii.gz", tmp_path / "tiny.nii.gz", keep=0.0005)
    with pytest.raises(DataError, match="tiny.nii.gz"):
        NiftiSliceStream([header_gone], window=(40, 400), size=32)


# ---------------------------------------------------------------------------------------------------------- PNG
def test_png_slice_folder_matches_pack():
    folder = read_png_slice_folder(PNG, mask_rgb=(180, 40, 40))
    assert folder.images.shape == folder.masks.shape == (8, 512, 512)
    assert folder.images.dtype == folder.masks.dtype == np.uint8
    assert set(np.unique(folder.masks)) == {0, 1}
    assert folder.groups.tolist() == [n.split("_")[0] for n in folder.names]
    assert len(set(folder.groups)) == 4
    # the pack's 128 px arrays hold the same first 8 slices, rotated by 180 degrees, nearest-resized masks
    pack = np.load(DATA / "ct/ircadb_minitest_liver_sarah/arrays.npz")
    ours = np.rot90(folder.masks, 2, axes=(1, 2))
    small = np.stack([np.asarray(Image.fromarray(m).resize((128, 128), Image.Resampling.NEAREST)) for m in ours])
    assert (small == pack["masks"][:8]).mean() > 0.98
    auto = read_png_slice_folder(PNG, group_regex=r"^(\d+)_(\d+)$")
    np.testing.assert_array_equal(auto.masks, folder.masks)
    assert auto.groups.tolist() == folder.groups.tolist()


def test_png_mask_problems(tmp_path):
    root = tmp_path / "png"
    shutil.copytree(PNG, root)
    mask = root / "masks" / "10003_87.png"
    Image.open(mask).resize((256, 256), Image.Resampling.NEAREST).save(mask)
    with pytest.raises(DataError, match="10003_87.png") as err:
        read_png_slice_folder(root, mask_rgb=(180, 40, 40))
    assert "256x256" in str(err.value) and "512x512" in str(err.value)
    mask.unlink()
    with pytest.raises(DataError, match=r"images/10003_87\.png"):
        read_png_slice_folder(root, mask_rgb=(180, 40, 40))


# ---------------------------------------------------------------------------------------------------------- ImageFolder
@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenette") / "train"
    with zipfile.ZipFile(DATA / "natural/imagenette_64/images.zip") as zf:
        names = zf.namelist()
        for label in ("000", "003", "007"):
            members = [n for n in names if n.startswith(f"train/{label}/")][:4]
            assert len(members) == 4
            (root / f"class_{label}").mkdir(parents=True)
            for m in members:
                (root / f"class_{label}" / Path(m).name).write_bytes(zf.read(m))
    return root


def test_image_folder_index_and_stream(image_tree):
    index = index_image_folder(image_tree)
    assert index.class_names == ["class_000", "class_003", "class_007"]
    assert len(index) == 12 and index.counts() == {"class_000": 4, "class_003": 4, "class_007": 4}
    assert [p.parent.name for p in index.paths] == [index.class_names[i] for i in index.labels]
    loader = DataLoader(ImageFolderStream(index, size=48), batch_size=4, shuffle=True, num_workers=2)
    seen = []
    for x, y in loader:
        assert x.shape == (4, 3, 48, 48) and x.dtype == torch.float32
        assert x.min() >= 0.0 and x.max() <= 1.0 and x.std() > 0.05
        seen.extend(y.tolist())
    assert sorted(seen) == sorted(index.labels.tolist())
    grey, label = ImageFolderStream(index, size=32, grey=True)[5]
    assert grey.shape == (3, 32, 32) and label == index.labels[5]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], grey[2])
    colour, _ = ImageFolderStream(index, size=32)[5]
    assert not torch.equal(colour[0], colour[2])


def test_image_folder_stream_fast_path_renders_what_pil_renders(image_tree, tmp_path):
    """Large JPEGs (DCT-scaled decoding, tensor bicubic resize) come out as PIL's own crop + bicubic resize would
    make them, in uint8 and in float."""
    from PIL import Image, ImageOps

    root = tmp_path / "big" / "class_a"
    root.mkdir(parents=True)
    for i, src in enumerate(sorted((image_tree / "class_000").iterdir())[:3]):
        with Image.open(src) as img:  # a real photo, at ImageNet's typical 500 x 375, as JPEG
            img.convert("RGB").resize((500, 375), Image.Resampling.BICUBIC).save(root / f"{i}.jpg", quality=92)
    index = index_image_folder(tmp_path / "big")
    for size in (64, 224):
        fast = ImageFolderStream(index, size=size, dtype="uint8")
        for i, path in enumerate(index.paths):
            with Image.open(path) as img:
                expected = np.asarray(ImageOps.fit(img.convert("RGB"), (size, size), method=Image.Resampling.BICUBIC))
            got, _ = fast[i]
            assert got.dtype == torch.uint8 and got.shape == (3, size, size)
            diff = np.abs(got.permute(1, 2, 0).numpy().astype(int) - expected.astype(int))
            # DCT-domain downscaling (64 px: decoded at 1/4) filters a little differently from bicubic; measured mean
            # 0.6-2.1 grey levels, 99th percentile 3-11
            assert diff.mean() < 3.0 and np.percentile(diff, 99) < 16, (size, diff.mean(), np.percentile(diff, 99))
        as_float, _ = ImageFolderStream(index, size=size)[0]
        assert torch.allclose(as_float, fast[0][0].float() / 255)
    with pytest.raises(DataError, match="dtype"):
        ImageFolderStream(index, size=32, dtype="float16")


def test_image_folder_errors(image_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(image_tree, root)
    (root / "class_empty").mkdir()
    with pytest.raises(DataError, match="class_empty"):
        index_image_folder(root)
    (root / "class_empty").rmdir()
    victim = sorted((root / "class_003").iterdir())[1]
    _damage(victim, victim, keep=0.3)
    index = index_image_folder(root)
    stream = ImageFolderStream(index, size=32)
    bad = [i for i in range(len(index)) if index.path(i) == victim][0]
    with pytest.raises(DataError, match=victim.name):
        stream[bad]
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(victim, flat)
    with pytest.raises(DataError, match="no class folders"):
        index_image_folder(flat)


# ---------------------------------------------------------------------------------------------------------- CT streams
def test_ct_slice_streams(series):
    dicom = DicomSliceStream(SERIES, window=(40, 400), size=64)
    assert len(dicom) == 20
    batch = next(iter(DataLoader(dicom, batch_size=5)))
    assert batch.shape == (5, 3, 64, 64) and batch.dtype == torch.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    assert (batch == 0).float().mean() > 0.1 and ((batch > 0.2) & (batch < 0.8)).float().mean() > 0.1
    # full-size stream of one file equals windowing of the series slice read from that file
    lowest = min(
        SERIES.iterdir(), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
    )
    one = DicomSliceStream([lowest], window=(40, 400), size=512)[0]
    torch.testing.assert_close(one[0], CTWindow(40, 400)(torch.from_numpy(series.hu[0].astype(np.float32))))

    nifti = NiftiSliceStream([NIFTI / "example_ct_sm.nii.gz"], window="lung", size=64)
    assert len(nifti) == 30
    x = nifti[12]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and torch.equal(x[0], x[1])
    # 101 x 122 slice is zero-padded to a square, not stretched: the top and bottom rows are padding
    assert x[0, 0].max() == 0 and x[0, -1].max() == 0 and x[0, 32].max() > 0
