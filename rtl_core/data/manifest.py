"""Checksums of the data pack: every file read from it is checked against ``MANIFEST.sha256``."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from rtl_core.errors import DataError

MANIFEST_NAME = "MANIFEST.sha256"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=8)
def read_manifest(root: Path) -> dict[str, str]:
    """Map relative path -> expected hex digest; empty when the root has no manifest (user data)."""
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    entries: dict[str, str] = {}
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(
                f"{manifest}:{number}: expected '<sha256>  <path>', got {line!r}. Restore the pack's manifest."
            )
        digest, rel = parts
        entries[rel.strip().lstrip("*").removeprefix("./")] = digest.lower()
    return entries


_verified: dict[tuple[str, int, int], str] = {}


def verify_file(root: Path, path: Path) -> None:
    """Check ``path`` (inside ``root``) exists and matches the manifest, if the root has one.

    A verified (path, size, mtime) is remembered for the life of the process.
    """
    if not path.is_file():
        raise DataError(
            f"Missing data file {path}. Restore the data pack (see {root / 'README.md'}) or set RTL_DATA_DIR to a "
            "complete copy."
        )
    manifest = read_manifest(root)
    if not manifest:
        return
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    expected = manifest.get(rel)
    if expected is None:
        return  # a file the pack does not list (e.g. a user's addition): nothing to compare against
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if _verified.get(key) == expected:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"Checksum mismatch for {path}: expected {expected[:12]}… from {root / MANIFEST_NAME}, got {actual[:12]}…. "
            "The file is damaged or was changed; restore it from the original data pack."
        )
    _verified[key] = expected
