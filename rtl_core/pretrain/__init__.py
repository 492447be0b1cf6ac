"""rtl_core.pretrain: self-supervised pretraining of ResNet encoders (SimCLR and friends, via lightly).

``pretrain(config, pool, method, sequential=False) -> Path`` trains (or reuses) an encoder; methods are
registered by name in :data:`rtl_core.pretrain.methods.METHODS`; :func:`knn_accuracy` checks features.
The names below are imported on first use (PEP 562), so ``rtl pretrain --help`` loads neither torch nor lightly.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "knn_accuracy": "rtl_core.pretrain.knn",
    "METHODS": "rtl_core.pretrain.methods",
    "build_method": "rtl_core.pretrain.methods",
    "register_method": "rtl_core.pretrain.methods",
    "pretrain": "rtl_core.pretrain.train",
}

__all__ = ["METHODS", "build_method", "knn_accuracy", "pretrain", "register_method"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
