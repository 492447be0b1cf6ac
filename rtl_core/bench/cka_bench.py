"""Benchmark: scalable layer-wise CKA vs the straightforward full-Gram implementation (``make bench`` section
``cka``: :mod:`rtl_core.bench.cka_section`).

Both variants compute linear (biased) CKA between the ResNet-18 stages of two models over the same
images, each in its own fresh Python process so that its peak resident memory
(``getrusage(RUSAGE_SELF).ru_maxrss``) is its own:

* ``minibatch`` (our scalable path, :class:`~rtl_core.analysis.cka.LayerwiseCKA`): activations are fed
  batch by batch into the accumulators and dropped; never an ``n x n`` matrix.
* ``fullgram``: every activation is kept, then one centred ``n x n`` float64 Gram matrix per layer
  and model is built and cached, and CKA of each pair is ``<Kc, Lc> / (||Kc|| ||Lc||)``.

Both run the same forward passes; the reported ``*_seconds`` exclude them (forward time is reported
separately as ``cka.forward_seconds``). Peak RSS includes the interpreter, torch, the models and the
images, which are the same in both processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rtl_core.analysis.activations import Pool, eval_mode, iter_paired_activations
from rtl_core.analysis.cka import LayerwiseCKA
from rtl_core.analysis.hsic import center_gram, gram_linear
from rtl_core.errors import DataError
from rtl_core.models.backbones import RESNET_STAGES
from rtl_core.models.devices import default_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_variant(payload: dict, variant: str) -> dict:
    """Forward both models over the images and compute the CKA matrix with ``variant``."""
    images: torch.Tensor = payload["images"]
    model_a: nn.Module = payload["model_a"]
    model_b: nn.Module = payload["model_b"]
    layers: list[str] = payload["layers"]
    bs: int = payload["batch_size"]
    pool: Pool = payload["pool"]
    device = torch.device(payload["device"])
    model_a.to(device)
    model_b.to(device)
    forward_s = cka_s = 0.0
    baseline_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    engine = LayerwiseCKA(layers, layers, kernel="linear", debiased=False)
    kept: dict[str, list[list[torch.Tensor]]] = {"a": [[] for _ in layers], "b": [[] for _ in layers]}
    batches = images.split(bs)
    with eval_mode(model_a, model_b):
        t0 = time.perf_counter()
        for acts_a, acts_b in iter_paired_activations(model_a, model_b, batches, layers, layers, pool, device):
            _sync(device)
            t1 = time.perf_counter()
            forward_s += t1 - t0
            if variant == "minibatch":
                engine.update(acts_a, acts_b)
            else:
                for i, name in enumerate(layers):
                    kept["a"][i].append(acts_a[name].clone())
                    kept["b"][i].append(acts_b[name].clone())
            _sync(device)
            t0 = time.perf_counter()
            cka_s += t0 - t1
    t1 = time.perf_counter()
    if variant == "minibatch":
        matrix = engine.compute()
    else:
        grams_a = [center_gram(gram_linear(torch.cat(parts))) for parts in kept["a"]]
        grams_b = [center_gram(gram_linear(torch.cat(parts))) for parts in kept["b"]]
        norms_a = [float(k.norm()) for k in grams_a]
        norms_b = [float(k.norm()) for k in grams_b]
        matrix = np.array(
            [
                [float((ka * kb).sum()) / (na * nb) for kb, nb in zip(grams_b, norms_b)]
                for ka, na in zip(grams_a, norms_a)
            ]
        )
    _sync(device)
    cka_s += time.perf_counter() - t1
    out = {
        "seconds": cka_s,
        "forward_seconds": forward_s,
        "baseline_rss_mb": baseline_rss_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "matrix": matrix.tolist(),
    }
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _child_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One CKA benchmark variant (internal).")
    parser.add_argument("--variant", choices=("minibatch", "fullgram"), required=True)
    parser.add_argument("--payload", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    payload = torch.load(args.payload, map_location="cpu", weights_only=True, mmap=True)
    from rtl_core.models.backbones import build_backbone

    for side in ("a", "b"):  # rebuild the encoders from their weights (no pickled code crosses processes)
        model = build_backbone(payload["arch"])
        model.load_state_dict(payload.pop(f"state_{side}"), strict=True)
        payload[f"model_{side}"] = model
    args.out.write_text(json.dumps(_run_variant(payload, args.variant)))


def bench_cka(
    images: torch.Tensor,
    model_a: nn.Module,
    model_b: nn.Module,
    batch_size: int = 250,
    layers: Sequence[str] = RESNET_STAGES,
    pool: Pool = "avg",
    device: torch.device | str | None = None,
    arch: str = "resnet18",
) -> dict[str, float]:
    """Time and peak memory of layer-wise linear CKA: scalable path vs full-Gram, on ``images``.

    ``images`` is ``(N, 3, H, W)`` float; the models are torchvision ResNets of ``arch`` (their ``fc`` is
    ignored). Each variant runs in a fresh subprocess, which rebuilds both encoders from their weights
    (loaded with ``weights_only=True``). Returns
    ``cka.minibatch_seconds``, ``cka.fullgram_seconds`` (CKA work only, forward passes excluded),
    ``cka.minibatch_peak_rss_mb``, ``cka.fullgram_peak_rss_mb``, plus ``cka.forward_seconds``,
    ``cka.baseline_rss_mb`` (peak RSS of a child before any forward pass: interpreter, torch, models,
    images), ``cka.n_images`` and ``cka.max_abs_diff`` (largest difference between the two CKA matrices: the
    scalable path is exact here, so it should be ~1e-10).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise DataError("bench_cka needs images as a float tensor (N, C, H, W).")
    if images.shape[0] < 4:
        raise DataError(f"bench_cka got {images.shape[0]} images; give at least 4.")
    dev = str(default_device(device))
    payload = {
        "images": images.detach().cpu().contiguous(),
        "state_a": {k: v.detach().cpu() for k, v in model_a.state_dict().items() if not k.startswith("fc.")},
        "state_b": {k: v.detach().cpu() for k, v in model_b.state_dict().items() if not k.startswith("fc.")},
        "arch": arch,
        "layers": list(layers),
        "batch_size": int(batch_size),
        "pool": pool,
        "device": str(dev),
    }
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rtl_cka_bench_") as tmp:
        payload_path = Path(tmp) / "payload.pt"
        torch.save(payload, payload_path)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for variant in ("minibatch", "fullgram"):
            out = Path(tmp) / f"{variant}.json"
            cmd = [sys.executable, "-m", "rtl_core.bench.cka_bench", "--variant", variant]
            proc = subprocess.run(
                [*cmd, "--payload", str(payload_path), "--out", str(out)], env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise RuntimeError(f"CKA benchmark child '{variant}' failed:\n{proc.stderr[-4000:]}")
            results[variant] = json.loads(out.read_text())
    diff = np.nanmax(np.abs(np.array(results["minibatch"]["matrix"]) - np.array(results["fullgram"]["matrix"])))
    out_dict = {
        "cka.minibatch_seconds": results["minibatch"]["seconds"],
        "cka.fullgram_seconds": results["fullgram"]["seconds"],
        "cka.minibatch_peak_rss_mb": results["minibatch"]["peak_rss_mb"],
        "cka.fullgram_peak_rss_mb": results["fullgram"]["peak_rss_mb"],
        "cka.forward_seconds": results["minibatch"]["forward_seconds"],
        "cka.baseline_rss_mb": max(r["baseline_rss_mb"] for r in results.values()),
        "cka.n_images": float(images.shape[0]),
        "cka.max_abs_diff": float(diff),
    }
    for variant in ("minibatch", "fullgram"):
        if "peak_cuda_mb" in results[variant]:
            out_dict[f"cka.{variant}_peak_cuda_mb"] = results[variant]["peak_cuda_mb"]
    return out_dict


if __name__ == "__main__":
    _child_main()
