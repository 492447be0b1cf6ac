"""Backbones by name: torchvision ResNets (``resnet18/34/50``, the ``fc`` head removed) and any timm model
(``timm:<model>``, built with ``num_classes=0``), each a module whose forward returns pooled features.

One factory and a registry (timm's ``create_model`` shape) instead of if/else chains. Weights always start
random here (``weights=None``, ``pretrained=False``): pretrained weights come from our own checkpoints or files
the user places, never from a hub. What a name means is decided in :mod:`rtl_core.config.backbones`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from torch import nn
from torchvision import models

from rtl_core.config.backbones import check_backbone_name, timm_name, timm_spec
from rtl_core.errors import ConfigError

BACKBONES: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "resnet18": (models.resnet18, 512),
    "resnet34": (models.resnet34, 512),
    "resnet50": (models.resnet50, 2048),
}

#: Stages of a torchvision ResNet in forward order (used for layer-wise analysis).
RESNET_STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4", "avgpool")
#: The model families whose layers the feature-space analysis knows (:func:`analysis_layers`).
LAYER_FAMILIES = (
    "ResNets (torchvision or timm:resnet*), timm ViTs (blocks.<i>) and timm CNNs with stages.<i> (ConvNeXt …)"
)


def is_known_backbone(name: str) -> bool:
    """``name`` is a torchvision ResNet of :data:`BACKBONES` or ``timm:<model>`` of a model timm has."""
    try:
        check_backbone_name(name)
    except ConfigError:
        return False
    return True


def feature_dim(name: str) -> int:
    """Width of the pooled feature vector of backbone ``name`` (timm: the model's ``num_features``)."""
    if timm_name(name) is not None:
        return timm_spec(name).feature_dim
    return _lookup(name)[1]


def _lookup(name: str) -> tuple[Callable[..., nn.Module], int]:
    if name not in BACKBONES:
        check_backbone_name(name)  # raises, naming the torchvision ResNets and the timm: form
    return BACKBONES[name]


def build_backbone(name: str, in_channels: int = 3) -> nn.Module:
    """A randomly initialised backbone whose forward returns pooled features ``(N, feature_dim)``.

    ``in_channels=1`` builds a one-channel stem (for grey CT kept single-channel); the pack's loaders give
    three channels, so the default is 3. A timm ViT is built with ``dynamic_img_size=True``: its position
    embeddings (timm's default grid) are resampled to each input's patch grid, so one encoder takes the
    pretraining crops and the evaluation images alike (any side that is a multiple of the patch size).
    """
    if timm_name(name) is not None:
        return _build_timm(name, in_channels)
    factory, _ = _lookup(name)
    model = factory(weights=None)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Identity()
    return model


def _build_timm(name: str, in_channels: int) -> nn.Module:
    """``timm.create_model(<model>, pretrained=False, num_classes=0)``: pooled features (a ViT's per its
    ``global_pool``, the class token for most); ``dynamic_img_size`` where the model takes it."""
    import timm

    spec = timm_spec(name)
    extra = {"dynamic_img_size": True} if spec.dynamic_img_size else {}
    return timm.create_model(spec.name, pretrained=False, num_classes=0, in_chans=in_channels, **extra)


@lru_cache(maxsize=32)
def analysis_layers(name: str) -> tuple[str, ...]:
    """Module names the feature-space analysis (layer-wise CKA) reads, in forward order: a ResNet's stem conv and
    four stages (``conv1``, ``layer1`` … ``layer4``), a ViT's patch embedding (its conv) and every block
    (``patch_embed.proj``, ``blocks.0`` …; token outputs are pooled by :mod:`rtl_core.analysis.activations`), a
    staged CNN's stem and stages (``stem``, ``stages.0`` …). Another layout is refused, naming the known ones,
    rather than read by names it does not have."""
    import torch

    if timm_name(name) is None:
        _lookup(name)
        return tuple(s for s in RESNET_STAGES if s != "avgpool")
    with torch.device("meta"):
        top = dict(build_backbone(name).named_children())
    if "layer4" in top and "conv1" in top:
        return ("conv1", "layer1", "layer2", "layer3", "layer4")
    if "blocks" in top and "patch_embed" in top:
        return ("patch_embed.proj", *(f"blocks.{i}" for i in range(len(top["blocks"]))))
    if "stages" in top and "stem" in top:
        return ("stem", *(f"stages.{i}" for i in range(len(top["stages"]))))
    raise ConfigError(
        f"Backbone {name!r}: the feature-space analysis does not know its layers (top-level modules "
        f"{list(top)}); it reads {LAYER_FAMILIES}."
    )


def stage_layers(name: str, count: int = 4) -> tuple[str, ...]:
    """The last ``count`` stages of :func:`analysis_layers` for embeddings and probes (a ResNet's ``layer1`` …
    ``layer4``); for a ViT ``count`` blocks evenly spaced up to the last (ViT-S: blocks 2, 5, 8, 11)."""
    layers = analysis_layers(name)[1:]
    if len(layers) <= count:
        return layers
    step = len(layers) / count
    return tuple(layers[round((i + 1) * step) - 1] for i in range(count))
