"""Where rtl_core finds its data and writes its outputs.

Data: ``$RTL_DATA_DIR`` if set, else the embedded demo pack at ``../shared/data`` seen from the repo root.
Outputs: ``$RTL_OUTPUT_DIR`` if set, else ``<repo>/artifacts`` (runs, results, checkpoints, caches; never in git).
"""

from __future__ import annotations

import os
from pathlib import Path

from rtl_core.errors import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"


def data_root(override: str | os.PathLike | None = None) -> Path:
    """Return the data root, checking it exists.

    Order: ``override`` (e.g. a config's ``data.data_dir``), ``$RTL_DATA_DIR``, the demo pack.
    """
    candidates: list[tuple[str, Path]] = []
    if override:
        candidates.append(("config data.data_dir", Path(override).expanduser()))
    elif os.environ.get("RTL_DATA_DIR"):
        candidates.append(("$RTL_DATA_DIR", Path(os.environ["RTL_DATA_DIR"]).expanduser()))
    else:
        candidates.append(("demo pack (../shared/data from the repo root)", DEFAULT_DATA_DIR))
    for _, path in candidates:
        if path.is_dir():
            return path.resolve()
    where = "; ".join(f"{label}: {path}" for label, path in candidates)
    raise DataError(
        f"No data directory found (looked at {where}). Put the demo pack at {DEFAULT_DATA_DIR} "
        "(the repository's sibling folder shared/data), or point RTL_DATA_DIR at a folder with the same layout, "
        "e.g. `export RTL_DATA_DIR=/path/to/data`."
    )


def output_root() -> Path:
    """Root for everything a study writes (created on demand)."""
    root = Path(os.environ.get("RTL_OUTPUT_DIR", REPO_ROOT / "artifacts")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir() -> Path:
    """Cache of decoded data-pack arrays (safe to delete)."""
    path = output_root() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(study: str) -> Path:
    """One JSON record per run lives below here: ``<task>/<init>/<protocol>/seed<k>.json``."""
    path = output_root() / "results" / study
    path.mkdir(parents=True, exist_ok=True)
    return path
