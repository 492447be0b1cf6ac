"""Numeric precision and memory layout of a ResNet on one device, shared by pretraining and downstream runs.

* GPUs: bf16 autocast (fp16 where bf16 is missing) and ``channels_last`` (Micikevicius et al. 2018, mixed precision).
* CPUs with bf16 units, AMX tiles (Intel Sapphire Rapids and later) or AVX512-BF16 (AMD Zen 4 and later):
  bf16 autocast and ``channels_last`` run the ResNet's early stages on oneDNN's bf16 kernels (``make bench``:
  on Intel AMX 1.3–1.4× faster SimCLR steps at 32 px; on an AMD EPYC with AVX512-BF16 1.4×, see docs/measurements.md,
  "Measured on this project's machine").
  On feature maps of at most :data:`TINY_MAP` pixels oneDNN's bf16 convolutions are slower than fp32 (a
  512-channel 3×3 convolution on 1×1 maps, forward + backward: 70 ms in bf16 vs 26 ms in fp32) and, for a
  stride-2 convolution onto 1×1 maps in ``channels_last``, wrong (inf / garbage weight gradients; torch 2.14.1).
  So every ResNet stage whose input is that small (:func:`float32_stages`) computes in float32 and NCHW inside
  the autocast region. The weights, their names and the optimiser stay float32.
* other CPUs: float32, NCHW (bf16 would be emulated, and slower).
"""

from __future__ import annotations

import functools

import torch
from torch import nn


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AMX tiles or AVX512-BF16), as oneDNN's bf16 convolutions need."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe is not None and probe() for probe in probes) and torch.ops.mkldnn._is_mkldnn_bf16_supported()


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
