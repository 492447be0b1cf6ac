"""Check every file of a user's pool before pretraining reads it: headers and pixel data, in worker processes,
remembered by (path, size, modification time), so a rerun reads only new or changed files.

A user's pool (``data.pools``: DICOM files, NIfTI volumes, an image folder) is streamed by DataLoader workers, so
a truncated DICOM or a broken PNG among millions of files would otherwise fail the pretraining when a batch first
draws it: hours in on a large pool. :func:`check_pool_files` reads each file the way the pool's stream reads it:

* DICOM: the header and the pixel data, through the modality LUT (:func:`rtl_core.data.medical._dicom_hu`);
* NIfTI: the header and every voxel (non-finite voxels of float volumes are reported too);
* images (PNG, JPEG, TIFF, ...): the whole image, and the 8-bit rule of :func:`rtl_core.data.intensity.decode_8bit`.

Files are read by worker processes (``workers``: default one per CPU, at most 16; small batches of files run in
this process); of a multi-process pretraining (DDP, SLURM, torchrun) only the first process checks. The check
stops at the first bad file(s): the files in flight are finished, then :class:`~rtl_core.errors.DataError` names
every bad file found and the fix. Files found good are kept in ``<outputs>/cache/pool_check/<format>-v<k>.npy``
as 64-bit hashes of (absolute path, size, mtime in ns), also when the check fails, so the rerun after a fix
checks only what it has not seen.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtl_core.errors import DataError

log = logging.getLogger(__name__)

CHECK_VERSION = 1
"""Bump when a check reads more than before: every file is then checked again."""
FORMATS = ("dicom", "nifti", "imagefolder")
INLINE_FILES = 32
"""With the default workers, at most this many unchecked files are read in this process (worker processes take a
second to start)."""
MAX_WORKERS = 16
SHOWN = 10
"""Bad files named in the error (the count says how many more)."""
SAVE_EVERY_S = 120.0
"""How often a long check writes the files found good so far (a killed check keeps most of its work)."""


@dataclass(frozen=True)
class PoolCheck:
    """What :func:`check_pool_files` did: files read now, and files known good from an earlier check."""

    files: int
    checked: int
    cached: int


def check_file(fmt: str, path: str) -> str | None:
    """``None`` when the file at ``path`` reads as a ``fmt`` pool streams it, else why not (naming the file)."""
    try:
        if fmt == "dicom":
            from rtl_core.data.medical import _dicom_hu, _read_dicom

            ds = _read_dicom(Path(path), header_only=False)
            if "Rows" not in ds:
                return f"{path}: DICOM file without image data"
            _dicom_hu(ds, Path(path))
        elif fmt == "nifti":
            from rtl_core.data.medical import _load_nifti

            proxy = _load_nifti(Path(path)).dataobj
            voxels = proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else np.asarray(proxy)  # raw dtype
            if voxels.dtype.kind == "f" and not np.isfinite(voxels).all():
                return f"{path}: NIfTI volume with NaN or infinite voxels"
        elif fmt == "imagefolder":
            from PIL import Image

            from rtl_core.data.intensity import decode_8bit

            with Image.open(path) as img:
                img.load()
                decode_8bit(img, "RGB", None, path)
        else:
            raise DataError(f"check_file: unknown pool format {fmt!r}; one of {FORMATS}.")
    except DataError as exc:
        text = str(exc)
        return text if str(path) in text else f"{path}: {text}"
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, ValueError, EOFError, zlib.error, ...
        return f"{path}: {type(exc).__name__}: {exc}"
    return None


def _check_chunk(fmt: str, paths: list[str]) -> list[str | None]:
    """Worker entry point: :func:`check_file` of each path."""
    return [check_file(fmt, p) for p in paths]


def _key(path: str, stat: os.stat_result) -> int:
    text = os.fsencode(path) + f"\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def cache_file(fmt: str) -> Path:
    """Where the files found good for ``fmt`` pools are remembered."""
    from rtl_core.paths import cache_dir

    return cache_dir() / "pool_check" / f"{fmt}-v{CHECK_VERSION}.npy"


def _load_known(path: Path) -> np.ndarray:
    try:
        known = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return np.zeros(0, dtype=np.uint64)  # absent or damaged: check again
    return known if known.dtype == np.uint64 and known.ndim == 1 else np.zeros(0, dtype=np.uint64)


def _save_known(path: Path, good: list[int]) -> None:
    """Add ``good`` keys to the cache file (merged with what another process may have written meanwhile)."""
    if not good:
        return
    from rtl_core.io import atomic_write

    merged = np.union1d(_load_known(path), np.asarray(good, dtype=np.uint64))

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, merged)

    try:
        atomic_write(path, save)
    except OSError as exc:  # a read-only or full cache: the check still holds, it is only not remembered
        log.warning("pool check: cannot write %s (%s); the next run checks these files again", path, exc)


def default_workers() -> int:
    """One worker process per CPU this process may use, at most :data:`MAX_WORKERS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def _first_process() -> bool:
    """Not a DDP process Lightning started for another device, nor a SLURM / torchrun task other than the first
    (the rule of ``rtl_core.pretrain.train.first_process``)."""
    return all(os.environ.get(name, "0") in ("", "0") for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def _context() -> multiprocessing.context.BaseContext:
    """Forked workers where the platform forks (as PyTorch's DataLoader workers: no re-import of the caller's main
    module, so notebooks and unguarded scripts work), else spawned ones."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def check_pool_files(
    name: str,
    files: Sequence[str | os.PathLike],
    fmt: str,
    root: str | os.PathLike | None = None,
    workers: int | None = None,
) -> PoolCheck:
    """Read every file of pool ``name`` (format ``fmt``: ``dicom``, ``nifti`` or ``imagefolder``) as its stream
    will, skipping files found good before (same path, size and mtime); raise :class:`DataError` naming the bad
    files and the fix. ``root`` is the pool's folder (named in the fix); ``workers``: processes (default
    :func:`default_workers`; ``1`` reads in this process)."""
    if fmt not in FORMATS:
        raise DataError(f"pool {name}: cannot check files of format {fmt!r}; one of {FORMATS}.")
    if not _first_process():  # DDP / SLURM / torchrun: the first process checks (and fails) for all of them
        return PoolCheck(files=len(files), checked=0, cached=0)
    paths = [os.path.abspath(os.fspath(f)) for f in files]
    cache = cache_file(fmt)
    known = _load_known(cache)
    bad: list[tuple[str, str]] = []
    todo: list[tuple[str, int]] = []
    for path in paths:
        try:
            key = _key(path, os.stat(path))
        except OSError as exc:
            bad.append((path, f"{path}: cannot be read ({type(exc).__name__}: {exc.strerror or exc})"))
            continue
        todo.append((path, key))
    if known.size and todo:
        seen = np.isin(np.fromiter((k for _, k in todo), dtype=np.uint64, count=len(todo)), known)
        todo = [item for item, s in zip(todo, seen) if not s]
    cached = len(paths) - len(todo) - len(bad)
    auto = workers is None
    workers = default_workers() if auto else max(1, int(workers))
    good: list[int] = []
    done = 0
    if todo and not bad:
        workers = 1 if auto and len(todo) <= INLINE_FILES else workers
        log.info("pool %s: checking %d file(s) (%d known good) with %d process(es)", name, len(todo), cached, workers)
        done = _run(name, fmt, todo, workers, bad, good, cache)
    _save_known(cache, good)
    if bad:
        raise DataError(_message(name, fmt, bad, done, len(paths), root, cache))
    return PoolCheck(files=len(paths), checked=done, cached=cached)


def _run(
    name: str,
    fmt: str,
    todo: list[tuple[str, int]],
    workers: int,
    bad: list[tuple[str, str]],
    good: list[int],
    cache: Path,
) -> int:
    """Check ``todo`` in chunks, appending reasons to ``bad`` and keys to ``good``; stop submitting at the first bad
    file. Returns how many files were read."""
    size = max(1, min(64, -(-len(todo) // (workers * 4))))
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    done, last_log, last_save = 0, time.monotonic(), time.monotonic()

    def record(chunk: list[tuple[str, int]], reasons: list[str | None]) -> None:
        nonlocal done, last_log, last_save
        done += len(chunk)
        for (path, key), reason in zip(chunk, reasons):
            if reason:
                bad.append((path, reason))
            else:
                good.append(key)
        now = time.monotonic()
        if now - last_log > 30:
            log.info("pool %s: checked %d / %d file(s)", name, done, len(todo))
            last_log = now
        if now - last_save > SAVE_EVERY_S:
            _save_known(cache, good)
            last_save = now

    if workers == 1:
        for chunk in chunks:
            record(chunk, _check_chunk(fmt, [p for p, _ in chunk]))
            if bad:
                break
        return done
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_context()) as pool:
        queue = iter(chunks)
        pending: dict[Future, list[tuple[str, int]]] = {}

        def submit(n: int) -> None:
            for chunk in queue:
                pending[pool.submit(_check_chunk, fmt, [p for p, _ in chunk])] = chunk
                if len(pending) >= n:
                    return

        submit(workers * 2)
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                chunk = pending.pop(future)
                try:
                    record(chunk, future.result())
                except BrokenProcessPool as exc:
                    shown = ", ".join(p for p, _ in chunk[:3])
                    raise DataError(
                        f"pool {name}: a check worker process died ({exc}) while reading one of {len(chunk)} files "
                        f"starting with {shown}: out of memory, or a decoder crashed on a damaged file. Check these "
                        "files (or rerun with fewer DataLoader / check workers)."
                    ) from exc
            if not bad:
                submit(workers * 2)
    return done


def _message(
    name: str, fmt: str, bad: list[tuple[str, str]], done: int, total: int, root: str | os.PathLike | None, cache: Path
) -> str:
    shown = "\n".join(f"  - {reason}" for _, reason in bad[:SHOWN])
    more = f"\n  ... and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    first = Path(bad[0][0])
    if root is not None and first.is_relative_to(Path(root).absolute()):
        first = first.relative_to(Path(root).absolute())
    where = f" (glob patterns of paths relative to {root})" if root is not None else ""
    return (
        f"pool {name}: {len(bad)} {fmt} file(s) cannot be read; found before any training step "
        f"({done} of {total} files read now; the check stops at the first bad ones, so there may be more):\n"
        f"{shown}{more}\n"
        f"Fix: remove or repair these files (re-export them from the scanner / PACS, or re-save the images), or "
        f"leave them out with `exclude:` under data.pools.{name} in the study config{where}, e.g. "
        f'`exclude: ["{first.as_posix()}"]`. Files found good are remembered in {cache}, so the '
        "rerun reads only the rest."
    )


__all__ = ["CHECK_VERSION", "FORMATS", "PoolCheck", "cache_file", "check_file", "check_pool_files"]
