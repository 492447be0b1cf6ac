"""The pack readers on the real demo pack, and every kind of damage they must report."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from conftest import copy_pack_subset
from PIL import Image

from rtl_core.data.manifest import verify_file
from rtl_core.data.pack import read_arrays, read_folder, read_medmnist
from rtl_core.errors import DataError
from rtl_core.paths import data_root


def test_data_root_env_and_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("RTL_DATA_DIR", str(tmp_path))
    assert data_root() == tmp_path.resolve()
    monkeypatch.setenv("RTL_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="RTL_DATA_DIR") as err:
        data_root()
    assert "nowhere" in str(err.value)


def test_arrays_reader_hu_and_8bit(pack):
    hu = read_arrays(pack, "ct/ircadb_p17_liver")
    assert hu.intensity == "hu" and hu.images.dtype == np.int16 and hu.images.shape == (119, 128, 128)
    # Liver voxels of a contrast-enhanced abdominal CT sit at soft-tissue HU, air at about -1000.
    liver_hu = np.median(hu.images[hu.masks > 0])
    assert 40 < liver_hu < 200
    assert np.median(hu.images[:, :4, :4]) < -900
    eight = read_arrays(pack, "ct/covid_ct_cvt")
    assert eight.intensity == "uint8" and len(eight) == 4597 and set(np.unique(eight.labels)) == {0, 1}
    assert eight.class_names == ["NonCOVID", "COVID"]


def test_arrays_prefix_selects_one_set(pack):
    ct3mm = read_arrays(pack, "ct/totalseg_examples", "ct3mm_")
    dicom = read_arrays(pack, "ct/totalseg_examples", "dicom_")
    assert ct3mm.images.shape == (112, 101, 122) and dicom.images.shape == (20, 128, 128)


def test_folder_reader_with_masks_and_extras(pack):
    ph2 = read_folder(pack, "dermatology/ph2_dermoscopy_96")
    assert ph2.images.shape == (200, 96, 96, 3) and ph2.masks.shape == (200, 96, 96)
    assert set(np.unique(ph2.masks)) == {0, 1}
    mri = read_folder(pack, "mri/brain_tumor_mri_4class_64")
    assert mri.images.shape == (3264, 64, 64) and mri.extras["dup_across_splits"].dtype == bool
    assert set(mri.splits) == {"train", "test"}


def test_folder_cache_gives_identical_arrays(pack):
    first = read_folder(pack, "mri/brain_mri_tumor_yesno_96", use_cache=True)
    second = read_folder(pack, "mri/brain_mri_tumor_yesno_96", use_cache=True)
    fresh = read_folder(pack, "mri/brain_mri_tumor_yesno_96", use_cache=False)
    assert np.array_equal(first.images, fresh.images) and np.array_equal(second.images, fresh.images)


def test_medmnist_reader(pack):
    data = read_medmnist(pack, "breastmnist")
    assert len(data) == 780 and {s: int((data.splits == s).sum()) for s in ("train", "val", "test")} == {
        "train": 546,
        "val": 78,
        "test": 156,
    }
    assert data.labels.shape == (780,)


def test_missing_file_is_named(pack, tmp_path):
    root = copy_pack_subset(pack, tmp_path, "ct/chaos_ct_minitest_liver_sarah")
    (root / "ct/chaos_ct_minitest_liver_sarah/arrays.npz").unlink()
    with pytest.raises(DataError, match="Missing data file .*arrays.npz"):
        read_arrays(root, "ct/chaos_ct_minitest_liver_sarah")


def test_checksum_mismatch_is_named(pack, tmp_path):
    root = copy_pack_subset(pack, tmp_path, "ct/chaos_ct_minitest_liver_sarah")
    path = root / "ct/chaos_ct_minitest_liver_sarah/arrays.npz"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="Checksum mismatch for .*arrays.npz"):
        read_arrays(root, "ct/chaos_ct_minitest_liver_sarah")


def test_corrupt_npz_without_manifest(pack, tmp_path):
    root = copy_pack_subset(pack, tmp_path, "ct/chaos_ct_minitest_liver_sarah")
    (root / "MANIFEST.sha256").unlink()  # a user's data folder has no manifest: damage must still be caught
    path = root / "ct/chaos_ct_minitest_liver_sarah/arrays.npz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="cannot be read as an .npz"):
        read_arrays(root, "ct/chaos_ct_minitest_liver_sarah")


def _rewrite_zip(path, replace: dict[str, bytes | None]) -> None:
    with zipfile.ZipFile(path) as src:
        members = {name: src.read(name) for name in src.namelist()}
    for name, blob in replace.items():
        if blob is None:
            members.pop(name)
        else:
            members[name] = blob
    with zipfile.ZipFile(path, "w") as dst:
        for name, blob in members.items():
            dst.writestr(name, blob)


def _folder_copy_without_manifest(pack, tmp_path, rel):
    root = copy_pack_subset(pack, tmp_path, rel)
    (root / "MANIFEST.sha256").unlink()
    return root


def test_mask_with_wrong_shape_is_named(pack, tmp_path):
    rel = "dermatology/ph2_dermoscopy_96"
    root = _folder_copy_without_manifest(pack, tmp_path, rel)
    zip_path = root / rel / "images.zip"
    with zipfile.ZipFile(zip_path) as archive:
        mask = Image.open(io.BytesIO(archive.read("masks/000003.png")))
        buffer = io.BytesIO()
        mask.resize((48, 48)).save(buffer, format="PNG")
    _rewrite_zip(zip_path, {"masks/000003.png": buffer.getvalue()})
    with pytest.raises(DataError, match=r"mask masks/000003.png is \(48, 48\)"):
        read_folder(root, rel, use_cache=False)


@pytest.fixture()
def ph2_copy(pack, tmp_path):
    """A writable copy of the PH2 folder dataset (no manifest) and the name of its first WebP image."""
    rel = "dermatology/ph2_dermoscopy_96"
    root = _folder_copy_without_manifest(pack, tmp_path, rel)
    zip_path = root / rel / "images.zip"
    with zipfile.ZipFile(zip_path) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".webp"))
    return root, rel, zip_path, member


def test_corrupt_image_in_zip_is_named(ph2_copy):
    root, rel, zip_path, member = ph2_copy
    with zipfile.ZipFile(zip_path) as archive:
        blob = archive.read(member)
    _rewrite_zip(zip_path, {member: blob[: len(blob) // 3]})
    with pytest.raises(DataError, match=member):
        read_folder(root, rel, use_cache=False)


def test_member_missing_from_zip_is_named(ph2_copy):
    root, rel, zip_path, member = ph2_copy
    _rewrite_zip(zip_path, {member: None})
    with pytest.raises(DataError, match=f"lists {member}, which is missing"):
        read_folder(root, rel, use_cache=False)


def test_manifest_verification_passes_on_pack(pack):
    verify_file(pack, pack / "natural/imagenette_64/images.zip")
