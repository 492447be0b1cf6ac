"""Evaluation benchmark: seconds per fine-tune epoch and per run by protocol, the share of time spent outside the
model (data, metrics, I/O), and the grid's throughput: the current path against the old one, and 2 local workers
against 1 (:func:`grid_throughput`). The whole grid's time is measured by ``make reproduce``
(``reproduce.evaluate_minutes``),
not extrapolated.

Runs in a child process with a temporary output root, so the figures include loading the tasks and nothing it
writes touches real results. The encoder checkpoints there are randomly initialised stand-ins: a run's cost does
not depend on the weights' values.

Measured subset: for every task of the default grid, the ``ssl:ct:simclr`` init with seed 42 under each protocol,
plus one more ``linear`` seed (features then come from the cache) and one ``scratch`` ``linear`` run (its random
encoder differs per seed, so its features are extracted every time).

Grid throughput (:func:`grid_throughput`), runs per minute on a quarter of the ``default`` grid (every task × init
× protocol of its first seed: the grid's mix of protocols), each path from a fresh results folder with the
decoded-task cache warm, timed from launch to the last record, worker start-up and task loading
included:

* **old**: today's path before issue 13: float32, NCHW, per-tensor AdamW, one process using every core;
* **new**: ``evaluate.precision: auto`` (bf16 on CPUs with bf16 units), channels_last, fused AdamW, run by
  ``launcher.kind: local`` with one worker per core (threads split), which is how ``make reproduce`` runs it;
* **1 worker**: the new compute path in one local worker with every core, for ``evaluate.parallel_efficiency``
  = (new rate / 1-worker rate) / workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def _child(threads: int | None) -> None:
    import torch

    from rtl_core.config import load_config
    from rtl_core.evaluate.data import load_task_data
    from rtl_core.evaluate.runner import run_one
    from rtl_core.models.backbones import build_backbone
    from rtl_core.models.checkpoints import save_encoder
    from rtl_core.paths import encoder_stem
    from rtl_core.results import RunKey

    if threads:
        torch.set_num_threads(threads)
    config = load_config("default")
    ev = config.evaluate
    for pool in ("ct", "natural"):
        save_encoder(
            encoder_stem(pool, "simclr", "default"),
            build_backbone(config.pretrain.backbone),
            config.pretrain.backbone,
            method="simclr",
            pool=pool,
            profile="default",
        )
    start = time.perf_counter()
    for task in ev.tasks:
        load_task_data(task, ev.image_size or config.data.image_size, config.data.split_seed)
    load_seconds = time.perf_counter() - start
    runs = []
    for task in ev.tasks:
        keys = [RunKey(task, "ssl:ct:simclr", p, ev.seeds[0]) for p in ev.protocols]
        if "linear" in ev.protocols:
            keys += [
                RunKey(task, "ssl:ct:simclr", "linear", ev.seeds[1]),
                RunKey(task, "scratch", "linear", ev.seeds[0]),
            ]
        for key in keys:
            r = run_one(config, key)
            precision = r["precision"]
            runs.append(
                {
                    "task": task,
                    "init": key.init,
                    "protocol": key.protocol,
                    "seed": key.seed,
                    "wall": r["wall_seconds"],
                    "cpu": r["cpu_seconds"],
                    "model": r["model_seconds"],
                    "epoch_seconds": r["curves"]["epoch_seconds"],
                    "n_train": r["n_train"],
                }
            )
    grid = {"tasks": ev.tasks, "inits": ev.inits, "protocols": ev.protocols, "seeds": ev.seeds}
    print(
        json.dumps(
            {
                "runs": runs,
                "load_seconds": load_seconds,
                "grid": grid,
                "threads": torch.get_num_threads(),
                "precision": precision,
            }
        )
    )


def run(threads: int | None = None) -> dict[str, float]:
    """Run the benchmark in a child process; print a table; return the figures for ``bench.json``."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, RTL_OUTPUT_DIR=out)
        proc = subprocess.run(
            [sys.executable, "-c", f"from rtl_core.bench.evaluate_bench import _child; _child({threads!r})"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"evaluation benchmark failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    runs, grid = result["runs"], result["grid"]
    print(
        f"evaluation (default profile, {result['threads']} torch thread(s)); task loading "
        f"{result['load_seconds']:.1f} s"
    )
    print(f"  {'task':<14}{'init':<16}{'protocol':<12}{'seed':>5}{'n_train':>8}{'wall s':>8}{'cpu s':>8}{'model s':>9}")
    for r in runs:
        print(
            f"  {r['task']:<14}{r['init']:<16}{r['protocol']:<12}{r['seed']:>5}{r['n_train']:>8}"
            f"{r['wall']:>8.2f}{r['cpu']:>8.2f}{r['model']:>9.2f}"
        )
    cls_epochs = [
        s for r in runs if r["protocol"] == "finetune" and r["task"] != "ct_liver_seg" for s in r["epoch_seconds"]
    ]
    seg_epochs = [
        s for r in runs if r["protocol"] == "finetune" and r["task"] == "ct_liver_seg" for s in r["epoch_seconds"]
    ]
    wall = sum(r["wall"] for r in runs) + result["load_seconds"]
    outside = 1 - sum(r["model"] for r in runs) / wall  # task loading counts as outside
    print(
        f"  fine-tune epoch: {sum(cls_epochs) / len(cls_epochs):.2f} s (classification), "
        f"{sum(seg_epochs) / max(len(seg_epochs), 1):.2f} s (segmentation); outside the model: {100 * outside:.1f} % "
        f"of these runs' time (precision {result['precision']})"
    )
    figures = {
        "evaluate.epoch_seconds": round(sum(cls_epochs) / len(cls_epochs), 3),
        "evaluate.seg_epoch_seconds": round(sum(seg_epochs) / max(len(seg_epochs), 1), 3),
        "evaluate.outside_model_fraction": round(outside, 4),
        "evaluate.precision": result["precision"],
        "evaluate.torch_threads": result["threads"],
        **{
            f"evaluate.run_seconds.{p}": round(
                sum(r["wall"] for r in runs if r["protocol"] == p and r["init"] != "scratch")
                / max(1, sum(1 for r in runs if r["protocol"] == p and r["init"] != "scratch")),
                3,
            )
            for p in grid["protocols"]
        },
    }
    figures.update(grid_throughput())
    return figures


OLD_PATH = {"precision": "32", "channels_last": False, "fused_optimizer": False, "single_pixel_matmul": False}


def sample_keys(config, full: bool = False) -> list:
    """The measured sample of the grid (module doc): every task × init × protocol of its first seed, or the whole
    grid (``full``: ``rtl bench --only grid_full``, about 15 minutes on 2 cores)."""
    from rtl_core.evaluate.runner import plan_grid

    return plan_grid(config) if full else plan_grid(config, seeds=config.evaluate.seeds[:1])


def _grid_child(rounds: int, full: bool = False) -> None:
    import statistics
    from pathlib import Path

    import torch

    from rtl_core.config import load_config
    from rtl_core.evaluate import classification, data
    from rtl_core.evaluate.launch import launch
    from rtl_core.models.backbones import build_backbone
    from rtl_core.models.checkpoints import save_encoder
    from rtl_core.paths import encoder_stem, output_root

    base = load_config("default")
    for pool in ("ct", "natural"):
        save_encoder(
            encoder_stem(pool, "simclr", "default"),
            build_backbone(base.pretrain.backbone),
            base.pretrain.backbone,
            method="simclr",
            pool=pool,
            profile="default",
        )
    size = base.evaluate.image_size or base.data.image_size
    for task in base.evaluate.tasks:  # warm the decoded-task cache on disk (a grid decodes each task once)
        data.load_task_data(task, size, base.data.split_seed, base.data)
    cores = os.cpu_count() or 1
    keys = sample_keys(base, full)

    def timed(name: str, evaluate: dict, kind: str, workers: int, round_: int) -> float:
        data._load_task_data.cache_clear()  # every path loads its tasks itself (from the warm disk cache)
        classification._FEATURE_CACHE.clear()
        config = load_config(
            "default", overrides={"evaluate": evaluate, "launcher": {"kind": kind, "workers": workers}}
        )
        torch.set_num_threads(cores)
        start = time.perf_counter()
        report = launch(config, keys=keys, root=Path(output_root()) / "bench_grid" / f"{name}{round_}", progress=False)
        seconds = time.perf_counter() - start
        if report.failed or len(report.ran) != len(keys):
            raise RuntimeError(f"grid benchmark ({name}): {report.summary()}; {report.failed[:2]}")
        return len(keys) / seconds * 60

    rates: dict[str, list[float]] = {"old": [], "new": [], "one_worker": []}
    for r in range(rounds):  # alternate the paths, so a noisy neighbour slows each of them alike
        rates["old"].append(timed("old", OLD_PATH, "inline", 1, r))
        rates["new"].append(timed("new", {}, "local", cores, r))
        if not full:
            rates["one_worker"].append(timed("one_worker", {}, "local", 1, r))
    speedups = [n / o for n, o in zip(rates["new"], rates["old"])]
    parallel = [n / w / cores for n, w in zip(rates["new"], rates["one_worker"])] or [float("nan")]
    rates["one_worker"] = rates["one_worker"] or [float("nan")]
    print(
        json.dumps(
            {
                "runs": len(keys),
                "workers": cores,
                "rates": {k: statistics.median(v) for k, v in rates.items()},
                "speedup": statistics.median(speedups),
                "speedup_min": min(speedups),
                "speedup_max": max(speedups),
                "efficiency": statistics.median(parallel),
                "efficiency_min": min(parallel),
                "efficiency_max": max(parallel),
            }
        )
    )


def grid_full() -> dict[str, float]:
    """The whole default grid, old path then new path, once each (``rtl bench --only grid_full``)."""
    figures = grid_throughput(rounds=1, full=True)
    keep = (
        "evaluate.grid_runs_per_minute_old",
        "evaluate.grid_runs_per_minute",
        "evaluate.grid_speedup",
        "evaluate.grid_sample_runs",
    )
    return {k.replace("evaluate.grid", "evaluate.full_grid"): v for k, v in figures.items() if k in keep}


def grid_throughput(rounds: int = 2, full: bool = False) -> dict[str, float]:
    """Runs per minute of the old and the new grid path on the same runs, and 2 workers vs 1 (module doc)."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, RTL_OUTPUT_DIR=out)
        code = f"from rtl_core.bench.evaluate_bench import _grid_child; _grid_child({rounds}, {full})"
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"grid benchmark failed:\n{proc.stderr[-4000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    rates = r["rates"]
    print(
        f"  grid throughput on {r['runs']} runs of the default grid (median of {rounds} alternating rounds): old path "
        f"(fp32, one process) {rates['old']:.1f} runs/min, new path ({r['workers']} local workers, bf16 where the CPU "
        f"has it, fused AdamW) {rates['new']:.1f} runs/min -> {r['speedup']:.2f}x ({r['speedup_min']:.2f}-"
        f"{r['speedup_max']:.2f}x); 1 worker {rates['one_worker']:.1f} runs/min -> parallel efficiency "
        f"{r['efficiency']:.2f} ({r['efficiency_min']:.2f}-{r['efficiency_max']:.2f})"
    )
    return {
        "evaluate.grid_runs_per_minute_old": round(rates["old"], 2),
        "evaluate.grid_runs_per_minute": round(rates["new"], 2),
        "evaluate.grid_runs_per_minute_one_worker": round(rates["one_worker"], 2),
        "evaluate.grid_speedup": round(r["speedup"], 2),
        "evaluate.grid_speedup_min": round(r["speedup_min"], 2),
        "evaluate.grid_speedup_max": round(r["speedup_max"], 2),
        "evaluate.parallel_efficiency": round(r["efficiency"], 2),
        "evaluate.parallel_workers": r["workers"],
        "evaluate.grid_sample_runs": r["runs"],
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else None), indent=1))
