"""Tests of rtl_core.analysis.stats and the paper_runs.csv loader (Jonske et al., CMPB 2025 statistics)."""

from __future__ import annotations

import logging
import shutil
import warnings

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as sps

from rtl_core.analysis import paper_reference
from rtl_core.analysis.paper_reference import load_paper_runs
from rtl_core.analysis.stats import (
    adjust_pvalues,
    bootstrap_mean_diff_ci,
    compare_inits,
    format_p,
    paper_table,
    relative_delta_pct,
    summarize,
    welch_ttest,
)
from rtl_core.errors import ConfigError, DataError

# Fixed numbers: equal n, clearly unequal variances (the case where pingouin's default silently runs Student's t).
X = np.array([0.81, 0.84, 0.79, 0.86, 0.80])
Y = np.array([0.70, 0.95, 0.62, 0.99, 0.75])
SEEDS = [42, 1, 2, 3, 4]


def tidy(a: np.ndarray, b: np.ndarray, seeds_a=SEEDS, seeds_b=SEEDS, **group) -> pd.DataFrame:
    """A tidy results table with one group holding runs of inits 'A' and 'B'."""
    base = {"protocol": "finetune", "task": "ct_cls", "data_fraction": 1.0, "metric": "accuracy", **group}
    rows = [{**base, "init": "A", "seed": s, "value": v} for s, v in zip(seeds_a, a)]
    rows += [{**base, "init": "B", "seed": s, "value": v} for s, v in zip(seeds_b, b)]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- the paper's runs
@pytest.fixture(scope="module")
def paper_runs() -> pd.DataFrame:
    return load_paper_runs()


@pytest.fixture(scope="module")
def radnet_vs_imagenet(paper_runs) -> pd.DataFrame:
    return compare_inits(paper_runs, "RadNet-1.28M", "ImageNet", n_resamples=2000)


# The table of ../shared/reference/README.md, shown again in docs/claims.md ("Reference results"):
# (protocol, data_fraction) -> (mean ± SD RadNet-1.28M, mean ± SD ImageNet, Δ %, Welch p)
README_CHECKS = {
    ("finetune", 1.0): ("0.93655 ± 0.00550", "0.93541 ± 0.00952", "+0.122 %", "0.844"),
    ("linear", 1.0): ("0.95115 ± 0.00500", "0.93121 ± 0.00420", "+2.141 %", "0.0010"),
    ("finetune", 0.01): ("0.62766 ± 0.00195", "0.61832 ± 0.00917", "+1.511 %", "0.133"),
}


@pytest.mark.parametrize(("protocol", "fraction"), list(README_CHECKS))
def test_reproduces_readme_comparisons(radnet_vs_imagenet, protocol, fraction):
    table = paper_table(radnet_vs_imagenet)
    sel = (table["task"] == "RadNet-CTBR") & (table["protocol"] == protocol) & (table["data_fraction"] == fraction)
    assert sel.sum() == 1
    row = table[sel].iloc[0]
    assert (row["RadNet-1.28M"], row["ImageNet"], row["Δ (%)"], row["p (Welch)"]) == README_CHECKS[protocol, fraction]
    raw = radnet_vs_imagenet[sel].iloc[0]
    assert raw["n_a"] == raw["n_b"] == 4
    assert raw["welch_dof"] < 6  # Welch, not Student's 2n - 2


def test_readme_numbers_to_printed_precision(radnet_vs_imagenet):
    c = radnet_vs_imagenet.set_index(["protocol", "task", "data_fraction", "metric"])
    e1 = c.loc[("finetune", "RadNet-CTBR", 1.0, "accuracy")]
    e4 = c.loc[("linear", "RadNet-CTBR", 1.0, "accuracy")]
    e2 = c.loc[("finetune", "RadNet-CTBR", 0.01, "accuracy")]
    assert round(e1["delta_rel_pct"], 3) == 0.122 and round(e1["welch_p"], 3) == 0.844
    assert round(e4["delta_rel_pct"], 3) == 2.141 and round(e4["welch_p"], 4) == 0.0010
    assert round(e2["delta_rel_pct"], 3) == 1.511 and round(e2["welch_p"], 3) == 0.133
    assert (round(e1["sd_a"], 5), round(e1["sd_b"], 5)) == (0.00550, 0.00952)
    # The abstract's headline (+0.44 %, p = 0.541 etc.) is an interpolated population, not these runs.
    assert round(e1["delta_rel_pct"], 2) != 0.44


