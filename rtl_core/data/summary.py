"""What is in every pool and task: sizes, classes, split sizes, patients per split; and saved split files."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np

from rtl_core.data.demo_pools import load_pool
from rtl_core.data.registry import TASKS, load_task
from rtl_core.data.splits import content_hashes
from rtl_core.io import atomic_write
from rtl_core.names import DEMO_POOLS
from rtl_core.paths import splits_dir
from rtl_core.provenance import fingerprint_arrays


def task_summary(name: str, split_seed: int = 0) -> dict:
    data = load_task(name, split_seed=split_seed)
    spec = TASKS[name]
    row = {
        "task": name,
        "kind": spec.kind,
        "metrics": list(spec.metrics),
        "images": len(data),
        "shape": "x".join(map(str, data.images.shape[1:])),
        "intensity": data.intensity,
        "classes": len(data.class_names) if spec.kind == "classification" else int(data.masks.max()) + 1,
        "groups": int(len(np.unique(data.groups))),
        "fingerprint": split_fingerprint(name, split_seed),
    }
    for part in ("train", "val", "test"):
        in_part = data.splits == part
        row[f"n_{part}"] = int(in_part.sum())
        row[f"groups_{part}"] = int(len(np.unique(data.groups[in_part])))
    return row


def pool_summary(name: str, size: int = 64, pool_size: int | None = None) -> dict:
    pool = load_pool(name, size=size, pool_size=pool_size)
    sources = Counter(pool.extras["pool_source"].tolist())
    return {"pool": name, "images": len(pool), "sources": dict(sources), "groups": int(len(np.unique(pool.groups)))}


def split_fingerprint(name: str, split_seed: int = 0) -> str:
    data = load_task(name, split_seed=split_seed)
    return fingerprint_arrays(data.extras["source_index"], data.splits, data.groups)


def save_splits(name: str, split_seed: int = 0, directory: Path | None = None) -> Path:
    """Write the task's split (one row per image: source row, group, split, label, content hash) as CSV."""
    data = load_task(name, split_seed=split_seed)
    directory = directory or splits_dir()
    path = directory / f"{name}-split{split_seed}-{split_fingerprint(name, split_seed)}.csv"
    if path.exists():
        return path
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["source", "source_index", "group", "split", "label", "sha1"])
    labels = data.labels if data.labels is not None else np.full(len(data), -1)
    for i, sha in zip(range(len(data)), content_hashes(data.images)):
        writer.writerow(
            [data.source, int(data.extras["source_index"][i]), data.groups[i], data.splits[i], int(labels[i]), sha]
        )
    return atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))


def format_summary(split_seed: int = 0, size: int = 64) -> str:
    """A plain-text table of every pool and task."""
    lines = ["Pools (unlabelled, size-matched; no downstream val/test image):"]
    for name in DEMO_POOLS:
        row = pool_summary(name, size=size)
        parts = ", ".join(f"{k} {v}" for k, v in sorted(row["sources"].items(), key=lambda kv: -kv[1]))
        lines.append(f"  {name:<8} {row['images']:>6} images  [{parts}]")
    lines.append("")
    lines.append(f"Tasks (split seed {split_seed}; 'groups' = patients / scans / duplicate groups):")
    header = (
        f"  {'task':<20}{'kind':<15}{'metric':<18}{'images':>7}{'classes':>8}{'train':>7}{'val':>6}{'test':>6}"
        "   groups train/val/test"
    )
    lines.append(header)
    for name in TASKS:
        r = task_summary(name, split_seed)
        lines.append(
            f"  {name:<20}{r['kind']:<15}{r['metrics'][0]:<18}{r['images']:>7}{r['classes']:>8}"
            f"{r['n_train']:>7}{r['n_val']:>6}"
            f"{r['n_test']:>6}   {r['groups_train']}/{r['groups_val']}/{r['groups_test']}"
        )
    return "\n".join(lines)
