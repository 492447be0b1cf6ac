""" "Who knew what": overlap of correctly classified samples against independence (pure maths on bool vectors)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rtl_core.analysis.overlap import (  # noqa: E402
    correct_from_predictions,
    intersection_counts,
    overlap_table,
    pair_overlap,
)
from rtl_core.errors import DataError  # noqa: E402
from rtl_core.report.views.features import overlap_heatmap, upset_figure  # noqa: E402


def test_expected_overlap_is_pa_pb_n():
    rng = np.random.default_rng(0)
    a, b = rng.random(200) < 0.7, rng.random(200) < 0.4
    row = pair_overlap(a, b)
    assert row["expected"] == pytest.approx(a.mean() * b.mean() * 200)
    assert row["both"] == int((a & b).sum())
    assert row["both"] + row["only_a"] + row["only_b"] + row["neither"] == 200
    assert row["jaccard"] == pytest.approx((a & b).sum() / (a | b).sum())
    assert row["p_value"] > 0.01  # drawn independently


def test_nested_correct_sets_reach_the_maximum_overlap():
    n = 100
    a = np.arange(n) < 70  # A right on 70 samples
    b = np.arange(n) < 40  # B right on 40 of those
    row = pair_overlap(a, b)
    assert row["both"] == row["max_possible"] == 40
    assert row["expected"] == pytest.approx(28.0)
    assert row["ratio"] == pytest.approx(40 / 28)
    assert row["jaccard"] == pytest.approx(40 / 70)
    assert row["p_value"] < 1e-6


def test_complementary_inits_reach_the_minimum_overlap():
    a = np.arange(100) < 50
    row = pair_overlap(a, ~a)
    assert row["both"] == row["min_possible"] == 0
    assert row["odds_ratio"] == 0
    assert row["p_value"] < 1e-10


def test_table_counts_and_predictions():
    targets = np.array([0, 1, 2, 1, 0, 2])
    scores = np.eye(3)[[0, 1, 2, 0, 0, 1]]  # (N, K) scores: wrong on samples 3 and 5
    correct = correct_from_predictions(
        {"scratch": scores, "ssl:ct": np.array([0, 1, 1, 1, 0, 2]), "ssl:natural": targets}, targets
    )
    np.testing.assert_array_equal(correct["scratch"], [1, 1, 1, 0, 1, 0])
    table = overlap_table(correct)
    assert len(table) == 3 and {"init_a", "init_b", "both", "expected", "p_value", "jaccard"} <= set(table.columns)
    counts = intersection_counts(correct)
    assert counts["count"].sum() == 6
    assert counts.iloc[0]["count"] == 3 and counts.iloc[0][["scratch", "ssl:ct", "ssl:natural"]].all()
    for fig in (overlap_heatmap(table), upset_figure(counts)):
        assert fig.axes
        plt.close(fig)
    bars = upset_figure(counts).axes[0].patches
    assert [p.get_height() for p in bars] == counts["count"].tolist()
    plt.close("all")


def test_bad_input_is_refused():
    with pytest.raises(DataError):
        overlap_table({"only": np.ones(5, bool)})
    with pytest.raises(DataError):
        overlap_table({"a": np.ones(5, bool), "b": np.ones(4, bool)})
    with pytest.raises(DataError):
        correct_from_predictions({"a": np.zeros(3)}, np.zeros(4))
