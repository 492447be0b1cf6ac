"""The claims as a reader sees them: the statements, the verdict table, one line per claim, the Δ figure.

Every verdict says which arm is ahead, Δ in absolute units and in % of arm B, the scope (``pretraining``: a
verdict over pretraining runs; ``checkpoints``: about these checkpoints), K × D and its flags.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rtl_core.analysis.claims.catalogue import CLAIMS, PAPER_ARMS
from rtl_core.analysis.claims.model import Claim
from rtl_core.analysis.claims.rows import is_number
from rtl_core.analysis.stats import format_p


def claim_texts(claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim: id, statement, arms, expected outcome, margin, note."""

    def margin(c: Claim) -> str:
        found = {f"{m.value:g}{' %' if m.kind == 'relative' else ''} ({m.rationale})" for m in c.margins.values()}
        return "; ".join(sorted(found)) or "analysis.equivalence_margin (relative %)"

    return pd.DataFrame(
        [
            {
                "claim": c.id,
                "statement": c.text,
                "arm A": c.arm_a,
                "arm B": c.arm_b,
                "expected": c.describe_expected(),
                "margin": margin(c),
                "paper arms": f"{PAPER_ARMS[c.arm_a]} vs {PAPER_ARMS[c.arm_b]}"
                if c.builtin and c.arm_a in PAPER_ARMS and c.arm_b in PAPER_ARMS
                else "–",
                "abstract (quoted, interpolated)": c.abstract_quoted or "–",
                "note": c.note or "–",
            }
            for c in claims
        ]
    )


#: The columns of :func:`display_table` that the index page shows (the rest is in 90 · Summary and claims.json).
COMPACT = [
    "claim",
    "task",
    "protocol",
    "metric",
    "ahead",
    "Δ = A − B",
    "Δ %",
    "CI of Δ % (Welch)",
    "p Holm (claim family)",
    "scope",
    "K × D",
    "verdict",
    "flags",
    "paper Δ %",
    "paper verdict",
]


def _ahead(r: Mapping[str, Any]) -> str | None:
    """The arm ahead (``ahead``; from the sign of Δ where an older claims.json lacks it)."""
    if isinstance(r.get("ahead"), str):
        return r["ahead"]
    d = r.get("delta_abs")
    if not is_number(d):
        return None
    return r["arm_a"] if d > 0 else r["arm_b"] if d < 0 else "neither"


def _text(v: Any) -> str:
    return v if isinstance(v, str) and v else "–"


def _pct(v: Any) -> str:
    return f"{v:+.2f} %" if is_number(v) else "–"


def _kd(r: Mapping[str, Any]) -> str:
    if not is_number(r.get("k_a")) or not (r["k_a"] and r["k_b"]):
        return "–"
    k = f"{int(r['k_a'])}" if r["k_a"] == r["k_b"] else f"{int(r['k_a'])}/{int(r['k_b'])}"
    return f"{k} × {int(r['d'])}"


def display_table(rows: pd.DataFrame, paper: bool = True) -> pd.DataFrame:
    """The claims table as a reader sees it: the arm ahead, Δ = A − B (absolute, and % of B with its Welch CI),
    Holm p, scope, K × D, the verdict, why, and its flags; the paper's beside (:data:`COMPACT`: the index page's
    columns). Columns an older claims.json lacks read ``–``."""

    def ci(r: Mapping[str, Any]) -> str:
        lo, hi, mb = r["ci_low"], r["ci_high"], r["mean_b"]
        if not is_number(lo) or not mb:
            return "–"
        return f"[{lo / abs(mb) * 100:+.2f}, {hi / abs(mb) * 100:+.2f}] %"

    def mean_sd(m: Any, s: Any, n: Any) -> str:
        if not is_number(m):
            return "–"
        return f"{m:.4f} ± {s:.4f} ({int(n)})" if is_number(s) else f"{m:.4f} ({int(n)})"

    records = rows.to_dict("records")
    out = pd.DataFrame(
        {
            "claim": rows["claim"],
            "task": rows["task"],
            "protocol": rows["protocol"],
            "metric": rows["metric"],
            "A": rows["arm_a"],
            "B": rows["arm_b"],
            "A mean ± SD (n), ddof=1": [mean_sd(*v) for v in zip(rows["mean_a"], rows["sd_a"], rows["n_a"])],
            "B mean ± SD (n), ddof=1": [mean_sd(*v) for v in zip(rows["mean_b"], rows["sd_b"], rows["n_b"])],
            "ahead": [_text(_ahead(r)) for r in records],
            "Δ = A − B": [f"{v:+.4f}" if is_number(v) else "–" for v in rows["delta_abs"]],
            "Δ %": [_pct(v) for v in rows["delta_rel_pct"]],
            "CI of Δ % (Welch)": [ci(r) for r in records],
            "margin": [f"±{r['margin_rel_pct']:.3g} %" if is_number(r.get("margin_rel_pct")) else "–" for r in records],
            "p Welch": [format_p(p) for p in rows["p_welch"]],
            "p Holm (claim family)": [format_p(p) for p in rows["p_holm"]],
            "p TOST / non-inf. (Holm)": [_second_p(r) for r in records],
            "scope": [_text(r.get("scope")) for r in records],
            "K × D": [_kd(r) for r in records],
            "verdict": rows["verdict"],
            "why": rows["reason"],
            "flags": [_text(r.get("flags")) for r in records],
        }
    )
    if paper and "paper_verdict" in rows:
        out["paper Δ %"] = [_pct(v) for v in rows["paper_delta_rel_pct"]]
        out["paper p Holm"] = [format_p(p) for p in rows["paper_p_holm"]]
        out["paper verdict"] = rows["paper_verdict"]
        out["paper, RadNet-12M as ct"] = [_sensitivity(r, "paper_12m_") for r in records]
    elif "ct_12m_verdict" in rows:
        out["RadNet-12M as ct"] = [_sensitivity(r, "ct_12m_") for r in records]
    return out


