"""The grid at scale (rtl_core.leases, rtl_core.evaluate.launch): workers share one results folder
through lease files, every run is done exactly once, a killed worker's run is taken over, and submitit's local
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
from rtl_core.evaluate.runner import plan_grid, run_grid, work
from rtl_core.leases import acquire, is_stale, lease_path
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


@pytest.mark.slow
def test_three_local_workers_run_every_run_exactly_once(tmp_path):
    config = tiny(workers=3)
    report = launch(config, "local", keys=plan_grid(config, seeds=[42, 1]), root=tmp_path)
    keys = plan_grid(config, seeds=[42, 1])
    assert sorted(map(str, report.ran)) == sorted(map(str, keys)) and not report.failed
    assert all(key.path(tmp_path).is_file() for key in keys)
    assert _executions(tmp_path) == Counter({str(k): 1 for k in keys})  # no run executed twice
    assert not list(tmp_path.rglob("*.lease.json"))  # every lease released
    again = launch(config, "local", keys=keys, root=tmp_path)
    assert not again.ran and sorted(map(str, again.skipped)) == sorted(map(str, keys))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_lease_is_left_alone_and_a_dead_workers_lease_is_taken_over(tmp_path):
    config = tiny()
    live, dead = RunKey("mri_cls", "scratch", "finetune", 42), RunKey("mri_cls", "scratch", "linear", 42)
    held = acquire(live.path(tmp_path))
    assert held is not None and acquire(live.path(tmp_path)) is None  # this process holds it
    stale = lease_path(dead.path(tmp_path))
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
    assert report.redone == [(dead, "a killed worker's lease was stale")]
    held.release()
    assert not lease_path(live.path(tmp_path)).exists()


def _slow_worker(config_json: str, key: tuple, root: str) -> None:
    from pathlib import Path

    from rtl_core.config import StudyConfig

    work(StudyConfig.model_validate_json(config_json), [RunKey(*key)], Path(root))


def test_a_worker_killed_mid_run_leaves_a_lease_that_another_worker_takes_over(tmp_path):
    config = load_config(
        "smoke", overrides={"evaluate": {**TINY, "epochs": 200}, "launcher": {"heartbeat_seconds": 0.5}}
    )
    key = RunKey("mri_cls", "scratch", "finetune", 42)
    process = mp.get_context("spawn").Process(
        target=_slow_worker, args=(config.model_dump_json(), tuple(vars(key).values()), str(tmp_path))
    )
    process.start()
    lease = lease_path(key.path(tmp_path))
    deadline = time.time() + 120
    while not (tmp_path / "executions.log").is_file() and time.time() < deadline:
        time.sleep(0.2)
    assert lease.is_file(), "the worker never leased its run"
    time.sleep(1.5)  # a heartbeat or two
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert lease.is_file() and not key.path(tmp_path).exists()  # killed mid-run: lease left, no record
    report = work(tiny(), [key], tmp_path)  # the same run at 1 epoch: only whether it is redone matters here
    assert report.ran == [key] and report.redone and "stale" in report.redone[0][1]
    assert _executions(tmp_path)[str(key)] == 2 and not lease.exists()


@pytest.mark.slow
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


@pytest.fixture()
def sigterm_fails_the_test():
    """A SIGTERM that `rtl` leaves unhandled fails the test instead of killing the test session."""

    def unhandled(signum, frame):
        raise AssertionError("SIGTERM reached the test's handler: `rtl` did not handle it")

    previous = signal.signal(signal.SIGTERM, unhandled)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_signal_stops_rtl_evaluate_with_143_keeping_the_finished_records(
    tmp_path, monkeypatch, capsys, sigterm_fails_the_test
):
    """A real SIGTERM to this process while `rtl evaluate` trains its second run: exit 143, one line naming the
    finished record, the stopped run's lease released and no failure written for it."""
    import rtl_core.evaluate.runner as runner
    from rtl_core.cli import main

    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    config = tmp_path / "study.yaml"
    settings = {"profile": "smoke", "study": "stopped", "evaluate": {**TINY, "protocols": ["linear"], "seeds": [42, 1]}}
    config.write_text(json.dumps(settings))
    real_run_one, started = runner.run_one, []

    def second_run_is_stopped(config, key, *args, **kwargs):
        started.append(key)
        if len(started) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler raises before this ends
        return real_run_one(config, key, *args, **kwargs)

    monkeypatch.setattr(runner, "run_one", second_run_is_stopped)
    assert main(["evaluate", "--config", str(config), "--no-progress"]) == 143
    root = tmp_path / "results" / "stopped"
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"rtl evaluate: stopped by SIGTERM; kept the records of the 1 finished run(s) in {root}")
    assert "rerun the same command to resume" in line and len(started) == 2
    assert started[0].path(root).is_file() and not started[1].path(root).exists()
    assert not list(root.rglob("*.lease.json")) and not list(root.rglob("*.failed.txt"))


def test_a_signal_stops_rtl_reproduce_at_its_step_with_143(tmp_path, monkeypatch, capsys, sigterm_fails_the_test):
    """`rtl reproduce` stops at the step the signal came in (the steps after it never run) and says which."""
    import rtl_core.pipeline.run as pipeline
    from rtl_core.cli import main

    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    ran = []

    def stopped_at_pretraining(config, threads=1):
        def pretraining() -> None:
            ran.append("pretrain")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)

        return [
            pipeline.Step("data: save every task's split", lambda: ran.append("data")),
            pipeline.Step("pretrain: simclr on ct", pretraining),
            pipeline.Step("evaluate: downstream grid", lambda: ran.append("evaluate")),
        ]

    monkeypatch.setattr(pipeline, "study_steps", stopped_at_pretraining)
    monkeypatch.setattr(pipeline, "notebook_steps", lambda *args, **kwargs: [])
    monkeypatch.setattr(pipeline, "_plan", lambda *args, **kwargs: None)  # no calibration of the stand-in steps
    assert main(["reproduce", "--profile", "smoke"]) == 143
    assert ran == ["data", "pretrain"]
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("rtl reproduce: stopped by SIGTERM during step 2/3 (pretrain: simclr on ct); kept step 1")
