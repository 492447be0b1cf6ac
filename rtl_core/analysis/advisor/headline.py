"""The advisor's headline figures: the ``advisor.*`` numbers of ``reports/bench.json`` and the one sentence, quoted
beside any recommendation, on how often it was right (on this study's grid, else on the demo study's)."""

from __future__ import annotations

import numpy as np

from rtl_core.analysis.advisor.scores import RANKED_BY
from rtl_core.analysis.advisor.store import load_study_advice
from rtl_core.analysis.advisor.validation import validation_shortfall


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
