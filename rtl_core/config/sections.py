"""The sections of a study config: ``data`` (with a user's own datasets), ``pretrain``, ``evaluate`` (with each
init's details), ``launcher`` and ``analysis``; :class:`rtl_core.config.StudyConfig` puts them together and checks
names across them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from rtl_core.config.backbones import check_backbone_name
from rtl_core.config.base import Strict
from rtl_core.config.questions import ARM_ROLES, Question
from rtl_core.errors import ConfigError
from rtl_core.names import parse_init


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
