"""Downstream metrics against scikit-learn and against Dice computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from rtl_core.evaluate.metrics import (
    accuracy,
    auc,
    balanced_accuracy,
    classification_metrics,
    dice,
    dice_per_batch,
    dice_per_scan,
    expand_metric_names,
    primary_metric,
)

BINARY_Y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
BINARY_P1 = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2, 0.8, 0.3])
MULTI_Y = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0])
MULTI_P = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.3, 0.6],
        [0.3, 0.4, 0.3],
        [0.1, 0.8, 0.1],
        [0.4, 0.4, 0.2],
        [0.2, 0.2, 0.6],
        [0.5, 0.3, 0.2],
        [0.6, 0.1, 0.3],
    ]
)


def test_binary_metrics_match_sklearn():
    probs = np.stack([1 - BINARY_P1, BINARY_P1], 1)
    assert auc(BINARY_Y, probs) == pytest.approx(skm.roc_auc_score(BINARY_Y, BINARY_P1))
    assert auc(BINARY_Y, probs) == pytest.approx(15 / 16)  # one discordant pair (0.6 vs 0.4) of 16
    assert accuracy(BINARY_Y, probs) == pytest.approx(6 / 8)
    assert balanced_accuracy(BINARY_Y, probs) == pytest.approx(skm.balanced_accuracy_score(BINARY_Y, BINARY_P1 > 0.5))


def test_multiclass_metrics_match_sklearn():
    got = classification_metrics(MULTI_Y, MULTI_P)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(MULTI_Y, MULTI_P.argmax(1)))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(MULTI_Y, MULTI_P.argmax(1)))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(MULTI_Y, MULTI_P, multi_class="ovr", average="macro"))
    # one-vs-rest macro by hand: the mean of three binary AUCs
    by_hand = np.mean([skm.roc_auc_score(c == MULTI_Y, MULTI_P[:, c]) for c in range(3)])
    assert got["auc"] == pytest.approx(by_hand)


def test_multilabel_auc_is_macro_over_labels():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0]])
    p = np.array([[0.9, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.1], [0.4, 0.3]])
    expected = (skm.roc_auc_score(y[:, 0], p[:, 0]) + skm.roc_auc_score(y[:, 1], p[:, 1])) / 2
    assert auc(y, p) == pytest.approx(expected)


def test_auc_with_an_absent_class_is_nan():
    assert math.isnan(auc(np.array([0, 0, 0]), np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])))


def test_dice_by_hand_and_empty_masks():
    pred = torch.tensor([[1, 1, 0], [0, 1, 0]])
    target = torch.tensor([[1, 0, 0], [0, 1, 1]])
    assert dice(pred, target) == pytest.approx(2 * 2 / (3 + 3))
    empty = torch.zeros(2, 3, dtype=torch.long)
    assert dice(empty, empty) == 1.0  # empty vs empty: nothing to find, nothing found
    assert dice(empty, target) == 0.0
    assert dice(pred, empty) == 0.0


def test_dice_per_batch_and_per_scan_by_hand():
    # four 1x2 slices; scans A = slices 0, 1 and B = slices 2, 3
    pred = torch.tensor([[[1, 1]], [[0, 0]], [[1, 0]], [[0, 0]]])
    target = torch.tensor([[[1, 0]], [[0, 0]], [[1, 1]], [[0, 0]]])
    # slice-wise: 2/3, empty/empty = 1, 2/3, 1
    assert dice_per_batch(pred, target, batch_size=1) == pytest.approx((2 / 3 + 1 + 2 / 3 + 1) / 4)
    # batches of two: {0,1}: 2*1/(2+1); {2,3}: 2*1/(1+2)
    assert dice_per_batch(pred, target, batch_size=2) == pytest.approx(2 / 3)
    # batch of three, then one: {0,1,2}: 2*2/(3+3); {3}: empty = 1
    assert dice_per_batch(pred, target, batch_size=3) == pytest.approx((4 / 6 + 1) / 2)
    assert dice_per_scan(pred, target, ["A", "A", "B", "B"]) == pytest.approx(2 / 3)
    assert dice_per_scan(pred, target, ["A", "B", "B", "A"]) == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_metric_names_follow_the_registry():
    assert expand_metric_names("classification", ("auc", "accuracy")) == ("auc", "accuracy", "balanced_accuracy")
    assert primary_metric("classification", ("accuracy",)) == "accuracy"
    assert expand_metric_names("segmentation", ("dice",)) == ("dice_scan", "dice_batch")