def _second_p(r: Mapping[str, Any]) -> str:
    for key in ("p_tost_holm", "p_noninf_holm"):
        if is_number(r.get(key)):
            return format_p(r[key])
    return "–"


def _sensitivity(r: Mapping[str, Any], prefix: str) -> str:
    verdict = r.get(prefix + "verdict")
    if not isinstance(verdict, str) or not verdict:
        return "–"
    delta = r.get(prefix + "delta_rel_pct")
    return f"{verdict} ({_pct(delta)})" if is_number(delta) else str(verdict)


def claim_overview(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per claim: its statement, our verdicts and the paper's, each counted over the claim's rows and, for
    supports / contradicts / equivalent, with the arm ahead (so that two "contradicts" in opposite directions do not
    look alike)."""

    def tally(part: pd.DataFrame, verdict: str, ahead: str | None) -> str:
        if verdict not in part:
            return "–"
        keys = []
        for r in part.to_dict("records"):
            v = r[verdict] if isinstance(r[verdict], str) else "–"
            who = _ahead(r) if ahead else None
            keys.append(f"{v} ({who} ahead)" if who and v in ("supports", "contradicts", "equivalent") else v)
        counts = pd.Series(keys).value_counts(sort=False)
        return ", ".join(f"{v} ×{n}" if n > 1 else str(v) for v, n in counts.items())

    def why(part: pd.DataFrame) -> str:
        """The reasons of the rows that carry no test result (withheld, not run), each once."""
        quiet = part[part["verdict"].isin(["withheld", "not run"])]
        return " | ".join(dict.fromkeys(str(r) for r in quiet["reason"] if r)) or "–"

    texts = {c.id: c.text for c in CLAIMS}
    lines = []
    for claim, part in rows.groupby("claim", sort=False):
        stated = part["statement"].dropna() if "statement" in part else pd.Series(dtype=object)
        lines.append(
            {
                "claim": claim,
                "statement": stated.iloc[0] if len(stated) else texts.get(claim, ""),
                "ours": tally(part, "verdict", "ahead"),
                "paper (its own runs, same rule)": tally(part, "paper_verdict", None),
                "scope": ", ".join(sorted({str(s) for s in part.get("scope", pd.Series()).dropna()})) or "–",
                "why ours is withheld / not run": why(part),
            }
        )
    return pd.DataFrame(lines)


def verdict_figure(rows: pd.DataFrame, margin_pct: float = 1.0):
    """Δ % per claim row with its Welch CI (relative to arm B's mean), the ±margin band and the paper's Δ %.
    Rows without a test (not run / withheld without numbers) are left out; works for any protocol."""
    import matplotlib.pyplot as plt

    shown = rows[rows["delta_rel_pct"].map(is_number)].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.42 * max(len(shown), 1) + 1.5))
    ax.axvspan(-margin_pct, margin_pct, color="0.9", label=f"±{margin_pct:g} % equivalence margin")
    ax.axvline(0, color="0.5", lw=0.8)
    colours = {"supports": "C2", "contradicts": "C3", "equivalent": "C0", "inconclusive": "0.4", "withheld": "C1"}
    seen: set[str] = set()
    for y, r in shown.iterrows():
        colour = colours.get(r["verdict"], "0.4")
        scale = 100 / abs(r["mean_b"]) if r["mean_b"] else math.nan
        if is_number(r["ci_low"]):
            ax.hlines(y, r["ci_low"] * scale, r["ci_high"] * scale, color=colour, lw=2)
        ax.plot(r["delta_rel_pct"], y, "o", color=colour, label=r["verdict"] if r["verdict"] not in seen else None)
        seen.add(r["verdict"])
        own = r.get("margin_rel_pct")
        if is_number(own) and not np.isclose(own, margin_pct):
            ax.plot([-own, own], [y, y], "|", color="0.3", ms=9, label="this row's margin" if "m" not in seen else None)
            seen.add("m")
        paper_delta = r.get("paper_delta_rel_pct")
        if is_number(paper_delta):
            label = "paper Δ % (its runs)" if "paper" not in seen else None
            ax.plot(paper_delta, y, "D", color="k", ms=5, mfc="none", label=label)
            seen.add("paper")
    ax.set_yticks(
        range(len(shown)), [f"{r.claim} · {r.task} · {r.protocol} · {r.metric}" for r in shown.itertuples()], fontsize=8
    )
    ax.set_xlabel("Δ % = (A / B − 1) · 100, line: Welch CI")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
