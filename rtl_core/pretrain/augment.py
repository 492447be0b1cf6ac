"""SimCLR augmentations applied to a whole batch on the training device, with a fresh random draw per image.

SimCLR (Chen et al. 2020, appendix A) composes random resized crop (scale 0.08–1, aspect 3/4–4/3), horizontal
flip, colour jitter (strength 1: brightness, contrast, saturation 0.8, hue 0.2; p = 0.8), random greyscale
(p = 0.2) and Gaussian blur (p = 0.5; Jonske et al. 2025 leave it out). ``torchvision.transforms.v2`` draws one
set of parameters per call, so this module draws them per image and applies them with batched tensor ops:

* crops: one box per image, resampled by :func:`torchvision.ops.roi_align` (bilinear, ``sampling_ratio`` 2,
  which also averages when shrinking); boxes that do not fit are clamped to the image instead of torchvision's
  ten retries;
* colour jitter in a fixed order (brightness, contrast, saturation, hue), hue as a rotation of the chroma plane
  in YIQ space (a per-image 3×3 matrix);
* blur: separable Gaussian kernels, one per image, as a grouped convolution.

One policy for both domains, the authors' (Jonske et al. apply the same ColorJitter to CT): grey images (three
equal channels: CT, X-ray) get the same brightness and contrast jitter as colour images (for CT a window
level/width jitter); saturation, hue and greyscale conversion do nothing to a grey image and are skipped for
them, so grey images stay exactly grey. ``grey_strength`` (``pretrain.grey_jitter_strength``) sets a different
brightness/contrast strength for grey images, for a study that wants one (it then confounds the CT-vs-natural
comparison with augmentation strength). Example::

    augment = BatchAugment(AugmentConfig(crop_size=32))
    g = torch.Generator().manual_seed(0)
    view0, view1 = augment(images_uint8, g), augment(images_uint8, g)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of :class:`BatchAugment` (SimCLR's defaults, colour strength 1)."""

    crop_size: int
    min_scale: float = 0.08
    max_scale: float = 1.0
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    grey_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    grey_strength: float | None = None  # None: the colour images' brightness / contrast strengths

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError(
                f"crop scales must satisfy 0 < min_scale <= max_scale <= 1, got {self.min_scale}, {self.max_scale}"
            )
        if self.crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {self.crop_size}")


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def _coin(n: int, p: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p


def is_grey(images: torch.Tensor) -> torch.Tensor:
    """Per-image bool: all three channels equal (grey replicated to RGB)."""
    return ((images[:, 0] == images[:, 1]) & (images[:, 1] == images[:, 2])).flatten(1).all(1)


class BatchAugment(torch.nn.Module):
    """Two SimCLR views per call are two calls; input uint8 or float ``(N, 3, H, W)``, output float in [0, 1]."""

    def __init__(self, config: AugmentConfig) -> None:
        super().__init__()
        self.config = config

    def crop_boxes(self, n: int, height: int, width: int, g: torch.Generator, device) -> torch.Tensor:
        """``(N, 5)`` boxes ``(batch_index, x1, y1, x2, y2)`` of RandomResizedCrop, one per image."""
        c = self.config
        area = _uniform(n, c.min_scale, c.max_scale, g, device) * height * width
        log_ratio = _uniform(n, math.log(c.ratio[0]), math.log(c.ratio[1]), g, device)
        ratio = log_ratio.exp()
        w = (area * ratio).sqrt().clamp(max=width)
        h = (area / ratio).sqrt().clamp(max=height)
        x1 = torch.rand(n, generator=g, device=device) * (width - w)
        y1 = torch.rand(n, generator=g, device=device) * (height - h)
        index = torch.arange(n, device=device, dtype=w.dtype)
        return torch.stack([index, x1, y1, x1 + w, y1 + h], dim=1)

    def forward(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, device = self.config, images.device
        n, _, height, width = images.shape
        grey = is_grey(images)
        x = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
        x = roi_align(
            x,
            self.crop_boxes(n, height, width, g, device),
            output_size=c.crop_size,
            spatial_scale=1.0,
            sampling_ratio=2,
            aligned=True,
        )
        flip = _coin(n, c.hflip_p, g, device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = self._jitter(x, grey, g)
        if c.grey_p > 0:
            to_grey = _coin(n, c.grey_p, g, device) & ~grey
            luma = torch.einsum("nchw,c->nhw", x, _LUMA.to(device))[:, None].expand_as(x)
            x = torch.where(to_grey[:, None, None, None], luma, x)
        if c.blur_p > 0:
            x = self._blur(x, g)
        return x.clamp_(0, 1).contiguous(memory_format=torch.channels_last)

    def _jitter(self, x: torch.Tensor, grey: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, device, n = self.config, x.device, x.shape[0]
        apply = _coin(n, c.jitter_p, g, device)
        colour = ~grey
        grey_b = c.brightness if c.grey_strength is None else c.grey_strength
        grey_c = c.contrast if c.grey_strength is None else c.grey_strength
        strength_b = torch.where(colour, c.brightness, grey_b)
        strength_c = torch.where(colour, c.contrast, grey_c)
        b = 1 + (2 * torch.rand(n, generator=g, device=device) - 1) * strength_b
        k = 1 + (2 * torch.rand(n, generator=g, device=device) - 1) * strength_c
        s = 1 + (2 * torch.rand(n, generator=g, device=device) - 1) * c.saturation
        h = (2 * torch.rand(n, generator=g, device=device) - 1) * c.hue
        one = torch.ones_like(b)
        b, k = torch.where(apply, b, one), torch.where(apply, k, one)
        s = torch.where(apply & colour, s, one)
        h = torch.where(apply & colour, h, torch.zeros_like(h))
        x = (x * b[:, None, None, None]).clamp_(0, 1)
        mean = torch.einsum("nchw,c->n", x, _LUMA.to(device)) / (x.shape[-1] * x.shape[-2])
        x = ((x - mean[:, None, None, None]) * k[:, None, None, None] + mean[:, None, None, None]).clamp_(0, 1)
        luma = torch.einsum("nchw,c->nhw", x, _LUMA.to(device))[:, None]
        coloured = self._hue(((x - luma) * s[:, None, None, None] + luma).clamp_(0, 1), h)
        return torch.where((apply & colour)[:, None, None, None], coloured, x)  # keeps grey images exactly grey

    @staticmethod
    def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Rotate chroma by ``shift`` turns (±0.5 = half a colour wheel) in YIQ space."""
        yiq = _YIQ.to(x.device)
        theta = shift * 2 * math.pi
        cos, sin = theta.cos(), theta.sin()
        rot = torch.zeros(len(shift), 3, 3, device=x.device)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        matrix = torch.linalg.inv(yiq) @ rot @ yiq  # (N, 3, 3), RGB -> RGB
        return torch.einsum("nij,njhw->nihw", matrix, x)

    def _blur(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, device = self.config, x.device
        n, ch, hgt, wid = x.shape
        radius = max(1, int(0.05 * c.crop_size))  # kernel 10 % of the image side, as SimCLR
        sigma = _uniform(n, *c.blur_sigma, g, device)
        sigma = torch.where(_coin(n, c.blur_p, g, device), sigma, torch.full_like(sigma, 1e-3))
        offsets = torch.arange(-radius, radius + 1, device=device, dtype=x.dtype)
        kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(ch, 0)  # (N*C, K)
        flat = x.reshape(1, n * ch, hgt, wid)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * ch)
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=n * ch)
        return flat.reshape(n, ch, hgt, wid)


def augment_config(pretrain_config) -> AugmentConfig:
    """The :class:`AugmentConfig` of a :class:`rtl_core.config.PretrainConfig`."""
    return AugmentConfig(
        crop_size=pretrain_config.crop_size,
        min_scale=pretrain_config.min_scale,
        blur_p=0.5 if pretrain_config.gaussian_blur else 0.0,
        grey_strength=pretrain_config.grey_jitter_strength,
        brightness=pretrain_config.jitter_brightness,
        contrast=pretrain_config.jitter_contrast,
        saturation=pretrain_config.jitter_saturation,
        hue=pretrain_config.jitter_hue,
    )
