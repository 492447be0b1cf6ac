"""Numeric precision and memory layout of a pretraining run, per device.

* GPUs: bf16 autocast (fp16 where bf16 is missing) and ``channels_last`` (Micikevicius et al. 2018, mixed precision).
* CPUs with AMX bf16 tiles (Intel Sapphire Rapids and later): bf16 autocast and ``channels_last`` run the
  ResNet's early stages on oneDNN's AMX kernels (1.3–1.4× faster SimCLR steps at 32 px, ``make bench``).
  On feature maps of at most :data:`TINY_MAP` pixels oneDNN's bf16 convolutions are slower than fp32 (a
  512-channel 3×3 convolution on 1×1 maps, forward + backward: 70 ms in bf16 vs 26 ms in fp32) and, for a
  stride-2 convolution onto 1×1 maps in ``channels_last``, wrong (inf / garbage weight gradients; torch 2.14.1).
  So every ResNet stage whose input is that small (:func:`float32_stages`) computes in float32 and NCHW inside
  the autocast region. The weights, their names and the optimiser stay float32.
* CPUs without AMX: float32, NCHW (bf16 would be emulated, and slower).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from rtl_core.config import PretrainConfig


def cpu_has_amx() -> bool:
    """True when this CPU has AMX tiles (bf16 matrix units) that oneDNN uses for bf16 convolutions."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(requested: str, accelerator: str) -> str:
    """Lightning's precision string for ``pretrain.precision`` (``auto``: see the module docstring)."""
    if requested == "32":
        return "32-true"
    if requested != "auto":
        return requested
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_amx() else "32-true"


TINY_MAP = 2
"""Feature maps this small (pixels per side) or smaller are computed in float32 on CPU."""

#: Input-resolution divisor of each torchvision ResNet stage (stem stride 2, max-pool 2, then stages 1, 2, 2, 2).
STAGE_INPUT_STRIDE = {"layer1": 4, "layer2": 4, "layer3": 8, "layer4": 16}


def float32_stages(crop_size: int) -> list[str]:
    """ResNet stages whose input map is at most :data:`TINY_MAP` px for ``crop_size`` crops (32 px: layer4)."""
    return [name for name, stride in STAGE_INPUT_STRIDE.items() if crop_size / stride <= TINY_MAP]


def compute_in_float32(module: nn.Module) -> nn.Module:
    """Make ``module`` run in float32 and NCHW even inside a bf16 autocast region (its parameters unchanged).

    The module's ``forward`` is wrapped on the instance, so ``state_dict`` keys and the class stay as they are.
    """
    if getattr(module, "_rtl_float32", False):
        return module
    inner = module.forward

    @functools.wraps(inner)
    def forward(x: torch.Tensor, *args, **kwargs):
        with torch.autocast(x.device.type, enabled=False):
            return inner(x.float().contiguous(), *args, **kwargs)

    module.forward = forward
    module.to(memory_format=torch.contiguous_format)
    module._rtl_float32 = True
    return module


def prepare_for_device(model: nn.Module, backbone: nn.Module, config: PretrainConfig, device_type: str,
                       precision: str) -> nn.Module:
    """Memory layout and per-stage precision of ``model`` (whose encoder is ``backbone``) for one run."""
    bf16_cpu = device_type == "cpu" and precision.startswith("bf16")
    if config.channels_last and (device_type == "cuda" or bf16_cpu):
        model.to(memory_format=torch.channels_last)
    if bf16_cpu:
        for name in (n for n in float32_stages(config.crop_size) if hasattr(backbone, n)):
            compute_in_float32(getattr(backbone, name))
    return model
