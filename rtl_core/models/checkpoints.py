"""Encoder checkpoints: a ``state_dict`` in torchvision key names plus a JSON sidecar.

``<stem>.pt`` holds the backbone's weights (no projection head, no ``fc``); ``<stem>.json`` says what they
are: architecture, input channels, SSL method, pool, epochs, profile, config hash, data fingerprint, package
versions and git commit. Both are written atomically; loading uses ``torch.load(..., weights_only=True)``
and checks the sidecar against what the caller expects.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rtl_core.errors import CheckpointError
from rtl_core.io import atomic_write, write_json
from rtl_core.models.backbones import build_backbone, is_known_backbone
from rtl_core.provenance import provenance

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "arch", "in_channels")


def checkpoint_paths(stem: str | Path) -> tuple[Path, Path]:
    stem = Path(stem)
    stem = stem.with_suffix("") if stem.suffix in (".pt", ".json") else stem
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def save_encoder(stem: str | Path, encoder: nn.Module, arch: str, in_channels: int = 3, **info: Any) -> Path:
    """Save ``encoder``'s weights and a sidecar; ``info`` adds method, pool, epochs, profile, config_hash, …"""
    weights_path, sidecar_path = checkpoint_paths(stem)
    state = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items() if not k.startswith("fc.")}
    sidecar = {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "in_channels": in_channels,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **info,
        **{k: v for k, v in provenance().items() if k not in info},
    }
    atomic_write(weights_path, lambda tmp: torch.save(state, tmp))
    write_json(sidecar_path, sidecar)  # the sidecar last: a checkpoint without one is incomplete
    return weights_path


#: How every ``torch.save`` file since PyTorch 1.6 starts (a zip archive); older ones are pickles (protocol 2+).
ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


def torch_file_problem(path: str | Path, deep: bool = False) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` file, in words, or ``None`` when it looks like one.

    Empty; a zip archive whose end is missing (cut off: a full disk, an interrupted copy or write); neither a zip
    archive nor a pickle (random bytes, another kind of file). ``deep`` also checks every member's CRC, which reads
    the whole file and finds damage inside an archive that ``torch.load`` would read without a word."""
    import zipfile

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return f"it is truncated: a zip archive ({size} bytes) whose end is missing"
        if deep:
            try:
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                return f"it is corrupt ({exc})"
            if bad is not None:
                return f"it is corrupt: member {bad} fails its CRC check"
        return None
    if head.startswith(PICKLE_MAGIC):
        return None
    return (
        f"it is not a PyTorch checkpoint: it starts with bytes {head.hex(' ')}, neither a zip archive (torch.save) "
        "nor a pickle, so it is corrupt, truncated at its start, or another kind of file"
    )


def read_sidecar(stem: str | Path) -> dict[str, Any]:
    weights_path, sidecar_path = checkpoint_paths(stem)
    if not sidecar_path.is_file():
        raise CheckpointError(
            f"Checkpoint sidecar {sidecar_path} is missing; the checkpoint is incomplete. Rerun pretraining."
        )
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"Checkpoint sidecar {sidecar_path} is not valid JSON ({exc}). Rerun pretraining."
        ) from exc
    missing = [k for k in REQUIRED_KEYS if k not in sidecar]
    if missing:
        raise CheckpointError(f"Checkpoint sidecar {sidecar_path} lacks {missing}. Rerun pretraining.")
    if not is_known_backbone(sidecar["arch"]):
        raise CheckpointError(
            f"{sidecar_path}: unknown architecture {sidecar['arch']!r} (a torchvision ResNet or timm:<model> that "
            "this timm version has). Install the timm version that wrote it, or rerun pretraining."
        )
    return sidecar


def load_encoder(stem: str | Path, expect: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the backbone (torchvision ResNet or ``timm:<model>``) from a checkpoint; ``expect`` (e.g.
    ``{"arch": "resnet18", "in_channels": 3}``) must match the sidecar, else :class:`CheckpointError` names both
    values."""
    weights_path, sidecar_path = checkpoint_paths(stem)
    sidecar = read_sidecar(stem)
    for key, wanted in (expect or {}).items():
        if sidecar.get(key) != wanted:
            raise CheckpointError(
                f"Checkpoint {weights_path} has {key}={sidecar.get(key)!r} but {wanted!r} was asked for "
                f"(sidecar {sidecar_path}). Use a checkpoint pretrained with {key}={wanted!r} or change the config."
            )
    if not weights_path.is_file():
        raise CheckpointError(
            f"Checkpoint weights {weights_path} are missing (sidecar {sidecar_path} exists). Rerun pretraining."
        )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        why = torch_file_problem(weights_path) or str(exc).splitlines()[0]
        raise CheckpointError(
            f"Checkpoint {weights_path} cannot be read: {why}. Delete it and rerun pretraining."
        ) from exc
    # assign=True keeps the file's tensors as they are: make them float32 and NCHW, as copying into a built model would
    state = {k: v.float().contiguous() if v.is_floating_point() else v for k, v in state.items()}
    with torch.device("meta"):  # no random init to overwrite (0.1 s per ResNet-18, once per downstream run)
        model = build_backbone(sidecar["arch"], in_channels=int(sidecar["in_channels"]))
    try:
        model.load_state_dict(state, strict=True, assign=True)
        if any(t.is_meta for t in model.buffers()):  # buffers outside the state_dict (some timm models)
            model = build_backbone(sidecar["arch"], in_channels=int(sidecar["in_channels"]))
            model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"Checkpoint {weights_path} does not fit a {sidecar['arch']} with {sidecar['in_channels']} input channels: "
            f"{str(exc).splitlines()[0]}. The sidecar {sidecar_path} may belong to other weights."
        ) from exc
    return model, sidecar


#: Input normalisation of an encoder whose sidecar has no ``normalize: {mean, std}`` entry: none. Our
#: pretraining feeds images in ``[0, 1]`` as they are (the stem's BatchNorm adapts), and so must every user.
IDENTITY_MEAN = (0.0, 0.0, 0.0)
IDENTITY_STD = (1.0, 1.0, 1.0)


def input_normalization(sidecar: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) an encoder expects its ``[0, 1]`` inputs to be normalised with (from its sidecar)."""
    norm = sidecar.get("normalize") or {}
    return tuple(norm.get("mean", IDENTITY_MEAN)), tuple(norm.get("std", IDENTITY_STD))
