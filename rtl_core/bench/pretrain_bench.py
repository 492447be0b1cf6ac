"""Pretraining benchmark: throughput and memory of our SimCLR step vs the textbook loop, and kNN quality.

* speed: SimCLR pairs per second on the ``default`` profile (same ResNet, batch size and crop size for both):
  **ours** = :func:`rtl_core.bench.gpu_pretrain_bench.measure` on the CPU: uint8 batches from memory, per-image
  augmentation on the device (:mod:`rtl_core.pretrain.augment`), both views in one forward, the profile's
  precision and layout (``auto``: bf16 autocast + channels_last on GPUs and on CPUs with AMX, ResNet stages on
  maps of at most 2 px in float32; fp32 on other CPUs: see :mod:`rtl_core.pretrain.precision`); **reference** =
  lightly's SimCLR
  example shape: PIL images through ``SimCLRTransform`` in DataLoader workers, two float32 forwards.
  Each side runs in fresh child processes, alternating over 3 repeats (median ratio, min and max), so each peak
  RSS is its own.
* quality: kNN accuracy (k = 20, cosine) of frozen features on the ``ct_cls``, ``imagenette_cls`` (the natural
  pool's own source, held out of it) and ``natural_cls`` (CUB birds) test splits, the ``default`` SimCLR encoder of
  the matching pool vs the same backbone at random init drawn with 3 seeds, with McNemar's exact test against
  each on the same test images (the worst p is reported). Encoders under
  ``encoder_stem`` are reused when they match the profile, else trained first.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

PROFILE = "default"
WARMUP_STEPS = 2
TIMED_STEPS = 12
QUALITY = {"ct_cls": "ct", "imagenette_cls": "natural", "natural_cls": "natural"}
RANDOM_SEEDS = (0, 1, 2)


def _pool_images(config):
    from rtl_core.pretrain.data import load_pretrain_pool

    return load_pretrain_pool(config, "natural").dataset.images


def _ours() -> dict:
    from rtl_core.bench.gpu_pretrain_bench import measure
    from rtl_core.config import load_config

    config = load_config(PROFILE)
    result = measure(
        config,
        device="cpu",
        batch_per_device=config.pretrain.batch_size,
        warmup=WARMUP_STEPS,
        steps=TIMED_STEPS,
        images=_pool_images(config),
    )
    return {"pairs_per_s": result["pairs_per_s"], "peak_rss_mb": _peak_rss_mb(), "precision": result["precision"]}


def _reference() -> dict:
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules.heads import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    from rtl_core.config import load_config
    from rtl_core.models.backbones import build_backbone, feature_dim

    config = load_config(PROFILE)
    p = config.pretrain
    images = _pool_images(config)

    class PILPool(Dataset):
        def __init__(self, transform) -> None:
            self.transform = transform

        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            return self.transform(Image.fromarray(images[i].permute(1, 2, 0).numpy()))

    torch.manual_seed(0)
    transform = SimCLRTransform(input_size=p.crop_size, gaussian_blur=0.0, min_scale=p.min_scale)
    loader = DataLoader(
        PILPool(transform),
        batch_size=p.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=min(2, os.cpu_count() or 1),
        persistent_workers=True,
    )
    backbone = build_backbone(p.backbone)
    head = SimCLRProjectionHead(feature_dim(p.backbone), feature_dim(p.backbone), p.projection_dim)
    model = nn.Sequential(backbone, head)
    criterion = NTXentLoss(temperature=p.temperature)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    batches = iter(loader)

    def step(i: int) -> None:
        nonlocal batches
        try:
            x0, x1 = next(batches)
        except StopIteration:
            batches = iter(loader)
            x0, x1 = next(batches)
        loss = criterion(model(x0), model(x1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return _time(step, p.batch_size)


def _time(step, batch_size: int, extra: dict | None = None) -> dict:
    for i in range(WARMUP_STEPS):
        step(i)
    start = time.perf_counter()
    for i in range(TIMED_STEPS):
        step(WARMUP_STEPS + i)
    seconds = time.perf_counter() - start
    return {"pairs_per_s": TIMED_STEPS * batch_size / seconds, "peak_rss_mb": _peak_rss_mb(), **(extra or {})}


def _peak_rss_mb() -> float:
    """Peak resident memory of this process plus its (DataLoader worker) children, MB."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (own + children) / 1024


def _child(which: str) -> None:
    print(json.dumps(_ours() if which == "ours" else _reference()))


