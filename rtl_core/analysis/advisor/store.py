"""What the advisor keeps for a study: its scores, their validation and the summary under
``analysis/<study>/advisor/`` (scores.csv, validation.csv, summary.json), and the measured table it is validated on
(from the results store)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rtl_core.analysis.advisor.scores import advise, task_domain
from rtl_core.analysis.advisor.validation import validate

#: Bumped when the stored advice changes meaning (``rtl reproduce`` redoes it).
ADVISOR_VERSION = 2


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
