"""Downstream models around a pretrained encoder: a linear classifier and a U-Net (segmentation-models-pytorch).

Images arrive in ``[0, 1]``; each model maps them onto its init's input contract itself (channels, value range,
mean / std: :func:`input_stage`, the one place where a task's images meet an init's contract).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from rtl_core.errors import CheckpointError
from rtl_core.evaluate.data import TaskData
from rtl_core.evaluate.protocols import Protocol
from rtl_core.models.contracts import InputContract, is_grey, plan_conversion


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics as buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def input_stage(init_info: Mapping[str, Any], task: TaskData) -> nn.Module:
    """The module that feeds ``task``'s images to the init of ``init_info`` (its ``contract``, else its mean /
    std): exact conversions only (:func:`rtl_core.models.contracts.plan_conversion`), written to
    ``init_info["input_conversion"]`` so that the run record keeps them; anything else is a :class:`ConfigError`."""
    if "contract" in init_info:
        contract = InputContract.from_dict(init_info["contract"])
    else:
        contract = InputContract(mean=tuple(init_info["mean"]), std=tuple(init_info["std"]), source="init mean/std")
    splits = (task.train.images, task.val.images, task.test.images)
    grey = all(is_grey(images) for images in splits)
    stage, conversions = plan_conversion(contract, int(splits[0].shape[1]), grey, str(init_info.get("init")), task.name)
    if isinstance(init_info, MutableMapping):
        init_info["input_conversion"] = conversions
    return stage


class Classifier(nn.Module):
    """Normalise → encoder (pooled features) → linear head.

    ``probe=True`` (the linear protocols) puts a BatchNorm without affine parameters before the linear layer, as
    MAE's linear probing does (He et al. 2022): it standardises features whose scale differs wildly between
    encoders (a random encoder's features, with fixed BatchNorm statistics, can be huge); at test time it is a
    fixed affine map, so the probe stays linear. ``bias=False`` is the authors' head (``nn.Linear(2048, C,
    bias=False)``, their ``pkgs/FTE/network.py``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        probe: bool = False,
        bias: bool = True,
        stage: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.normalize = stage if stage is not None else Normalize(mean, std)
        self.encoder = encoder
        linear = nn.Linear(feature_dim, num_classes, bias=bias)
        self.head = nn.Sequential(nn.BatchNorm1d(feature_dim, affine=False), linear) if probe else linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Segmenter(nn.Module):
    """Normalise → ``smp.Unet`` whose ResNet encoder carries our pretrained weights."""

    def __init__(
        self, unet: smp.Unet, mean: Sequence[float], std: Sequence[float], stage: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.normalize = stage if stage is not None else Normalize(mean, std)
        self.unet = unet
        self.encoder = unet.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(self.normalize(x))


def build_segmenter(
    encoder: nn.Module,
    arch: str,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    stage: nn.Module | None = None,
) -> Segmenter:
    """A U-Net on a ResNet ``arch`` whose encoder gets ``encoder``'s weights (torchvision key names; ``fc`` dropped).

    smp's ResNet encoder subclasses torchvision's ResNet, so the state dicts share their keys; loading is strict
    apart from the absent ``fc``. A ``timm:<model>`` backbone goes through smp's timm encoders
    (:func:`rtl_core.models.timm_unet.timm_unet`).
    """
    if arch.startswith("timm:"):
        from rtl_core.models.timm_unet import timm_unet

        return Segmenter(timm_unet(encoder, arch, num_classes, decoder_channels), mean, std, stage)
    conv1 = encoder.state_dict().get("conv1.weight")
    unet = smp.Unet(
        encoder_name=arch,
        encoder_weights=None,
        in_channels=int(conv1.shape[1]) if conv1 is not None else 3,  # 1: a grey encoder's stem (TorchXRayVision)
        classes=num_classes,
        decoder_channels=list(decoder_channels),
    )
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("fc.")}
    target_keys = {k for k in unet.encoder.state_dict() if not k.startswith("fc.")}
    if set(state) != target_keys:
        missing, unexpected = sorted(target_keys - set(state))[:5], sorted(set(state) - target_keys)[:5]
        raise CheckpointError(
            f"Encoder weights do not fit smp's {arch} encoder: missing {missing}, unexpected {unexpected}."
        )
    nn.Module.load_state_dict(unet.encoder, state, strict=True)
    return Segmenter(unet, mean, std, stage)


def freeze_encoder(model: nn.Module, protocol: Protocol) -> None:
    """Freeze ``model.encoder``'s weights when the protocol says so."""
    if protocol.frozen_encoder:
        for p in model.encoder.parameters():
            p.requires_grad_(False)


def set_train_mode(model: nn.Module, protocol: Protocol) -> None:
    """``model.train()``, except a frozen encoder stays in eval mode (its BatchNorm statistics fixed) unless the
    protocol is the paper-parity ``linear_bn_train``."""
    model.train()
    if protocol.frozen_encoder and not protocol.bn_train:
        model.encoder.eval()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches, prepare=lambda x: x, autocast=None) -> int:
    """Precise BatchNorm (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"): re-estimate every BatchNorm's running
    mean and variance as the plain average over ``batches`` (images as the model takes them, e.g. the un-augmented
    training images) with the weights as they are; returns the number of BatchNorm layers.

    Why (issue "a demo study worth reading", measured on the default profile): with 8 optimiser steps per epoch
    the exponential running averages (momentum 0.1) trail weights that change fast, so for the first ~5 epochs
    of every init the validation accuracy sat at chance while the training loss had fallen to 0.1–0.3. Training
    itself is unchanged (train mode uses batch statistics); flags and momenta are restored afterwards."""
    from contextlib import nullcontext

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m.momentum, m.training) for m in norms]
    was_training = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch weighs the same
        m.train()
    for x in batches:
        with autocast() if autocast is not None else nullcontext():
            model(prepare(x))
    model.train(was_training)  # resets every module's flag; the BatchNorm layers' own flags come after
    for m, (momentum, training) in zip(norms, saved):
        m.momentum = momentum
        m.train(training)
    return len(norms)
