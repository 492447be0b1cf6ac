"""Where rtl_core finds its data and writes its outputs: the one artifact layout, every stage builds paths here.

Data: ``$RTL_DATA_DIR`` if set, else the embedded demo pack at ``../shared/data`` seen from the repo root.
Outputs: ``$RTL_OUTPUT_DIR`` if set, else ``<repo>/artifacts`` (never in git), one folder per kind and study::

    artifacts/
      cache/                          decoded data-pack arrays, rendered tasks (safe to delete)
      splits/<study>/                 every task's saved split (data stage)
      runs/pretrain/<study>/          one folder per pretraining: last.ckpt, metrics.csv (pretrain stage)
      checkpoints/<study>/            <pool>-<method>[-r<r>].pt + .json sidecar: the encoders (pretrain stage;
                                      -r<r>: replicate r >= 1 of a replicated arm)
      results/<study>/                <task>/<init slug>[-r<r>]/<protocol>/seed<k>.json: the results store
      finetuned/<study>/              <init slug>/<task>/seed<k>.pt: early layers of fine-tuned encoders (evaluate)
      analysis/<study>/               CKA, probes, kNN sanity, advisor, claims (analysis stage)
      notebooks/<study>/, report_stamps/<study>/, exports/<study>/   executed notebooks, their inputs, exports
      reports/                        HTML reports, claims.json, bench.json (only when $RTL_OUTPUT_DIR is set;
                                      else the repository's reports/): a stock profile's study in reports/,
                                      any other study in reports/<study>/
"""

from __future__ import annotations

import os
from pathlib import Path

from rtl_core.errors import DataError, OutputError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
#: The repository's committed reports (``bench.json``, ``claims.json``): written only when ``$RTL_OUTPUT_DIR`` is
#: unset; read as the demo study's reference figures otherwise (see :func:`reports_dir`).
REPO_REPORTS = REPO_ROOT / "reports"
#: The committed ``make bench`` figures (a flat JSON object of ``<section>.<figure>`` keys); writers use
#: :func:`bench_json`, which follows ``$RTL_OUTPUT_DIR``.
BENCH_JSON = REPO_REPORTS / "bench.json"


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
    """Root for everything a study writes (created on demand, checked writable once per process)."""
    root = Path(os.environ.get("RTL_OUTPUT_DIR", REPO_ROOT / "artifacts")).expanduser()
    if root not in _WRITABLE or not root.is_dir():
        check_writable_folder(root, "RTL_OUTPUT_DIR" if os.environ.get("RTL_OUTPUT_DIR") else "the output folder")
        _WRITABLE.add(root)
    return root


_WRITABLE: set[Path] = set()


def check_writable_folder(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and write and remove a probe file in it; :class:`OutputError` naming the path
    and the fix when it is a file, lies below a file, or cannot be written (permissions, a read-only file system)."""
    import errno
    import tempfile

    fix = "set RTL_OUTPUT_DIR to a folder you can write, e.g. `export RTL_OUTPUT_DIR=$HOME/rtl-artifacts`"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rtl-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise OutputError(
            f"{what} {folder} cannot be a folder: {blocker} is an existing file. Move that file away, or {fix}."
        ) from exc
    except OSError as exc:
        reason = "the file system is read-only" if exc.errno == errno.EROFS else (exc.strerror or str(exc)).lower()
        if folder.is_dir():
            raise OutputError(
                f"{what} {folder} cannot be written ({reason}). Make it writable (e.g. `chmod u+w {folder}`), or {fix}."
            ) from exc
        raise OutputError(f"{what} {folder} cannot be created ({reason}: {exc.filename or folder}); {fix}.") from exc


def reports_dir() -> Path:
    """Where the HTML reports, ``claims.json`` and ``bench.json`` go: ``$RTL_OUTPUT_DIR/reports`` when that is set
    (so a run elsewhere never touches the repository), else the repository's ``reports/`` (not created here)."""
    if os.environ.get("RTL_OUTPUT_DIR"):
        return output_root() / "reports"
    return REPO_REPORTS


def bench_json() -> Path:
    """``make bench``'s figures and the reproduce's timings: ``bench.json`` in :func:`reports_dir`."""
    return reports_dir() / "bench.json"


def cache_dir() -> Path:
    """Cache of decoded data-pack arrays (safe to delete)."""
    path = output_root() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def study_dir(kind: str, study: str, create: bool = False) -> Path:
    """``<outputs>/<kind>/<study>`` (see the module doc for the kinds), created when ``create``."""
    path = output_root() / kind / study
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(study: str) -> Path:
    """One JSON record per run lives below here: ``<task>/<init>/<protocol>/seed<k>.json`` (created)."""
    return study_dir("results", study, create=True)


def analysis_dir(study: str) -> Path:
    """The analysis tables of a study (created)."""
    return study_dir("analysis", study, create=True)


def checkpoints_dir(study: str) -> Path:
    return study_dir("checkpoints", study)


def encoder_stem(pool: str, method: str, study: str, sequential: bool = False, replicate: int = 0) -> Path:
    """Where the encoder pretrained with ``method`` on ``pool`` in ``study`` lives (without suffix).

    ``sequential=True`` names the natural-then-``pool`` encoder (pretraining continued on ``pool`` from the
    ``natural`` encoder of the same method), i.e. the init ``sequential:<pool>:<method>``. Replicate ``r`` ≥ 1 of
    a replicated arm (``pretrain.replicates``) is ``<name>-r<r>``; replicate 0 keeps the plain name.
    """
    name = f"natural_then_{pool}-{method}" if sequential else f"{pool}-{method}"
    return checkpoints_dir(study) / (f"{name}-r{replicate}" if replicate else name)


def pretraining_logs_dir(study: str) -> Path:
    """Where each pretraining (pool × method) keeps its resumable Lightning folder."""
    return output_root() / "runs" / "pretrain" / study


def finetuned_dir(study: str) -> Path:
    return study_dir("finetuned", study)


def finetuned_path(study: str, init_slug: str, task: str, seed: int) -> Path:
    """The early layers of one fine-tuned encoder (the feature-reuse analysis reads them)."""
    return finetuned_dir(study) / init_slug / task / f"seed{seed}.pt"


def splits_dir(study: str | None = None) -> Path:
    """Saved splits: every study's (``study=None``) or one study's."""
    return output_root() / "splits" if study is None else study_dir("splits", study)
