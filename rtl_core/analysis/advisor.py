"""The transfer advisor: rank candidate inits for a task from one forward pass, and say how often that is right.

:func:`advise` passes the task's training images (the images a full-data run trains on) once through each
candidate encoder (any init the study knows: scratch, ours, ``torchvision:``, ``file:``) and scores the frozen
features with :mod:`rtl_core.analysis.transferability`: grouped kNN accuracy, a 10-shot linear probe, LogME,
and the normalised Fréchet distance between the task's features and those of a sample of the init's
pretraining pool (ours: the pool it was trained on; others: the demo pool of their declared domain; none for
scratch). The ranking score, ``advisor``, is the mean of each init's
ranks by kNN, probe and LogME (no fitted weights, so nothing to leave out). Segmentation tasks are scored on
whether a slice shows foreground (a proxy: the estimators need image-level labels).

:func:`validate` measures the advisor on a finished grid: per task × protocol, the advisor's ranking of the
inits against the measured ranking by mean primary metric: top-1 agreement and Kendall's τ, each score and
two baselines ("always the natural-image init", "the init of the task's own domain": the CT init for a medical
task without an init of its modality), with a bootstrap CI over tasks. Studies of these estimators on medical
images (arXiv 2308.07444, 2405.20420) find them unreliable; the validation says whether ours is.

Example::

    scores = advise(load_config("default"), "mri_cls")
    print(scores[["init", "knn", "logme", "advisor_rank"]])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rtl_core.analysis.transferability import frechet_distance, knn_accuracy, logme, probe_accuracy
from rtl_core.errors import ConfigError, DataError

ADVISOR_VERSION = 2
SCORES = ("knn", "probe", "logme", "domain_distance", "advisor")
#: Scores where a smaller value predicts better transfer.
LOWER_IS_BETTER = ("domain_distance",)
RANKED_BY = ("knn", "probe", "logme")
POOL_SAMPLE = 256
MAX_IMAGES = 1000
VALIDATION_COLUMNS = ("task", "protocol", "score", "n_inits", "measured_best", "predicted_best", "top1", "kendall_tau")
#: A validation needs at least this many task × protocol cells from at least this many tasks (its CI resamples
#: tasks); on fewer, the reports say so and show no top-1 or τ (one cell gives top-1 0 or 1, τ ±1).
MIN_VALIDATION_CELLS = 4
MIN_VALIDATION_TASKS = 2


def task_domain(config, task: str) -> str | None:
    """The imaging domain of a task (``ct``, ``natural``, ``xray``, ``mri``, …): a demo task's pack folder, a
    user task's ``domain`` (DICOM / NIfTI / PNG slices: ``ct`` unless it says otherwise)."""
    if task in config.data.tasks:
        spec = config.data.tasks[task]
        return spec.domain or ("ct" if spec.format in ("dicom", "nifti", "png_slices") else None)
    from rtl_core.data.registry import load_task

    return load_task(task, root=config.data.data_dir).domain


def _features(encoder: torch.nn.Module, images: torch.Tensor, mean, std) -> np.ndarray:
    """Pooled (layer-4) features of uint8 images ``(N, 3, S, S)`` with the init's input normalisation."""
    from rtl_core.analysis.embeddings import extract_features
    from rtl_core.models.devices import default_device

    return extract_features(
        encoder, images, layers=["layer4"], batch_size=256, device=default_device(), stats=(tuple(mean), tuple(std))
    )["layer4"]


def _pool_images(config, domain: str, size: int, seed: int = 0) -> torch.Tensor | None:
    """A seeded sample of the pool of ``domain`` (a demo or user pool of that name) at ``size`` px as uint8, or None."""
    from rtl_core.data.study import study_pool
    from rtl_core.names import DEMO_POOLS

    if domain not in DEMO_POOLS and domain not in config.data.pools:
        return None
    pool = study_pool(config, domain, seed=seed).dataset
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(pool), size=min(POOL_SAMPLE, len(pool)), replace=False)
    images = []
    for i in sorted(rows.tolist()):
        item = pool[i]
        images.append(item[0] if isinstance(item, (tuple, list)) else item)
    x = torch.stack([im.float() / 255 if im.dtype == torch.uint8 else im.float() for im in images])
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x.clamp_(0, 1) * 255).round_().to(torch.uint8)


