"""Data-layer benchmark: loading the demo pack, streaming users' image folders, indexing large trees.

* **load**: time to load every task and pool of the demo pack into memory, and the peak memory. Runs cold: a
  fresh process with an empty decode cache (a temporary ``RTL_OUTPUT_DIR``), so the figures include checksum
  verification and image decoding.
* **stream**: images per second of one DataLoader worker reading an ImageNet-layout folder of real JPEG files:
  the pack's natural images (ImageNet sample, Imagenette, Tiny-ImageNet) written to a temporary folder as JPEG
  (quality 90) at an ImageNet-like 500 × 375 px (the pack keeps 64 px copies, so they are upsampled: smoother
  than camera photos, which makes every decoder a little faster, both sides alike), then streamed at the paper's
  224 px and the demo's 64 px. Ours (:class:`rtl_core.data.imagefolder.ImageFolderStream`, uint8) against
  torchvision's ``ImageFolder`` with its PIL loader, ``Resize`` (bicubic) + ``CenterCrop`` + ``ToTensor``: the
  same crop and filter, same loader settings, alternating, in the same process.
* **index**: seconds and memory to index a tree of empty files (:func:`index_image_folder`; listing never
  opens a file), at two sizes, reported per million files: time of a fresh process's first pass, memory the
  peak of everything a second, traced pass allocates (``tracemalloc``: Python and NumPy), and the index's own size.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _child() -> None:
    from rtl_core.data.demo_pools import load_pool
    from rtl_core.data.registry import TASKS, load_task
    from rtl_core.names import DEMO_POOLS

    rows = []
    start = time.perf_counter()
    for name in TASKS:
        t0 = time.perf_counter()
        data = load_task(name)
        rows.append(("task", name, len(data), time.perf_counter() - t0))
    for name in DEMO_POOLS:
        t0 = time.perf_counter()
        pool = load_pool(name)
        rows.append(("pool", name, len(pool), time.perf_counter() - t0))
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "total": total, "peak_mb": peak_mb}))


STREAM_SIZES = {"paper": 224, "demo": 64}
STREAM_IMAGES = 768
STREAM_SOURCE_PX = (500, 375)
INDEX_FILES = (50_000, 200_000)


def _jpeg_tree(root) -> int:
    """Write the pack's natural images as an ImageFolder tree of 500 × 375 JPEGs under ``root``; their number."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from rtl_core.data.demo_pools import load_pool

    images = load_pool("natural").images[:STREAM_IMAGES]  # uint8 (N, 3, 64, 64), the natural pool's sources
    for i, img in enumerate(images):
        folder = Path(root) / f"class_{i % 16:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0) if img.shape[0] == 3 else img))
        pil.resize(STREAM_SOURCE_PX, Image.Resampling.BICUBIC).save(folder / f"{i:05d}.jpg", quality=90)
    return len(images)


def _images_per_s(dataset, batch_size: int = 64) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=1, persistent_workers=False)
    start, n = time.perf_counter(), 0
    for x, _ in loader:
        n += len(x)
    return n / (time.perf_counter() - start)


def _stream_child(rounds: int = 3) -> None:
    import statistics

    import torch
    from torchvision import datasets, transforms

    from rtl_core.data.imagefolder import ImageFolderStream, index_image_folder

    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as root:
        n = _jpeg_tree(root)
        index = index_image_folder(root)
        for name, size in STREAM_SIZES.items():
            reference = datasets.ImageFolder(
                root,
                transform=transforms.Compose(
                    [
                        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                        transforms.CenterCrop(size),
                        transforms.ToTensor(),
                    ]
                ),
            )
            ours = ImageFolderStream(index, size, dtype="uint8")
            runs = {"ours": [], "reference": []}
            for _ in range(rounds):
                runs["ours"].append(_images_per_s(ours))
                runs["reference"].append(_images_per_s(reference))
            ratios = [o / r for o, r in zip(runs["ours"], runs["reference"])]
            out[name] = {
                "size": size,
                "ours": statistics.median(runs["ours"]),
                "reference": statistics.median(runs["reference"]),
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "images": n,
            }
    print(json.dumps(out))


def _make_tree(root: str, n_files: int) -> None:
    """An ImageNet-like tree of empty files: root/n00000000/n00000000_00000.JPEG, 1,000 per class folder."""
    from pathlib import Path

    per_class = 1000
    for c in range(0, n_files, per_class):
        folder = Path(root) / f"n{c // per_class:08d}"
        folder.mkdir()
        for i in range(min(per_class, n_files - c)):
            (folder / f"n{c // per_class:08d}_{i:05d}.JPEG").touch()
    print(json.dumps({"files": n_files}))


