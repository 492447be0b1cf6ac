"""A study config can bring its own pools and tasks from directories; tested with real pack files laid out
the way users keep them."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rtl_core.config import UserDataset, load_config
from rtl_core.data.pack import read_arrays
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
    assert batch.shape == (4, 3, 32, 32) and batch.min() >= 0 and batch.max() <= 1
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


def _ct16_folder(pack: Path, root: Path, per_class: int = 4) -> dict[str, np.ndarray]:
    """Real CT slices (the pack's TCGA HU slices, contrast / no contrast) saved as 16-bit grey PNGs (HU + 1024, as
    CT exports store them) in ``root/train/<class>/``; returns each file's HU slice."""
    data = read_arrays(pack, "ct/tcga_ct_kaggle100")
    sources = {}
    for label, name in enumerate(data.class_names):
        for k in np.flatnonzero(data.labels == label)[:per_class]:
            path = root / "train" / name / f"{k:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            stored = (data.images[k].astype(np.int32) + 1024).clip(0, 65535).astype(np.uint16)
            Image.fromarray(stored).save(path)
            sources[str(path)] = data.images[k].astype(np.float64)
    assert Image.open(path).mode == "I;16"  # what PIL makes of a 16-bit grey PNG
    return sources


def _blocks(image: np.ndarray, size: int) -> np.ndarray:
    """Mean of each (k, k) block: a full-size slice at the loader's ``size``."""
    k = image.shape[0] // size
    return image.reshape(size, k, size, k).mean(axis=(1, 3))


def test_16bit_png_tasks_and_pools_keep_the_contrast_of_the_ct_slices(pack, tmp_path):
    from rtl_core.data.intensity import get_window
    from rtl_core.data.user import user_task

    root = tmp_path / "ct16"
    sources = _ct16_folder(pack, root)
    size = 32
    # Default rule: each image's own min..max onto 0..255. With a declared window (stored units: abdomen + 1024)
    # the image is the slice rendered through that window in HU.
    rules = {
        None: lambda hu: (hu - hu.min()) / (hu.max() - hu.min()) * 255,
        (1064.0, 400.0): lambda hu: np.asarray(get_window("abdomen")(hu)) * 255,
    }
    for window, rule in rules.items():
        spec = UserDataset(format="imagefolder", path=str(root), val_fraction=0.25, test_fraction=0.25, window=window)
        task = user_task("ct16", spec, size)
        means: dict[int, list[float]] = {0: [], 1: []}
        for part, dataset in task.splits.items():
            for image, label, file in zip(dataset.images, dataset.targets, task.files[part]):
                got = image[0].numpy().astype(np.float64)
                expected = _blocks(rule(np.maximum(sources[file], -1024)), size)
                assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99, file
                assert np.abs(got - expected).mean() < 4, file  # grey levels
                # What Image.convert made of it before (clipped at 255): far from the slice.
                clipped = _blocks(np.asarray(Image.open(file).convert("L"), dtype=np.float64), size)
                assert np.abs(clipped - expected).mean() > 40, file
                means[int(label)].append(got.mean())
        spread = np.std([m for ms in means.values() for m in ms])
        assert spread > 3 and abs(np.mean(means[0]) - np.mean(means[1])) > 1  # not one flat white per image
    # The same 16-bit files as an image-folder pool: the pool's stream decodes them by the same rule.
    config = _config(
        tmp_path, f"profile: smoke\ndata: {{pools: {{ct16: {{format: imagefolder, path: {root / 'train'}}}}}}}\n"
    )
    pool = study_pool(config, "ct16")
    file = Path(pool.listing[0])
    expected = _blocks(rules[None](np.maximum(sources[str(file)], -1024)), 32) / 255
    assert np.corrcoef(pool[0][0].numpy().ravel(), expected.ravel())[0, 1] > 0.99


def test_float_images_with_nan_are_refused_with_the_fix(tmp_path):
    from rtl_core.data.intensity import decode_8bit

    image = Image.fromarray(np.array([[0.0, np.nan], [1.0, 2.0]], dtype=np.float32))
    assert image.mode == "F"
    with pytest.raises(DataError, match="slice.tif: F image with NaN or infinite values; replace them"):
        decode_8bit(image, "L", source=tmp_path / "slice.tif")


