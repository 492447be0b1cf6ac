"""The multi-seed runner: the grid init × task × protocol × seed, one record per run in the results store.

Records are written and checked by :mod:`rtl_core.results` (one JSON file per run, atomically, a pydantic
schema). Rerunning the grid skips every run whose record is *complete*: it parses, validates, says
``"status": "complete"``, names the same run, and was made with the same run settings (:func:`settings_hash`: the
whole config apart from which tasks, inits,
protocols and seeds make up the grid). Anything else (no file, a half-written or corrupted file, a record of
other settings) is redone, so a killed grid resumes where it stopped and never counts a run twice. So is a record
made with another encoder than the one its init loads now (:func:`encoder_identity`: the weights file's SHA-256,
e.g. after ``rtl pretrain`` replaced a checkpoint): one arm never mixes two encoders.

Example::

    config = load_config("smoke")
    report = run_grid(config, tasks=["mri_cls"], inits=["scratch"])
    print(report.ran, report.skipped)
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtl_core.config import StudyConfig
from rtl_core.errors import CheckpointError, ConfigError
from rtl_core.evaluate.classification import run_classification
from rtl_core.evaluate.compute import ComputePlan, resolve_precision
from rtl_core.evaluate.context import RunContext
from rtl_core.evaluate.data import load_task_data
from rtl_core.evaluate.protocols import get_protocol
from rtl_core.evaluate.segmentation import run_segmentation
from rtl_core.models.checkpoints import checkpoint_paths
from rtl_core.models.contracts import CONTRACT_KEYS
from rtl_core.models.devices import default_device
from rtl_core.models.inits import check_checkpoint, check_encoder_input, load_init
from rtl_core.names import init_slug, parse_init
from rtl_core.paths import results_dir
from rtl_core.provenance import provenance, settings_digest
from rtl_core.results import (
    RECORD_VERSION,
    STALE_ENCODER,
    RunKey,
    file_digest,
    record_paths,
    record_problem,
    write_record,
)

log = logging.getLogger(__name__)


@dataclass
class GridReport:
    """What :func:`run_grid` (or a launcher's workers together) did."""

    ran: list[RunKey] = field(default_factory=list)
    skipped: list[RunKey] = field(default_factory=list)
    redone: list[tuple[RunKey, str]] = field(default_factory=list)  # (run, why its old record or lease was not used)
    failed: list[tuple[RunKey, str]] = field(default_factory=list)  # (run, where its traceback is)
    busy: list[RunKey] = field(default_factory=list)  # held by another live worker when this one came to it
    root: Path | None = None
    wall_seconds: float = 0.0

    def merge(self, other: GridReport) -> GridReport:
        for name in ("ran", "skipped", "redone", "failed", "busy"):
            getattr(self, name).extend(getattr(other, name))
        return self

    @property
    def redone_for_encoder(self) -> list[RunKey]:
        """Runs redone because their record was made with another encoder than their init loads now."""
        return [key for key, why in self.redone if why.startswith(STALE_ENCODER)]

    def summary(self) -> str:
        busy = f", {len(self.busy)} held by other workers (not run here)" if self.busy else ""
        stale = len(self.redone_for_encoder)
        because = f" ({stale} because their encoder changed since they ran)" if stale else ""
        return (
            f"{len(self.ran)} run(s) done, {len(self.skipped)} already finished, {len(self.redone)} redone{because}, "
            f"{len(self.failed)} failed{busy}"
        )


def settings_hash(config: StudyConfig, device_type: str | None = None) -> str:
    """Hash of everything that changes a run's result: the config minus the grid's lists and the analysis part, with
    ``evaluate.precision`` resolved on ``device_type`` (default: this process's device), so bf16 and float32 runs
    never count as the same run."""
    values = config.model_dump(mode="json")
    values["evaluate"]["precision"] = resolve_precision(config.evaluate.precision, device_type or default_device().type)
    values.pop("analysis", None)
    values.pop("study", None)  # a name, not a setting
    values.pop("launcher", None)  # where runs execute does not change them
    values["pretrain"].pop("replicates", None)  # how many encoders an arm has; each encoder is named by its record
    for key in ("tasks", "inits", "protocols", "seeds", "replicate_protocols", "replicate_seeds"):
        values["evaluate"].pop(key, None)
    for spec in [*values["data"].get("tasks", {}).values(), *values["data"].get("pools", {}).values()]:
        spec.pop("domain", None)  # a name for the advisor, not a setting of any run
    # Of an init's details only its declared input contract and arch change its runs (labels, domains are names).
    norms = {
        init: {k: d[k] for k in (*CONTRACT_KEYS, "arch") if d.get(k) is not None}
        for init, d in values["evaluate"].pop("init_details", {}).items()
    }
    if any(norms.values()):
        values["evaluate"]["init_normalisation"] = {k: v for k, v in norms.items() if v}
    return settings_digest(values)


def settings_hashes(config: StudyConfig) -> dict[str, str]:
    """The settings hash of ``config``'s runs for each precision ``evaluate.precision`` can resolve to (one for ``32``
    or ``bf16``; both for ``auto``, whose runs differ between a GPU node and a CPU without bf16 units)."""
    if config.evaluate.precision != "auto":
        return {config.evaluate.precision: settings_hash(config)}
    pinned = {
        p: config.model_copy(update={"evaluate": config.evaluate.model_copy(update={"precision": p})})
        for p in ("bf16", "32")
    }
    return {p: settings_hash(c) for p, c in pinned.items()}


def plan_grid(
    config: StudyConfig,
    tasks: Sequence[str] | None = None,
    inits: Sequence[str] | None = None,
    protocols: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[RunKey]:
    """Every run of the grid, ordered task → init → replicate → protocol → seed (so cached features are reused);
    ``seeds`` must be a subset of ``evaluate.seeds`` (the analysis reads those only). An init of ours with K
    replicates (``pretrain.replicates``) is K encoders: replicate 0 runs the whole grid, replicates 1 … K−1 the
    ``evaluate.replicate_protocols`` × ``replicate_seeds`` part of it (all of it when those are unset)."""
    ev = config.evaluate
    tasks, inits = list(tasks or ev.tasks), list(inits or ev.inits)
    protocols, seeds = list(protocols or ev.protocols), list(seeds if seeds is not None else ev.seeds)
    outside = [s for s in seeds if s not in ev.seeds]
    if outside:
        raise ConfigError(
            f"--seeds {' '.join(map(str, outside))}: not in evaluate.seeds of study {config.study!r}, which allows "
            f"{' '.join(map(str, ev.seeds))}. Pick a subset of those, or add the seed to evaluate.seeds in the config "
            "(runs of other seeds are never analysed)."
        )
    for name in inits:
        parse_init(name)
    for name in protocols:
        get_protocol(name)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"evaluate.seeds: {seeds} repeats a seed; each seed is one run.")
    extra_protocols = set(ev.protocols if ev.replicate_protocols is None else ev.replicate_protocols)
    extra_seeds = set(ev.seeds if ev.replicate_seeds is None else ev.replicate_seeds)  # []: replicate 0 only
    keys = []
    for t in tasks:
        for i in inits:
            for r in range(config.pretrain.replicates_of(i)):
                keys += [
                    RunKey(t, i, p, s, r)
                    for p in protocols
                    for s in seeds
                    if r == 0 or (p in extra_protocols and s in extra_seeds)
                ]
    return keys


def encoder_identity(name: str, study: str, replicate: int = 0) -> dict[str, Any]:
    """Which encoder init ``name`` (replicate ``replicate`` of it) loads now, as :class:`rtl_core.results.EncoderId`
    fields: the weights file (ours: the study's checkpoint; ``file:`` inits: the file), its SHA-256 (``None`` while
    the file is missing) and the sidecar's ``run_key``; no file for a random init or torchvision's published weights
    (named, not hashed)."""
    init = parse_init(name)
    if init.kind == "scratch":
        return {"file": None, "sha256": None, "run_key": None, "what": "random init seeded by the run's seed"}
    if init.kind == "torchvision":
        what = f"torchvision's published {init.arch} {init.weights} weights (named, not hashed)"
        return {"file": None, "sha256": None, "run_key": None, "what": what}
    run_key = None
    if init.kind == "file":
        weights, what = init.file.resolve(), "weights file"
    else:
        weights, sidecar = checkpoint_paths(init.stem(study, replicate))
        weights, what = weights.resolve(), "rtl_core checkpoint"
        with contextlib.suppress(OSError, ValueError, AttributeError):  # loading the init names a sidecar's fault
            run_key = json.loads(sidecar.read_text()).get("run_key")
    sha = file_digest(weights) if weights.is_file() else None
    return {"file": str(weights), "sha256": sha, "run_key": run_key, "what": what}


def current_encoders(config: StudyConfig, keys: Sequence[RunKey]) -> dict[tuple[str, int], dict[str, Any]]:
    """:func:`encoder_identity` of every (init, replicate) among ``keys`` (each weights file hashed once, then
    cached)."""
    pairs = dict.fromkeys((k.init, k.replicate) for k in keys)
    return {(name, r): encoder_identity(name, config.study, r) for name, r in pairs}


@lru_cache(maxsize=1)
def _provenance() -> dict[str, Any]:
    """Git commit, packages and machine, looked up once per process (one grid)."""
    return provenance()


#: What a fine-tuned encoder keeps for the feature-reuse analysis: its early filters (the paper's weight-space CKA
#: reads conv1, layer1[0].conv1 and layer1[0].conv2), ~0.6 MB per ResNet-18 run instead of 45 MB for all of it.
KEPT_PREFIXES = ("conv1.", "bn1.", "layer1.")


def _keep_finetuned(encoder: torch.nn.Module, profile: str, key: RunKey) -> None:
    """Save a fine-tuned encoder's early layers (every seed) where ``rtl analyze`` looks for them."""
    from rtl_core.io import atomic_write
    from rtl_core.paths import finetuned_path

    path = finetuned_path(profile, init_slug(key.init, key.replicate), key.task, key.seed)
    state = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items() if k.startswith(KEPT_PREFIXES)}
    if not state:  # not a ResNet (a timm ViT, a ConvNeXt): the weight-space CKA does not read it
        return
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def run_one(
    config: StudyConfig,
    key: RunKey,
    root: Path | None = None,
    device: torch.device | None = None,
    redone_because: str | None = None,
) -> dict[str, Any]:
    """Train and test one run, write its record atomically and return it; the record names the encoder it
    started from (:func:`encoder_identity`) and, for a redone run, why its old record was not used."""
    start, cpu_start = time.perf_counter(), time.process_time()
    ev, arch = config.evaluate, config.pretrain.backbone
    size = ev.image_size or config.data.image_size
    protocol = get_protocol(key.protocol)
    plan = ComputePlan.for_config(ev, device)
    task = load_task_data(key.task, size, config.data.split_seed, config.data)
    torch.manual_seed(key.seed)
    np.random.seed(key.seed)
    details = ev.init_details.get(key.init)
    identity = encoder_identity(key.init, config.study, key.replicate)
    encoder, info = load_init(
        key.init, config.study, arch, key.seed, details.model_dump() if details else None, key.replicate
    )
    if encoder_identity(key.init, config.study, key.replicate)["sha256"] != identity["sha256"]:  # cached: cheap
        raise CheckpointError(
            f"{identity['file']} changed while run {key} loaded it (is `rtl pretrain` writing it?). "
            "Rerun `rtl evaluate` once the pretraining has finished."
        )
    arch = info["arch"]  # the init's own: a file's or torchvision's architecture, else pretrain.backbone
    where = "evaluate.image_size" if ev.image_size else "data.image_size (evaluate.image_size unset)"
    check_encoder_input(encoder, size, where, key.init, arch)
    if task.kind == "segmentation":
        ctx = RunContext(plan, key.seed, arch, info)
        out = run_segmentation(task, protocol, encoder, ev, ctx)
    else:
        scratch = parse_init(key.init).kind == "scratch"
        feature_key = (
            key.init,
            info["checkpoint"],
            identity["sha256"],  # a replaced checkpoint never reuses its predecessor's cached features
            key.task,
            size,
            config.data.split_seed,
            key.seed if scratch else None,
            plan.precision,
            json.dumps(info.get("contract"), sort_keys=True, default=str),  # the input conversion the features saw
        )
        ctx = RunContext(plan, key.seed, arch, info, feature_key=feature_key)
        out = run_classification(task, protocol, encoder, ev, ctx)
    if key.protocol == "finetune" and task.kind != "segmentation":
        _keep_finetuned(encoder, config.study, key)  # for the feature-reuse analysis (weight-space CKA, claim C7)
    meta = _provenance()
    record = {
        "record_version": RECORD_VERSION,
        "task": key.task,
        "init": key.init,
        "protocol": key.protocol,
        "seed": key.seed,
        "replicate": key.replicate,
        "data_fraction": protocol.data_fraction,
        "profile": config.profile,
        "study": config.study,
        "metrics": out.metrics,
        "primary_metric": task.metric_names[0],
        "val_metrics": out.fit.val_metrics,
        "selection": ev.selection,
        "selected_epoch": out.fit.selected_epoch,
        "curves": out.fit.curves,
        "n_train": out.n_train,
        "n_val": len(task.val),
        "n_test": len(task.test),
        "n_test_scans": int(len(set(task.test_scans))),
        "image_size": size,
        "arch": arch,
        "init_info": {k: v for k, v in info.items() if k != "init"},
        "encoder": identity,
        "redone_because": redone_because,
        "split_fingerprint": task.fingerprint,
        "settings_hash": settings_hash(config, plan.device.type),
        "config_hash": config.hash(),
        "config": config.model_dump(mode="json"),
        "device": str(plan.device),
        "torch_threads": torch.get_num_threads(),
        "precision": plan.precision,
        "channels_last": plan.channels_last,
        "fused_optimizer": plan.fused_optimizer,
        "single_pixel_matmul": plan.single_pixel_matmul,
        "model_seconds": ctx.timer.model_seconds,
        "git_commit": meta["git_commit"],
        "machine": meta["machine"],
        "packages": meta["packages"],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "test_correct": getattr(out, "test_correct", None),
    }
    record["wall_seconds"] = time.perf_counter() - start
    record["cpu_seconds"] = time.process_time() - cpu_start
    write_record(key.path(root or results_dir(config.study)), record)
    return record


