"""Paper-profile pretraining throughput on one GPU: SimCLR, ResNet-50 at the profile's crop (256 px), bf16,
channels_last, LARS.

Issue 3's target: **≥ 4,000 pairs/s on one H100** (the rate of the paper's whole 8×A100 machine). The step is
the one :class:`rtl_core.pretrain.module.PretrainModule` trains with: uint8 pool images resident on the GPU,
per-image augmentation on the device (:mod:`rtl_core.pretrain.augment`), both views in one forward, the
device's precision and layout (:mod:`rtl_core.pretrain.precision`), LARS. Model FLOP utilisation (MFU) is the
achieved FLOP/s, with the FLOPs of one training step counted by :class:`torch.utils.flop_counter.FlopCounterMode`,
over the GPU's dense bf16 peak (:data:`PEAK_BF16_TFLOPS`). Run it with ``rtl bench --only gpu`` on a machine
with a CUDA GPU; ``make bench`` includes it when one is visible. :func:`measure` runs on any device: the CPU
speed section of :mod:`rtl_core.bench.pretrain_bench` times the ``default`` profile's step with it.
"""

from __future__ import annotations

import time

import torch

#: Dense (no sparsity) bf16 tensor-core peak per GPU, TFLOP/s, from NVIDIA's data sheets (SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10": 125.0}
PAPER_PAIRS_PER_S = 4000.0


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named like ``NVIDIA H100 80GB HBM3``, or None if unknown."""
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def measure(
    config=None,
    device: str = "cuda",
    batch_per_device: int = 512,
    warmup: int = 5,
    steps: int = 20,
    images: torch.Tensor | None = None,
    compile_model: bool = False,
) -> dict[str, float | str | None]:
    """Pairs/s, FLOPs per pair, MFU and peak memory of the pretraining step of ``config`` (default: ``paper``).

    ``images``: uint8 ``(N, 3, S, S)`` pool images (default: the ``natural`` pool at ``data.image_size``).
    """
    from lightly.utils.lars import LARS
    from torch.utils.flop_counter import FlopCounterMode

    from rtl_core.config import load_config
    from rtl_core.models.backbones import build_backbone, feature_dim
    from rtl_core.pretrain.augment import BatchAugment, augment_config
    from rtl_core.pretrain.data import load_pretrain_pool
    from rtl_core.pretrain.methods import MethodContext, build_method
    from rtl_core.pretrain.module import scaled_lr, step_seed
    from rtl_core.pretrain.precision import prepare_for_device, resolve_precision

    config = config or load_config("paper")
    p = config.pretrain
    kind = torch.device(device).type
    precision = resolve_precision(p.precision, "gpu" if kind == "cuda" else "cpu")
    if images is None:
        images = load_pretrain_pool(config, "natural").dataset.images
    images = images.to(device)
    torch.manual_seed(config.seed)
    method = build_method(
        "simclr",
        build_backbone(p.backbone),
        MethodContext(feature_dim(p.backbone), p.projection_dim, p.temperature, batch_size=batch_per_device),
    )
    method = prepare_for_device(method.to(device), method.backbone, p, kind, precision)
    loss_of = torch.compile(method.loss) if compile_model else method.loss
    augment = BatchAugment(augment_config(p))
    optimizer = LARS(method.parameters(), lr=scaled_lr(p), momentum=p.momentum, weight_decay=p.weight_decay)
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16

    def step(i: int) -> None:
        batch = images[torch.randint(len(images), (batch_per_device,), device=device)]
        generator = torch.Generator(device=device).manual_seed(step_seed(config.seed, i, 0))
        with torch.autocast(kind, dtype=dtype, enabled=not precision.startswith("32")):
            loss = loss_of(augment(batch, generator), augment(batch, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if kind == "cuda":
            torch.cuda.synchronize()

    for i in range(warmup):
        step(i)
    counter = FlopCounterMode(display=False)
    with counter:
        step(warmup)
    flops_per_pair = counter.get_total_flops() / batch_per_device
    if kind == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + 1 + i)
    sync()
    seconds = time.perf_counter() - start
    pairs_per_s = steps * batch_per_device / seconds
    name = torch.cuda.get_device_name(device) if kind == "cuda" else "cpu"
    peak = peak_tflops(name) if kind == "cuda" else None
    return {
        "device": name,
        "backbone": p.backbone,
        "crop_size": p.crop_size,
        "batch_per_device": batch_per_device,
        "precision": precision,
        "compiled": compile_model,
        "pairs_per_s": round(pairs_per_s, 1),
        "gflops_per_pair": round(flops_per_pair / 1e9, 2),
        "mfu": round(pairs_per_s * flops_per_pair / (peak * 1e12), 4) if peak else None,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if kind == "cuda" else None,
    }


def run() -> dict[str, float | str | None]:
    """The ``paper`` profile on GPU 0, eager and compiled; prints pairs/s and MFU against the 4,000 pairs/s target."""
    from rtl_core.errors import ConfigError

    if not torch.cuda.is_available():
        raise ConfigError("the gpu benchmark needs a CUDA GPU (none is visible); run `rtl bench` without --only gpu.")
    figures: dict[str, float | str | None] = {}
    for compiled in (False, True):
        result = measure(compile_model=compiled)
        tag = "compiled" if compiled else "eager"
        mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a"
        print(
            f"paper pretraining step on {result['device']} ({tag}, {result['backbone']} {result['crop_size']} px, "
            f"{result['batch_per_device']} pairs/step, {result['precision']}): {result['pairs_per_s']:.0f} pairs/s "
            f"({result['pairs_per_s'] / PAPER_PAIRS_PER_S:.2f}x the 4,000 target), {result['gflops_per_pair']} "
            "GFLOP/pair, "
            f"MFU {mfu}, peak {result['peak_memory_gb']} GB"
        )
        figures.update({f"pretrain_gpu.{tag}.{key}": value for key, value in result.items()})
    return figures
