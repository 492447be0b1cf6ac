"""Statistics of downstream results, as in Jonske et al. (CMPB 2025) plus what the paper left out.

Input is a tidy results table, one row per run and metric, with at least the columns ``task``, ``protocol`` (or
``experiment``), ``data_fraction``, ``init``, ``seed``, ``metric`` and ``value``
(see :func:`rtl_core.analysis.paper_reference.load_paper_runs` for the paper's own runs).

For each group (by default protocol/task/data_fraction/metric) :func:`compare_inits` compares two inits:

* mean and SD (``ddof=1``) of each; Δ absolute (``mean_a - mean_b``) and relative (``(mean_a / mean_b - 1) * 100``,
  the paper's "Δ %");
* Welch's t-test exactly as the paper: ``pingouin.ttest(a, b, correction=True)``. Pingouin's default
  ``correction='auto'`` applies Welch only when the sample sizes differ, so with the paper's 4-vs-4 runs it would give
  Student's t-test;
* the paired t-test, pairing runs by seed (NaN when the two inits' seeds are not the same set);
* a seeded percentile-bootstrap CI of the mean difference (each init's runs resampled on their own);
* Holm and Benjamini–Hochberg adjusted Welch p-values across the family of comparisons in that call.

A table may carry ``replicate`` (the pretraining run an init's encoder came from): an init with several replicates
in a group enters its tests as its encoder means, the unit of replication (:mod:`rtl_core.analysis.replicates`), and
has no paired test. :func:`directed_comparisons` / :func:`direction_table` show every pair as *B vs A* with
Δ = B − A and say that their p-values are uncorrected. Equivalence and non-inferiority (:func:`tost_welch`,
:func:`noninferiority_welch`) and the units a design needs (:func:`units_needed`) serve the claims engine.

:func:`paper_table` formats the result like the paper's tables (mean ± SD, Δ %, p).

On the paper's runs this reproduces the reference README's checks (RadNet-1.28M vs ImageNet on RadNet-CTBR: E1
+0.122 %, p = 0.844; E4 linear +2.141 %, p = 0.0010; E2 1 % +1.511 %, p = 0.133). The abstract's headline numbers
(+0.44 %, p = 0.541; +2.07 %, p = 0.025; +1.63 %, p = 0.114) cannot be reproduced from runs: they compare ImageNet
with an interpolated "RadNet-1.28M (UB-adjusted)" population, not with runs that exist in the authors' logs.

Example::

    df = load_paper_runs()
    cmp = compare_inits(df, "RadNet-1.28M", "ImageNet")
    print(paper_table(cmp))
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import pingouin as pg
from scipy import stats as sps

from rtl_core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("task", "data_fraction", "init", "seed", "metric", "value")
DEFAULT_BY = ("protocol", "task", "data_fraction", "metric")
_P_METHODS = {"holm": "holm", "bh": "fdr_bh", "fdr_bh": "fdr_bh"}


# --------------------------------------------------------------------------------------------- single tests
def relative_delta_pct(mean_a: float, mean_b: float) -> float:
    """The paper's relative Δ of ``a`` over ``b`` in percent: ``(mean_a / mean_b - 1) * 100``."""
    return (mean_a / mean_b - 1.0) * 100.0


def _pg_col(res: pd.DataFrame, *names: str) -> float:
    # pingouin >= 0.6 names the p-value column "p_val", older releases "p-val".
    for name in names:
        if name in res.columns:
            return float(res[name].iloc[0])
    raise KeyError(f"pingouin result has none of {names}: {list(res.columns)}")


