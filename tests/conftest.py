"""Shared fixtures: the real demo pack, and damaged copies of parts of it in temporary folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rtl_core.paths import data_root


@pytest.fixture(scope="session")
def pack() -> Path:
    """The real data pack (``$RTL_DATA_DIR`` or ``../shared/data``)."""
    return data_root()


@pytest.fixture(autouse=True, scope="session")
def _isolated_outputs(tmp_path_factory):
    """Runs and caches of the test session go to a temporary output root, never into the repository.

    Session-scoped so that module- and session-scoped fixtures see it too.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RTL_OUTPUT_DIR", str(tmp_path_factory.getbasetemp() / "artifacts"))
        yield


@pytest.fixture()
def one_torch_thread():
    """One torch thread: on the shared 2-core machine two threads oversubscribe and run several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def copy_pack_subset(pack: Path, dest: Path, *rel_dirs: str) -> Path:
    """Copy the named dataset folders and the manifest into ``dest`` (a writable mini pack)."""
    for rel in rel_dirs:
        shutil.copytree(pack / rel, dest / rel)
        for path in (dest / rel).rglob("*"):
            path.chmod(0o644)
    shutil.copy(pack / "MANIFEST.sha256", dest / "MANIFEST.sha256")
    (dest / "MANIFEST.sha256").chmod(0o644)
    return dest
