"""Gather run records into a tidy table (one row per run and metric) for :mod:`rtl_core.analysis.stats`.

Only complete records count (see :func:`rtl_core.evaluate.runner.record_problem`); broken ones are listed in a
warning and never read as results.

Example::

    df = results_table("default")
    cmp = compare_inits(df[df.metric == "accuracy"], "ssl:ct:simclr", "ssl:natural:simclr")
    print(paper_table(cmp))
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pandas as pd

from rtl_core.analysis.stats import compare_inits, summarize
from rtl_core.errors import DataError
from rtl_core.evaluate.runner import record_problem
from rtl_core.paths import results_dir

log = logging.getLogger(__name__)

COLUMNS = ("task", "init", "protocol", "data_fraction", "seed", "metric", "value", "profile", "primary", "n_train",
           "settings_hash", "path")


def load_records(root: str | Path, strict: bool = False) -> list[dict]:
    """Every complete record below ``root`` (``seed*.json`` files); broken ones are skipped with a warning, or
    raise :class:`DataError` when ``strict``."""
    records, broken = [], []
    for path in sorted(Path(root).rglob("seed*.json")):
        problem = record_problem(path)
        if problem is not None:
            broken.append(f"{path} ({problem})")
            continue
        record = json.loads(path.read_text())
        record["_path"] = str(path)
        records.append(record)
    if broken:
        message = f"{len(broken)} unusable record(s) ignored; rerun `rtl evaluate` to redo them: " + "; ".join(broken[:10])
        if strict:
            raise DataError(message)
        log.warning(message)
    return records


def results_table(profile: str | None = None, root: str | Path | None = None, strict: bool = False) -> pd.DataFrame:
    """Tidy results: one row per run and metric with columns :data:`COLUMNS` (NaN metrics dropped)."""
    if root is None:
        if profile is None:
            raise DataError("results_table needs a profile or a results folder.")
        root = results_dir(profile)
    rows = []
    for r in load_records(root, strict=strict):
        for metric, value in r["metrics"].items():
            if value is None:
                continue
            rows.append({
                "task": r["task"], "init": r["init"], "protocol": r["protocol"], "data_fraction": float(r["data_fraction"]),
                "seed": int(r["seed"]), "metric": metric, "value": float(value), "profile": r["profile"],
                "primary": metric == r["primary_metric"], "n_train": int(r["n_train"]),
                "settings_hash": r["settings_hash"], "path": r["_path"],
            })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def run_table(records: list[dict]) -> pd.DataFrame:
    """One row per run with its timings (for benchmarks and progress reports)."""
    return pd.DataFrame([
        {"task": r["task"], "init": r["init"], "protocol": r["protocol"], "seed": r["seed"], "n_train": r["n_train"],
         "wall_seconds": r["wall_seconds"], "model_seconds": r["model_seconds"]}
        for r in records
    ])


def compare_all(df: pd.DataFrame, pairs: list[tuple[str, str]] | None = None, primary_only: bool = True) -> pd.DataFrame:
    """:func:`compare_inits` for each pair of inits (default: every pair present, in the order first seen) over
    the primary metrics; pairs with too few runs are skipped with a log line."""
    data = df[df["primary"]] if primary_only else df
    inits = list(dict.fromkeys(data["init"]))
    pairs = pairs or list(itertools.combinations(inits, 2))
    out = []
    for a, b in pairs:
        try:
            out.append(compare_inits(data, a, b))
        except DataError as exc:
            log.info("no comparison of %s with %s: %s", a, b, exc)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def summary(df: pd.DataFrame, primary_only: bool = True) -> pd.DataFrame:
    """Runs, mean and SD per protocol/task/data_fraction/metric and init."""
    return summarize(df[df["primary"]] if primary_only else df)
