"""The advisor against a finished grid: per task × protocol, its ranking of the inits against the measured ranking
(top-1 agreement, Kendall's τ), each score and two baselines, with bootstrap CIs over tasks; and when a grid is too
small to say."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rtl_core.analysis.advisor.scores import LOWER_IS_BETTER, SCORES

VALIDATION_COLUMNS = ("task", "protocol", "score", "n_inits", "measured_best", "predicted_best", "top1", "kendall_tau")
#: A validation needs at least this many task × protocol cells from at least this many tasks (its CI resamples
#: tasks); on fewer, the reports say so and show no top-1 or τ (one cell gives top-1 0 or 1, τ ±1).
MIN_VALIDATION_CELLS = 4
MIN_VALIDATION_TASKS = 2


def _baseline_init(inits: Sequence[str], domains: dict[str, str | None], domain: str | None) -> str | None:
    for init in inits:
        if domains.get(init) == domain:
            return init
    return None


def validate(
    scores: pd.DataFrame, measured: pd.DataFrame, task_domains: dict[str, str | None], n_boot: int = 2000, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Advisor rankings against measured ones.

    ``scores``: :func:`advise` rows of several tasks (columns task, init, domain and :data:`SCORES`);
    ``measured``: one row per task × protocol × init with the mean primary metric (``value``). Returns one row
    per task × protocol × score (and the two baselines) and the summary figures (mean top-1 and τ, bootstrap
    95 % CI over tasks)."""
    from scipy.stats import kendalltau

    rows = []
    domains = dict(zip(scores["init"], scores["domain"]))
    for (task, protocol), cell in measured.groupby(["task", "protocol"], sort=True):
        mine = scores[scores["task"] == task].set_index("init")
        cell = cell[cell["init"].isin(mine.index)].set_index("init")["value"]
        if len(cell) < 2:
            continue
        measured_best = cell.idxmax()
        for score in SCORES:
            values = mine.loc[cell.index, score].astype(float)
            if values.isna().sum() > len(values) - 2:
                continue
            sign = -1.0 if score in LOWER_IS_BETTER else 1.0
            ok = values.notna()
            tau = kendalltau(sign * values[ok].to_numpy(), cell[ok].to_numpy()).statistic
            predicted = (sign * values).idxmax()
            rows.append(
                {
                    "task": task,
                    "protocol": protocol,
                    "score": score,
                    "n_inits": int(ok.sum()),
                    "measured_best": measured_best,
                    "predicted_best": predicted,
                    "top1": float(predicted == measured_best),
                    "kendall_tau": float(tau),
                }
            )
        own = task_domains.get(task)
        baselines = {
            "baseline_natural": "natural",
            "baseline_domain": own if _baseline_init(list(cell.index), domains, own) else "ct",
        }
        for name, domain in baselines.items():
            pick = _baseline_init(list(cell.index), domains, domain)
            rows.append(
                {
                    "task": task,
                    "protocol": protocol,
                    "score": name,
                    "n_inits": len(cell),
                    "measured_best": measured_best,
                    "predicted_best": pick,
                    "top1": float(pick == measured_best) if pick else np.nan,
                    "kendall_tau": np.nan,
                }
            )
    table = pd.DataFrame(rows, columns=list(VALIDATION_COLUMNS))
    return table, summarize_validation(table, n_boot, seed)


def summarize_validation(table: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean top-1 and Kendall τ per score, with percentile bootstrap 95 % CIs resampling tasks."""
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    tasks = sorted(table["task"].unique())
    per_score = {score: rows.groupby("task")[["top1", "kendall_tau"]].mean() for score, rows in table.groupby("score")}
    for score, per_task in per_score.items():
        for metric in ("top1", "kendall_tau"):
            values = per_task[metric].dropna()
            if values.empty:
                continue
            out[f"{score}.{metric}"] = float(values.mean())  # the mean over tasks, as its bootstrap resamples tasks
            if len(values) > 1:
                boots = [
                    float(np.mean(rng.choice(values.to_numpy(), len(values), replace=True))) for _ in range(n_boot)
                ]
                out[f"{score}.{metric}_ci_low"], out[f"{score}.{metric}_ci_high"] = map(
                    float, np.percentile(boots, [2.5, 97.5])
                )
        out[f"{score}.cells"] = float((table["score"] == score).sum())
    # the advisor against each baseline: the paired per-task difference of top-1, bootstrapped over tasks
    if "advisor" in per_score:
        for baseline in ("baseline_natural", "baseline_domain"):
            if baseline not in per_score:
                continue
            diff = (per_score["advisor"]["top1"] - per_score[baseline]["top1"]).dropna().to_numpy()
            if len(diff):
                out[f"advisor_minus_{baseline}.top1"] = float(diff.mean())
            if len(diff) > 1:
                boots = [float(np.mean(rng.choice(diff, len(diff), replace=True))) for _ in range(n_boot)]
                low, high = np.percentile(boots, [2.5, 97.5])
                out[f"advisor_minus_{baseline}.top1_ci_low"], out[f"advisor_minus_{baseline}.top1_ci_high"] = (
                    float(low),
                    float(high),
                )
    out["tasks"] = float(len(tasks))
    return out


def validation_shortfall(summary: dict[str, float]) -> str | None:
    """Why a validation ``summary`` is too small to report (fewer cells or tasks than
    :data:`MIN_VALIDATION_CELLS` / :data:`MIN_VALIDATION_TASKS`); None when it is large enough or absent."""
    if "advisor.top1" not in summary:
        return None
    cells, tasks = int(summary.get("advisor.cells", 0)), int(summary.get("tasks", 0))
    if cells >= MIN_VALIDATION_CELLS and tasks >= MIN_VALIDATION_TASKS:
        return None
    return (
        f"the finished grid has {cells} task × protocol cell(s) of {tasks} task(s) with two or more inits; a "
        f"validation needs at least {MIN_VALIDATION_CELLS} cells from {MIN_VALIDATION_TASKS} tasks (its CI resamples "
        "tasks), so no top-1 or Kendall τ is reported. Add tasks or protocols (evaluate.tasks, evaluate.protocols) "
        "to validate the advisor on this study"
    )
