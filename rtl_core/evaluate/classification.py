"""Classification runs: fine-tune, linear evaluation (optionally on cached features) and low-label fine-tunes.

Linear evaluation on cached features: with the encoder frozen and its BatchNorm in eval mode, the encoder is a
fixed function, so its features of the training, validation and test images are computed once (per init, task
and image size; per seed for ``scratch``, whose random encoder depends on the seed) and only the linear head
trains, by mini-batch AdamW over ``evaluate.linear_epochs``. This is the same model as training the head through
the frozen encoder without augmentation, at a fraction of the cost. Every classification protocol with a frozen
encoder (``linear`` cached or not, ``linear_bn_train``) trains its head with ``linear_epochs`` / ``linear_lr``, so
two linear protocols differ in their BatchNorm mode only; fine-tunes use ``epochs`` / ``lr``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rtl_core.config import EvaluateConfig
from rtl_core.evaluate.context import FitSpec, RunContext
from rtl_core.evaluate.data import BatchLoader, TaskData, batches, calibration_batches
from rtl_core.evaluate.metrics import classification_metrics
from rtl_core.evaluate.models import (
    Classifier,
    freeze_encoder,
    input_stage,
    recompute_batchnorm,
    set_train_mode,
    trainable_parameters,
)
from rtl_core.evaluate.protocols import Protocol
from rtl_core.evaluate.train import FitResult, fit
from rtl_core.models.backbones import feature_dim


@dataclass
class RunOutput:
    metrics: dict[str, float]
    fit: FitResult
    n_train: int
    test_correct: list[int] | None = None  # per test image, in split order: 1 = classified correctly ("who knew what")


@torch.no_grad()
def predict_probs(
    model: nn.Module, data, batch_size: int, ctx: RunContext, forward: Callable | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (N, C) and targets (N,) of a whole split, model in eval mode."""
    forward = forward or (lambda m, x: m(x))
    plan = ctx.plan
    model.eval()
    probs, targets = [], []
    for x, y in batches(data, batch_size):
        with ctx.timer.model():
            with plan.autocast():
                logits = forward(model, plan.inputs(x))
            probs.append(torch.softmax(logits.float(), 1).cpu())
        targets.append(y)
    return torch.cat(probs).numpy(), torch.cat(targets).numpy()


