"""The demo suite's pretraining pools: which pack datasets feed ``ct`` and ``natural`` (:data:`POOL_SOURCES`),
every downstream val/test image held out of them (by source row, content hash and near-duplicate fingerprint), and
:func:`load_pool` (size-matched ``ct`` / ``natural``, ``mixed``, and ``ct_less``, the data-scale arm). The tasks
are :mod:`rtl_core.data.registry`'s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from rtl_core.data.arrays import ImageSet
from rtl_core.data.intensity import render
from rtl_core.data.pack import read_arrays, read_folder
from rtl_core.data.registry import TASKS, _load_task_cached, _with_index
from rtl_core.data.splits import content_hashes
from rtl_core.errors import ConfigError
from rtl_core.names import DEMO_POOLS
from rtl_core.paths import data_root


@dataclass(frozen=True)
class PoolSource:
    """One dataset contributing to a pretraining pool."""

    label: str
    read: Callable[[Path], ImageSet] = field(repr=False)
    window: str | None = None


POOL_SOURCES: dict[str, tuple[PoolSource, ...]] = {}
LESS_FRACTION = 0.25
"""Default share of the ``ct`` pool in ``ct_less`` (``data.less_fraction``): the data-scale arm of claim C8."""


@dataclass(frozen=True)
class PackReader:
    """Reads one dataset folder of the pack (``rel``, e.g. ``ct/covid_ct_cvt``); its ``meta.json`` states the
    source's licence and citation (what an exported encoder's model card quotes)."""

    rel: str
    kind: Literal["arrays", "folder"]
    prefix: str = ""

    def __call__(self, root: Path) -> ImageSet:
        data = read_arrays(root, self.rel, self.prefix) if self.kind == "arrays" else read_folder(root, self.rel)
        return _with_index(data)


def _arrays(rel: str, prefix: str = "") -> PackReader:
    return PackReader(rel, "arrays", prefix)


def _folder(rel: str) -> PackReader:
    return PackReader(rel, "folder")


POOL_SOURCES["ct"] = (
    PoolSource("covid_ct_cvt", _arrays("ct/covid_ct_cvt")),
    PoolSource("msd_liver_slices", _arrays("ct/msd_liver_slices_sarah")),
    PoolSource("tcga_ct", _arrays("ct/tcga_ct_kaggle100"), window="mediastinum"),
    PoolSource("ircadb_p17", _arrays("ct/ircadb_p17_liver"), window="abdomen"),
    PoolSource("ircadb_p01", _arrays("ct/ircadb_p01_nomask"), window="abdomen"),
    PoolSource("totalseg_ct3mm", _arrays("ct/totalseg_examples", "ct3mm_"), window="abdomen"),
    PoolSource("totalseg_dicom", _arrays("ct/totalseg_examples", "dicom_"), window="abdomen"),
    PoolSource("ircadb_minitest", _arrays("ct/ircadb_minitest_liver_sarah")),
    PoolSource("chaos_minitest", _arrays("ct/chaos_ct_minitest_liver_sarah")),
)
POOL_SOURCES["natural"] = (
    PoolSource("tiny_imagenet", _folder("natural/tiny_imagenet200_subset")),
    PoolSource("imagenette", _folder("natural/imagenette_64")),
    PoolSource("imagenet_sample", _folder("natural/imagenet_sample_1k")),
)


@lru_cache(maxsize=4)
def held_out_images(root: str, split_seed: int) -> tuple[frozenset[tuple[str, int]], frozenset[str]]:
    """Every downstream val/test image: as (source file, row) pairs and as content hashes."""
    rows: set[tuple[str, int]] = set()
    hashes: set[str] = set()
    for name in TASKS:
        data = _load_task_cached(name, root, split_seed)
        held = data.splits != "train"
        rows.update((data.source, int(i)) for i in data.extras["source_index"][held])
        hashes.update(content_hashes(data.images[held]))
    return frozenset(rows), frozenset(hashes)


@lru_cache(maxsize=4)
def held_out_fingerprints(root: str, split_seed: int):
    """Near-duplicate fingerprints (:mod:`rtl_core.data.near_duplicates`) of every downstream val/test image."""
    from rtl_core.data import near_duplicates as nd

    return nd.concatenate(
        [
            nd.Fingerprints(data.images[data.splits != "train"])
            for data in (_load_task_cached(name, root, split_seed) for name in TASKS)
        ]
    )


@lru_cache(maxsize=8)
def _pool_candidates(kind: str, root: str, split_seed: int, size: int, window: str | None) -> ImageSet:
    """All images a pool may draw from, rendered to uint8 (N, size, size, 3), held-out images removed."""
    from rtl_core.data import near_duplicates as nd

    rows, hashes = held_out_images(root, split_seed)
    held_fingerprints = held_out_fingerprints(root, split_seed)
    parts, sources, hashes_kept, groups = [], [], [], []
    for source in POOL_SOURCES[kind]:
        data = source.read(Path(root))
        # Test images of tasks that use this file, with the image itself checked by content as well.
        keep = np.array([(data.source, int(i)) not in rows for i in data.extras["source_index"]])
        source_hashes = content_hashes(data.images)
        keep &= ~np.isin(source_hashes, list(hashes))
        if data.splits is not None and kind == "natural":
            keep &= data.splits != "test"  # a source's own held-out split is never pretraining data
        # ... nor a near-duplicate of any downstream val/test image (a re-encoded or re-scaled copy)
        candidates = np.flatnonzero(keep)
        pairs = nd.near_duplicate_pairs(nd.Fingerprints(data.images[candidates]), held_fingerprints)
        keep[candidates[np.unique(pairs[:, 0])]] = False
        data = data.subset(keep)
        tensor = render(data.images, data.intensity, window or source.window or "abdomen", size)
        parts.append(tensor.permute(0, 2, 3, 1).numpy())
        sources += [source.label] * len(data)
        hashes_kept.append(source_hashes[keep])
        groups.append(np.char.add(f"{source.label}:", data.groups.astype(str)))
    images = np.concatenate(parts)
    return ImageSet(
        name=kind,
        images=images,
        groups=np.concatenate(groups),
        splits=np.full(len(images), "all", dtype="<U8"),
        domain=kind,
        source=", ".join(s.label for s in POOL_SOURCES[kind]),
        extras={"pool_source": np.array(sources), "content_hash": np.concatenate(hashes_kept)},
    )


def load_pool(
    name: str,
    size: int = 64,
    pool_size: int | None = None,
    seed: int = 0,
    split_seed: int = 0,
    ct_window: str | None = None,
    root: str | Path | None = None,
    less_fraction: float = LESS_FRACTION,
) -> ImageSet:
    """An unlabelled pretraining pool as uint8 images (N, size, size, 3) (grey replicated to 3 channels).

    ``pool_size=None`` size-matches: every pool gets as many images as the smaller of ``ct`` and ``natural``.
    ``mixed`` is half CT, half natural. ``ct_less`` is a seeded ``less_fraction`` of the ``ct`` pool (a subset
    of it: Jonske et al.'s data-scale comparison of RadNet-1.28M with RadNet-12M, here with the pool at a
    quarter). Sub-sampling is seeded by ``seed``. No image of any task's val or test split is ever in a pool
    (checked by source row, content hash and near-duplicate fingerprint).
    """
    if name not in DEMO_POOLS:
        raise ConfigError(f"Unknown pool {name!r}. Known pools: {', '.join(DEMO_POOLS)}.")
    root_s = str(data_root(root))
    ct = _pool_candidates("ct", root_s, split_seed, size, ct_window)
    natural = _pool_candidates("natural", root_s, split_seed, size, ct_window)
    available = min(len(ct), len(natural))
    n = available if pool_size is None else int(pool_size)
    if n < 1 or n > available:
        raise ConfigError(
            f"pool_size={pool_size} is not possible: the pack offers {len(ct)} CT and {len(natural)} natural images."
        )
    rng = np.random.default_rng(seed)
    if name == "mixed":
        half = n // 2
        pick_ct = np.sort(rng.choice(len(ct), half, replace=False))
        pick_nat = np.sort(rng.choice(len(natural), n - half, replace=False))
        a, b = ct.subset(pick_ct), natural.subset(pick_nat)
        return ImageSet(
            name="mixed",
            images=np.concatenate([a.images, b.images]),
            groups=np.concatenate([a.groups, b.groups]),
            splits=np.full(n, "all", dtype="<U8"),
            domain="mixed",
            source=f"{a.source}, {b.source}",
            extras={k: np.concatenate([a.extras[k], b.extras[k]]) for k in a.extras},
        )
    full = natural if name == "natural" else ct
    pool = full.subset(np.sort(rng.choice(len(full), n, replace=False)), name=name)
    if name != "ct_less":
        return pool
    if not 0 < less_fraction < 1:
        raise ConfigError(
            f"data.less_fraction={less_fraction} must lie strictly between 0 and 1 (the ct_less pool's "
            "share of the ct pool)."
        )
    keep = max(1, round(less_fraction * n))
    less = np.random.default_rng([seed, 1]).choice(n, keep, replace=False)  # nested: ct_less is part of ct
    return pool.subset(np.sort(less), name=name)
