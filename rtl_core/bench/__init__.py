"""``make bench``: throughput and memory figures, printed and merged into ``reports/bench.json``.

Each section runs in a fresh child process so its peak memory is its own; ``reports/bench.json`` is a flat
JSON object whose keys are ``<section>.<figure>``, merged with what earlier runs and other sections wrote.
"""

from __future__ import annotations

from rtl_core.io import merge_figures
from rtl_core.paths import BENCH_JSON

__all__ = ["BENCH_JSON", "merge_figures"]
