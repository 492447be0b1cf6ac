"""CT intensity handling: Hounsfield-unit windows, 8-bit pass-through, grey to three channels, resizing.

Windows follow common radiology presets (level/width in HU); an image rendered through a window maps
``[level - width/2, level + width/2]`` linearly onto ``[0, 1]`` (uint8: ``[0, 255]``) and clips outside.
8-bit renderings (``intensity == "uint8"``) already carry a window and pass through unchanged.
Decoded 16-bit and float images (PNG/TIFF exports) become 8 bit by :func:`decode_8bit`'s rule: a declared
window, else each image's min–max; never clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rtl_core.errors import ConfigError, DataError


@dataclass(frozen=True)
class CTWindow:
    """A display window in Hounsfield units; call it on HU values to get floats in [0, 1]."""

    level: float
    width: float

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ConfigError(f"CT window width must be positive, got {self.width}.")

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    def __call__(self, hu: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        scaled = (hu - self.low) / self.width
        return scaled.clip(0, 1) if isinstance(scaled, np.ndarray) else scaled.clamp(0, 1)


#: Named presets (level, width) in HU.
WINDOWS: dict[str, CTWindow] = {
    "lung": CTWindow(-600, 1500),
    "mediastinum": CTWindow(50, 350),
    "abdomen": CTWindow(40, 400),
    "liver": CTWindow(60, 160),
    "brain": CTWindow(40, 80),
    "bone": CTWindow(400, 1800),
    "full": CTWindow(1023.5, 4095),  # the whole 12-bit CT range, -1024 .. 3071 HU
}


def get_window(window: str | CTWindow | tuple[float, float]) -> CTWindow:
    """Resolve a preset name, a ``(level, width)`` pair or a :class:`CTWindow`."""
    if isinstance(window, CTWindow):
        return window
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ConfigError(f"Unknown CT window {window!r}; choose one of {sorted(WINDOWS)} or give [level, width].")
        return WINDOWS[window]
    if len(window) == 2:
        return CTWindow(float(window[0]), float(window[1]))
    raise ConfigError(f"A CT window is a preset name or [level, width]; got {window!r}.")


def to_uint8(images: np.ndarray, intensity: str, window: str | CTWindow | tuple[float, float] | None) -> np.ndarray:
    """Render images to uint8: HU through ``window``; 8-bit images unchanged."""
    if intensity == "uint8":
        if images.dtype != np.uint8:
            raise DataError(f"8-bit images must be uint8, got {images.dtype}.")
        return images
    if intensity != "hu":
        raise DataError(f"Unknown intensity kind {intensity!r} (expected 'hu' or 'uint8').")
    if window is None:
        raise ConfigError("HU images need a CT window to be rendered; set one (e.g. 'abdomen').")
    scaled = get_window(window)(images.astype(np.float32))
    return np.round(scaled * 255).astype(np.uint8)


#: PIL modes with more than 8 bits per pixel: 16-bit grey (PNG, TIFF), 32-bit integer and 32-bit float.
HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


def decode_8bit(
    img: Image.Image, mode: str, window: str | CTWindow | tuple[float, float] | None = None, source: object = ""
) -> Image.Image:
    """A decoded PIL image as 8-bit ``mode`` (``"L"`` or ``"RGB"``), keeping the dynamic range of deep images.

    8-bit images (``L``, ``RGB``, ``P``, ``RGBA``, ...) convert as PIL converts them. 16-bit, 32-bit integer and
    float images (:data:`HIGH_DEPTH_MODES`: exported CT and X-ray PNGs/TIFFs) are mapped linearly onto 0–255 by
    one documented rule, never clipped at 255 as ``Image.convert`` does:

    * with ``window`` (a preset or ``(level, width)``, in the file's stored values, e.g. HU for a float TIFF in HU,
      ``(1064, 400)`` for an abdomen window on PNGs stored as HU + 1024): ``[level - width/2, level + width/2]``
      onto 0–255, clipped outside;
    * without: each image's own minimum onto 0 and maximum onto 255 (a constant image becomes 0).

    An image with NaN or infinite values raises :class:`DataError` naming ``source``.
    """
    if img.mode not in HIGH_DEPTH_MODES:
        return img.convert(mode)  # a loaded copy, as before
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(
            f"{source}: {img.mode} image with NaN or infinite values; replace them (e.g. with the minimum) or "
            "re-export the image as 8- or 16-bit."
        )
    if window is not None:
        scaled = np.asarray(get_window(window)(values))
    else:
        low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    grey = Image.fromarray(np.round(scaled * 255).astype(np.uint8))
    return grey if mode == "L" else grey.convert(mode)


def to_chw3(images: np.ndarray) -> torch.Tensor:
    """(N,H,W) grey or (N,H,W,3) RGB uint8 → (N,3,H,W) uint8 tensor; grey is replicated to the three channels."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.ndim == 3:
        return tensor[:, None].expand(-1, 3, -1, -1).contiguous()
    if tensor.ndim == 4 and tensor.shape[-1] == 3:
        return tensor.permute(0, 3, 1, 2).contiguous()
    raise DataError(f"Expected (N,H,W) or (N,H,W,3) images, got {tuple(tensor.shape)}.")


def pad_to_square(images: np.ndarray, fill: int | float = 0) -> np.ndarray:
    """Centre-pad (N,H,W[,C]) images to square with ``fill`` (e.g. -1024 HU or 0)."""
    h, w = images.shape[1:3]
    if h == w:
        return images
    size = max(h, w)
    top, left = (size - h) // 2, (size - w) // 2
    pad = [(0, 0), (top, size - h - top), (left, size - w - left)] + [(0, 0)] * (images.ndim - 3)
    return np.pad(images, pad, constant_values=fill)


def resize_uint8(images: torch.Tensor, size: int, batch: int = 1024) -> torch.Tensor:
    """Resize (N,C,H,W) uint8 images to ``size``×``size`` (bilinear, antialiased), keeping uint8."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + batch] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def resize_masks(masks: np.ndarray, size: int) -> torch.Tensor:
    """Resize (N,H,W) label maps with nearest neighbour; returns int64 (N,size,size)."""
    tensor = torch.from_numpy(np.ascontiguousarray(masks)).long()
    if tensor.shape[-2:] == (size, size):
        return tensor
    return F.interpolate(tensor[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()


def render(images: np.ndarray, intensity: str, window, size: int, pad_fill: float | None = None) -> torch.Tensor:
    """The whole path for a model input: window (HU) → square → 3 channels → ``size`` px; uint8 (N,3,size,size)."""
    if images.shape[1] != images.shape[2]:
        fill = pad_fill if pad_fill is not None else (-1024 if intensity == "hu" else 0)
        images = pad_to_square(images, fill)
    return resize_uint8(to_chw3(to_uint8(images, intensity, window)), size)
