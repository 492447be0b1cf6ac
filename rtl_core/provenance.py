"""What every run records: git commit, package versions, machine, data fingerprints."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata

import numpy as np

from rtl_core.paths import REPO_ROOT

PACKAGES = ("torch", "torchvision", "lightly", "pytorch-lightning", "numpy", "scikit-learn", "pingouin", "rtl_core")


def git_commit() -> str:
    """The repository's HEAD commit, with ``-dirty`` when the work tree has changes; ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine() -> dict[str, str]:
    import os

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": str(os.cpu_count())}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return info


def settings_digest(value: object) -> str:
    """The one short hash of settings: 12 hex digits of SHA-256 over ``value`` as canonical JSON (sorted keys).
    Config hashes, run settings hashes and pretraining run keys are all this, so equal settings hash alike."""
    import json

    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """Short SHA-256 over arrays' bytes, shapes and dtypes: equal fingerprints mean identical data."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes() if array.dtype.kind != "U" else "\n".join(array.tolist()).encode())
    return digest.hexdigest()[:16]


def provenance() -> dict[str, object]:
    return {"git_commit": git_commit(), "packages": package_versions(), "machine": machine()}
