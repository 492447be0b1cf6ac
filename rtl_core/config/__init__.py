"""The typed, validated study config and its profiles (``smoke``, ``default``, ``paper``).

A config is YAML validated into pydantic models that forbid unknown keys, so a typo or a wrong type fails
with a message naming the key. Profiles live in ``rtl_core/profiles/<name>.yaml``; a user's config file
names a profile and overrides any part of it::

    profile: paper
    data:
      tasks:
        my_ct_cls: {format: imagefolder, path: /data/ct_cls, metrics: [accuracy, auc]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_serializer, model_validator

from rtl_core.config.backbones import check_backbone_name, check_input_size
from rtl_core.config.base import Strict
from rtl_core.config.questions import ARM_ROLES, EXPECTATIONS, Margin, Question, QuestionArm, QuestionProtocol
from rtl_core.errors import ConfigError
from rtl_core.names import DEMO_POOLS, DEMO_TASKS, known_methods, parse_init
from rtl_core.provenance import settings_digest

__all__ = [
    "ARM_ROLES",
    "EXPECTATIONS",
    "Margin",
    "Question",
    "QuestionArm",
    "QuestionProtocol",
    "StudyConfig",
    "load_config",
]

PROFILES = ("smoke", "default", "paper")
PROFILE_DIR = Path(__file__).parents[1] / "profiles"


class UserDataset(Strict):
    """A user's own pool or task on disk (indexed lazily, streamed by DataLoader workers)."""

    format: Literal["imagefolder", "dicom", "nifti", "png_slices"]
    path: str
    window: str | tuple[float, float] | None = Field(
        None,
        description="CT window (preset or [level, width]) for HU data; imagefolder / png_slices: applied to 16-bit "
        "and float images in their stored values (default: each image's min–max; 8-bit images are kept as they are)",
    )
    labels_path: str | None = Field(None, description="nifti: folder of label maps with the same file names")
    kind: Literal["classification", "segmentation"] = "classification"
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"])
    group_regex: str | None = Field(None, description="regex whose first group is the patient id in a file path")
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    domain: str | None = Field(
        None, description="imaging domain (ct, natural, xray, mri, …) for the advisor; DICOM/NIfTI/PNG slices: ct"
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="pools: files to leave out, glob patterns of paths relative to `path` (e.g. a damaged file "
        "the pool check names)",
    )

    @model_serializer(mode="wrap")
    def _omit_empty_exclude(self, handler: Any) -> dict[str, Any]:
        """No ``exclude`` key when nothing is excluded: config hashes and pretraining keys stay as they were."""
        data = handler(self)
        if isinstance(data, dict) and not self.exclude:
            data.pop("exclude", None)
        return data


class DataConfig(Strict):
    data_dir: str | None = Field(None, description="data root; default $RTL_DATA_DIR, else ../shared/data")
    image_size: int = Field(64, ge=8, le=1024)
    pool_size: int | None = Field(None, ge=1, description="images per pool; None = size-matched to the smaller pool")
    less_fraction: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="the ct_less pool (data-scale arm, claim C8): this share "
        "of the ct pool, pretrained for the same epochs",
    )
    split_seed: int = 0
    ct_window: str | tuple[float, float] | None = Field(
        None, description="override the per-source window of HU pool data"
    )
    num_workers: int = Field(0, ge=0)
    pools: dict[str, UserDataset] = Field(default_factory=dict)
    tasks: dict[str, UserDataset] = Field(default_factory=dict)


