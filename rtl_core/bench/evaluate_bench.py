"""Evaluation benchmark: seconds per fine-tune epoch, per run by protocol, the whole ``default`` grid
(extrapolated from a measured subset), and the share of time spent outside the model (data, metrics, I/O).

Runs in a child process with a temporary output root, so the figures include loading the tasks and nothing it
writes touches real results. The encoder checkpoints there are randomly initialised stand-ins: a run's cost does
not depend on the weights' values.

Measured subset: for every task of the default grid, the ``ssl:ct:simclr`` init with seed 42 under each protocol,
plus one more ``linear`` seed (features then come from the cache) and one ``scratch`` ``linear`` run (its random
encoder differs per seed, so its features are extracted every time). The grid estimate adds up, per task,
``inits × seeds`` runs of each protocol with these measured times.
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
    from rtl_core.evaluate.runner import RunKey, run_one
    from rtl_core.models.backbones import build_backbone
    from rtl_core.models.checkpoints import encoder_stem, save_encoder

    if threads:
        torch.set_num_threads(threads)
    config = load_config("default")
    ev = config.evaluate
    for pool in ("ct", "natural"):
        save_encoder(encoder_stem(pool, "simclr", "default"), build_backbone(config.pretrain.backbone), config.pretrain.backbone,
                     method="simclr", pool=pool, profile="default")
    start = time.perf_counter()
    for task in ev.tasks:
        load_task_data(task, ev.image_size or config.data.image_size, config.data.split_seed)
    load_seconds = time.perf_counter() - start
    runs = []
    for task in ev.tasks:
        keys = [RunKey(task, "ssl:ct:simclr", p, ev.seeds[0]) for p in ev.protocols]
        if "linear" in ev.protocols:
            keys += [RunKey(task, "ssl:ct:simclr", "linear", ev.seeds[1]), RunKey(task, "scratch", "linear", ev.seeds[0])]
        for key in keys:
            r = run_one(config, key)
            runs.append({"task": task, "init": key.init, "protocol": key.protocol, "seed": key.seed, "wall": r["wall_seconds"],
                         "cpu": r["cpu_seconds"], "model": r["model_seconds"], "epoch_seconds": r["curves"]["epoch_seconds"],
                         "n_train": r["n_train"]})
    grid = {"tasks": ev.tasks, "inits": ev.inits, "protocols": ev.protocols, "seeds": ev.seeds}
    print(json.dumps({"runs": runs, "load_seconds": load_seconds, "grid": grid, "threads": torch.get_num_threads()}))


def estimate_grid_seconds(runs: list[dict], grid: dict, key: str = "wall") -> float:
    """The default grid's time from measured runs (see the module doc for which runs and how)."""
    n_seeds = len(grid["seeds"])
    n_pretrained = sum(1 for i in grid["inits"] if i != "scratch")
    total = 0.0
    for task in grid["tasks"]:
        mine = [r for r in runs if r["task"] == task]
        for protocol in grid["protocols"]:
            first = next(r for r in mine if r["protocol"] == protocol and r["init"] != "scratch")
            if protocol == "linear":
                cached = next(r for r in mine if r["protocol"] == "linear" and r["init"] != "scratch" and r is not first)
                scratch = next(r for r in mine if r["protocol"] == "linear" and r["init"] == "scratch")
                total += n_pretrained * (first[key] + (n_seeds - 1) * cached[key])
                total += ("scratch" in grid["inits"]) * n_seeds * scratch[key]
            else:
                total += len(grid["inits"]) * n_seeds * first[key]
    return total


def run(threads: int | None = None) -> dict[str, float]:
    """Run the benchmark in a child process; print a table; return the figures for ``bench.json``."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, RTL_OUTPUT_DIR=out)
        proc = subprocess.run(
            [sys.executable, "-c", f"from rtl_core.bench.evaluate_bench import _child; _child({threads!r})"],
            env=env, capture_output=True, text=True, check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"evaluation benchmark failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    runs, grid = result["runs"], result["grid"]
    print(f"evaluation (default profile, {result['threads']} torch thread(s)); task loading {result['load_seconds']:.1f} s")
    print(f"  {'task':<14}{'init':<16}{'protocol':<12}{'seed':>5}{'n_train':>8}{'wall s':>8}{'cpu s':>8}{'model s':>9}")
    for r in runs:
        print(f"  {r['task']:<14}{r['init']:<16}{r['protocol']:<12}{r['seed']:>5}{r['n_train']:>8}{r['wall']:>8.2f}{r['cpu']:>8.2f}{r['model']:>9.2f}")
    cls_epochs = [s for r in runs if r["protocol"] == "finetune" and r["task"] != "ct_liver_seg" for s in r["epoch_seconds"]]
    seg_epochs = [s for r in runs if r["protocol"] == "finetune" and r["task"] == "ct_liver_seg" for s in r["epoch_seconds"]]
    grid_wall = estimate_grid_seconds(runs, grid) + result["load_seconds"]
    outside = 1 - estimate_grid_seconds(runs, grid, "model") / grid_wall  # task loading counts as outside
    grid_cpu = estimate_grid_seconds(runs, grid, "cpu") + result["load_seconds"]
    n_runs = len(grid["tasks"]) * len(grid["inits"]) * len(grid["protocols"]) * len(grid["seeds"])
    print(f"  fine-tune epoch: {sum(cls_epochs) / len(cls_epochs):.2f} s (classification), "
          f"{sum(seg_epochs) / max(len(seg_epochs), 1):.2f} s (segmentation)")
    print(f"  default grid ({n_runs} runs), extrapolated from {len(runs)} measured runs: {grid_wall / 60:.1f} min "
          f"(CPU time of the process: {grid_cpu / 60:.1f} min); outside the model: {100 * outside:.1f} % of the grid's time")
    return {
        "evaluate.epoch_seconds": round(sum(cls_epochs) / len(cls_epochs), 3),
        "evaluate.seg_epoch_seconds": round(sum(seg_epochs) / max(len(seg_epochs), 1), 3),
        "evaluate.outside_model_fraction": round(outside, 4),
        "evaluate.grid_seconds": round(grid_wall, 1),
        "evaluate.grid_seconds_kind": "extrapolated",
        "evaluate.grid_runs": n_runs,
        "evaluate.torch_threads": result["threads"],
        **{f"evaluate.run_seconds.{p}": round(sum(r["wall"] for r in runs if r["protocol"] == p and r["init"] != "scratch")
                                            / max(1, sum(1 for r in runs if r["protocol"] == p and r["init"] != "scratch")), 3)
           for p in grid["protocols"]},
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else None), indent=1))
