"""Pool filter benchmark: what a pretraining does to a user's pool of a million files before its first batch.

A temporary tree (:func:`make_tree`) holds an ImageFolder pool of ``n_files`` hard links of the pack's 8 PNG CT
slices (copied into the tree first, one copy per :data:`LINKS_PER_FILE` links: the pack is read-only and may live
on another filesystem), 1,000 per folder, and a user task (ImageFolder, the pack's 8 slice masks: 2 train, 2 val,
4 test files). Among the pool's files are :data:`PLANTED_SHARE` hard links of the task's test files under other
names, which the filter must drop.

A fresh process (an empty output folder, so nothing is cached) then times
:func:`rtl_core.pretrain.data.load_pretrain_pool` without the file check (``check=False``; the check reads every
file once and is remembered, :mod:`rtl_core.data.pool_check`): indexing the tree, listing and hashing the task's
held-out files, comparing the pool files by size (hashing the size matches), and the pool's fingerprint. Reported
per million files: seconds (``data.pool_filter_seconds_per_million``) and the growth of peak RSS over the process
after its imports (``data.pool_filter_peak_mb`` for the tree measured, ``..._per_million`` scaled).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

POOL_FILTER_FILES = 1_000_000
PER_FOLDER = 1000
LINKS_PER_FILE = 50_000
"""Hard links made of one copied pack file at most (ext4 allows 65,000)."""
PLANTED_SHARE = 0.01
"""Share of the pool's files that are renamed copies of the task's test files (dropped by the filter)."""


def _pack_slices() -> tuple[list[Path], list[Path]]:
    from rtl_core.paths import data_root

    root = data_root() / "raw-samples" / "png_slices_ircad"
    images, masks = sorted((root / "images").glob("*.png")), sorted((root / "masks").glob("*.png"))
    if len(images) < 4 or len(masks) < 8:
        raise FileNotFoundError(f"{root}: the pack's PNG slices (8 images, 8 masks) are missing; restore the pack.")
    return images, masks


def make_tree(root: str | os.PathLike, n_files: int) -> dict[str, int | str]:
    """``root/pool`` (``n_files`` hard links, :data:`PLANTED_SHARE` of them copies of the task's test files) and
    ``root/task`` (train/, val/ and test/, two classes); returns the counts and both paths."""
    root = Path(root)
    images, masks = _pack_slices()
    sources = root / "sources"
    sources.mkdir(parents=True)
    copies = -(-n_files // (len(images) * LINKS_PER_FILE))  # a file system allows ~65,000 links per file (ext4)
    pool_sources = [Path(shutil.copyfile(p, sources / f"pool_{k}_{p.name}")) for k in range(copies) for p in images]
    task_files = []
    for i, mask in enumerate(masks[:8]):
        part = "train" if i < 2 else "val" if i < 4 else "test"
        target = root / "task" / part / f"c{i % 2}" / mask.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mask, target)
        task_files.append(target)
    held = task_files[4:]
    step = round(1 / PLANTED_SHARE)
    pool, planted = root / "pool", 0
    for start in range(0, n_files, PER_FOLDER):
        folder = pool / f"n{start // PER_FOLDER:06d}"
        folder.mkdir(parents=True)
        for i in range(start, min(n_files, start + PER_FOLDER)):
            if i % step == 0:  # a held-out test file under another name
                os.link(held[(i // step) % len(held)], folder / f"{i:08d}.png")
                planted += 1
            else:
                os.link(pool_sources[i % len(pool_sources)], folder / f"{i:08d}.png")
    return {"files": n_files, "planted": planted, "pool": str(pool), "task": str(root / "task")}


def _child(pool: str, task: str, config_file: str) -> None:
    """In a fresh process: time and peak RSS growth of resolving the pool for pretraining (module doc)."""
    import resource
    import time

    import yaml

    import rtl_core.data.study
    import rtl_core.data.user  # noqa: F401 - imported before the measurement: its time and memory are not the pool's
    from rtl_core.config import load_config
    from rtl_core.pretrain.data import load_pretrain_pool

    spec = {
        "profile": "smoke",
        "data": {
            "image_size": 224,
            "pools": {"big": {"format": "imagefolder", "path": pool}},
            "tasks": {"held": {"format": "imagefolder", "path": task}},
        },
    }
    Path(config_file).write_text(yaml.safe_dump(spec))
    config = load_config(path=config_file)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    found = load_pretrain_pool(config, "big", check=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"kept": len(found), "seconds": seconds, "peak_mb": peak - before, "fp": found.fingerprint}))


def pool_filter(n_files: int = POOL_FILTER_FILES) -> dict[str, float]:
    """Build the tree, measure in a fresh process, check the planted copies were dropped, remove the tree."""
    with tempfile.TemporaryDirectory(prefix="rtl-pool-filter-") as root, tempfile.TemporaryDirectory() as out:
        tree = make_tree(root, n_files)
        args = f"{tree['pool']!r}, {tree['task']!r}, {str(Path(out) / 'pool_filter.yaml')!r}"
        code = f"from rtl_core.bench.pool_bench import _child; _child({args})"
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=dict(os.environ, RTL_OUTPUT_DIR=out),
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"pool filter benchmark failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    dropped = n_files - result["kept"]
    if dropped != tree["planted"]:
        raise RuntimeError(
            f"pool filter benchmark: {dropped} files dropped, but the tree holds {tree['planted']} copies of the "
            "task's test files; the held-out filter is wrong"
        )
    per_million = 1e6 / n_files
    print(
        f"  pool filter, {n_files:,} files ({dropped:,} held-out copies dropped): {result['seconds']:.1f} s, peak RSS "
        f"+{result['peak_mb']:.0f} MB -> {result['seconds'] * per_million:.1f} s and "
        f"{result['peak_mb'] * per_million:.0f} MB per million files"
    )
    return {
        "data.pool_filter_seconds_per_million": round(result["seconds"] * per_million, 2),
        "data.pool_filter_peak_mb": round(result["peak_mb"], 1),
        "data.pool_filter_peak_mb_per_million": round(result["peak_mb"] * per_million, 1),
        "data.pool_filter_files_measured": n_files,
        "data.pool_filter_dropped": dropped,
    }


def run() -> dict[str, float]:
    """``rtl bench --only data_pool``: :func:`pool_filter` at :data:`POOL_FILTER_FILES` files."""
    print("data layer: a user pool resolved for pretraining (index, held-out filter, fingerprint)")
    return pool_filter()
