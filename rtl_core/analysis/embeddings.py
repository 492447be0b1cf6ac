"""Feature-space embeddings of every domain of the pack: features per layer, UMAP, domain separability.

The flow (paper Sec. 3.5 extends CKA with a look at what the features separate)::

    sample = sample_tasks(EMBEDDING_TASKS, n_per_task=200, size=64)       # test-split images + metadata
    feats = encoder_features({"ct": enc_ct, "natural": enc_nat}, sample.images)  # init -> layer -> (N, C)
    frame = umap_frame(feats, sample.meta)                               # tidy (init, layer, x, y, meta…)
    table = separability_table(feats, sample.meta)                       # kNN accuracy + silhouette

Model input: the encoders receive float images in ``[0, 1]`` (the datasets' convention, see
``rtl_core.data.datasets``) normalised here by channel mean/std (:func:`normalize`) exactly as ``rtl_core.evaluate``
does: with a
checkpoint's own ``normalize`` sidecar entry (:func:`load_encoders`), else not at all (our pretraining feeds
``[0, 1]`` images; ImageNet statistics are available as ``IMAGENET_MEAN``/``IMAGENET_STD``); pass
``normalize_input=False`` to feed ``[0, 1]`` images unchanged. Features
are the global-average-pooled outputs of the ResNet stages ``layer1`` … ``layer4``.

UMAP: McInnes et al., "UMAP: Uniform Manifold Approximation and Projection" (2018), via ``umap-learn``;
features are z-scored per dimension first. Separability: leave-groups-out k-nearest-neighbour accuracy of the
domain label (patients never straddle folds) and the silhouette score (Rousseeuw, 1987) of the domain labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from rtl_core.analysis.activations import collect_activations, eval_mode
from rtl_core.analysis.properties import body_regions
from rtl_core.data.datasets import render_set
from rtl_core.data.registry import get_task, load_task
from rtl_core.errors import ConfigError, DataError

#: The pack's tasks whose test images are embedded by default: the core tasks plus two extras.
EMBEDDING_TASKS: tuple[str, ...] = (
    "ct_cls",
    "ct_liver_seg",
    "xray_cls",
    "mri_cls",
    "natural_cls",
    "imagenette_cls",
    "derm_cls",
    "fundus_cls",
)
#: ResNet stages analysed layer by layer (global-average-pooled).
LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")

from rtl_core.models.checkpoints import IDENTITY_MEAN, IDENTITY_STD  # noqa: E402  (our encoders' default: none)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


Stats = tuple[Sequence[float], Sequence[float]]


def normalize(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Channel mean/std normalisation (default: ImageNet statistics) of float images ``(N, 3, H, W)`` in ``[0, 1]``."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise DataError(f"normalize expects images (N, 3, H, W), got {tuple(x.shape)}.")
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def sidecar_normalization(sidecar: Mapping) -> Stats:
    """The input mean/std a checkpoint was trained with (its sidecar's ``normalize`` entry; none otherwise,
    as our pretraining feeds ``[0, 1]`` images), exactly as ``rtl_core.evaluate`` reads it."""
    from rtl_core.models.checkpoints import input_normalization

    return input_normalization(dict(sidecar))


@dataclass
class EmbeddingSample:
    """Images drawn from several tasks, as the model sees them, with one metadata row per image.

    ``images``: uint8 ``(N, 3, S, S)``. ``masks``: uint8 ``(N, S, S)`` (zeros where ``has_mask`` is False).
    ``meta`` columns: ``task``, ``domain``, ``label`` (-1 for segmentation tasks), ``class_name`` ("unlabelled"
    there), ``task_class`` (``task: class``, unique across tasks, for colouring by class), ``group``
    (``task:patient``, for grouped cross-validation), ``source_index`` (row in the source file),
    ``body_region`` (CT only, else None).
    """

    images: torch.Tensor
    masks: np.ndarray
    has_mask: np.ndarray
    meta: pd.DataFrame

    def __len__(self) -> int:
        return len(self.images)


def sample_tasks(
    tasks: Sequence[str] = EMBEDDING_TASKS,
    n_per_task: int = 200,
    size: int = 64,
    split: str = "test",
    seed: int = 0,
    split_seed: int = 0,
    root: str | Path | None = None,
) -> EmbeddingSample:
    """Up to ``n_per_task`` random images of the ``split`` of each task (all of them where fewer exist)."""
    if n_per_task < 1:
        raise ConfigError(f"n_per_task must be at least 1, got {n_per_task}.")
    if not tasks:
        raise ConfigError("tasks is empty; name at least one task, e.g. 'ct_cls'.")
    rng = np.random.default_rng(seed)
    images, masks, has_mask, metas = [], [], [], []
    for task in tasks:
        spec = get_task(task)
        part = load_task(task, split_seed=split_seed, root=root).split(split)
        if len(part) == 0:
            raise DataError(f"task {task!r} has no {split!r} images; pick another split.")
        pick = np.sort(rng.choice(len(part), min(n_per_task, len(part)), replace=False))
        part = part.subset(pick)
        rendered, targets = render_set(part, size, spec.window)
        images.append(rendered)
        if part.masks is not None:
            masks.append(targets.numpy().astype(np.uint8))
            has_mask.append(np.ones(len(part), bool))
        else:
            masks.append(np.zeros((len(part), size, size), np.uint8))
            has_mask.append(np.zeros(len(part), bool))
        labels = part.labels if part.labels is not None else np.full(len(part), -1)
        names = [part.class_names[i] if 0 <= i < len(part.class_names) else "unlabelled" for i in labels]
        metas.append(
            pd.DataFrame(
                {
                    "task": task,
                    "domain": part.domain or task,
                    "label": labels.astype(np.int64),
                    "class_name": names,
                    "task_class": [f"{task}: {name}" for name in names],
                    "group": [f"{task}:{g}" for g in part.groups],
                    "source_index": part.extras.get("source_index", pick),
                    "body_region": body_regions([task] * len(part)) if part.domain == "ct" else None,
                }
            )
        )
    return EmbeddingSample(
        images=torch.cat(images),
        masks=np.concatenate(masks),
        has_mask=np.concatenate(has_mask),
        meta=pd.concat(metas, ignore_index=True),
    )


def _batches(images: torch.Tensor, batch_size: int, stats: Stats | None, grey: bool) -> Iterator[torch.Tensor]:
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].float().div_(255)
        x = normalize(x, *stats) if stats is not None else x
        yield x.mean(dim=1, keepdim=True) if grey else x


def input_channels(encoder: nn.Module) -> int:
    """Input channels of a ResNet-like encoder's stem (``conv1``); 3 where there is no ``conv1``."""
    return int(getattr(getattr(encoder, "conv1", None), "in_channels", 3))


