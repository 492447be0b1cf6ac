"""A user pool leaves out byte copies of the user tasks' val/test files, opening only the pool files whose size
matches one, listing the tasks without decoding them, and hashing the tasks' files once (real pack PNGs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rtl_core.config import UserDataset
from rtl_core.data import held_out as ho
from rtl_core.data.user import held_out_files, task_split_files, user_pool, user_task


@pytest.fixture()
def slices(pack) -> list[Path]:
    """The pack's 8 PNG CT slices and their 8 masks: 16 real image files of distinct sizes."""
    root = pack / "raw-samples" / "png_slices_ircad"
    return sorted((root / "images").glob("*.png")) + sorted((root / "masks").glob("*.png"))


def _copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def _task(tmp_path: Path, slices: list[Path]) -> Path:
    """train/ (slices 0-3), val/ (masks 0-1), test/ (slices 4-7), two classes each."""
    root = tmp_path / "task"
    for i in range(4):
        _copy(slices[i], root / "train" / f"c{i // 2}" / slices[i].name)
        _copy(slices[4 + i], root / "test" / f"c{i // 2}" / slices[4 + i].name)
    for i in range(2):
        _copy(slices[8 + i], root / "val" / f"c{i}" / f"mask_{slices[8 + i].name}")
    return root


def _pool(tmp_path: Path, slices: list[Path]) -> Path:
    """The task's train files, renamed copies of its test files, masks 2-7, and two test-sized impostors."""
    root = tmp_path / "pool" / "all"
    for i in range(4):
        _copy(slices[i], root / f"train_{i}.png")
        _copy(slices[4 + i], root / f"renamed_{i}.png")  # a held-out file under another name: left out
    for i in range(2, 8):
        _copy(slices[8 + i], root / f"mask_{i}.png")
    data = bytearray(slices[4].read_bytes())
    tail, head = bytearray(data), bytearray(data)
    tail[-1] ^= 0xFF  # same size and first block as a test file, other bytes: read to the end, kept
    head[100] ^= 0xFF  # same size, another first block: read no further than the head, kept
    (root / "same_head.png").write_bytes(bytes(tail))
    (root / "same_size.png").write_bytes(bytes(head))
    return root.parent


def _spec(path: Path, **kw) -> UserDataset:
    return UserDataset(format="imagefolder", path=str(path), **kw)


def test_a_pool_drops_renamed_copies_of_task_test_files_and_opens_only_size_matches(tmp_path, slices, monkeypatch):
    tasks = {"t": _spec(_task(tmp_path, slices))}
    held = held_out_files(tasks)
    assert len(held) == 6 and len(held.sizes) == 6  # 4 test + 2 val files
    opened: list[str] = []
    real = ho._digest
    monkeypatch.setattr(ho, "_digest", lambda path, heads, size: opened.append(str(path)) or real(path, heads, size))
    pool = user_pool("p", _spec(_pool(tmp_path, slices)), 16, held, check=False)
    names = sorted(Path(f).name for f in pool.files)
    assert pool.excluded == 4 and not any(n.startswith("renamed_") for n in names)
    assert "same_head.png" in names and "same_size.png" in names and len(names) == 12
    assert sorted(Path(p).name for p in opened) == sorted(
        ["same_head.png", "same_size.png"] + [f"renamed_{i}.png" for i in range(4)]
    )  # 6 of 16 pool files opened: the rest differ in size from every held-out file
    assert all(f == str(Path(f)) and Path(f).is_file() for f in pool.files)  # str(root / rel): one spelling


def test_task_files_are_listed_without_decoding_and_as_the_task_splits_them(tmp_path, slices):
    root = _task(tmp_path, slices)
    spec = _spec(root, val_fraction=0.25)
    listed = task_split_files("t", spec)
    built = user_task("t", spec, 8)
    assert {p: sorted(listed[p]) for p in listed} == {p: sorted(map(str, built.files[p])) for p in built.files}
    png = UserDataset(format="png_slices", kind="segmentation", path=str(slices[0].parent.parent))
    listed_png = task_split_files("s", png, split_seed=3)
    built_png = user_task("s", png, 8, split_seed=3)
    assert {p: listed_png[p] for p in listed_png} == {p: list(map(str, built_png.files[p])) for p in built_png.files}
    broken = root / "test" / "c0" / "not_an_image.png"
    broken.write_bytes(b"garbage, never decoded by the listing")
    assert str(broken) in task_split_files("t", spec)["test"]
    assert len(held_out_files({"t": spec})) == 7  # 4 test, 2 val files and the garbage one: hashed, not decoded


def test_held_out_hashes_are_computed_once_and_again_when_a_file_changes(tmp_path, slices, monkeypatch):
    files = [str(_copy(s, tmp_path / s.name)) for s in slices[:3]]
    calls: list[str] = []
    real = ho._digest
    monkeypatch.setattr(ho, "_digest", lambda path, heads, size: calls.append(str(path)) or real(path, heads, size))
    first = ho.held_out_digests(files)
    assert len(calls) == 3
    assert ho.held_out_digests(files[::-1]) == first and len(calls) == 3  # this process: remembered
    monkeypatch.setattr(ho, "_MEMORY", {})
    assert ho.held_out_digests(files) == first and len(calls) == 3  # another process: read from the cache file
    os.utime(files[0], ns=(0, 0))
    assert ho.held_out_digests(files) == first and len(calls) == 6  # a changed mtime: hashed again
    assert first.keep(files).tolist() == [False] * 3
    assert first.keep([str(slices[5])]).tolist() == [True] and isinstance(first.keep([]), np.ndarray)
