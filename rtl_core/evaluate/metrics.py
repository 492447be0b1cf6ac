"""Downstream metrics: accuracy, balanced accuracy, ROC AUC (scikit-learn) and Dice.

AUC follows the task's label structure: binary (score of the positive class), multi-class (one-vs-rest, macro
average) or multi-label (macro average over labels). Dice is computed on the foreground (label ``> 0``) and
reported two ways:

* **per slice batch** (Jonske et al. 2025, as their code does): the Dice of all pixels of each consecutive batch
  of test slices, averaged over batches; it depends on the batch size and on the slice order;
* **per scan** (as segmentation challenges report it): the Dice of all slices of one scan, averaged over scans.

An empty prediction on an empty target has Dice 1 (nothing to find, nothing found), a convention shared by
MONAI's ``ignore_empty=False`` and the Medical Segmentation Decathlon.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from sklearn import metrics as skm

from rtl_core.errors import DataError

log = logging.getLogger(__name__)

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "auc")
SEGMENTATION_METRICS = ("dice_scan", "dice_batch")


def accuracy(targets: np.ndarray, probs: np.ndarray) -> float:
    """Share of images whose arg-max class is the target."""
    return float(skm.accuracy_score(targets, np.asarray(probs).argmax(1)))


def balanced_accuracy(targets: np.ndarray, probs: np.ndarray) -> float:
    """Mean per-class recall (``sklearn.metrics.balanced_accuracy_score``)."""
    return float(skm.balanced_accuracy_score(targets, np.asarray(probs).argmax(1)))


def auc(targets: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC: binary when ``probs`` has 2 columns and ``targets`` is 1-D, one-vs-rest macro for more classes,
    macro over labels when ``targets`` is a 0/1 matrix (multi-label). NaN (with a warning) when a class is absent."""
    targets, probs = np.asarray(targets), np.asarray(probs, dtype=np.float64)
    try:
        if targets.ndim == 2:
            return float(skm.roc_auc_score(targets, probs, average="macro"))
        if probs.shape[1] == 2:
            return float(skm.roc_auc_score(targets, probs[:, 1]))
        return float(
            skm.roc_auc_score(targets, probs, multi_class="ovr", average="macro", labels=np.arange(probs.shape[1]))
        )
    except ValueError as exc:
        log.warning("AUC undefined (%s); reported as NaN", exc)
        return float("nan")


_CLASSIFIERS = {"accuracy": accuracy, "balanced_accuracy": balanced_accuracy, "auc": auc}


def classification_metrics(
    targets: np.ndarray, probs: np.ndarray, names: Sequence[str] = CLASSIFICATION_METRICS
) -> dict[str, float]:
    """The named metrics of class probabilities ``probs`` (N, C) against integer ``targets`` (N,)."""
    targets, probs = np.asarray(targets), np.asarray(probs)
    if len(targets) != len(probs):
        raise DataError(f"metrics: {len(targets)} targets but {len(probs)} predictions.")
    unknown = [n for n in names if n not in _CLASSIFIERS]
    if unknown:
        raise DataError(f"Unknown classification metric(s) {unknown}; known: {sorted(_CLASSIFIERS)}.")
    return {name: _CLASSIFIERS[name](targets, probs) for name in names}


def dice(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> float:
    """Dice of the foreground (``> 0``) over all pixels given; empty vs empty is 1."""
    p = torch.as_tensor(pred) > 0
    t = torch.as_tensor(target) > 0
    if p.shape != t.shape:
        raise DataError(f"dice: prediction shape {tuple(p.shape)} differs from target shape {tuple(t.shape)}.")
    denominator = int(p.sum()) + int(t.sum())
    if denominator == 0:
        return 1.0
    return 2.0 * int((p & t).sum()) / denominator


def dice_per_batch(pred: torch.Tensor, target: torch.Tensor, batch_size: int) -> float:
    """The paper's Dice: one Dice per consecutive batch of ``batch_size`` slices, averaged over batches."""
    scores = [dice(pred[i : i + batch_size], target[i : i + batch_size]) for i in range(0, len(pred), batch_size)]
    return float(np.mean(scores))


def dice_per_scan(pred: torch.Tensor, target: torch.Tensor, scans: Sequence[str] | np.ndarray) -> float:
    """Challenge-style Dice: one Dice per scan (all its slices pooled), averaged over scans."""
    scans = np.asarray(scans)
    if len(scans) != len(pred):
        raise DataError(f"dice_per_scan: {len(scans)} scan ids for {len(pred)} slices.")
    scores = [dice(pred[torch.from_numpy(scans == s)], target[torch.from_numpy(scans == s)]) for s in np.unique(scans)]
    return float(np.mean(scores))


def segmentation_metrics(
    pred: torch.Tensor, target: torch.Tensor, scans: Sequence[str] | np.ndarray, batch_size: int
) -> dict[str, float]:
    """``dice_scan`` (per scan) and ``dice_batch`` (per slice batch of ``batch_size``) of label maps (N, H, W)."""
    return {"dice_scan": dice_per_scan(pred, target, scans), "dice_batch": dice_per_batch(pred, target, batch_size)}


def expand_metric_names(kind: str, names: Sequence[str]) -> tuple[str, ...]:
    """The metrics a run records for a task: every classification metric (the registry's primary first), or
    both Dice variants for segmentation (the registry's ``dice`` means per scan)."""
    if kind == "segmentation":
        return SEGMENTATION_METRICS
    primary = [n for n in names if n in _CLASSIFIERS]
    return tuple(dict.fromkeys([*primary, *CLASSIFICATION_METRICS]))


def primary_metric(kind: str, names: Sequence[str]) -> str:
    """The metric that model selection and summary tables use."""
    return expand_metric_names(kind, names)[0]
