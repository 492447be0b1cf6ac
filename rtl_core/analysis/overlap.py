""" "Who knew what": do models from different inits get the same test samples right?

For two inits A and B evaluated on the same ``n`` test samples, with ``n_a`` and ``n_b`` correct, independent
errors predict ``n · p_a · p_b`` samples correct under both (``p = n_correct / n``). The observed overlap is
compared with that expectation by Fisher's exact test on the 2×2 table (both / A only / B only / neither),
two-sided, so a significant odds ratio above 1 means the inits succeed on the same samples more often than
chance, below 1 that they complement each other. The Jaccard index ``|A∩B| / |A∪B|`` and the feasible range
``[max(0, n_a + n_b − n), min(n_a, n_b)]`` are reported alongside.

Example::

    correct = correct_from_predictions({"scratch": pred_s, "ssl:ct": pred_c}, targets)
    table = overlap_table(correct)          # one row per pair
    counts = intersection_counts(correct)   # UpSet-style: one row per correctness pattern
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact

from rtl_core.errors import DataError


def correct_from_predictions(predictions: Mapping[str, np.ndarray], targets: np.ndarray) -> dict[str, np.ndarray]:
    """``init -> bool array`` of correct predictions; predictions are class indices ``(N,)`` or scores ``(N, K)``."""
    targets = np.asarray(targets)
    out = {}
    for init, pred in predictions.items():
        pred = np.asarray(pred)
        if pred.ndim == 2:
            pred = pred.argmax(axis=1)
        if pred.shape != targets.shape:
            raise DataError(
                f"predictions of {init!r} have shape {pred.shape}, targets {targets.shape}; use the same test set."
            )
        out[init] = pred == targets
    return out


def _check(correct: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if len(correct) < 2:
        raise DataError(f"who-knew-what needs at least two inits, got {list(correct)}.")
    arrays = {k: np.asarray(v, dtype=bool) for k, v in correct.items()}
    lengths = {k: v.shape for k, v in arrays.items()}
    shapes = set(lengths.values())
    if len(shapes) != 1 or any(len(s) != 1 or s[0] == 0 for s in shapes):
        raise DataError(f"correctness arrays must be 1-D, non-empty and of equal length; got shapes {lengths}.")
    return arrays


def pair_overlap(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Observed vs independent-expected overlap of two correctness vectors, with Fisher's test and Jaccard."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    n = len(a)
    both = int((a & b).sum())
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    n_a, n_b = both + only_a, both + only_b
    expected = n_a * n_b / n
    union = both + only_a + only_b
    odds, p = fisher_exact([[both, only_a], [only_b, neither]], alternative="two-sided")
    return {
        "n": n,
        "n_a": n_a,
        "n_b": n_b,
        "p_a": n_a / n,
        "p_b": n_b / n,
        "both": both,
        "expected": expected,
        "ratio": both / expected if expected > 0 else float("nan"),
        "min_possible": max(0, n_a + n_b - n),
        "max_possible": min(n_a, n_b),
        "only_a": only_a,
        "only_b": only_b,
        "neither": neither,
        "jaccard": both / union if union else float("nan"),
        "odds_ratio": float(odds),
        "p_value": float(p),
    }


def overlap_table(correct: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per pair of inits (``init_a``, ``init_b``) with the columns of :func:`pair_overlap`."""
    arrays = _check(correct)
    rows = [{"init_a": a, "init_b": b, **pair_overlap(arrays[a], arrays[b])} for a, b in combinations(arrays, 2)]
    return pd.DataFrame(rows)


def intersection_counts(correct: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """UpSet-style counts: one row per pattern of which inits got a sample right (bool columns) and ``count``,
    sorted by count (patterns that never occur are left out)."""
    arrays = _check(correct)
    frame = pd.DataFrame(arrays)
    counts = frame.value_counts().rename("count").reset_index()
    return counts.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)
