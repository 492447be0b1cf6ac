"""One resolver of a study's pools and tasks: the demo registry, the config's ``data.pools`` / ``data.tasks``, and
``data.data_dir``. Pretraining, evaluation, analysis and the reports all ask here, so a user's task or pool is a
name like any other.

* tasks: :func:`study_task` → :class:`TaskSplits`, the train / val / test splits at one size in memory (uint8),
  the group (patient / scan) of every image, and the split's fingerprint; :func:`save_task_split` writes the
  split beside the results (``artifacts/splits/``), as for the demo tasks. A demo task rendered once is kept on
  disk (``cache/tasks/``, uncompressed arrays keyed by the pack's manifest and this package's data code), so
  every later process (grid workers, analysis, notebooks) loads it in a fraction of a second instead of
  decompressing, grouping and resizing the pack's images again.
* pools: :func:`study_pool` → the dataset and its file listing (fingerprinted in the checkpoint sidecar). A user
  pool never holds a val/test image of the study's user tasks (files compared by size, then SHA-256 of their bytes,
  :mod:`rtl_core.data.held_out`; demo pools are checked against the demo tasks by decoded content,
  :mod:`rtl_core.data.registry`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from rtl_core.config import DataConfig, StudyConfig
from rtl_core.data.datasets import TensorImageDataset, pool_dataset, task_dataset
from rtl_core.errors import ConfigError
from rtl_core.io import atomic_write
from rtl_core.paths import splits_dir
from rtl_core.provenance import fingerprint_arrays

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSplits:
    """A task of the study at one image size (demo or user)."""

    name: str
    kind: str  # classification | segmentation
    metrics: tuple[str, ...]
    class_names: tuple[str, ...] | None
    train: TensorImageDataset
    val: TensorImageDataset
    test: TensorImageDataset
    groups: dict[str, np.ndarray]
    files: dict[str, np.ndarray]
    fingerprint: str
    user: bool


def task_names(config: StudyConfig) -> list[str]:
    """Every task the study can name: the demo suite's and the config's own."""
    from rtl_core.data.registry import TASKS

    return [*TASKS, *config.data.tasks]


def task_kind(data: DataConfig, name: str) -> str:
    """``classification`` or ``segmentation``, for a demo task or one of the config's own."""
    from rtl_core.data.registry import get_task

    return data.tasks[name].kind if name in data.tasks else get_task(name).kind


def study_task(data: DataConfig, name: str, size: int, split_seed: int | None = None) -> TaskSplits:
    """Task ``name`` of a study whose data section is ``data``, rendered at ``size`` px."""
    from rtl_core.data.registry import TASKS, get_task, load_task

    split_seed = data.split_seed if split_seed is None else split_seed
    if name in data.tasks:
        from rtl_core.data.user import SPLITS, user_task

        spec = data.tasks[name]
        task = user_task(name, spec, size, split_seed, data.num_workers)
        fingerprint = fingerprint_arrays(
            *(np.asarray(task.files[p]).astype(str) for p in SPLITS),
            *(np.asarray(task.groups[p]).astype(str) for p in SPLITS),
        )
        return TaskSplits(
            name,
            task.kind,
            tuple(spec.metrics),
            tuple(task.class_names) if task.class_names else None,
            task.splits["train"],
            task.splits["val"],
            task.splits["test"],
            task.groups,
            task.files,
            fingerprint,
            user=True,
        )
    if name not in TASKS:
        raise ConfigError(
            f"Unknown task {name!r}; known: {sorted(TASKS) + sorted(data.tasks)}. Add your own under "
            "data.tasks in the config."
        )
    cache = _rendered_task_path(data, name, size, split_seed)
    cached = _read_rendered_task(cache) if cache is not None else None
    if cached is not None:
        return cached
    spec = get_task(name)
    full = load_task(name, split_seed=split_seed, root=data.data_dir)
    parts = {
        p: task_dataset(name, p, size=size, split_seed=split_seed, root=data.data_dir) for p in ("train", "val", "test")
    }
    groups = {p: np.asarray(full.split(p).groups).astype(str) for p in parts}
    files = {
        p: np.char.add(f"{full.source}#", np.asarray(full.split(p).extras["source_index"]).astype(str)) for p in parts
    }
    fingerprint = fingerprint_arrays(full.extras["source_index"], full.splits, full.groups)
    names = tuple(full.class_names) if full.class_names is not None else None
    task = TaskSplits(
        name,
        spec.kind,
        tuple(spec.metrics),
        names,
        parts["train"],
        parts["val"],
        parts["test"],
        groups,
        files,
        fingerprint,
        user=False,
    )
    if cache is not None:
        _write_rendered_task(cache, task)
    return task


