"""Downstream models around a pretrained encoder: a linear classifier and a U-Net (segmentation-models-pytorch).

Images arrive in ``[0, 1]``; each model normalises them itself with the mean/std its init prescribes.
"""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn

from rtl_core.errors import CheckpointError
from rtl_core.evaluate.protocols import Protocol


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics as buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


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
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.encoder = encoder
        linear = nn.Linear(feature_dim, num_classes, bias=bias)
        self.head = nn.Sequential(nn.BatchNorm1d(feature_dim, affine=False), linear) if probe else linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Segmenter(nn.Module):
    """Normalise → ``smp.Unet`` whose ResNet encoder carries our pretrained weights."""

    def __init__(self, unet: smp.Unet, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
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
) -> Segmenter:
    """A U-Net on a ResNet ``arch`` whose encoder gets ``encoder``'s weights (torchvision key names; ``fc`` dropped).

    smp's ResNet encoder subclasses torchvision's ResNet, so the state dicts share their keys; loading is strict
    apart from the absent ``fc``.
    """
    unet = smp.Unet(
        encoder_name=arch,
        encoder_weights=None,
        in_channels=3,
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
    return Segmenter(unet, mean, std)


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
