"""A study config can bring its own pools and tasks from directories; tested with real pack files laid out
the way users keep them."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from rtl_core.config import load_config
from rtl_core.data.study import study_pool, study_task_split
from rtl_core.errors import ConfigError, DataError


def _imagenet_layout(pack: Path, dest: Path, per_class: int = 6, splits=("train",)) -> Path:
    """Extract real Imagenette images into ``dest/<split>/<class>/``."""
    with zipfile.ZipFile(pack / "natural/imagenette_64/images.zip") as archive:
        names = archive.namelist()
        for split in splits:
            for label in ("000", "001", "002"):
                members = [n for n in names if n.startswith(f"train/{label}/")][: per_class * 3]
                chosen = members[:per_class] if split == "train" else members[per_class : 2 * per_class]
                for member in chosen:
                    target = dest / split / f"class{label}" / Path(member).name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
    return dest


def _config(tmp_path, text: str):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return load_config(path=path)


def test_user_imagefolder_pool_and_task(pack, tmp_path):
    root = _imagenet_layout(pack, tmp_path / "imnet", splits=("train", "test"))
    config = _config(
        tmp_path,
        f"""
profile: smoke
data:
  pools: {{my_imnet: {{format: imagefolder, path: {root / "train"}}}}}
  tasks: {{my_cls: {{format: imagefolder, path: {root}, val_fraction: 0.25}}}}
pretrain: {{pools: [my_imnet]}}
evaluate: {{tasks: [my_cls]}}
""",
    )
    pool = study_pool(config, "my_imnet")
    train, val, test = (study_task_split(config, "my_cls", p) for p in ("train", "val", "test"))
    assert len(test) == 18 and len(train) + len(val) == 18 and len(val) >= 3
    # The pool is the task's train/ folder, from which the task carves its val split: those files stay out.
    assert pool.excluded == len(val) and len(pool) == 18 - len(val) and pool[0].shape == (3, 32, 32)
    batch = next(iter(DataLoader(pool, batch_size=4, num_workers=2)))
    assert batch.shape == (4, 3, 32, 32) and 0 <= batch.min() and batch.max() <= 1
    labels = {int(val[i][1]) for i in range(len(val))}
    assert labels == {0, 1, 2}  # stratified carve-out keeps every class


def test_user_dicom_and_nifti_pools(pack, tmp_path):
    raw = pack / "raw-samples"
    ct_only = tmp_path / "nifti_ct"
    ct_only.mkdir()
    shutil.copy(raw / "nifti_totalseg/example_ct_sm.nii.gz", ct_only)
    config = _config(
        tmp_path,
        f"""
profile: smoke
data:
  pools:
    my_dicom: {{format: dicom, path: {raw / "dicom_series_totalseg"}, window: abdomen}}
    my_nifti: {{format: nifti, path: {ct_only}, window: lung}}
    no_window: {{format: dicom, path: {raw / "dicom_tcga"}}}
""",
    )
    dicom = study_pool(config, "my_dicom")
    assert len(dicom) == 20 and dicom[3].shape == (3, 32, 32)
    nifti = study_pool(config, "my_nifti")
    import nibabel

    shape = nibabel.load(ct_only / "example_ct_sm.nii.gz").shape
    assert len(nifti) in shape and len(nifti) > 10  # one item per axial slice
    assert all(torch.isfinite(nifti[i]).all() and nifti[i].shape == (3, 32, 32) for i in (0, len(nifti) - 1))
    with pytest.raises(ConfigError, match="need a CT window"):
        study_pool(config, "no_window")


def test_user_png_segmentation_task(pack, tmp_path):
    root = tmp_path / "liver_png"
    shutil.copytree(pack / "raw-samples/png_slices_ircad", root)
    config = _config(
        tmp_path,
        f"""
profile: smoke
data:
  tasks:
    my_liver: {{format: png_slices, path: {root}, kind: segmentation, metrics: [dice], val_fraction: 0.25,
               test_fraction: 0.25}}
evaluate: {{tasks: [my_liver]}}
""",
    )
    parts = {p: study_task_split(config, "my_liver", p) for p in ("train", "val", "test")}
    assert sum(len(d) for d in parts.values()) == 8
    image, mask = parts["train"][0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.int64


def test_user_path_missing_and_bad_layouts(tmp_path):
    config = _config(
        tmp_path,
        f"""
profile: smoke
data:
  pools: {{gone: {{format: imagefolder, path: {tmp_path / "nowhere"}}}}}
  tasks:
    flat: {{format: imagefolder, path: {tmp_path}}}
    dicom_task: {{format: dicom, path: {tmp_path}}}
""",
    )
    with pytest.raises(DataError, match="does not exist"):
        study_pool(config, "gone")
    with pytest.raises(DataError, match="needs a train/ sub-folder"):
        study_task_split(config, "flat", "train")
    with pytest.raises(ConfigError, match="supported as pools"):
        study_task_split(config, "dicom_task", "train")