def test_loader_drops_e6_e8_copies_and_maps_schema(paper_runs):
    raw = pd.read_csv(paper_reference.default_reference_path())
    assert len(raw) == 656
    assert len(load_paper_runs(drop_copies=False)) == 656
    assert len(paper_runs) == 656 - 32
    copies = paper_runs["experiment"].isin(["E6", "E8"]) & paper_runs["init"].isin(["ImageNet", "RadNet-1.28M"])
    assert not copies.any()
    assert set(paper_runs.loc[paper_runs["experiment"].isin(["E6", "E8"]), "init"]) == {"IxR", "IxR_mixed"}
    for col in ("task", "protocol", "data_fraction", "init", "seed", "metric", "value"):
        assert col in paper_runs.columns
    assert set(paper_runs.groupby("experiment")["protocol"].unique().map(tuple)) == {("finetune",), ("linear",)}
    assert paper_runs.loc[paper_runs["experiment"] == "E4", "protocol"].eq("linear").all()
    # ../shared/reference/README.md: every experiment/task/fraction/init group has 4 runs; after the drop no run is
    # counted twice.
    assert (summarize(paper_runs)["n"] == 4).all()


def test_pooling_mixed_pool_runs_with_e1(paper_runs):
    c = compare_inits(paper_runs, "IxR", "ImageNet", n_resamples=500)
    assert set(c["experiment"]) == {"E1+E6", "E4+E8"}
    assert (c["n_a"] == 4).all() and (c["n_b"] == 4).all()


def test_seed_11_run_does_not_pair(paper_runs):
    c = compare_inits(paper_runs, "RadNet-12M", "ImageNet", n_resamples=500)
    lits = c[(c["task"] == "LiTS") & (c["protocol"] == "finetune") & (c["data_fraction"] == 1.0)]
    assert len(lits) == 2 and lits["paired_p"].isna().all() and (lits["paired_n"] == 0).all()
    assert lits["welch_p"].notna().all()
    assert c.loc[c["task"] == "RadNet-CTBR", "paired_p"].notna().all()


def test_loader_honours_env_var(tmp_path, monkeypatch):
    src = paper_reference.default_reference_path()
    e1 = pd.read_csv(src).query("experiment == 'E1'")
    e1.to_csv(tmp_path / "paper_runs.csv", index=False)
    monkeypatch.setenv("RTL_REFERENCE_DIR", str(tmp_path))
    assert paper_reference.default_reference_path() == tmp_path / "paper_runs.csv"
    df = load_paper_runs()
    assert set(df["experiment"]) == {"E1"} and len(df) == len(e1) == 128


def test_loader_default_path_is_next_to_repo(monkeypatch):
    monkeypatch.delenv("RTL_REFERENCE_DIR", raising=False)
    path = paper_reference.default_reference_path()
    assert path.parts[-3:] == ("shared", "reference", "paper_runs.csv") and path.is_file()


def test_loader_keeps_non_identical_e6_rows(tmp_path, caplog):
    df = pd.read_csv(paper_reference.default_reference_path())
    i = df.index[(df["experiment"] == "E6") & (df["init"] == "ImageNet")][0]
    df.loc[i, "value"] += 0.01
    path = tmp_path / "paper_runs.csv"
    df.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        out = load_paper_runs(path)
    assert len(out) == 656 - 31
    assert "not copies" in caplog.text


def test_loader_errors(tmp_path):
    with pytest.raises(DataError, match="RTL_REFERENCE_DIR"):
        load_paper_runs(tmp_path / "nope.csv")
    df = pd.read_csv(paper_reference.default_reference_path())
    bad = tmp_path / "no_seed.csv"
    df.drop(columns="seed").to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"no_seed\.csv.*'seed'"):
        load_paper_runs(bad)
    bad2 = tmp_path / "bad_value.csv"
    df.assign(value=df["value"].astype(str).where(df.index != 3, "n/a")).to_csv(bad2, index=False)
    with pytest.raises(DataError, match=r"bad_value\.csv.*'value'"):
        load_paper_runs(bad2)
    shutil.copy(paper_reference.default_reference_path(), tmp_path / "ok.csv")
    assert len(load_paper_runs(tmp_path / "ok.csv")) == 624


# --------------------------------------------------------------------------------------------- the tests themselves
def test_welch_matches_scipy_and_not_pingouin_default():
    t, dof, p = welch_ttest(X, Y)
    ref = sps.ttest_ind(X, Y, equal_var=False)
    assert t == pytest.approx(ref.statistic, rel=1e-10) and p == pytest.approx(ref.pvalue, rel=1e-10)
    va, vb = X.var(ddof=1) / len(X), Y.var(ddof=1) / len(Y)
    welch_satterthwaite = (va + vb) ** 2 / (va**2 / (len(X) - 1) + vb**2 / (len(Y) - 1))
    assert dof == pytest.approx(welch_satterthwaite, rel=1e-10)
    # The trap: equal n -> pingouin's default correction='auto' runs Student's t-test.
    default = pg.ttest(X, Y)
    assert float(default["dof"].iloc[0]) == len(X) + len(Y) - 2
    student_p = sps.ttest_ind(X, Y, equal_var=True).pvalue
    assert float(default.filter(regex="p.val").iloc[0, 0]) == pytest.approx(student_p, rel=1e-10)
    assert abs(p - student_p) > 1e-3


