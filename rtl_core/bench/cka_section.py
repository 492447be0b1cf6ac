"""``make bench`` section for CKA: 5,000 real pool images through two ResNet-18 encoders, layer-wise linear CKA
with our scalable path vs the full-Gram implementation (see :mod:`rtl_core.bench.cka_bench`)."""

from __future__ import annotations

import numpy as np
import torch

from rtl_core.bench.cka_bench import bench_cka
from rtl_core.data.demo_pools import load_pool
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import load_encoder
from rtl_core.paths import encoder_stem

N_IMAGES = 5000


def _encoder(pool: str, seed: int) -> tuple[torch.nn.Module, str]:
    """The default profile's SimCLR encoder of ``pool`` if it exists, else a seeded random ResNet-18."""
    stem = encoder_stem(pool, "simclr", "default")
    try:
        model, _ = load_encoder(stem, {"arch": "resnet18"})
        return model, f"ssl:{pool}:simclr"
    except Exception:  # noqa: BLE001 - no checkpoint yet: the timing does not depend on the weights
        torch.manual_seed(seed)
        return build_backbone("resnet18"), f"random (seed {seed})"


def run() -> dict[str, float]:
    ct, natural = load_pool("ct", size=64), load_pool("natural", size=64)
    images = np.concatenate([ct.images, natural.images])
    pick = np.random.default_rng(0).choice(len(images), min(N_IMAGES, len(images)), replace=False)
    tensor = torch.from_numpy(images[pick]).permute(0, 3, 1, 2).float().div(255).contiguous()
    model_a, name_a = _encoder("ct", 0)
    model_b, name_b = _encoder("natural", 1)
    figures = bench_cka(tensor, model_a, model_b)
    print(f"CKA: {len(tensor)} real pool images at 64 px, {name_a} vs {name_b}, all ResNet-18 stages, linear CKA")
    print(
        f"  scalable (streaming/minibatch): {figures['cka.minibatch_seconds']:.2f} s, peak RSS "
        f"{figures['cka.minibatch_peak_rss_mb']:.0f} MB"
    )
    print(
        f"  full-Gram reference:            {figures['cka.fullgram_seconds']:.2f} s, peak RSS "
        f"{figures['cka.fullgram_peak_rss_mb']:.0f} MB"
    )
    speed = figures["cka.fullgram_seconds"] / max(figures["cka.minibatch_seconds"], 1e-9)
    memory = figures["cka.fullgram_peak_rss_mb"] / max(figures["cka.minibatch_peak_rss_mb"], 1e-9)
    print(
        f"  ratio: {speed:.1f}x faster, {memory:.2f}x less peak memory (forward passes "
        f"{figures.get('cka.forward_seconds', float('nan')):.1f} s, excluded)"
    )
    figures["cka.speedup"] = round(speed, 3)
    figures["cka.memory_ratio"] = round(memory, 3)
    return figures
