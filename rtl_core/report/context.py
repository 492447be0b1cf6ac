"""What every report shows about how its numbers were made: profile, seeds, machine, commit, time."""

from __future__ import annotations

import html
import time

from rtl_core.config import load_config
from rtl_core.provenance import git_commit, machine


def provenance_html(profile: str, seeds: list[int] | None = None) -> str:
    """A one-line HTML banner: profile (config hash), seeds, machine, git commit, date."""
    config = load_config(profile)
    seeds = seeds if seeds is not None else config.evaluate.seeds
    info = machine()
    parts = [
        f"profile <b>{html.escape(profile)}</b> (config {config.hash()})",
        f"seeds {', '.join(map(str, seeds))}",
        f"machine {html.escape(info['platform'])}, {info['cpus']} CPUs" + (f", {html.escape(info['gpus'])}" if "gpus" in info else ""),
        f"commit {git_commit()[:12]}",
        time.strftime("%Y-%m-%d %H:%M %Z"),
    ]
    return '<p style="font-size:0.85em;color:#555">' + " · ".join(parts) + "</p>"