def advise(config, task: str, inits: Sequence[str] | None = None, max_images: int = MAX_IMAGES) -> pd.DataFrame:
    """One row per candidate init with every score, its rank by each and the advisor's rank (module doc)."""
    from rtl_core.evaluate.data import load_task_data
    from rtl_core.evaluate.protocols import get_protocol
    from rtl_core.models.inits import check_checkpoint, load_init
    from rtl_core.names import parse_init

    ev = config.evaluate
    inits = list(inits or ev.inits)
    if len(inits) < 2:
        raise ConfigError(f"rtl advise: give at least two inits to rank, got {inits}.")
    for name in inits:
        check_checkpoint(parse_init(name), config.study)
    size = ev.image_size or config.data.image_size
    data = load_task_data(task, size, config.data.split_seed, config.data)
    rows_idx = data.train_indices(get_protocol("finetune"), ev.seeds[0], ev.max_train_images)
    if len(rows_idx) > max_images:
        rows_idx = np.sort(np.random.default_rng(config.data.split_seed).choice(rows_idx, max_images, replace=False))
    images = data.train.images[torch.as_tensor(rows_idx)]
    labels = data.strata()[rows_idx]
    groups = np.asarray(data.train_scans)[rows_idx] if data.train_scans is not None else np.arange(len(rows_idx))
    if len(np.unique(labels)) < 2:
        raise DataError(f"rtl advise: the training split of {task} has one class only; nothing to rank on.")
    pools: dict[str, torch.Tensor | None] = {}
    rows = []
    for name in inits:
        start = time.perf_counter()
        details = ev.init_details.get(name)
        encoder, info = load_init(
            name, config.study, config.pretrain.backbone, ev.seeds[0], details.model_dump() if details else None
        )
        feats = _features(encoder, images, info["mean"], info["std"])
        row = {
            "task": task,
            "init": name,
            "label": info.get("label"),
            "domain": info.get("domain"),
            "knn": knn_accuracy(feats, labels, groups, k=20),
            "probe": probe_accuracy(feats, labels, groups, shots=10),
            "logme": logme(feats, labels),
            "domain_distance": np.nan,
            "n_images": len(labels),
        }
        init = parse_init(name)
        pool_name = init.pool if init.ours else info.get("domain")  # ours: its own pool; others: their domain's
        if pool_name:
            if pool_name not in pools:
                pools[pool_name] = _pool_images(config, pool_name, size)
            if pools[pool_name] is not None:
                pool_feats = _features(encoder, pools[pool_name], info["mean"], info["std"])
                row["domain_distance"] = frechet_distance(feats, pool_feats)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    table = pd.DataFrame(rows)
    for score in RANKED_BY + ("domain_distance",):
        table[f"{score}_rank"] = table[score].rank(ascending=score in LOWER_IS_BETTER, method="average")
    table["advisor"] = -table[[f"{s}_rank" for s in RANKED_BY]].mean(axis=1)  # higher is better, like the others
    table["advisor_rank"] = table["advisor"].rank(ascending=False, method="min")
    return table.sort_values("advisor_rank").reset_index(drop=True)


def recommendation(table: pd.DataFrame) -> dict:
    """The predicted best init and how close the runner-up is (by the advisor's mean rank)."""
    ordered = table.sort_values("advisor", ascending=False)
    best, second = ordered.iloc[0], ordered.iloc[1]
    return {
        "task": best["task"],
        "best": best["init"],
        "runner_up": second["init"],
        "margin_mean_rank": float(best["advisor"] - second["advisor"]),
        "agree": [s for s in RANKED_BY if ordered.loc[ordered[s].idxmax(), "init"] == best["init"]],
    }


# ------------------------------------------------------------------------------------------------ validation
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


def measured_table(config) -> pd.DataFrame:
    """Mean primary metric per task × protocol × init of the study's current runs."""
    from rtl_core.analysis.claims import current_results
    from rtl_core.paths import results_dir
    from rtl_core.results import results_table

    root = results_dir(config.study)
    if not root.is_dir():
        return pd.DataFrame(columns=["task", "protocol", "init", "value"])
    results = current_results(config, results_table(root=root))
    if results.empty:
        return pd.DataFrame(columns=["task", "protocol", "init", "value"])
    primary = results[results["primary"]]
    return primary.groupby(["task", "protocol", "init"], as_index=False)["value"].mean()


def advisor_dir(config) -> Path:
    from rtl_core.paths import study_dir

    return study_dir("analysis", config.study) / "advisor"


