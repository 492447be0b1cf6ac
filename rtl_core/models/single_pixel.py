"""Convolutions whose output is a single pixel, computed as the matrix product they are.

A ResNet on 32 px inputs ends on 1×1 maps: its last stage's 3×3 convolutions (padding 1) see one real input pixel
and eight zeros of padding, and its stride-2 entry convolution maps a 2×2 map onto one pixel. A convolution with a
1×1 output is exactly ``linear(x_window, weight_taps)``: the input pixels inside the kernel's window, flattened,
times the kernel taps that touch them (the other taps only ever multiply padding, so their gradient is exactly
zero either way). oneDNN computes these convolutions with all taps, padding included, and its weight-gradient
kernel is slow on such shapes: on the project's 2-core CPU a ResNet-18 fine-tune step at 32 px (batch 64, one
thread, bf16 plan) took 110 ms with them and 90 ms with matrix products, and the SimCLR pretraining step went from
1.91× to 2.34× the textbook loop (``make bench``: ``pretrain.speedup``; docs/measurements.md, "Measured on this
project's machine").

:func:`use_single_pixel_matmuls` switches every plain ``nn.Conv2d`` of a model to :class:`SinglePixelConv2d`
(in place: same parameters, same ``state_dict`` keys, same class for pickling and ``deepcopy``). The switch is
decided per call from the input's size, so one model serves every resolution; outputs larger than one pixel, and
grouped, dilated or non-zero-padded convolutions, run ``nn.Conv2d``'s own forward. Results equal the convolution's
up to float rounding (a different summation order; ``tests/test_models.py`` checks outputs and gradients).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SinglePixelConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes a one-pixel output as a matrix product (module doc)."""

    def _window(self, height: int, width: int) -> tuple[int, int] | None:
        """Rows and columns of the input inside the kernel window when the output is 1×1, else ``None``."""
        if self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str) or self.dilation != (1, 1):
            return None
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if (height + 2 * ph - kh) // sh + 1 != 1 or (width + 2 * pw - kw) // sw + 1 != 1:
            return None
        return min(height, kh - ph), min(width, kw - pw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = self._window(x.shape[-2], x.shape[-1]) if x.dim() == 4 else None
        if window is None:
            return super().forward(x)
        rows, cols = window
        ph, pw = self.padding
        taps = self.weight[:, :, ph : ph + rows, pw : pw + cols].reshape(self.out_channels, -1)
        out = F.linear(x[:, :, :rows, :cols].reshape(x.shape[0], -1), taps, self.bias)
        return out.view(x.shape[0], self.out_channels, 1, 1)


def use_single_pixel_matmuls(model: nn.Module) -> nn.Module:
    """Switch every plain ``nn.Conv2d`` in ``model`` to :class:`SinglePixelConv2d`, in place; returns ``model``."""
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = SinglePixelConv2d
    return model
