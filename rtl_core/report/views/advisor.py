"""40 · Advisor: the scores per task and init, one recommendation per task, the validation's summary table, the
verdict in words (no more than the validation shows) and the top-1 figure (:mod:`rtl_core.analysis.advisor`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rtl_core.analysis.advisor import SCORES, recommendation, validation_shortfall

_NOT_RUN = "The advisor has not run for this study yet (`make reproduce` runs it after the claims)."


def scores_table(scores: pd.DataFrame | None) -> pd.DataFrame:
    """The scores per task and init, recommendation first (for the notebook)."""
    if scores is None or scores.empty:
        return pd.DataFrame({"note": [_NOT_RUN]})
    columns = [
        "task",
        "advisor_rank",
        "init",
        "domain",
        "knn",
        "probe",
        "logme",
        "domain_distance",
        "n_images",
        "seconds",
    ]
    return scores.sort_values(["task", "advisor_rank"])[columns].round(3).reset_index(drop=True)


def recommendations_table(scores: pd.DataFrame | None) -> pd.DataFrame:
    """One line per task: the predicted best init, the runner-up and the scores that agree."""
    if scores is None or scores.empty:
        return pd.DataFrame({"note": [_NOT_RUN]})
    rows = [recommendation(part) for _, part in scores.groupby("task")]
    return pd.DataFrame(rows).assign(agree=lambda t: t["agree"].map(", ".join)).round(3)


def summary_table(summary: dict[str, float]) -> pd.DataFrame:
    """Mean top-1 and Kendall τ per score and baseline, with their bootstrap CIs (a note instead when the grid
    has too few cells: :func:`validation_shortfall`)."""
    shortfall = validation_shortfall(summary)
    if shortfall:
        return pd.DataFrame({"note": [f"Not validated: {shortfall}."]})
    rows = []
    for score in (*SCORES, "baseline_natural", "baseline_domain"):
        if f"{score}.top1" not in summary:
            continue
        row = {"score": score, "cells": int(summary.get(f"{score}.cells", 0))}
        for metric in ("top1", "kendall_tau"):
            row[metric] = summary.get(f"{score}.{metric}")
            low, high = summary.get(f"{score}.{metric}_ci_low"), summary.get(f"{score}.{metric}_ci_high")
            row[f"{metric} 95 % CI"] = f"{low:.2f} … {high:.2f}" if low is not None else ""
        rows.append(row)
    return (
        pd.DataFrame(rows).round(3)
        if rows
        else pd.DataFrame({"note": [_NOT_RUN + " Or the grid has no finished runs."]})
    )


def verdict_text(summary: dict[str, float]) -> str:
    """What the validation shows, and no more: whether the advisor's top-1 beats each baseline's, with the CI."""
    if "advisor.top1" not in summary:
        return "No validation: the study has no finished grid to compare the advisor with."
    shortfall = validation_shortfall(summary)
    if shortfall:
        return f"**Too few cells to validate the advisor on this study:** {shortfall}."
    ours = summary["advisor.top1"]
    low, high = summary.get("advisor.top1_ci_low"), summary.get("advisor.top1_ci_high")
    parts = [
        f"The advisor picked the measured best init in {100 * ours:.0f} % of {int(summary.get('advisor.cells', 0))} "
        f"task × protocol cells ({int(summary.get('tasks', 0))} tasks"
        + (f"; bootstrap 95 % CI {100 * low:.0f}–{100 * high:.0f} %)." if low is not None else ").")
    ]
    for name, label in (
        ("baseline_natural", "always the natural-image init"),
        ("baseline_domain", "the task's own domain"),
    ):
        if f"{name}.top1" not in summary:
            continue
        base = summary[f"{name}.top1"]
        d_low, d_high = (
            summary.get(f"advisor_minus_{name}.top1_ci_low"),
            summary.get(f"advisor_minus_{name}.top1_ci_high"),
        )
        if d_low is not None and (d_low > 0 or d_high < 0):
            relation = "above" if d_low > 0 else "below"
            parts.append(
                f"Against *{label}* ({100 * base:.0f} %) it is {relation} that rule: the paired per-task "
                f"difference's 95 % CI is {100 * d_low:+.0f} … {100 * d_high:+.0f} points."
            )
        else:
            span = f" (paired difference {100 * d_low:+.0f} … {100 * d_high:+.0f} points)" if d_low is not None else ""
            parts.append(
                f"Against *{label}* ({100 * base:.0f} %): the paired difference's CI includes 0{span}, so "
                "these tasks do not show the advisor to be better or worse than that rule."
            )
    if ours <= max(summary.get("baseline_natural.top1", 0), summary.get("baseline_domain.top1", 0)):
        parts.append("**The advisor does not beat the simpler rules on this study.**")
    return " ".join(parts)


def summary_figure(summary: dict[str, float]):
    """Top-1 agreement per score and baseline with its bootstrap CI (chance with three inits: 1/3)."""
    import matplotlib.pyplot as plt

    table = summary_table(summary)
    fig, ax = plt.subplots(figsize=(7, 3))
    if "score" not in table:
        text = "Too few cells to validate the advisor." if validation_shortfall(summary) else _NOT_RUN
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
        ax.axis("off")
        return fig
    y = np.arange(len(table))
    ax.barh(y, table["top1"], color=["tab:blue" if s in SCORES else "tab:grey" for s in table["score"]])
    for i, score in enumerate(table["score"]):
        low, high = summary.get(f"{score}.top1_ci_low"), summary.get(f"{score}.top1_ci_high")
        if low is not None:
            ax.plot([low, high], [i, i], color="black", lw=1.5)
    ax.set_yticks(y, table["score"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("top-1 agreement with the measured best init")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig
