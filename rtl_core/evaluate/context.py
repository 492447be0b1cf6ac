"""What a downstream run carries: :class:`FitSpec`, how it trains (from ``evaluate`` in the config), and
:class:`RunContext`, what it computes with (plan, seed, encoder, timer).

Example::

    spec = FitSpec.from_config(config.evaluate)
    ctx = RunContext(ComputePlan.for_config(config.evaluate), seed=42, arch="resnet18", init_info=info)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from rtl_core.config import EvaluateConfig
from rtl_core.evaluate.augment import CropFlip
from rtl_core.evaluate.compute import ComputePlan


@dataclass
class Timer:
    """Seconds spent in model computation (forward, backward, optimizer step, inference)."""

    model_seconds: float = 0.0

    @contextmanager
    def model(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.model_seconds += time.perf_counter() - start


@dataclass(frozen=True)
class FitSpec:
    """The training settings of one fit: AdamW, schedule, batches, augmentation and model selection.

    The numeric precision is not here: it is resolved per device in the run's :class:`ComputePlan`.
    """

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    min_steps: int = 0  # more epochs until training made this many optimizer steps
    warmup_epochs: float = 0.0
    decay_per_epoch: float = 1.0
    selection: Literal["last", "best_val"] = "last"
    validate_every_epoch: bool = False  # learning curves
    augment: CropFlip | None = None

    @classmethod
    def from_config(cls, cfg: EvaluateConfig, linear_head: bool = False) -> FitSpec:
        """The fit of ``cfg``: of a frozen encoder's linear classification head (``linear_epochs``, ``linear_lr``)
        with ``linear_head``, else of a fine-tune or a segmentation decoder (``epochs``, ``lr``)."""
        epochs, lr = (cfg.linear_epochs, cfg.linear_lr) if linear_head else (cfg.epochs, cfg.lr)
        return cls(
            epochs=epochs,
            lr=lr,
            batch_size=cfg.batch_size,
            weight_decay=cfg.weight_decay,
            min_steps=cfg.min_steps,
            warmup_epochs=cfg.warmup_epochs,
            decay_per_epoch=cfg.lr_decay_per_epoch,
            selection=cfg.selection,
            validate_every_epoch=cfg.learning_curves,
            augment=CropFlip(cfg.augment_p, cfg.augment_min_scale) if cfg.augment_p > 0 else None,
        )


@dataclass(frozen=True)
class RunContext:
    """What one run computes with: its :class:`ComputePlan` (device, precision, layout), seed, encoder
    architecture and init info (input ``mean`` / ``std``), the timer of its model time, and the key of its frozen
    encoder's cached features (``None``: the encoder object of this process)."""

    plan: ComputePlan
    seed: int
    arch: str
    init_info: Mapping[str, Any]
    timer: Timer = field(default_factory=Timer)
    feature_key: tuple | None = None
