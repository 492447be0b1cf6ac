"""Named tasks of the demo suite, one registry (a name → a spec with a builder).

Tasks (labelled, split train/val/test; metrics listed primary first):

==============  =============================================================  ==================
``ct_cls``      COVID vs non-COVID chest CT, single-source SARS-CoV-2 CT-scan   accuracy, AUC
                group of ``ct/covid_ct_cvt`` (balanced; other groups confound
                label and source); no patient ids → near-duplicate groups
``ct_liver_seg`` liver segmentation, MSD Task03 / LiTS slices, split by scan     Dice
``xray_cls``    paediatric chest X-ray, pneumonia vs normal (Kermany)          AUC, accuracy
``mri_cls``     4-class brain tumour MRI, cross-split duplicates removed      accuracy
``natural_cls`` CUB-200 birds (first 50 species), official split               accuracy
``imagenette_cls`` Imagenette (10 ImageNet classes), official split: the natural accuracy
                pool's own source, its val/test images kept out of the pool
                (the paper's natural task is ImageNet, its pretraining data)
==============  =============================================================  ==================

Extras: ``derm_cls`` (ISIC 9-class), ``fundus_cls`` (DR grade, split by patient), ``pneumoniamnist_cls``,
``breastmnist_cls``, ``ct_contrast_cls`` (TCGA, HU, split by patient).

Pools (unlabelled, for pretraining) are :mod:`rtl_core.data.demo_pools`'s: ``ct`` (every CT slice of the pack
outside the val/test split of any task), ``natural`` (Tiny-ImageNet subset, Imagenette train, ImageNet samples),
``mixed`` (half of each), ``ct_less``; size-matched by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from rtl_core.data.arrays import ImageSet
from rtl_core.data.pack import read_arrays, read_folder, read_medmnist
from rtl_core.data.splits import (
    check_split,
    content_hashes,
    exact_duplicate_groups,
    grouped_split,
    scan_runs,
    split_from_train,
)
from rtl_core.errors import ConfigError, DataError
from rtl_core.names import DEMO_TASKS
from rtl_core.paths import data_root

TaskKind = Literal["classification", "segmentation"]


@dataclass(frozen=True)
class TaskSpec:
    """A labelled downstream dataset: how to build it, what it measures."""

    name: str
    description: str
    kind: TaskKind
    metrics: tuple[str, ...]
    build: Callable[[Path, int], ImageSet] = field(repr=False)
    window: str | None = None  # CT window for HU sources
    extra: bool = False  # not one of the paper's five core tasks


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name not in DEMO_TASKS:
        raise ValueError(
            f"task {spec.name!r} is not in rtl_core.names.DEMO_TASKS (the names a config is checked against)"
        )
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name!r} registered twice")
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ConfigError(f"Unknown task {name!r}. Known tasks: {', '.join(TASKS)}.")
    return TASKS[name]


def core_tasks() -> list[str]:
    return [name for name, spec in TASKS.items() if not spec.extra]


def _with_index(images: ImageSet) -> ImageSet:
    """Remember each image's row in its source file (for leakage checks)."""
    images.extras.setdefault("source_index", np.arange(len(images)))
    return images


def _near_duplicates(data: ImageSet, official: bool) -> ImageSet:
    """Link near-duplicate images (:mod:`rtl_core.data.near_duplicates`) into one group before a split; with
    ``official`` (the source's train/test split is kept), first drop the val/test member of every pair that
    crosses it. The counts go into ``meta["near_duplicates"]`` (``rtl data --summary`` lists them)."""
    from rtl_core.data import near_duplicates as nd

    fingerprints = nd.Fingerprints(data.images)
    dropped = 0
    if official:
        drop = nd.held_out_copies(fingerprints, data.splits)
        dropped = int(drop.sum())
        if dropped:
            data = data.subset(~drop)
            fingerprints = nd.subset(fingerprints, ~drop)
    pairs = nd.near_duplicate_pairs(fingerprints)
    before = len(np.unique(data.groups))
    data.groups = nd.link_groups(data.groups, pairs)
    data.meta = {
        **data.meta,
        "near_duplicates": {
            "max_bits": nd.MAX_BITS,
            "min_correlation": nd.MIN_CORRELATION,
            "pairs": int(len(pairs)),
            "groups_merged": int(before - len(np.unique(data.groups))),
            "held_out_dropped": dropped,
        },
    }
    return data


