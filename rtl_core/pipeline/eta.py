"""How long ``rtl reproduce`` will take on this machine: a short calibration, then an estimate per stage.

Hosts differ about tenfold in CPU speed (a 2-core AVX2 host pretrains at a tenth of an AVX-512 host's rate), so a
fixed table of minutes would be wrong on most of them. :func:`calibrate` times, on this machine and at the study's
sizes, a few pretraining steps (its backbone, first SSL method, crop, augmentation and precision, on random pixels)
and a few downstream training and inference batches (its backbone at the evaluation size, with the thread count
the grid's workers get), about a second each. :func:`plan` scales those rates by the work each pending step does:
pairs seen in pretraining; images trained on and passed forward per run of the grid (its protocol, epochs, split
sizes, the linear protocol on cached features); forward passes of the analysis and the advisor; a fixed time per
report page (notebook kernels are not calibrated). The estimates are rough (within about 2×): they tell minutes
from hours, not seconds.

Example::

    calibration = calibrate(load_config("smoke"))
    print(calibration.describe())
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

#: Seconds per report page (kernel start, execution, HTML): not calibrated; the feature-space page does more.
PAGE_SECONDS = {"30_feature_space": 45.0}
DEFAULT_PAGE_SECONDS = 20.0
#: Per run of the grid: building the model, loading the init and data, writing the record.
RUN_OVERHEAD_SECONDS = 1.5
#: A U-Net decoder and Dice evaluation on top of the encoder's cost.
SEGMENTATION_FACTOR = 2.5
#: Fixed parts of the stages: start-up, UMAP, probes, statistics, files.
ANALYSIS_OVERHEAD_SECONDS = 30.0
CLAIMS_SECONDS = 5.0
ADVISOR_SECONDS_PER_TASK = 3.0
PRETRAIN_OVERHEAD_SECONDS = 5.0
#: How long each timed part of the calibration runs (seconds, after one warm-up step).
CALIBRATION_BUDGET = 1.0


@dataclass(frozen=True)
class Calibration:
    """Rates measured on this machine at a study's sizes (seconds per item)."""

    pretrain_seconds_per_pair: float
    train_seconds_per_image: float  # downstream forward + backward + step, at the evaluation size
    infer_seconds_per_image: float  # downstream forward only (frozen features, evaluation, analysis)
    device: str
    pretrain_threads: int
    eval_threads: int
    seconds: float  # what the calibration itself took

    def describe(self) -> str:
        return (
            f"calibrated on this machine in {self.seconds:.0f} s ({self.device}): pretraining "
            f"{1 / self.pretrain_seconds_per_pair:.0f} pairs/s with {self.pretrain_threads} thread(s); downstream "
            f"{1 / self.train_seconds_per_image:.0f} training and {1 / self.infer_seconds_per_image:.0f} inference "
            f"images/s per worker ({self.eval_threads} thread(s))"
        )


def _per_item(step: Callable[[], None], items: int, sync: Callable[[], None]) -> float:
    """Seconds per item of ``step`` (which handles ``items`` items): one warm-up, then timed steps for about
    :data:`CALIBRATION_BUDGET` seconds (at least one, at most five)."""
    step()
    sync()
    start, count = time.perf_counter(), 0
    while count < 5:
        step()
        count += 1
        sync()
        if time.perf_counter() - start > CALIBRATION_BUDGET:
            break
    return (time.perf_counter() - start) / (count * items)


def _pretrain_rate(config, device: str) -> float:
    """Seconds per pair of the study's pretraining step (its first method) on random pixels."""
    from rtl_core.models.backbones import build_backbone, feature_dim
    from rtl_core.pretrain.augment import BatchAugment, augment_config
    from rtl_core.pretrain.methods import MethodContext, build_method
    from rtl_core.pretrain.precision import prepare_for_device, resolve_precision

    p = config.pretrain
    kind = torch.device(device).type
    precision = resolve_precision(p.precision, "gpu" if kind == "cuda" else "cpu")
    pairs = max(2, min(p.batch_size, 32 if kind == "cpu" else 256))
    size = config.data.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (pairs, 3, size, size), dtype=torch.uint8, generator=generator).to(device)
    context = MethodContext(
        feature_dim=feature_dim(p.backbone),
        projection_dim=p.projection_dim,
        projection_head=p.projection_head,
        temperature=p.temperature,
        batch_size=pairs,
    )
    method = build_method(p.methods[0], build_backbone(p.backbone), context)
    method = prepare_for_device(method.to(device), method.backbone, p, kind, precision)
    augment = BatchAugment(augment_config(p))
    optimizer = torch.optim.SGD(method.parameters(), lr=1e-3)
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    seed = torch.Generator(device=device)

    def step() -> None:
        seed.manual_seed(0)
        with torch.autocast(kind, dtype=dtype, enabled=not precision.startswith("32")):
            loss = method.loss(augment(images, seed), augment(images, seed))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _per_item(step, pairs, _sync(kind))


