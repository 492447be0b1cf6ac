"""How a downstream model starts, one grammar for every init (:func:`parse_init`, used by the config check too).

* ``scratch``: a randomly initialised backbone, seeded by the run's seed;
* ``ssl:<pool>:<method>``: the encoder this study pretrained with ``method`` on ``pool``;
* ``sequential:<pool>:<method>``: pretrained on ``natural`` first, then on ``pool`` (the paper's E6 sequence);
* ``torchvision:<arch>:<WEIGHTS>``: torchvision's pretrained weights (e.g. ``torchvision:resnet50:IMAGENET1K_V2``),
  with their own preprocessing (:mod:`rtl_core.models.foreign`);
* ``file:<path>``: a weights file in a known layout (the paper's published encoders, Lightning / lightly
  checkpoints, DDP files, safetensors), loaded strictly.

Each init carries a label for reports and a pretraining domain (``ct``, ``natural``, …) for the claims and the
advisor: ``evaluate.init_details`` in the config, else :meth:`Init.default_label` / :meth:`Init.default_domain`.
"""

from __future__ import annotations

import hashlib
import os
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
    """A parsed init name (the one grammar: :func:`parse_init`)."""

    kind: str  # scratch | ssl | sequential | torchvision | file
    pool: str | None = None
    method: str | None = None
    arch: str | None = None  # torchvision
    weights: str | None = None  # torchvision
    path: str | None = None  # file

    @property
    def name(self) -> str:
        if self.kind == "scratch":
            return "scratch"
        if self.kind == "torchvision":
            return f"torchvision:{self.arch}:{self.weights}"
        if self.kind == "file":
            return f"file:{self.path}"
        return f"{self.kind}:{self.pool}:{self.method}"

    @property
    def file(self) -> Path | None:
        """A ``file:`` init's path with ``$VARIABLES`` and ``~`` expanded (portable configs)."""
        return Path(os.path.expandvars(self.path)).expanduser() if self.path else None

    @property
    def ours(self) -> bool:
        """Pretrained by this project (``ssl`` / ``sequential``): a checkpoint under the study's artifacts."""
        return self.kind in ("ssl", "sequential")

    def stem(self, profile: str) -> Path | None:
        if not self.ours:
            return None
        return encoder_stem(self.pool, self.method, profile, sequential=self.kind == "sequential")

    def pretrain_command(self, profile: str) -> str:
        """The command that creates this init's checkpoint."""
        cmd = f"rtl pretrain --profile {profile} --pool {self.pool} --method {self.method}"
        return cmd + " --sequential" if self.kind == "sequential" else cmd

    def default_domain(self) -> str | None:
        """The pretraining domain when the config does not say: the pool's for ours, natural for torchvision's
        (all its weights are ImageNet-trained), unknown for files and scratch."""
        if self.ours:
            from rtl_core.data.registry import POOL_DOMAINS

            return POOL_DOMAINS.get(self.pool, self.pool)
        return "natural" if self.kind == "torchvision" else None

    def default_label(self) -> str:
        if self.kind == "scratch":
            return "random init"
        if self.kind == "torchvision":
            return f"ImageNet supervised (torchvision {self.arch} {self.weights})"
        if self.kind == "file":
            return f"{self.file.parent.name}/{self.file.name}"
        order = "natural → " if self.kind == "sequential" else ""
        return f"{self.method} on {order}{self.pool} (ours)"


GRAMMAR = ("'scratch', 'ssl:<pool>:<method>', 'sequential:<pool>:<method>', 'torchvision:<arch>:<WEIGHTS>' "
           "(e.g. torchvision:resnet50:IMAGENET1K_V2) or 'file:<path>'")


