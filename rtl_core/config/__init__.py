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
from pydantic import Field, ValidationError, model_validator

from rtl_core.config.backbones import check_input_size
from rtl_core.config.base import Strict
from rtl_core.config.questions import ARM_ROLES, EXPECTATIONS, Margin, Question, QuestionArm, QuestionProtocol
from rtl_core.config.sections import (
    AnalysisConfig,
    DataConfig,
    EvaluateConfig,
    InitDetails,
    LauncherConfig,
    PretrainConfig,
    UserDataset,
)
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
    "AnalysisConfig",
    "DataConfig",
    "EvaluateConfig",
    "InitDetails",
    "LauncherConfig",
    "PretrainConfig",
    "StudyConfig",
    "UserDataset",
    "load_config",
]

PROFILES = ("smoke", "default", "paper")
PROFILE_DIR = Path(__file__).parents[1] / "profiles"


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
