"""Which device a computation runs on, decided in one place for every stage."""

from __future__ import annotations

import torch


def default_device(requested: str | torch.device | None = None) -> torch.device:
    """``requested`` when given, else the current GPU when there is one (a local worker has set its own GPU as
    current), else the CPU."""
    if requested is not None:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_accelerator(requested: str) -> str:
    """A Lightning accelerator name from ``auto`` | ``cpu`` | ``gpu``: ``auto`` is ``gpu`` when a CUDA GPU is
    visible, else ``cpu``."""
    return requested if requested != "auto" else ("gpu" if torch.cuda.is_available() else "cpu")
