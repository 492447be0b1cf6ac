"""Downstream training augmentation: random resized crop and horizontal flip, applied jointly to image and mask.

Jonske et al.'s fine-tuning tasks augment their training batches (their ``utility/augmentations.py``): each of
``RandomResizedCrop`` (torchvision's scale 0.08–1, ratio 3/4–4/3) and ``RandomHorizontalFlip`` is applied with
probability 0.2, and the segmentation tasks transform image and mask together (albumentations). This module
does the geometric part per image on a whole batch: one affine sampling grid per image (crop box and flip),
bilinear for images, nearest for masks, so a mask stays aligned with its image and keeps its label values.
Colour jitter, blur and sharpening of their recipe are not done here (see docs/authors_recipe.md).

The draws come from the loader's seeded generator, so a run's augmentation depends only on its seed. Example::

    augment = CropFlip(p=0.5, min_scale=0.35)
    images, masks = augment(images_float, masks_long, generator)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropFlip:
    """Per image: with probability ``p`` a random resized crop (area share in ``[min_scale, 1]``, aspect ratio in
    ``ratio``, resized back to the input size), and independently with probability ``p`` a horizontal flip."""

    p: float = 0.5
    min_scale: float = 0.35
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"evaluate.augment_p must lie in [0, 1], got {self.p}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"evaluate.augment_min_scale must lie in (0, 1], got {self.min_scale}")

    def grids(self, n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
        """``(N, H, W, 2)`` sampling grids (``grid_sample``'s normalised coordinates), one crop/flip per image."""
        crop = torch.rand(n, generator=g) < self.p
        flip = torch.rand(n, generator=g) < self.p
        area = torch.rand(n, generator=g) * (1 - self.min_scale) + self.min_scale
        log_ratio = torch.rand(n, generator=g) * (math.log(self.ratio[1]) - math.log(self.ratio[0])) + math.log(
            self.ratio[0]
        )
        aspect = log_ratio.exp()
        # crop width / height as shares of the image side, clamped to the image (torchvision retries instead)
        w = torch.where(crop, (area * aspect).sqrt().clamp(max=1), torch.ones(n))
        h = torch.where(crop, (area / aspect).sqrt().clamp(max=1), torch.ones(n))
        cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - w)  # centre in [-1 + w, 1 - w]
        cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - h)
        sx = torch.where(flip, -w, w)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, h, cy
        return F.affine_grid(theta, [n, 1, height, width], align_corners=False)

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor | None, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment float images ``(N, C, H, W)`` and, when ``targets`` are masks ``(N, H, W)``, the masks alike;
        class labels (``(N,)``) pass through unchanged."""
        if self.p == 0 or len(images) == 0:
            return images, targets
        n, _, height, width = images.shape
        grid = self.grids(n, height, width, g).to(images.device, images.dtype)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if targets is not None and targets.ndim == 3:
            masks = F.grid_sample(
                targets[:, None].to(images.dtype), grid, mode="nearest", padding_mode="border", align_corners=False
            )
            targets = masks[:, 0].round().to(targets.dtype)
        return out, targets
