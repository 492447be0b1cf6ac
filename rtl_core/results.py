"""The results store: one JSON record per downstream run, written by evaluation, read by analysis and reports.

A record lives at ``results_dir(study)/<task>/<init slug>/<protocol>/seed<k>.json`` (:class:`RunKey`) and is
written atomically (temporary file + rename) once the run has finished (:func:`write_record`). Its schema is
:class:`RunRecord`, a pydantic model: a record counts as a result only when it parses, validates, says
``"status": "complete"`` and, where asked, names the expected run and was made with the expected settings
(:func:`record_problem`); anything else is redone by the grid and never read as a result.

Every record names the encoder it started from (:class:`EncoderId`: the weights file, its SHA-256 and the checkpoint
sidecar's ``run_key``; no file for a random init or torchvision's published weights). A record whose encoder file
has changed since (a new ``rtl pretrain`` replaced the checkpoint), or that predates the field while its init loads
a file, is *stale*: the grid redoes it, and :func:`load_records` / :func:`results_table` never return it, so one
arm never pools runs of two encoders. Statistics over the table live in :mod:`rtl_core.analysis.stats`. Example::

    df = results_table("default")
    print(df[df.primary].groupby(["task", "init"])["value"].mean())
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, ValidationError, field_validator

from rtl_core.errors import DataError
from rtl_core.io import write_json
from rtl_core.names import init_slug
from rtl_core.paths import cache_dir, results_dir

log = logging.getLogger(__name__)

RECORD_VERSION = 1
COLUMNS = (
    "task",
    "init",
    "protocol",
    "data_fraction",
    "seed",
    "replicate",
    "metric",
    "value",
    "profile",
    "primary",
    "n_train",
    "settings_hash",
    "encoder",
    "path",
)
#: How a stale-encoder problem starts (:func:`encoder_problem`): the grid counts its redone runs by it.
STALE_ENCODER = "stale encoder"


@dataclass(frozen=True)
class RunKey:
    """One run of the grid: where its record lives in the store."""

    task: str
    init: str
    protocol: str
    seed: int
    replicate: int = 0  # which of a replicated arm's encoders (pretrain.replicates); 0 for every other init

    def path(self, root: Path) -> Path:
        slug = init_slug(self.init, self.replicate)
        return Path(root) / self.task / slug / self.protocol / f"seed{self.seed}.json"

    def __str__(self) -> str:
        init = f"{self.init} (replicate {self.replicate})" if self.replicate else self.init
        return f"{self.task} · {init} · {self.protocol} · seed {self.seed}"


class EncoderId(BaseModel):
    """Which encoder a run started from: the weights file it loaded and that file's SHA-256, or no file (``file``
    and ``sha256`` ``None``: a random init, torchvision's published weights, named by ``what``)."""

    model_config = ConfigDict(extra="allow")

    file: str | None
    sha256: str | None
    run_key: str | None = None  # the checkpoint sidecar's run_key (our pretrainings; None for other files)
    what: str  # in words, for people: "rtl_core checkpoint", "random init …", "torchvision weights …"

    @property
    def short(self) -> str:
        """``sha256:<12 hex>`` of the file, else ``what``: the results table's ``encoder`` column."""
        return f"sha256:{self.sha256[:12]}" if self.sha256 else self.what


