"""``make bench``: throughput and memory figures, printed and merged into ``reports/bench.json``
(``$RTL_OUTPUT_DIR/reports/bench.json`` when ``RTL_OUTPUT_DIR`` is set: :func:`rtl_core.paths.bench_json`).

Each section runs in a fresh child process so its peak memory is its own; ``bench.json`` is a flat
JSON object whose keys are ``<section>.<figure>``, merged with what earlier runs and other sections wrote.
"""

from __future__ import annotations

from rtl_core.io import merge_figures
from rtl_core.paths import bench_json

__all__ = ["bench_json", "merge_figures"]
