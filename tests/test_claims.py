"""The claims engine (rtl_core.analysis.claims): the verdict rule on crafted tables, the paper judged on its own
runs, one family per claim, and the pages that show claims."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from rtl_core.analysis import claims as engine
from rtl_core.analysis.claims import CLAIMS, Cell, Claim, judge, judge_paper, paper_table
from rtl_core.analysis.stats import format_p, runs_needed

ARMS = {"ct": "ssl:ct:simclr", "natural": "ssl:natural:simclr"}


def claim(expected: str, *cells: Cell, id: str = "T1") -> Claim:
    return Claim(id, "a test claim", "ct", "natural", expected, cells or (Cell("ct_cls", "linear"),))


def runs(values_a, values_b, task="ct_cls", protocol="linear", metric="accuracy") -> pd.DataFrame:
    rows = [
        {
            "task": task,
            "protocol": protocol,
            "init": ARMS["ct"],
            "seed": s,
            "metric": metric,
            "value": v,
            "primary": True,
        }
        for s, v in enumerate(values_a)
    ]
    rows += [
        {
            "task": task,
            "protocol": protocol,
            "init": ARMS["natural"],
            "seed": s,
            "metric": metric,
            "value": v,
            "primary": True,
        }
        for s, v in enumerate(values_b)
    ]
    return pd.DataFrame(rows)


def one(table: pd.DataFrame, c: Claim, **kwargs) -> dict:
    rows = judge(table, ARMS, side="ours", claims=[c], **kwargs)
    assert len(rows) == len(c.cells)
    return rows[0]


# --------------------------------------------------------------------------------------------- the rule
def test_clear_effect_supports_and_the_opposite_contradicts():
    ahead = runs([0.90, 0.91, 0.92, 0.905], [0.80, 0.81, 0.79, 0.805])
    row = one(ahead, claim("a_better"))
    assert row["verdict"] == "supports" and row["p_holm"] < 0.001 and row["delta_rel_pct"] > 10
    assert row["ci_low"] > 0 and row["family_size"] == 1 and row["p_tost"] is None
    assert one(ahead, claim("b_better"))["verdict"] == "contradicts"
    assert one(ahead, claim("no_difference"))["verdict"] == "contradicts"


def test_tiny_difference_with_tight_spread_is_equivalent_only_for_no_difference_claims():
    close = runs([0.800, 0.801, 0.799, 0.8005], [0.8002, 0.7995, 0.8008, 0.7999])
    row = one(close, claim("no_difference"), margin_pct=1.0)
    assert row["verdict"] == "equivalent" and row["p_tost_holm"] < 0.05
    # The same data under a margin narrower than the spread: equivalence is not shown.
    assert one(close, claim("no_difference"), margin_pct=0.01)["verdict"] == "inconclusive"
    # A directional claim never becomes "equivalent": it stays inconclusive.
    directional = one(close, claim("a_better"))
    assert directional["verdict"] == "inconclusive" and directional["p_tost"] is None


def test_noisy_null_is_inconclusive_with_the_statsmodels_mde_and_seed_count():
    a, b = [0.62, 0.75, 0.58, 0.71], [0.66, 0.59, 0.73, 0.64]
    cells = (Cell("ct_cls", "linear"), Cell("xray_cls", "linear"))
    table = pd.concat([runs(a, b), runs([0.9, 0.8, 0.85, 0.95], [0.7, 0.9, 0.8, 0.75], task="xray_cls")])
    rows = judge(table, ARMS, side="ours", claims=[claim("a_better", *cells)])
    row = rows[0]
    assert row["verdict"] == "inconclusive" and row["family_size"] == 2
    sd = np.sqrt((np.var(a, ddof=1) * 3 + np.var(b, ddof=1) * 3) / 6)
    d = TTestIndPower().solve_power(nobs1=4, ratio=1.0, alpha=0.05 / 2, power=0.8)
    assert row["mde_rel_pct"] == pytest.approx(d * sd / np.mean(b) * 100, rel=1e-6)
    # runs needed for the declared margin (1 % of B's mean), not for the observed Δ
    margin_d = 0.01 * np.mean(b) / sd
    expected = TTestIndPower().solve_power(effect_size=margin_d, alpha=0.05 / 2, power=0.8, ratio=1.0)
    assert row["seeds_needed"] == int(np.ceil(expected)) and row["margin_rel_pct"] == pytest.approx(1.0)
    assert "detectable" in row["reason"] and "inconclusive" not in row["reason"]
    # The Welch CI is statsmodels' unequal-variance interval.
    low, high = CompareMeans(DescrStatsW(np.array(a)), DescrStatsW(np.array(b))).tconfint_diff(
        alpha=0.05, usevar="unequal"
    )
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))


@pytest.mark.parametrize(
    "a, b, why",
    [
        ([0.7, 0.7, 0.7, 0.7], [0.6, 0.6, 0.6, 0.6], "zero variance"),
        ([0.7], [0.6, 0.65, 0.62], "fewer than 2 runs"),
    ],
)
def test_undefined_tests_are_withheld(a, b, why):
    row = one(runs(a, b), claim("a_better"))
    # the family is the declared one: a cell without a test still counts (p = 1) in Holm's m
    assert row["verdict"] == "withheld" and why in row["reason"] and row["family_size"] == 1


def test_nan_values_and_runs_counted_twice_are_withheld():
    nan = one(runs([0.90, 0.91, 0.92, float("nan")], [0.80, 0.81, 0.79, 0.80]), claim("a_better"))
    assert nan["verdict"] == "withheld" and "NaN" in nan["reason"]
    table = runs([0.90, 0.91, 0.92, 0.905], [0.80, 0.81, 0.79, 0.805])
    twice = pd.concat([table, table[table["init"] == ARMS["ct"]]])  # the same seeds again (a moved file: init)
    row = one(twice, claim("a_better"))
    assert row["verdict"] == "withheld" and "more than one record" in row["reason"]


def test_an_arm_that_did_not_beat_random_init_is_withheld_and_stays_in_the_family():
    table = pd.concat(
        [
            runs([0.90, 0.91, 0.92, 0.905], [0.80, 0.81, 0.79, 0.805]),
            runs([0.90, 0.91, 0.92, 0.905], [0.80, 0.81, 0.79, 0.805], task="xray_cls"),
        ]
    )
    sanity = pd.DataFrame(
        [
            {
                "init": ARMS["ct"],
                "domain": "ct",
                "task": "ct_cls",
                "knn_init": 0.81,
                "knn_random": 0.75,
                "knn_random_max": 0.76,
                "mcnemar_p": 0.001,
                "random_seeds": 3,
                "n_test": 496,
                "beats_random": True,
            },
            {
                "init": ARMS["natural"],
                "domain": "natural",
                "task": "natural_cls",
                "knn_init": 0.069,
                "knn_random": 0.066,
                "knn_random_max": 0.074,
                "mcnemar_p": 0.56,
                "random_seeds": 3,
                "n_test": 1389,
                "beats_random": False,
            },
        ]
    )
    c = claim("a_better", Cell("ct_cls", "linear"), Cell("xray_cls", "linear"))
    rows = judge(table, ARMS, side="ours", claims=[c], sanity=sanity)
    assert [r["verdict"] for r in rows] == ["withheld", "withheld"]
    assert "natural arm ssl:natural:simclr not shown to beat random init on natural_cls" in rows[0]["reason"]
    assert all(r["family_size"] == 2 and np.isfinite(r["p_holm"]) for r in rows)
    passing = sanity.assign(beats_random=True)
    assert {r["verdict"] for r in judge(table, ARMS, side="ours", claims=[c], sanity=passing)} == {"supports"}
    # a row reported beside (CUB, gates = false) that fails withholds nothing; the same row gating does
    reported = sanity.assign(gates=[True, False])
    assert {r["verdict"] for r in judge(table, ARMS, side="ours", claims=[c], sanity=reported)} == {"supports"}
    gating = sanity.assign(gates=[True, True])
    assert {r["verdict"] for r in judge(table, ARMS, side="ours", claims=[c], sanity=gating)} == {"withheld"}


def test_a_missing_arm_task_or_protocol_is_not_run_and_names_the_change():
    table = runs([0.9, 0.91, 0.92], [0.8, 0.81, 0.79])
    c = Claim("T2", "mixed", "mixed", "ct", "no_difference", (Cell("ct_cls", "linear"),))
    row = judge(table, ARMS, side="ours", claims=[c])[0]
    assert row["verdict"] == "not run" and "'ssl:mixed:simclr' to evaluate.inits" in row["reason"]
    missing_task = judge(
        table, ARMS, side="ours", claims=[claim("a_better", Cell("mri_cls", "linear"))], study_tasks=["ct_cls"]
    )[0]
    assert missing_task["verdict"] == "not run" and "add it to evaluate.tasks" in missing_task["reason"]
    missing_protocol = judge(
        table, ARMS, side="ours", claims=[claim("a_better", Cell("ct_cls", "lowlabel_10"))], study_protocols=["linear"]
    )[0]
    assert "add it to evaluate.protocols" in missing_protocol["reason"]
    c8 = next(c for c in CLAIMS if c.id == "C8")
    rows = judge(table, engine.study_arms(list(ARMS.values())), side="ours", claims=[c8])
    assert {r["verdict"] for r in rows} == {"not run"}
    assert "data-scale arm" in rows[0]["reason"] and "'ssl:ct_less:simclr'" in rows[0]["reason"]


def test_a_protocol_outside_every_claim_changes_no_verdict():
    rng = np.random.default_rng(0)
    parts = []
    for task in ("ct_cls", "ct_liver_seg", "xray_cls", "mri_cls", "natural_cls"):
        for protocol in ("finetune", "linear", "lowlabel_1"):
            parts.append(runs(0.7 + rng.normal(0, 0.02, 4), 0.69 + rng.normal(0, 0.02, 4), task, protocol))
    base = pd.concat(parts, ignore_index=True)
    extra = pd.concat(
        [
            runs(0.9 + rng.normal(0, 0.01, 4), 0.5 + rng.normal(0, 0.01, 4), t, "linear_bn_train")
            for t in ("ct_cls", "ct_liver_seg")
        ],
        ignore_index=True,
    )
    before = pd.DataFrame(judge(base, ARMS, side="ours"))
    after = pd.DataFrame(judge(pd.concat([base, extra]), ARMS, side="ours"))
    cols = ["claim", "task", "protocol", "verdict", "p_holm", "family_size"]
    pd.testing.assert_frame_equal(before[cols], after[cols])
    assert "linear_bn_train" not in set(after["protocol"])


def test_format_p_never_rounds_across_alpha():
    assert format_p(0.0496) == "0.0496" and format_p(0.0504) == "0.050"  # 0.050 is not < 0.05: same side
    assert format_p(0.049996) == "0.049996" and format_p(0.0099, alpha=0.01) == "0.0099"
    assert format_p(0.00996, alpha=0.01) == "0.00996"
    assert [format_p(p) for p in (0.84424, 0.000976, 0.13257, 3e-6, float("nan"))] == [
        "0.844",
        "0.0010",
        "0.133",
        "<0.0001",
        "n/a",
    ]
    assert runs_needed(0.0, 0.05) is None and runs_needed(1e-4, 0.05) > 10**6  # tiny effects: normal approximation


# --------------------------------------------------------------------------------------------- the paper's runs
@pytest.fixture(scope="module")
def paper() -> pd.DataFrame:
    return judge_paper()


def _paper_row(paper, claim_id, task, protocol):
    hit = paper[(paper["claim"] == claim_id) & (paper["task"] == task) & (paper["protocol"] == protocol)]
    assert len(hit) == 1, (claim_id, task, protocol)
    return hit.iloc[0]


def test_the_paper_judged_by_the_same_rule(paper):
    e4 = _paper_row(paper, "C2", "RadNet-CTBR", "E4")
    assert e4["verdict"] == "supports"
    assert e4["delta_rel_pct"] == pytest.approx(2.141, abs=1e-3) and e4["p_welch"] == pytest.approx(0.0010, abs=1e-4)
    e1 = _paper_row(paper, "C1", "RadNet-CTBR", "E1")
    assert e1["verdict"] != "supports" and e1["p_welch"] == pytest.approx(0.844, abs=1e-3)
    if e1["verdict"] == "equivalent":  # only when its (1 − 2α) CI lies inside the ±1 % margin
        a = paper_table()
        sel = a[(a["experiment"] == "E1") & (a["task"] == "RadNet-CTBR") & (a["metric"] == "accuracy")]
        x, y = (sel.loc[sel["init"] == i, "value"].to_numpy() for i in ("RadNet-1.28M", "ImageNet"))
        low, high = CompareMeans(DescrStatsW(x), DescrStatsW(y)).tconfint_diff(alpha=0.10, usevar="unequal")
        assert -0.01 * y.mean() < low and high < 0.01 * y.mean()
    assert set(paper["verdict"]) <= set(engine.VERDICTS)


def test_paper_e6_e8_use_the_e1_e4_runs_the_source_copies(paper):
    for protocol in ("E6", "E8"):
        row = _paper_row(paper, "C9", "RadNet-CTBR", protocol)
        assert row["n_a"] == 4 and row["n_b"] == 4 and row["arm_b"] == "RadNet-1.28M"
    brats = _paper_row(paper, "C5", "BraTS", "E4")
    assert brats["metric"] == "dice_mean" and brats["n_a"] == 4


def test_every_claim_has_a_family_and_our_rows_carry_the_papers_verdict(paper):
    table = runs([0.90, 0.91, 0.92, 0.905], [0.80, 0.81, 0.79, 0.805])
    rows = engine.frame(engine.merge_paper(judge(table, ARMS, side="ours"), paper))
    assert list(rows.columns) == list(engine.ROW_KEYS)
    assert set(rows["claim"]) == {c.id for c in CLAIMS}
    c2 = rows[(rows["claim"] == "C2") & (rows["task"] == "ct_cls")].iloc[0]
    assert c2["verdict"] == "supports" and c2["paper_verdict"] == "supports"
    assert c2["paper_delta_rel_pct"] == pytest.approx(2.141, abs=1e-3)
    liver = rows[(rows["claim"] == "C1") & (rows["task"] == "ct_liver_seg")].iloc[0]
    assert liver["paper_task"] == "LiTS" and liver["paper_metric"] == "dice_liver"
    overview = engine.claim_overview(rows).set_index("claim")
    assert list(overview.index) == [c.id for c in CLAIMS]
    assert (
        # the tally names the arm ahead, so that verdicts in opposite directions do not look alike
        overview.loc["C2", "ours"] == "supports (ssl:ct:simclr ahead)"
        and overview.loc["C2", "paper (its own runs, same rule)"] == "supports"
    )
    assert "data-scale arm" in overview.loc["C8", "why ours is withheld / not run"]


# --------------------------------------------------------------------------------------------- pages
def test_verdict_figure_for_any_protocol_and_claims_json_round_trip(tmp_path, paper):
    parts = [
        runs([0.7, 0.72, 0.69, 0.71], [0.68, 0.7, 0.66, 0.7], "ct_cls", p) for p in ("lowlabel_10", "linear_bn_train")
    ]
    rows = engine.frame(engine.merge_paper(judge(pd.concat(parts), ARMS, side="ours"), paper))
    fig = engine.verdict_figure(rows, 1.0)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("lowlabel_10" in label for label in labels)
    for line in fig.axes[0].collections:  # CI segments run from low to high
        for seg in line.get_segments():
            assert seg[0][0] <= seg[1][0]
    path = engine.write_claims(rows, tmp_path / "claims.json", {"profile": "test"})
    content = json.loads(path.read_text())
    assert content["meta"]["profile"] == "test" and len(content["claims"]) == len(rows)
    assert set(content["claims"][0]) == set(engine.ROW_KEYS)
    back = engine.read_claims(path)
    assert list(back["verdict"]) == list(rows["verdict"])
