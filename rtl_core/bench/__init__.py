"""``make bench``: throughput and memory figures, printed and merged into ``reports/bench.json``.

Each section runs in a fresh child process so its peak memory is its own; ``reports/bench.json`` is a flat
JSON object whose keys are ``<section>.<figure>``, merged with what earlier runs and other sections wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from rtl_core.io import write_json
from rtl_core.paths import REPO_ROOT

BENCH_JSON = REPO_ROOT / "reports" / "bench.json"


def merge_figures(figures: dict[str, float | int | str], path: Path = BENCH_JSON) -> dict:
    """Merge ``figures`` into the flat JSON object at ``path`` (atomically) and return the merged object."""
    current = {}
    if path.is_file():
        try:
            current = json.loads(path.read_text())
        except json.JSONDecodeError:
            current = {}
    current.update(figures)
    write_json(path, current)
    return current
