"""Model building blocks: convolutions with a one-pixel output computed as matrix products
(rtl_core.models.single_pixel).

Random tensors are fine here: this is the maths of one layer, checked against nn.Conv2d itself.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from rtl_core.models.backbones import build_backbone
from rtl_core.models.single_pixel import SinglePixelConv2d, use_single_pixel_matmuls

# (in, out, kernel, stride, padding, input size, groups): the one-pixel outputs of a ResNet on small inputs, and
# shapes that must fall back to the convolution (output larger than one pixel, grouped).
CASES = {
    "3x3 on 1x1 (layer4 at 32 px)": (16, 8, 3, 1, 1, 1, 1),
    "3x3 stride 2 on 2x2 (layer4 entry)": (16, 8, 3, 2, 1, 2, 1),
    "1x1 stride 2 on 2x2 (downsample)": (16, 8, 1, 2, 0, 2, 1),
    "7x7 stride 2 on 2x2 (stem)": (3, 8, 7, 2, 3, 2, 1),
    "3x3 no padding on 3x3": (4, 6, 3, 1, 0, 3, 1),
    "3x3 on 4x4 (not one pixel)": (16, 8, 3, 1, 1, 4, 1),
    "grouped 3x3 on 1x1": (16, 8, 3, 1, 1, 1, 4),
}


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_single_pixel_conv_equals_the_convolution(case, channels_last):
    cin, cout, k, stride, padding, size, groups = CASES[case]
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=True)
    fast = copy.deepcopy(conv)
    use_single_pixel_matmuls(fast)
    assert type(fast) is SinglePixelConv2d and type(conv) is nn.Conv2d
    x = torch.randn(5, cin, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = conv(xa), fast(xb)
    assert ya.shape == yb.shape
    torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, conv.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.bias.grad, conv.bias.grad, rtol=1e-5, atol=1e-5)


def test_only_one_pixel_outputs_leave_the_convolution_kernel(monkeypatch):
    """The matrix product replaces the convolution exactly where the output is one pixel, and nowhere else."""
    calls = []
    inner = nn.Conv2d._conv_forward
    monkeypatch.setattr(nn.Conv2d, "_conv_forward", lambda self, *a: calls.append(self) or inner(self, *a))
    conv = use_single_pixel_matmuls(nn.Conv2d(4, 4, 3, padding=1))
    conv(torch.randn(2, 4, 1, 1))
    assert calls == []
    conv(torch.randn(2, 4, 3, 3))
    assert calls == [conv]


def test_a_resnet_keeps_its_function_weights_and_names():
    """ResNet-18 at 32 px (its layer4 runs on 1x1 maps): same features and gradients, same state_dict, and the
    switched model survives deepcopy and pickling (checkpoints, the momentum encoders of BYOL/MoCo)."""
    torch.manual_seed(0)
    reference = build_backbone("resnet18")
    fast = copy.deepcopy(reference)
    use_single_pixel_matmuls(fast)
    assert list(fast.state_dict()) == list(reference.state_dict())
    assert sum(type(m) is SinglePixelConv2d for m in fast.modules()) == 20  # every convolution, stem to layer4
    x = torch.rand(6, 3, 32, 32)
    fa, fb = reference(x), fast(x)
    torch.testing.assert_close(fb, fa, rtol=1e-4, atol=1e-5)
    fa.square().mean().backward()
    fb.square().mean().backward()
    for (name, pa), pb in zip(reference.named_parameters(), fast.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-3, atol=1e-6, msg=name)
    for clone in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert type(clone.layer4[0].conv1) is SinglePixelConv2d
        torch.testing.assert_close(clone(x), fb.detach(), rtol=1e-5, atol=1e-6)
