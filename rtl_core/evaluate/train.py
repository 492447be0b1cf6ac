"""The training loop every protocol shares: the epochs of a :class:`FitSpec` of AdamW (in the run's
:class:`ComputePlan`), an optional validation pass per epoch, and model selection (``last`` epoch, or the epoch with
the best validation primary metric).

Time spent inside the model (forward, backward, optimizer step, inference) is accumulated in the run's
:class:`Timer` so a run can report the share spent elsewhere (data, metrics, I/O).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from rtl_core.evaluate.context import FitSpec, RunContext


@dataclass
class FitResult:
    curves: dict[str, list[float]] = field(default_factory=dict)
    selected_epoch: int = 0
    val_metrics: dict[str, float] = field(default_factory=dict)


def epochs_for(epochs: int, steps_per_epoch: int, min_steps: int) -> int:
    """``epochs``, raised so that training makes at least ``min_steps`` optimizer steps."""
    return max(epochs, math.ceil(min_steps / max(1, steps_per_epoch)))


def fit(
    model: nn.Module,
    parameters: list[nn.Parameter],
    loader: Iterable,
    spec: FitSpec,
    ctx: RunContext,
    *,
    train_mode: Callable[[], None],
    validate: Callable[[], dict[str, float]],
    primary: str,
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> FitResult:
    """Train ``parameters`` of ``model`` with AdamW and cross-entropy as ``spec`` says, on ``ctx``'s plan.

    The epochs are ``spec.epochs``, raised to make at least ``spec.min_steps`` steps. ``train_mode`` puts the model
    in its protocol's train mode; ``validate`` returns validation metrics, ``primary`` names the one selection reads
    (called every epoch when ``spec.selection == "best_val"`` or ``spec.validate_every_epoch`` (learning curves),
    else once after the last epoch). With ``best_val`` the weights of the best epoch (ties: the earlier) are
    restored before returning.

    The learning rate ramps up linearly over ``spec.warmup_epochs`` (from 1/steps of ``lr``; Goyal et al. 2017),
    then falls by ``spec.decay_per_epoch`` after each epoch (Jonske et al.'s fine-tuning: ``ExponentialLR``,
    γ = 0.97).
    """
    plan, timer, selection = ctx.plan, ctx.timer, spec.selection
    forward = forward or (lambda m, x: m(x))
    optimizer = plan.optimizer(parameters, spec.lr, spec.weight_decay)
    steps = max(1, len(loader))
    epochs = epochs_for(spec.epochs, steps, spec.min_steps)
    warmup, decay = spec.warmup_epochs * steps, spec.decay_per_epoch

    def factor(step: int) -> float:  # the LR multiplier before optimizer step ``step`` (0-based)
        ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        return ramp * decay ** (step // steps)

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor) if warmup > 0 or decay != 1 else None
    curves: dict[str, list[float]] = {"epoch": [], "train_loss": [], "epoch_seconds": [], f"val_{primary}": []}
    best, best_epoch, best_state, best_val = -math.inf, epochs, None, {}
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_mode()
        total, count = 0.0, 0
        for x, y in loader:
            x, y = plan.inputs(x), y.to(plan.device, non_blocking=True)
            with timer.model():
                with plan.autocast():
                    logits = forward(model, x)
                loss = nn.functional.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                total += loss.detach().item() * len(x)
            count += len(x)
        curves["epoch"].append(epoch)
        curves["train_loss"].append(total / max(count, 1))
        curves["epoch_seconds"].append(time.perf_counter() - start)
        curves.setdefault("lr", []).append(optimizer.param_groups[0]["lr"])  # after the epoch's last step
        if selection == "best_val" or epoch == epochs or spec.validate_every_epoch:
            val = validate()
            curves[f"val_{primary}"].append(val[primary])
            score = val[primary] if not math.isnan(val[primary]) else -math.inf
            if selection == "best_val" and score > best:
                best, best_epoch, best_val = score, epoch, val
                best_state = copy.deepcopy(model.state_dict())
            elif selection != "best_val":
                best_val = val
        else:
            curves[f"val_{primary}"].append(None)
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(curves, best_epoch if selection == "best_val" else epochs, best_val)
