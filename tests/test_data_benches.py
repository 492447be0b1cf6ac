"""The pool-filter and per-format streaming benchmarks at smoke size, and the loader a streamed pool is read by."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from rtl_core.bench import pool_bench, stream_bench
from rtl_core.config import load_config


def test_pool_filter_bench_drops_the_planted_copies_reports_per_million_and_removes_its_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    figures = pool_bench.pool_filter(2_000)
    assert figures["data.pool_filter_files_measured"] == 2_000
    assert figures["data.pool_filter_dropped"] == 2_000 * pool_bench.PLANTED_SHARE == 20
    assert 0 < figures["data.pool_filter_seconds_per_million"] < 60 * 20  # well under 20 min per million here
    peak = figures["data.pool_filter_peak_mb"]
    assert 0 <= peak < 200 and abs(figures["data.pool_filter_peak_mb_per_million"] - peak * 500) <= 0.05 * 500
    assert not any(tmp_path.iterdir())  # the tree and the output folder are gone


def test_make_tree_links_pack_files_and_plants_held_out_copies(tmp_path):
    tree = pool_bench.make_tree(tmp_path / "t", 250)
    files = sorted(Path(tree["pool"]).rglob("*.png"))
    assert len(files) == 250 and tree["planted"] == 3  # files 0, 100, 200
    test_inodes = {p.stat().st_ino for p in Path(tree["task"], "test").rglob("*.png")}
    assert sum(p.stat().st_ino in test_inodes for p in files) == 3
    assert len({p.stat().st_ino for p in files}) <= 8 + 3  # hard links: a few inodes for the whole pool


def test_stream_bench_reports_a_positive_uint8_rate_for_every_format(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    figures = stream_bench.stream_formats(links=1, jpegs=16)
    for name in stream_bench.FORMATS:
        assert figures[f"data.stream_loader_images_per_s_per_worker.{name}"] > 0, name
        assert figures[f"data.stream_loader_wall_images_per_s.{name}"] > 0, name
    assert figures["data.stream_loader_decode_images_per_s.png_slices"] > 0
    assert not any(tmp_path.iterdir())


def test_a_streamed_pool_gives_uint8_batches_through_a_prefetching_persistent_loader(pack, tmp_path):
    from rtl_core.pretrain.data import PREFETCH, load_pretrain_pool, pool_loader

    config_file = tmp_path / "study.yaml"
    raw = pack / "raw-samples"
    config_file.write_text(
        f"profile: smoke\ndata:\n  image_size: 32\n  pools:\n"
        f"    scans: {{format: dicom, path: {raw / 'dicom_tcga'}, window: abdomen}}\n"
    )
    pool = load_pretrain_pool(load_config(path=config_file), "scans")
    loader = pool_loader(pool, 2, world_size=1, rank=0, seed=0, num_workers=1)
    assert loader.persistent_workers and loader.prefetch_factor == PREFETCH
    assert loader.pin_memory == torch.cuda.is_available()  # pinned on a CUDA machine only
    batch = next(iter(loader))
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 32, 32) and batch.max() > 100
    single = pool_loader(pool, 2, world_size=1, rank=0, seed=0, num_workers=0)
    assert not single.persistent_workers and next(iter(single)).dtype == torch.uint8