def study_advice(config, tasks: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Scores of every task of the study, their validation on its finished grid, and the summary; written to
    ``analysis/<study>/advisor/`` (scores.csv, validation.csv, summary.json)."""
    from rtl_core.io import write_json

    tasks = list(tasks or config.evaluate.tasks)
    scores = pd.concat([advise(config, task) for task in tasks], ignore_index=True)
    measured = measured_table(config)
    table, summary = validate(scores, measured, {t: task_domain(config, t) for t in tasks})
    summary["seconds_per_task"] = float(scores.groupby("task")["seconds"].sum().mean())
    out = advisor_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "scores.csv", index=False)
    table.to_csv(out / "validation.csv", index=False)
    write_json(out / "summary.json", summary)
    return scores, table, summary


def load_study_advice(config) -> tuple[pd.DataFrame | None, pd.DataFrame | None, dict[str, float]]:
    """What :func:`study_advice` wrote for the study (Nones and {} before it ran)."""
    import json

    out = advisor_dir(config)
    read = lambda name: pd.read_csv(out / name) if (out / name).is_file() else None  # noqa: E731
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    return read("scores.csv"), read("validation.csv"), summary


def bench_figures(summary: dict[str, float]) -> dict[str, float]:
    """The ``advisor.*`` figures of ``bench.json`` from a validation summary."""
    get = lambda key: round(float(summary[key]), 4) if key in summary else None  # noqa: E731
    figures = {
        "advisor.top1_agreement": get("advisor.top1"),
        "advisor.kendall_tau": get("advisor.kendall_tau"),
        "advisor.top1_ci_low": get("advisor.top1_ci_low"),
        "advisor.top1_ci_high": get("advisor.top1_ci_high"),
        "advisor.kendall_tau_ci_low": get("advisor.kendall_tau_ci_low"),
        "advisor.kendall_tau_ci_high": get("advisor.kendall_tau_ci_high"),
        "advisor.baseline_natural_top1": get("baseline_natural.top1"),
        "advisor.baseline_domain_top1": get("baseline_domain.top1"),
        "advisor.seconds_per_task": get("seconds_per_task"),
        "advisor.cells": get("advisor.cells"),
        "advisor.tasks": get("tasks"),
    }
    for score in RANKED_BY + ("domain_distance",):
        figures[f"advisor.{score}_top1"] = get(f"{score}.top1")
        figures[f"advisor.{score}_kendall_tau"] = get(f"{score}.kendall_tau")
    return {k: v for k, v in figures.items() if v is not None}


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


def _share(value: float | None) -> str:
    """A top-1 share or τ for a sentence; ``n/a`` where there is none (e.g. no init of a baseline's domain)."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"


def validated_line(summary: dict[str, float], study: str) -> str:
    """One sentence on how often the advisor was right, to print beside any recommendation."""
    if "advisor.top1" not in summary:
        return (
            f"Not validated: study {study!r} has no finished grid to check the advisor against "
            "(run `make reproduce` or `rtl reproduce --config …`; the demo study's figures are in docs/advisor.md)."
        )
    shortfall = validation_shortfall(summary)
    if shortfall:
        return f"Not validated on study {study!r}: {shortfall}."

    def ci(key: str) -> str:
        low, high = summary.get(f"{key}_ci_low"), summary.get(f"{key}_ci_high")
        return f" (95 % CI {low:.2f}–{high:.2f})" if low is not None else ""

    return (
        f"Validated on study {study!r} ({int(summary.get('advisor.cells', 0))} task × protocol cells of "
        f"{int(summary.get('tasks', 0))} tasks): top-1 agreement {summary['advisor.top1']:.2f}{ci('advisor.top1')}, "
        f"Kendall τ {_share(summary.get('advisor.kendall_tau'))}{ci('advisor.kendall_tau')}; baselines: "
        "always the "
        f"natural-image init {_share(summary.get('baseline_natural.top1'))}, the task's own domain "
        f"{_share(summary.get('baseline_domain.top1'))}."
    )


def validation_note(config) -> str:
    """How often the advisor was right: on this study's grid when it has one, else on the demo study (the
    ``advisor.*`` figures of ``reports/bench.json``), said which."""
    _, _, summary = load_study_advice(config)
    if "advisor.top1" in summary and not validation_shortfall(summary):
        return validated_line(summary, config.study)
    own = (
        f"Study {config.study!r} is not validated: {validation_shortfall(summary)}. "
        if "advisor.top1" in summary
        else f"Study {config.study!r} has no validation of its own yet (no finished grid). "
    )
    import json

    from rtl_core.paths import BENCH_JSON, bench_json

    bench: dict = {}
    for source in dict.fromkeys((bench_json(), BENCH_JSON)):  # this output folder's figures, else the committed ones
        try:
            bench = json.loads(source.read_text()) if source.is_file() else {}
        except json.JSONDecodeError:
            bench = {}
        if "advisor.top1_agreement" in bench:
            break
    if "advisor.top1_agreement" not in bench:
        return validated_line(summary, config.study) if "advisor.top1" in summary else validated_line({}, config.study)
    demo = {
        "advisor.top1": bench["advisor.top1_agreement"],
        "advisor.kendall_tau": bench.get("advisor.kendall_tau", float("nan")),
        "advisor.cells": bench.get("advisor.cells", 0),
        "tasks": bench.get("advisor.tasks", 0),
        "baseline_natural.top1": bench.get("advisor.baseline_natural_top1", float("nan")),
        "baseline_domain.top1": bench.get("advisor.baseline_domain_top1", float("nan")),
    }
    for key in ("top1", "kendall_tau"):
        for side in ("low", "high"):
            if f"advisor.{key}_ci_{side}" in bench:
                demo[f"advisor.{key}_ci_{side}"] = bench[f"advisor.{key}_ci_{side}"]
    return own + validated_line(demo, "default (the demo study, reports/bench.json)")


# ------------------------------------------------------------------------------------------------ report views
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
