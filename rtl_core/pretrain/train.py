"""``pretrain(config, pool, method)``: one SSL pretraining run, checked up front, resumable, saved atomically.

The run's Lightning checkpoints (``last.ckpt``, for resuming only) live in
``<output>/runs/pretrain/<profile>/<name>-<key>/``, where ``key`` hashes every setting that changes the
weights, so a changed config never resumes a stale run. The result is the encoder ``state_dict`` and its JSON
sidecar at :func:`rtl_core.models.checkpoints.encoder_stem`. An existing encoder whose sidecar carries the same
key is reused unless ``force``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rtl_core.config import StudyConfig
from rtl_core.errors import BusyError, CheckpointError, ConfigError, Interrupted
from rtl_core.io import atomic_write
from rtl_core.leases import acquire, describe_holder
from rtl_core.models.backbones import build_backbone, feature_dim
from rtl_core.models.checkpoints import (
    IDENTITY_MEAN,
    IDENTITY_STD,
    checkpoint_paths,
    load_encoder,
    read_sidecar,
    save_encoder,
    torch_file_problem,
)
from rtl_core.models.devices import resolve_accelerator
from rtl_core.paths import encoder_stem, pretraining_logs_dir
from rtl_core.pretrain.data import PretrainPool, load_pretrain_pool, pool_loader
from rtl_core.pretrain.methods import METHODS, MethodContext, build_method
from rtl_core.pretrain.precision import resolve_precision
from rtl_core.provenance import settings_digest

log = logging.getLogger(__name__)

SEQUENTIAL_SOURCE = "natural"
"""Sequential pretraining continues on a pool from the encoder of this pool (Jonske et al.: natural → CT)."""


@dataclass(frozen=True)
class DevicePlan:
    """Where a run trains: Lightning accelerator, devices per node, nodes, and the per-device batch."""

    accelerator: str
    devices: int
    num_nodes: int
    precision: str
    batch_per_device: int

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes


def plan_devices(config: StudyConfig) -> DevicePlan:
    """Resolve ``pretrain.accelerator/devices/num_nodes/precision``; impossible requests raise ConfigError."""
    p = config.pretrain
    gpus = torch.cuda.device_count()
    accelerator = resolve_accelerator(p.accelerator)
    if accelerator == "gpu":
        if gpus == 0:
            raise ConfigError("pretrain.accelerator is 'gpu' but no CUDA GPU is visible; set accelerator: cpu or auto.")
        devices = gpus if p.devices == "auto" else int(p.devices)
        if devices > gpus:
            raise ConfigError(
                f"pretrain.devices={devices} asks for {devices} GPUs but this machine has {gpus}; "
                f"set pretrain.devices to at most {gpus} (or auto)."
            )
    else:
        devices = 1 if p.devices == "auto" else int(p.devices)
        if devices > 1 and p.accelerator == "auto":
            raise ConfigError(
                f"pretrain.devices={devices} asks for {devices} GPUs but none is visible; set "
                "pretrain.devices: 1, or accelerator: cpu to run that many CPU processes (gloo DDP)."
            )
    world = devices * p.num_nodes
    if p.batch_size % world:
        raise ConfigError(
            f"pretrain.batch_size={p.batch_size} is the global batch and must divide evenly over "
            f"{world} devices; choose a multiple of {world}."
        )
    precision = resolve_precision(p.precision, accelerator)
    return DevicePlan(accelerator, devices, p.num_nodes, precision, p.batch_size // world)


def replicate_seed(seed: int, replicate: int) -> int:
    """The seed of replicate ``replicate`` of a pretraining: the study seed for replicate 0 (so a study with K = 1 is
    the study it was), ``seed + 1000 * replicate`` after it. Replicates share the pool and every setting; the seed
    changes the initial weights, the augmentations and the order of the pool, i.e. what varies between two
    pretraining runs of one recipe."""
    return seed + 1000 * replicate


def pretraining_key(config: StudyConfig, pool: str, method: str, sequential: bool, replicate: int = 0) -> str:
    """Hash of everything that determines the trained weights (not which pools/methods a study lists, nor how many
    replicates it asks for: replicate ``r`` enters the key as itself, replicate 0 not at all)."""
    pre = config.pretrain.model_dump(
        mode="json", exclude={"pools", "methods", "checkpoint_every_n_epochs", "replicates"}
    )
    data = config.data.model_dump(
        mode="json", include={"data_dir", "image_size", "pool_size", "split_seed", "ct_window"}
    )
    if pool == "ct_less":
        data["less_fraction"] = config.data.less_fraction
    if pool in config.data.pools:
        data["pool"] = config.data.pools[pool].model_dump(mode="json")
    # "auto" means bf16 on some CPUs, fp32 on others: the resolved precision changes the weights
    pre["precision"] = resolve_precision(config.pretrain.precision, resolve_accelerator(config.pretrain.accelerator))
    settings = {"pretrain": pre, "data": data, "seed": config.seed, "pool": pool, "method": method}
    settings["sequential"] = sequential
    if replicate:
        settings["replicate"] = replicate
    return settings_digest(settings)


def pretraining_dir(config: StudyConfig, pool: str, method: str, sequential: bool = False, replicate: int = 0) -> Path:
    """Folder of the pretraining's resumable Lightning checkpoints and its metrics.csv.

    Vocabulary: a *pretraining* is one pool × method (× sequential) fit, in this folder; a *run* is one downstream
    training (task × init × protocol × seed), its record in ``results/``. The sidecar keys ``run_key`` and
    ``run_dir`` keep their names so that encoders already trained are still recognised."""
    name = encoder_stem(pool, method, config.study, sequential, replicate).name
    key = pretraining_key(config, pool, method, sequential, replicate)
    return pretraining_logs_dir(config.study) / f"{name}-{key}"


def check_request(config: StudyConfig, pool: str, method: str) -> DevicePlan:
    """Every check that needs no data: method, pool name, devices, batch split."""
    if method not in METHODS:
        raise ConfigError(
            f"Unknown SSL method {method!r} (--method / pretrain.methods); choose one of {', '.join(METHODS)}."
        )
    from rtl_core.pretrain.data import known_pools

    if pool not in known_pools(config):
        raise ConfigError(
            f"Unknown pool {pool!r} (--pool / pretrain.pools). Known pools: {', '.join(known_pools(config))}; "
            "add your own under data.pools in the config file."
        )
    return plan_devices(config)


def _check_pool_size(config: StudyConfig, data: PretrainPool, plan: DevicePlan) -> int:
    n, batch = len(data), config.pretrain.batch_size
    if batch > n:
        raise ConfigError(
            f"pretrain.batch_size={batch} is larger than pool {data.name!r} ({n} images); "
            f"set pretrain.batch_size to at most {n} (or data.pool_size larger)."
        )
    return n // plan.world_size // plan.batch_per_device


def existing_encoder(
    config: StudyConfig, pool: str, method: str, sequential: bool = False, replicate: int = 0
) -> Path | None:
    """The finished encoder for this exact config, or None (missing, incomplete, or trained with other settings)."""
    stem = encoder_stem(pool, method, config.study, sequential, replicate)
    weights, _ = checkpoint_paths(stem)
    try:
        sidecar = read_sidecar(stem)
    except CheckpointError:
        return None
    if not weights.is_file():
        return None
    if sidecar.get("run_key") != pretraining_key(config, pool, method, sequential, replicate):
        log.info("encoder %s was trained with other settings (run key %s); retraining", weights, sidecar.get("run_key"))
        return None
    return weights


METRICS = "metrics.csv"


def set_aside_metrics(folder: Path) -> None:
    """Before a resume: move ``metrics.csv`` to ``metrics.part<k>.csv`` (Lightning's CSV logger rewrites it)."""
    metrics = folder / METRICS
    if metrics.is_file():
        metrics.rename(folder / f"metrics.part{len(list(folder.glob('metrics.part*.csv')))}.csv")


def join_metrics(folder: Path) -> None:
    """After a fit: one ``metrics.csv`` with the whole loss curve, the set-aside parts first.

    Rows an interrupted part logged at or after the step its successor resumed from are dropped (the resumed run
    logs those steps again, from the checkpoint's weights).
    """
    import pandas as pd

    parts = sorted(folder.glob("metrics.part*.csv"), key=lambda p: int(p.stem.removeprefix("metrics.part")))
    if not parts:
        return
    frames = [pd.read_csv(p) for p in parts] + ([pd.read_csv(folder / METRICS)] if (folder / METRICS).is_file() else [])
    kept = [
        frame[frame["step"] < after["step"].min()] if len(after) else frame for frame, after in zip(frames, frames[1:])
    ]
    joined = pd.concat([*kept, frames[-1]], ignore_index=True)
    atomic_write(folder / METRICS, lambda tmp: joined.to_csv(tmp, index=False))
    for p in parts:
        p.unlink()


def pretrain(
    config: StudyConfig,
    pool: str,
    method: str,
    sequential: bool = False,
    force: bool = False,
    callbacks: Sequence = (),
    progress: bool = True,
    replicate: int = 0,
) -> Path:
    """Pretrain ``method`` on ``pool`` under ``config`` and return the encoder weights path.

    ``sequential=True`` starts from the ``natural`` encoder of the same method (trained first if missing) and
    continues on ``pool`` (the init ``sequential:<pool>:<method>``). ``replicate`` r trains the r-th of a replicated
    arm's encoders (``pretrain.replicates``), seeded by :func:`replicate_seed`; a sequential replicate r starts
    from natural replicate r. An existing encoder for the same settings
    is returned as is unless ``force``; an interrupted run resumes from its ``last.ckpt``. The pretraining is leased
    (:func:`pretraining_lease`): while another live process trains the same encoder, :class:`BusyError` names it.
    A signal raises :class:`~rtl_core.errors.Interrupted` saying what was kept (SIGTERM after the current step).
    """
    plan = check_request(config, pool, method)
    if replicate < 0:
        raise ConfigError(f"--replicate {replicate}: replicates are numbered from 0.")
    stem = encoder_stem(pool, method, config.study, sequential, replicate)
    if not force and (found := existing_encoder(config, pool, method, sequential, replicate)):
        log.info("encoder exists, skipping pretraining: %s (use --force to retrain)", found)
        return found
    init_from = None
    if sequential:
        init_from = pretrain(config, SEQUENTIAL_SOURCE, method, progress=progress, replicate=replicate)
    with pretraining_lease(config, stem):
        if not force and (found := existing_encoder(config, pool, method, sequential, replicate)):
            log.info("encoder finished by another process meanwhile: %s", found)
            return found
        fit = Fit(pool, method, sequential, replicate, stem, init_from)
        return _fit(config, fit, force, callbacks, progress, plan)


@dataclass(frozen=True)
class Fit:
    """Which encoder one pretraining makes: pool, method, sequential, replicate, where it goes, where it starts."""

    pool: str
    method: str
    sequential: bool
    replicate: int
    stem: Path
    init_from: Path | None


def _fit(config: StudyConfig, fit: Fit, force: bool, callbacks: Sequence, progress: bool, plan: DevicePlan) -> Path:
    """The pretraining itself, under its lease (see :func:`pretrain`)."""
    pool, method, sequential, stem, init_from = fit.pool, fit.method, fit.sequential, fit.stem, fit.init_from
    seed = replicate_seed(config.seed, fit.replicate)
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
    from pytorch_lightning.loggers import CSVLogger

    data = load_pretrain_pool(config, pool)
    steps_per_epoch = _check_pool_size(config, data, plan)
    folder = pretraining_dir(config, pool, method, sequential, fit.replicate)
    if force and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = config.pretrain
    log.info(
        "pretraining %s on pool %s (%d images, %d steps/epoch, %d epochs, %s x%d, %s); run dir %s",
        method,
        pool,
        len(data),
        steps_per_epoch,
        p.epochs,
        plan.accelerator,
        plan.world_size,
        plan.precision,
        folder,
    )

    pl.seed_everything(seed, workers=True, verbose=False)
    backbone = build_backbone(p.backbone)
    if init_from is not None:
        source, _ = load_encoder(init_from, expect={"arch": p.backbone, "in_channels": 3})
        backbone.load_state_dict(source.state_dict())
    context = MethodContext(
        feature_dim=feature_dim(p.backbone),
        projection_dim=p.projection_dim,
        projection_head=p.projection_head,
        loss_group_size=p.loss_group_size,
        temperature=p.temperature,
        gather_distributed=p.gather_distributed,
        batch_size=plan.batch_per_device,
        pool_size=len(data),
        max_steps=steps_per_epoch * p.epochs,
    )
    from rtl_core.pretrain.module import PretrainModule

    module = PretrainModule(build_method(method, backbone, context), p, seed=seed)
    trainer = pl.Trainer(
        accelerator=plan.accelerator,
        devices=plan.devices,
        num_nodes=plan.num_nodes,
        # SyncBatchNorm needs CUDA: CPU processes (gloo) keep per-process BatchNorm statistics.
        strategy="ddp" if plan.world_size > 1 else "auto",
        sync_batchnorm=plan.world_size > 1 and plan.accelerator == "gpu",
        precision=plan.precision,
        max_epochs=p.epochs,
        default_root_dir=folder,
        callbacks=[
            ModelCheckpoint(
                dirpath=folder,
                filename="last",
                save_top_k=1,
                every_n_epochs=p.checkpoint_every_n_epochs,
                enable_version_counter=False,
            ),
            *([TQDMProgressBar(refresh_rate=max(1, steps_per_epoch // 20))] if progress else []),
            *callbacks,
        ],
        logger=CSVLogger(folder, name="", version=""),
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        benchmark=plan.accelerator == "gpu",
    )
    loader = pool_loader(
        data,
        plan.batch_per_device,
        trainer.world_size,
        trainer.global_rank,
        seed,
        num_workers=config.data.num_workers,
    )
    last = folder / "last.ckpt"
    if last.is_file() and first_process():
        set_aside_if_damaged(last)
    if last.is_file():
        log.info("resuming from %s", last)
        if trainer.is_global_zero:
            set_aside_metrics(folder)
    start = time.perf_counter()
    with stop_between_steps(folder, p.checkpoint_every_n_epochs) as signalled:
        trainer.fit(module, train_dataloaders=loader, ckpt_path=str(last) if last.is_file() else None)
    seconds = time.perf_counter() - start
    weights, _ = checkpoint_paths(stem)
    if trainer.is_global_zero:
        join_metrics(folder)
        save_encoder(
            stem,
            module.method.backbone,
            p.backbone,
            in_channels=3,
            method=method,
            pool=pool,
            epochs=p.epochs,
            profile=config.profile,
            study=config.study,
            config_hash=config.hash(),
            run_key=pretraining_key(config, pool, method, sequential, fit.replicate),
            replicate=fit.replicate,
            seed=seed,
            data_fingerprint=data.fingerprint,
            pool_images=len(data),
            sequential=sequential,
            init_from=str(init_from) if init_from else None,
            steps=int(trainer.global_step),
            batch_size=p.batch_size,
            crop_size=p.crop_size,
            image_size=config.data.image_size,
            devices=plan.world_size,
            precision=plan.precision,
            fit_seconds=round(seconds, 1),
            run_dir=str(folder),
            normalize={"mean": list(IDENTITY_MEAN), "std": list(IDENTITY_STD)},  # inputs in [0, 1], as trained
        )
        log.info("encoder saved: %s (%.0f s)", weights, seconds)
    if signalled:  # the signal came as the last step ended, or before Lightning listened: the encoder is whole
        raise Interrupted(signalled[0], kept=f"the finished encoder {weights}")
    return weights


def first_process() -> bool:
    """Whether this is the first process of its pretraining: not a DDP process that Lightning started for another
    device (``LOCAL_RANK``), nor a SLURM / torchrun task other than the first (``SLURM_PROCID``, ``RANK``,
    ``NODE_RANK``). Only the first one holds the lease and looks after ``last.ckpt``."""
    return all(os.environ.get(name, "0") in ("", "0") for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


@contextlib.contextmanager
def pretraining_lease(config: StudyConfig, stem: Path):
    """Hold the lease on the encoder at ``stem`` while the block pretrains it (:mod:`rtl_core.leases`; the lease
    file is ``runs/pretrain/<study>/<encoder>.lease.json``, whatever the settings, as they all write one encoder).

    A live holder makes this raise :class:`BusyError` naming its host, pid and start; the lease of a process that
    is gone on this host, or whose heartbeat is older than ``launcher.stale_seconds``, is taken over. DDP
    processes after the first train under the first one's lease."""
    if not first_process():
        yield None
        return
    target = pretraining_logs_dir(config.study) / stem.name
    lease = acquire(target, config.launcher.stale_seconds)
    if lease is None:
        raise BusyError(
            f"The pretraining of encoder {stem.name} (study {config.study}) is running in another process: "
            f"{describe_holder(target)}. Wait for it to finish and rerun this command (its encoder is then reused), "
            "or stop that process; the lease of a process that died is taken over (at once on the same host, after "
            f"launcher.stale_seconds = {config.launcher.stale_seconds:g} s from another)."
        )
    if lease.taken_over:
        log.warning("took over the lease of a pretraining of %s whose process is gone (%s)", stem.name, lease.path)
    try:
        with lease.beating(config.launcher.heartbeat_seconds):
            yield lease
    finally:
        lease.release()


def set_aside_if_damaged(last: Path) -> Path | None:
    """If the resume checkpoint ``last`` is damaged (empty, truncated, a failing CRC), rename it to
    ``last.ckpt.damaged-<time>`` beside it so that the pretraining restarts from its first step, and return the new
    name; ``None`` when it is sound. A file that cannot be moved raises :class:`CheckpointError` saying what to do."""
    problem = torch_file_problem(last, deep=True)
    if problem is None:
        return None
    aside = last.with_name(f"{last.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        last.rename(aside)
    except OSError as exc:
        raise CheckpointError(
            f"The pretraining's resume checkpoint {last} is damaged ({problem}) and cannot be moved aside "
            f"({exc.strerror}). Delete it (the pretraining then starts again from its first step) and rerun."
        ) from exc
    log.warning(
        "resume checkpoint %s is damaged (%s): set aside as %s; the pretraining starts again from its first step",
        last,
        problem,
        aside.name,
    )
    set_aside_metrics(last.parent)  # its loss curve is redone from step 0 (join_metrics then drops the old rows)
    return aside


def kept_of(folder: Path, every_n_epochs: int) -> str:
    """What an interrupted pretraining in ``folder`` leaves for a rerun, in words."""
    last = folder / "last.ckpt"
    if last.is_file():
        saved = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.stat().st_mtime))
        return f"the pretraining checkpoint {last} (saved {saved}; the steps after it are redone)"
    return (
        f"no checkpoint of this pretraining yet (the first is written after epoch {every_n_epochs}; it starts "
        f"again from its first step; folder {folder})"
    )


@contextlib.contextmanager
def stop_between_steps(folder: Path, every_n_epochs: int):
    """Around ``trainer.fit``: a SIGTERM ends training after the current step (Lightning's own handler; the
    caller's is replaced by one that only notes the signal, yielded as a list) and every interruption leaves as
    :class:`~rtl_core.errors.Interrupted` naming what was kept, where Lightning would exit 0 (SIGTERM) or 1
    (Ctrl-C)."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    signalled: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)
    main = threading.current_thread() is threading.main_thread() and previous is not None  # None: set outside Python
    if main:
        signal.signal(signal.SIGTERM, lambda signum, frame: signalled.append(signum))
    try:
        yield signalled
    except SIGTERMException as exc:
        raise Interrupted(signal.SIGTERM, kept_of(folder, every_n_epochs)) from exc
    except Interrupted as exc:
        exc.kept = exc.kept or kept_of(folder, every_n_epochs)
        raise
    except SystemExit as exc:  # Lightning answers Ctrl-C with sys.exit(1)
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise Interrupted(signal.SIGINT, kept_of(folder, every_n_epochs)) from exc
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
