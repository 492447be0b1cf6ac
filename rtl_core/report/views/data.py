"""00 · Data: the study's own pools and tasks (table, sample images), then the demo pack's tasks and pools it uses
(tables, sample images, intensity and Hounsfield-unit histograms)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rtl_core.data.demo_pools import load_pool
from rtl_core.data.intensity import render
from rtl_core.data.registry import TASKS, get_task, load_task
from rtl_core.data.summary import pool_summary, task_summary
from rtl_core.names import DEMO_POOLS
from rtl_core.report.views.tables import table

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# --------------------------------------------------------------------------------------------- the study's own data
def study_has_own_data(config) -> bool:
    """Whether the study brings its own pools or tasks (``data.pools`` / ``data.tasks``)."""
    return bool(config.data.pools or config.data.tasks)


def demo_data_used(config) -> tuple[list[str], list[str]]:
    """The demo pack's tasks and pools the data page shows: all of them for a study on the demo suite only; for a
    study with its own data, the demo tasks and pools it uses (pretrains on, evaluates on or holds an init of)."""
    from rtl_core.data.registry import TASKS
    from rtl_core.names import DEMO_POOLS, parse_init

    if not study_has_own_data(config):
        return list(TASKS), list(DEMO_POOLS)
    tasks = [t for t in TASKS if t in config.evaluate.tasks]
    used = set(config.pretrain.pools)
    for name in config.evaluate.inits:
        init = parse_init(name)
        if init.ours:
            used |= {init.pool} | ({"natural"} if init.kind == "sequential" else set())
    return tasks, [p for p in DEMO_POOLS if p in used]


def own_data_section(config):
    """The data page's first section for a study with its own pools and tasks: heading and table (one row per
    pool and task, as the study resolves them); None for a study on the demo suite only."""
    from IPython.display import Markdown, display

    from rtl_core.data.study import study_data_table

    if not study_has_own_data(config):
        return None
    display(
        Markdown(
            f"## Study {config.study}: its own pools and tasks\n\n"
            "As the study resolves them: split sizes, patient / scan groups, and how many of a pool's files were "
            "left out because they are val/test images of one of its tasks."
        )
    )
    return table(study_data_table(config))


def _display_image(image) -> np.ndarray:
    """An image tensor ``(3, S, S)`` (uint8, or float in [0, 1]) as an ``(S, S, 3)`` float array for imshow."""
    import torch

    x = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def own_data_samples(config, per_row: int = 8, seed: int = 0):
    """Random training images of each of the study's own tasks (caption: class, or foreground share) and of each
    of its own pools, as the model sees them; None for a study on the demo suite only."""
    import matplotlib.pyplot as plt

    from rtl_core.data.study import study_pool, study_task

    if not study_has_own_data(config):
        return None
    size = config.data.image_size
    rows: list[tuple[str, list[np.ndarray], list[str]]] = []
    rng = np.random.default_rng(seed)
    for name in config.data.tasks:
        task = study_task(config.data, name, size, config.data.split_seed)
        pick = np.sort(rng.choice(len(task.train), min(per_row, len(task.train)), replace=False))
        images = [_display_image(task.train.images[i]) for i in pick]
        targets = task.train.targets
        if task.kind == "classification" and targets is not None:
            names = task.class_names or ()
            labels = [int(targets[i]) for i in pick]
            captions = [str(names[k])[:18] if k < len(names) else str(k) for k in labels]
        else:
            captions = [f"mask {100 * float((targets[i] > 0).float().mean()):.0f}%" for i in pick]
        rows.append((name, images, captions))
    for name in config.data.pools:
        pool = study_pool(config, name)
        pick = np.sort(rng.choice(len(pool), min(per_row, len(pool)), replace=False))
        items = [pool[int(i)] for i in pick]
        images = [_display_image(item[0] if isinstance(item, (tuple, list)) else item) for item in items]
        rows.append((name, images, ["pool"] * len(images)))
    fig, axes = plt.subplots(len(rows), per_row, figsize=(per_row * 1.2, len(rows) * 1.35), squeeze=False)
    for r, (name, images, captions) in enumerate(rows):
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], cmap="gray")
                ax.set_title(captions[c], fontsize=6)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value (the inline backend would show an open figure a second time)
    return fig


def demo_data_intro(config):
    """The heading of the demo pack's part of the data page (after the study's own data), or the line saying the
    study uses none of it."""
    from IPython.display import Markdown

    tasks, pools = demo_data_used(config)
    if not study_has_own_data(config):
        return Markdown("## The demo pack\n\nThe study's tasks and pretraining pools, all from the bundled data pack.")
    if not tasks and not pools:
        return Markdown(
            "## The demo pack\n\nThis study uses none of the demo pack's tasks and pools; they are not shown "
            "(`rtl summary` lists them)."
        )
    return Markdown(
        "## The demo pack\n\nThe demo pack's tasks and pools this study uses as well: "
        + ", ".join(f"`{n}`" for n in tasks + pools)
        + "."
    )


# --------------------------------------------------------------------------------------------- the demo pack
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
    """One row per demo pool and image source: the source's images and the pool's total."""
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


def sample_grid(names: list[str] | None = None, per_row: int = 8, seed: int = 0, size: int = 64) -> Figure:
    """A row of random images (with class or source as caption) for each task and pool."""
    import matplotlib.pyplot as plt

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


def intensity_histograms(names: list[str] | None = None, bins: int = 64) -> Figure:
    """Pixel-intensity histograms of each task's images as the model sees them (after windowing, 0–255)."""
    import matplotlib.pyplot as plt

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


def hu_histograms() -> Figure:
    """Hounsfield-unit histograms of the pack's HU sources, with the CT window presets marked."""
    import matplotlib.pyplot as plt

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
