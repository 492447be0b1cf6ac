"""A study's own questions (issue 25): declared in the config, judged over the unit of replication (pretraining
runs), families fixed by the declaration, TOST first, non-inferiority, pre-registration, the paper's side, and
`rtl plan` against statsmodels' power solver. Crafted tables only: nothing trains."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import TTestIndPower

from rtl_core.analysis import claims as engine
from rtl_core.analysis.claims import Cell, Claim, judge
from rtl_core.analysis.plan import Pilot, design_for, plan_study, welch_power
from rtl_core.analysis.questions import declared_claims, registration_path
from rtl_core.analysis.stats import adjust_pvalues
from rtl_core.config import load_config
from rtl_core.errors import ConfigError

CT, NAT, TV = "ssl:ct:simclr", "ssl:natural:simclr", "torchvision:resnet18:IMAGENET1K_V1"
ARMS = {"ct": CT, "natural": NAT}
MARGIN = {"value": 1.0, "kind": "relative", "rationale": "half the smallest effect that changes a clinical choice"}


def encoders(init: str, means, d: int = 2, spread: float = 0.002, task="ct_cls", protocol="linear") -> pd.DataFrame:
    """K = len(means) pretraining runs of ``init``, each with D downstream seeds around its mean."""
    offsets = np.linspace(-spread, spread, d) if d > 1 else [0.0]
    return pd.DataFrame(
        [
            {
                "task": task,
                "protocol": protocol,
                "init": init,
                "replicate": k,
                "seed": s,
                "metric": "accuracy",
                "value": m + offsets[s],
                "primary": True,
            }
            for k, m in enumerate(means)
            for s in range(d)
        ]
    )


def claim(expected: str, *cells: Cell, a: str = "ct", b: str = "natural") -> Claim:
    return Claim("Q", "a question", a, b, expected, cells or (Cell("ct_cls", "linear"),))


# --------------------------------------------------------------------------------------------- the unit of replication
def test_pretraining_level_test_is_not_fooled_by_seeds_of_three_lucky_checkpoints():
    """K = 3 × D = 2: pooling the 6 runs per arm as independent calls it significant; over the 3 encoder means per
    arm it is not, and the row says which is which."""
    table = pd.concat([encoders(CT, [0.72, 0.77, 0.82]), encoders(NAT, [0.70, 0.715, 0.73])])
    row = judge(table, ARMS, side="ours", claims=[claim("a_better")])[0]
    assert (row["scope"], row["k_a"], row["k_b"], row["d"], row["n_a"], row["n_b"]) == ("pretraining", 3, 3, 2, 3, 3)
    assert row["p_checkpoints"] < 0.05 <= row["p_welch"] and row["verdict"] == "inconclusive"
    assert "Checkpoint level" in row["reason"] and "not significant" in row["reason"]
    assert np.isfinite(row["p_mixed"]) and row["var_encoder"] > row["var_seed"] > 0
    assert "encoders per arm (at D = 2)" in row["reason"] and row["k_needed"] >= 2 and row["seeds_needed"] is None
    # The same runs read as one encoder per arm (no replicate column): a verdict about these two checkpoints.
    flat = table.drop(columns="replicate").assign(seed=lambda d: d.groupby("init").cumcount())
    one = judge(flat, ARMS, side="ours", claims=[claim("a_better")])[0]
    assert (
        one["scope"] == "checkpoints" and one["k_a"] == 1 and one["n_a"] == 6 and "two checkpoints" in one["scope_note"]
    )
    assert one["verdict"] == "supports" and one["p_welch"] == pytest.approx(row["p_checkpoints"])


def test_a_recipe_against_a_fixed_checkpoint_says_so():
    table = pd.concat([encoders(CT, [0.80, 0.81, 0.82]), encoders(TV, [0.70], d=4)])
    row = judge(table, {"ct": CT, "tv": TV}, side="ours", claims=[claim("a_better", b="tv")])[0]
    assert row["scope"] == "pretraining" and (row["n_a"], row["n_b"], row["k_b"]) == (3, 4, 1)
    assert "recipe" in row["scope_note"] and "fixed checkpoint " + TV in row["scope_note"]
    assert row["verdict"] == "supports" and row["ahead"] == CT


# --------------------------------------------------------------------------------------------- the rule
def test_a_significant_difference_inside_the_margin_is_equivalent_with_both_p():
    table = pd.concat(
        [encoders(CT, [0.803], d=4, spread=0.0005), encoders(NAT, [0.800], d=4, spread=0.0005)]
    )  # Δ = +0.38 %, tight runs: significant, yet well inside ±1 %
    row = judge(table, ARMS, side="ours", claims=[claim("no_difference")], margin_pct=1.0)[0]
    assert row["p_holm"] < 0.05 and row["p_tost_holm"] < 0.05 and row["verdict"] == "equivalent"
    assert (
        "TOST p_holm" in row["reason"]
        and "difference test p_holm" in row["reason"]
        and "inside the margin" in row["reason"]
    )
    # A declared absolute margin narrower than Δ: the difference now contradicts.
    narrow = Claim(
        "Q", "q", "ct", "natural", "no_difference", (Cell("ct_cls", "linear"),), margins={"*": _margin(0.001)}
    )
    assert judge(table, ARMS, side="ours", claims=[narrow])[0]["verdict"] == "contradicts"


def _margin(value: float, kind: str = "absolute"):
    from rtl_core.config import Margin

    return Margin(value=value, kind=kind, rationale="test margin")


def test_as_good_or_better_is_non_inferiority():
    """A slightly behind within the margin: supports non-inferiority; the old reading (superiority) could not."""
    table = pd.concat([encoders(CT, [0.797], d=4, spread=0.001), encoders(NAT, [0.800], d=4, spread=0.001)])
    row = judge(table, ARMS, side="ours", claims=[claim("non_inferior")])[0]
    assert row["verdict"] == "supports" and row["p_noninf_holm"] < 0.05 and row["ahead"] == NAT
    far_behind = pd.concat([encoders(CT, [0.76], d=4, spread=0.001), encoders(NAT, [0.80], d=4, spread=0.001)])
    assert judge(far_behind, ARMS, side="ours", claims=[claim("non_inferior")])[0]["verdict"] == "contradicts"


def test_a_cell_not_run_changes_no_other_verdict():
    """The family is the declared cells: removing one cell's runs leaves m and the other rows' Holm p as they were
    (with the runs gone the old engine corrected over 2 tests instead of 3 and ct_cls flipped to supports)."""
    cells = tuple(Cell(t, "linear") for t in ("ct_cls", "xray_cls", "mri_cls"))
    full = pd.concat(
        [
            encoders(CT, [0.810], d=4, spread=0.006),
            encoders(NAT, [0.800], d=4, spread=0.006),
            encoders(CT, [0.90], d=4, spread=0.01, task="xray_cls"),
            encoders(NAT, [0.80], d=4, spread=0.01, task="xray_cls"),
            encoders(CT, [0.70], d=4, spread=0.05, task="mri_cls"),
            encoders(NAT, [0.70], d=4, spread=0.04, task="mri_cls"),
        ]
    )
    before = pd.DataFrame(judge(full, ARMS, side="ours", claims=[claim("a_better", *cells)]))
    missing = full[full["task"] != "mri_cls"]
    after = pd.DataFrame(judge(missing, ARMS, side="ours", claims=[claim("a_better", *cells)]))
    assert list(after["verdict"]) == ["inconclusive", "supports", "not run"] and set(after["family_size"]) == {3}
    cols = ["task", "verdict", "p_holm", "family_size"]
    pd.testing.assert_frame_equal(before[cols].iloc[:2], after[cols].iloc[:2])
    old_family = adjust_pvalues(after["p_welch"].iloc[:2], "holm")  # the run cells only, as the old engine did
    assert after.loc[0, "p_holm"] > 0.05 > old_family[0]


def test_outliers_are_flagged_and_kept_and_a_degenerate_cell_is_withheld():
    runs = encoders(CT, [0.90], d=4, spread=0.003)
    runs.loc[runs.index[-1], "value"] = 0.55  # one failed run
    table = pd.concat([runs, encoders(NAT, [0.80], d=4, spread=0.003), encoders("scratch", [0.70], d=4)])
    row = judge(table, ARMS, side="ours", claims=[claim("a_better")])[0]
    assert row["n_a"] == 4 and "seed 3: 0.55" in row["outliers"] and "robust SDs" in row["flags"]
    assert row["verdict"] != "withheld"  # the outlier does not widen the spread past scratch
    degenerate = pd.concat([encoders(CT, [0.62]), encoders(NAT, [0.61]), encoders("scratch", [0.615])])
    gated = judge(degenerate, ARMS, side="ours", claims=[claim("a_better")])[0]
    assert gated["verdict"] == "withheld" and "degenerate" in gated["reason"] and "degenerate" in gated["flags"]


# --------------------------------------------------------------------------------------------- config and registration
def _config(questions, **analysis):
    return load_config(
        "smoke",
        overrides={"study": "q_test", "analysis": {"questions": questions, "builtin_questions": "none", **analysis}},
    )


def _question(id="Q1", margin=MARGIN, **extra):
    return {
        "id": id,
        "text": "Is my CT encoder better than the photo one on my task?",
        "arm_a": CT,
        "arm_b": "domain:natural",
        "tasks": ["ct_cls"],
        "protocols": ["linear"],
        "expectation": "a_better",
        "margin": margin,
        **extra,
    }


def test_questions_are_validated_when_the_config_loads():
    with pytest.raises(ConfigError, match="no margin"):
        _config([_question(margin=None)])
    with pytest.raises(ConfigError, match="unknown task"):
        _config([_question(tasks=["my_missing_task"])])
    with pytest.raises(ConfigError, match="exactly one of"):
        _config([_question(arm_b={"role": "ct", "domain": "ct"})])
    with pytest.raises(ConfigError, match="replicates"):
        load_config("smoke", overrides={"pretrain": {"replicates": 0}})
    clash = load_config("smoke", overrides={"analysis": {"questions": [_question(id="C2")]}})
    with pytest.raises(ConfigError, match="built-in claims"):
        declared_claims(clash)
    # at their defaults the new fields leave every hash as it was (they are not dumped)
    dumped = load_config("smoke").model_dump(mode="json")
    assert "replicates" not in dumped["pretrain"] and "questions" not in dumped["analysis"]
    assert load_config("smoke", overrides={"pretrain": {"replicates": 3}}).hash() != load_config("smoke").hash()


def test_a_question_changed_after_the_runs_is_flagged(tmp_path, monkeypatch):
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    table = pd.concat([encoders(CT, [0.80, 0.82, 0.81]), encoders(NAT, [0.70, 0.72, 0.71])])
    q2 = _question(id="Q2", protocols=["linear", "finetune"])
    first = engine.judge_study(_config([_question(), q2]), results=table)
    assert registration_path("q_test").is_file() and set(first["registration"]) == {"registered"}
    assert not first["flags"].str.contains("changed after the runs").any()
    row = first[first["claim"] == "Q1"].iloc[0]
    assert row["arm_b"] == NAT and row["verdict"] == "supports" and row["paper_verdict"] == "not a paper claim"
    # Q1's margin and Q2's family change, Q3 arrives: each is flagged on every row it touches; the file stays.
    wider = {**MARGIN, "value": 2.0}
    later = _config([_question(margin=wider), _question(id="Q2", protocols=["linear"]), _question(id="Q3")])
    rows = engine.judge_study(later, results=table)
    flagged = rows.groupby("claim")["flags"].apply(lambda f: f.str.contains("changed after the runs").all())
    assert flagged.to_dict() == {"Q1": True, "Q2": True, "Q3": True}
    assert "declared after the runs" in rows[rows["claim"] == "Q3"].iloc[0]["flags"]
    unchanged = engine.judge_study(_config([_question(), q2]), results=table)
    assert not unchanged["flags"].str.contains("changed after the runs").any()
    assert json.loads(registration_path("q_test").read_text())["records_at_registration"] == len(table)


# --------------------------------------------------------------------------------------------- the paper's side
def test_the_papers_side_gains_the_sensitivity_column_imagenet_cells_and_gates():
    paper = engine.judge_paper()
    assert "C8b" not in set(paper["claim"])  # not in the paper's runs
    c6 = paper[paper["claim"] == "C6"]
    assert {"E1", "E4", "E2 0.01"} <= set(c6["protocol"]) and set(c6["task"]) == {"ImageNet-1k"}
    assert "ImageNet-1k" in set(paper.loc[paper["claim"] == "C8", "task"])
    c2 = paper[paper["claim"] == "C2"].iloc[0]
    assert c2["ct_12m_verdict"] in engine.VERDICTS and np.isfinite(c2["ct_12m_delta_rel_pct"])
    ctbr_1pct = paper[(paper["claim"] == "C3") & (paper["protocol"] == "E2 0.01")].iloc[0]
    assert ctbr_1pct["verdict"] == "withheld" and "degenerate" in ctbr_1pct["reason"]
    lits_10 = paper[(paper["claim"] == "C4") & (paper["protocol"] == "E2 0.1")].iloc[0]
    assert "RadNet-1.28M seed 42" in lits_10["flags"] and lits_10["n_a"] == 4
    ours = engine.frame(engine.merge_paper(judge(encoders(CT, [0.8]), ARMS, side="ours"), paper))
    assert set(ours.loc[ours["claim"] == "C8b", "paper_verdict"]) == {"not in the paper's runs"}


# --------------------------------------------------------------------------------------------- rtl plan
def test_plan_agrees_with_statsmodels_on_a_one_level_design():
    """Two fixed checkpoints (no pretraining to replicate): the D runs per arm the plan asks for are statsmodels'
    ``TTestIndPower`` at the declared margin over the pilot's SD, at α / m."""
    pilot = pd.concat(
        [encoders(TV, [0.80], d=6, spread=0.01), encoders("scratch", [0.75], d=6, spread=0.01)]
    )  # one encoder each: a one-level design
    q = _question(arm_a=TV, arm_b="scratch", margin={"value": 0.01, "kind": "absolute", "rationale": "one point"})
    config = load_config(
        "smoke",
        overrides={
            "study": "plan_test",
            "evaluate": {"inits": ["scratch", TV]},
            "analysis": {"questions": [q], "builtin_questions": "none"},
        },
    )
    designs, pilots = plan_study(config, results=pilot, d_options=range(2, 60))
    sd = pilot.groupby("init")["value"].std(ddof=1).pow(2).mean() ** 0.5  # equal n: pooled SD
    expected = int(np.ceil(TTestIndPower().solve_power(effect_size=0.01 / sd, alpha=0.05, power=0.8)))
    reachable = designs.dropna(subset=["K"])
    assert (
        reachable["D"].min() == expected
        and pilots.iloc[0]["pilot"] == "this study's runs (σ²_encoder assumed = σ²_seed: one encoder per arm)"
    )
    assert pilots.iloc[0]["sd_seed"] == pytest.approx(sd)
    # Replicated arms with no seed variance are one-level too: K is statsmodels' n at margin / σ_encoder.
    k = design_for(0.02, Pilot(0.03**2, 0.0, 1.0, "test"), 3, (False, False), 0.05, "two_sided")
    assert k == int(np.ceil(TTestIndPower().solve_power(effect_size=0.02 / 0.03, alpha=0.05, power=0.8)))
    # Welch's power for equal arms is close to the pooled t-test's
    assert welch_power(0.02, 0.03**2, 20, 0.03**2, 20, 0.05, "two_sided") == pytest.approx(
        TTestIndPower().power(effect_size=0.02 / 0.03, nobs1=20, alpha=0.05), abs=0.01
    )