def _run_child(which: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", f"from rtl_core.bench.pretrain_bench import _child; _child({which!r})"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pretrain benchmark ({which}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def quality(config=None) -> dict[str, float]:
    """kNN accuracy of the default SimCLR encoders vs random init (:func:`rtl_core.analysis.sanity.sanity_table`:
    the mean over :data:`RANDOM_SEEDS`, McNemar's exact p against each, the worst counts); trains the encoders if
    missing. ``<task>_ssl`` is the encoder of the task's domain (``ct`` for ct_cls, ``natural`` otherwise)."""
    from rtl_core.analysis.sanity import sanity_table
    from rtl_core.config import load_config
    from rtl_core.models.checkpoints import load_encoder
    from rtl_core.pretrain.knn import knn_image_size
    from rtl_core.pretrain.train import pretrain

    config = config or load_config(PROFILE)
    encoders = {}
    for pool in dict.fromkeys(QUALITY.values()):
        weights = pretrain(config, pool, "simclr")
        encoders[f"ssl:{pool}:simclr"], _ = load_encoder(
            weights, expect={"arch": config.pretrain.backbone, "in_channels": 3}
        )
    table = sanity_table(encoders, config.pretrain.backbone, knn_image_size(config.pretrain.crop_size), RANDOM_SEEDS)
    figures = {}
    for task, pool in QUALITY.items():
        row = table[(table["task"] == task) & (table["init"] == f"ssl:{pool}:simclr")].iloc[0]
        figures[f"pretrain.knn_{task}_ssl"] = round(float(row["knn_init"]), 4)
        figures[f"pretrain.knn_{task}_random"] = round(float(row["knn_random"]), 4)
        figures[f"pretrain.knn_{task}_random_max"] = round(float(row["knn_random_max"]), 4)
        figures[f"pretrain.knn_{task}_test_images"] = int(row["n_test"])
        figures[f"pretrain.knn_{task}_mcnemar_p"] = float(f"{row['mcnemar_p']:.3g}")
    return figures


def speed(rounds: int = 3) -> dict[str, float]:
    """Alternate fresh child processes (ours, reference, ours, reference, …) ``rounds`` times.

    Each round's ratio pairs two neighbouring measurements, so a noisy neighbour on the shared CPU slows both
    sides of a ratio alike; the median ratio is the figure, min and max its spread.
    """
    import statistics

    runs: dict[str, list[dict]] = {"ours": [], "reference": []}
    for _ in range(rounds):
        for which in runs:
            runs[which].append(_run_child(which))
    ratios = [o["pairs_per_s"] / r["pairs_per_s"] for o, r in zip(runs["ours"], runs["reference"])]
    ours = statistics.median(r["pairs_per_s"] for r in runs["ours"])
    reference = statistics.median(r["pairs_per_s"] for r in runs["reference"])
    return {
        "pretrain.pairs_per_s": round(ours, 1),
        "pretrain.reference_pairs_per_s": round(reference, 1),
        "pretrain.speedup": round(statistics.median(ratios), 2),
        "pretrain.speedup_min": round(min(ratios), 2),
        "pretrain.speedup_max": round(max(ratios), 2),
        "pretrain.speedup_repeats": rounds,
        "pretrain.precision": runs["ours"][0]["precision"],
        "pretrain.peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["ours"]), 1),
        "pretrain.reference_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["reference"]), 1),
    }


def run() -> dict[str, float]:
    """Speed (fresh child processes) and kNN quality; prints a table; returns the figures for ``bench.json``."""
    figures = speed()
    print(
        f"pretraining ({PROFILE} profile, SimCLR step): ours {figures['pretrain.pairs_per_s']:.1f} pairs/s, "
        f"reference (PIL transforms in DataLoader workers, fp32) {figures['pretrain.reference_pairs_per_s']:.1f} "
        "pairs/s "
        f"-> speedup {figures['pretrain.speedup']:.2f}x (median of {figures['pretrain.speedup_repeats']} alternating "
        f"repeats, {figures['pretrain.speedup_min']:.2f}-{figures['pretrain.speedup_max']:.2f}x; ours in "
        f"{figures['pretrain.precision']}); peak RSS {figures['pretrain.peak_rss_mb']:.0f} MB "
        f"(reference {figures['pretrain.reference_peak_rss_mb']:.0f} MB)"
    )
    figures.update(quality())
    for task in QUALITY:
        print(
            f"  kNN (k=20, cosine) {task}: SimCLR {figures[f'pretrain.knn_{task}_ssl']:.3f} "
            f"vs random init {figures[f'pretrain.knn_{task}_random']:.3f} (mean of {len(RANDOM_SEEDS)} seeds) "
            f"({figures[f'pretrain.knn_{task}_test_images']} test images, exact McNemar p "
            f"{figures[f'pretrain.knn_{task}_mcnemar_p']:.3g})"
        )
    return figures
