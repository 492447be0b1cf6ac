"""30 · Feature space: CKA heatmaps and their diagonal, UMAP scatters, separability, probes and the "who knew
what" overlaps, each a matplotlib figure (none calls ``show``). The interactive UMAP pages with thumbnails are
written by the analysis (:mod:`rtl_core.analysis.figures`); :func:`as_iframe` shows one in a notebook."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rtl_core.analysis.figures import as_iframe
from rtl_core.errors import ConfigError

__all__ = [
    "as_iframe",
    "cka_diagonal_figure",
    "cka_heatmaps",
    "embedding_grid",
    "overlap_heatmap",
    "probe_figure",
    "separability_figure",
    "upset_figure",
]


def embedding_grid(frame: pd.DataFrame, hue: str = "domain", row: str = "init", col: str = "layer", size: float = 3.0):
    """Static UMAP scatters, one panel per (``row``, ``col``) of a :func:`umap_frame`, coloured by ``hue``."""
    import seaborn as sns

    if hue not in frame:
        raise ConfigError(f"frame has no column {hue!r}; columns are {list(frame.columns)}.")
    grid = sns.relplot(
        data=frame,
        x="x",
        y="y",
        hue=hue,
        row=row if row in frame else None,
        col=col if col in frame else None,
        kind="scatter",
        s=8,
        alpha=0.7,
        linewidth=0,
        height=size,
        aspect=1,
        facet_kws={"sharex": False, "sharey": False},
    )
    grid.set(xticks=[], yticks=[], xlabel="", ylabel="")
    return grid.figure


def separability_figure(table: pd.DataFrame, metrics: Sequence[str] = ("knn_accuracy", "silhouette")):
    """Separability per layer (x) and init (hue), one panel per metric, from :func:`separability_table`."""
    import seaborn as sns

    data = table[table["metric"].isin(metrics)]
    grid = sns.catplot(
        data=data, x="layer", y="score", hue="init", col="metric", kind="point", sharey=False, height=3.2, aspect=1.1
    )
    return grid.figure


def probe_figure(table: pd.DataFrame, col_wrap: int = 4):
    """Probe score per layer (x) and init (hue), one panel per property, from :func:`probe_table`."""
    import seaborn as sns

    grid = sns.catplot(
        data=table,
        x="layer",
        y="score",
        hue="init",
        col="property",
        col_wrap=col_wrap,
        kind="point",
        sharey=False,
        height=2.8,
        aspect=1.1,
    )
    for ax, (_prop, part) in zip(grid.axes.flat, table.groupby("property", sort=False)):
        ax.set_ylabel(part["metric"].iloc[0])
    return grid.figure


def overlap_heatmap(table: pd.DataFrame, value: str = "ratio"):
    """Matrix of a pairwise :func:`overlap_table` column (default observed/expected overlap), annotated with
    the value and Fisher's p-value stars (* < .05, ** < .01, *** < .001)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    inits = list(dict.fromkeys([*table["init_a"], *table["init_b"]]))
    matrix = pd.DataFrame(np.nan, index=inits, columns=inits)
    notes = pd.DataFrame("", index=inits, columns=inits)
    for row in table.itertuples():
        stars = "***" if row.p_value < 1e-3 else "**" if row.p_value < 1e-2 else "*" if row.p_value < 0.05 else ""
        for a, b in ((row.init_a, row.init_b), (row.init_b, row.init_a)):
            matrix.loc[a, b] = getattr(row, value)
            notes.loc[a, b] = f"{getattr(row, value):.2f}{stars}"
    fig, ax = plt.subplots(figsize=(1.2 * len(inits) + 2, 1.0 * len(inits) + 1))
    center = 1.0 if value == "ratio" else None
    sns.heatmap(matrix.astype(float), annot=notes, fmt="", cmap="vlag", center=center, ax=ax, cbar_kws={"label": value})
    ax.set_title(f"who knew what: {value}")
    fig.tight_layout()
    return fig


def upset_figure(counts: pd.DataFrame, max_patterns: int = 16):
    """UpSet-like figure of :func:`intersection_counts`: bars of pattern counts over a dot matrix of which inits
    were correct (filled dot) in that pattern."""
    import matplotlib.pyplot as plt

    inits = [c for c in counts.columns if c != "count"]
    top = counts.head(max_patterns)
    fig, (bars, dots) = plt.subplots(
        2,
        1,
        figsize=(0.5 * len(top) + 3, 1.6 + 0.35 * len(inits) + 2.5),
        sharex=True,
        gridspec_kw={"height_ratios": [3, max(1, 0.4 * len(inits))]},
    )
    xs = np.arange(len(top))
    bars.bar(xs, top["count"], color="0.3")
    for x, c in zip(xs, top["count"]):
        bars.text(x, c, str(int(c)), ha="center", va="bottom", fontsize=8)
    bars.set_ylabel("test samples")
    bars.set_title("who knew what: samples by set of inits that got them right")
    for y, init in enumerate(inits):
        on = top[init].to_numpy(bool)
        dots.scatter(xs[on], np.full(on.sum(), y), color="0.1", s=40)
        dots.scatter(xs[~on], np.full((~on).sum(), y), color="0.85", s=40)
    dots.set_yticks(range(len(inits)), inits)
    dots.set_ylim(-0.5, len(inits) - 0.5)
    dots.set_xticks([])
    for side in ("top", "right", "bottom"):
        dots.spines[side].set_visible(False)
    for side in ("top", "right"):
        bars.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def cka_heatmaps(cka: pd.DataFrame, pairs: Sequence[tuple[str, str]], inputs: Sequence[str] = ("ct", "natural")):
    """Layer × layer CKA heatmaps: one row per (model A, model B) pair, one column per input domain."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(len(pairs), len(inputs), figsize=(4.2 * len(inputs), 3.6 * len(pairs)), squeeze=False)
    for r, (a, b) in enumerate(pairs):
        for c, domain in enumerate(inputs):
            part = cka[(cka.model_a == a) & (cka.model_b == b) & (cka.inputs == domain)]
            if part.empty:  # stored once per unordered pair
                part = cka[(cka.model_a == b) & (cka.model_b == a) & (cka.inputs == domain)].rename(
                    columns={"layer_a": "layer_b", "layer_b": "layer_a"}
                )
            rows, cols = list(dict.fromkeys(part["layer_a"])), list(dict.fromkeys(part["layer_b"]))  # two archs: own
            matrix = part.pivot(index="layer_a", columns="layer_b", values="cka").reindex(index=rows, columns=cols)
            ax = axes[r, c]
            sns.heatmap(
                matrix,
                vmin=0,
                vmax=1,
                cmap="magma",
                annot=True,
                fmt=".2f",
                annot_kws={"fontsize": 7},
                ax=ax,
                cbar=c == len(inputs) - 1,
            )
            ax.set_xlabel(b), ax.set_ylabel(a)
            ax.set_title(f"{domain} inputs (n={int(part['n_images'].iloc[0]) if len(part) else 0})", fontsize=9)
    fig.tight_layout()
    return fig


def cka_diagonal_figure(cka: pd.DataFrame, pairs: Sequence[tuple[str, str]]):
    """Same-layer CKA (the heatmaps' diagonal) per layer, for each pair and input domain."""
    import seaborn as sns

    rows = []
    for a, b in pairs:
        part = cka[((cka.model_a == a) & (cka.model_b == b)) | ((cka.model_a == b) & (cka.model_b == a))]
        part = part[part.layer_a == part.layer_b]
        rows.append(part.assign(pair=f"{a} vs {b}"))
    data = pd.concat(rows, ignore_index=True)
    grid = sns.catplot(data=data, x="layer_a", y="cka", hue="pair", col="inputs", kind="point", height=3.2, aspect=1.2)
    grid.set_axis_labels("layer", "CKA (same layer)")
    return grid.figure
