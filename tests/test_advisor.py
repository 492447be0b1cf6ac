"""The transfer advisor: its estimators against their definitions, grouped folds, the validation on a crafted table,
and `rtl advise` on a user's ImageFolder task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtl_core.analysis.advisor import summarize_validation, validate
from rtl_core.analysis.transferability import (
    frechet_distance,
    grouped_folds,
    knn_accuracy,
    logme,
    logme_target,
    probe_accuracy,
)
from rtl_core.report.views.advisor import summary_table, verdict_text


def direct_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, α, β) / n of Bayesian linear regression, written out with explicit matrices (You et al. 2021, eq.
    2)."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    evidence = (
        n / 2 * np.log(beta)
        + d / 2 * np.log(alpha)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * np.sum((f @ m - y) ** 2)
        - alpha / 2 * m @ m
        - logdet / 2
    )
    return evidence / n


@pytest.mark.parametrize("n,d", [(80, 6), (20, 40)])  # more images than features, and fewer
def test_logme_is_the_maximum_of_the_evidence_formula(n, d):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(float)
    score, alpha, beta = logme_target(f, y)
    assert score == pytest.approx(direct_evidence(f, y, alpha, beta), rel=1e-6, abs=1e-8)
    for da, db in [(2, 1), (0.5, 1), (1, 2), (1, 0.5), (3, 3)]:  # the fixed point is where the evidence peaks
        assert direct_evidence(f, y, alpha * da, beta * db) <= score + 1e-9


def test_logme_rises_as_features_align_with_the_labels():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 150)
    onehot = np.eye(3)[labels]
    noise = rng.normal(size=(150, 16))
    scores = [logme(noise + np.pad(strength * onehot, ((0, 0), (0, 13))), labels) for strength in (0.0, 1.0, 3.0)]
    assert scores[0] < scores[1] < scores[2]
    with pytest.raises(Exception, match="two classes"):
        logme(noise, np.zeros(150, dtype=int))


def test_knn_and_probe_folds_never_split_a_patient():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(40), 5)  # 40 patients, 5 images each
    labels = np.repeat(rng.integers(0, 2, 40), 5)
    for train, test in grouped_folds(labels, groups):
        assert not set(groups[train]) & set(groups[test])
    separable = np.eye(2)[labels] * 5 + rng.normal(size=(200, 2)) * 0.1
    assert knn_accuracy(separable, labels, groups, k=5) == 1.0
    assert probe_accuracy(separable, labels, groups, shots=3) == 1.0
    # features that only identify the patient: leave-patients-out kNN cannot use them, so it sits near chance
    patient_code = np.eye(40)[groups] + rng.normal(size=(200, 40)) * 0.01
    assert knn_accuracy(patient_code, labels, groups, k=5) < 0.75


def test_frechet_distance_is_zero_for_one_distribution_and_scale_free():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(500, 8)), rng.normal(size=(500, 8))
    shifted = b + 2.0
    assert frechet_distance(a, b) < 0.05
    assert frechet_distance(a, shifted) > 1.0
    assert frechet_distance(10 * a, 10 * shifted) == pytest.approx(frechet_distance(a, shifted), rel=1e-6)


def _crafted():
    """Two tasks, two protocols, three inits; the advisor's scores rank inits exactly as measured on ct_cls (τ = 1)
    and with one concordant pair of three on natural_cls (τ = −1/3, wrong best)."""
    inits = ["scratch", "ssl:ct:simclr", "ssl:natural:simclr"]
    domains = [None, "ct", "natural"]
    scores = pd.DataFrame(
        {
            "task": ["ct_cls"] * 3 + ["natural_cls"] * 3,
            "init": inits * 2,
            "domain": domains * 2,
            "knn": [0.1, 0.9, 0.5, 0.9, 0.1, 0.5],
            "probe": [0.1, 0.9, 0.5, 0.9, 0.1, 0.5],
            "logme": [0.1, 0.9, 0.5, 0.9, 0.1, 0.5],
            "domain_distance": [np.nan, 0.1, 0.9, np.nan, 0.9, 0.1],
        }
    )
    scores["advisor"] = scores["knn"]
    measured = pd.DataFrame(
        [
            {"task": task, "protocol": protocol, "init": init, "value": value}
            for task, values in (("ct_cls", (0.5, 0.9, 0.7)), ("natural_cls", (0.5, 0.7, 0.9)))
            for protocol in ("finetune", "linear")
            for init, value in zip(inits, values)
        ]
    )
    return scores, measured


def test_validation_on_a_crafted_table_gives_the_known_tau_and_top1():
    scores, measured = _crafted()
    table, summary = validate(scores, measured, {"ct_cls": "ct", "natural_cls": "natural"}, n_boot=200)
    advisor = table[table["score"] == "advisor"].set_index(["task", "protocol"])
    assert advisor.loc[("ct_cls", "finetune"), "kendall_tau"] == pytest.approx(1.0)
    assert advisor.loc[("natural_cls", "linear"), "kendall_tau"] == pytest.approx(-1 / 3)  # 3 inits: one pair agrees
    assert advisor["top1"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert summary["advisor.top1"] == pytest.approx(0.5) and summary["advisor.kendall_tau"] == pytest.approx(1 / 3)
    assert summary["advisor.top1_ci_low"] == 0.0 and summary["advisor.top1_ci_high"] == 1.0  # two tasks: 0 or 1 each
    # the domain distance ranks correctly on ct_cls (CT closer) and on natural_cls (natural closer)
    assert table[table["score"] == "domain_distance"]["top1"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert summary["baseline_natural.top1"] == 0.5 and summary["baseline_domain.top1"] == 1.0
    assert summary["advisor_minus_baseline_domain.top1"] == pytest.approx(-0.5)  # paired per task: 1 − 1, 0 − 1
    text = verdict_text(summary)
    assert "does not beat the simpler rules" in text
    assert summarize_validation(table[table["task"] == "ct_cls"])["advisor.top1"] == 1.0


def test_a_validation_on_too_few_cells_says_so_instead_of_printing_its_figures(tmp_path, monkeypatch):
    """One task × one protocol: top-1 and τ of a single cell are 0/1 and ±1, the CI is undefined; every display
    (the printed line, the notebook's verdict, table and figure, `rtl advise`'s note) says the grid is too small."""
    from rtl_core.analysis import advisor
    from rtl_core.config import load_config
    from rtl_core.io import write_json

    scores, measured = _crafted()
    one = measured[(measured["task"] == "ct_cls") & (measured["protocol"] == "linear")]
    _, summary = validate(scores, one, {"ct_cls": "ct", "natural_cls": "natural"}, n_boot=50)
    assert summary["advisor.top1"] == 1.0 and summary["advisor.cells"] == 1  # what used to be printed as validated
    line = advisor.validated_line(summary, "mine")
    assert line.startswith("Not validated on study 'mine'") and "1 task × protocol cell(s) of 1 task(s)" in line
    assert "top-1 agreement" not in line and "nan" not in line.lower()
    assert verdict_text(summary).startswith("**Too few cells to validate the advisor")
    assert list(summary_table(summary).columns) == ["note"]
    _, enough = validate(scores, measured, {"ct_cls": "ct", "natural_cls": "natural"}, n_boot=50)
    assert advisor.validation_shortfall(enough) is None and "Validated on study" in advisor.validated_line(enough, "x")

    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    config = load_config("smoke")
    write_json(advisor.advisor_dir(config) / "summary.json", summary)
    note = advisor.validation_note(config)
    assert note.startswith("Study 'smoke' is not validated:") and "top-1 1.00" not in note
