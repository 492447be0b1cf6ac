"""Advisor benchmark: the transfer advisor's validation on the ``default`` study's finished grid (top-1 agreement,
Kendall τ, baselines, seconds per task; :mod:`rtl_core.analysis.advisor`). Needs ``make reproduce`` to have run
the grid; without it the section says so and records nothing."""

from __future__ import annotations


def run() -> dict[str, float]:
    from rtl_core.analysis.advisor import bench_figures, measured_table, study_advice, validated_line
    from rtl_core.config import load_config

    config = load_config("default")
    if measured_table(config).empty:
        print("advisor: skipped, the default study has no finished runs (run `make reproduce` first)")
        return {}
    _, _, summary = study_advice(config)
    print("advisor: " + validated_line(summary, config.study) + f" {summary['seconds_per_task']:.1f} s per task.")
    return bench_figures(summary)
