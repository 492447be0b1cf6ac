"""Data-layer benchmark: time to load every task and pool of the demo pack into memory, and the peak memory.

Runs cold: a fresh process with an empty decode cache (a temporary ``RTL_OUTPUT_DIR``), so the figures
include checksum verification and image decoding.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _child() -> None:
    from rtl_core.data.registry import POOLS, TASKS, load_pool, load_task

    rows = []
    start = time.perf_counter()
    for name in TASKS:
        t0 = time.perf_counter()
        data = load_task(name)
        rows.append(("task", name, len(data), time.perf_counter() - t0))
    for name in POOLS:
        t0 = time.perf_counter()
        pool = load_pool(name)
        rows.append(("pool", name, len(pool), time.perf_counter() - t0))
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "total": total, "peak_mb": peak_mb}))


def run() -> dict[str, float]:
    """Run the benchmark in a child process; print a table; return the figures for ``bench.json``."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, RTL_OUTPUT_DIR=out)
        proc = subprocess.run(
            [sys.executable, "-c", "from rtl_core.bench.data_bench import _child; _child()"],
            env=env, capture_output=True, text=True, check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"data benchmark failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("data layer: load into memory (cold: checksums + decoding; pools include rendering to 64 px)")
    for kind, name, n, seconds in result["rows"]:
        print(f"  {kind:<5}{name:<20}{n:>7} images {seconds:>7.2f} s")
    print(f"  pack total: {sum(r[2] for r in result['rows'] if r[0] == 'task')} task images + pools, "
          f"{result['total']:.1f} s, peak RSS {result['peak_mb']:.0f} MB")
    figures = {"data.load_seconds_total": round(result["total"], 3), "data.peak_rss_mb": round(result["peak_mb"], 1)}
    for kind, name, _, seconds in result["rows"]:
        figures[f"data.load_seconds.{kind}.{name}"] = round(seconds, 3)
    return figures
