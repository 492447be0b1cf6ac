"""What a backbone name means: a torchvision ResNet (``resnet18/34/50``) or any timm model (``timm:<model>``).

One parser for the name and one probe of a timm model (its feature width, patch size and whether it takes
images of any size), shared by the config's validation and by :mod:`rtl_core.models.backbones`, which builds
the encoders. The probe builds the model on PyTorch's ``meta`` device: no memory, no weights, milliseconds.

Example::

    spec = timm_spec("timm:vit_small_patch16_224")
    spec.feature_dim, spec.patch_size  # (384, 16)
    check_input_size("timm:vit_small_patch16_224", 24, "evaluate.image_size")  # ConfigError: 24 % 16 != 0
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from functools import lru_cache

from rtl_core.errors import ConfigError

TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50")
TIMM_PREFIX = "timm:"


def timm_name(arch: str) -> str | None:
    """The timm model name of ``timm:<model>``, else ``None`` (a torchvision ResNet)."""
    return arch[len(TIMM_PREFIX) :] if arch.startswith(TIMM_PREFIX) else None


def check_backbone_name(arch: str) -> str:
    """``arch`` when it names a backbone, else :class:`ConfigError` naming close matches (timm's registry)."""
    name = timm_name(arch)
    if name is None:
        if arch in TORCHVISION_BACKBONES:
            return arch
        import timm

        hint = f"did you mean 'timm:{arch}'?" if timm.is_model(arch) else "list them with timm.list_models()"
        raise ConfigError(
            f"Unknown backbone {arch!r}; choose one of {', '.join(TORCHVISION_BACKBONES)} or any timm model as "
            f"'timm:<model>' ({hint})."
        )
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(TIMM_PREFIX + c for c in close)}" if close else "no close match"
        raise ConfigError(
            f"Backbone {arch!r}: timm {timm.__version__} has no model {name!r} ({hint}); "
            "list the names with timm.list_models('<pattern>')."
        )
    return arch


@dataclass(frozen=True)
class TimmSpec:
    """What the pipeline needs to know of a timm model built with ``num_classes=0`` (pooled features)."""

    name: str
    feature_dim: int
    patch_size: int | None
    """Side of a ViT's square patch (``patch_embed.patch_size``); ``None`` for a CNN."""
    dynamic_img_size: bool
    """The model takes ``dynamic_img_size=True`` (position embeddings resampled to each input's patch grid)."""


@lru_cache(maxsize=64)
def timm_spec(arch: str) -> TimmSpec:
    """Probe ``timm:<model>`` on the meta device (no weights are made) after checking its name."""
    import timm
    import torch

    name = timm_name(check_backbone_name(arch))
    if name is None:
        raise ConfigError(f"{arch!r} is a torchvision backbone, not a timm one.")
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    width = getattr(model, "head_hidden_size", None) or model.num_features
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if isinstance(patch, (tuple, list)):
        if len(set(patch)) != 1:
            raise ConfigError(f"Backbone {arch!r} has non-square patches {tuple(patch)}; pick a square-patch model.")
        patch = patch[0]
    dynamic = "dynamic_img_size" in inspect.signature(type(model).__init__).parameters
    return TimmSpec(name, int(width), int(patch) if patch else None, dynamic)


def check_input_size(arch: str, size: int, where: str) -> None:
    """:class:`ConfigError` when a ViT's patch size does not divide the image side ``size`` (set at ``where``)."""
    if timm_name(arch) is None:
        return
    check_patch_size(timm_spec(arch).patch_size, size, where, f"backbone {arch!r}")


def check_patch_size(patch: int | None, size: int, where: str, what: str) -> None:
    """:class:`ConfigError` when ``patch`` (a ViT's patch side; ``None``: a CNN) does not divide the image side
    ``size`` (set at ``where``); ``what`` names the model in the message."""
    if patch is None or size % patch == 0:
        return
    lower = size // patch * patch
    options = [str(s) for s in (lower, lower + patch) if s >= patch]
    raise ConfigError(
        f"{where} = {size} px is not a multiple of the patch size {patch} of {what} "
        f"({size / patch:.2f} patches a side). Set {where} to a multiple of {patch} "
        f"(e.g. {' or '.join(options)}) or pick a model with another patch size."
    )
