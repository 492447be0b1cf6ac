"""The interactive UMAP pages the analysis writes (``analysis/<study>/``): thumbnails as data URIs and a plotly
scatter whose points show their image. Each returns an HTML string; the static figures of the feature-space page are
in :mod:`rtl_core.report.views.features`.

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


def figures_by_init(frame: pd.DataFrame, layer: str) -> Mapping[str, pd.DataFrame]:
    """Rows of a :func:`umap_frame` for one layer, split by init (for one interactive figure per init)."""
    part = frame[frame["layer"] == layer]
    if part.empty:
        raise ConfigError(f"frame has no layer {layer!r}; it has {sorted(frame['layer'].unique())}.")
    return {init: rows.sort_values("image_index") for init, rows in part.groupby("init", sort=False)}
