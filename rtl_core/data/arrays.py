"""In-memory image sets: the one structure every reader returns and every task or pool is built from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from rtl_core.errors import DataError

Intensity = Literal["hu", "uint8"]
SPLITS = ("train", "val", "test")


@dataclass
class ImageSet:
    """A set of 2-D images held in memory, with per-image labels, groups and splits.

    ``images``: (N, H, W) grey or (N, H, W, 3) RGB; ``uint8`` for 8-bit data or ``int16`` Hounsfield units
    (``intensity == "hu"``). ``groups``: patient / scan id per image (str); a split never divides a group.
    ``splits``: ``train``/``val``/``test``/``all`` per image. ``masks``: (N, H, W) uint8 label maps or None.
    ``extras``: further per-image arrays (e.g. ``dup_across_splits``, ``source_group``).
    """

    name: str
    images: np.ndarray
    groups: np.ndarray
    splits: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    intensity: Intensity = "uint8"
    domain: str = ""
    source: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim not in (3, 4) or (self.images.ndim == 4 and self.images.shape[-1] != 3):
            raise DataError(
                f"{self.source or self.name}: images must be (N,H,W) or (N,H,W,3), got {self.images.shape}."
            )
        for key, value in (
            ("groups", self.groups),
            ("splits", self.splits),
            ("labels", self.labels),
            ("masks", self.masks),
        ):
            if value is not None and len(value) != n:
                raise DataError(f"{self.source or self.name}: {key} has {len(value)} entries for {n} images.")
        if self.masks is not None and self.masks.shape[1:3] != self.images.shape[1:3]:
            raise DataError(
                f"{self.source or self.name}: mask shape {self.masks.shape[1:3]} differs from image shape "
                f"{self.images.shape[1:3]}. Re-export the masks at the image resolution."
            )
        for key, value in self.extras.items():
            if len(value) != n:
                raise DataError(
                    f"{self.source or self.name}: extra array {key!r} has {len(value)} entries for {n} images."
                )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def is_grey(self) -> bool:
        return self.images.ndim == 3

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray, name: str | None = None) -> ImageSet:
        """A new set holding ``index`` (bool mask or integer indices) of this one."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        take = lambda a: None if a is None else a[index]  # noqa: E731
        return replace(
            self,
            name=name or self.name,
            images=self.images[index],
            groups=self.groups[index],
            splits=self.splits[index],
            labels=take(self.labels),
            masks=take(self.masks),
            extras={k: v[index] for k, v in self.extras.items()},
        )

    def split(self, which: str) -> ImageSet:
        """The images of one split (``train``/``val``/``test``)."""
        return self.subset(self.splits == which, name=f"{self.name}:{which}")

    def with_splits(self, splits: np.ndarray) -> ImageSet:
        return replace(self, splits=np.asarray(splits, dtype="<U8"))


def concat(sets: list[ImageSet], name: str) -> ImageSet:
    """Concatenate sets of the same image shape, intensity and channel layout (labels dropped if any set lacks them)."""
    if not sets:
        raise DataError(f"{name}: nothing to concatenate.")
    first = sets[0]
    for other in sets[1:]:
        if other.images.shape[1:] != first.images.shape[1:] or other.intensity != first.intensity:
            raise DataError(
                f"{name}: cannot concatenate {first.name} {first.images.shape[1:]} with {other.name} "
                f"{other.images.shape[1:]}."
            )
    has_labels = all(s.labels is not None for s in sets)
    return ImageSet(
        name=name,
        images=np.concatenate([s.images for s in sets]),
        groups=np.concatenate([s.groups.astype(str) for s in sets]),
        splits=np.concatenate([s.splits.astype(str) for s in sets]),
        labels=np.concatenate([s.labels for s in sets]) if has_labels else None,
        intensity=first.intensity,
        domain=first.domain,
        source=", ".join(s.source for s in sets),
    )