def parse_init(name: str) -> Init:
    """The one parser of init names: ``scratch`` | ``ssl:<pool>:<method>`` | ``sequential:<pool>:<method>`` |
    ``torchvision:<arch>:<WEIGHTS>`` | ``file:<path>`` → :class:`Init`."""
    if name == "scratch":
        return Init("scratch")
    kind, _, rest = name.partition(":")
    if kind == "file" and rest:
        return Init("file", path=rest)
    parts = rest.split(":")
    if kind in ("ssl", "sequential", "torchvision") and len(parts) == 2 and all(parts):
        if kind == "torchvision":
            return Init("torchvision", arch=parts[0], weights=parts[1])
        return Init(kind, parts[0], parts[1])
    raise ConfigError(f"evaluate.inits: {name!r} is not {GRAMMAR}.")


def init_slug(name: str) -> str:
    """The init as one path component (``ssl:ct:simclr`` → ``ssl_ct_simclr``; a file init keeps its file stem
    and a hash of its path, so two files of one name never share a folder)."""
    init = parse_init(name)
    if init.kind == "file":
        digest = hashlib.sha256(str(init.file.resolve()).encode()).hexdigest()[:8]
        return f"file_{init.file.parent.name}_{init.file.name.split('.')[0]}_{digest}"
    return name.replace(":", "_")


def check_checkpoint(init: Init, profile: str) -> None:
    """Raise :class:`CheckpointError` naming the fix when the init's weights are missing: the ``rtl pretrain``
    command for ours, the file for ``file:``, the hub folder for ``torchvision:`` (nothing is downloaded here)."""
    if init.kind == "file":
        if not init.file.is_file():
            raise CheckpointError(f"Init {init.name!r}: weights file {init.file} does not exist. "
                                  "Fix the path (or the variables in it) or drop the init from evaluate.inits.")
        return
    if init.kind == "torchvision":
        from rtl_core.models.foreign import torchvision_file

        torchvision_file(init.arch, init.weights)  # unknown arch / weights fail here, before any run
        return
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


def load_init(name: str, profile: str, arch: str, seed: int,
              details: dict | None = None) -> tuple[nn.Module, dict]:
    """The encoder an init starts from (pooled-feature torchvision ResNet, ``fc`` = identity) and its info
    (``{"init", "checkpoint", "mean", "std", "layout", "label", "domain", "sidecar"}``). ``details`` are the
    config's ``evaluate.init_details[name]`` (label, domain, mean / std for file inits)."""
    from rtl_core.models.foreign import load_file_encoder, load_torchvision_encoder

    init = parse_init(name)
    details = details or {}
    label = details.get("label") or init.default_label()
    domain = details.get("domain") or init.default_domain()
    base = {"init": name, "label": label, "domain": domain}
    if init.kind == "scratch":
        torch.manual_seed(seed)
        return build_backbone(arch), {**base, "checkpoint": None, "mean": DEFAULT_MEAN, "std": DEFAULT_STD,
                                      "layout": "random init", "sidecar": {}}
    check_checkpoint(init, profile)
    if init.kind in ("file", "torchvision"):
        if init.kind == "file":
            encoder, found = load_file_encoder(init.file, arch)
        else:
            encoder, found = load_torchvision_encoder(init.arch, init.weights)
            if init.arch != arch:
                raise CheckpointError(f"Init {name!r} is a {init.arch} but the study's backbone is {arch}; set "
                                      f"pretrain.backbone: {init.arch} or pick {arch} weights.")
        mean = tuple(details.get("mean") or found.get("mean", DEFAULT_MEAN))
        std = tuple(details.get("std") or found.get("std", DEFAULT_STD))
        return encoder, {**base, "checkpoint": found["checkpoint"], "mean": mean, "std": std,
                         "layout": found["layout"], "sidecar": found.get("sidecar", {})}
    stem = init.stem(profile)
    encoder, sidecar = load_encoder(stem, expect={"arch": arch, "in_channels": 3})
    mean, std = input_normalization(sidecar)
    info = {
        **base,
        "checkpoint": str(checkpoint_paths(stem)[0]),
        "mean": mean,
        "std": std,
        "layout": "rtl_core checkpoint",
        "sidecar": {k: sidecar.get(k) for k in ("method", "pool", "epochs", "profile", "config_hash", "data_fingerprint", "git_commit")},
    }
    return encoder, info
