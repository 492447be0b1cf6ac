"""What every report shows about how its numbers were made: profile, seeds, machine, commit, time."""

from __future__ import annotations

import html
import time

from rtl_core.config import StudyConfig, load_config
from rtl_core.provenance import git_commit, machine


def study_config(profile: str, config: str = "") -> StudyConfig:
    """The study a notebook reports on: its ``profile`` and, when given, the user's config file (its path)."""
    return load_config(profile, config or None)


def provenance_html(profile: str, seeds: list[int] | None = None, config: str = "") -> str:
    """A one-line HTML banner: study and profile (config hash), seeds, machine, git commit, date."""
    study = study_config(profile, config)
    seeds = seeds if seeds is not None else study.evaluate.seeds
    info = machine()
    name = f"study <b>{html.escape(study.study)}</b>, " if study.study != profile else ""
    parts = [
        f"{name}profile <b>{html.escape(profile)}</b> (config {study.hash()})",
        f"seeds {', '.join(map(str, seeds))}",
        f"machine {html.escape(info['platform'])}, {info['cpus']} CPUs"
        + (f", {html.escape(info['gpus'])}" if "gpus" in info else ""),
        f"commit {git_commit()[:12]}",
        time.strftime("%Y-%m-%d %H:%M %Z"),
    ]
    return '<p style="font-size:0.85em;color:#555">' + " · ".join(parts) + "</p>"
