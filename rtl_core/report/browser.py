"""Headless Chromium screenshots of reports (Debian's ``chromium``), to check that pages really render."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from rtl_core.errors import RtlError

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RtlError("Chromium is not installed; `make browser` (Debian: apt-get install chromium) installs it.")
    return path


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 1600, timeout: float = 120) -> Path:
    """Render ``page`` headless and save a PNG screenshot."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    if not png.is_file():
        raise RtlError(f"Chromium produced no screenshot of {page}.")
    return png


def dump_dom(page: Path, timeout: float = 120) -> str:
    """The page's DOM after scripts ran (``--dump-dom``): what a reader's browser shows."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.resolve().as_uri(),
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False).stdout