def welch_ttest(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test, ``pingouin.ttest(a, b, correction=True)``; returns ``(t, dof, p)``."""
    res = pg.ttest(np.asarray(a, float), np.asarray(b, float), correction=True)
    return _pg_col(res, "T"), _pg_col(res, "dof"), _pg_col(res, "p_val", "p-val")


def paired_ttest(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """Paired t-test of two Series indexed by seed; ``(t, p)``, or ``(nan, nan)`` when the seed sets differ."""
    if set(a.index) != set(b.index) or len(a) < 2:
        return float("nan"), float("nan")
    seeds = sorted(a.index)
    res = pg.ttest(a.loc[seeds].to_numpy(float), b.loc[seeds].to_numpy(float), paired=True)
    return _pg_col(res, "T"), _pg_col(res, "p_val", "p-val")


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int, float]:
    """McNemar's exact test of two classifiers on the same test images (McNemar 1947; the binomial form for
    discordant pairs). Returns ``(right only a, right only b, two-sided p)``."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs both classifiers on the same images, got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = sps.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return only_a, only_b, float(p)


def bootstrap_mean_diff_ci(
    a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(a) - mean(b)`` (``scipy.stats.bootstrap``), each sample resampled
    independently with a generator seeded by ``seed``. With 4 runs per init the CI is coarse."""

    def diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    res = sps.bootstrap(
        (np.asarray(a, float), np.asarray(b, float)),
        diff,
        vectorized=True,
        paired=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def adjust_pvalues(pvals: Sequence[float], method: str = "holm") -> np.ndarray:
    """Holm (``"holm"``) or Benjamini–Hochberg (``"bh"``) adjusted p-values via ``pingouin.multicomp``; NaNs are
    left out of the family and stay NaN."""
    if method not in _P_METHODS:
        raise ConfigError(f"p-value adjustment method '{method}' is unknown; use one of {sorted(_P_METHODS)}.")
    p = np.asarray(pvals, float)
    if p.size == 0 or np.isnan(p).all():
        return p.copy()
    _, adj = pg.multicomp(p, method=_P_METHODS[method])
    return np.asarray(adj, float)


# --------------------------------------------------------------------------------------------- tables
def _check_table(df: pd.DataFrame, by: Sequence[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if "protocol" not in df.columns and "experiment" not in df.columns:
        missing.append("protocol (or experiment)")
    missing += [c for c in by if c not in df.columns and c not in missing]
    if missing:
        raise DataError(
            f"results table lacks column(s) {missing}; it needs one row per run and metric with columns "
            f"{list(REQUIRED_COLUMNS)} and 'protocol' or 'experiment'."
        )
    value = pd.to_numeric(df["value"], errors="coerce")
    if value.isna().any():
        raise DataError(f"results table: column 'value' has {int(value.isna().sum())} empty or non-numeric entries.")
    nan_keys = [c for c in [*by, "init", "seed"] if df[c].isna().any()]
    if nan_keys:
        raise DataError(f"results table: column(s) {nan_keys} have empty entries; every run needs them.")


def _default_by(df: pd.DataFrame) -> list[str]:
    first = "protocol" if "protocol" in df.columns else "experiment"
    return [first, *DEFAULT_BY[1:]]


def summarize(df: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Per group and init: number of runs, mean and SD (``ddof=1``) of ``value``."""
    by = list(by) if by is not None else _default_by(df)
    _check_table(df, by)
    g = df.assign(value=pd.to_numeric(df["value"])).groupby([*by, "init"], sort=False)["value"]
    return g.agg(n="count", mean="mean", sd=lambda v: v.std(ddof=1)).reset_index()


def _runs(group: pd.DataFrame, init: str, key: dict[str, object]) -> pd.Series:
    part = group.loc[group["init"] == init]
    if "replicate" in part.columns and part["replicate"].nunique() > 1:
        # several pretraining runs of this init: its units are their encoder means (the unit of replication)
        twice = part.duplicated(["replicate", "seed"])
        if twice.any():
            raise DataError(f"group {key}, init '{init}': runs share replicate and seed; drop the duplicated runs.")
        return part.groupby("replicate")["value"].mean().astype(float).rename_axis("seed")
    runs = part.set_index("seed")["value"].astype(float)
    if runs.index.duplicated().any():
        dup = sorted(set(runs.index[runs.index.duplicated()]))
        raise DataError(
            f"group {key}, init '{init}': several runs share seed(s) {dup}. Add the distinguishing column to `by` "
            "or drop the duplicated runs (for the paper's runs, load_paper_runs drops the E6/E8 copies)."
        )
    if len(runs) < 2:
        raise DataError(f"group {key}, init '{init}' has {len(runs)} run(s); a t-test needs at least 2 per init.")
    return runs


def compare_inits(
    df: pd.DataFrame,
    a: str,
    b: str,
    by: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> pd.DataFrame:
    """Compare init ``a`` with init ``b`` in every group of ``by`` (default protocol/task/data_fraction/metric).

    Returns one row per group in which both inits have runs, with the ``by`` columns and ``init_a, init_b, n_a, n_b,
    mean_a, sd_a, mean_b, sd_b, delta_abs, delta_rel_pct, welch_t, welch_dof, welch_p, paired_n, paired_t, paired_p,
    ci_low, ci_high (percentile bootstrap), welch_ci_low, welch_ci_high, p_holm, p_bh`` (plus ``experiment`` listing
    the source experiments when that column exists and
    is not in ``by``). Holm and BH adjust ``welch_p`` across all rows returned. Groups holding only one of the two
    inits are skipped; a group with fewer than 2 runs of an init raises :class:`DataError`.
    """
    if a == b:
        raise ConfigError(f"compare_inits needs two different inits; got '{a}' twice.")
    by = list(by) if by is not None else _default_by(df)
    _check_table(df, by)
    data = df[df["init"].isin([a, b])].assign(value=lambda d: pd.to_numeric(d["value"]))
    rows: list[dict[str, object]] = []
    for keys, group in data.groupby(by, sort=False):
        key = dict(zip(by, keys if isinstance(keys, tuple) else (keys,)))
        if not {a, b} <= set(group["init"]):
            log.debug("skipping group %s: it lacks init '%s' or '%s'", key, a, b)
            continue
        ra, rb = _runs(group, a, key), _runs(group, b, key)
        mean_a, mean_b = float(ra.mean()), float(rb.mean())
        welch_t, welch_dof, welch_p = welch_ttest(ra, rb)
        replicated = "replicate" in group.columns and group.groupby("init")["replicate"].nunique().max() > 1
        paired_t, paired_p = (math.nan, math.nan) if replicated else paired_ttest(ra, rb)  # no seed pairs encoders
        ci_low, ci_high = bootstrap_mean_diff_ci(ra, rb, confidence=confidence, n_resamples=n_resamples, seed=seed)
        welch_low, welch_high = welch_ci(ra, rb, confidence)
        row: dict[str, object] = dict(key)
        if "experiment" in group.columns and "experiment" not in by:
            row["experiment"] = "+".join(sorted(group["experiment"].astype(str).unique()))
        row.update(
            init_a=a,
            init_b=b,
            n_a=len(ra),
            n_b=len(rb),
            mean_a=mean_a,
            sd_a=float(ra.std(ddof=1)),
            mean_b=mean_b,
            sd_b=float(rb.std(ddof=1)),
            delta_abs=mean_a - mean_b,
            delta_rel_pct=relative_delta_pct(mean_a, mean_b),
            welch_t=welch_t,
            welch_dof=welch_dof,
            welch_p=welch_p,
            paired_n=len(ra) if set(ra.index) == set(rb.index) and not replicated else 0,
            paired_t=paired_t,
            paired_p=paired_p,
            ci_low=ci_low,
            ci_high=ci_high,
            welch_ci_low=welch_low,
            welch_ci_high=welch_high,
        )
        rows.append(row)
    if not rows:
        raise DataError(
            f"no group of {by} holds runs of both '{a}' and '{b}'. Check the init names: "
            f"{sorted(df['init'].astype(str).unique())}."
        )
    out = pd.DataFrame(rows)
    out["p_holm"] = adjust_pvalues(out["welch_p"], "holm")
    out["p_bh"] = adjust_pvalues(out["welch_p"], "bh")
    return out


def compare_all(
    df: pd.DataFrame, pairs: list[tuple[str, str]] | None = None, primary_only: bool = True
) -> pd.DataFrame:
    """:func:`compare_inits` for each pair of inits (default: every pair present, in the order first seen) over
    the primary metrics of a :func:`rtl_core.results.results_table`; pairs with too few runs are skipped."""
    import itertools

    data = df[df["primary"]] if primary_only else df
    inits = list(dict.fromkeys(data["init"]))
    pairs = pairs or list(itertools.combinations(inits, 2))
    out = []
    for a, b in pairs:
        try:
            out.append(compare_inits(data, a, b))
        except DataError as exc:
            log.info("no comparison of %s with %s: %s", a, b, exc)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def format_p(p: float | None, alpha: float = 0.05) -> str:
    """p to 3 decimals, 4 below 0.01 (as the reference README), ``<0.0001`` below that.

    Rounding never moves a p-value across ``alpha``: 0.0496 prints as ``0.0496`` (not ``0.050``) and 0.0504 as
    ``0.0504``, so a printed p reads on the same side of the threshold as the test decided."""
    if p is None or np.isnan(p):
        return "n/a"
    if p < 1e-4 and alpha > 1e-4:
        return "<0.0001"
    digits = 3 if p >= 0.01 else 4
    text = f"{p:.{digits}f}"
    while (float(text) < alpha) != (p < alpha) and digits < 8:  # more digits until it reads on its side of α
        digits += 1
        text = f"{p:.{digits}f}"
    return text


# --------------------------------------------------------------------------------------------- equivalence, power
def pooled_sd(a: Sequence[float], b: Sequence[float]) -> float:
    """Pooled SD of two samples (each SD with ``ddof=1``), the scale of Cohen's d."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    dof = len(a) + len(b) - 2
    if dof <= 0:
        return float("nan")
    return float(np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / dof))


def welch_ci(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Welch (unequal-variance) t confidence interval of ``mean(a) - mean(b)`` (statsmodels ``CompareMeans``).

    Unlike a percentile bootstrap, it keeps its coverage with 4 runs per arm, and it matches the Welch test:
    the 95 % CI excludes 0 exactly when Welch's p < 0.05."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    cm = CompareMeans(DescrStatsW(np.asarray(a, float)), DescrStatsW(np.asarray(b, float)))
    low, high = cm.tconfint_diff(alpha=1 - confidence, usevar="unequal")
    return float(low), float(high)


def tost_welch(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """Two one-sided Welch t-tests (TOST, Schuirmann 1987) of ``|mean(a) - mean(b)| < margin`` (absolute units);
    returns the TOST p-value (the larger one-sided p), via ``statsmodels.stats.weightstats.ttost_ind``.
    p < α means the difference lies within ± ``margin`` (equivalence shown)."""
    from statsmodels.stats.weightstats import ttost_ind

    if not margin > 0:
        raise ConfigError(f"the equivalence margin must be positive, got {margin}.")
    p, _, _ = ttost_ind(np.asarray(a, float), np.asarray(b, float), -margin, margin, usevar="unequal")
    return float(p)


def noninferiority_welch(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """One-sided Welch t-test of non-inferiority, H0: ``mean(a) - mean(b) <= -margin`` (absolute units), via
    statsmodels' ``ttest_ind(value=-margin, alternative='larger', usevar='unequal')``. p < α: ``a`` is shown to be
    no worse than ``b`` by more than ``margin``."""
    from statsmodels.stats.weightstats import ttest_ind

    if not margin > 0:
        raise ConfigError(f"the non-inferiority margin must be positive, got {margin}.")
    a, b = np.asarray(a, float), np.asarray(b, float)
    _, p, _ = ttest_ind(a, b, value=-margin, alternative="larger", usevar="unequal")
    return float(p)


def units_needed(
    effect_d: float, alpha: float, power: float = 0.8, test: Literal["two_sided", "one_sided", "tost"] = "two_sided"
) -> int | None:
    """Units per arm (runs, or encoders when the unit is an encoder mean) for ``power`` at a standardised effect
    ``effect_d`` (the declared margin / SD of a unit), statsmodels' ``TTestIndPower``: ``two_sided`` a difference
    test at ``alpha``; ``one_sided`` non-inferiority at a true difference of 0; ``tost`` equivalence at a true
    difference of 0, each one-sided test at ``alpha`` with power 1 − (1 − ``power``) / 2 (Chow, Shao & Wang 2008)."""
    if test == "two_sided":
        return runs_needed(effect_d, alpha, power)
    import warnings

    from statsmodels.stats.power import TTestIndPower

    if not np.isfinite(effect_d) or abs(effect_d) < 1e-12:
        return None
    target = power if test == "one_sided" else 1 - (1 - power) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            n = float(
                np.squeeze(
                    TTestIndPower().solve_power(
                        effect_size=abs(effect_d), alpha=alpha, power=target, ratio=1.0, alternative="larger"
                    )
                )
            )
        except (ValueError, RuntimeError):
            n = math.nan
    if not np.isfinite(n):
        n = 2 * ((sps.norm.ppf(1 - alpha) + sps.norm.ppf(target)) / abs(effect_d)) ** 2
    return max(2, int(np.ceil(n)))


def min_detectable_d(n_a: int, n_b: int, alpha: float, power: float = 0.8) -> float:
    """Smallest standardised effect (Cohen's d) a two-sided two-sample t-test with ``n_a`` and ``n_b`` runs detects
    with ``power`` at level ``alpha`` (``statsmodels.stats.power.TTestIndPower``)."""
    from statsmodels.stats.power import TTestIndPower

    return float(TTestIndPower().solve_power(nobs1=n_a, ratio=n_b / n_a, alpha=alpha, power=power))


def runs_needed(effect_d: float, alpha: float, power: float = 0.8) -> int | None:
    """Runs per arm that detect a standardised effect ``effect_d`` with ``power`` at level ``alpha`` (two-sided,
    equal arms; statsmodels' ``TTestIndPower``), rounded up; ``None`` when there is no effect to detect. Where the
    solver gives up (tiny effects need thousands of runs) the normal approximation ``2 (z₁₋α/₂ + z_power)² / d²``
    is used."""
    import warnings

    from statsmodels.stats.power import TTestIndPower

    if not np.isfinite(effect_d) or abs(effect_d) < 1e-12:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            n = float(
                np.squeeze(TTestIndPower().solve_power(effect_size=abs(effect_d), alpha=alpha, power=power, ratio=1.0))
            )
        except (ValueError, RuntimeError):
            n = math.nan
    if not np.isfinite(n):
        n = 2 * ((sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) / abs(effect_d)) ** 2
    return max(2, int(np.ceil(n)))


def paper_table(comparisons: pd.DataFrame, *, digits: int = 5, delta_digits: int = 3) -> pd.DataFrame:
    """Format :func:`compare_inits` output like the paper: ``mean ± SD`` per init, ``Δ (%)`` and Welch ``p``
    (plus Holm/BH-adjusted p). Columns are named after the two inits when the table holds one pair of inits."""
    need = ["init_a", "init_b", "mean_a", "sd_a", "mean_b", "sd_b", "delta_rel_pct", "welch_p", "p_holm", "p_bh"]
    missing = [c for c in need if c not in comparisons.columns]
    if missing:
        raise DataError(f"paper_table needs the output of compare_inits; column(s) {missing} are missing.")
    stat_cols = set(need) | {
        "n_a",
        "n_b",
        "delta_abs",
        "welch_t",
        "welch_dof",
        "paired_n",
        "paired_t",
        "paired_p",
        "ci_low",
        "ci_high",
        "welch_ci_low",
        "welch_ci_high",
    }
    keys = [c for c in comparisons.columns if c not in stat_cols]
    pairs = comparisons[["init_a", "init_b"]].drop_duplicates()
    if len(pairs) == 1:
        name_a, name_b = pairs.iloc[0]
    else:
        name_a, name_b = "A", "B"
        keys += ["init_a", "init_b"]

    def pm(m: pd.Series, s: pd.Series) -> list[str]:
        return [f"{x:.{digits}f} ± {y:.{digits}f}" for x, y in zip(m, s)]

    out = comparisons[keys].copy()
    # SDs are sample SDs (ddof=1).
    out[f"{name_a}"] = pm(comparisons["mean_a"], comparisons["sd_a"])
    out[f"{name_b}"] = pm(comparisons["mean_b"], comparisons["sd_b"])
    out["Δ (%)"] = [f"{d:+.{delta_digits}f} %" for d in comparisons["delta_rel_pct"]]
    out["p (Welch)"] = [format_p(p) for p in comparisons["welch_p"]]
    out["p (Holm)"] = [format_p(p) for p in comparisons["p_holm"]]
    out["p (BH)"] = [format_p(p) for p in comparisons["p_bh"]]
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------- B vs A
def directed_comparisons(df: pd.DataFrame, order: Sequence[str] = ()) -> pd.DataFrame:
    """Every pair of inits on the primary metrics as *B vs A*: A is the earlier init of ``order`` (the reference,
    ``scratch`` first in a study's ``evaluate.inits``), B the later, and :func:`compare_inits` runs as ``(B, A)``,
    so ``delta_abs`` = B − A and ``delta_rel_pct`` = (B / A − 1) · 100 read with their sign."""
    data = df[df["primary"].astype(bool)] if "primary" in df.columns else df
    present = list(dict.fromkeys(data["init"]))
    inits = [i for i in order if i in present] + [i for i in present if i not in order]
    pairs = [(b, a) for i, a in enumerate(inits) for b in inits[i + 1 :]]
    return compare_all(data, pairs, primary_only=False) if pairs else pd.DataFrame()


def direction_table(
    comparisons: pd.DataFrame, judged: Mapping[tuple[str, str, frozenset], str] | None = None, digits: int = 4
) -> pd.DataFrame:
    """:func:`directed_comparisons` as a reader needs it: ``B vs A``, both means, Δ = B − A (absolute and % of A),
    Welch's CI of Δ and the *uncorrected* Welch p; ``judged in`` names the declared questions whose family holds
    the comparison (``judged``: (task, protocol, {A, B}) → ids; Holm there, `rtl claims`), else ``exploratory``."""
    judged = judged or {}

    def pm(m: float, sd: float, n: int) -> str:
        return f"{m:.{digits}f} ± {sd:.{digits}f} ({n})"

    c = comparisons
    proto = c["protocol"] if "protocol" in c.columns else c.get("experiment", pd.Series([""] * len(c)))
    return pd.DataFrame(
        {
            "protocol": proto,
            "task": c["task"],
            "B vs A": [f"{b} vs {a}" for b, a in zip(c["init_a"], c["init_b"])],
            "B mean ± SD (n)": [pm(*v) for v in zip(c["mean_a"], c["sd_a"], c["n_a"])],
            "A mean ± SD (n)": [pm(*v) for v in zip(c["mean_b"], c["sd_b"], c["n_b"])],
            "Δ = B − A": [f"{d:+.{digits}f}" for d in c["delta_abs"]],
            "Δ % of A": [f"{d:+.2f} %" for d in c["delta_rel_pct"]],
            "95 % CI of Δ (Welch)": [
                f"[{lo:+.{digits}f}, {hi:+.{digits}f}]" for lo, hi in zip(c["welch_ci_low"], c["welch_ci_high"])
            ],
            "p Welch (uncorrected)": [format_p(p) for p in c["welch_p"]],
            "judged in": [
                judged.get((t, p, frozenset((a, b))), "exploratory")
                for t, p, a, b in zip(c["task"], proto, c["init_a"], c["init_b"])
            ],
        }
    )
