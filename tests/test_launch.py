"""The grid at scale (rtl_core.evaluate.leases, rtl_core.evaluate.launch): workers share one results folder
through claim files, every run is done exactly once, a killed worker's run is taken over, and submitit's local
executor gives the records the in-process runner gives. Real runs on the pack at tiny sizes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from rtl_core.config import load_config
from rtl_core.evaluate.launch import launch
from rtl_core.evaluate.leases import acquire, claim_path, is_stale
from rtl_core.evaluate.runner import plan_grid, run_grid, work
from rtl_core.results import RunKey

TINY = {
    "image_size": 16,
    "epochs": 1,
    "batch_size": 32,
    "max_train_images": 48,
    "min_steps": 0,
    "linear_epochs": 2,
    "tasks": ["mri_cls"],
    "inits": ["scratch"],
    "protocols": ["finetune", "linear", "lowlabel_1"],
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**launcher):
    return load_config("smoke", overrides={"evaluate": TINY, "launcher": {"cpus_per_run": 1, **launcher}})


def _executions(root) -> Counter:
    lines = (root / "executions.log").read_text().splitlines()
    return Counter(json.loads(line)["run"] for line in lines)


def test_three_local_workers_run_every_run_exactly_once(tmp_path):
    config = tiny(workers=3)
    report = launch(config, "local", keys=plan_grid(config, seeds=[42, 1]), root=tmp_path)
    keys = plan_grid(config, seeds=[42, 1])
    assert sorted(map(str, report.ran)) == sorted(map(str, keys)) and not report.failed
    assert all(key.path(tmp_path).is_file() for key in keys)
    assert _executions(tmp_path) == Counter({str(k): 1 for k in keys})  # no run executed twice
    assert not list(tmp_path.rglob("*.claim.json"))  # every claim released
    again = launch(config, "local", keys=keys, root=tmp_path)
    assert not again.ran and sorted(map(str, again.skipped)) == sorted(map(str, keys))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_claim_is_left_alone_and_a_dead_workers_claim_is_taken_over(tmp_path):
    config = tiny()
    live, dead = RunKey("mri_cls", "scratch", "finetune", 42), RunKey("mri_cls", "scratch", "linear", 42)
    held = acquire(live.path(tmp_path))
    assert held is not None and acquire(live.path(tmp_path)) is None  # this process holds it
    stale = claim_path(dead.path(tmp_path))
    stale.parent.mkdir(parents=True)
    stale.write_text(
        json.dumps(
            {
                "host": os.uname().nodename,
                "pid": _dead_pid(),
                "token": "x",
                "started": time.time(),
                "heartbeat": time.time(),
            }
        )
    )
    assert is_stale(stale, stale_seconds=600)  # its process is gone, however fresh its heartbeat
    report = work(config, [live, dead], tmp_path)
    assert report.busy == [live] and report.ran == [dead]
    assert report.redone == [(dead, "a killed worker's claim was stale")]
    held.release()
    assert not claim_path(live.path(tmp_path)).exists()


def _slow_worker(config_json: str, key: tuple, root: str) -> None:
    from pathlib import Path

    from rtl_core.config import StudyConfig

    work(StudyConfig.model_validate_json(config_json), [RunKey(*key)], Path(root))


def test_a_worker_killed_mid_run_leaves_a_claim_that_another_worker_takes_over(tmp_path):
    config = load_config(
        "smoke", overrides={"evaluate": {**TINY, "epochs": 200}, "launcher": {"heartbeat_seconds": 0.5}}
    )
    key = RunKey("mri_cls", "scratch", "finetune", 42)
    process = mp.get_context("spawn").Process(
        target=_slow_worker, args=(config.model_dump_json(), tuple(vars(key).values()), str(tmp_path))
    )
    process.start()
    claim = claim_path(key.path(tmp_path))
    deadline = time.time() + 120
    while not (tmp_path / "executions.log").is_file() and time.time() < deadline:
        time.sleep(0.2)
    assert claim.is_file(), "the worker never claimed its run"
    time.sleep(1.5)  # a heartbeat or two
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert claim.is_file() and not key.path(tmp_path).exists()  # killed mid-run: claim left, no record
    report = work(tiny(), [key], tmp_path)  # the same run at 1 epoch: only whether it is redone matters here
    assert report.ran == [key] and report.redone and "stale" in report.redone[0][1]
    assert _executions(tmp_path)[str(key)] == 2 and not claim.exists()


def test_submitit_local_executor_gives_the_in_process_records(tmp_path):
    config = tiny(kind="submitit", cluster="local", time_limit_min=10)
    keys = plan_grid(config, protocols=["finetune", "linear"], seeds=[42, 1])
    assert len(keys) == 4
    inline = run_grid(config, protocols=["finetune", "linear"], seeds=[42, 1], root=tmp_path / "inline", progress=False)
    report = launch(config, keys=keys, root=tmp_path / "slurm")
    assert sorted(map(str, report.ran)) == sorted(map(str, inline.ran)) and not report.failed
    for key in keys:
        a = json.loads(key.path(tmp_path / "inline").read_text())
        b = json.loads(key.path(tmp_path / "slurm").read_text())
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-5), str(key)
        assert a["settings_hash"] == b["settings_hash"]
    assert list((tmp_path / "slurm" / ".submitit").rglob("*.out"))  # submitit's own logs, one folder per task