def extract_features(
    encoder: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str] = LAYERS,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    normalize_input: bool = True,
    stats: Stats = (IDENTITY_MEAN, IDENTITY_STD),
) -> dict[str, np.ndarray]:
    """Global-average-pooled activations ``layer -> (N, C)`` of uint8 images ``(N, 3, S, S)`` (eval mode, no grad).

    Inputs are normalised with ``stats`` (mean, std) unless ``normalize_input`` is False. An encoder with a
    one-channel stem gets the channel mean of the (normalised) input.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise DataError(
            f"extract_features expects uint8 images (N, 3, S, S), got {images.dtype} {tuple(images.shape)}."
        )
    encoder = encoder.to(device)
    with eval_mode(encoder):
        batches = _batches(images, batch_size, stats if normalize_input else None, grey=input_channels(encoder) == 1)
        acts = collect_activations(encoder, batches, list(layers), "avg", device)
    return {name: t.float().numpy() for name, t in acts.items()}


def encoder_features(
    encoders: Mapping[str, nn.Module],
    images: torch.Tensor,
    layers: Sequence[str] = LAYERS,
    stats: Mapping[str, Stats] | None = None,
    **kwargs,
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`extract_features` for every encoder: ``init -> layer -> (N, C)``; ``stats``: per-init input
    mean/std (as returned by :func:`load_encoders`; ImageNet for inits not in it)."""
    stats = stats or {}
    return {
        init: extract_features(model, images, layers, stats=stats.get(init, (IDENTITY_MEAN, IDENTITY_STD)), **kwargs)
        for init, model in encoders.items()
    }


def load_encoders(
    stems: Mapping[str, str | Path], expect: dict | None = None
) -> tuple[dict[str, nn.Module], dict[str, Stats]]:
    """Encoders from checkpoints (:func:`rtl_core.models.checkpoints.load_encoder`): ``init -> model`` and
    ``init -> (mean, std)`` of their input normalisation (:func:`sidecar_normalization`)."""
    from rtl_core.models.checkpoints import load_encoder

    encoders, stats = {}, {}
    for init, stem in stems.items():
        encoders[init], sidecar = load_encoder(stem, expect)
        stats[init] = sidecar_normalization(sidecar)
    return encoders, stats


