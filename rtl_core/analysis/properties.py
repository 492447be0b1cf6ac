"""Label-free image properties for linear probes (what a layer "knows" about its input).

Each property is computed from the images exactly as the encoder sees them (uint8, rendered, resized), on
their grey value ``g`` in ``[0, 1]`` (the mean of the three channels; equal to the grey value for the
pack's grey images, which are replicated to three channels):

=====================  ===================================================================================
``mean_intensity``     mean of ``g``
``contrast``           standard deviation of ``g`` (RMS contrast)
``body_fraction``      share of "body" (non-air) pixels (:func:`body_mask`: ``g > body_threshold``, specks
                       removed, gaps closed, holes such as lungs filled, largest part kept). Meaningful for
                       CT/X-ray/MRI; for colour photographs it is simply the share of the largest non-dark region
``edge_density``       share of pixels whose Sobel gradient magnitude (normalised so a unit step gives 1)
                       exceeds ``edge_threshold``
``high_freq_energy``   share of the (mean-removed) image's power spectrum above ``freq_cutoff`` cycles per
                       pixel (Nyquist is 0.5), a measure of fine texture
``liver_fraction``     share of pixels inside the liver mask (``ct_liver_seg``); NaN where no mask exists
=====================  ===================================================================================

Labels for classification probes come from the sample's metadata: ``dataset`` (the task an image comes
from) and ``body_region`` (CT only, :data:`BODY_REGION`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from rtl_core.errors import DataError

#: Continuous properties computed by :func:`image_properties`.
PROPERTIES: tuple[str, ...] = (
    "mean_intensity",
    "contrast",
    "body_fraction",
    "edge_density",
    "high_freq_energy",
    "liver_fraction",
)

#: Body region of each CT source (task or pool source) of the pack. Chest: the COVID CT scans (``ct_cls``,
#: ``covid_ct_cvt``) and the TCGA slices (``ct_contrast_cls``, ``tcga_ct``; "chest/lung, some abdomen" per its
#: meta.json, taken as chest). Abdomen: the liver sets (MSD/LiTS, 3D-IRCADb, CHAOS). TotalSegmentator's
#: examples span thorax and abdomen and are left out (no single region).
BODY_REGION: dict[str, str] = {
    "ct_cls": "chest",
    "covid_ct_cvt": "chest",
    "ct_contrast_cls": "chest",
    "tcga_ct": "chest",
    "ct_liver_seg": "abdomen",
    "msd_liver_slices": "abdomen",
    "ircadb_p17": "abdomen",
    "ircadb_p01": "abdomen",
    "ircadb_minitest": "abdomen",
    "chaos_minitest": "abdomen",
}


def grey_values(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 images ``(N,3,H,W)``, ``(N,H,W,3)`` or ``(N,H,W)`` → float grey values in ``[0, 1]``, ``(N,H,W)``."""
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8:
        raise DataError(f"image_properties expects uint8 images as rendered for the model, got {array.dtype}.")
    if array.ndim == 4 and array.shape[1] == 3:
        return array.astype(np.float32).mean(axis=1) / 255.0
    if array.ndim == 4 and array.shape[-1] == 3:
        return array.astype(np.float32).mean(axis=-1) / 255.0
    if array.ndim == 3:
        return array.astype(np.float32) / 255.0
    raise DataError(f"Expected images (N,3,H,W), (N,H,W,3) or (N,H,W); got shape {array.shape}.")


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return yy**2 + xx**2 <= radius**2


def body_mask(grey: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Non-air pixels of one grey image: threshold, open (drop specks), close gaps (disk of ~1/32 of the image
    side, so a faint skin line or dark fat under a narrow CT window still encloses the body), fill holes (lungs,
    bowel gas), keep the largest connected part (drops the CT table)."""
    mask = ndimage.binary_opening(grey > threshold, structure=np.ones((2, 2), bool))
    radius = max(1, round(max(grey.shape) / 32))
    padded = np.pad(mask, radius + 1)
    closed = ndimage.binary_closing(padded, structure=_disk(radius))[radius + 1 : -radius - 1, radius + 1 : -radius - 1]
    filled = ndimage.binary_fill_holes(closed)
    labels, count = ndimage.label(filled)
    if count <= 1:
        return filled
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (np.argmax(sizes) + 1)


def edge_map(grey: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Sobel edge pixels of one grey image (gradient magnitude / 4, so a unit step reads 1)."""
    gx = ndimage.sobel(grey, axis=0, mode="nearest")
    gy = ndimage.sobel(grey, axis=1, mode="nearest")
    return np.hypot(gx, gy) / 4.0 > threshold


def high_frequency_share(grey: np.ndarray, cutoff: float = 0.25) -> np.ndarray:
    """Share of spectral power above ``cutoff`` cycles/pixel, per image of a ``(N,H,W)`` stack (DC removed)."""
    centred = grey - grey.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(centred)) ** 2
    fy = np.fft.fftfreq(grey.shape[-2])[:, None]
    fx = np.fft.fftfreq(grey.shape[-1])[None, :]
    high = np.hypot(fy, fx) > cutoff
    total = power.sum(axis=(-2, -1))
    share = (power * high).sum(axis=(-2, -1)) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, share, 0.0)


def image_properties(
    images: np.ndarray | torch.Tensor,
    masks: np.ndarray | torch.Tensor | None = None,
    has_mask: np.ndarray | None = None,
    body_threshold: float = 0.02,
    edge_threshold: float = 0.1,
    freq_cutoff: float = 0.25,
) -> pd.DataFrame:
    """One row per image with the columns of :data:`PROPERTIES` (see the module doc for definitions).

    ``masks``: ``(N,H,W)`` label maps at the images' size (liver = non-zero); ``has_mask`` says which rows have
    a real mask (default: all rows when ``masks`` is given). ``liver_fraction`` is NaN elsewhere.
    """
    grey = grey_values(images)
    n = len(grey)
    body = np.array([body_mask(g, body_threshold).mean() for g in grey])
    edges = np.array([edge_map(g, edge_threshold).mean() for g in grey])
    liver = np.full(n, np.nan)
    if masks is not None:
        mask_array = masks.numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
        if mask_array.shape != grey.shape:
            raise DataError(
                f"masks have shape {mask_array.shape}, images {grey.shape}; resize masks to the image size."
            )
        rows = np.ones(n, bool) if has_mask is None else np.asarray(has_mask, bool)
        liver[rows] = (mask_array[rows] > 0).mean(axis=(1, 2))
    return pd.DataFrame(
        {
            "mean_intensity": grey.mean(axis=(1, 2)),
            "contrast": grey.std(axis=(1, 2)),
            "body_fraction": body,
            "edge_density": edges,
            "high_freq_energy": high_frequency_share(grey, freq_cutoff),
            "liver_fraction": liver,
        }
    )


def body_regions(sources: np.ndarray | list[str], mapping: Mapping[str, str] = BODY_REGION) -> np.ndarray:
    """Body region per image from its task/source name; ``None`` where the source is not a mapped CT set."""
    return np.array([mapping.get(str(s)) for s in sources], dtype=object)
