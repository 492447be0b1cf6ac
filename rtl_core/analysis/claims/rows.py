"""The row schema of ``claims.json`` (:data:`ROW_KEYS`) and a DataFrame of rows in that order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: The keys of one row of ``claims.json``, in order (version 1's 33, then version 2's).
ROW_KEYS = (
    "claim",
    "task",
    "metric",
    "protocol",
    "arm_a",
    "arm_b",
    "n_a",
    "n_b",
    "mean_a",
    "mean_b",
    "sd_a",
    "sd_b",
    "delta_abs",
    "delta_rel_pct",
    "ci_low",
    "ci_high",
    "p_welch",
    "p_holm",
    "family",
    "family_size",
    "p_tost",
    "p_tost_holm",
    "mde_rel_pct",
    "seeds_needed",
    "verdict",
    "reason",
    "paper_task",
    "paper_metric",
    "paper_delta_rel_pct",
    "paper_p_welch",
    "paper_p_holm",
    "paper_verdict",
    "paper_reason",
    # version 2
    "statement",
    "expectation",
    "ahead",
    "scope",
    "scope_note",
    "k_a",
    "k_b",
    "d",
    "p_checkpoints",
    "p_mixed",
    "var_encoder",
    "var_seed",
    "p_noninf",
    "p_noninf_holm",
    "margin_kind",
    "margin_abs",
    "margin_rel_pct",
    "margin_rationale",
    "k_needed",
    "outliers",
    "flags",
    "registration",
    "paper_flags",
    "paper_12m_delta_rel_pct",
    "paper_12m_p_holm",
    "paper_12m_verdict",
)
#: Bumped whenever the registry or the rule changes, so a stale claims.json is redone.
CLAIMS_VERSION = 2


def frame(rows: list[dict[str, Any]], extra: Sequence[str] = ()) -> pd.DataFrame:
    """Rows as a DataFrame with :data:`ROW_KEYS` (then ``extra``) in order, absent keys as None."""
    keys = list(ROW_KEYS) + list(extra)
    return pd.DataFrame([{k: r.get(k) for k in keys} for r in rows], columns=keys)


def clean(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def is_number(value: Any) -> bool:
    """A finite number (not None, not NaN): what display code may format."""
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value))
