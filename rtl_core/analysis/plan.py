"""``rtl plan``: how many pretraining runs (K) and downstream seeds (D) each declared question needs, before running.

For every cell of a question the plan takes the variance components of a pilot and finds, for each D, the
smallest K per arm that gives 80 % power at the question's *declared* margin (never at an observed Δ), at level
α / m (m = the question's declared cells: what Holm asks of the smallest p):

* ``a_better`` / ``b_better``: a two-sided difference test at a true Δ = margin;
* ``non_inferior``: the one-sided test of Δ > −margin at a true Δ = 0;
* ``no_difference``: TOST at a true Δ = 0, each one-sided test at α / m with power 1 − (1 − 0.8) / 2.

A replicated arm's unit is an encoder mean, of variance σ²_encoder + σ²_seed / D, K per arm; a fixed checkpoint
(scratch, torchvision, file) has no pretraining variance: its units are its D runs. Two replicated arms use
statsmodels' ``TTestIndPower`` (equal n, equal variance); a recipe against a fixed checkpoint uses Welch's test
(noncentral t, Welch–Satterthwaite df); two fixed arms need only D, from ``TTestIndPower`` on the runs.

**Pilot.** The study's own current runs of the two arms in that cell: σ²_seed within encoders, σ²_encoder between
them where an arm has K ≥ 2, and arm B's mean (for a relative margin). **Fallback** (documented, shown in the
``pilot`` column): where the study has no runs of the cell, the paper's runs (``paper_runs.csv``, E1/E2/E4, every
pretrained arm): the median seed SD over its 129 run groups, 0.67 % of the mean (0.0050 absolute); where the pilot
has one encoder per arm, σ²_encoder is *assumed* equal to σ²_seed (intra-class correlation 0.5) — the variance
between pretraining runs is exactly what such a pilot cannot see.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from rtl_core.analysis.claims.model import POWER, Claim
from rtl_core.analysis.replicates import components, is_fixed, with_replicate
from rtl_core.analysis.stats import units_needed

#: D options a plan lists; K is searched up to :data:`K_MAX`.
D_OPTIONS = (1, 2, 3, 4, 6, 8)
K_MAX = 500
#: One pretraining costs about this many downstream runs (docs/measurements.md, the default reproduces: 5 encoders in
#: 14.5 min and 432 runs in 31.7 min on 2 workers (2026-12-03), 9 encoders in 19.1 min and 264 runs in 11.3 min
#: (2026-12-08): ~20 and ~50 runs per encoder): the default of ``rtl plan --encoder-cost``, used only to mark the
#: cheapest design.
ENCODER_COST_RUNS = 20.0
_TESTS = {"a_better": "two_sided", "b_better": "two_sided", "no_difference": "tost", "non_inferior": "one_sided"}


@dataclass(frozen=True)
class Pilot:
    """Variance components and arm B's mean of one cell, and where they come from."""

    var_encoder: float
    var_seed: float
    mean_b: float
    source: str


@functools.lru_cache(maxsize=1)
def paper_fallback() -> tuple[float, float]:
    """(median relative seed SD, median absolute seed SD) over the paper's pretrained run groups (E1/E2/E4)."""
    from rtl_core.analysis.claims.tables import paper_table

    d = paper_table()
    d = d[(d["init"] != "Scratch") & d["experiment"].isin(["E1", "E2", "E4"])]
    g = d.groupby(["experiment", "task", "data_fraction", "metric", "init"])["value"].agg(["mean", "std"])
    return float((g["std"] / g["mean"]).median()), float(g["std"].median())


def pilot_for(runs_a: pd.DataFrame, runs_b: pd.DataFrame, relative: bool) -> Pilot:
    """The pilot of one cell from its runs (each arm's ``init``, ``replicate``, ``seed``, ``value``), else the
    paper-derived fallback; σ²_encoder is assumed = σ²_seed when no arm has K ≥ 2."""
    var_e, var_s = components([runs_a, runs_b])
    mean_b = float(runs_b["value"].mean()) if len(runs_b) else math.nan
    if np.isfinite(var_s) and var_s > 0:
        if np.isfinite(var_e):
            return Pilot(var_e, var_s, mean_b, "this study's runs")
        return Pilot(var_s, var_s, mean_b, "this study's runs (σ²_encoder assumed = σ²_seed: one encoder per arm)")
    cv, sd = paper_fallback()
    if relative:  # in units of arm B's mean: the margin's % over the SD's %
        var = (cv * 100) ** 2
        source = f"fallback: the paper's median seed SD, {cv:.2%} of the mean, ICC 0.5 assumed; units: % of B's mean"
        return Pilot(var, var, 100.0, source)
    return Pilot(sd**2, sd**2, math.nan, f"fallback: the paper's median seed SD, {sd:.4g}; ICC 0.5 assumed")