class RunRecord(BaseModel):
    """The fields every complete record has (more are kept: config, provenance, timings, per-image correctness)."""

    model_config = ConfigDict(extra="allow")

    record_version: Literal[RECORD_VERSION]  # type: ignore[valid-type]
    status: Literal["complete"]
    task: str
    init: str
    protocol: str
    seed: StrictInt
    replicate: StrictInt = 0  # records made before replicates existed are replicate 0
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
    encoder: EncoderId | None = None  # None: a record made before records named their encoder

    @field_validator("metrics")
    @classmethod
    def _some_metric(cls, metrics: dict) -> dict:
        if not metrics:
            raise ValueError("no metrics")
        return metrics

    @property
    def key(self) -> RunKey:
        return RunKey(self.task, self.init, self.protocol, self.seed, self.replicate)


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


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, cached by path, size, mtime and inode in this process and in
    ``<output>/cache/digests.json``, so an unchanged checkpoint is read once, not once per run or process."""
    path = Path(path).resolve()
    for _ in range(3):  # a file replaced while it was read is read again
        before = path.stat()
        stamp = f"{before.st_size}:{before.st_mtime_ns}:{before.st_ino}"
        cached = _DIGESTS.get(str(path)) or _disk_digests().get(str(path))
        if cached and cached[0] == stamp:
            _DIGESTS[str(path)] = cached
            return cached[1]
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        after = path.stat()
        if (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino):
            _DIGESTS[str(path)] = (stamp, digest)
            _save_digest(str(path), stamp, digest)
            return digest
    raise DataError(f"{path} keeps changing while it is read (is a pretraining writing it?); rerun when it is done.")


_DIGESTS: dict[str, tuple[str, str]] = {}  # resolved path -> (size:mtime_ns:inode, sha256)


def _digest_cache() -> Path:
    return cache_dir() / "digests.json"


def _disk_digests() -> dict[str, list]:
    try:
        return json.loads(_digest_cache().read_text())
    except (OSError, ValueError):
        return {}


def _save_digest(path: str, stamp: str, digest: str) -> None:
    """Add one digest to the on-disk cache (best effort: a read-only output folder only costs a re-read)."""
    try:
        kept = {k: v for k, v in _disk_digests().items() if os.path.exists(k)}  # forget files that are gone
        write_json(_digest_cache(), {**kept, path: [stamp, digest]})
    except OSError:
        pass


def encoder_problem(record: RunRecord, current: dict[str, Any] | None) -> str | None:
    """Why ``record`` was not made with the encoder ``current`` (an :class:`EncoderId` as a dict: what its init
    loads now), starting with :data:`STALE_ENCODER`; ``None`` when it was, or when ``current`` has no file digest to
    compare (a random init, torchvision weights, a file that is gone)."""
    if not current or not current.get("sha256"):
        return None
    made = record.encoder.sha256 if record.encoder else None
    if made == current["sha256"]:
        return None
    if made is None:
        return f"{STALE_ENCODER}: the record does not name its encoder (made before records did); {current['file']}"
    return (
        f"{STALE_ENCODER}: made with weights sha256 {made[:12]}, but {current['file']} is now sha256 "
        f"{current['sha256'][:12]} (replaced since, e.g. by a new `rtl pretrain`)"
    )


def record_problem(
    path: Path, key: RunKey | None = None, settings: str | None = None, encoder: dict[str, Any] | None = None
) -> str | None:
    """Why the record at ``path`` cannot be used as a result (``None``: it is complete and matches); ``encoder``
    is what the run's init loads now (:class:`EncoderId` as a dict; see :func:`encoder_problem`)."""
    record, problem = read_record(Path(path))
    if record is None:
        return problem
    if key is not None and record.key != key:
        return "names another run"
    if settings is not None and record.settings_hash != settings:
        return f"made with other settings ({record.settings_hash} ≠ {settings})"
    return encoder_problem(record, encoder)


def _encoder_file(record: RunRecord) -> str | None:
    """The weights file ``record``'s run loaded: its ``encoder.file``; for a record without the field, the
    checkpoint it names when its init loads a file (ours or ``file:``), else ``None``."""
    if record.encoder is not None:
        return record.encoder.file
    init = record.init.partition(":")[0]
    checkpoint = (record.model_extra or {}).get("init_info", {}).get("checkpoint")
    return str(checkpoint) if init in ("ssl", "sequential", "file") and checkpoint else None


def _current_digest(file: str) -> str | None:
    try:
        return file_digest(file)
    except (OSError, DataError):
        return None  # gone or unreadable here (results copied from another machine): the encoder is unknown


