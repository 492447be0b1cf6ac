"""Linear probes per layer: which macroscopic image properties can a linear read-out recover?

A probe in the sense of Alain & Bengio, "Understanding intermediate layers using linear classifier probes"
(ICLR workshop 2017): a linear model fitted on frozen, global-average-pooled layer features. Continuous
properties (:mod:`rtl_core.analysis.properties`) get a ridge regression (R²; regularisation chosen by
efficient leave-one-out inside each training fold); labels (dataset of origin, body region) get a logistic
regression (accuracy). Features are z-scored inside each training fold. Cross-validation is grouped by
patient (:class:`~sklearn.model_selection.GroupKFold`, stratified for labels) so no patient is in both the
training and the test folds; the score is computed on the out-of-fold predictions pooled over folds.

Example::

    targets = probe_targets(sample)                   # properties + dataset + body_region
    table = probe_table(feats, targets, sample.meta["group"])
    table.pivot_table(index=["property", "layer"], columns="init", values="score")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from rtl_core.analysis.properties import PROPERTIES, image_properties
from rtl_core.errors import ConfigError, DataError

ProbeKind = Literal["regression", "classification"]

#: Label targets probed by classification (columns of :func:`probe_targets`).
LABEL_TARGETS: tuple[str, ...] = ("dataset", "body_region")
DEFAULT_ALPHAS: tuple[float, ...] = tuple(np.logspace(-2, 5, 15))


def probe_targets(sample) -> pd.DataFrame:
    """Probe targets of an :class:`~rtl_core.analysis.embeddings.EmbeddingSample`: the image properties plus
    ``dataset`` (the task) and ``body_region`` (CT images only; None elsewhere)."""
    targets = image_properties(sample.images, sample.masks, sample.has_mask)
    targets["dataset"] = sample.meta["task"].to_numpy()
    targets["body_region"] = sample.meta["body_region"].to_numpy()
    return targets


def _cv(kind: ProbeKind, y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int):
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    splits = min(n_splits, n_groups)
    if splits < 2:
        raise DataError(f"grouped cross-validation needs at least 2 groups, got {n_groups}.")
    if kind == "classification":
        return StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=splits, shuffle=True, random_state=seed)


def probe_score(
    features: np.ndarray,
    target: np.ndarray | Sequence,
    groups: np.ndarray | Sequence,
    kind: ProbeKind = "regression",
    n_splits: int = 5,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    C: float = 1.0,
    seed: int = 0,
) -> float:
    """The probe's R² (regression) or accuracy (classification) on out-of-fold predictions pooled over the
    grouped folds (pooled rather than per-fold R²: a fold holding few patients has little target variance of
    its own, which makes per-fold R² erratic). Rows whose target is missing (NaN / None) are dropped first.
    """
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = pd.Series(np.asarray(target, dtype=object))
    groups = np.asarray(groups)
    if not (len(x) == len(y) == len(groups)):
        raise DataError(f"features ({len(x)}), target ({len(y)}) and groups ({len(groups)}) differ in length.")
    keep = y.notna().to_numpy()
    x, y, groups = x[keep], y[keep].to_numpy(), groups[keep]
    if kind == "regression":
        y = y.astype(np.float64)
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
        scoring = r2_score
    elif kind == "classification":
        y = y.astype(str)
        if len(np.unique(y)) < 2:
            raise DataError(f"a classification probe needs at least two classes, got {list(np.unique(y))}.")
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        scoring = accuracy_score
    else:
        raise ConfigError(f"probe kind {kind!r} is not known; use 'regression' or 'classification'.")
    with threadpool_limits(limits=1, user_api="blas"):  # small dense fits: threads only oversubscribe the CPU
        predicted = cross_val_predict(model, x, y, groups=groups, cv=_cv(kind, y, groups, n_splits, seed))
    return float(scoring(y, predicted))


def default_targets(targets: pd.DataFrame) -> dict[str, ProbeKind]:
    """Which columns of ``targets`` to probe and how: properties by regression, labels by classification.

    Columns whose non-missing values are constant (e.g. ``body_region`` without two regions) are skipped.
    """
    kinds: dict[str, ProbeKind] = {}
    for column in targets.columns:
        values = targets[column].dropna()
        if values.nunique() < 2:
            continue
        if column in PROPERTIES:
            kinds[column] = "regression"
        elif column in LABEL_TARGETS or values.dtype == object:
            kinds[column] = "classification"
    return kinds


def probe_table(
    features: Mapping[str, Mapping[str, np.ndarray]],
    targets: pd.DataFrame,
    groups: np.ndarray | Sequence,
    kinds: Mapping[str, ProbeKind] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Tidy probe results: one row per (init, layer, property) with ``score``, ``metric``
    (``r2`` / ``accuracy``), ``n`` (images probed) and ``chance`` (majority share; 0 for R²).

    ``features``: ``init -> layer -> (N, C)``; ``targets``: one column per property (N rows); ``kinds``: which
    columns to probe and how (default :func:`default_targets`).
    """
    kinds = dict(kinds) if kinds is not None else default_targets(targets)
    missing = [c for c in kinds if c not in targets]
    if missing:
        raise ConfigError(f"targets lack the columns {missing}; they have {list(targets.columns)}.")
    groups = np.asarray(groups)
    rows = []
    for prop, kind in kinds.items():
        column = targets[prop]
        present = column.notna()
        chance = float(column[present].value_counts(normalize=True).max()) if kind == "classification" else 0.0
        for init, per_layer in features.items():
            for layer, x in per_layer.items():
                score = probe_score(x, column.to_numpy(), groups, kind, **kwargs)
                rows.append(
                    {
                        "init": init,
                        "layer": layer,
                        "property": prop,
                        "score": score,
                        "metric": "r2" if kind == "regression" else "accuracy",
                        "n": int(present.sum()),
                        "chance": chance,
                    }
                )
    return pd.DataFrame(rows)