def _downstream_rates(config, device: str) -> tuple[float, float]:
    """Seconds per image of a downstream training step and of inference, the study's backbone at its evaluation
    size, on random pixels."""
    from rtl_core.models.backbones import build_backbone, feature_dim

    ev = config.evaluate
    kind = torch.device(device).type
    size = ev.image_size or config.data.image_size
    batch = max(2, min(ev.batch_size, 32 if kind == "cpu" else 128))
    backbone = config.pretrain.backbone
    model = torch.nn.Sequential(build_backbone(backbone), torch.nn.Linear(feature_dim(backbone), 10)).to(device)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    y = torch.arange(batch, device=device) % 10
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train() -> None:
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    sync = _sync(kind)
    return _per_item(train, batch, sync), _per_item(infer, batch, sync)


def _sync(kind: str) -> Callable[[], None]:
    return torch.cuda.synchronize if kind == "cuda" else (lambda: None)


def eval_threads(config, threads: int | None) -> int:
    """The torch threads one run of the grid gets: the pipeline's ``threads`` inline, a worker's share locally."""
    if config.launcher.kind == "local":
        return max(1, (os.cpu_count() or 1) // config.launcher.workers)
    return threads or torch.get_num_threads()


def calibrate(config, threads: int | None = None) -> Calibration:
    """Measure the rates :func:`plan` needs, on this machine at ``config``'s sizes (a few seconds)."""
    from rtl_core.models.devices import default_device

    start = time.perf_counter()
    device = str(default_device())
    before = torch.get_num_threads()
    state = torch.random.get_rng_state()
    try:
        pretrain = _pretrain_rate(config, device)
        torch.set_num_threads(eval_threads(config, threads))
        train, infer = _downstream_rates(config, device)
    finally:
        torch.set_num_threads(before)
        torch.random.set_rng_state(state)
    return Calibration(
        pretrain_seconds_per_pair=pretrain,
        train_seconds_per_image=train,
        infer_seconds_per_image=infer,
        device=device,
        pretrain_threads=before,
        eval_threads=eval_threads(config, threads),
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------- the work
def pool_images(config, pool: str) -> int | None:
    """How many images pretraining on ``pool`` sees per epoch: a demo pool as the study builds it; a user pool
    by counting its files (None for NIfTI volumes, whose slices are counted only when read)."""
    from rtl_core.data.study import study_pool

    spec = config.data.pools.get(pool)
    if spec is None:
        return len(study_pool(config, pool))
    from rtl_core.data.user import existing_path

    path = existing_path(spec, f"pools.{pool}")
    if spec.format == "imagefolder":
        from rtl_core.data.imagefolder import index_image_folder

        return len(index_image_folder(path).rel_paths)
    if spec.format == "dicom":
        from rtl_core.data.medical import list_dicom_files

        return len(list_dicom_files(path, recursive=True))
    if spec.format == "png_slices":
        return sum(1 for f in (path / "images").glob("*.png"))
    return None


def task_sizes(config, task: str) -> tuple[str, int, int, int]:
    """A task's kind and its train / val / test sizes, as the study splits it."""
    from rtl_core.data.study import study_task

    data = study_task(config.data, task, 8, config.data.split_seed)
    return data.kind, len(data.train), len(data.val), len(data.test)


def run_seconds(config, protocol_name: str, sizes: tuple[str, int, int, int], cal: Calibration) -> float:
    """One run of the grid: images trained on and passed forward under ``protocol_name``, times the rates."""
    from rtl_core.evaluate.protocols import get_protocol

    ev = config.evaluate
    protocol = get_protocol(protocol_name)
    kind, n_train, n_val, n_test = sizes
    n = max(1, round(n_train * protocol.data_fraction))
    if not protocol.lowlabel and ev.max_train_images:
        n = min(n, ev.max_train_images)
    batch = min(ev.batch_size, n)
    evaluated = n_val * (ev.epochs if ev.learning_curves else 1) + n_test
    if protocol.frozen_encoder and kind == "classification":
        if protocol_name == "linear" and ev.linear_on_features:
            seconds = (n + n_val + n_test) * cal.infer_seconds_per_image  # features once, then the head alone
        else:
            seconds = ev.linear_epochs * n * cal.infer_seconds_per_image + evaluated * cal.infer_seconds_per_image
    else:
        steps = max(ev.epochs * math.ceil(n / batch), ev.min_steps or 0)
        rate = cal.infer_seconds_per_image if protocol.frozen_encoder else cal.train_seconds_per_image
        trained = steps * batch * rate
        precise = ev.epochs * min(n, ev.precise_bn_images) if ev.precise_bn else 0
        seconds = trained + (evaluated + precise) * cal.infer_seconds_per_image
    if kind == "segmentation":
        seconds *= SEGMENTATION_FACTOR
    return seconds + RUN_OVERHEAD_SECONDS


def pending_runs(config, waiting_inits: set[tuple[str, int]]) -> tuple[list, int]:
    """The runs of the grid without a usable record (or whose encoder, (init, replicate), is still to be
    pretrained), and how many runs the grid has."""
    from rtl_core.evaluate.runner import plan_grid, settings_hashes
    from rtl_core.paths import results_dir
    from rtl_core.results import record_problem

    root, hashes = results_dir(config.study), list(settings_hashes(config).values())
    keys = plan_grid(config)
    out = []
    for key in keys:
        path = key.path(root)
        usable = path.is_file() and any(record_problem(path, key, h) is None for h in hashes)
        if (key.init, key.replicate) in waiting_inits or not usable:
            out.append(key)
    return out, len(keys)


# --------------------------------------------------------------------------------------------- the plan
@dataclass
class StepEstimate:
    """One step of the pipeline as the plan sees it."""

    stage: str
    name: str
    pending: bool
    seconds: float | None = None  # None: not estimated (or done)
    detail: str = ""


@dataclass
class Plan:
    """Estimates per step and the lines that print them (one per stage)."""

    steps: list[StepEstimate]
    calibration: Calibration | None
    started: float = field(default_factory=time.perf_counter)

    @property
    def total(self) -> float:
        return sum(s.seconds or 0.0 for s in self.steps if s.pending)

    def remaining_after(self, index: int) -> float:
        return sum(s.seconds or 0.0 for s in self.steps[index + 1 :] if s.pending)

    def lines(self) -> list[str]:
        """The plan: the calibration, one line per stage (steps to do, what, estimate), the total and finish time."""
        out = [self.calibration.describe() if self.calibration else "nothing long to do: no calibration"]
        stages: dict[str, list[StepEstimate]] = {}
        for s in self.steps:
            stages.setdefault(s.stage, []).append(s)
        for stage, steps in stages.items():
            todo = [s for s in steps if s.pending]
            details = "; ".join(dict.fromkeys(s.detail for s in todo if s.detail))
            if not todo:
                out.append(f"  {stage:<9} {len(steps)} step(s), done already")
                continue
            unknown = any(s.seconds is None for s in todo)
            seconds = sum(s.seconds or 0.0 for s in todo)
            out.append(
                f"  {stage:<9} {len(todo)} of {len(steps)} step(s) to do, ~{duration(seconds)}"
                + (" (+ steps not estimated)" if unknown else "")
                + (f": {details}" if details else "")
            )
        finish = time.strftime("%H:%M", time.localtime(time.time() + self.total))
        out.append(f"  total     ~{duration(self.total)} (finishing around {finish}; rough, within about 2×)")
        return out


def duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan(
    config,
    steps: Sequence[tuple[str, str, tuple, bool]],
    threads: int | None = None,
    calibration: Calibration | None = None,
) -> Plan:
    """Estimate each of ``steps`` ((stage, name, what it works on, done now) in pipeline order). A step counts as
    pending if it is not done or anything before it that it reads (pretraining, the grid, the analysis) will
    change. Calibrates (:func:`calibrate`) when a pending step needs it."""
    from rtl_core.names import parse_init

    estimates: list[StepEstimate] = []
    upstream_changes = False
    waiting: set[tuple[str, int]] = set()  # (init, replicate) whose encoder is still to be pretrained
    for stage, name, what, done in steps:
        pending = not done or (upstream_changes and stage in ("analyze", "claims", "advise", "notebook"))
        estimates.append(StepEstimate(stage, name, pending))
        if stage == "pretrain" and pending:
            pool, method, sequential, replicate = what
            kind = "sequential" if sequential else "ssl"
            waiting |= {(i, replicate) for i in config.evaluate.inits if i == f"{kind}:{pool}:{method}"}
            if pool == "natural" and not sequential:
                waiting |= {
                    (i, replicate) for i in config.evaluate.inits if i.startswith("sequential:") and i.endswith(method)
                }
            upstream_changes = True
        if stage == "analyze" and pending:
            upstream_changes = True
    runs, grid = pending_runs(config, waiting) if any(e.stage == "evaluate" for e in estimates) else ([], 0)
    if runs:
        upstream_changes = True
        for e in estimates:
            if e.stage in ("analyze", "claims", "advise", "notebook"):
                e.pending = True
    for e in estimates:
        if e.stage == "evaluate":
            e.pending = bool(runs)
    needs = {"pretrain", "evaluate", "analyze", "advise"}
    if calibration is None and any(e.pending and e.stage in needs for e in estimates):
        calibration = calibrate(config, threads)
    cal = calibration
    ours = [i for i in config.evaluate.inits if parse_init(i).ours]
    sizes: dict[str, tuple[str, int, int, int]] = {}

    def size(task: str) -> tuple[str, int, int, int]:
        if task not in sizes:
            sizes[task] = task_sizes(config, task)
        return sizes[task]

    for e, (stage, _name, what, _) in zip(estimates, steps):
        if not e.pending:
            continue
        if stage == "data":
            e.seconds = 5.0 * len(config.evaluate.tasks)
        elif stage == "pretrain" and cal:
            pool = what[0]
            p = config.pretrain
            images = pool_images(config, pool)
            if images is None:
                e.detail = f"{pool}: size unknown until its volumes are read"
                continue
            steps_per_epoch = max(1, images // p.batch_size)
            e.seconds = p.epochs * steps_per_epoch * p.batch_size * cal.pretrain_seconds_per_pair
            e.seconds += PRETRAIN_OVERHEAD_SECONDS
            e.detail = f"{p.epochs} epoch(s) × {steps_per_epoch} step(s) of {p.batch_size} pairs per pool"
        elif stage == "evaluate" and cal:
            total = sum(run_seconds(config, k.protocol, size(k.task), cal) for k in runs)
            parallel = min(config.launcher.workers, os.cpu_count() or 1) if config.launcher.kind == "local" else 1
            e.seconds = total / parallel
            e.detail = f"{len(runs)} of {grid} run(s) left" + (f", {parallel} workers" if parallel > 1 else "")
        elif stage == "analyze" and cal:
            a = config.analysis
            images = 2 * a.cka_images + a.embedding_images + 2000
            e.seconds = images * (len(ours) + 1 + a.sanity_random_seeds) * cal.infer_seconds_per_image
            e.seconds += ANALYSIS_OVERHEAD_SECONDS
        elif stage == "claims":
            e.seconds = CLAIMS_SECONDS
        elif stage == "advise" and cal:
            per_task = [min(size(t)[1], 1000) + 256 for t in config.evaluate.tasks]
            e.seconds = sum(per_task) * len(config.evaluate.inits) * cal.infer_seconds_per_image
            e.seconds += ADVISOR_SECONDS_PER_TASK * len(config.evaluate.tasks)
        elif stage == "notebook":
            e.seconds = PAGE_SECONDS.get(what[0] if what else "", DEFAULT_PAGE_SECONDS)
    return Plan(estimates, cal)