def _index_child(root: str) -> None:
    """Index ``root`` in this fresh process: seconds and peak RSS growth over the process after its imports."""
    import tracemalloc

    from rtl_core.data.imagefolder import index_image_folder

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    index = index_image_folder(root)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n, index_mb = len(index), (index.rel_paths.nbytes + index.labels.nbytes) / 2**20
    del index
    tracemalloc.start()  # a second pass, traced: the peak of everything indexing allocates (Python and NumPy)
    index_image_folder(root)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "files": n,
                "seconds": seconds,
                "rss_growth_mb": peak - before,
                "peak_alloc_mb": traced_peak,
                "index_mb": index_mb,
            }
        )
    )


def _child_json(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"data benchmark failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stream() -> dict[str, float]:
    """Images per second of one DataLoader worker, ours vs torchvision's ImageFolder (module doc)."""
    result = _child_json("from rtl_core.bench.data_bench import _stream_child; _stream_child()")
    figures: dict[str, float] = {}
    for name, r in result.items():
        print(
            f"  stream {name} ({r['size']} px from {STREAM_SOURCE_PX[0]}x{STREAM_SOURCE_PX[1]} JPEGs, 1 worker): ours "
            f"{r['ours']:.0f} img/s, torchvision ImageFolder {r['reference']:.0f} img/s -> {r['ratio']:.2f}x "
            f"(median of 3, {r['ratio_min']:.2f}-{r['ratio_max']:.2f}x)"
        )
        figures[f"data.stream_images_per_s_per_worker.{name}"] = round(r["ours"], 1)
        figures[f"data.stream_reference_images_per_s_per_worker.{name}"] = round(r["reference"], 1)
        figures[f"data.stream_speedup.{name}"] = round(r["ratio"], 2)
        figures[f"data.stream_speedup_min.{name}"] = round(r["ratio_min"], 2)
        figures[f"data.stream_speedup_max.{name}"] = round(r["ratio_max"], 2)
    return figures


def index() -> dict[str, float]:
    """Seconds and memory per million files of :func:`index_image_folder` (module doc), from the larger tree."""
    rows = []
    for n in INDEX_FILES:  # the tree is made by one process and indexed by a fresh one, so the RSS is the index's
        with tempfile.TemporaryDirectory() as root:
            _child_json(f"from rtl_core.bench.data_bench import _make_tree; _make_tree({root!r}, {n})")
            rows.append(_child_json(f"from rtl_core.bench.data_bench import _index_child; _index_child({root!r})"))
    for r in rows:
        print(
            f"  index {r['files']:>8} files: {r['seconds']:.2f} s, peak allocation {r['peak_alloc_mb']:.0f} MB "
            f"(RSS growth {r['rss_growth_mb']:.0f} MB; the index itself {r['index_mb']:.0f} MB)"
        )
    big, small = rows[-1], rows[0]
    per_million = 1e6 / big["files"]
    marginal = (big["peak_alloc_mb"] - small["peak_alloc_mb"]) / (big["files"] - small["files"]) * 1e6
    print(
        f"  per million files: {big['seconds'] * per_million:.1f} s, {big['peak_alloc_mb'] * per_million:.0f} MB peak "
        f"allocation (marginal {marginal:.0f} MB per million between the two trees: linear; a 12 M-file tree "
        f"≈ {12 * big['peak_alloc_mb'] * per_million / 1024:.1f} GB)"
    )
    return {
        "data.index_seconds_per_million_files": round(big["seconds"] * per_million, 2),
        "data.index_mb_per_million_files": round(big["peak_alloc_mb"] * per_million, 1),
        "data.index_marginal_mb_per_million_files": round(marginal, 1),
        "data.index_result_mb_per_million_files": round(big["index_mb"] * per_million, 1),
        "data.index_files_measured": big["files"],
    }


def run() -> dict[str, float]:
    """Load, stream and index benchmarks; print a table; return the figures for ``bench.json``."""
    figures = load()
    figures.update(stream())
    figures.update(index())
    return figures


def load() -> dict[str, float]:
    """Load the demo pack in a child process; print a table; return the figures for ``bench.json``."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, RTL_OUTPUT_DIR=out)
        proc = subprocess.run(
            [sys.executable, "-c", "from rtl_core.bench.data_bench import _child; _child()"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"data benchmark failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("data layer: load into memory (cold: checksums + decoding; pools include rendering to 64 px)")
    for kind, name, n, seconds in result["rows"]:
        print(f"  {kind:<5}{name:<20}{n:>7} images {seconds:>7.2f} s")
    print(
        f"  pack total: {sum(r[2] for r in result['rows'] if r[0] == 'task')} task images + pools, "
        f"{result['total']:.1f} s, peak RSS {result['peak_mb']:.0f} MB"
    )
    figures = {"data.load_seconds_total": round(result["total"], 3), "data.peak_rss_mb": round(result["peak_mb"], 1)}
    for kind, name, _, seconds in result["rows"]:
        figures[f"data.load_seconds.{kind}.{name}"] = round(seconds, 3)
    return figures
