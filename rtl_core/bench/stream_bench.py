"""Streaming pretraining loader benchmark: images per second of one DataLoader worker, per pool format.

Pools of the user's formats are made from pack files in a temporary folder and resolved as a pretraining resolves
them (:func:`rtl_core.pretrain.data.load_pretrain_pool`, a study config's ``data.pools``), then read through
:func:`rtl_core.pretrain.data.pool_loader` with one worker, batches of :data:`BATCH`, at :data:`SIZE` px (the paper's):

* ``imagefolder_jpeg``: :data:`JPEGS` of the pack's Imagenette images as 500 × 375 JPEGs (quality 90; the pack
  keeps them at 64 px, lossless, inside a zip, so they are upsampled, as for ``data.stream_*`` of
  :mod:`rtl_core.bench.data_bench`);
* ``dicom``: the pack's 4 uncompressed CT DICOM slices (TCGA, 512 × 512), each hard-linked 5 × :data:`LINKS`
  times (copied into the folder first); ``dicom_j2k``: its 20-slice series stored as lossless JPEG 2000 (as many
  PACS exports are), :data:`LINKS` links of each;
* ``nifti_gz`` / ``nifti``: the pack's CT volume (``example_ct_sm.nii.gz``), :data:`LINKS` links of it, gzipped
  as shipped and uncompressed (``.nii`` is memory-mapped: what the docs recommend for large pools);
* ``png_slices``: the pack's 8 PNG CT slices; such a pool is decoded in the main process when it is resolved
  (``data.stream_loader_decode_images_per_s.png_slices``, per CPU second) and the worker then reads memory.

The rate is that after the first epoch (the worker persists; the first includes its start), over at least
:data:`MIN_IMAGES` images: the decode, window, resize and uint8 hand-over of one worker, as images per CPU second
of the worker process (``data.stream_loader_images_per_s_per_worker.<format>``: what one core given to a worker
delivers, little moved by other work on a shared host), and per wall-clock second on this host as measured
(``data.stream_loader_wall_*``).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SIZE = 224
BATCH = 16
LINKS = 10
JPEGS = 768
MIN_IMAGES = 200
"""Images a rate is measured over, at least (a small pool is read for several epochs)."""
FORMATS = ("imagefolder_jpeg", "dicom", "dicom_j2k", "nifti_gz", "nifti", "png_slices")


def _links(sources: list[Path], folder: Path, copies: int) -> None:
    """``copies`` hard links of each source (copied into ``folder`` first: the pack is read-only)."""
    folder.mkdir(parents=True)
    for source in sources:
        first = folder / f"0_{source.name}"
        shutil.copyfile(source, first)
        for k in range(1, copies):
            os.link(first, folder / f"{k}_{source.name}")


def pack_jpegs(
    root: str | os.PathLike, n: int, labels: tuple[str, ...] | None = None, size: tuple[int, int] = (500, 375)
) -> int:
    """``n`` Imagenette images of the pack (64 px, lossless, in a zip; spread over ``labels``, default all ten) as
    an ImageFolder tree of ``size`` JPEGs (quality 90, bicubic upsampling) under ``root/class_<label>/``; their
    number. Decodes only those ``n``."""
    import io

    from PIL import Image

    from rtl_core.paths import data_root

    with zipfile.ZipFile(data_root() / "natural" / "imagenette_64" / "images.zip") as archive:
        members = sorted(
            m
            for m in archive.namelist()
            if m.startswith("train/") and not m.endswith("/") and (labels is None or m.split("/")[1] in labels)
        )
        chosen = members[:: max(1, len(members) // n)][:n]  # spread over the classes
        for member in chosen:
            label = member.split("/")[1]
            folder = Path(root) / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            with Image.open(io.BytesIO(archive.read(member))) as img:
                img.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(
                    folder / f"{Path(member).stem}.jpg", quality=90
                )
    return len(chosen)


def make_pools(root: str | os.PathLike, links: int = LINKS, jpegs: int = JPEGS) -> dict[str, dict]:
    """One folder per format under ``root``, and each one's ``data.pools`` entry."""
    from rtl_core.paths import data_root

    root, raw = Path(root), data_root() / "raw-samples"
    pack_jpegs(root / "jpeg", jpegs)
    _links(sorted((raw / "dicom_tcga").glob("*.dcm")), root / "dicom", 5 * links)
    _links(sorted((raw / "dicom_series_totalseg").iterdir()), root / "dicom_j2k", links)
    volume = raw / "nifti_totalseg" / "example_ct_sm.nii.gz"
    _links([volume], root / "nifti_gz", links)
    plain = root / "plain" / "example_ct_sm.nii"
    plain.parent.mkdir()
    with gzip.open(volume, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    _links([plain], root / "nifti", links)
    slices = raw / "png_slices_ircad"
    return {
        "imagefolder_jpeg": {"format": "imagefolder", "path": str(root / "jpeg")},
        "dicom": {"format": "dicom", "path": str(root / "dicom"), "window": "abdomen"},
        "dicom_j2k": {"format": "dicom", "path": str(root / "dicom_j2k"), "window": "abdomen"},
        "nifti_gz": {"format": "nifti", "path": str(root / "nifti_gz"), "window": "abdomen"},
        "nifti": {"format": "nifti", "path": str(root / "nifti"), "window": "abdomen"},
        "png_slices": {"format": "png_slices", "path": str(slices)},
    }


def _worker_cpu_seconds(me) -> float:
    """User + system CPU seconds of this process's children (the loader's persistent worker) so far."""
    return sum(t.user + t.system for t in (c.cpu_times() for c in me.children(recursive=True)))


def _child(config_file: str) -> None:
    """In a fresh process (one torch thread, as a worker has): each pool's rate through the pretraining loader."""
    import psutil
    import torch

    from rtl_core.config import load_config
    from rtl_core.pretrain.data import load_pretrain_pool, pool_loader

    torch.set_num_threads(1)
    config = load_config(path=config_file)
    me, out = psutil.Process(), {}
    for name in config.data.pools:
        start = time.process_time()
        pool = load_pretrain_pool(config, name, check=False)
        resolve = time.process_time() - start
        loader = pool_loader(pool, min(BATCH, len(pool)), world_size=1, rank=0, seed=0, num_workers=1)
        dtype = None
        for batch in loader:  # the first epoch starts the worker; the rate is the worker's steady state after it
            dtype = str(batch.dtype)
        start, cpu_start, n, epoch = time.perf_counter(), _worker_cpu_seconds(me), 0, 1
        while n < MIN_IMAGES:  # small pools: several epochs, so the CPU clock's ticks do not matter
            loader.sampler.set_epoch(epoch)
            for batch in loader:
                n += len(batch)
            epoch += 1
        wall, cpu = time.perf_counter() - start, _worker_cpu_seconds(me) - cpu_start
        out[name] = {"images": len(pool), "rate": n / max(cpu, 0.01), "wall": n / wall, "resolve_s": resolve}
        out[name]["dtype"] = dtype
        del loader  # ends the persistent worker before the next pool's
    print(json.dumps(out))


def stream_formats(links: int = LINKS, jpegs: int = JPEGS) -> dict[str, float]:
    """Make the pools, measure them in a fresh process, remove them; the figures for ``bench.json``."""
    import yaml

    with tempfile.TemporaryDirectory(prefix="rtl-stream-") as root:
        pools = make_pools(root, links, jpegs)
        config_file = Path(root) / "stream.yaml"
        config_file.write_text(yaml.safe_dump({"profile": "smoke", "data": {"image_size": SIZE, "pools": pools}}))
        proc = subprocess.run(
            [sys.executable, "-c", f"from rtl_core.bench.stream_bench import _child; _child({str(config_file)!r})"],
            env=dict(os.environ, RTL_OUTPUT_DIR=str(Path(root) / "out")),
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"stream benchmark failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    figures: dict[str, float] = {}
    for name, r in result.items():
        if r["dtype"] != "torch.uint8":
            raise RuntimeError(f"stream benchmark: pool {name} gave {r['dtype']} batches, expected torch.uint8")
        print(
            f"  {name:<17}{r['images']:>6} images at {SIZE} px through the pretraining loader, 1 worker: "
            f"{r['rate']:.0f} img/s per CPU second of the worker ({r['wall']:.0f} img/s of wall-clock time here)"
        )
        figures[f"data.stream_loader_images_per_s_per_worker.{name}"] = round(r["rate"], 1)
        figures[f"data.stream_loader_wall_images_per_s.{name}"] = round(r["wall"], 1)
    png = result["png_slices"]
    figures["data.stream_loader_decode_images_per_s.png_slices"] = round(png["images"] / png["resolve_s"], 1)
    print(f"  png_slices decoded when the pool is resolved: {png['images'] / png['resolve_s']:.0f} img/s")
    return figures


def run() -> dict[str, float]:
    """``rtl bench --only data_stream``: :func:`stream_formats`."""
    print(f"data layer: one streaming worker per pool format ({SIZE} px, uint8 batches of {BATCH})")
    return stream_formats()