@lru_cache(maxsize=1)
def _data_code_digest() -> str:
    """SHA-256 of this package's data code: a change to a task builder or the rendering invalidates the cache."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _rendered_task_path(data: DataConfig, name: str, size: int, split_seed: int) -> Path | None:
    """Where the demo task's rendering is cached; ``None`` for a data root without a manifest (nothing to key on)."""
    from rtl_core.data.manifest import MANIFEST_NAME
    from rtl_core.paths import cache_dir, data_root

    manifest = data_root(data.data_dir) / MANIFEST_NAME
    if not manifest.is_file():
        return None
    pack = hashlib.sha256(manifest.read_bytes()).hexdigest()
    key = hashlib.sha256(f"{name}:{size}:{split_seed}:{pack}:{_data_code_digest()}".encode()).hexdigest()[:16]
    return cache_dir() / "tasks" / f"{name}-{size}px-split{split_seed}-{key}.npz"


_PARTS = ("train", "val", "test")


def _write_rendered_task(path: Path, task: TaskSplits) -> None:
    arrays = {
        "meta": np.array(
            json.dumps(
                {
                    "name": task.name,
                    "kind": task.kind,
                    "metrics": task.metrics,
                    "class_names": task.class_names,
                    "fingerprint": task.fingerprint,
                }
            )
        )
    }
    for part in _PARTS:
        dataset = getattr(task, part)
        arrays[f"{part}_images"] = dataset.images.numpy()
        if dataset.targets is not None:
            arrays[f"{part}_targets"] = dataset.targets.numpy()
        arrays[f"{part}_groups"], arrays[f"{part}_files"] = task.groups[part], task.files[part]

    def save(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a file object: np.savez would append ".npz" to a path
            np.savez(handle, **arrays)

    try:
        atomic_write(path, save)  # creates the folder too
    except OSError as exc:  # a read-only or full cache costs speed, not results
        log.warning("could not cache task %s at %s (%s); it will be rendered again next time", task.name, path, exc)


def _read_rendered_task(path: Path) -> TaskSplits | None:
    """The cached task, or ``None`` when there is none or it cannot be read (then it is rendered again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            parts = {
                p: TensorImageDataset(
                    torch.from_numpy(npz[f"{p}_images"]),
                    torch.from_numpy(npz[f"{p}_targets"]) if f"{p}_targets" in npz.files else None,
                    name=f"{meta['name']}:{p}",
                )
                for p in _PARTS
            }
            groups = {p: npz[f"{p}_groups"] for p in _PARTS}
            files = {p: npz[f"{p}_files"] for p in _PARTS}
    except Exception as exc:  # damaged or foreign file: render again (and overwrite it)
        log.warning("ignoring the unreadable task cache %s (%s: %s)", path, type(exc).__name__, exc)
        return None
    names = tuple(meta["class_names"]) if meta["class_names"] is not None else None
    return TaskSplits(
        meta["name"],
        meta["kind"],
        tuple(meta["metrics"]),
        names,
        parts["train"],
        parts["val"],
        parts["test"],
        groups,
        files,
        meta["fingerprint"],
        user=False,
    )


def save_task_split(config: StudyConfig, name: str) -> Path:
    """Write a task's split (one row per image: file, group, split, label) to ``artifacts/splits/`` (demo tasks:
    :func:`rtl_core.data.summary.save_splits`, which adds content hashes); an existing file is kept."""
    if name not in config.data.tasks:
        from rtl_core.data.summary import save_splits

        return save_splits(name, config.data.split_seed)
    task = study_task(config.data, name, 8)
    path = splits_dir(config.study) / f"{name}-split{config.data.split_seed}-{task.fingerprint}.csv"
    if path.exists():
        return path
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "group", "split", "label"])
    for part, data in (("train", task.train), ("val", task.val), ("test", task.test)):
        labels = data.targets.numpy() if task.kind == "classification" else np.full(len(data), -1)
        for file, group, label in zip(task.files[part], task.groups[part], labels):
            writer.writerow([file, group, part, int(label)])
    return atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))


@dataclass
class StudyPool:
    """A pool ready for pretraining: its dataset, the files (or rows) it reads, and whether it streams."""

    name: str
    dataset: object
    listing: np.ndarray
    streaming: bool
    excluded: int = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]


def study_pool(config: StudyConfig, name: str, seed: int | None = None, check: bool = True) -> StudyPool:
    """Pool ``name``: a user's pool (``data.pools``, streamed, without the user tasks' val/test files; ``check``:
    read every file first, :func:`rtl_core.data.user.user_pool`) or a demo pool (in memory, size-matched, without
    any demo task's val/test image)."""
    from rtl_core.names import DEMO_POOLS

    data = config.data
    if name in data.pools:
        from rtl_core.data.user import existing_path, held_out_files, user_pool

        existing_path(data.pools[name], f"pools.{name}")  # the pool's own path first: the error names it
        held_out = held_out_files(data.tasks, data.split_seed)
        pool = user_pool(name, data.pools[name], data.image_size, held_out, check=check)
        return StudyPool(name, pool.dataset, np.asarray(pool.files), streaming=True, excluded=pool.excluded)
    if name not in DEMO_POOLS:
        raise ConfigError(
            f"Unknown pool {name!r} (--pool / pretrain.pools). Known pools: "
            f"{', '.join(sorted(set(DEMO_POOLS) | set(data.pools)))}; add your own under data.pools."
        )
    images = pool_dataset(
        name,
        size=data.image_size,
        pool_size=data.pool_size,
        seed=data.split_seed if seed is None else seed,
        split_seed=data.split_seed,
        ct_window=data.ct_window,
        root=data.data_dir,
        less_fraction=data.less_fraction,
    )
    return StudyPool(name, images, np.asarray([len(images)]), streaming=False)


def study_task_split(config: StudyConfig, name: str, split: str, size: int | None = None) -> TensorImageDataset:
    """The ``split`` of task ``name`` of a study (see :func:`study_task`)."""
    task = study_task(config.data, name, size or config.data.image_size)
    return {"train": task.train, "val": task.val, "test": task.test}[split]


def study_data_table(config: StudyConfig) -> pd.DataFrame:
    """One row per pool and task of the config's own (as the study resolves them): format, images, split sizes,
    groups, held-out files left out of pools, split fingerprint."""
    import pandas as pd

    rows = []
    for name, spec in config.data.pools.items():
        pool = study_pool(config, name)
        rows.append(
            {
                "name": name,
                "role": "pool",
                "format": spec.format,
                "images": len(pool),
                "held-out files left out": pool.excluded,
                "path": spec.path,
            }
        )
    for name, spec in config.data.tasks.items():
        task = study_task(config.data, name, 8)
        rows.append(
            {
                "name": name,
                "role": f"task ({task.kind})",
                "format": spec.format,
                "images": len(task.train) + len(task.val) + len(task.test),
                "train/val/test": f"{len(task.train)}/{len(task.val)}/{len(task.test)}",
                "groups train/val/test": "/".join(str(len(set(task.groups[p]))) for p in ("train", "val", "test")),
                "split": task.fingerprint,
                "path": spec.path,
            }
        )
    return pd.DataFrame(rows)


def format_study_data(config: StudyConfig) -> str:
    """A plain-text table of the config's own pools and tasks (:func:`study_data_table`)."""
    table = study_data_table(config)
    head = f"Study {config.study}: the config's own pools and tasks (split seed {config.data.split_seed})"
    if table.empty:
        return head + "\n  (none: the study uses the demo suite only)"
    return head + "\n" + table.fillna("").to_string(index=False)
