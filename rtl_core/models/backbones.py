"""Backbones by name: torchvision ResNets as feature extractors (the ``fc`` head removed).

One factory and a registry (timm's ``create_model`` shape) instead of if/else chains. Weights always start
random here (``weights=None``): pretrained weights come from our own checkpoints, never from a hub.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models

from rtl_core.errors import ConfigError

BACKBONES: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "resnet18": (models.resnet18, 512),
    "resnet34": (models.resnet34, 512),
    "resnet50": (models.resnet50, 2048),
}

#: Stages of a torchvision ResNet in forward order (used for layer-wise analysis).
RESNET_STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4", "avgpool")


def feature_dim(name: str) -> int:
    """Width of the pooled feature vector of backbone ``name``."""
    return _lookup(name)[1]


def _lookup(name: str) -> tuple[Callable[..., nn.Module], int]:
    if name not in BACKBONES:
        raise ConfigError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def build_backbone(name: str, in_channels: int = 3) -> nn.Module:
    """A randomly initialised torchvision ResNet whose forward returns pooled features ``(N, feature_dim)``.

    ``in_channels=1`` builds a one-channel stem (for grey CT kept single-channel); the pack's loaders give
    three channels, so the default is 3.
    """
    factory, _ = _lookup(name)
    model = factory(weights=None)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Identity()
    return model
