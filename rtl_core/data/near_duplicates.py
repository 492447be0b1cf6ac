"""Near-duplicate images: re-encoded, re-scaled or lightly edited copies of one picture.

Exact duplicates (identical pixels) are caught by content hashes (:func:`rtl_core.data.splits.content_hashes`);
a copy saved again as JPEG or resized is not. Two images are near-duplicates here when both tests agree:

* their 256-bit perceptual hashes (DCT pHash, Zauner 2010, via ``imagehash``) differ in at most
  :data:`MAX_BITS` bits, and
* their grey pixels at 64 × 64 correlate (Pearson) at least :data:`MIN_CORRELATION`.

The pHash finds candidates cheaply; the correlation check keeps two different slices of one smooth anatomy (or
two photos of one scene), which can hash close, from counting as copies. Measured on the pack (issue "a demo
study worth reading"): ``mri_cls``'s 18 cross-split pairs within 10 bits all correlate ≥ 0.99 with a mean
absolute difference ≤ 1.2 grey levels, same label: re-encoded copies.

Used before every split (:mod:`rtl_core.data.registry`): a re-split task links near-duplicates into one group, a
task that keeps its source's official split drops the val/test member of a pair whose other member is in train,
and a pretraining pool drops every image that is a near-duplicate of any downstream val/test image.
"""

from __future__ import annotations

import numpy as np

MAX_BITS = 10
"""Largest Hamming distance of two 256-bit pHashes (16 × 16) for a near-duplicate candidate."""
MIN_CORRELATION = 0.99
"""Smallest Pearson correlation of the two images' 64 × 64 grey pixels for a candidate to count."""
HASH_SIZE = 16
_CHUNK = 2048


def grey64(images: np.ndarray) -> np.ndarray:
    """(N, 64, 64) float32 grey versions of (N, H, W) or (N, H, W, 3) images of any intensity (min-max per image
    for non-uint8 data such as Hounsfield units)."""
    import torch
    from torch.nn import functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    if x.ndim == 4:
        x = x[..., :3].mean(dim=-1)
    if images.dtype != np.uint8:
        low = x.flatten(1).min(dim=1).values.view(-1, 1, 1)
        high = x.flatten(1).max(dim=1).values.view(-1, 1, 1)
        x = (x - low) / (high - low).clamp_min(1e-6) * 255
    if x.shape[-2:] != (64, 64):
        x = F.interpolate(x[:, None], size=(64, 64), mode="area")[:, 0]
    return x.numpy().astype(np.float32)


def phash_bits(grey: np.ndarray) -> np.ndarray:
    """(N, 256) bool pHash bits of (N, 64, 64) grey images."""
    import imagehash
    from PIL import Image

    if len(grey) == 0:
        return np.zeros((0, HASH_SIZE * HASH_SIZE), dtype=bool)
    return np.stack(
        [
            imagehash.phash(Image.fromarray(np.clip(g, 0, 255).astype(np.uint8)), hash_size=HASH_SIZE).hash.reshape(-1)
            for g in grey
        ]
    ).astype(bool)


class Fingerprints:
    """What near-duplicate search needs of a set of images: pHash bits and standardised 64 px grey pixels."""

    def __init__(self, images: np.ndarray) -> None:
        grey = grey64(images)
        self.bits = phash_bits(grey)
        flat = grey.reshape(len(grey), -1).astype(np.float64)
        flat -= flat.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(flat, axis=1, keepdims=True)
        self.unit = (flat / np.where(norm > 0, norm, 1)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.bits)


def near_duplicate_pairs(
    a: Fingerprints, b: Fingerprints | None = None, max_bits: int = MAX_BITS, min_correlation: float = MIN_CORRELATION
) -> np.ndarray:
    """(K, 2) index pairs ``(i, j)`` of near-duplicates between ``a`` and ``b`` (or within ``a``, ``i < j``)."""
    within = b is None
    b = a if b is None else b
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    bits_b = b.bits.astype(np.float32)
    found = []
    for start in range(0, len(a), _CHUNK):  # Hamming distance as two matrix products, a chunk of rows at a time
        rows = a.bits[start : start + _CHUNK].astype(np.float32)
        dist = rows @ (1 - bits_b).T + (1 - rows) @ bits_b.T
        i, j = np.nonzero(dist <= max_bits)
        i += start
        if within:
            keep = i < j
            i, j = i[keep], j[keep]
        if len(i):
            correlation = np.einsum("kd,kd->k", a.unit[i], b.unit[j])
            keep = correlation >= min_correlation
            found.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 2), dtype=np.int64)


def link_groups(groups: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``groups`` with the groups of every near-duplicate pair merged (connected components, named as
    :func:`rtl_core.data.splits.exact_duplicate_groups` names its merges: the first member's group, marked ``+``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from rtl_core.data.splits import _merge_groups

    names = np.asarray(groups).astype(str)
    if len(pairs) == 0:
        return names
    linked = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(names), len(names)))
    _, component = connected_components(linked, directed=False)
    return _merge_groups(names, component)


def held_out_copies(fingerprints: Fingerprints, splits: np.ndarray) -> np.ndarray:
    """Mask of val/test images with a near-duplicate in another split (official splits: these are dropped; of a
    val–test pair the test member goes)."""
    splits = np.asarray(splits).astype(str)
    drop = np.zeros(len(splits), dtype=bool)
    for i, j in near_duplicate_pairs(fingerprints):
        si, sj = splits[i], splits[j]
        if si == sj:
            continue
        rank = {"train": 0, "val": 1, "test": 2}
        drop[i if rank.get(si, 0) > rank.get(sj, 0) else j] = True
    return drop


def subset(fingerprints: Fingerprints, mask: np.ndarray) -> Fingerprints:
    """The fingerprints of the images where ``mask`` is true (no recomputation)."""
    return _of(fingerprints.bits[mask], fingerprints.unit[mask])


def concatenate(parts: list[Fingerprints]) -> Fingerprints:
    """One set of fingerprints from several (e.g. the val/test images of every task)."""
    return _of(np.concatenate([p.bits for p in parts]), np.concatenate([p.unit for p in parts]))


def _of(bits: np.ndarray, unit: np.ndarray) -> Fingerprints:
    out = Fingerprints.__new__(Fingerprints)
    out.bits, out.unit = bits, unit
    return out
