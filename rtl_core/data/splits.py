"""Grouped, stratified, seeded splits; near-duplicate grouping; nested low-label subsets.

A split never divides a group (a patient or scan), so neighbouring slices of one scan cannot straddle
train and test. Where a source gives no patient ids, groups come from content: exact duplicates share a
group (SHA-1 of the pixels); near-duplicates (perceptual hash plus pixel correlation) are linked by
:mod:`rtl_core.data.near_duplicates`, and slices of one numbered scan export by :func:`scan_runs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import warnings
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from rtl_core.errors import DataError

log = logging.getLogger(__name__)


def content_hashes(images: np.ndarray) -> np.ndarray:
    """SHA-1 of each image's pixels (shape and dtype included): equal hashes mean identical images."""
    return np.array(
        [
            hashlib.sha1(f"{img.shape}{img.dtype}".encode() + np.ascontiguousarray(img).tobytes()).hexdigest()
            for img in images
        ]
    )


def exact_duplicate_groups(images: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Merge groups that share an identical image, so a duplicate can never sit on both sides of a split."""
    hashes = content_hashes(images)
    return _merge_groups(groups, hashes)


def _merge_groups(groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Union of two partitions: items are linked when they share a group or a key."""
    _, g = np.unique(groups, return_inverse=True)
    _, k = np.unique(keys, return_inverse=True)
    n_g = g.max() + 1
    rows = np.concatenate([g, k + n_g])
    cols = np.concatenate([k + n_g, g])
    size = n_g + k.max() + 1
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    # Name each merged group after its first original group (patient ids stay readable); mark merges with '+'.
    names = np.asarray(groups).astype(str)
    per_item = component[g]
    first: dict[int, str] = {}
    size: dict[int, set] = {}
    for comp, name in zip(per_item, names):
        first.setdefault(comp, name)
        size.setdefault(comp, set()).add(name)
    return np.array([first[c] + ("+" if len(size[c]) > 1 else "") for c in per_item])


def perceptual_hashes(images: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """Perceptual hashes (DCT-based pHash, via ``imagehash``) as an (N, hash_size²) bool bit matrix."""
    bits = []
    for img in images:
        pil = Image.fromarray(img if img.ndim == 2 else img[..., :3])
        bits.append(imagehash.phash(pil, hash_size=hash_size).hash.reshape(-1))
    return np.stack(bits).astype(bool)


def hamming_matrix(bits: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances of (N, B) bit rows, computed as two matrix products (exact for 0/1 data)."""
    a = bits.astype(np.float32)
    return (a @ (1 - a).T + (1 - a) @ a.T).astype(np.int32)


def scan_runs(order: np.ndarray, sizes_hw: np.ndarray, max_change: float = 0.2) -> np.ndarray:
    """Group slices exported one scan after another, when a source gives no scan ids but numbers its files.

    ``order`` is each slice's file number (a scan's slices carry consecutive numbers), ``sizes_hw`` its original
    height and width. Along one scan the body outline changes slowly from slice to slice; a new scan starts where
    the numbering has a gap or the height or width jumps by more than ``max_change`` (as a ratio, either way).
    Measured on the pack's SARS-CoV-2 CT slices (issue "a demo study worth reading"): sizes grow and shrink
    smoothly along runs of numbers and reset by 26–55 % where the content changes to another body; pHash distance
    does not separate the two (consecutive slices lie 16–120 of 256 bits apart), so the 48-bit near-duplicate cut
    alone ran through scans: 47 % of test slices had a training slice 49–60 bits away. With runs at 20 % (162 runs)
    that share is 17–20 % over split seeds and stays there for cuts of 15–30 %: what is left is likeness between
    scans, not a cut through one. (Merged with groups at a 48-bit pHash cut as well, the chain of cross-scan links made
    one group of 681 slices; ``ct_cls`` therefore merges runs with exact and near-duplicate copies only.) Returns one
    group name ``run<k>`` per slice, in the input's order.
    """
    order, sizes = np.asarray(order), np.asarray(sizes_hw, dtype=float)
    if sizes.shape != (len(order), 2) or (sizes <= 0).any():
        raise DataError(f"scan_runs needs one positive (height, width) per slice, got shape {sizes.shape}.")
    ranked = np.argsort(order, kind="stable")
    change = np.abs(np.log(sizes[ranked][1:] / sizes[ranked][:-1])).max(axis=1)
    starts = np.concatenate([[True], (np.diff(order[ranked]) != 1) | (change > np.log1p(max_change))])
    runs = np.empty(len(order), dtype=object)
    runs[ranked] = np.cumsum(starts)
    return np.array([f"run{r}" for r in runs])


def grouped_split(
    labels: np.ndarray | None,
    groups: np.ndarray,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    name: str = "dataset",
    class_names: list[str] | None = None,
) -> np.ndarray:
    """Assign ``train``/``val``/``test`` so no group is divided, stratified by label where labels exist.

    StratifiedGroupKFold carves the test fold, then the validation fold from the rest. A group that is the last
    one left of some class stays in train (a class with one image, or one patient, is trained on and missing from
    val/test, with a warning, never the other way round). ``class_names`` name the classes in errors (e.g. the
    class folders).
    """
    train_f, val_f, test_f = fractions
    if abs(train_f + val_f + test_f - 1) > 1e-6 or min(fractions) < 0:
        raise DataError(f"{name}: split fractions {fractions} must be non-negative and sum to 1.")
    splits = np.full(len(groups), "train", dtype="<U8")
    remaining = np.arange(len(groups))
    for part, frac, of in (("test", test_f, 1.0), ("val", val_f, 1.0 - test_f)):
        if frac == 0:
            continue
        share = frac / of
        candidates = remaining
        if labels is not None:
            pinned = _last_groups(labels[remaining], groups[remaining])
            candidates = remaining[~pinned]
            if pinned.any() and len(np.unique(groups[candidates])) < 2:
                few = _class_list(np.unique(labels[remaining][pinned]), class_names)
                raise DataError(
                    f"{name}: no {part} split possible: class(es) {few} have one image (or one patient/scan group) "
                    "each, which must stay in train, and fewer than two groups of the other classes are left. "
                    "Add images to these classes or give val/ and test/ folders."
                )
        held = _hold_out(labels[candidates] if labels is not None else None, groups[candidates], share, seed, name)
        splits[candidates[held]] = part
        remaining = np.setdiff1d(remaining, candidates[held], assume_unique=True)
    check_split(labels, splits, name, groups=groups if labels is not None else None, class_names=class_names)
    return splits


def _last_groups(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Items whose group is the only group of one of its classes (it must stay in train)."""
    pinned_groups: set = set()
    for c in np.unique(labels):
        in_class = np.unique(groups[labels == c])
        if len(in_class) == 1:
            pinned_groups.add(in_class[0])
    if not pinned_groups:
        return np.zeros(len(groups), dtype=bool)
    return np.isin(groups, list(pinned_groups))


def _class_list(classes: np.ndarray, class_names: list[str] | None) -> list:
    """Classes as their names where known (class folders), else their indices."""
    return [class_names[int(c)] for c in classes] if class_names is not None else np.asarray(classes).tolist()


HOLD_OUT_VERSION = 1


def _hold_out(labels: np.ndarray | None, groups: np.ndarray, share: float, seed: int, name: str) -> np.ndarray:
    """Boolean mask of a held-out part of about ``share`` of the items, whole groups only.

    The mask depends only on the labels, groups, share and seed, so it is computed once and kept in
    ``cache_dir()/holdout/<hash>.npy`` (StratifiedGroupKFold takes seconds on the pack's larger tasks, and every
    process that loads a task, each grid worker and notebook kernel, would otherwise repeat it)."""
    import sklearn

    from rtl_core.io import atomic_write
    from rtl_core.paths import cache_dir

    digest = hashlib.sha256(repr((HOLD_OUT_VERSION, share, seed, sklearn.__version__, len(groups))).encode())
    for values in (labels, groups):  # dtype + the sort order of the values (what the splitter sees) + the codes
        if values is None:
            digest.update(b"none")
            continue
        uniques, codes = np.unique(np.asarray(values), return_inverse=True)
        digest.update(
            f"{np.asarray(values).dtype}|{len(uniques)}|".encode() + "\0".join(map(repr, uniques.tolist())).encode()
        )
        digest.update(np.ascontiguousarray(codes.astype(np.int64)).tobytes())
    path = cache_dir() / "holdout" / f"{digest.hexdigest()[:24]}.npy"
    try:
        mask = np.load(path, allow_pickle=False)
        if mask.dtype == bool and mask.shape == (len(groups),):
            return mask
    except (OSError, ValueError, EOFError):
        pass  # absent or damaged: compute it again
    mask = _compute_hold_out(labels, groups, share, seed, name)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, mask)

    with contextlib.suppress(OSError):  # a read-only or full cache folder: the mask is still right, only not kept
        atomic_write(path, save)
    return mask


def _compute_hold_out(labels: np.ndarray | None, groups: np.ndarray, share: float, seed: int, name: str) -> np.ndarray:
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise DataError(f"{name}: only {n_groups} patient/scan group(s); a grouped split needs at least 2.")
    if labels is None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
        _, held = next(splitter.split(groups, groups=groups))
    else:
        # The first fold that holds every class (with at least two groups) wins; folds are tried in seeded order.
        n_splits = max(2, min(round(1 / share), n_groups))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        needed = [c for c in np.unique(labels) if len(np.unique(groups[labels == c])) >= 2]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            folds = [held for _, held in splitter.split(np.zeros(len(labels)), labels, groups)]
        held = next((f for f in folds if np.isin(needed, labels[f]).all()), folds[0])
    mask = np.zeros(len(groups), dtype=bool)
    mask[held] = True
    return mask


def split_from_train(
    labels: np.ndarray | None, groups: np.ndarray, splits: np.ndarray, val_fraction: float, seed: int, name: str
) -> np.ndarray:
    """Keep the source's train/test split and carve a grouped, stratified validation part out of its train split."""
    splits = splits.astype("<U8").copy()
    train = np.flatnonzero(splits == "train")
    held = _hold_out(labels[train] if labels is not None else None, groups[train], val_fraction, seed, name)
    splits[train[held]] = "val"
    check_split(labels, splits, name)
    return splits


def check_split(
    labels: np.ndarray | None,
    splits: np.ndarray,
    name: str,
    groups: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> None:
    """Every class must have an example in every split; no group may sit in two splits.

    With ``groups``, a class with fewer groups (patients, scans, or images) than there are non-empty splits cannot
    be in all of them: it must be in train, and its absence from val/test is logged as a warning. ``class_names``
    name the classes in messages (e.g. class folders)."""
    if labels is not None:
        classes = np.unique(labels)
        parts = [p for p in ("train", "val", "test") if (splits == p).any()]
        few = set()
        if groups is not None:
            few = {c for c in classes if len(np.unique(np.asarray(groups)[labels == c])) < len(parts)}
        for part in parts:
            missing = np.setdiff1d(classes, labels[splits == part])
            allowed = [c for c in missing if part != "train" and c in few]
            if allowed:
                log.warning(
                    "%s: class(es) %s have too few images (or patient/scan groups) for every split and are missing "
                    "from the %s split: they are trained on but not measured there",
                    name,
                    _class_list(np.asarray(allowed), class_names),
                    part,
                )
            missing = np.setdiff1d(missing, allowed)
            if len(missing):
                raise DataError(
                    f"{name}: the {part} split has no example of class(es) {_class_list(missing, class_names)}. "
                    "Use more data for these classes, merge or drop them, or change the split fractions."
                )
    if groups is not None:
        pairs = np.unique(np.stack([np.asarray(groups).astype(str), np.asarray(splits).astype(str)], axis=1), axis=0)
        uniq, counts = np.unique(pairs[:, 0], return_counts=True)
        if (counts > 1).any():
            group = str(uniq[counts > 1][0])
            parts = sorted(pairs[pairs[:, 0] == group, 1].tolist())
            raise DataError(f"{name}: group {group!r} is in several splits {parts}; splits must be grouped.")


def lowlabel_subsets(
    labels: np.ndarray, fractions: tuple[float, ...] = (0.01, 0.1), seed: int = 42
) -> dict[float, np.ndarray]:
    """Nested, class-stratified subsets of a training split (indices into it): 1 % ⊂ 10 % ⊂ 100 %.

    Each class is permuted once with ``seed``; a fraction f takes the first ``max(1, ceil(f·n_c))`` of each
    class, so smaller subsets are prefixes of larger ones and every class keeps at least one example.
    """
    rng = np.random.default_rng(seed)
    order = {c: rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    subsets: dict[float, np.ndarray] = {}
    for frac in sorted(fractions):
        if not 0 < frac <= 1:
            raise DataError(f"Low-label fraction must be in (0, 1], got {frac}.")
        chosen = [idx[: max(1, math.ceil(frac * len(idx)))] for idx in order.values()]
        subsets[frac] = np.sort(np.concatenate(chosen))
    return subsets
