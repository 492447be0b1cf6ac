"""The Lightning module of SSL pretraining: on-device augmentation, the method's loss, LARS and a cosine schedule.

One code path for CPU, one GPU and many GPUs/nodes: the Trainer picks devices, DDP and precision; this module
only augments each batch where it lives (a per-step seeded generator, so a resumed run draws the augmentations
an uninterrupted one would), converts it to ``channels_last`` (layout and precision per device:
:mod:`rtl_core.pretrain.precision`) and logs loss and throughput to the progress bar.
"""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch
from lightly.utils.lars import LARS
from lightly.utils.scheduler import cosine_warmup_schedule

from rtl_core.config import PretrainConfig
from rtl_core.pretrain.augment import BatchAugment, augment_config
from rtl_core.pretrain.methods import SSLMethod
from rtl_core.pretrain.precision import prepare_for_device


def scaled_lr(config: PretrainConfig) -> float:
    """The learning rate after batch-size scaling: SimCLR's ``lr·sqrt(B)`` or ``lr·B/256``."""
    batch = config.batch_size
    return {"sqrt": config.lr * math.sqrt(batch), "linear": config.lr * batch / 256, "none": config.lr}[
        config.lr_scaling
    ]


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the augmentation generator at one optimiser step on one device."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


class PretrainModule(pl.LightningModule):
    """Trains ``method`` on batches of images (uint8 or float ``(N, 3, S, S)``)."""

    def __init__(self, method: SSLMethod, config: PretrainConfig, seed: int) -> None:
        super().__init__()
        self.method, self.config, self.seed = method, config, seed
        self.augment = BatchAugment(augment_config(config))
        self._tick: float | None = None

    def on_fit_start(self) -> None:
        prepare_for_device(
            self.method, self.method.backbone, self.config, self.device.type, str(self.trainer.precision)
        )

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        generator = torch.Generator(device=images.device).manual_seed(
            step_seed(self.seed, self.global_step, self.global_rank)
        )
        view0, view1 = self.augment(images, generator), self.augment(images, generator)
        self.method.before_step(self.global_step, max(1, int(self.trainer.estimated_stepping_batches)))
        loss = self.method.loss(view0, view1, step=self.global_step, epoch=self.current_epoch)
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(images))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._tick is not None:
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            self.log(
                "pairs_per_s", len(images) * self.trainer.world_size / (now - self._tick), prog_bar=True, on_step=True
            )
        self._tick = now

    def on_train_epoch_start(self) -> None:
        self._tick = None

    def on_after_backward(self) -> None:
        self.method.after_backward(self.current_epoch)

    def configure_optimizers(self):
        cfg = self.config
        params = [p for p in self.method.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]  # biases and norms: no decay, no LARS adaptation
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        lr = scaled_lr(cfg)
        if cfg.optimizer == "lars":
            optimizer = LARS(groups, lr=lr, momentum=cfg.momentum)
        elif cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
        else:
            optimizer = torch.optim.AdamW(groups, lr=lr)
        if cfg.schedule == "epoch":  # the authors': CosineAnnealingLR(T_max=epochs), stepped after each epoch
            epochs = max(1, self.trainer.max_epochs)
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                lambda epoch: cosine_warmup_schedule(
                    min(epoch, epochs), epochs + 1, 1.0, 0.0, min(epochs - 1, cfg.warmup_epochs), 0.0
                ),
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, int(total * cfg.warmup_epochs / max(1, self.trainer.max_epochs)))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_warmup_schedule(min(step, total), total + 1, 1.0, 0.0, warmup, 0.0)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
