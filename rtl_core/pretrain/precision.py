"""Lightning precision of a pretraining run and its model's layout (the per-device plan:
:mod:`rtl_core.models.precision`)."""

from __future__ import annotations

import torch
from torch import nn

from rtl_core.config import PretrainConfig
from rtl_core.models.precision import TINY_MAP, compute_in_float32, cpu_has_bf16, float32_stages
from rtl_core.models.single_pixel import use_single_pixel_matmuls

__all__ = [
    "TINY_MAP",
    "compute_in_float32",
    "cpu_has_bf16",
    "float32_stages",
    "prepare_for_device",
    "resolve_precision",
]


def resolve_precision(requested: str, accelerator: str) -> str:
    """Lightning's precision string for ``pretrain.precision`` (``auto``: see the module docstring)."""
    if requested == "32":
        return "32-true"
    if requested != "auto":
        return requested
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


def prepare_for_device(
    model: nn.Module, backbone: nn.Module, config: PretrainConfig, device_type: str, precision: str
) -> nn.Module:
    """Memory layout and per-stage precision of ``model`` (whose encoder is ``backbone``) for one run."""
    bf16_cpu = device_type == "cpu" and precision.startswith("bf16")
    if config.channels_last and (device_type == "cuda" or bf16_cpu):
        model.to(memory_format=torch.channels_last)
    if bf16_cpu:
        for name in (n for n in float32_stages(config.crop_size) if hasattr(backbone, n)):
            compute_in_float32(getattr(backbone, name))
    if config.single_pixel_matmul:
        use_single_pixel_matmuls(model)
    return model
