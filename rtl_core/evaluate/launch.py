"""Launchers of the evaluation grid: this process, N local worker processes, or a SLURM job array (submitit).

Every launcher runs the same function, :func:`rtl_core.evaluate.runner.work`, over the same planned runs; each
worker leases a run before starting it (:mod:`rtl_core.leases`), so workers never run a run twice, a
killed worker's run is taken over once its lease goes stale, and a launcher can be rerun at any time (finished
runs are skipped). As in dinov2's ``submit.py``, the SLURM path submits the function that runs one job locally.

* ``local``: ``launcher.workers`` workers: the launching process is worker 0 and ``workers - 1`` processes are
  spawned; on CPU the machine's cores are split between them, with GPUs each worker takes one (worker i → GPU i
  mod n). Each worker tries the runs longest first (:func:`worker_order`).
* ``submitit``: one array task per unfinished run, with ``launcher.partition``, ``time_limit_min``,
  ``gpus_per_run``, ``cpus_per_run``, ``mem_gb`` and ``array_parallelism``; ``cluster: local`` runs the tasks as
  local processes (how the tests run it without SLURM).

Example::

    report = launch(load_config("default"), kind="local", workers=2)
    print(report.summary())
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from rtl_core.config import StudyConfig
from rtl_core.errors import ConfigError
from rtl_core.evaluate.runner import GridReport, plan_grid, work
from rtl_core.paths import results_dir
from rtl_core.results import RunKey


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _worker(config_json: str, keys: list[tuple], root: str, index: int, threads: int, since: float) -> GridReport:
    """One local worker (a spawned process): its GPU, its share of the CPU threads, then :func:`work`."""
    import torch

    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.cuda.set_device(index % torch.cuda.device_count())
    config = StudyConfig.model_validate_json(config_json)
    runs = worker_order([RunKey(*k) for k in keys], index, config.launcher.workers)
    return work(config, runs, Path(root), raise_errors=False, failed_since=since)


def worker_order(runs: Sequence[RunKey], index: int, workers: int) -> list[RunKey]:
    """The order in which local worker ``index`` of ``workers`` tries ``runs``: longest first, so a grid does not
    end on one worker finishing a long run while the others idle (Graham's longest-processing-time rule).

    Runs that train the encoder come first, on the most data first (fine-tunes, then low-label runs); every
    worker walks that block from its start and takes the next unleased run. The frozen-encoder runs come last,
    each worker starting that block at its own offset, so the seeds of one task and init stay with one worker
    (their features are cached per process) and the workers meet each other's leases rarely.
    """
    from rtl_core.evaluate.protocols import get_protocol

    def cost_rank(key: RunKey) -> tuple[bool, float]:
        protocol = get_protocol(key.protocol)
        return protocol.frozen_encoder, -protocol.data_fraction

    ordered = sorted(runs, key=cost_rank)  # stable: plan order within a rank
    trained = [k for k in ordered if not get_protocol(k.protocol).frozen_encoder]
    frozen = ordered[len(trained) :]
    shift = (index * len(frozen)) // max(1, workers)
    return trained + frozen[shift:] + frozen[:shift]


def run_array_task(config_json: str, key: tuple, root: str) -> GridReport:
    """One SLURM array task (or a local submitit job): lease and run one run."""
    import torch

    config = StudyConfig.model_validate_json(config_json)
    torch.set_num_threads(config.launcher.cpus_per_run)
    return work(config, [RunKey(*key)], Path(root), raise_errors=False)


def launch(
    config: StudyConfig,
    kind: str | None = None,
    workers: int | None = None,
    keys: Sequence[RunKey] | None = None,
    root: Path | None = None,
    progress: bool = True,
) -> GridReport:
    """Run the grid of ``config`` (or ``keys``) with launcher ``kind`` (default ``config.launcher.kind``)."""
    from rtl_core.models.inits import check_checkpoint
    from rtl_core.names import parse_init

    kind = kind or config.launcher.kind
    if workers is not None:
        config = config.model_copy(update={"launcher": config.launcher.model_copy(update={"workers": workers})})
    root = Path(root or results_dir(config.study))
    runs = list(keys) if keys is not None else plan_grid(config)
    for name in dict.fromkeys(k.init for k in runs):
        check_checkpoint(parse_init(name), config.study)
    start = time.perf_counter()
    if kind == "inline":  # the runs are planned and their checkpoints checked above: what run_grid would do again
        return work(config, runs, root, progress=progress)
    if kind == "local":
        report = _launch_local(config, runs, root, progress)
    elif kind == "submitit":
        report = _launch_submitit(config, runs, root)
    else:
        raise ConfigError(f"launcher.kind: {kind!r} is not inline, local or submitit.")
    report.root, report.wall_seconds = root, time.perf_counter() - start
    return report


def _launch_local(config: StudyConfig, runs: list[RunKey], root: Path, progress: bool = False) -> GridReport:
    """``launcher.workers`` workers: this process is worker 0 (its imports and loaded tasks are ready, so it starts
    at once) and ``workers - 1`` spawned processes are the others."""
    import multiprocessing as mp
    import threading
    from concurrent.futures import ProcessPoolExecutor

    import torch

    n = config.launcher.workers
    threads = 1 if torch.cuda.is_available() else _threads_per_worker(n)
    payload = config.model_dump_json()
    keys = [(k.task, k.init, k.protocol, k.seed, k.replicate) for k in runs]
    report = GridReport(root=root)
    since = time.time()
    with ProcessPoolExecutor(max_workers=max(1, n - 1), mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_worker, payload, keys, str(root), i, threads, since) for i in range(1, n)]
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(stop, len(futures) + 1, runs, root, progress), daemon=True)
        watcher.start()
        try:
            report.merge(_in_this_process(config, runs, root, threads, since))
            for future in futures:
                report.merge(future.result())
        except BaseException:  # a signal (Interrupted) or an error here: the spawned workers stop too, not go on
            _stop_workers(pool)
            raise
        finally:
            stop.set()
            watcher.join()
    return _dedupe(report)


def _stop_workers(pool) -> None:
    """Terminate a ProcessPoolExecutor's worker processes (their runs' leases are then stale: a rerun takes them
    over at once on this host)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way before Python 3.14
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _in_this_process(config: StudyConfig, runs: list[RunKey], root: Path, threads: int, since: float) -> GridReport:
    """Worker 0 of a local launch: this process, with its share of the threads (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if torch.cuda.is_available():
            torch.cuda.set_device(0)
        return work(
            config, worker_order(runs, 0, config.launcher.workers), root, raise_errors=False, failed_since=since
        )
    finally:
        torch.set_num_threads(before)


def _watch(stop, workers: int, runs: list[RunKey], root: Path, progress: bool, every: float = 2.0) -> None:
    """A progress bar of records written while the workers run (the workers themselves print nothing)."""
    from tqdm.auto import tqdm

    paths = [k.path(root) for k in runs]
    done_before = sum(p.is_file() for p in paths)
    with tqdm(
        total=len(paths),
        initial=done_before,
        desc=f"rtl evaluate ({workers} workers)",
        unit="run",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        while not stop.wait(every):
            bar.update(sum(p.is_file() for p in paths) - bar.n)
        bar.update(sum(p.is_file() for p in paths) - bar.n)


def _launch_submitit(config: StudyConfig, runs: list[RunKey], root: Path) -> GridReport:
    import submitit

    from rtl_core.evaluate.runner import current_encoders, settings_hashes
    from rtl_core.results import record_problem

    lc = config.launcher
    # The compute nodes resolve `precision: auto` on their own hardware: a record of any resolution is finished here
    # (each array task checks again with its own device's hash before it runs).
    hashes = set(settings_hashes(config).values())
    encoders = current_encoders(config, runs)  # a record of another encoder is not finished
    report = GridReport(root=root)
    todo = []
    for key in runs:
        done = any(record_problem(key.path(root), key, h, encoders[key.init, key.replicate]) is None for h in hashes)
        (report.skipped if done else todo).append(key)
    if not todo:
        return report
    folder = Path(lc.folder) if lc.folder else root / ".submitit"
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=lc.cluster)
    parameters = {"timeout_min": lc.time_limit_min, "cpus_per_task": lc.cpus_per_run, "name": f"rtl-{config.study}"}
    if lc.gpus_per_run:
        parameters["gpus_per_node"] = lc.gpus_per_run
    if lc.mem_gb:
        parameters["mem_gb"] = lc.mem_gb
    if executor.cluster == "slurm":
        parameters["slurm_array_parallelism"] = lc.array_parallelism
        if lc.partition:
            parameters["slurm_partition"] = lc.partition
    executor.update_parameters(**parameters)
    payload = config.model_dump_json()
    jobs = executor.map_array(
        run_array_task,
        [payload] * len(todo),
        [(k.task, k.init, k.protocol, k.seed, k.replicate) for k in todo],
        [str(root)] * len(todo),
    )
    for job in jobs:
        try:
            report.merge(job.result())
        except Exception as exc:  # a task that died outside the run (node failure, time limit): say where its log is
            report.failed.append(
                (RunKey(*job.submission().args[1]), f"{type(exc).__name__}: {exc}; logs in {job.paths.folder}")
            )
    return _dedupe(report)


def _dedupe(report: GridReport) -> GridReport:
    """A run one worker ran is not also 'busy' or 'skipped' for the others."""
    done = set(report.ran) | {k for k, _ in report.failed}
    report.failed = list({str(k): (k, w) for k, w in report.failed}.values())
    report.busy = [k for k in dict.fromkeys(report.busy) if k not in done]
    report.skipped = [k for k in dict.fromkeys(report.skipped) if k not in done]
    return report