def _tiny_task(pack: Path, root: Path, counts: dict[str, int]) -> Path:
    """``root/train/<class>/`` with ``counts[class]`` real Imagenette images each."""
    with zipfile.ZipFile(pack / "natural/imagenette_64/images.zip") as archive:
        members = [n for n in archive.namelist() if n.endswith(".webp")]
        taken = iter(members)
        for name, n in counts.items():
            for _ in range(n):
                member = next(taken)
                target = root / "train" / name / Path(member).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    return root


def test_one_class_tasks_are_refused_and_a_one_image_class_is_trained_on(pack, tmp_path, caplog):
    from rtl_core.data.user import user_task

    one = _tiny_task(pack, tmp_path / "one", {"tumour": 6})
    with pytest.raises(DataError, match=r"has 1 class folder \(.*one/train/tumour\); a classification task needs"):
        user_task("one", UserDataset(format="imagefolder", path=str(one)), 16)
    rare = _tiny_task(pack, tmp_path / "rare", {"common": 8, "other": 8, "rare": 1})
    spec = UserDataset(format="imagefolder", path=str(rare), val_fraction=0.25, test_fraction=0.25)
    for seed in range(3):  # whatever the split seed: the rare class's one image is in train
        task = user_task("rare", spec, 16, split_seed=seed)
        assert [f for f in task.files["train"] if "/train/rare/" in f] == [str(next((rare / "train/rare").iterdir()))]
        assert all("/train/rare/" not in f for part in ("val", "test") for f in task.files[part])
        assert set(task.splits["val"].targets.tolist()) == {0, 1} == set(task.splits["test"].targets.tolist())
    assert "rare/train/rare'] have too few images" in caplog.text  # the warning names the class folder


def test_truncated_dicom_in_a_pool_fails_before_any_training_step(pack, tmp_path, monkeypatch):
    import pytorch_lightning as pl

    from rtl_core.data.study import format_study_data
    from rtl_core.pretrain.train import pretrain

    folder = tmp_path / "dicom_pool"
    folder.mkdir()
    for file in sorted((pack / "raw-samples/dicom_tcga").glob("*.dcm")):
        shutil.copy(file, folder / file.name)
        (folder / file.name).chmod(0o644)
    bad = sorted(folder.glob("*.dcm"))[2]
    with open(bad, "r+b") as handle:  # cut into the pixel data: the header still reads
        handle.truncate(bad.stat().st_size - 4096)
    config = _config(
        tmp_path,
        f"""
profile: smoke
study: dicom_check
data: {{pools: {{scans: {{format: dicom, path: {folder}, window: abdomen}}}}}}
pretrain: {{pools: [scans], batch_size: 2, epochs: 1}}
""",
    )
    fits = []
    monkeypatch.setattr(pl.Trainer, "fit", lambda *args, **kwargs: fits.append(args))
    fix = r"Fix: remove or repair these files .* `exclude: \[\"ID_0002_AGE_0074_CONTRAST_1_CT.dcm\"\]`"
    with pytest.raises(DataError, match=rf"(?s){bad}: cannot decode the DICOM pixel data.*{fix}"):
        pretrain(config, "scans", "simclr", progress=False)
    assert fits == []  # no trainer ever started
    with pytest.raises(DataError, match=f"{bad.name}: cannot decode the DICOM pixel data"):
        format_study_data(config)  # rtl summary --config finds it too
    # Worker processes find it as well, and the good files are remembered: a rerun reads only new or changed ones.
    from rtl_core.data.pool_check import check_pool_files

    with pytest.raises(DataError, match="1 dicom file\\(s\\) cannot be read"):
        check_pool_files("scans", sorted(folder.glob("*.dcm")), "dicom", root=folder, workers=2)
    good = [f for f in sorted(folder.glob("*.dcm")) if f != bad]
    assert check_pool_files("scans", good, "dicom", workers=2).checked == 0
    os.utime(good[0], ns=(good[0].stat().st_atime_ns, good[0].stat().st_mtime_ns + 10**9))
    assert check_pool_files("scans", good, "dicom", workers=2).checked == 1
    # The fix the message names: exclude the file, and the pool loads without it.
    excluded = config.model_copy(deep=True)
    excluded.data.pools["scans"].exclude = [bad.name]
    assert len(study_pool(excluded, "scans")) == 3
