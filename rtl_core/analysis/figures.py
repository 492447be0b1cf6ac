"""Plot helpers for the analysis notebooks: UMAP scatters (static and interactive), separability, probes,
"who knew what" overlaps. Each returns a figure (matplotlib) or an HTML string (plotly); none calls ``show``.

Interactive embedding with image thumbnails: plotly's hover template cannot render images, so
:func:`interactive_embedding_html` stores each point's thumbnail as a base64 PNG data URI in the point's
``customdata`` and adds, next to the plot, an ``<img>`` panel that a few lines of JavaScript (passed to
``plotly.io.to_html(post_script=...)``) update on plotly's ``plotly_hover`` / ``plotly_click`` events. No
widget or server is needed: the string works in a static HTML file and in JupyterLab
(``IPython.display.HTML(html)``; in an untrusted notebook or where scripts are stripped, show
``IPython.display.HTML(as_iframe(html))`` instead, which runs the page in an iframe's ``srcdoc``).
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import uuid
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from rtl_core.errors import ConfigError, DataError

# --- thumbnails ------------------------------------------------------------------------------------------------


def thumbnail_uris(images: torch.Tensor | np.ndarray, size: int | None = 64, fmt: str = "png") -> list[str]:
    """``data:image/png;base64,…`` URIs of uint8 images ``(N, 3, S, S)`` (resized to ``size`` px if given).

    PNG is lossless (≈3–10 kB per 64 px image); ``fmt="jpeg"`` or ``"webp"`` (quality 85) makes pages ~3× smaller.
    """
    from PIL import Image

    formats = {"png": ("PNG", {"optimize": True}), "jpeg": ("JPEG", {"quality": 85}), "webp": ("WEBP", {"quality": 85})}
    if fmt not in formats:
        raise ConfigError(f"thumbnail format {fmt!r} is not known; use one of {sorted(formats)}.")
    pil_format, options = formats[fmt]

    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 3:
        raise DataError(f"thumbnails need uint8 images (N, 3, S, S), got {array.dtype} {array.shape}.")
    uris = []
    for chw in array:
        image = Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0)))
        if size and image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format=pil_format, **options)
        uris.append(f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return uris


# --- interactive embedding -----------------------------------------------------------------------------------

_BLANK_GIF = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="
_HOVER_JS = """
(function() {
  var gd = document.getElementById('%(div)s');
  function show(ev) {
    var p = ev.points[0];
    var img = document.getElementById('%(div)s-thumb');
    var cap = document.getElementById('%(div)s-caption');
    if (!p || !p.customdata || !img) { return; }
    img.src = p.customdata[0];
    cap.textContent = p.customdata[1] + ' | ' + p.customdata[2] + ' | ' + p.customdata[3];
  }
  gd.on('plotly_hover', show);
  gd.on('plotly_click', show);
})();
"""


def interactive_embedding_html(
    frame: pd.DataFrame,
    thumbnails: Sequence[str],
    color: str = "domain",
    title: str = "",
    include_plotlyjs: bool | str = True,
    full_html: bool = True,
    thumb_px: int = 160,
    height: int = 600,
) -> str:
    """HTML of a plotly scatter of ``frame`` (``x``, ``y``, ``domain``, ``task``, ``class_name``) coloured by
    ``color``; hovering (or clicking) a point shows its thumbnail, task, class and domain in a side panel.

    ``thumbnails``: one data URI per row of ``frame`` (:func:`thumbnail_uris`; rows of a :func:`umap_frame` for
    one init and layer carry ``image_index`` into the sample). ``include_plotlyjs``: ``True`` embeds plotly.js
    (≈4.6 MB, works offline), ``"cdn"`` links it, ``False`` assumes the page already loaded it.
    """
    import plotly.graph_objects as go
    import plotly.io as pio

    needed = {"x", "y", "domain", "task", "class_name", color}
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise ConfigError(f"frame lacks columns {missing}; build it with rtl_core.analysis.embeddings.umap_frame.")
    if len(thumbnails) != len(frame):
        raise DataError(f"{len(thumbnails)} thumbnails for {len(frame)} points; give one per row of frame.")
    frame = frame.reset_index(drop=True)
    uris = np.asarray(thumbnails, dtype=object)
    fig = go.Figure()
    for value, part in frame.groupby(color, sort=True, dropna=False):
        custom = np.column_stack(
            [uris[part.index], part["task"].astype(str), part["class_name"].astype(str), part["domain"].astype(str)]
        )
        fig.add_trace(
            go.Scatter(
                x=part["x"],
                y=part["y"],
                mode="markers",
                name=str(value),
                marker={"size": 6, "opacity": 0.8},
                customdata=custom,
                hovertemplate="task: %{customdata[1]}<br>class: %{customdata[2]}<br>domain: %{customdata[3]}"
                "<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(
        title=title or f"UMAP coloured by {color}",
        height=height,
        legend_title_text=color,
        xaxis_title="UMAP 1",
        yaxis_title="UMAP 2",
        template="plotly_white",
        margin={"l": 40, "r": 10, "t": 50, "b": 40},
    )
    div = f"rtl-embedding-{uuid.uuid4().hex[:10]}"
    plot = pio.to_html(
        fig,
        include_plotlyjs=include_plotlyjs,
        full_html=False,
        post_script=_HOVER_JS % {"div": div},
        div_id=div,
        default_height=f"{height}px",
    )
    body = (
        f'<div class="rtl-embedding" style="display:grid;grid-template-columns:minmax(0,1fr) {thumb_px + 20}px;'
        f'gap:8px;align-items:start;font-family:sans-serif">'
        f"<div>{plot}</div>"
        f'<figure style="margin:50px 0 0 0;text-align:center">'
        f'<img id="{div}-thumb" src="{_BLANK_GIF}" width="{thumb_px}" height="{thumb_px}" alt="" '
        f'style="image-rendering:pixelated;border:1px solid #ccc;background:#f4f4f4"/>'
        f'<figcaption id="{div}-caption" style="font-size:12px;word-break:break-word">hover a point</figcaption>'
        f"</figure></div>"
    )
    if not full_html:
        return body
    safe_title = html_lib.escape(title or "embedding")
    head = f'<head><meta charset="utf-8"><title>{safe_title}</title></head>'
    return f"<!DOCTYPE html><html>{head}<body>{body}</body></html>"


def as_iframe(html: str, height: int = 660) -> str:
    """Wrap a full HTML page (``full_html=True``, plotly.js included or from the CDN) in an ``<iframe srcdoc>``."""
    return (
        f'<iframe srcdoc="{html_lib.escape(html, quote=True)}" style="width:100%;height:{height}px;border:0"></iframe>'
    )


# --- static figures ----------------------------------------------------------------------------------------------


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


def figures_by_init(frame: pd.DataFrame, layer: str) -> Mapping[str, pd.DataFrame]:
    """Rows of a :func:`umap_frame` for one layer, split by init (for one interactive figure per init)."""
    part = frame[frame["layer"] == layer]
    if part.empty:
        raise ConfigError(f"frame has no layer {layer!r}; it has {sorted(frame['layer'].unique())}.")
    return {init: rows.sort_values("image_index") for init, rows in part.groupby("init", sort=False)}


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
            layers = list(dict.fromkeys(part["layer_a"]))
            matrix = part.pivot(index="layer_a", columns="layer_b", values="cka").reindex(index=layers, columns=layers)
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
