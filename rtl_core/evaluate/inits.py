"""How a downstream model starts: ``scratch``, ``ssl:<pool>:<method>`` or ``sequential:<pool>:<method>``.

``ssl`` loads the encoder pretrained with ``method`` on ``pool``; ``sequential`` the one pretrained on ``natural``
first and then on ``pool`` (the paper's natural→CT sequence). ``scratch`` is a randomly initialised backbone,
seeded by the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rtl_core.errors import CheckpointError, ConfigError
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import IDENTITY_MEAN, IDENTITY_STD, checkpoint_paths, encoder_stem, input_normalization, load_encoder

#: Input normalisation when a checkpoint's sidecar has no ``normalize`` entry (see ``input_normalization``).
DEFAULT_MEAN, DEFAULT_STD = IDENTITY_MEAN, IDENTITY_STD


@dataclass(frozen=True)
class Init:
    """A parsed init name."""

    kind: str  # scratch | ssl | sequential
    pool: str | None = None
    method: str | None = None

    @property
    def name(self) -> str:
        return "scratch" if self.kind == "scratch" else f"{self.kind}:{self.pool}:{self.method}"

    def stem(self, profile: str) -> Path | None:
        if self.kind == "scratch":
            return None
        return encoder_stem(self.pool, self.method, profile, sequential=self.kind == "sequential")

    def pretrain_command(self, profile: str) -> str:
        """The command that creates this init's checkpoint."""
        cmd = f"rtl pretrain --profile {profile} --pool {self.pool} --method {self.method}"
        return cmd + " --sequential" if self.kind == "sequential" else cmd


def parse_init(name: str) -> Init:
    """``scratch`` | ``ssl:<pool>:<method>`` | ``sequential:<pool>:<method>`` → :class:`Init`."""
    if name == "scratch":
        return Init("scratch")
    parts = name.split(":")
    if len(parts) != 3 or parts[0] not in ("ssl", "sequential") or not all(parts[1:]):
        raise ConfigError(f"evaluate.inits: {name!r} is not 'scratch', 'ssl:<pool>:<method>' or 'sequential:<pool>:<method>'.")
    return Init(parts[0], parts[1], parts[2])


def init_slug(name: str) -> str:
    """The init as a path component (``ssl:ct:simclr`` → ``ssl_ct_simclr``)."""
    return name.replace(":", "_")


def check_checkpoint(init: Init, profile: str) -> None:
    """Raise :class:`CheckpointError` naming the ``rtl pretrain`` command when the init's checkpoint is missing."""
    stem = init.stem(profile)
    if stem is None:
        return
    weights, sidecar = checkpoint_paths(stem)
    if not (weights.is_file() and sidecar.is_file()):
        raise CheckpointError(
            f"Init {init.name!r} needs the encoder checkpoint {weights} (+ {sidecar.name}), which does not exist. "
            f"Create it with `{init.pretrain_command(profile)}` (or `rtl pretrain --profile {profile}` for every pool of "
            f"the config), or drop {init.name!r} from evaluate.inits."
        )


def load_init(name: str, profile: str, arch: str, seed: int) -> tuple[nn.Module, dict]:
    """The encoder an init starts from (pooled-feature torchvision ResNet, ``fc`` = identity) and its info
    (``{"init": ..., "checkpoint": path | None, "mean": ..., "std": ..., "sidecar": {...}}``)."""
    init = parse_init(name)
    if init.kind == "scratch":
        torch.manual_seed(seed)
        return build_backbone(arch), {"init": name, "checkpoint": None, "mean": DEFAULT_MEAN, "std": DEFAULT_STD, "sidecar": {}}
    check_checkpoint(init, profile)
    stem = init.stem(profile)
    encoder, sidecar = load_encoder(stem, expect={"arch": arch, "in_channels": 3})
    mean, std = input_normalization(sidecar)
    info = {
        "init": name,
        "checkpoint": str(checkpoint_paths(stem)[0]),
        "mean": mean,
        "std": std,
        "sidecar": {k: sidecar.get(k) for k in ("method", "pool", "epochs", "profile", "config_hash", "data_fingerprint", "git_commit")},
    }
    return encoder, info
