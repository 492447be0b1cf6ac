"""Splits are grouped, stratified and seeded; pools never hold a downstream test image; datasets have the
documented shapes. All on the real pack."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtl_core.data.datasets import pool_dataset, task_dataset
from rtl_core.data.demo_pools import load_pool
from rtl_core.data.registry import TASKS, core_tasks, get_task, load_task
from rtl_core.data.splits import (
    check_split,
    content_hashes,
    grouped_split,
    lowlabel_subsets,
)
from rtl_core.data.summary import format_summary, save_splits, split_fingerprint
from rtl_core.errors import ConfigError, DataError
from rtl_core.names import DEMO_POOLS, DEMO_TASKS


def test_core_tasks_are_the_papers_five():
    assert core_tasks() == ["ct_cls", "ct_liver_seg", "xray_cls", "mri_cls", "natural_cls"]
    with pytest.raises(ConfigError, match="Unknown task 'ct_clf'"):
        get_task("ct_clf")


@pytest.mark.parametrize("name", list(TASKS))
def test_task_splits_are_grouped_and_disjoint(name):
    data = load_task(name)
    assert set(data.splits) == {"train", "val", "test"}
    for group in np.unique(data.groups):
        assert len(np.unique(data.splits[data.groups == group])) == 1, f"{name}: group {group} straddles splits"
    hashes = content_hashes(data.images)
    train = set(hashes[data.splits == "train"])
    assert not train & set(hashes[data.splits == "test"]), f"{name}: an identical image is in train and test"
    if data.labels is not None:  # every class in every split
        for part in ("train", "val", "test"):
            assert set(np.unique(data.labels[data.splits == part])) == set(range(len(data.class_names)))


def test_patient_ids_never_in_two_splits():
    # Tasks whose sources carry real patient / scan ids.
    for name, prefix in (
        ("ct_liver_seg", "msd_liver_"),
        ("fundus_cls", "fundus_dr_srahim_96:"),
        ("ct_contrast_cls", "TCGA-"),
    ):
        data = load_task(name)
        assert any(str(g).startswith(prefix) for g in data.groups), name
        seen: dict[str, str] = {}
        for group, part in zip(data.groups, data.splits):
            assert seen.setdefault(group, part) == part


def test_splits_are_seeded():
    a, b, c = load_task("ct_liver_seg", 0), load_task("ct_liver_seg", 0), load_task("ct_liver_seg", 1)
    assert np.array_equal(a.splits, b.splits) and not np.array_equal(a.splits, c.splits)
    assert split_fingerprint("ct_liver_seg", 0) != split_fingerprint("ct_liver_seg", 1)


def test_ct_cls_uses_the_balanced_single_source_group_with_scan_groups():
    data = load_task("ct_cls")
    assert len(data) == 2481 and abs(int((data.labels == 1).sum()) - 1252) == 0
    n_groups = len(np.unique(data.groups))
    assert 100 < n_groups < 300  # slices merged into scans (runs of files), but not into a few blobs
    assert (
        np.bincount(np.unique(data.groups, return_inverse=True)[1]).max() < 120
    )  # the 48-bit pHash chain made one of 681


def test_a_class_too_small_for_every_split_is_trained_on_and_a_class_missing_from_train_is_an_error(caplog):
    data = load_task("fundus_cls")
    keep = np.ones(len(data), dtype=bool)
    rare = np.flatnonzero(data.labels == 5)
    keep[rare[1:]] = False  # leave one image of grade 5: it cannot be in all three splits
    labels, groups = data.labels[keep], data.groups[keep]
    names = [f"grade{c}" for c in range(6)]
    splits = grouped_split(labels, groups, seed=0, name="fundus_cls", class_names=names)
    assert splits[labels == 5].tolist() == ["train"]  # its one image (and its patient's) stays in train
    assert "['grade5'] have too few images" in caplog.text and "missing from the test split" in caplog.text
    assert set(labels[splits == "test"]) == set(range(5))  # the other grades are in every split
    moved = splits.copy()
    moved[groups == groups[labels == 5][0]] = "test"
    with pytest.raises(DataError, match=r"the train split has no example of class\(es\) \['grade5'\]"):
        check_split(labels, moved, "fundus_cls", groups=groups, class_names=names)


def test_check_split_rejects_group_in_two_splits():
    labels = np.array([0, 1, 0, 1])
    with pytest.raises(DataError, match="group 'p1' is in several splits"):
        check_split(
            labels, np.array(["train", "train", "test", "test"]), "x", groups=np.array(["p1", "p2", "p1", "p3"])
        )


def test_lowlabel_subsets_nested_stratified_per_seed():
    data = load_task("mri_cls").split("train")
    subsets = lowlabel_subsets(data.labels, (0.01, 0.1), seed=42)
    one, ten = set(subsets[0.01]), set(subsets[0.1])
    assert one < ten and len(one) >= 4
    assert set(np.unique(data.labels[subsets[0.01]])) == set(range(4))
    assert abs(len(ten) - 0.1 * len(data)) <= 4
    other = lowlabel_subsets(data.labels, (0.01, 0.1), seed=1)
    assert set(other[0.1]) != ten
    again = lowlabel_subsets(data.labels, (0.01, 0.1), seed=42)
    assert np.array_equal(again[0.1], subsets[0.1])
    # at least one example per class even where 1 % rounds to zero
    tiny = lowlabel_subsets(load_task("fundus_cls").split("train").labels, (0.01,), seed=0)[0.01]
    assert len(np.unique(load_task("fundus_cls").split("train").labels[tiny])) == 6


def test_no_pool_contains_a_downstream_test_image():
    held_out = set()
    for name in TASKS:
        data = load_task(name)
        held_out |= set(content_hashes(data.images[data.splits != "train"]))
    for name in DEMO_POOLS:
        pool = load_pool(name)
        overlap = held_out & set(pool.extras["content_hash"])
        assert not overlap, f"pool {name} holds {len(overlap)} downstream val/test images"
    # and the check itself can fail: the covid slices of ct_cls's test split are a subset of the pack's CT
    ct_test = load_task("ct_cls")
    assert set(content_hashes(ct_test.images[ct_test.splits == "test"])) <= set(
        content_hashes(
            __import__("rtl_core.data.pack", fromlist=["read_arrays"])
            .read_arrays(__import__("rtl_core.paths", fromlist=["data_root"]).data_root(), "ct/covid_ct_cvt")
            .images
        )
    )


def test_pools_are_size_matched_and_mixed_is_half_half():
    ct, natural, mixed = (load_pool(name) for name in ("ct", "natural", "mixed"))
    assert len(ct) == len(natural) == len(mixed) > 4000
    is_ct = np.isin(
        mixed.extras["pool_source"],
        [s.label for s in __import__("rtl_core.data.demo_pools", fromlist=["POOL_SOURCES"]).POOL_SOURCES["ct"]],
    )
    assert abs(is_ct.mean() - 0.5) < 0.01
    small = load_pool("ct", pool_size=100, seed=3)
    assert len(small) == 100 and small.images.shape[1:] == (64, 64, 3)
    with pytest.raises(ConfigError, match="pool_size=100000"):
        load_pool("ct", pool_size=100000)
    with pytest.raises(ConfigError, match="Unknown pool 'radnet'"):
        load_pool("radnet")


def test_ct_less_is_a_quarter_of_the_ct_pool_and_the_data_scale_arm():
    """The data-scale arm (claim C8): a seeded subset of the ct pool, a CT-domain init, judged as role ct_less."""
    from rtl_core.analysis.claims import study_arms
    from rtl_core.config import load_config
    from rtl_core.names import parse_init
    from rtl_core.pretrain.train import pretraining_key

    ct, less = load_pool("ct"), load_pool("ct_less")
    assert len(less) == round(0.25 * len(ct)) and set(less.extras["content_hash"]) < set(ct.extras["content_hash"])
    assert len(load_pool("ct_less", less_fraction=0.5)) == round(0.5 * len(ct))
    assert not np.array_equal(load_pool("ct_less", seed=1).extras["content_hash"], less.extras["content_hash"])
    with pytest.raises(ConfigError, match="less_fraction"):
        load_pool("ct_less", less_fraction=1.0)
    assert parse_init("ssl:ct_less:simclr").default_domain() == "ct"
    arms = study_arms(["scratch", "ssl:ct:simclr", "ssl:natural:simclr", "ssl:ct_less:simclr"])
    assert arms["ct_less"] == "ssl:ct_less:simclr" and arms["ct_more"] == arms["ct"] == "ssl:ct:simclr"
    base, half = load_config("smoke"), load_config("smoke", overrides={"data": {"less_fraction": 0.5}})
    assert pretraining_key(base, "ct_less", "simclr", False) != pretraining_key(half, "ct_less", "simclr", False)
    assert pretraining_key(base, "ct", "simclr", False) == pretraining_key(
        half, "ct", "simclr", False
    )  # other pools keep their encoders


def test_task_datasets_have_documented_shapes_and_range():
    cls = task_dataset("xray_cls", "test", size=32)
    image, label = cls[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1
    assert label.dtype == torch.int64 and len(cls) == 624
    seg = task_dataset("ct_liver_seg", "val", size=64)
    image, mask = seg[0]
    assert mask.shape == (64, 64) and mask.dtype == torch.int64 and set(mask.unique().tolist()) <= {0, 1}
    hu = task_dataset("ct_contrast_cls", "train", size=64)  # HU data are windowed (mediastinum preset)
    assert hu[0][0].shape == (3, 64, 64) and torch.equal(hu[0][0][0], hu[0][0][1])
    pool = pool_dataset("natural", size=32, pool_size=50)
    assert pool[0].shape == (3, 32, 32) and len(pool) == 50


def test_summary_lists_every_pool_and_task_and_splits_are_saved(tmp_path):
    text = format_summary()
    for name in list(TASKS) + list(DEMO_POOLS):
        assert name in text
    path = save_splits("ct_liver_seg", directory=tmp_path)
    rows = path.read_text().splitlines()
    assert rows[0] == "source,source_index,group,split,label,sha1" and len(rows) == 624


def test_hold_out_masks_are_cached_on_disk_and_a_damaged_cache_is_recomputed(tmp_path, monkeypatch):
    from rtl_core.data import splits as split_module

    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    labels, groups = rng.integers(0, 3, 300), np.array([f"patient{i // 3}" for i in range(300)])
    first = grouped_split(labels, groups, seed=5, name="cached")
    files = sorted((tmp_path / "cache" / "holdout").glob("*.npy"))
    assert len(files) == 2  # the test fold, then the validation fold of the rest
    calls = []
    monkeypatch.setattr(
        split_module, "_compute_hold_out", lambda *a: calls.append(a) or (_ for _ in ()).throw(AssertionError)
    )
    assert np.array_equal(grouped_split(labels, groups, seed=5, name="cached"), first)  # served from the cache
    assert not calls
    monkeypatch.undo()
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    for f in files:
        f.write_bytes(b"not a numpy file")
    assert np.array_equal(grouped_split(labels, groups, seed=5, name="cached"), first)
    assert grouped_split(labels, groups, seed=6, name="cached").tolist() != first.tolist()


def test_hold_out_cache_keys_tell_integer_groups_from_their_strings(tmp_path, monkeypatch):
    """[2, 10] sorts differently from ["2", "10"]: the splitter sees other groups, so the cache must not share a
    mask."""
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    labels = np.tile([0, 1], 60)
    ints = np.repeat(np.arange(2, 26), 5)
    grouped_split(labels, ints, seed=1, name="ints")
    grouped_split(labels, ints.astype(str), seed=1, name="strings")
    assert len(list((tmp_path / "cache" / "holdout").glob("*.npy"))) == 4


def test_a_rendered_demo_task_is_cached_on_disk_and_a_damaged_cache_is_rendered_again(tmp_path, monkeypatch):
    """The second process to ask for a task reads it from ``cache/tasks/`` (no pack decoding), identical to a fresh
    rendering; other sizes get their own file, and an unreadable file is rendered again and replaced."""
    import torch

    from rtl_core.config import DataConfig
    from rtl_core.data import study as study_module
    from rtl_core.data.study import study_task

    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    data = DataConfig()
    fresh = study_task(data, "mri_cls", 16)
    files = sorted((tmp_path / "cache" / "tasks").glob("mri_cls-16px-*.npz"))
    assert len(files) == 1

    def no_pack(*args, **kwargs):
        raise AssertionError("the pack was read although the task is cached")

    monkeypatch.setattr("rtl_core.data.registry.load_task", no_pack)
    cached = study_task(data, "mri_cls", 16)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(cached, part).images, getattr(fresh, part).images)
        assert torch.equal(getattr(cached, part).targets, getattr(fresh, part).targets)
        assert np.array_equal(cached.groups[part], fresh.groups[part]) and np.array_equal(
            cached.files[part], fresh.files[part]
        )
    assert (cached.fingerprint, cached.class_names, cached.metrics, cached.kind) == (
        fresh.fingerprint,
        fresh.class_names,
        fresh.metrics,
        fresh.kind,
    )
    monkeypatch.undo()
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    files[0].write_bytes(b"not an npz file")
    again = study_task(data, "mri_cls", 16)
    assert torch.equal(again.test.images, fresh.test.images)
    assert study_module._read_rendered_task(files[0]) is not None  # replaced by a good copy
    study_task(data, "mri_cls", 24)
    assert len(list((tmp_path / "cache" / "tasks").glob("mri_cls-*.npz"))) == 2


def test_every_ssl_method_a_config_is_checked_against_has_a_builder():
    from rtl_core.names import SSL_METHODS, known_methods
    from rtl_core.pretrain.methods import METHODS

    assert set(METHODS) == set(SSL_METHODS) == set(known_methods())


def test_every_name_a_config_is_checked_against_has_a_builder():
    """rtl_core.names lists the demo task names (the config validates against them without importing data code);
    the registry must build exactly those (every pool of DEMO_POOLS is loaded above), and a name outside it fails."""
    from rtl_core.data.registry import TaskSpec, register_task

    assert list(TASKS) == list(DEMO_TASKS)
    with pytest.raises(ValueError, match="not in rtl_core.names.DEMO_TASKS"):
        register_task(TaskSpec("liver_cls", "unlisted", "classification", ("accuracy",), lambda root, seed: None))