def welch_power(delta: float, var_a: float, n_a: int, var_b: float, n_b: int, alpha: float, test: str) -> float:
    """Power of Welch's test (noncentral t with Welch–Satterthwaite df) for a true difference ``delta``: two-sided
    at ``alpha``, or one-sided (``one_sided``, ``tost``: the margin as ``delta``) at ``alpha``."""
    if n_a < 2 or n_b < 2:
        return 0.0
    ua, ub = var_a / n_a, var_b / n_b
    se2 = ua + ub
    if not se2 > 0:
        return 1.0
    df = se2**2 / (ua**2 / (n_a - 1) + ub**2 / (n_b - 1))
    ncp = abs(delta) / math.sqrt(se2)
    if test == "two_sided":
        crit = sps.t.ppf(1 - alpha / 2, df)
        return float(1 - sps.nct.cdf(crit, df, ncp) + sps.nct.cdf(-crit, df, ncp))
    return float(1 - sps.nct.cdf(sps.t.ppf(1 - alpha, df), df, ncp))


def design_for(
    margin: float, pilot: Pilot, d: int, fixed: tuple[bool, bool], alpha: float, test: str, power: float = POWER
) -> int | None:
    """The smallest K per replicated arm (at D = ``d`` seeds per encoder) with ``power`` at the declared margin;
    two fixed arms: 1 when D runs per arm suffice, else ``None`` (and ``None`` past :data:`K_MAX`)."""
    target = power if test != "tost" else 1 - (1 - power) / 2
    var_unit = pilot.var_encoder + pilot.var_seed / d
    if all(fixed):
        n = units_needed(margin / math.sqrt(pilot.var_seed), alpha, power, test) if pilot.var_seed > 0 else 2
        return 1 if n is not None and d >= n else None
    if not any(fixed):
        if not var_unit > 0:
            return 2
        k = units_needed(margin / math.sqrt(var_unit), alpha, power, test)
        return k if k is not None and k <= K_MAX else None
    one_sided = "two_sided" if test == "two_sided" else "one_sided"
    for k in range(2, K_MAX + 1):
        if welch_power(margin, var_unit, k, pilot.var_seed, d, alpha, one_sided) >= target:
            return k
    return None


def plan_claim(
    claim: Claim,
    cells: Sequence[tuple[str, str, str, Pilot, float]],
    fixed: tuple[bool, bool],
    alpha: float,
    d_options: Sequence[int] = D_OPTIONS,
    encoder_cost: float = ENCODER_COST_RUNS,
    power: float = POWER,
) -> pd.DataFrame:
    """One row per D: the K the binding cell needs, the new encoders and runs of the whole question, and whether
    it is the cheapest design (encoders × ``encoder_cost`` + runs). ``cells``: (task, protocol, metric, pilot,
    margin in the pilot's units)."""
    m, test = len(claim.cells), _TESTS[claim.expected]
    rows = []
    for d in d_options:
        ks = [design_for(margin, pilot, d, fixed, alpha / m, test, power) for *_, pilot, margin in cells]
        k = None if any(x is None for x in ks) or not ks else max(ks)
        encoders = None if k is None else sum(0 if f else k for f in fixed)
        runs = None if k is None else m * sum(d if f else k * d for f in fixed)
        rows.append({"question": claim.id, "D": d, "K": k, "encoders": encoders, "runs": runs, "fixed": fixed})
    out = pd.DataFrame(rows)
    cost = out["encoders"].astype(float) * encoder_cost + out["runs"].astype(float)
    out["cheapest"] = cost.notna() & (cost == cost.min())
    return out