def run_grid(
    config: StudyConfig,
    tasks: Sequence[str] | None = None,
    inits: Sequence[str] | None = None,
    protocols: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    root: Path | None = None,
    progress: bool = True,
    on_run_done: Callable[[RunKey, dict[str, Any]], None] | None = None,
) -> GridReport:
    """Run every unfinished run of the grid in this process (see the module doc); ``on_run_done(key, record)``
    after each run. Runs are leased first (:mod:`rtl_core.leases`), so other workers may share the
    folder; see :mod:`rtl_core.evaluate.launch` for many workers and SLURM."""
    keys = plan_grid(config, tasks, inits, protocols, seeds)
    for name, replicate in dict.fromkeys((k.init, k.replicate) for k in keys):
        check_checkpoint(parse_init(name), config.study, replicate)  # fail before any run, naming the pretrain command
    return work(config, keys, root, progress=progress, on_run_done=on_run_done)


def work(
    config: StudyConfig,
    keys: Sequence[RunKey],
    root: Path | None = None,
    progress: bool = False,
    on_run_done: Callable[[RunKey, dict[str, Any]], None] | None = None,
    raise_errors: bool = True,
    failed_since: float | None = None,
) -> GridReport:
    """One worker's pass over ``keys``: skip finished runs, lease each other run, train it, release it.

    A run that raises has its traceback written to ``<record>.failed.txt`` beside its lease; with
    ``raise_errors`` (one in-process grid) the error then propagates, otherwise the worker goes on. A run whose
    traceback was written after ``failed_since`` (the launch's start: another worker of the same launch failed
    on it) is not tried again; a later launch retries it."""
    import traceback

    from tqdm.auto import tqdm

    from rtl_core.leases import acquire

    start = time.perf_counter()
    root = Path(root or results_dir(config.study))
    settings = settings_hash(config)
    encoders = current_encoders(config, keys)
    launcher = config.launcher
    report = GridReport(root=root)
    todo = []
    for key in keys:
        problem = record_problem(key.path(root), key, settings, encoders[key.init, key.replicate])
        if problem is None:
            report.skipped.append(key)
        else:
            todo.append((key, problem))
    log.info(
        "evaluation grid: %d runs, %d finished already, %d to run; records in %s",
        len(keys),
        len(report.skipped),
        len(todo),
        root,
    )
    bar = tqdm(todo, desc="rtl evaluate", unit="run", disable=not progress, dynamic_ncols=True)
    for key, problem in bar:
        bar.set_postfix_str(str(key))
        path = key.path(root)
        failed = path.with_name(path.name + ".failed.txt")
        if failed_since is not None and failed.is_file() and failed.stat().st_mtime >= failed_since:
            report.failed.append((key, str(failed)))
            continue
        lease = acquire(path, launcher.stale_seconds)
        if lease is None:
            report.busy.append(key)
            continue
        try:
            problem = record_problem(path, key, settings, encoders[key.init, key.replicate])  # done meanwhile?
            if problem is None:
                report.skipped.append(key)
                continue
            why = "a killed worker's lease was stale" if lease.taken_over else problem
            if lease.taken_over or problem != "missing":
                log.warning("redoing %s: %s (%s)", key, why, path)
            _journal(root, key, lease.token)
            redo = why if lease.taken_over or problem != "missing" else None
            with lease.beating(launcher.heartbeat_seconds):
                record = run_one(config, key, root, redone_because=redo)
            failed.unlink(missing_ok=True)
        except Exception as exc:
            failed.parent.mkdir(parents=True, exist_ok=True)
            failed.write_text(f"{key}\n{traceback.format_exc()}")
            report.failed.append((key, str(failed)))
            log.error("run %s failed (%s: %s); traceback in %s", key, type(exc).__name__, exc, failed)
            if raise_errors:
                raise
            continue
        finally:
            lease.release()
        report.ran.append(key)
        if lease.taken_over or problem != "missing":
            report.redone.append((key, why))
        if on_run_done is not None:
            on_run_done(key, record)
    report.wall_seconds = time.perf_counter() - start
    return report


def _journal(root: Path, key: RunKey, token: str) -> None:
    """One line per run started (``<root>/executions.log``, appended atomically): who ran what, when."""
    import os
    import socket

    line = (
        json.dumps(
            {
                "run": str(key),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "lease": token,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        + "\n"
    )
    fd = os.open(root / "executions.log", os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def records_kept(root: Path) -> str:
    """What a stopped grid leaves for a rerun, in words: its finished records (a run stopped mid-way has none and is
    redone; its lease is released, or taken over once stale)."""
    n = len(record_paths(root))
    return f"the records of the {n} finished run(s) in {root} (runs stopped mid-way are redone)"
