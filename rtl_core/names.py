"""Every name a study config uses, in one base module: the demo suite's pools and tasks and the init grammar.

The config checks names against this module (it sits below every stage, so no stage's code is needed to
validate a config); :mod:`rtl_core.data.registry` registers one builder per name here (a test holds the two
equal). Init names, one grammar (:func:`parse_init`):

* ``scratch``: a randomly initialised backbone, seeded by the run's seed;
* ``ssl:<pool>:<method>``: the encoder this study pretrained with ``method`` on ``pool``;
* ``sequential:<pool>:<method>``: pretrained on ``natural`` first, then on ``pool`` (the paper's E6 sequence);
* ``torchvision:<arch>:<WEIGHTS>``: torchvision's pretrained weights (e.g. ``torchvision:resnet50:IMAGENET1K_V2``),
  with their own preprocessing (:mod:`rtl_core.models.foreign`);
* ``file:<path>``: a weights file in a known layout (the paper's published encoders, Lightning / lightly
  checkpoints, DDP files, safetensors), loaded strictly.

Each init carries a label for reports and a pretraining domain (``ct``, ``natural``, …) for the claims and the
advisor: ``evaluate.init_details`` in the config, else :meth:`Init.default_label` / :meth:`Init.default_domain`.
Loading an init's weights is :func:`rtl_core.models.inits.load_init`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from rtl_core.errors import ConfigError
from rtl_core.paths import encoder_stem

#: The demo suite's pretraining pools (:func:`rtl_core.data.demo_pools.load_pool`).
DEMO_POOLS = ("ct", "natural", "mixed", "ct_less")
#: The pretraining domain of each demo pool's images (``ct_less``, the data-scale arm, is CT).
POOL_DOMAINS = {"ct": "ct", "natural": "natural", "mixed": "mixed", "ct_less": "ct"}
#: The demo suite's downstream tasks (:data:`rtl_core.data.registry.TASKS` holds their builders).
DEMO_TASKS = (
    "ct_cls",
    "ct_liver_seg",
    "xray_cls",
    "mri_cls",
    "natural_cls",
    "imagenette_cls",
    "derm_cls",
    "fundus_cls",
    "pneumoniamnist_cls",
    "breastmnist_cls",
    "ct_contrast_cls",
)
#: The SSL methods of :data:`rtl_core.pretrain.methods.METHODS` (a test holds the two equal); names registered
#: later with ``register_method`` are added by :func:`add_method`.
SSL_METHODS = ("simclr", "moco", "byol", "vicreg", "dino")
_EXTRA_METHODS: list[str] = []


def add_method(name: str) -> None:
    """Make ``name`` a known SSL method (called by ``rtl_core.pretrain.methods.register_method``)."""
    if name not in SSL_METHODS and name not in _EXTRA_METHODS:
        _EXTRA_METHODS.append(name)


def known_methods() -> tuple[str, ...]:
    """SSL method names a config may use: :data:`SSL_METHODS` and any registered since."""
    return SSL_METHODS + tuple(_EXTRA_METHODS)


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
    def slug(self) -> str:
        """The init as one path component (``ssl:ct:simclr`` → ``ssl_ct_simclr``; a file init keeps its file stem
        and a hash of its path, so two files of one name never share a folder)."""
        if self.kind == "file":
            digest = hashlib.sha256(str(self.file.resolve()).encode()).hexdigest()[:8]
            return f"file_{self.file.parent.name}_{self.file.name.split('.')[0]}_{digest}"
        return self.name.replace(":", "_")

    @property
    def file(self) -> Path | None:
        """A ``file:`` init's path with ``$VARIABLES`` and ``~`` expanded (portable configs)."""
        return Path(os.path.expandvars(self.path)).expanduser() if self.path else None

    @property
    def ours(self) -> bool:
        """Pretrained by this project (``ssl`` / ``sequential``): a checkpoint under the study's artifacts."""
        return self.kind in ("ssl", "sequential")

    def stem(self, study: str, replicate: int = 0) -> Path | None:
        """Where this study's checkpoint of an init of ours lives (without suffix), replicate ``replicate`` of it;
        ``None`` for the others."""
        if not self.ours:
            return None
        return encoder_stem(self.pool, self.method, study, sequential=self.kind == "sequential", replicate=replicate)

    def pretrain_command(self, profile: str, option: str | None = None, replicate: int = 0) -> str:
        """The command that creates this init's checkpoint (replicate ``replicate``); ``option`` selects the study
        (``--config <file>`` for a custom study, :func:`rtl_core.config.study_option`), else ``--profile``."""
        cmd = f"rtl pretrain {option or f'--profile {profile}'} --pool {self.pool} --method {self.method}"
        cmd += " --sequential" if self.kind == "sequential" else ""
        return cmd + f" --replicate {replicate}" if replicate else cmd

    def default_domain(self) -> str | None:
        """The pretraining domain when the config does not say: the pool's for ours, natural for torchvision's
        (all its weights are ImageNet-trained), unknown for files and scratch."""
        if self.ours:
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


GRAMMAR = (
    "'scratch', 'ssl:<pool>:<method>', 'sequential:<pool>:<method>', 'torchvision:<arch>:<WEIGHTS>' "
    "(e.g. torchvision:resnet50:IMAGENET1K_V2) or 'file:<path>'"
)


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


def init_slug(name: str, replicate: int = 0) -> str:
    """:attr:`Init.slug` of an init name: the one way an init becomes a file or folder name; replicate ``r`` ≥ 1 of
    a replicated arm (``pretrain.replicates``) is ``<slug>-r<r>``, replicate 0 the plain slug."""
    slug = parse_init(name).slug
    return f"{slug}-r{replicate}" if replicate else slug
