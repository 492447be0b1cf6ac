"""Segmentation runs (``ct_liver_seg``): a U-Net decoder (segmentation-models-pytorch) on our ResNet encoder.

Fine-tune and low-label protocols train encoder and decoder; ``linear`` freezes the encoder (BatchNorm in eval
mode) and trains the decoder only; ``linear_bn_train`` lets the frozen encoder's BatchNorm statistics adapt.
Test Dice is reported per scan (``dice_scan``; scans are the test split's groups) and per slice batch of
``evaluate.batch_size`` slices in split order (``dice_batch``, the paper's way).
"""

from __future__ import annotations

import torch
from torch import nn

from rtl_core.config import EvaluateConfig
from rtl_core.errors import ConfigError
from rtl_core.evaluate.classification import RunOutput, batchnorm_calibration
from rtl_core.evaluate.context import FitSpec, RunContext
from rtl_core.evaluate.data import BatchLoader, TaskData, batches
from rtl_core.evaluate.metrics import segmentation_metrics
from rtl_core.evaluate.models import (
    build_segmenter,
    freeze_encoder,
    input_stage,
    set_train_mode,
    trainable_parameters,
)
from rtl_core.evaluate.protocols import Protocol
from rtl_core.evaluate.train import fit


@torch.no_grad()
def predict_masks(model: nn.Module, data, batch_size: int, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max label maps (N, H, W) and targets of a whole split."""
    model.eval()
    preds, targets = [], []
    for x, y in batches(data, batch_size):
        with ctx.timer.model():
            with ctx.plan.autocast():
                logits = model(ctx.plan.inputs(x))
            preds.append(logits.float().argmax(1).cpu())
        targets.append(y)
    return torch.cat(preds), torch.cat(targets)


def run_segmentation(
    task: TaskData, protocol: Protocol, encoder: nn.Module, cfg: EvaluateConfig, ctx: RunContext
) -> RunOutput:
    """Train and test one segmentation run (every protocol trains ``epochs`` at ``lr``)."""
    size = task.train.images.shape[-1]
    if size % 32:
        raise ConfigError(f"evaluate.image_size: the U-Net of {task.name} needs a multiple of 32 px, got {size}.")
    torch.manual_seed(ctx.seed)  # the decoder's initialisation
    mean, std = ctx.init_info["mean"], ctx.init_info["std"]
    stage = input_stage(ctx.init_info, task)  # the init's input contract (conversions recorded)
    model = build_segmenter(encoder, ctx.arch, task.num_classes, mean, std, cfg.decoder_channels, stage)
    model = ctx.plan.prepare(model, model.encoder, size)
    freeze_encoder(model, protocol)
    indices = task.train_indices(protocol, ctx.seed, cfg.max_train_images)
    spec = FitSpec.from_config(cfg)
    loader = BatchLoader(task.train, indices, spec.batch_size, ctx.seed, augment=spec.augment)  # image + mask
    bs = spec.batch_size

    calibrate = batchnorm_calibration(model, task, indices, protocol, cfg, ctx)

    def validate() -> dict[str, float]:
        calibrate()
        pred, target = predict_masks(model, task.val, bs, ctx)
        return segmentation_metrics(pred, target, task.val_scans, bs)

    result = fit(
        model,
        trainable_parameters(model),
        loader,
        spec,
        ctx,
        train_mode=lambda: set_train_mode(model, protocol),
        validate=validate,
        primary=task.metric_names[0],
    )
    calibrate()
    pred, target = predict_masks(model, task.test, bs, ctx)
    return RunOutput(segmentation_metrics(pred, target, task.test_scans, bs), result, len(indices))