def test_compare_inits_on_fixed_numbers():
    # B's rows listed in a different seed order: pairing must go by seed, not by row.
    order = [3, 0, 4, 1, 2]
    df = tidy(X, Y[order], seeds_b=[SEEDS[i] for i in order])
    row = compare_inits(df, "A", "B", n_resamples=2000).iloc[0]
    ref = sps.ttest_ind(X, Y, equal_var=False)
    assert row["welch_p"] == pytest.approx(ref.pvalue, rel=1e-10)
    paired = sps.ttest_rel(X, Y)
    assert row["paired_t"] == pytest.approx(paired.statistic, rel=1e-10)
    assert row["paired_p"] == pytest.approx(paired.pvalue, rel=1e-10)
    assert row["paired_n"] == 5
    assert row["paired_p"] != pytest.approx(sps.ttest_rel(X, Y[order]).pvalue, rel=1e-3)
    # SD with ddof=1, never ddof=0.
    assert row["sd_a"] == pytest.approx(np.std(X, ddof=1), rel=1e-12)
    assert row["sd_b"] == pytest.approx(np.std(Y, ddof=1), rel=1e-12)
    assert row["sd_a"] != pytest.approx(np.std(X, ddof=0), rel=1e-6)
    # Δ absolute and relative (the paper's (a/b - 1) * 100).
    assert row["delta_abs"] == pytest.approx(X.mean() - Y.mean(), abs=1e-15)
    assert row["delta_rel_pct"] == pytest.approx((X.mean() / Y.mean() - 1) * 100, rel=1e-12)
    assert row["ci_low"] <= row["delta_abs"] <= row["ci_high"]


def test_unpaired_seeds_give_nan():
    row = compare_inits(tidy(X, Y, seeds_b=[42, 1, 2, 3, 99]), "A", "B", n_resamples=200).iloc[0]
    assert np.isnan(row["paired_t"]) and np.isnan(row["paired_p"]) and row["paired_n"] == 0
    assert not np.isnan(row["welch_p"])


def test_relative_delta_formula():
    assert relative_delta_pct(1.1, 1.0) == pytest.approx(10.0)
    assert relative_delta_pct(0.9, 1.2) == pytest.approx(-25.0)


def test_bootstrap_ci_contains_difference_and_is_reproducible():
    observed = X.mean() - Y.mean()
    lo, hi = bootstrap_mean_diff_ci(X, Y, seed=7)
    assert lo < observed < hi
    assert (lo, hi) == bootstrap_mean_diff_ci(X, Y, seed=7)
    assert (lo, hi) != bootstrap_mean_diff_ci(X, Y, seed=8)
    lo90, hi90 = bootstrap_mean_diff_ci(X, Y, seed=7, confidence=0.90)
    assert lo < lo90 < hi90 < hi


def test_holm_and_bh_against_hand_values():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted p * (m - rank), running max.  BH: sorted p * m / rank, running min from the top.
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust_pvalues([0.5, 0.6], "holm"), [1.0, 1.0])
    out = adjust_pvalues([0.01, np.nan, 0.04], "holm")
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)
    with pytest.raises(ConfigError, match="bonferoni"):
        adjust_pvalues(p, "bonferoni")


def test_corrections_span_the_family():
    df = pd.concat([tidy(X, Y, task="t1"), tidy(X + 0.05, Y, task="t2"), tidy(X, Y[::-1] - 0.02, task="t3")])
    c = compare_inits(df, "A", "B", n_resamples=200)
    assert len(c) == 3
    np.testing.assert_allclose(c["p_holm"], adjust_pvalues(c["welch_p"], "holm"))
    np.testing.assert_allclose(c["p_bh"], adjust_pvalues(c["welch_p"], "bh"))
    assert (c["p_holm"] >= c["welch_p"]).all() and (c["p_holm"] > c["welch_p"]).any()


def test_format_p():
    assert [format_p(p) for p in (0.84424, 0.000976, 0.13257, 3e-6)] == ["0.844", "0.0010", "0.133", "<0.0001"]


# --------------------------------------------------------------------------------------------- bad input
def test_missing_column_is_named():
    with pytest.raises(DataError, match="seed"):
        compare_inits(tidy(X, Y).drop(columns="seed"), "A", "B")
    with pytest.raises(DataError, match="protocol"):
        compare_inits(tidy(X, Y).drop(columns="protocol"), "A", "B")


