"""Where and how a downstream run computes: device, numeric precision, memory layout and optimiser kernel.

``evaluate.precision`` ``auto`` follows the pretraining's plan (:mod:`rtl_core.models.precision`): bf16 autocast and
``channels_last`` on GPUs and on CPUs with bf16 units (AMX or AVX512-BF16), ResNet stages on maps of at most 2 px in
float32 and NCHW;
float32 elsewhere. ``32`` forces float32, ``bf16`` forces bf16 autocast. Weights, optimiser state, losses and
metrics stay float32 (autocast computes convolutions and matrix products in bf16 only). ``evaluate.fused_optimizer``
uses PyTorch's fused AdamW kernel (one kernel for all parameters; on this CPU 5× faster per step than the
per-tensor loop, 15 % of a fine-tune step). ``evaluate.single_pixel_matmul`` computes convolutions whose output
is one pixel (a ResNet's last stage at 32 px) as the matrix products they are (:mod:`rtl_core.models.single_pixel`).

The resolved precision is part of every run record and of its settings hash, so bf16 and fp32 runs are never
pooled. ``tests/test_evaluate.py`` checks that bf16 and fp32 runs on fixed seeds agree within
:data:`AGREEMENT_TOLERANCE`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from rtl_core.models.devices import default_device
from rtl_core.models.precision import compute_in_float32, cpu_has_bf16, float32_stages
from rtl_core.models.single_pixel import use_single_pixel_matmuls

AGREEMENT_TOLERANCE = 0.05
"""Largest |bf16 − fp32| difference of a primary metric (accuracy, AUC, Dice; all in [0, 1]) on one fixed seed
that the precision test accepts: bf16 rounding changes early batches' gradients slightly and a 5-epoch run
ends near, not at, the fp32 model (measured: see docs/methods.md, "Precision of downstream runs")."""


def resolve_precision(requested: str, device_type: str) -> str:
    """``bf16`` or ``32`` for ``evaluate.precision`` on ``device_type`` (see the module doc)."""
    if requested in ("32", "bf16"):
        return requested
    if device_type == "cuda":  # asked on a machine without GPUs (a SLURM login node): GPUs since Ampere have bf16
        return "bf16" if not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else "32"
    return "bf16" if cpu_has_bf16() else "32"


@dataclass(frozen=True)
class ComputePlan:
    """One run's device, precision (``bf16`` | ``32``), layout and optimiser kernel."""

    device: torch.device
    precision: str = "32"
    channels_last: bool = False
    fused_optimizer: bool = False
    single_pixel_matmul: bool = False

    @classmethod
    def for_config(cls, evaluate_config, device: torch.device | None = None) -> ComputePlan:
        device = device or default_device()
        precision = resolve_precision(evaluate_config.precision, device.type)
        return cls(
            device,
            precision,
            evaluate_config.channels_last and (device.type == "cuda" or precision == "bf16"),
            evaluate_config.fused_optimizer,
            evaluate_config.single_pixel_matmul,
        )

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def autocast(self):
        """The autocast region of a forward pass (a no-op in float32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def prepare(self, model: nn.Module, encoder: nn.Module, input_size: int) -> nn.Module:
        """``model`` (whose ResNet is ``encoder``) on the device, in its layout; tiny-map stages in float32 on CPU."""
        model = model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.bf16 and self.device.type == "cpu":
            for name in float32_stages(input_size):
                if hasattr(encoder, name):
                    compute_in_float32(getattr(encoder, name))
        if self.single_pixel_matmul:
            use_single_pixel_matmuls(model)
        return model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the device, in the model's layout."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def optimizer(self, parameters, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """AdamW, fused when configured."""
        return torch.optim.AdamW(
            parameters, lr=lr, weight_decay=weight_decay, **({"fused": True} if self.fused_optimizer else {})
        )
