"""Tables as a reader should see them on every page (HTML, no index, whole numbers as integers)."""

from __future__ import annotations

import pandas as pd


def table(frame: pd.DataFrame):
    """``frame`` as a reader should see it (HTML): no index column, whole numbers as integers, ``–`` for a
    missing cell."""
    from IPython.display import HTML

    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_float_dtype(values):
            present = values.dropna()
            if len(present) and bool((present == present.round()).all()):
                out[column] = pd.Series([None if pd.isna(v) else int(v) for v in values], index=out.index, dtype=object)
    out = out.astype(object).where(out.notna(), "–")
    return HTML(out.to_html(index=False, border=0, escape=True))