class _Features:
    """A split reduced to cached features: quacks like a TensorImageDataset for :func:`batches`."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        self.images, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.images)


_FEATURE_CACHE: dict[tuple, dict[str, _Features]] = {}


@torch.no_grad()
def _extract(model: Classifier, data, batch_size: int, ctx: RunContext) -> _Features:
    model.eval()
    feats = []
    for x, _ in batches(data, batch_size):
        with ctx.timer.model(), ctx.plan.autocast():
            feats.append(model.features(ctx.plan.inputs(x)).float().cpu())
    return _Features(torch.cat(feats), data.targets)


def cached_features(
    key: tuple,
    model: Classifier,
    task: TaskData,
    train_indices: np.ndarray,
    batch_size: int,
    ctx: RunContext,
) -> dict[str, _Features]:
    """Features of the training images in ``train_indices`` (in that order) and of the validation and test splits,
    under ``key`` plus the indices (kept for the last few keys of this process)."""
    key = (*key, len(train_indices), hashlib.sha1(np.ascontiguousarray(train_indices).tobytes()).hexdigest())
    if key not in _FEATURE_CACHE:
        if len(_FEATURE_CACHE) >= 4:
            _FEATURE_CACHE.pop(next(iter(_FEATURE_CACHE)))
        index = torch.as_tensor(train_indices, dtype=torch.long)
        train = _Features(task.train.images[index], task.train.targets[index])
        bs = max(batch_size, 256)
        _FEATURE_CACHE[key] = {
            "train": _extract(model, train, bs, ctx),
            "val": _extract(model, task.val, bs, ctx),
            "test": _extract(model, task.test, bs, ctx),
        }
    return _FEATURE_CACHE[key]


def run_classification(
    task: TaskData, protocol: Protocol, encoder: nn.Module, cfg: EvaluateConfig, ctx: RunContext
) -> RunOutput:
    """Train and test one classification run; the encoder is modified in place."""
    torch.manual_seed(ctx.seed)  # the head's initialisation
    model = Classifier(
        encoder,
        feature_dim(ctx.arch),
        task.num_classes,
        ctx.init_info["mean"],
        ctx.init_info["std"],
        probe=protocol.frozen_encoder and cfg.linear_probe_norm,
        bias=cfg.head_bias,
        stage=input_stage(ctx.init_info, task),  # the init's input contract (conversions recorded)
    )
    model = ctx.plan.prepare(model, encoder, task.train.images.shape[-1])
    freeze_encoder(model, protocol)
    indices = task.train_indices(protocol, ctx.seed, cfg.max_train_images)
    names = task.metric_names
    primary = names[0]
    # A frozen encoder means only the linear head trains: one set of head hyper-parameters for every linear protocol,
    # whether its features are cached or recomputed through the encoder (linear_bn_train, linear_on_features=False).
    spec = FitSpec.from_config(cfg, linear_head=protocol.frozen_encoder)
    bs = max(spec.batch_size, 256)
    if protocol.name == "linear" and cfg.linear_on_features:
        feats = cached_features(ctx.feature_key or (id(encoder),), model, task, indices, spec.batch_size, ctx)
        head = model.head  # trains on the cached features, un-augmented (see the module doc)
        loader = BatchLoader(feats["train"], np.arange(len(indices)), spec.batch_size, ctx.seed)  # type: ignore[arg-type]

        def validate_head() -> dict[str, float]:
            p, t = predict_probs(head, feats["val"], bs, ctx)
            return classification_metrics(t, p, names)

        result = fit(
            head,
            list(head.parameters()),
            loader,
            spec,
            ctx,
            train_mode=head.train,
            validate=validate_head,
            primary=primary,
        )
        p, t = predict_probs(head, feats["test"], bs, ctx)
        return RunOutput(classification_metrics(t, p, names), result, len(indices), _correct(p, t))

    loader = BatchLoader(task.train, indices, spec.batch_size, ctx.seed, augment=spec.augment)
    calibrate = batchnorm_calibration(model, task, indices, protocol, cfg, ctx)

    def validate() -> dict[str, float]:
        calibrate()
        p, t = predict_probs(model, task.val, bs, ctx)
        return classification_metrics(t, p, names)

    result = fit(
        model,
        trainable_parameters(model),
        loader,
        spec,
        ctx,
        train_mode=lambda: set_train_mode(model, protocol),
        validate=validate,
        primary=primary,
    )
    calibrate()
    p, t = predict_probs(model, task.test, bs, ctx)
    return RunOutput(classification_metrics(t, p, names), result, len(indices), _correct(p, t))


def batchnorm_calibration(
    model: nn.Module, task: TaskData, indices: np.ndarray, protocol: Protocol, cfg: EvaluateConfig, ctx: RunContext
) -> Callable[[], None]:
    """What to run before each validation and the test: precise BatchNorm on the training images when
    ``evaluate.precise_bn`` and the encoder trains (a frozen encoder keeps the statistics its protocol defines)."""
    if not cfg.precise_bn or protocol.frozen_encoder:
        return lambda: None
    batches = calibration_batches(task.train, indices, max(cfg.batch_size, 64), cfg.precise_bn_images)

    def calibrate() -> None:
        with ctx.timer.model():
            recompute_batchnorm(model, batches, ctx.plan.inputs, ctx.plan.autocast)

    return calibrate


def _correct(probs: np.ndarray, targets: np.ndarray) -> list[int]:
    return (probs.argmax(axis=1) == targets).astype(int).tolist()
