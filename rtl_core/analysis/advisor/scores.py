"""The advisor's scores of one task: its training images pass once through each candidate encoder, and the frozen
features are scored (grouped kNN accuracy, a 10-shot linear probe, LogME, the normalised Fréchet distance to a sample
of the init's pretraining pool; :mod:`rtl_core.analysis.transferability`); the ranking score ``advisor`` is the mean
of each init's ranks by kNN, probe and LogME.

Example::

    scores = advise(load_config("default"), "mri_cls")
    print(scores[["init", "knn", "logme", "advisor_rank"]])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from rtl_core.analysis.transferability import frechet_distance, knn_accuracy, logme, probe_accuracy
from rtl_core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SCORES = ("knn", "probe", "logme", "domain_distance", "advisor")
#: Scores where a smaller value predicts better transfer.
LOWER_IS_BETTER = ("domain_distance",)
RANKED_BY = ("knn", "probe", "logme")
POOL_SAMPLE = 256
MAX_IMAGES = 1000


def task_domain(config, task: str) -> str | None:
    """The imaging domain of a task (``ct``, ``natural``, ``xray``, ``mri``, …): a demo task's pack folder, a
    user task's ``domain`` (DICOM / NIfTI / PNG slices: ``ct`` unless it says otherwise)."""
    if task in config.data.tasks:
        spec = config.data.tasks[task]
        return spec.domain or ("ct" if spec.format in ("dicom", "nifti", "png_slices") else None)
    from rtl_core.data.registry import load_task

    return load_task(task, root=config.data.data_dir).domain


def _features(encoder: torch.nn.Module, arch: str, images: torch.Tensor, mean, std) -> np.ndarray:
    """Pooled features of the last stage of ``arch`` (:func:`rtl_core.models.backbones.stage_layers`: a ResNet's
    ``layer4``, a ViT's last block) of uint8 images ``(N, 3, S, S)`` with the init's input normalisation."""
    from rtl_core.analysis.embeddings import extract_features
    from rtl_core.models.backbones import stage_layers
    from rtl_core.models.devices import default_device

    last = stage_layers(arch)[-1]
    return extract_features(
        encoder, images, layers=[last], batch_size=256, device=default_device(), stats=(tuple(mean), tuple(std))
    )[last]


def _pool_images(config, domain: str, size: int, seed: int = 0) -> torch.Tensor | None:
    """A seeded sample of the pool of ``domain`` (a demo or user pool of that name) at ``size`` px as uint8, or None."""
    from rtl_core.data.study import study_pool
    from rtl_core.names import DEMO_POOLS

    if domain not in DEMO_POOLS and domain not in config.data.pools:
        return None
    pool = study_pool(config, domain, seed=seed).dataset
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(pool), size=min(POOL_SAMPLE, len(pool)), replace=False)
    images = []
    for i in sorted(rows.tolist()):
        item = pool[i]
        images.append(item[0] if isinstance(item, (tuple, list)) else item)
    x = torch.stack([im.float() / 255 if im.dtype == torch.uint8 else im.float() for im in images])
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x.clamp_(0, 1) * 255).round_().to(torch.uint8)


def advise(config, task: str, inits: Sequence[str] | None = None, max_images: int = MAX_IMAGES) -> pd.DataFrame:
    """One row per candidate init with every score, its rank by each and the advisor's rank (module doc)."""
    from rtl_core.evaluate.data import load_task_data
    from rtl_core.evaluate.protocols import get_protocol
    from rtl_core.models.contracts import unconverted_inputs
    from rtl_core.models.inits import check_checkpoint, load_init
    from rtl_core.names import parse_init

    ev = config.evaluate
    inits = list(inits or ev.inits)
    if len(inits) < 2:
        raise ConfigError(f"rtl advise: give at least two inits to rank, got {inits}.")
    for name in inits:
        check_checkpoint(parse_init(name), config.study)
    size = ev.image_size or config.data.image_size
    data = load_task_data(task, size, config.data.split_seed, config.data)
    rows_idx = data.train_indices(get_protocol("finetune"), ev.seeds[0], ev.max_train_images)
    if len(rows_idx) > max_images:
        rows_idx = np.sort(np.random.default_rng(config.data.split_seed).choice(rows_idx, max_images, replace=False))
    images = data.train.images[torch.as_tensor(rows_idx)]
    labels = data.strata()[rows_idx]
    groups = np.asarray(data.train_scans)[rows_idx] if data.train_scans is not None else np.arange(len(rows_idx))
    if len(np.unique(labels)) < 2:
        raise DataError(f"rtl advise: the training split of {task} has one class only; nothing to rank on.")
    pools: dict[str, torch.Tensor | None] = {}
    rows = []
    for name in inits:
        start = time.perf_counter()
        details = ev.init_details.get(name)
        encoder, info = load_init(
            name, config.study, config.pretrain.backbone, ev.seeds[0], details.model_dump() if details else None
        )
        wrong = unconverted_inputs(info.get("contract"))
        if wrong:  # the advisor feeds 3-channel [0, 1] images: never a silently wrong input
            log.warning(
                "rtl advise leaves out %s on %s: its input contract (%s) is not applied here", name, task, wrong
            )
            continue
        feats = _features(encoder, info["arch"], images, info["mean"], info["std"])  # the init's own architecture
        row = {
            "task": task,
            "init": name,
            "label": info.get("label"),
            "domain": info.get("domain"),
            "knn": knn_accuracy(feats, labels, groups, k=20),
            "probe": probe_accuracy(feats, labels, groups, shots=10),
            "logme": logme(feats, labels),
            "domain_distance": np.nan,
            "n_images": len(labels),
        }
        init = parse_init(name)
        pool_name = init.pool if init.ours else info.get("domain")  # ours: its own pool; others: their domain's
        if pool_name:
            if pool_name not in pools:
                pools[pool_name] = _pool_images(config, pool_name, size)
            if pools[pool_name] is not None:
                pool_feats = _features(encoder, info["arch"], pools[pool_name], info["mean"], info["std"])
                row["domain_distance"] = frechet_distance(feats, pool_feats)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    table = pd.DataFrame(rows)
    for score in RANKED_BY + ("domain_distance",):
        table[f"{score}_rank"] = table[score].rank(ascending=score in LOWER_IS_BETTER, method="average")
    table["advisor"] = -table[[f"{s}_rank" for s in RANKED_BY]].mean(axis=1)  # higher is better, like the others
    table["advisor_rank"] = table["advisor"].rank(ascending=False, method="min")
    return table.sort_values("advisor_rank").reset_index(drop=True)


def recommendation(table: pd.DataFrame) -> dict:
    """The predicted best init and how close the runner-up is (by the advisor's mean rank)."""
    ordered = table.sort_values("advisor", ascending=False)
    best, second = ordered.iloc[0], ordered.iloc[1]
    return {
        "task": best["task"],
        "best": best["init"],
        "runner_up": second["init"],
        "margin_mean_rank": float(best["advisor"] - second["advisor"]),
        "agree": [s for s in RANKED_BY if ordered.loc[ordered[s].idxmax(), "init"] == best["init"]],
    }