def _stale_records(records: list[tuple[Path, RunRecord]]) -> dict[Path, str]:
    """Of complete records, those not made with the encoder their init loads now (and why). Where that file is
    gone, the records of one file that disagree keep only the newest record's encoder: never two in one table."""
    stale: dict[Path, str] = {}
    by_file: dict[str, list[tuple[Path, RunRecord]]] = {}
    for path, record in records:
        file = _encoder_file(record)
        if file is not None:
            by_file.setdefault(file, []).append((path, record))
    for file, group in by_file.items():
        digest = _current_digest(file)
        if digest is not None:
            for path, record in group:
                problem = encoder_problem(record, {"file": file, "sha256": digest})
                if problem:
                    stale[path] = problem
            continue
        newest = max(group, key=lambda item: item[0].stat().st_mtime_ns)[1]
        keep = newest.encoder.sha256 if newest.encoder else None
        for path, record in group:
            made = record.encoder.sha256 if record.encoder else None
            if made != keep:
                stale[path] = (
                    f"{STALE_ENCODER}: made with weights sha256 {(made or 'unknown')[:12]}, newer records of "
                    f"{file} with sha256 {(keep or 'unknown')[:12]}; that file is gone, so only the newest are kept"
                )
    return stale


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
        if ".lease.json" not in tmp.name:  # a worker's lease is not a leftover
            tmp.unlink(missing_ok=True)
    write_json(path, record)


def record_paths(root: str | Path) -> list[Path]:
    """Every record file ``seed<k>.json`` below ``root``, sorted (not a worker's ``seed<k>.json.lease.json``)."""
    return sorted(
        p for p in Path(root).rglob("seed*.json") if p.name.removeprefix("seed").removesuffix(".json").isdigit()
    )


def load_records(root: str | Path, strict: bool = False) -> list[dict]:
    """Every complete record below ``root`` (``seed*.json`` files) as a dict with its ``_path``; broken ones are
    skipped with a warning, or raise :class:`DataError` when ``strict``. Stale records (made with an encoder that
    has changed since: :func:`encoder_problem`) are skipped with a warning too: `rtl evaluate` redoes them."""
    complete, broken = [], []
    for path in record_paths(root):
        record, problem = read_record(path)
        if record is None:
            broken.append(f"{path} ({problem})")
            continue
        complete.append((path, record))
    stale = _stale_records(complete)
    if stale:
        log.warning(
            "%d record(s) made with an encoder that has changed since are not results (`rtl evaluate` redoes them): %s",
            len(stale),
            "; ".join(f"{path} ({why})" for path, why in list(stale.items())[:5]),
        )
    records = [{**r.model_dump(), "_path": str(p)} for p, r in complete if p not in stale]
    if broken:
        message = f"{len(broken)} unusable record(s) ignored; rerun `rtl evaluate` to redo them: " + "; ".join(
            broken[:10]
        )
        if strict:
            raise DataError(message)
        log.warning(message)
    return records


def results_table(study: str | None = None, root: str | Path | None = None, strict: bool = False) -> pd.DataFrame:
    """Tidy results: one row per run and metric with columns :data:`COLUMNS` (NaN metrics dropped). Only records
    made with the encoder their init loads now are rows (:func:`load_records`); ``encoder`` names it
    (``sha256:<12 hex>`` of the weights file, or e.g. ``random init …``; ``unknown`` for records made before
    records named it)."""
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
                    "replicate": int(r.get("replicate", 0)),
                    "metric": metric,
                    "value": float(value),
                    "profile": r["profile"],
                    "primary": metric == r["primary_metric"],
                    "n_train": int(r["n_train"]),
                    "settings_hash": r["settings_hash"],
                    "encoder": EncoderId(**r["encoder"]).short if r.get("encoder") else "unknown",
                    "path": r["_path"],
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))