def _standardize(features: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 3:
        raise DataError(f"features must be (N, C) with N >= 3, got shape {features.shape}.")
    if not np.isfinite(features).all():
        raise DataError("features contain NaN or inf; check the encoder's weights and inputs.")
    return StandardScaler().fit_transform(features)


def umap_embedding(
    features: np.ndarray,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    n_epochs: int | None = None,
    seed: int = 0,
    metric: str = "euclidean",
) -> np.ndarray:
    """2-D UMAP of z-scored ``features`` ``(N, C)`` → ``(N, 2)`` (seeded, hence single-threaded)."""
    import umap  # slow import (numba): only when needed

    z = _standardize(features)
    reducer = umap.UMAP(
        n_neighbors=min(n_neighbors, len(z) - 1),
        min_dist=min_dist,
        n_epochs=n_epochs,
        random_state=seed,
        n_jobs=1,
        metric=metric,
    )
    return np.asarray(reducer.fit_transform(z), dtype=np.float64)


def umap_frame(
    features: Mapping[str, Mapping[str, np.ndarray]],
    meta: pd.DataFrame,
    layers: Sequence[str] | None = None,
    **umap_kwargs,
) -> pd.DataFrame:
    """Tidy UMAP coordinates: one row per (init, layer, image) with ``x``, ``y`` and the image's metadata."""
    frames = []
    for init, per_layer in features.items():
        for layer in layers or list(per_layer):
            coords = umap_embedding(per_layer[layer], **umap_kwargs)
            frame = meta.reset_index(drop=True).assign(init=init, layer=layer, x=coords[:, 0], y=coords[:, 1])
            frame["image_index"] = np.arange(len(frame))
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def domain_separability(
    features: np.ndarray,
    labels: np.ndarray | Sequence,
    groups: np.ndarray | Sequence,
    n_neighbors: int = 5,
    n_splits: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """How well ``labels`` (e.g. domains) separate in feature space.

    ``knn_accuracy`` / ``knn_balanced_accuracy``: out-of-fold k-NN (z-scored, Euclidean) predictions under
    :class:`~sklearn.model_selection.StratifiedGroupKFold` by ``groups`` (patients); ``chance``: the majority
    share; ``silhouette``: silhouette score of ``labels`` on the z-scored features (−1 … 1).
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, silhouette_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels, groups = np.asarray(labels), np.asarray(groups)
    x = np.asarray(features, dtype=np.float64)
    if not (len(x) == len(labels) == len(groups)):
        raise DataError(f"features ({len(x)}), labels ({len(labels)}) and groups ({len(groups)}) differ in length.")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"separability needs at least two labels, got {list(classes)}.")
    splits = min(n_splits, len(np.unique(groups)))
    if splits < 2:
        raise DataError("separability needs at least two groups for grouped cross-validation.")
    cv = StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=n_neighbors))
    with threadpool_limits(limits=1, user_api="blas"):  # small dense problem: threads only oversubscribe
        predicted = cross_val_predict(model, x, labels, groups=groups, cv=cv)
        silhouette = silhouette_score(_standardize(x), labels, metric="euclidean")
    return {
        "knn_accuracy": float(accuracy_score(labels, predicted)),
        "knn_balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "chance": float(counts.max() / counts.sum()),
        "silhouette": float(silhouette),
    }


def separability_table(
    features: Mapping[str, Mapping[str, np.ndarray]],
    meta: pd.DataFrame,
    by: str = "domain",
    group_column: str = "group",
    **kwargs,
) -> pd.DataFrame:
    """Tidy table (init, layer, label, metric, score) of :func:`domain_separability` for every init and layer.

    ``by`` names the ``meta`` column to separate: ``domain`` (CT, X-ray, MRI, …) or ``task`` (dataset of origin).
    """
    if by not in meta or group_column not in meta:
        raise ConfigError(f"meta has no column {by!r} or {group_column!r}; columns are {list(meta.columns)}.")
    rows = []
    for init, per_layer in features.items():
        for layer, x in per_layer.items():
            scores = domain_separability(x, meta[by].to_numpy(), meta[group_column].to_numpy(), **kwargs)
            rows += [{"init": init, "layer": layer, "label": by, "metric": k, "score": v} for k, v in scores.items()]
    return pd.DataFrame(rows)