def test_group_with_one_run_is_an_error():
    with pytest.raises(DataError, match="'B' has 1 run"):
        compare_inits(tidy(X, Y[:1]), "A", "B")


def test_duplicate_seeds_and_absent_inits_are_errors():
    with pytest.raises(DataError, match="share seed"):
        compare_inits(tidy(X, Y, seeds_a=[1, 1, 2, 3, 4]), "A", "B")
    with pytest.raises(DataError, match="both 'A' and 'C'"):
        compare_inits(tidy(X, Y), "A", "C")
    with pytest.raises(ConfigError):
        compare_inits(tidy(X, Y), "A", "A")
    with pytest.raises(DataError, match="value"):
        compare_inits(tidy(X, Y).assign(value="high"), "A", "B")


def test_mcnemar_exact_counts_discordant_pairs():
    from rtl_core.analysis.stats import mcnemar_exact

    a = [True] * 10 + [True, False] * 5
    b = [False] * 10 + [True, False] * 5
    assert mcnemar_exact(a, b) == (10, 0, pytest.approx(2 * 0.5**10))
    assert mcnemar_exact(b, b) == (0, 0, 1.0)
    only_a, only_b, p = mcnemar_exact([True, False, True], [False, True, True])
    assert (only_a, only_b) == (1, 1) and p == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact([True], [True, False])


# --------------------------------------------------------------------------------------------- replicates, B vs A
def _replicated(means_a, means_b, d=3, seed=0) -> pd.DataFrame:
    """K encoders per init (``replicate``), each with D seeds drawn around its mean."""
    rng = np.random.default_rng(seed)
    rows = []
    for init, means in (("A", means_a), ("B", means_b)):
        for k, m in enumerate(means):
            for s in range(d):
                rows.append(
                    {
                        "protocol": "linear",
                        "task": "ct_cls",
                        "data_fraction": 1.0,
                        "metric": "accuracy",
                        "primary": True,
                        "init": init,
                        "replicate": k,
                        "seed": s,
                        "value": m + rng.normal(0, 0.01),
                    }
                )
    return pd.DataFrame(rows)


def test_compare_inits_uses_encoder_means_when_an_init_is_replicated():
    table = _replicated([0.80, 0.84, 0.88], [0.79, 0.80, 0.81])
    row = compare_inits(table, "A", "B", n_resamples=200).iloc[0]
    means = table.groupby(["init", "replicate"])["value"].mean()
    assert (row["n_a"], row["n_b"]) == (3, 3) and np.isnan(row["paired_p"])
    assert row["welch_p"] == pytest.approx(welch_ttest(means["A"], means["B"])[2])


def test_variance_components_match_the_mixed_model_on_a_balanced_design():
    """The one-way ANOVA estimates equal statsmodels' REML fit of value ~ init + (1 | encoder) when positive."""
    import statsmodels.formula.api as smf

    from rtl_core.analysis.replicates import variance_components

    table = _replicated([0.80, 0.86, 0.83, 0.90], [0.70, 0.75, 0.79, 0.72], d=4, seed=3)
    comp = variance_components(table).iloc[0]
    data = table.assign(encoder=table["init"] + table["replicate"].astype(str))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' boundary heuristic; the estimates below are interior
        fit = smf.mixedlm("value ~ init", data, groups=data["encoder"]).fit(reml=True)
    assert comp["var_encoder"] == pytest.approx(float(fit.cov_re.iloc[0, 0]), rel=1e-3)
    assert comp["var_seed"] == pytest.approx(float(fit.scale), rel=1e-3)
    assert (comp["encoders"], comp["d"], comp["replicated_inits"]) == (8, 4, "A, B") and 0 < comp["icc"] < 1


def test_directed_comparisons_read_b_vs_a_with_the_sign_of_b_minus_a():
    """Δ = B − A with A the earlier init (scratch first): a pretrained init ahead of scratch reads positive."""
    from rtl_core.analysis.stats import directed_comparisons, direction_table

    table = tidy(X, X[::-1] + 0.06).assign(primary=True).replace({"init": {"A": "scratch", "B": "ssl:ct:simclr"}})
    out = directed_comparisons(table, ["scratch", "ssl:ct:simclr"])
    assert out.iloc[0]["init_a"] == "ssl:ct:simclr" and out.iloc[0]["delta_abs"] == pytest.approx(0.06)
    shown = direction_table(out, {("ct_cls", "finetune", frozenset(("scratch", "ssl:ct:simclr"))): "Q1"})
    assert shown.iloc[0]["B vs A"] == "ssl:ct:simclr vs scratch" and shown.iloc[0]["Δ = B − A"].startswith("+")
    assert shown.iloc[0]["judged in"] == "Q1" and "p Welch (uncorrected)" in shown.columns
    assert direction_table(out).iloc[0]["judged in"] == "exploratory"
