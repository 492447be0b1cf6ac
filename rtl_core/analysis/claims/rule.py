"""The verdict rule, one per row (claim × task × protocol × metric), within each claim's declared family.

:data:`RULE_SUMMARY` is the rule in a few sentences (the index page and 90 · Summary print it); docs/claims.md,
"The rule", explains it step by step. :func:`judge_family` applies it to one claim's rows; :func:`verdict` words
the verdict of one tested row.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rtl_core.analysis.claims.model import POWER, Claim
from rtl_core.analysis.replicates import OUTLIER_Z
from rtl_core.analysis.stats import (
    adjust_pvalues,
    format_p,
    min_detectable_d,
    noninferiority_welch,
    pooled_sd,
    tost_welch,
    units_needed,
)
from rtl_core.config import Margin

#: The rule in a few sentences: the one text the reports print (docs/claims.md explains each step).
RULE_SUMMARY = (
    "One rule for every verdict, a study's own questions and the paper's claims alike, on our runs and on the "
    "paper's. Each row compares arm A with arm B by Welch's t-test on the arms' units: an arm with K ≥ 2 "
    "pretraining runs enters as its K encoder means, else as its downstream runs; the scope is 'pretraining' when "
    "every pretrained arm is replicated, else 'checkpoints' (the verdict is about these checkpoints). Holm corrects"
    " over every cell the question declares, run or not (a cell without a test counts as p = 1). No-difference "
    "questions: TOST first, so a Δ within the declared margin is 'equivalent' even when a difference test is also "
    "significant; else a significant difference 'contradicts'. As-good-or-better questions: a non-inferiority test "
    "at the margin ('supports'), 'contradicts' when B is significantly ahead. Better-than questions: Holm p < α and"
    " the sign of Δ give 'supports' or 'contradicts'. 'Inconclusive': none of these; the row gives the smallest "
    f"effect it could detect and the K × D (or runs) that give {POWER * 100:.0f} % power at the declared margin. "
    "Inconclusive is not 'no difference'. 'Withheld': no test is defined, an arm's encoder did not beat random init"
    " (kNN sanity check), or the cell is degenerate (scratch within the pretrained arms' spread). 'Not run': the "
    f"study lacks an arm, task or protocol. Flagged, never dropped: runs more than {OUTLIER_Z:g} robust SDs from "
    "their arm, and a question, margin or family changed after the runs."
)

_TESTS = {"a_better": "two_sided", "b_better": "two_sided", "no_difference": "tost", "non_inferior": "one_sided"}


def margin_fields(claim: Claim, metric: str | None, mean_b: float, margin_pct: float) -> dict[str, Any]:
    """The declared margin of a cell in absolute units and as % of arm B's mean, with its rationale."""
    margin = claim.margin_for(metric) or Margin(
        value=margin_pct, kind="relative", rationale="the engine's default margin (analysis.equivalence_margin)"
    )
    scale = abs(mean_b) if np.isfinite(mean_b) else math.nan
    if margin.kind == "relative":
        absolute, relative = margin.value / 100 * scale, margin.value
    else:
        absolute, relative = margin.value, margin.value / scale * 100 if scale else math.nan
    return {
        "margin_kind": margin.kind,
        "margin_abs": absolute,
        "margin_rel_pct": relative,
        "margin_rationale": margin.rationale,
    }


def _holm_padded(values: list[float], m: int) -> list[float]:
    """Holm over a family of ``m``: ``values`` (NaN = no test) padded with p = 1 for every cell without a test."""
    p = [v if v is not None and np.isfinite(v) else 1.0 for v in values]
    adjusted = adjust_pvalues(p + [1.0] * (m - len(p)), "holm")[: len(p)]
    return [float(a) if v is not None and np.isfinite(v) else math.nan for a, v in zip(adjusted, values)]


def judge_family(rows: list[dict[str, Any]], claim: Claim, alpha: float, margin_pct: float) -> None:
    """Fill ``p_holm``, ``p_tost(_holm)``, ``p_noninf(_holm)``, ``mde_rel_pct``, ``seeds_needed``/``k_needed``,
    ``verdict`` and ``reason`` of one claim's rows in place (rows carry :func:`compare_units`' output, their
    margin, and ``verdict``/``reason`` where set aside already). The family is every declared cell: m = len(rows)."""
    expected, m = claim.expected, len(rows)
    for r in rows:
        for key in ("p_tost", "p_tost_holm", "p_noninf", "p_noninf_holm", "seeds_needed", "k_needed"):
            r.setdefault(key, None)
        r.setdefault("p_holm", math.nan)
        r.setdefault("mde_rel_pct", math.nan)
        r["family_size"] = m
    tested = [r for r in rows if r.get("verdict") in (None, "withheld") and np.isfinite(r.get("p_welch", math.nan))]
    if not tested:
        for r in rows:
            if r.get("verdict") is None:
                r["verdict"], r["reason"] = "withheld", r.get("undefined") or "no test is defined"
        return
    holm = _holm_padded([r["p_welch"] for r in tested], m)
    extra = {"no_difference": ("p_tost", tost_welch), "non_inferior": ("p_noninf", noninferiority_welch)}
    if expected in extra:
        key, test = extra[expected]
        for r in tested:
            r[key] = test(r["_a"], r["_b"], r["margin_abs"]) if r["margin_abs"] > 0 else math.nan
        for r, p in zip(tested, _holm_padded([r[key] for r in tested], m)):
            r[key + "_holm"] = p if np.isfinite(p) else None
    level = alpha / m  # Holm's first step: what the smallest p must beat
    for r, p in zip(tested, holm):
        r["p_holm"] = p
        sd = pooled_sd(r["_a"], r["_b"])
        d_row = min_detectable_d(r["n_a"], r["n_b"], level, POWER)
        r["mde_rel_pct"] = d_row * sd / abs(r["mean_b"]) * 100 if r["mean_b"] else math.nan
        needed = units_needed(r["margin_abs"] / sd, level, POWER, _TESTS[expected]) if sd > 0 else None
        r["k_needed" if max(r["k_a"], r["k_b"]) >= 2 else "seeds_needed"] = needed
        if r.get("verdict") == "withheld":
            continue
        r["verdict"], r["reason"] = verdict(r, expected, alpha, m)
    for r in rows:
        if r.get("verdict") is None:
            r["verdict"], r["reason"] = "withheld", r.get("undefined") or "no test is defined"


