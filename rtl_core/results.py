"""The results store: one JSON record per downstream run, written by evaluation, read by analysis and reports.

A record lives at ``results_dir(study)/<task>/<init slug>/<protocol>/seed<k>.json`` (:class:`RunKey`) and is
written atomically (temporary file + rename) once the run has finished (:func:`write_record`). Its schema is
:class:`RunRecord`, a pydantic model: a record counts as a result only when it parses, validates, says
``"status": "complete"`` and, where asked, names the expected run and was made with the expected settings
(:func:`record_problem`); anything else is redone by the grid and never read as a result. Statistics over the
table live in :mod:`rtl_core.analysis.stats`. Example::

    df = results_table("default")
    print(df[df.primary].groupby(["task", "init"])["value"].mean())
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, ValidationError, field_validator

from rtl_core.errors import DataError
from rtl_core.io import write_json
from rtl_core.names import init_slug
from rtl_core.paths import results_dir

log = logging.getLogger(__name__)

RECORD_VERSION = 1
COLUMNS = (
    "task",
    "init",
    "protocol",
    "data_fraction",
    "seed",
    "metric",
    "value",
    "profile",
    "primary",
    "n_train",
    "settings_hash",
    "path",
)


@dataclass(frozen=True)
class RunKey:
    """One run of the grid: where its record lives in the store."""

    task: str
    init: str
    protocol: str
    seed: int

    def path(self, root: Path) -> Path:
        return Path(root) / self.task / init_slug(self.init) / self.protocol / f"seed{self.seed}.json"

    def __str__(self) -> str:
        return f"{self.task} · {self.init} · {self.protocol} · seed {self.seed}"


class RunRecord(BaseModel):
    """The fields every complete record has (more are kept: config, provenance, timings, per-image correctness)."""

    model_config = ConfigDict(extra="allow")

    record_version: Literal[RECORD_VERSION]  # type: ignore[valid-type]
    status: Literal["complete"]
    task: str
    init: str
    protocol: str
    seed: StrictInt
    data_fraction: float
    profile: str
    metrics: dict[str, StrictFloat | StrictInt | None]
    primary_metric: str
    settings_hash: str
    split_fingerprint: str
    curves: dict[str, Any] | None
    wall_seconds: float
    model_seconds: float
    n_train: StrictInt

    @field_validator("metrics")
    @classmethod
    def _some_metric(cls, metrics: dict) -> dict:
        if not metrics:
            raise ValueError("no metrics")
        return metrics

    @property
    def key(self) -> RunKey:
        return RunKey(self.task, self.init, self.protocol, self.seed)


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    if first["type"] == "missing":
        missing = [".".join(str(p) for p in e["loc"]) for e in error.errors() if e["type"] == "missing"]
        return f"lacks keys {missing}"
    if where == "record_version":
        return f"record_version {first.get('input')} (expected {RECORD_VERSION})"
    if where.startswith("metrics"):
        return "metrics are not a mapping of numbers"
    return f"{where}: {first['msg']}"


def read_record(path: Path) -> tuple[RunRecord | None, str | None]:
    """The record at ``path`` and ``None``, or ``None`` and why it cannot be used as a result."""
    if not path.is_file():
        return None, "missing"
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(raw, dict):
        return None, "not a JSON object"
    if raw.get("status") != "complete":
        return None, "not marked complete"
    try:
        return RunRecord.model_validate(raw), None
    except ValidationError as exc:
        return None, _problem(exc)


def record_problem(path: Path, key: RunKey | None = None, settings: str | None = None) -> str | None:
    """Why the record at ``path`` cannot be used as a result (``None``: it is complete and matches)."""
    record, problem = read_record(Path(path))
    if record is None:
        return problem
    if key is not None and record.key != key:
        return "names another run"
    if settings is not None and record.settings_hash != settings:
        return f"made with other settings ({record.settings_hash} ≠ {settings})"
    return None


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become ``null``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Validate and write one complete record atomically (leftovers of a write killed mid-way go first)."""
    record = _finite({**record, "status": "complete"})  # the completion marker, inside one atomic write
    RunRecord.model_validate(record)  # a record the store would not read back is a bug: fail here, not later
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        if ".claim.json" not in tmp.name:  # a worker's claim is not a leftover
            tmp.unlink(missing_ok=True)
    write_json(path, record)


def load_records(root: str | Path, strict: bool = False) -> list[dict]:
    """Every complete record below ``root`` (``seed*.json`` files) as a dict with its ``_path``; broken ones are
    skipped with a warning, or raise :class:`DataError` when ``strict``."""
    records, broken = [], []
    for path in sorted(Path(root).rglob("seed*.json")):
        record, problem = read_record(path)
        if record is None:
            broken.append(f"{path} ({problem})")
            continue
        records.append({**record.model_dump(), "_path": str(path)})
    if broken:
        message = f"{len(broken)} unusable record(s) ignored; rerun `rtl evaluate` to redo them: " + "; ".join(
            broken[:10]
        )
        if strict:
            raise DataError(message)
        log.warning(message)
    return records


def results_table(study: str | None = None, root: str | Path | None = None, strict: bool = False) -> pd.DataFrame:
    """Tidy results: one row per run and metric with columns :data:`COLUMNS` (NaN metrics dropped)."""
    if root is None:
        if study is None:
            raise DataError("results_table needs a study or a results folder.")
        root = results_dir(study)
    rows = []
    for r in load_records(root, strict=strict):
        for metric, value in r["metrics"].items():
            if value is None:
                continue
            rows.append(
                {
                    "task": r["task"],
                    "init": r["init"],
                    "protocol": r["protocol"],
                    "data_fraction": float(r["data_fraction"]),
                    "seed": int(r["seed"]),
                    "metric": metric,
                    "value": float(value),
                    "profile": r["profile"],
                    "primary": metric == r["primary_metric"],
                    "n_train": int(r["n_train"]),
                    "settings_hash": r["settings_hash"],
                    "path": r["_path"],
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))
