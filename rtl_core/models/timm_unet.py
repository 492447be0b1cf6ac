"""A U-Net (segmentation-models-pytorch) on a ``timm:<model>`` encoder of ours, through smp's timm encoders.

smp builds the encoder as ``tu-<model>``: ``timm.create_model(<model>, features_only=True)``, whose modules
are the model's own with a top-level ``nn.Sequential`` flattened (``stages.0`` → ``stages_0``) and the parts
after the last feature map left out (the final norm, the head). :func:`timm_unet` maps our encoder's keys to
those and loads them strictly: every weight the U-Net's encoder has comes from ours, or it fails naming the
keys. A plain ViT has one feature scale, which smp's U-Net cannot take: it fails naming what smp supports.
"""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn

from rtl_core.config.backbones import timm_name
from rtl_core.errors import CheckpointError, ConfigError


def _in_channels(encoder: nn.Module) -> int:
    """Input channels of the encoder's first convolution (its stem or patch embedding)."""
    first = next((p for p in encoder.parameters() if p.ndim == 4), None)
    return int(first.shape[1]) if first is not None else 3


def smp_key_map(ours: Sequence[str], theirs: Sequence[str]) -> dict[str, str]:
    """``{smp key: our key}``: smp's ``model.`` prefix dropped, ``a_b.rest`` read as ``a.b.rest`` where our
    encoder has no top-level module ``a_b`` (timm's flattening of a top-level Sequential)."""
    tops = {k.split(".", 1)[0] for k in ours}
    mapping = {}
    for key in theirs:
        name = key.removeprefix("model.")
        top, _, rest = name.partition(".")
        if top not in tops and "_" in top:
            head, _, index = top.rpartition("_")
            name = f"{head}.{index}.{rest}" if rest else f"{head}.{index}"
        mapping[key] = name
    return mapping


def timm_unet(encoder: nn.Module, arch: str, num_classes: int, decoder_channels: Sequence[int]) -> smp.Unet:
    """``smp.Unet(encoder_name="tu-<model>")`` with ``encoder``'s weights; the parts smp's encoder leaves out
    (head, final norm) are the only keys of ours it does not take."""
    name = timm_name(arch)
    if name is None:
        raise ConfigError(f"{arch!r} is not a timm backbone (timm:<model>).")
    try:
        unet = smp.Unet(
            encoder_name=f"tu-{name}",
            encoder_weights=None,
            in_channels=_in_channels(encoder),
            classes=num_classes,
            decoder_channels=list(decoder_channels),
        )
    except (ValueError, RuntimeError, AttributeError) as exc:
        raise ConfigError(
            f"Segmentation with backbone {arch!r}: segmentation-models-pytorch cannot build a U-Net on it ({exc}). "
            "Its timm encoders ('tu-<model>') need a model with feature maps at several scales: the ResNets, "
            "timm:convnext_*, timm:resnet*, timm:efficientnet_* and other timm CNNs; a plain ViT has one scale. "
            "Drop the segmentation task from evaluate.tasks or pick such a backbone."
        ) from None
    ours = encoder.state_dict()
    target = unet.encoder.state_dict()
    mapping = smp_key_map(list(ours), list(target))
    missing = sorted(k for k, v in mapping.items() if v not in ours or ours[v].shape != target[k].shape)
    if missing:
        raise CheckpointError(
            f"Encoder weights do not fit smp's tu-{name} encoder: no weights of ours (or another shape) for "
            f"{missing[:5]} ({len(missing)} keys)."
        )
    state = {k: ours[v] for k, v in mapping.items()}
    with torch.no_grad():
        unet.encoder.load_state_dict(state, strict=True)
    return unet