def _ahead(r: dict[str, Any]) -> str:
    d = r["delta_abs"]
    return f"{r['arm_a']} ahead" if d > 0 else f"{r['arm_b']} ahead" if d < 0 else "no difference in means"


def verdict(r: dict[str, Any], expected: str, alpha: float, m: int) -> tuple[str, str]:
    """The verdict of one tested row and why (numbers with the arm ahead, Δ, both p where two tests ran)."""
    family = f"Holm over {m} declared cell{'s' if m > 1 else ''}"
    fp = lambda p: format_p(p, alpha)  # noqa: E731
    sign = f"{_ahead(r)} (Δ {r['delta_abs']:+.4g}, {r['delta_rel_pct']:+.2f} %)"
    margin = f"±{r['margin_rel_pct']:.3g} % of B ({r['margin_abs']:.4g})"
    diff = r["p_holm"] < alpha
    scope = _pseudo_replication(r, alpha)
    if expected == "no_difference":
        tost = r["p_tost_holm"]
        if tost is not None and tost < alpha:
            also = f" < {alpha} as well: a real difference, inside the margin" if diff else f" ≥ {alpha}"
            return "equivalent", (
                f"{sign} lies within {margin}: TOST p_holm {fp(tost)} < {alpha}; difference test p_holm "
                f"{fp(r['p_holm'])}{also} ({family}){scope}"
            )
        if diff:
            return "contradicts", (
                f"significant difference, {sign}, p_holm {fp(r['p_holm'])} < {alpha}, and equivalence within "
                f"{margin} not shown (TOST p_holm {fp(tost)}) ({family}){scope}"
            )
        tail = f"; equivalence within {margin} not shown (TOST p_holm {fp(tost)})"
        return "inconclusive", _inconclusive(r, sign, alpha, m, family, tail) + scope
    if expected == "non_inferior":
        ni = r["p_noninf_holm"]
        if ni is not None and ni < alpha:
            also = f"; and ahead (difference p_holm {fp(r['p_holm'])})" if diff and r["delta_abs"] > 0 else ""
            return "supports", (
                f"{r['arm_a']} not worse than {r['arm_b']} by more than {margin}: non-inferiority p_holm {fp(ni)} < "
                f"{alpha}, {sign}{also} ({family}){scope}"
            )
        if diff and r["delta_abs"] < 0:
            return "contradicts", (
                f"{sign}, p_holm {fp(r['p_holm'])} < {alpha}, and non-inferiority within {margin} not shown "
                f"(p_holm {fp(ni)}) ({family}){scope}"
            )
        tail = f"; non-inferiority within {margin} not shown (p_holm {fp(ni)})"
        return "inconclusive", _inconclusive(r, sign, alpha, m, family, tail) + scope
    if diff:
        wanted = r["delta_abs"] > 0 if expected == "a_better" else r["delta_abs"] < 0
        reason = f"{sign}, p_holm {fp(r['p_holm'])} < {alpha} ({family}){scope}"
        return ("supports" if wanted else "contradicts"), reason
    return "inconclusive", _inconclusive(r, sign, alpha, m, family, "") + scope


def _inconclusive(r: dict[str, Any], sign: str, alpha: float, m: int, family: str, tail: str) -> str:
    encoders = max(r["k_a"], r["k_b"]) >= 2
    units = f"K × D = {r['k_a']}/{r['k_b']} × {r['d']}" if encoders else f"{r['n_a']} vs {r['n_b']} runs"
    needed = r["k_needed"] if encoders else r["seeds_needed"]
    unit = f"encoders per arm (at D = {r['d']})" if encoders else "runs per arm"
    plan = (
        f"{needed} {unit} would give 80 % power at the declared margin ±{r['margin_rel_pct']:.3g} %"
        if needed
        else "no margin to plan for"
    )
    return (
        f"{sign}, p_holm {format_p(r['p_holm'], alpha)} ≥ {alpha} ({family}){tail}; with {units} only "
        f"|Δ| ≥ {r['mde_rel_pct']:.1f} % is detectable at 80 % power (α/{m}); {plan}"
    )


def _pseudo_replication(r: dict[str, Any], alpha: float) -> str:
    """Where the run-level test (every run as if independent) and the pretraining-level one disagree, say so."""
    if max(r["k_a"], r["k_b"]) < 2:
        return ""
    pc, p = r.get("p_checkpoints", math.nan), r["p_welch"]
    if np.isfinite(pc) and pc < alpha <= p:
        return (
            f". Checkpoint level: the runs pooled as if independent give p {format_p(pc, alpha)} < {alpha}, but over "
            f"pretraining runs (encoder means, Welch p {format_p(p, alpha)}) the difference is not significant"
        )
    return ""
