"""Which files of a user's pool are byte copies of a user task's val/test files, in time linear in the pool and
reading each pool file at most once.

A file is held out when the SHA-256 of its bytes is the SHA-256 of one of the tasks' val/test files (copies under
another name or in another folder included). Comparing every pool file's hash reads the whole pool (hours for a
RadNet-scale pool of 12 M files), so :meth:`HeldOutFiles.keep` narrows in three steps, each exact (equal bytes
imply equal size and equal first block):

1. the file's size (one ``stat``): a size no held-out file has is kept without opening the file;
2. the SHA-256 of its first :data:`HEAD_BYTES`: kept unless (size, head) is a held-out file's;
3. the full SHA-256, continued from the head's digest (the file is read once).

The held-out side (:func:`held_out_digests`) is hashed once per set of task files and remembered in
``<outputs>/cache/held_out/`` under a key of every task file's path, size and modification time, so every
process of a study (each pretraining, the summary, the reports) reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtl_core.errors import DataError
from rtl_core.io import atomic_write
from rtl_core.paths import cache_dir

log = logging.getLogger(__name__)

HEAD_BYTES = 1 << 16
"""Bytes hashed before deciding whether a size-matching file is worth reading to the end."""
CACHE_VERSION = 1
_MEMORY: dict[str, HeldOutFiles] = {}


@dataclass(frozen=True)
class HeldOutFiles:
    """The SHA-256 of held-out files, with their sizes and (size, head SHA-256) pairs for the cheap first steps."""

    digests: frozenset[str] = frozenset()
    sizes: frozenset[int] = frozenset()
    heads: frozenset[tuple[int, str]] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.digests)

    def __len__(self) -> int:
        return len(self.digests)

    def keep(self, paths: Iterable[str | os.PathLike]) -> np.ndarray:
        """Boolean mask over ``paths``: ``False`` where the file's bytes equal a held-out file's (module doc)."""
        return np.fromiter((not self.holds(p) for p in paths), dtype=bool)

    def holds(self, path: str | os.PathLike) -> bool:
        """Whether the file at ``path`` is a byte copy of a held-out file; opened only when its size matches."""
        if not self.digests:
            return False
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise DataError(
                f"{os.fspath(path)}: cannot be read ({exc.strerror or exc}); restore it or remove it from the pool."
            ) from exc
        if size not in self.sizes:
            return False
        return _digest(path, self.heads, size)[1] in self.digests


def _digest(path: str | os.PathLike, heads: frozenset[tuple[int, str]] | None, size: int) -> tuple[str, str | None]:
    """(SHA-256 of the first :data:`HEAD_BYTES`, SHA-256 of the whole file); the whole is ``None`` when ``heads``
    is given and (size, head) is not in it (the rest of the file is then not read)."""
    with open(path, "rb") as handle:
        block = handle.read(HEAD_BYTES)
        digest = hashlib.sha256(block)
        head = digest.hexdigest()
        if heads is not None and (size, head) not in heads:
            return head, None
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return head, digest.hexdigest()


def _stat_key(files: Sequence[str]) -> tuple[str, list[tuple[str, int]]]:
    """A key over every file's absolute path, size and mtime, and the files that exist with their sizes."""
    key = hashlib.sha256(f"held-out v{CACHE_VERSION}".encode())
    present = []
    for file in sorted(set(files)):
        try:
            stat = os.stat(file)
        except OSError:
            continue  # a listed file that vanished cannot be in a pool either
        key.update(os.fsencode(os.path.abspath(file)) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        present.append((file, stat.st_size))
    return key.hexdigest()[:24], present


def cache_path(key: str) -> Path:
    """Where the held-out hashes of one set of task files are remembered."""
    return cache_dir() / "held_out" / f"{key}.json"


def held_out_digests(files: Sequence[str]) -> HeldOutFiles:
    """:class:`HeldOutFiles` of ``files`` (the tasks' val/test files), hashed once and cached (module doc)."""
    key, present = _stat_key(files)
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_path(key)
    rows = _read_cache(path)
    if rows is None:
        rows = [(size, *_digest(file, None, size)) for file, size in present]
        _write_cache(path, rows)
    found = HeldOutFiles(
        digests=frozenset(str(d) for _, _, d in rows),
        sizes=frozenset(int(s) for s, _, _ in rows),
        heads=frozenset((int(s), str(h)) for s, h, _ in rows),
    )
    _MEMORY[key] = found
    return found


def _read_cache(path: Path) -> list[tuple[int, str, str]] | None:
    try:
        rows = json.loads(path.read_text())["files"]
        return [(int(s), str(h), str(d)) for s, h, d in rows]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: hash again


def _write_cache(path: Path, rows: list[tuple[int, str, str | None]]) -> None:
    text = json.dumps({"version": CACHE_VERSION, "files": rows})
    try:
        atomic_write(path, lambda tmp: tmp.write_text(text))
    except OSError as exc:  # a read-only cache costs time, not results
        log.warning("held-out files: cannot write %s (%s); they are hashed again next time", path, exc)


__all__ = ["HEAD_BYTES", "HeldOutFiles", "cache_path", "held_out_digests"]