def plan_study(
    config,
    results: pd.DataFrame | None = None,
    d_options: Sequence[int] = D_OPTIONS,
    encoder_cost: float = ENCODER_COST_RUNS,
    power: float = POWER,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The plan of every declared question of ``config``: (designs, one row per question × D; pilots, one row per
    cell with its variance components, margin and source). ``results`` defaults to the study's current runs."""
    from rtl_core.analysis.claims.arms import arm_inits, claim_arms
    from rtl_core.analysis.claims.tables import current_results, our_table
    from rtl_core.analysis.questions import declared_claims
    from rtl_core.results import results_table

    results = current_results(config, results_table(config.study) if results is None else results)
    table = with_replicate(our_table(results)) if len(results) else pd.DataFrame(columns=["task", "init"])
    claims = declared_claims(config)
    arms = claim_arms(config, claims)
    designs, pilots = [], []
    for claim in claims:
        inits_a, inits_b = arm_inits(arms, claim.arm_a), arm_inits(arms, claim.arm_b)
        if not inits_a or not inits_b:
            continue
        fixed = (all(is_fixed(i) for i in inits_a), all(is_fixed(i) for i in inits_b))
        alpha = claim.alpha or config.analysis.alpha
        cells = []
        for cell in claim.cells:
            sel = table[(table["task"] == cell.task) & (table["protocol"] == cell.protocol)] if len(table) else table
            if len(sel):
                sel = sel[sel["metric"] == cell.metric] if cell.metric else sel[sel["primary"].astype(bool)]
            margin_spec = claim.margin_for(cell.metric)
            relative = margin_spec is None or margin_spec.kind == "relative"
            value = margin_spec.value if margin_spec else config.analysis.equivalence_margin
            pilot = pilot_for(sel[sel["init"].isin(inits_a)], sel[sel["init"].isin(inits_b)], relative)
            margin = value / 100 * abs(pilot.mean_b) if relative else value
            cells.append((cell.task, cell.protocol, cell.metric or "primary", pilot, margin))
            pilots.append(_pilot_row(claim, cell, pilot, margin, relative, value))
        designs.append(plan_claim(claim, cells, fixed, alpha, d_options, encoder_cost, power))
    return (pd.concat(designs, ignore_index=True) if designs else pd.DataFrame()), pd.DataFrame(pilots)


def _pilot_row(claim: Claim, cell, pilot: Pilot, margin: float, relative: bool, value: float) -> dict[str, Any]:
    return {
        "question": claim.id,
        "arm_a": claim.arm_a,
        "arm_b": claim.arm_b,
        "task": cell.task,
        "protocol": cell.protocol,
        "metric": cell.metric or "primary",
        "expectation": claim.expected,
        "margin": f"±{value:g} %" if relative else f"±{value:g}",
        "margin_abs": margin,
        "sd_encoder": math.sqrt(pilot.var_encoder),
        "sd_seed": math.sqrt(pilot.var_seed),
        "pilot": pilot.source,
    }


def format_plan(designs: pd.DataFrame, pilots: pd.DataFrame, power: float = POWER) -> str:
    """The plan as text: per question, its cells' pilots (cells with the same pilot on one line) and a K × D table
    (``*`` = the cheapest design)."""
    if designs.empty:
        return "no declared question has both arms in this study (see `rtl claims` for what to add)"
    lines = []
    for qid, part in designs.groupby("question", sort=False):
        cells = pilots[pilots["question"] == qid]
        first = cells.iloc[0]
        c_a, c_b = first["arm_a"], first["arm_b"]
        lines.append(
            f"{qid} ({first['expectation']}, margin {first['margin']}, {len(cells)} declared cell(s)), "
            f"{power:.0%} power at the margin:"
        )
        keys = ["sd_encoder", "sd_seed", "margin_abs", "pilot"]
        for values, group in cells.groupby(keys, sort=False):
            sd_e, sd_s, margin, source = values
            where = ", ".join(f"{c.task} · {c.protocol} · {c.metric}" for c in group.itertuples())
            lines.append(f"  {where}: σ_encoder {sd_e:.4g}, σ_seed {sd_s:.4g}, margin {margin:.4g} ({source})")
        fixed = [arm for arm, f in zip((f"A ({c_a})", f"B ({c_b})"), part.iloc[0]["fixed"]) if f]
        if fixed:
            lines.append(
                f"  {' and '.join(fixed)}: fixed checkpoint(s), nothing to pretrain; evaluated with D seeds as well"
            )
        for r in part.itertuples():
            if r.K is None or (isinstance(r.K, float) and math.isnan(r.K)):
                lines.append(f"    D = {r.D}: not reachable with K ≤ {K_MAX}")
                continue
            mark = "  *" if r.cheapest else ""
            lines.append(
                f"    D = {r.D}: K = {int(r.K)} per replicated arm: {int(r.encoders)} encoder(s) to pretrain, "
                f"{int(r.runs)} runs{mark}"
            )
    lines.append("* = cheapest (one pretraining weighted as --encoder-cost runs)")
    return "\n".join(lines)
