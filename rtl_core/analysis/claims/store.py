"""``claims.json``: the rows of every verdict, written atomically beside the study's analysis tables.

Schema: ``{"meta": {...}, "claims": [one object per claim × task × protocol × metric]}`` with the keys of
:data:`ROW_KEYS`. The first 33 keys are those of engine version 1 (their meaning kept, except that ``family_size``
is now the declared family, and ``seeds_needed`` counts runs for the declared margin, not the observed Δ); the rest
were added with version 2. A reader of an older file gets ``None`` for the new keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from rtl_core.analysis.claims.rows import CLAIMS_VERSION, clean, frame
from rtl_core.errors import DataError


def write_claims(rows: pd.DataFrame, path: Path, meta: Mapping[str, Any]) -> Path:
    """``claims.json``: ``{"meta": …, "claims": [one object per claim × task × metric]}``, written atomically."""
    from rtl_core.io import write_json

    records = [{k: clean(v) for k, v in r.items()} for r in rows.to_dict("records")]
    return write_json(path, {"meta": dict(meta), "claims": records})


def read_claims(path: Path) -> pd.DataFrame:
    """The rows of a ``claims.json`` (see :func:`write_claims`); keys an older engine did not write are None."""
    if not path.is_file():
        raise DataError(f"{path} does not exist; run `rtl claims` (or `make reproduce`) first.")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); rerun `rtl claims` to rewrite it.") from exc
    return frame(content.get("claims", []))


def claims_path(study: str) -> Path:
    """Where ``rtl claims`` writes a study's ``claims.json`` (beside its analysis tables)."""
    from rtl_core.paths import analysis_dir

    return analysis_dir(study) / "claims.json"


def study_claims(config, inputs: str | None = None) -> tuple[pd.DataFrame, Path]:
    """Judge every declared question on the study of ``config`` and write ``claims.json``; returns the rows and the
    path. ``inputs`` (a fingerprint of what was read) is recorded so that a pipeline can tell a current file."""
    import time

    from rtl_core.analysis.claims.arms import config_arms
    from rtl_core.analysis.claims.catalogue import PAPER_ARMS, PAPER_SENSITIVITY
    from rtl_core.analysis.claims.judge import judge_study
    from rtl_core.analysis.claims.model import POWER
    from rtl_core.analysis.questions import question_hashes, registration_path
    from rtl_core.provenance import git_commit

    rows = judge_study(config)
    ac = config.analysis
    registration = registration_path(config.study)
    meta = {
        "profile": config.profile,
        "study": config.study,
        "config_hash": config.hash(),
        "alpha": ac.alpha,
        "equivalence_margin_pct": ac.equivalence_margin,
        "power": POWER,
        "arms": config_arms(config),
        "paper_arms": PAPER_ARMS,
        "paper_sensitivity_arms": PAPER_SENSITIVITY,
        "questions": {q: h for q, h in question_hashes(config).items()},
        "own_questions": [q.id for q in ac.questions],
        "registration": json.loads(registration.read_text()).get("registered") if registration.is_file() else None,
        "rule": "Welch t-test on the unit of replication (encoder means with K >= 2 pretraining runs, else runs); "
        "Holm over each question's declared cells; TOST first for no-difference, one-sided Welch for non-inferiority; "
        "see rtl_core.analysis.claims.rule",
        "sd_ddof": 1,
        "ci": f"Welch t interval, {1 - ac.alpha:.0%}",
        "git_commit": git_commit(),
        "made": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "engine_version": CLAIMS_VERSION,
        "inputs": inputs,
    }
    return rows, write_claims(rows, claims_path(config.study), meta)


def load_claims(study: str) -> pd.DataFrame:
    """The claims rows of ``study`` as ``rtl claims`` last wrote them (an empty table if it never ran)."""
    path = claims_path(study)
    return read_claims(path) if path.is_file() else frame([])


def current_claims(config) -> pd.DataFrame:
    """The study's ``claims.json`` when ``rtl claims`` wrote one, else the claims judged now (not written)."""
    from rtl_core.analysis.claims.judge import judge_study

    rows = load_claims(config.study)
    return rows if len(rows) else judge_study(config)
