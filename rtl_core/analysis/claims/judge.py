"""Judging: every declared claim on one side's runs (ours or the paper's), one row per claim × cell.

Before the rule (:mod:`.rule`) a row may be set aside: ``not run`` (an arm, task or protocol is missing) or
``withheld`` (the test is undefined, an arm fails the kNN sanity check, or the cell is degenerate: scratch within
the pretrained arms' spread). Runs further than 3 robust SDs from their arm are flagged in ``flags`` and
``outliers``, never dropped. The paper's side is judged by the same rule on ``paper_runs.csv``, with RadNet-12M
in the ``ct`` role as a sensitivity column beside RadNet-1.28M.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from rtl_core.analysis.claims.arms import add_init_hint, arm_inits
from rtl_core.analysis.claims.catalogue import CLAIMS, PAPER_ARMS, PAPER_SCRATCH, PAPER_SENSITIVITY, ROLE_DOMAINS
from rtl_core.analysis.claims.model import CHANGED, Cell, Claim
from rtl_core.analysis.claims.rule import judge_family, margin_fields
from rtl_core.analysis.claims.tables import current_results, our_table, paper_table, read_csv
from rtl_core.analysis.replicates import compare_units, robust_outliers, scratch_gate, with_replicate
from rtl_core.analysis.stats import format_p


def judge(
    table: pd.DataFrame,
    arms: Mapping[str, str | Sequence[str]],
    *,
    side: Literal["ours", "paper"],
    alpha: float = 0.05,
    margin_pct: float = 1.0,
    sanity: pd.DataFrame | None = None,
    claims: Sequence[Claim] = CLAIMS,
    study_tasks: Sequence[str] | None = None,
    study_protocols: Sequence[str] | None = None,
    study_inits: Sequence[str] | None = None,
    scratch: str | None = None,
) -> list[dict[str, Any]]:
    """Judge ``claims`` on one side's tidy runs (``our_table`` or ``paper_table``); one dict per claim × cell (the
    paper's side: per cell with paper runs). ``arms`` maps arm names to an init or inits; ``scratch`` names the
    no-pretraining init of the degenerate-cell gate (default ``scratch`` ours, ``Scratch`` the paper's)."""
    scratch = scratch or ("scratch" if side == "ours" else PAPER_SCRATCH)
    out: list[dict[str, Any]] = []
    for claim in claims:
        a_level = claim.alpha or alpha
        rows = [
            _row(claim, cell, table, arms, side, a_level, margin_pct, sanity, study_tasks, study_protocols, scratch)
            for cell in claim.cells
            if side == "ours" or cell.paper is not None
        ]
        judge_family(rows, claim, a_level, margin_pct)
        for r in rows:
            absent = [i for i in r.pop("_inits", ()) if study_inits is not None and i not in study_inits]
            if r["verdict"] == "not run" and absent and "run `rtl evaluate`" in r["reason"]:
                r["reason"] = f"{' and '.join(absent)} not in the study: add to evaluate.inits"
            for key in ("_a", "_b", "undefined"):
                r.pop(key, None)
            r["flags"] = " | ".join(r.pop("_flags", []))
            d = r.get("delta_abs", math.nan)
            r["ahead"] = r["arm_a"] if d > 0 else r["arm_b"] if d < 0 else ("neither" if d == 0 else None)
        out += rows
    return out


def _cell_runs(table: pd.DataFrame, cell: Cell, side: str) -> tuple[pd.DataFrame, str, str, str]:
    """The runs of one cell, and how the row names its task, metric and protocol."""
    if side == "paper":
        pc = cell.paper
        sel = table[
            (table["experiment"] == pc.experiment)
            & (table["task"] == pc.task)
            & np.isclose(table["data_fraction"], pc.data_fraction)
            & (table["metric"] == pc.metric)
        ]
        return sel, pc.task, pc.metric, pc.protocol
    sel = table[(table["task"] == cell.task) & (table["protocol"] == cell.protocol)]
    sel = sel[sel["metric"] == cell.metric] if cell.metric else sel[sel["primary"].astype(bool)]
    metric = cell.metric or (sel["metric"].iloc[0] if len(sel) else _primary_metric(table, cell.task))
    return sel, cell.task, metric, cell.protocol


def _row(
    claim: Claim,
    cell: Cell,
    table: pd.DataFrame,
    arms: Mapping[str, str | Sequence[str]],
    side: str,
    alpha: float,
    margin_pct: float,
    sanity: pd.DataFrame | None,
    study_tasks: Sequence[str] | None,
    study_protocols: Sequence[str] | None,
    scratch: str,
) -> dict[str, Any]:
    inits_a, inits_b = arm_inits(arms, claim.arm_a), arm_inits(arms, claim.arm_b)
    sel, task, metric, protocol = _cell_runs(table, cell, side)
    row: dict[str, Any] = {
        "claim": claim.id,
        "task": task,
        "metric": metric,
        "protocol": protocol,
        "arm_a": "+".join(inits_a) or claim.arm_a,
        "arm_b": "+".join(inits_b) or claim.arm_b,
        "statement": claim.text,
        "expectation": claim.expected,
        "family": f"{claim.id}: {len(claim.cells)} declared cell(s), {side}",
        "verdict": None,
        "reason": "",
        "_flags": [],
        "_inits": inits_a + inits_b,
    }
    missing = [arm for arm, inits in ((claim.arm_a, inits_a), (claim.arm_b, inits_b)) if not inits]
    if missing:
        row.update(compare_units(sel.iloc[:0], sel.iloc[:0], 1 - alpha))
        row.update(margin_fields(claim, cell.metric, math.nan, margin_pct))
        row.update(verdict="not run", reason="; ".join(f"no {arm} arm: {add_init_hint(arm, claim)}" for arm in missing))
        return row
    sel = with_replicate(sel)
    arm_a, arm_b = sel[sel["init"].isin(inits_a)], sel[sel["init"].isin(inits_b)]
    stats = compare_units(arm_a, arm_b, 1 - alpha)
    twice = sorted(
        {f"{i} seed {s}" for part in (arm_a, arm_b) for i, _, s in _duplicates(part)} | _shared(inits_a, inits_b)
    )
    if twice:
        stats["undefined"] = (
            f"{', '.join(twice)}: more than one record (a run recorded twice, e.g. a file: init whose path moved, "
            "or an init in both arms): remove the stale records or the overlap so that no run counts twice"
        )
    row.update(stats)
    row.update(margin_fields(claim, cell.metric, stats["mean_b"], margin_pct))
    if side == "ours" and not len(arm_a) and not len(arm_b):
        row.update(verdict="not run", reason=_not_run_reason(cell, study_tasks, study_protocols, inits_a, inits_b))
        return row
    if stats["undefined"]:
        row.update(verdict="withheld", reason=stats["undefined"])
        return row
    problems = []
    if side == "ours" and sanity is not None:
        problems += [
            _sanity_problem(sanity, arm, init, alpha)
            for arm, inits in ((claim.arm_a, inits_a), (claim.arm_b, inits_b))
            for init in inits
        ]
    outliers = robust_outliers([arm_a, arm_b])
    row["outliers"] = "; ".join(outliers.values())
    if outliers:
        row["_flags"].append(f"{len(outliers)} run(s) > 3 robust SDs from their arm (kept): {row['outliers']}")
    if scratch not in inits_a + inits_b:
        kept = [part.drop(index=[i for i in outliers if i in part.index])["value"] for part in (arm_a, arm_b)]
        gate = scratch_gate(sel.loc[sel["init"] == scratch, "value"], *kept)
        if gate:
            problems.append(gate)
            row["_flags"].append("degenerate: scratch within the arms' spread")
    problems = [p for p in problems if p]
    if problems:
        row.update(verdict="withheld", reason="; ".join(problems))
    return row


def _duplicates(part: pd.DataFrame) -> list[tuple[str, int, int]]:
    keys = part[["init", "replicate", "seed"]]
    return [tuple(k) for k in keys[keys.duplicated()].itertuples(index=False)]


def _shared(a: Sequence[str], b: Sequence[str]) -> set[str]:
    return {f"init {i}" for i in set(a) & set(b)}


def _primary_metric(table: pd.DataFrame, task: str) -> str:
    """The task's primary metric as its runs recorded it (any protocol), else as the registry names it."""
    from rtl_core.data.registry import TASKS

    recorded = table.loc[(table["task"] == task) & table["primary"].astype(bool), "metric"] if len(table) else []
    if len(recorded):
        return str(recorded.iloc[0])
    return TASKS[task].metrics[0] if task in TASKS else "primary"


def _not_run_reason(
    cell: Cell,
    tasks: Sequence[str] | None,
    protocols: Sequence[str] | None,
    inits_a: Sequence[str],
    inits_b: Sequence[str],
) -> str:
    if tasks is not None and cell.task not in tasks:
        return f"task {cell.task} is not in the study: add it to evaluate.tasks"
    if protocols is not None and cell.protocol not in protocols:
        return f"protocol {cell.protocol} is not in the study: add it to evaluate.protocols"
    if cell.metric and cell.metric.startswith("weight_cka:"):
        return (
            "no feature-reuse table: run `rtl analyze` after the fine-tunes (the evaluation keeps the early "
            "filters of every fine-tuned encoder)"
        )
    return f"no finished runs of {'+'.join(inits_a)} or {'+'.join(inits_b)}: run `rtl evaluate`"


def _sanity_problem(sanity: pd.DataFrame, role: str, init: str, alpha: float) -> str | None:
    """Why ``init`` fails the kNN sanity check on its own domain's task (``None``: it passed or is not checkable)."""
    if init == "scratch":
        return None
    domains = ROLE_DOMAINS.get(role, (role.removeprefix("domain:"),) if role.startswith("domain:") else ())
    part = sanity[(sanity["init"] == init) & sanity["domain"].isin(domains)]
    if "gates" in part:  # reported-only rows (CUB) gate nothing
        part = part[part["gates"].astype(bool)]
    bad = part[~part["beats_random"].astype(bool)]
    if bad.empty:
        return None
    r = bad.iloc[0]
    return (
        f"{role} arm {init} not shown to beat random init on {r['task']} (kNN {r['knn_init']:.3f} vs "
        f"{r['knn_random']:.3f}, McNemar p {format_p(r['mcnemar_p'], alpha)}, worst of {int(r['random_seeds'])} seeds; "
        f"needs p < {alpha})"
    )


# --------------------------------------------------------------------------------------------- the paper
def judge_paper(
    path: str | Path | None = None, alpha: float = 0.05, margin_pct: float = 1.0, claims: Sequence[Claim] = CLAIMS
) -> pd.DataFrame:
    """The paper's own runs judged by the same rule: one row per claim × paper cell; ``ct_12m_*`` columns judge the
    claims with a ``ct`` arm again with RadNet-12M in that role (a sensitivity column, its own Holm family)."""
    from rtl_core.analysis.claims.rows import frame

    table = paper_table(path)
    rows = judge(table, PAPER_ARMS, side="paper", alpha=alpha, margin_pct=margin_pct, claims=claims)
    with_ct = [c for c in claims if "ct" in (c.arm_a, c.arm_b)]
    sensitivity = judge(
        table, {**PAPER_ARMS, **PAPER_SENSITIVITY}, side="paper", alpha=alpha, margin_pct=margin_pct, claims=with_ct
    )
    index = {(r["claim"], r["task"], r["metric"], r["protocol"]): r for r in sensitivity}
    for r in rows:
        hit = index.get((r["claim"], r["task"], r["metric"], r["protocol"]))
        ran = hit is not None and hit["n_a"] > 0 and hit["n_b"] > 0
        r["ct_12m_delta_rel_pct"] = hit["delta_rel_pct"] if ran else None
        r["ct_12m_p_holm"] = hit["p_holm"] if ran else None
        r["ct_12m_verdict"] = (hit["verdict"] if ran else "not in the paper's runs") if hit else None
    return frame(rows, extra=("ct_12m_delta_rel_pct", "ct_12m_p_holm", "ct_12m_verdict"))


def merge_paper(
    ours: list[dict[str, Any]], paper: pd.DataFrame, claims: Sequence[Claim] = CLAIMS
) -> list[dict[str, Any]]:
    """Put the paper's Δ %, Welch / Holm p, verdict and flags beside each of our rows (matched by claim and cell),
    and its RadNet-12M sensitivity verdict; a study's own question gets ``not a paper claim``."""
    by_claim = {c.id: c for c in claims}
    index = {(r["claim"], r["task"], r["metric"], r["protocol"]): r for r in paper.to_dict("records")}
    for row in ours:
        claim = by_claim.get(row["claim"])
        cell = next(
            (
                c
                for c in (claim.cells if claim else ())
                if c.task == row["task"]
                and c.protocol == row["protocol"]
                and (c.metric or row["metric"]) == row["metric"]
            ),
            None,
        )
        pc = cell.paper if cell else None
        hit = index.get((claim.id, pc.task, pc.metric, pc.protocol)) if pc is not None else None
        row["paper_task"] = pc.task if pc else None
        row["paper_metric"] = pc.metric if pc else None
        for key in ("delta_rel_pct", "p_welch", "p_holm", "flags"):
            row[f"paper_{key}"] = hit[key] if hit else None
        for key in ("delta_rel_pct", "p_holm", "verdict"):
            row[f"paper_12m_{key}"] = hit.get(f"ct_12m_{key}") if hit else None
        if claim is None or not claim.builtin:
            row["paper_verdict"], row["paper_reason"] = "not a paper claim", "a question of this study"
        else:
            row["paper_verdict"] = hit["verdict"] if hit else "not in the paper's runs"
            row["paper_reason"] = hit["reason"] if hit else (claim.note or "the paper logged no comparable runs")
    return ours


# --------------------------------------------------------------------------------------------- the study
def judge_study(
    config, results: pd.DataFrame | None = None, analysis: Path | None = None, paper: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every declared question of ``config`` (the paper's claims and the study's own) on its results store and
    analysis tables, the paper's verdicts beside. When runs exist and the questions were never registered, they are
    registered now (:func:`rtl_core.analysis.questions.register_questions`); a question that differs from its
    registration is flagged ``changed after the runs`` on every row."""
    from rtl_core.analysis.claims.arms import claim_arms
    from rtl_core.analysis.claims.rows import frame
    from rtl_core.analysis.questions import declared_claims, register_questions, registration_status
    from rtl_core.paths import analysis_dir
    from rtl_core.results import results_table

    results = current_results(config, results_table(config.study) if results is None else results)
    analysis = analysis_dir(config.study) if analysis is None else Path(analysis)
    reuse = read_csv(analysis / "weight_cka.csv")
    if reuse is not None and len(reuse):
        reuse = reuse[reuse["run"].astype(str).isin([f"seed{s}" for s in config.evaluate.seeds])]
    sanity = read_csv(analysis / "sanity.csv")
    ac = config.analysis
    claims = declared_claims(config)
    register_questions(config, results)
    status = registration_status(config)
    rows = judge(
        our_table(results, reuse),
        claim_arms(config, claims),
        side="ours",
        alpha=ac.alpha,
        margin_pct=ac.equivalence_margin,
        sanity=sanity,
        claims=claims,
        study_tasks=config.evaluate.tasks,
        study_protocols=config.evaluate.protocols,
        study_inits=config.evaluate.inits,
    )
    for r in rows:
        if sanity is None and r["verdict"] not in ("not run", "withheld"):
            r["reason"] += " (kNN sanity check not available: run `rtl analyze`)"
        changed = status.get(r["claim"])
        r["registration"] = changed or ("registered" if status else "not registered yet (no runs)")
        if changed:
            r["flags"] = " | ".join(f for f in (CHANGED + f": {changed}", r["flags"]) if f)
    builtin = [c for c in claims if c.builtin]
    if paper is None:
        paper = judge_paper(alpha=ac.alpha, margin_pct=ac.equivalence_margin, claims=builtin) if builtin else frame([])
    return frame(merge_paper(rows, paper, claims))