# --- task builders -------------------------------------------------------------------------------------------


def _build_ct_cls(root: Path, seed: int) -> ImageSet:
    full = _with_index(read_arrays(root, "ct/covid_ct_cvt"))
    names = full.meta.get("group_names", [])
    if "sarscov2_ctscan" not in names:
        raise DataError(
            f"{full.source}: meta.json group_names lacks 'sarscov2_ctscan'; is this the pack's covid_ct_cvt?"
        )
    data = full.subset(full.extras["source_group"] == names.index("sarscov2_ctscan"), name="ct_cls")
    per_slice = [full.meta["per_slice"][i] for i in data.extras["source_index"]]
    crops = np.stack([_crop_resize(img, p.get("content_box_tlhw")) for img, p in zip(data.images, per_slice)])
    data.groups = exact_duplicate_groups(crops, _sarscov2_scans(per_slice, data.labels, data.source))
    data = _near_duplicates(data, official=False)
    data.splits = grouped_split(data.labels, data.groups, seed=seed, name="ct_cls")
    data.meta = {
        **data.meta,
        "grouping": (
            "scans: runs of consecutively numbered files whose original size changes by at most 20 % from slice to "
            "slice (per class), merged with exact and near-duplicate slices (rtl_core.data.near_duplicates)"
        ),
        "scan_runs": int(len(np.unique(data.groups))),
    }
    return data


def _sarscov2_scans(per_slice: list[dict], labels: np.ndarray, source: str) -> np.ndarray:
    """Scan groups of the SARS-CoV-2 CT-scan slices ('Covid (N).png' / 'Non-Covid (N).png', numbered per class in
    scan order, no patient ids): :func:`rtl_core.data.splits.scan_runs` within each class."""
    import re

    numbers = []
    for p in per_slice:
        found = re.search(r"\((\d+)\)\.\w+$", p.get("file", ""))
        if found is None or "orig_size_hw" not in p:
            raise DataError(
                f"{source}: slice {p.get('file')!r} has no '(N)' file number or orig_size_hw in meta.json "
                "per_slice; ct_cls groups slices into scans by them. Is this the pack's covid_ct_cvt?"
            )
        numbers.append(int(found.group(1)))
    numbers, sizes = np.array(numbers), np.array([p["orig_size_hw"] for p in per_slice])
    groups = np.empty(len(per_slice), dtype=object)
    for label in np.unique(labels):
        mine = labels == label
        groups[mine] = [f"c{label}:{g}" for g in scan_runs(numbers[mine], sizes[mine])]
    return groups.astype(str)


def _crop_resize(image: np.ndarray, box: list[int] | None, size: int = 64) -> np.ndarray:
    from PIL import Image

    if box:
        top, left, h, w = box
        image = image[top : top + h, left : left + w]
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _build_liver_seg(root: Path, seed: int) -> ImageSet:
    data = _with_index(read_arrays(root, "ct/msd_liver_slices_sarah"))
    data.name = "ct_liver_seg"
    data.masks = (data.masks > 0).astype(np.uint8)
    data = _near_duplicates(data, official=False)
    data.splits = grouped_split(None, data.groups, seed=seed, name="ct_liver_seg")
    return data


def _official_with_val(
    rel: str, name: str, reader=read_folder, drop: tuple[str, ...] = ()
) -> Callable[[Path, int], ImageSet]:
    """A task keeping the source's train/test split, with a validation part carved out of train.

    Rows flagged by any ``drop`` column are removed; exact duplicates are grouped so they never straddle splits,
    and duplicates that still occur in two source splits are removed.
    """

    def build(root: Path, seed: int) -> ImageSet:
        data = _with_index(reader(root, rel))
        data.name = name
        keep = np.ones(len(data), dtype=bool)
        for column in drop:
            keep &= ~data.extras[column].astype(bool)
        data = data.subset(keep)
        hashes = content_hashes(data.images)
        data = data.subset(_single_split_hashes(hashes, data.splits), name=name)
        data.groups = exact_duplicate_groups(data.images, data.groups)
        data = _near_duplicates(data, official=True)
        data.splits = split_from_train(data.labels, data.groups, data.splits, val_fraction=0.1, seed=seed, name=name)
        return data

    return build


