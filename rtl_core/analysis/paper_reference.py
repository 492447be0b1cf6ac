"""Loader for the paper's own per-run results (``shared/reference/paper_runs.csv``).

The file lists every downstream run of Jonske et al. (CMPB 2025) as recorded in the test logs of the authors'
repository (TIO-IKIM/Transfer-learning-across-domain-boundaries @ f4cdb98, CC BY-NC 4.0): one row per run and
metric, 4 seeds (42, 1, 2, 3) per experiment/task/fraction/init group. :func:`load_paper_runs` maps it onto the tidy
results schema used by :mod:`rtl_core.analysis.stats`::

    experiment  protocol  task  data_fraction  init  seed  metric  value  source_path

``protocol`` is ``finetune`` for E1 (full fine-tune), E2 (low-data fine-tunes; ``data_fraction`` tells which) and E6
(mixed-pool fine-tune), ``linear`` for E4 and E8 (linear evaluation). ``init`` keeps the paper's names (``Scratch``,
``ImageNet``, ``RadNet-1.28M``, ``RadNet-12M``, ``IxR``, ``IxR_mixed``).

Oddities of the source, kept as they are except the first:

* E6/E8 rows with init ``ImageNet`` or ``RadNet-1.28M`` are byte-identical copies of E1/E4 runs; they are dropped
  (after checking that they really are copies) so that pooling by protocol does not count a run twice.
* E2 "CX8 50 %" and "CX8 10 %" runs were in fact trained on the full CX8 training split (a bug in the authors' code).
* One E1 LiTS run (RadNet-12M) used seed 11 instead of 1, so that group does not pair by seed with the others.

The README's checks (RadNet-1.28M vs ImageNet on RadNet-CTBR accuracy, Welch's t-test) hold on these runs:
E1 +0.122 % (p = 0.844), E4 +2.141 % (p = 0.0010), E2 1 % +1.511 % (p = 0.133). The abstract's headline numbers
(+0.44 %, p = 0.541; +2.07 %, p = 0.025; +1.63 %, p = 0.114) are *not* computed from runs in this file: they compare
ImageNet with an interpolated "RadNet-1.28M (UB-adjusted)" population.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from rtl_core.errors import DataError

log = logging.getLogger(__name__)

FILE_NAME = "paper_runs.csv"
ENV_VAR = "RTL_REFERENCE_DIR"
COLUMNS = ("experiment", "task", "data_fraction", "init", "seed", "metric", "value", "source_path")
PROTOCOLS = {"E1": "finetune", "E2": "finetune", "E4": "linear", "E6": "finetune", "E8": "linear"}
# E6 / E8 re-list the E1 / E4 runs of these inits verbatim.
COPIED_FROM = {"E6": "E1", "E8": "E4"}
COPIED_INITS = ("ImageNet", "RadNet-1.28M")
_KEY = ["task", "data_fraction", "init", "seed", "metric"]


def default_reference_path() -> Path:
    """``$RTL_REFERENCE_DIR/paper_runs.csv`` if set, else ``<repo>/../shared/reference/paper_runs.csv``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser() / FILE_NAME
    repo_root = Path(__file__).resolve().parents[2]  # rtl_core/analysis/ -> rtl_core/ -> repo
    return repo_root.parent / "shared" / "reference" / FILE_NAME


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(
            f"{path} not found. Pass the path of paper_runs.csv explicitly or set {ENV_VAR} to the folder holding it."
        )
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} cannot be read as CSV ({exc}). Restore it from the shared reference folder.") from exc
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {missing}; expected {list(COLUMNS)}. Is this the paper's paper_runs.csv?"
        )
    return df


def _validate(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    df = df.copy()
    for col, kind in (("value", "float"), ("data_fraction", "float"), ("seed", "integer")):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna()
        if kind == "integer":
            bad |= num != np.round(num)
        if bad.any():
            rows = (df.index[bad] + 2).tolist()[:5]  # +2: header line and 1-based numbering
            raise DataError(f"{path}: column '{col}' has non-{kind} or empty values (CSV lines {rows}). Fix the file.")
        df[col] = num.astype("int64") if kind == "integer" else num.astype("float64")
    out_of_range = ~df["data_fraction"].between(0.0, 1.0, inclusive="right")
    if out_of_range.any():
        bad = sorted(df.loc[out_of_range, "data_fraction"].unique())
        raise DataError(f"{path}: data_fraction must lie in (0, 1]; got {bad}. Fix the file.")
    unknown = sorted(set(df["experiment"]) - set(PROTOCOLS))
    if unknown:
        raise DataError(f"{path}: unknown experiment(s) {unknown}; expected one of {sorted(PROTOCOLS)}.")
    for col in ("task", "init", "metric"):
        if df[col].isna().any():
            raise DataError(f"{path}: column '{col}' has empty values. Fix the file.")
    return df


def _drop_copies(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Drop E6/E8 rows that repeat an E1/E4 run of the same init exactly; warn about (and keep) any that differ."""
    drop = pd.Series(False, index=df.index)
    for exp, source in COPIED_FROM.items():
        cand = df[(df["experiment"] == exp) & df["init"].isin(COPIED_INITS)]
        src = df.loc[df["experiment"] == source, _KEY + ["value"]].rename(columns={"value": "source_value"})
        merged = cand.reset_index().merge(src, on=_KEY, how="left").set_index("index")
        same = merged["value"] == merged["source_value"]
        drop.loc[merged.index[same]] = True
        if (~same).any():
            log.warning(
                "%s: %d %s row(s) with init %s are not copies of %s runs; kept them.",
                path,
                int((~same).sum()),
                exp,
                list(COPIED_INITS),
                source,
            )
    log.debug("%s: dropped %d E6/E8 rows that copy E1/E4 runs", path, int(drop.sum()))
    return df[~drop]


def load_paper_runs(path: str | Path | None = None, *, drop_copies: bool = True) -> pd.DataFrame:
    """Read the paper's ``paper_runs.csv`` into the tidy results schema (one row per run and metric).

    ``path`` defaults to :func:`default_reference_path`. With ``drop_copies`` (default) the E6/E8 rows that duplicate
    E1/E4 runs are removed before anything is pooled. Raises :class:`DataError` naming the file if it is missing,
    lacks columns or holds malformed values.
    """
    path = Path(path).expanduser() if path is not None else default_reference_path()
    df = _validate(_read(path), path)
    if drop_copies:
        df = _drop_copies(df, path)
    df = df.assign(protocol=df["experiment"].map(PROTOCOLS))
    cols = ["experiment", "protocol", "task", "data_fraction", "init", "seed", "metric", "value", "source_path"]
    return df[cols].reset_index(drop=True)