class PretrainConfig(Strict):
    """Self-supervised pretraining (``rtl pretrain``): method, encoder, optimisation, augmentation, devices.

    ``batch_size`` is the global batch (split over devices); ``lr`` is scaled by ``lr_scaling``:
    ``sqrt`` gives ``lr * sqrt(batch_size)`` (SimCLR's rule for LARS), ``linear`` ``lr * batch_size / 256``.
    """

    pools: list[str] = Field(default_factory=lambda: ["ct", "natural"])
    methods: list[str] = Field(default_factory=lambda: ["simclr"])
    backbone: str = Field(
        "resnet18",
        description="encoder: resnet18, resnet34, resnet50 (torchvision) or timm:<model> (any timm model, e.g. "
        "timm:vit_small_patch16_224, timm:convnext_tiny; rtl_core.models.backbones); also the evaluation's arch",
    )
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=2)
    optimizer: Literal["lars", "sgd", "adamw"] = "lars"
    lr: float = Field(0.3, gt=0, description="base learning rate before batch-size scaling")
    lr_scaling: Literal["sqrt", "linear", "none"] = "sqrt"
    weight_decay: float = Field(1e-6, ge=0)
    warmup_epochs: int = Field(0, ge=0)
    temperature: float = Field(0.5, gt=0)
    projection_dim: int = Field(256, ge=2)
    crop_size: int = Field(64, ge=8)
    gaussian_blur: bool = False
    gather_distributed: bool = False
    grey_jitter_strength: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="brightness/contrast jitter of grey (CT) images; None: the colour images' 0.8, "
        "one policy for both pools as the authors (rtl_core.pretrain.augment)",
    )
    jitter_brightness: float = Field(
        0.8,
        ge=0,
        lt=1,
        description="colour jitter, one policy for both pools: "
        "brightness factor in [1 - b, 1 + b] (for CT a window-level jitter)",
    )
    jitter_contrast: float = Field(0.8, ge=0, lt=1, description="contrast factor range (for CT a window-width jitter)")
    jitter_saturation: float = Field(0.8, ge=0, lt=1, description="saturation factor range (colour images only)")
    jitter_hue: float = Field(0.2, ge=0, le=0.5, description="hue shift in turns (colour images only)")
    devices: int | Literal["auto"] = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = "auto"
    channels_last: bool = True
    single_pixel_matmul: bool = Field(
        True,
        description=(
            "convolutions with a 1x1 output computed as the matrix product they are (rtl_core.models.single_pixel)"
        ),
    )
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="auto: GPUs when present, else CPU; cpu with devices > 1 runs CPU processes (gloo DDP)"
    )
    projection_head: Literal["lightly", "jonske"] = Field(
        "lightly",
        description="SimCLR head: lightly's Linear-BN-ReLU-Linear-BN, or the authors' Linear-ReLU-Linear-"
        "Sigmoid-Linear without biases or BN (Jonske et al., pkgs/SimCLR/simclr/simclr.py)",
    )
    schedule: Literal["step", "epoch"] = Field(
        "step",
        description="cosine learning-rate decay per optimizer step (after warmup_epochs), or stepped once per "
        "epoch as the authors' CosineAnnealingLR(T_max=epochs)",
    )
    loss_group_size: int | None = Field(
        None,
        ge=2,
        description="NT-Xent over groups of this many pairs (the authors: 512 per GPU, whatever the number "
        "of GPUs); None: the per-device batch",
    )
    min_scale: float = Field(0.08, gt=0, le=1, description="smallest crop area of RandomResizedCrop")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD/LARS momentum")
    checkpoint_every_n_epochs: int = Field(1, ge=1, description="how often the resumable last.ckpt is written")
    replicates: int | dict[str, int] = Field(
        1,
        description="pretraining replicates K: independent pretrainings of an ssl:/sequential: arm, replicate r "
        "seeded by replicate_seed(seed, r); one K for every arm, or K per init name (e.g. {'ssl:ct:simclr': 3}; "
        "unnamed arms 1). The claims engine treats each (init, replicate) as one encoder, the unit of replication",
    )

    @model_validator(mode="after")
    def _replicates_valid(self) -> PretrainConfig:
        counts = self.replicates.values() if isinstance(self.replicates, dict) else [self.replicates]
        if any(k < 1 for k in counts):
            raise ValueError(f"pretrain.replicates: {self.replicates} asks for fewer than 1 pretraining per arm")
        for name in self.replicates if isinstance(self.replicates, dict) else ():
            try:
                ours = parse_init(name).ours
            except ConfigError as exc:
                raise ValueError(f"pretrain.replicates: {exc}") from None
            if not ours:
                raise ValueError(
                    f"pretrain.replicates: {name!r} is not pretrained by the study (only ssl:<pool>:<method> and "
                    "sequential:<pool>:<method> arms have replicates; a fixed checkpoint is one encoder)"
                )
        return self

    def replicates_of(self, init: str) -> int:
        """K of an init: 1 for an init not pretrained by the study, else ``replicates`` (its entry, when a mapping)."""
        if not parse_init(init).ours:
            return 1
        if isinstance(self.replicates, dict):
            return self.replicates.get(init, 1)
        return self.replicates

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        try:
            return check_backbone_name(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_serializer(mode="wrap")
    def _omit_single_replicate(self, handler: Any) -> dict[str, Any]:
        """No ``replicates`` key at K = 1: config hashes, run settings and pretraining keys stay as they were."""
        data = handler(self)
        single = self.replicates == 1 or (isinstance(self.replicates, dict) and set(self.replicates.values()) <= {1})
        if isinstance(data, dict) and single:
            data.pop("replicates", None)
        return data


class InitDetails(Strict):
    """What reports and the claims need to know of an init beyond its name."""

    label: str | None = Field(None, description="name in reports, e.g. 'ImageNet (torchvision)'")
    domain: str | None = Field(None, description="pretraining domain: ct, natural, mixed, xray, … (claims, advisor)")
    mean: tuple[float, ...] | None = Field(
        None, min_length=1, max_length=3, description="input normalisation of a file: init (1 or 3 values)"
    )
    std: tuple[float, ...] | None = Field(None, min_length=1, max_length=3)
    channels: Literal[1, 3] | None = Field(None, description="input channels of a file: init (see models.contracts)")
    value_range: tuple[float, float] | None = Field(
        None, description="pixel values the init takes before mean/std, e.g. [-1024, 1024] (TorchXRayVision)"
    )
    window: tuple[float, float] | None = Field(None, description="CT window [level, width] the init expects")
    arch: str | None = Field(
        None,
        description="architecture of a file: init whose layout does not name one (a ViT of no DINOv2 size), as "
        "pretrain.backbone spells it, e.g. timm:vit_small_patch16_224 (rtl_core.models.inits.own_arch)",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str | None) -> str | None:
        try:
            return None if value is None else check_backbone_name(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class EvaluateConfig(Strict):
    """Downstream evaluation (see :mod:`rtl_core.evaluate`): the grid init × task × protocol × seed and how each
    run trains. Every run trains a fixed number of epochs; ``selection`` says which epoch's model is tested."""

    tasks: list[str] = Field(
        default_factory=lambda: ["ct_cls", "ct_liver_seg", "xray_cls", "mri_cls", "natural_cls", "imagenette_cls"]
    )
    inits: list[str] = Field(default_factory=lambda: ["scratch", "ssl:ct:simclr", "ssl:natural:simclr"])
    init_details: dict[str, InitDetails] = Field(
        default_factory=dict, description="per init: label, domain, input mean/std (see rtl_core.models.inits)"
    )
    protocols: list[Literal["finetune", "linear", "linear_bn_train", "lowlabel_10", "lowlabel_1"]] = Field(
        default_factory=lambda: ["finetune", "linear", "lowlabel_1"]
    )
    seeds: list[int] = Field(default_factory=lambda: [42, 1, 2, 3])
    replicate_protocols: list[Literal["finetune", "linear", "linear_bn_train", "lowlabel_10", "lowlabel_1"]] | None = (
        Field(
            None,
            description="the protocols the extra encoders of a replicated arm (replicates 1..K-1) run; None: all of "
            "protocols. Frozen-feature protocols (linear) buy K at little cost (docs/claims.md)",
        )
    )
    replicate_seeds: list[int] | None = Field(
        None, description="the downstream seeds of replicates 1..K-1 (D of the extra encoders); None: all of seeds"
    )
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate of fine-tunes (encoder and head)")
    weight_decay: float = Field(1e-4, ge=0)
    image_size: int | None = Field(None, ge=8, description="downstream image size; None = data.image_size")
    selection: Literal["last", "best_val"] = Field(
        "last", description="test the last epoch's model, or the epoch with the best validation primary metric"
    )
    max_train_images: int | None = Field(
        None,
        ge=1,
        description=(
            "cap of the training split for the full-data protocols (class-stratified, fixed by data.split_seed)"
        ),
    )
    augment_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="training augmentation (rtl_core.evaluate.augment): per image, the probability of "
        "a random resized crop and, independently, of a horizontal flip; image and mask together; 0 = none. The "
        "linear protocol on cached features (linear_on_features) sees each image once and is not augmented",
    )
    augment_min_scale: float = Field(0.35, gt=0, le=1, description="smallest crop, as a share of the image area")
    warmup_epochs: float = Field(0.0, ge=0, description="linear learning-rate warm-up of every downstream fit")
    lr_decay_per_epoch: float = Field(
        1.0, gt=0, le=1, description="learning rate × this after each epoch (the authors' fine-tuning: 0.97)"
    )
    precise_bn: bool = Field(
        False,
        description="before validating and testing a run whose encoder trains, re-estimate "
        "every BatchNorm's statistics on its (un-augmented) training images (Wu & Johnson 2021)",
    )
    precise_bn_images: int = Field(2048, ge=2, description="at most this many training images for precise_bn")
    head_bias: bool = Field(True, description="the classification head's bias (the authors' head has none)")
    linear_probe_norm: bool = Field(
        True,
        description="linear protocols: a BatchNorm without affine parameters before "
        "the head (MAE's probe); the authors' head reads the features as they are",
    )
    learning_curves: bool = Field(
        False,
        description="validate after every epoch (the run record's curves); the "
        "tested model is still the one `selection` picks",
    )
    min_steps: int = Field(
        0, ge=0, description="train at least this many optimizer steps (more epochs on tiny low-label subsets)"
    )
    linear_on_features: bool = Field(
        True, description="protocol linear: fit the head on cached features of the frozen encoder"
    )
    linear_epochs: int = Field(
        100,
        ge=1,
        description="epochs of the linear head of every frozen-encoder classification protocol (cached or not)",
    )
    linear_lr: float = Field(1e-2, gt=0, description="AdamW learning rate of that linear head")
    decoder_channels: list[int] = Field(
        default_factory=lambda: [256, 128, 64, 32, 16],
        min_length=5,
        max_length=5,
        description="U-Net decoder widths (segmentation-models-pytorch's default)",
    )
    precision: Literal["auto", "32", "bf16"] = Field(
        "auto",
        description="auto: bf16 autocast on GPUs and CPUs with bf16 units, else float32 (rtl_core.evaluate.compute)",
    )
    channels_last: bool = Field(True, description="channels_last layout wherever bf16 or a GPU is used")
    fused_optimizer: bool = Field(True, description="PyTorch's fused AdamW kernel (same update, one kernel)")
    single_pixel_matmul: bool = Field(
        True,
        description=(
            "convolutions with a 1x1 output computed as the matrix product they are (rtl_core.models.single_pixel)"
        ),
    )

    @model_validator(mode="after")
    def _replicate_grid_within_grid(self) -> EvaluateConfig:
        for name, subset, grid in (
            ("replicate_protocols", self.replicate_protocols, self.protocols),
            ("replicate_seeds", self.replicate_seeds, self.seeds),
        ):
            outside = [x for x in subset or () if x not in grid]
            if outside:
                which = name.removeprefix("replicate_")
                raise ValueError(
                    f"evaluate.{name}: {outside} are not in evaluate.{which} {grid}; the extra encoders run a "
                    f"subset of the grid (add them to evaluate.{which}, or drop them here)"
                )
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_replicate_grid(self, handler: Any) -> dict[str, Any]:
        """No replicate-grid keys while unset: config hashes stay as they were."""
        data = handler(self)
        if isinstance(data, dict):
            for key in ("replicate_protocols", "replicate_seeds"):
                if getattr(self, key) is None:
                    data.pop(key, None)
        return data


class LauncherConfig(Strict):
    """Where the evaluation grid runs (:mod:`rtl_core.evaluate.launch`): ``inline`` (this process), ``local`` (N
    worker processes on this machine; one GPU each where there are GPUs) or ``submitit`` (a SLURM job array,
    one run per array task). Every worker leases a run before it starts it (:mod:`rtl_core.leases`); each
    pretraining is leased with the same ``stale_seconds`` and ``heartbeat_seconds``."""

    kind: Literal["inline", "local", "submitit"] = "inline"
    workers: int = Field(2, ge=1, le=256, description="local: worker processes")
    stale_seconds: float = Field(600, gt=0, description="a lease whose heartbeat is older than this is taken over")
    heartbeat_seconds: float = Field(30, gt=0)
    cluster: Literal["slurm", "local", "debug"] | None = Field(
        None, description="submitit: None picks SLURM when present"
    )
    folder: str | None = Field(None, description="submitit: logs and pickles (default <results>/.submitit)")
    partition: str | None = None
    time_limit_min: int = Field(60, ge=1, description="per array task")
    gpus_per_run: int = Field(0, ge=0)
    cpus_per_run: int = Field(4, ge=1)
    mem_gb: int | None = Field(None, ge=1)
    array_parallelism: int = Field(64, ge=1, description="array tasks running at once")

    @model_validator(mode="after")
    def _heartbeat_before_stale(self) -> LauncherConfig:
        if self.heartbeat_seconds * 3 > self.stale_seconds:
            raise ValueError(
                f"launcher: heartbeat_seconds ({self.heartbeat_seconds:g}) must be at most a third of "
                f"stale_seconds ({self.stale_seconds:g}), or live runs would be taken over"
            )
        return self


class AnalysisConfig(Strict):
    """Feature-space analysis and the claims engine (:mod:`rtl_core.analysis.claims`).

    ``alpha`` and ``equivalence_margin`` are declared before the runs: the margin (relative %, of arm B's mean)
    within which a "no difference" claim counts as ``equivalent`` by TOST. The default 1 % is half the smallest
    effect the paper reports as a finding (E4 linear evaluation on RadNet-CTBR, +2.14 %)."""

    cka_images: int = Field(1000, ge=4)
    embedding_images: int = Field(1000, ge=10)
    probe_layers: list[str] = Field(default_factory=lambda: ["layer1", "layer2", "layer3", "layer4"])
    alpha: float = Field(0.05, gt=0, lt=0.5, description="significance level of every claim (Holm within a claim)")
    equivalence_margin: float = Field(1.0, gt=0, le=50, description="TOST margin, relative % of arm B's mean")
    arms: dict[str, str] = Field(
        default_factory=dict,
        description="claim roles -> inits (default: by name, ssl:ct:* is ct, ssl:natural:* natural …)",
    )
    sanity_random_seeds: int = Field(3, ge=1, le=10, description="random inits the kNN sanity check compares against")
    questions: list[Question] = Field(
        default_factory=list, description="the study's own questions, declared before the runs (rtl claims, rtl plan)"
    )
    builtin_questions: Literal["paper", "none"] = Field(
        "paper", description="paper: the paper's claims (C1-C10) are judged beside the study's own questions"
    )

    @model_serializer(mode="wrap")
    def _omit_default_questions(self, handler: Any) -> dict[str, Any]:
        """No question keys while at their defaults: config hashes stay as they were."""
        data = handler(self)
        if isinstance(data, dict):
            if not self.questions:
                data.pop("questions", None)
            if self.builtin_questions == "paper":
                data.pop("builtin_questions", None)
        return data

    @model_validator(mode="after")
    def _unique_questions(self) -> AnalysisConfig:
        ids = [q.id for q in self.questions]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"analysis.questions: id(s) {twice} are declared more than once")
        return self

    @model_validator(mode="after")
    def _known_roles(self) -> AnalysisConfig:
        unknown = sorted(set(self.arms) - set(ARM_ROLES))
        if unknown:
            raise ValueError(f"analysis.arms: unknown role(s) {unknown}; roles are {list(ARM_ROLES)}")
        return self


STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class StudyConfig(Strict):
    """A study: a profile's settings plus the config file's, under a name that namespaces every artifact.

    ``study`` defaults to the profile's name, so the stock profiles keep their folders; a config file without
    ``study:`` is named after the file (:func:`study_from_file`: ``my_smoke.yaml`` → ``my_smoke``), so a user's
    study never writes into a stock study's folders or reports. Outputs go to ``$RTL_OUTPUT_DIR`` (default
    ``<repo>/artifacts``)."""

    profile: Literal["smoke", "default", "paper"] = "default"
    study: str | None = Field(
        None, pattern=STUDY_NAME, description="names the study's artifact folders; default: the profile"
    )
    seed: int = 42
    data: DataConfig = Field(default_factory=DataConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, values: Any) -> Any:
        if isinstance(values, dict) and "output_dir" in values:
            raise ValueError(
                "output_dir was removed: set the environment variable RTL_OUTPUT_DIR to the folder "
                "that should hold the study's artifacts (default <repo>/artifacts), and give the study "
                "a name with `study:`"
            )
        return values

    @model_validator(mode="after")
    def _default_study(self) -> StudyConfig:
        if self.study is None:
            object.__setattr__(self, "study", self.profile)
        return self

    @model_validator(mode="after")
    def _names_exist(self) -> StudyConfig:
        pools = set(DEMO_POOLS) | set(self.data.pools)
        for pool in self.pretrain.pools:
            if pool not in pools:
                raise ValueError(f"pretrain.pools: unknown pool {pool!r}; known: {sorted(pools)}")
        methods = known_methods()
        for method in self.pretrain.methods:
            if method not in methods:
                raise ValueError(f"pretrain.methods: unknown SSL method {method!r}; known methods: {list(methods)}")
        tasks = set(DEMO_TASKS) | set(self.data.tasks)
        for task in self.evaluate.tasks:
            if task not in tasks:
                raise ValueError(f"evaluate.tasks: unknown task {task!r}; known: {sorted(tasks)}")
        for init in self.evaluate.inits:
            try:
                parsed = parse_init(init)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if parsed.ours and parsed.pool not in pools:
                raise ValueError(f"evaluate.inits: {init!r} names pool {parsed.pool!r}; known pools: {sorted(pools)}")
            if parsed.ours and parsed.method not in methods:
                raise ValueError(
                    f"evaluate.inits: {init!r} names SSL method {parsed.method!r}; known methods: {list(methods)}"
                )
        unknown = sorted(set(self.evaluate.init_details) - set(self.evaluate.inits))
        if unknown:
            raise ValueError(f"evaluate.init_details: {unknown} are not in evaluate.inits {self.evaluate.inits}")
        for role, init in self.analysis.arms.items():
            if init not in self.evaluate.inits:
                raise ValueError(f"analysis.arms.{role}: {init!r} is not one of evaluate.inits {self.evaluate.inits}")
        overlap = set(DEMO_POOLS) & set(self.data.pools) | set(DEMO_TASKS) & set(self.data.tasks)
        if overlap:
            raise ValueError(
                f"data.pools/data.tasks: names {sorted(overlap)} are taken by the demo suite; choose others"
            )
        return self

    @model_validator(mode="after")
    def _backbone_fits_image_sizes(self) -> StudyConfig:
        """A ViT backbone's patch size divides the pretraining crops and the evaluation images."""
        sizes = {"pretrain.crop_size": self.pretrain.crop_size}
        if self.evaluate.image_size is None:
            sizes["data.image_size (evaluate.image_size unset)"] = self.data.image_size
        else:
            sizes["evaluate.image_size"] = self.evaluate.image_size
        for where, size in sizes.items():
            try:
                check_input_size(self.pretrain.backbone, size, where)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        # An init that names its own architecture (torchvision:<arch>, init_details.<init>.arch) is checked here;
        # a file: init's layout, once its file is read (rtl_core.evaluate.runner.run_one).
        where, size = list(sizes.items())[-1]
        for init in self.evaluate.inits:
            details = self.evaluate.init_details.get(init)
            if details is not None and details.arch is not None:
                try:
                    check_input_size(details.arch, size, where)
                except ConfigError as exc:
                    raise ValueError(f"evaluate.init_details.{init}.arch: {exc}") from None
        return self

    @model_validator(mode="after")
    def _question_tasks_exist(self) -> StudyConfig:
        tasks = set(DEMO_TASKS) | set(self.data.tasks)
        for i, question in enumerate(self.analysis.questions):
            unknown = [t for t in question.tasks if t not in tasks]
            if unknown:
                raise ValueError(
                    f"analysis.questions.{i} ({question.id}): unknown task(s) {unknown}; known: {sorted(tasks)} "
                    "(a task of your own goes under data.tasks)"
                )
        return self

    def hash(self) -> str:
        """Stable short hash of the whole config (recorded with every run and checkpoint)."""
        return settings_digest(self.model_dump(mode="json"))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"Config file {path} does not exist.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at the top level, got {type(content).__name__}.")
    return content


