"""Tables and figures that show what is in the data (used by ``notebooks/00_data``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rtl_core.data.intensity import render
from rtl_core.data.registry import TASKS, get_task, load_pool, load_task
from rtl_core.data.summary import pool_summary, task_summary
from rtl_core.names import DEMO_POOLS


def task_table(split_seed: int = 0) -> pd.DataFrame:
    """One row per task: kind, metric, images, classes, split sizes and groups (patients / scans) per split."""
    rows = [task_summary(name, split_seed) for name in TASKS]
    frame = pd.DataFrame(rows)
    frame["metrics"] = frame["metrics"].map(", ".join)
    return frame[
        [
            "task",
            "kind",
            "metrics",
            "images",
            "shape",
            "intensity",
            "classes",
            "n_train",
            "n_val",
            "n_test",
            "groups_train",
            "groups_val",
            "groups_test",
            "fingerprint",
        ]
    ]


def pool_table(size: int = 64, pool_size: int | None = None) -> pd.DataFrame:
    rows = []
    for name in DEMO_POOLS:
        summary = pool_summary(name, size=size, pool_size=pool_size)
        for source, count in sorted(summary["sources"].items(), key=lambda kv: -kv[1]):
            rows.append({"pool": name, "source": source, "images": count, "pool_total": summary["images"]})
    return pd.DataFrame(rows)


def _display_images(name: str, n: int, seed: int, size: int) -> tuple[np.ndarray, list[str]]:
    if name in DEMO_POOLS:
        pool = load_pool(name, size=size)
        pick = np.random.default_rng(seed).choice(len(pool), n, replace=False)
        return pool.images[pick], [str(s) for s in pool.extras["pool_source"][pick]]
    data = load_task(name)
    spec = get_task(name)
    pick = np.random.default_rng(seed).choice(len(data), n, replace=False)
    images = render(data.images[pick], data.intensity, spec.window, size).permute(0, 2, 3, 1).numpy()
    if data.labels is not None and data.class_names:
        captions = [str(data.class_names[int(label)])[:18] for label in data.labels[pick]]
    else:
        captions = [f"liver {100 * float((m > 0).mean()):.0f}%" for m in data.masks[pick]]
    return images, captions


def sample_grid(names: list[str] | None = None, per_row: int = 8, seed: int = 0, size: int = 64) -> plt.Figure:
    """A row of random images (with class or source as caption) for each task and pool."""
    names = names or list(TASKS) + list(DEMO_POOLS)
    fig, axes = plt.subplots(len(names), per_row, figsize=(per_row * 1.2, len(names) * 1.35), squeeze=False)
    for row, name in enumerate(names):
        images, captions = _display_images(name, per_row, seed, size)
        for col, (image, caption) in enumerate(zip(images, captions)):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(caption, fontsize=6)
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return fig


def intensity_histograms(names: list[str] | None = None, bins: int = 64) -> plt.Figure:
    """Pixel-intensity histograms of each task's images as the model sees them (after windowing, 0–255)."""
    names = names or list(TASKS)
    fig, ax = plt.subplots(figsize=(8, 4))
    for name in names:
        data = load_task(name)
        spec = get_task(name)
        sample = data.images[np.random.default_rng(0).choice(len(data), min(200, len(data)), replace=False)]
        pixels = render(sample, data.intensity, spec.window, 64).float().numpy().ravel()
        ax.hist(pixels, bins=bins, histtype="step", density=True, label=name)
    ax.set_xlabel("intensity after windowing (0–255)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def hu_histograms() -> plt.Figure:
    """Hounsfield-unit histograms of the pack's HU sources, with the CT window presets marked."""
    from rtl_core.data.intensity import WINDOWS
    from rtl_core.data.pack import read_arrays
    from rtl_core.paths import data_root

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for rel, prefix in (("ct/ircadb_p17_liver", ""), ("ct/tcga_ct_kaggle100", ""), ("ct/totalseg_examples", "ct3mm_")):
        data = read_arrays(data_root(), rel, prefix)
        ax.hist(
            data.images.ravel()[::17], bins=200, range=(-1100, 1500), histtype="step", density=True, label=data.name
        )
    for name in ("lung", "abdomen", "bone"):
        window = WINDOWS[name]
        ax.axvspan(window.low, window.low + window.width, alpha=0.06)
        ax.text(window.level, ax.get_ylim()[1] * 0.9, name, ha="center", fontsize=7)
    ax.set_xlabel("HU"), ax.set_yscale("log"), ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
