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


def assert_near_float64(actual: torch.Tensor, reference: torch.Tensor, rel: float = 1e-4, msg: str = "") -> None:
    """``actual`` (float32, any CPU kernel) within ``rel`` of the float64 ``reference`` in relative L2 norm.

    Two float32 kernels (AVX2, AVX-512, AMX) round differently, so comparing one against the other elementwise
    tunes a tolerance to one CPU; the float64 reference is the same on all of them.
    """
    error = (actual.double() - reference).norm() / reference.norm().clamp_min(1e-30)
    assert error <= rel, f"{msg}: relative error {error:.2e} against the float64 reference exceeds {rel:.0e}"


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_single_pixel_conv_equals_the_convolution(case, channels_last):
    """Same output and gradients as ``nn.Conv2d``: exactly in float64, and within float32 rounding of it in float32."""
    cin, cout, k, stride, padding, size, groups = CASES[case]
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=True)
    fast = copy.deepcopy(conv)
    use_single_pixel_matmuls(fast)
    assert type(fast) is SinglePixelConv2d and type(conv) is nn.Conv2d
    x = torch.randn(5, cin, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randn(5, cout, *conv(x).shape[-2:])

    def run(module: nn.Module, dtype: torch.dtype) -> list[torch.Tensor]:
        module = copy.deepcopy(module).to(dtype)
        xi = x.to(dtype).requires_grad_()
        y = module(xi)
        y.backward(g.to(dtype))
        return [y.detach(), xi.grad, module.weight.grad, module.bias.grad]

    reference = run(conv, torch.float64)
    names = ("output", "input grad", "weight grad", "bias grad")
    for name, got, want in zip(names, run(fast, torch.float64), reference):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name)
    for name, got in zip(names, run(fast, torch.float32)):
        assert_near_float64(got, reference[names.index(name)], msg=name)


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

    def features_and_grads(model: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = copy.deepcopy(model).to(dtype)
        features = model(x.to(dtype))
        features.square().mean().backward()
        return features.detach(), {name: p.grad for name, p in model.named_parameters()}

    # The same function: float64 against float64, where the two paths differ only in summation order.
    f64, g64 = features_and_grads(reference, torch.float64)
    fast64, fast_g64 = features_and_grads(fast, torch.float64)
    torch.testing.assert_close(fast64, f64, rtol=1e-9, atol=1e-12)
    for name, grad in g64.items():
        torch.testing.assert_close(fast_g64[name], grad, rtol=1e-8, atol=1e-12, msg=name)
    # In float32 (the dtype that trains) the fast path stays within float32 rounding of the float64 function.
    fb, fast_g32 = features_and_grads(fast, torch.float32)
    assert_near_float64(fb, f64, msg="features")
    for name, grad in g64.items():
        assert_near_float64(fast_g32[name], grad, rel=1e-3, msg=name)
    for clone in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert type(clone.layer4[0].conv1) is SinglePixelConv2d
        torch.testing.assert_close(clone(x), fb.detach(), rtol=1e-5, atol=1e-6)