def _format_errors(error: ValidationError, origin: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against the profiles in rtl_core/profiles/)"
        lines.append(f"  {key}: {message}")
    return f"Invalid config ({origin}):\n" + "\n".join(lines)


def study_from_file(path: Path) -> str:
    """The study name of a config file that gives none: its file stem, with characters a study name cannot hold
    as ``_``; a stem that is a stock profile's name gets ``_config`` (``smoke.yaml`` → ``smoke_config``) unless
    the file is that profile's own YAML."""
    import re

    stem = re.sub(r"^[^A-Za-z0-9]+", "", re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem))[:57] or "study"
    own_profile_file = path.resolve().parent == PROFILE_DIR.resolve()
    return f"{stem}_config" if stem in PROFILES and not own_profile_file else stem


def load_config(
    profile: str | None = None, path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> StudyConfig:
    """Build a config: the profile's YAML, then the file at ``path``, then ``overrides`` (nested dicts). A file
    without ``study:`` names the study after itself (:func:`study_from_file`)."""
    file_values = _read_yaml(Path(path)) if path else {}
    name = profile or file_values.get("profile") or "default"
    if name not in PROFILES:
        raise ConfigError(f"Unknown profile {name!r}; choose one of {', '.join(PROFILES)}.")
    values = _merge(_read_yaml(PROFILE_DIR / f"{name}.yaml"), file_values)
    values = _merge(values, overrides or {})
    values["profile"] = name
    if path and "study" not in file_values and "study" not in (overrides or {}):
        values["study"] = study_from_file(Path(path))
    try:
        config = StudyConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path) if path else f"profile {name}")) from None
    if path:
        _SOURCES[config.study] = Path(path).resolve()
    else:
        _SOURCES.pop(config.study, None)
    return config


_SOURCES: dict[str, Path] = {}
"""The config file each study was last loaded from in this process (:func:`study_option`)."""


def study_option(study: str) -> str:
    """The ``rtl`` option that selects study ``study`` again, for hints: ``--config <file>`` for a study loaded
    from a config file (a custom study), ``--profile <name>`` for a stock profile."""
    import shlex

    if study in _SOURCES:
        return f"--config {shlex.quote(str(_SOURCES[study]))}"
    if study in PROFILES:
        return f"--profile {study}"
    return f"--config <the config file of study {study}>"