def _single_split_hashes(hashes: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """Mask of images whose content appears in only one source split."""
    keep = np.ones(len(hashes), dtype=bool)
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    uniq, start, counts = np.unique(sorted_hashes, return_index=True, return_counts=True)
    for s, c in zip(start[counts > 1], counts[counts > 1]):
        members = order[s : s + c]
        if len(np.unique(splits[members])) > 1:
            keep[members] = False
    return keep


def _grouped_task(rel: str, name: str, label_column: str | None = None, reader=read_folder, window: str | None = None):
    def build(root: Path, seed: int) -> ImageSet:
        data = _with_index(reader(root, rel))
        data.name = name
        if label_column:
            data.labels = data.extras[label_column].astype(np.int64)
        data.groups = exact_duplicate_groups(data.images, data.groups)
        data = _near_duplicates(data, official=False)
        data.splits = grouped_split(data.labels, data.groups, seed=seed, name=name)
        return data

    return build


def _deduplicated_resplit(rel: str, name: str, root: Path, seed: int, drop: tuple[str, ...] = ()) -> ImageSet:
    """Drop flagged rows, keep one copy of every exact duplicate, then make a fresh grouped, stratified split.

    Used for the brain-tumour MRI set, whose authors' Testing folder cannot be kept: every one of its
    ``no_tumor`` images is a byte-identical copy of a Training image (and 106 of 115 meningioma ones are), so
    dropping the cross-split copies would leave the test split without a ``no_tumor`` class. Likewise ISIC, whose
    tiny Test folder has no seborrheic keratosis left once the label-conflict copies are dropped.
    """
    data = _with_index(read_folder(root, rel))
    for column in drop:
        data = data.subset(~data.extras[column].astype(bool))
    hashes = content_hashes(data.images)
    _, first = np.unique(hashes, return_index=True)
    data = data.subset(np.sort(first), name=name)
    data.groups = hashes[np.sort(first)]
    data = _near_duplicates(data, official=False)
    data = _drop_rare_classes(data, min_per_class=10)
    data.splits = grouped_split(data.labels, data.groups, seed=seed, name=name)
    data.meta = {**data.meta, "split_note": "authors' split replaced: duplicates removed, re-split 70/10/20"}
    return data


def _drop_rare_classes(data: ImageSet, min_per_class: int) -> ImageSet:
    """Remove classes with fewer than ``min_per_class`` images (too few to split) and renumber the rest.

    ISIC's seborrheic keratosis keeps only 2 images once its label-conflict copies are dropped.
    """
    counts = np.bincount(data.labels, minlength=data.num_classes)
    kept = np.flatnonzero(counts >= min_per_class)
    if len(kept) == len(counts):
        return data
    dropped = [data.class_names[c] for c in np.flatnonzero(counts < min_per_class)]
    data = data.subset(np.isin(data.labels, kept))
    data.labels = np.searchsorted(kept, data.labels).astype(np.int64)
    data.class_names = [data.class_names[c] for c in kept]
    data.meta = {**data.meta, "dropped_classes": dropped}
    return data


def _fundus_names(data: ImageSet) -> ImageSet:
    data.class_names = ["No DR", "mild", "moderate", "severe", "PDR", "ADED"]
    return data


register_task(
    TaskSpec(
        "ct_cls",
        "COVID vs non-COVID CT (SARS-CoV-2 CT-scan group)",
        "classification",
        ("accuracy", "auc"),
        _build_ct_cls,
    )
)
register_task(
    TaskSpec("ct_liver_seg", "Liver segmentation on MSD/LiTS CT slices", "segmentation", ("dice",), _build_liver_seg)
)
register_task(
    TaskSpec(
        "xray_cls",
        "Chest X-ray pneumonia vs normal (Kermany)",
        "classification",
        ("auc", "accuracy"),
        _official_with_val("xray/chest_xray_pneumonia_kermany_64", "xray_cls"),
    )
)
register_task(
    TaskSpec(
        "mri_cls",
        "Brain tumour MRI, 4 classes (deduplicated, re-split)",
        "classification",
        ("accuracy", "balanced_accuracy"),
        lambda root, seed: _deduplicated_resplit("mri/brain_tumor_mri_4class_64", "mri_cls", root, seed),
    )
)
register_task(
    TaskSpec(
        "natural_cls",
        "CUB-200 birds, first 50 species",
        "classification",
        ("accuracy",),
        _official_with_val("natural/cub200_first50_birds_64", "natural_cls"),
    )
)
register_task(
    TaskSpec(
        "imagenette_cls",
        "Imagenette, 10 ImageNet classes (the natural pool's own source)",
        "classification",
        ("accuracy",),
        _official_with_val("natural/imagenette_64", "imagenette_cls"),
        extra=True,
    )
)
register_task(
    TaskSpec(
        "derm_cls",
        "ISIC dermoscopy, 9 classes",
        "classification",
        ("balanced_accuracy", "accuracy"),
        lambda root, seed: _deduplicated_resplit(
            "dermatology/isic_skin_9class_64", "derm_cls", root, seed, drop=("label_conflict",)
        ),
        extra=True,
    )
)
register_task(
    TaskSpec(
        "fundus_cls",
        "Fundus DR grade (6 grades), split by patient",
        "classification",
        ("balanced_accuracy", "accuracy"),
        lambda root, seed: _fundus_names(
            _grouped_task("fundus/fundus_dr_srahim_96", "fundus_cls", "labels_grade")(root, seed)
        ),
        extra=True,
    )
)
register_task(
    TaskSpec(
        "pneumoniamnist_cls",
        "PneumoniaMNIST chest X-ray, 28 px",
        "classification",
        ("auc", "accuracy"),
        lambda root, seed: _medmnist_task(root, "pneumoniamnist", "pneumoniamnist_cls"),
        extra=True,
    )
)
register_task(
    TaskSpec(
        "breastmnist_cls",
        "BreastMNIST ultrasound, 28 px",
        "classification",
        ("auc", "accuracy"),
        lambda root, seed: _medmnist_task(root, "breastmnist", "breastmnist_cls"),
        extra=True,
    )
)
register_task(
    TaskSpec(
        "ct_contrast_cls",
        "TCGA CT, IV contrast yes/no (HU), split by patient",
        "classification",
        ("auc", "accuracy"),
        _grouped_task("ct/tcga_ct_kaggle100", "ct_contrast_cls", reader=read_arrays),
        window="mediastinum",
        extra=True,
    )
)


def _medmnist_task(root: Path, file: str, name: str) -> ImageSet:
    """MedMNIST keeps its official train/val/test; duplicates across splits are dropped."""
    data = _with_index(read_medmnist(root, file))
    data = data.subset(_single_split_hashes(content_hashes(data.images), data.splits), name=name)
    data.groups = exact_duplicate_groups(data.images, data.groups)
    data = _near_duplicates(data, official=True)
    check_split(data.labels, data.splits, name, data.groups)
    return data


@lru_cache(maxsize=32)
def _load_task_cached(name: str, root: str, split_seed: int) -> ImageSet:
    spec = get_task(name)
    data = spec.build(Path(root), split_seed)
    check_split(data.labels, data.splits, name, data.groups)
    data.meta = {**data.meta, "task": name, "split_seed": split_seed}
    return data


def load_task(name: str, split_seed: int = 0, root: str | Path | None = None) -> ImageSet:
    """The task's images with ``splits`` set to train/val/test (grouped, stratified, seeded by ``split_seed``)."""
    return _load_task_cached(name, str(data_root(root)), split_seed)
