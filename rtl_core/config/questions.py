"""Questions a study declares before its runs (``analysis.questions``): two arms, tasks × protocols × metrics, an
expectation and a margin with its rationale. Judged by :mod:`rtl_core.analysis.claims`; hashed for
pre-registration by :mod:`rtl_core.analysis.questions`."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from rtl_core.config.base import Strict
from rtl_core.errors import ConfigError
from rtl_core.names import parse_init

ARM_ROLES = ("ct", "natural", "ct_more", "ct_less", "mixed", "sequential")
#: The protocols a question may name (the same as ``evaluate.protocols``).
QuestionProtocol = Literal["finetune", "linear", "linear_bn_train", "lowlabel_10", "lowlabel_1"]
#: What a question expects of arm A against arm B.
Expectation = Literal["a_better", "b_better", "no_difference", "non_inferior"]
EXPECTATIONS = get_args(Expectation)


class Margin(Strict):
    """The smallest difference that matters, declared before the runs: the equivalence bound of a
    ``no_difference`` question, the non-inferiority margin of a ``non_inferior`` one and the effect a directional
    question is planned to detect (``rtl plan``). ``relative``: % of arm B's mean; ``absolute``: metric units."""

    value: float = Field(gt=0)
    kind: Literal["relative", "absolute"] = "relative"
    rationale: str = Field(min_length=3, description="one line: why this margin (a clinical or practical reason)")


class QuestionArm(Strict):
    """One arm of a question: named inits, a claims role (``analysis.arms``) or every init of a pretraining domain
    (``evaluate.init_details``, else the init's default domain). Shorthand: an init name, ``role:<role>`` or
    ``domain:<domain>``."""

    inits: list[str] | None = Field(None, min_length=1)
    role: str | None = None
    domain: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            for prefix in ("role", "domain"):
                if value.startswith(prefix + ":"):
                    return {prefix: value[len(prefix) + 1 :]}
            return {"inits": [value]}
        if isinstance(value, list):
            return {"inits": value}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> QuestionArm:
        given = [k for k in ("inits", "role", "domain") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"an arm names exactly one of inits, role or domain; got {given or 'none'}")
        if self.role and self.role not in ARM_ROLES:
            raise ValueError(f"unknown role {self.role!r}; roles are {list(ARM_ROLES)}")
        for init in self.inits or []:
            try:
                parse_init(init)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    def key(self) -> str:
        """The arm's name in rows and in the engine's arm map: the role, ``domain:<d>`` or the inits joined."""
        return self.role or (f"domain:{self.domain}" if self.domain else "+".join(self.inits or []))


class Question(Strict):
    """A question declared before the runs (:mod:`rtl_core.analysis.questions`): is arm A better than, worse than,
    equivalent to or not worse than arm B on these tasks × protocols (× metrics)? Its cells are one family: Holm
    corrects over all of them, run or not."""

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")
    text: str = Field(min_length=3)
    arm_a: QuestionArm
    arm_b: QuestionArm
    tasks: list[str] = Field(min_length=1)
    protocols: list[QuestionProtocol] = Field(min_length=1)
    metric: str | list[str] = Field("primary", description="metric name(s); 'primary' = each task's primary metric")
    expectation: Expectation
    margin: Margin | None = Field(None, description="the margin of every metric without its own in `margins`")
    margins: dict[str, Margin] = Field(default_factory=dict, description="metric -> margin")
    alpha: float | None = Field(None, gt=0, lt=0.5, description="default: analysis.alpha")
    note: str = ""

    @property
    def metrics(self) -> list[str]:
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    def margin_for(self, metric: str) -> Margin | None:
        return self.margins.get(metric, self.margin)

    @model_validator(mode="after")
    def _well_formed(self) -> Question:
        unused = sorted(set(self.margins) - set(self.metrics))
        if unused:
            raise ValueError(f"margins for {unused}, which are not among metric {self.metrics}")
        missing = [m for m in self.metrics if self.margin_for(m) is None]
        if missing:
            raise ValueError(
                f"no margin for metric(s) {missing}: declare `margin: {{value: 1.0, kind: relative, rationale: ...}}` "
                "(the smallest difference that matters) before the runs"
            )
        if self.arm_a == self.arm_b:
            raise ValueError("arm_a and arm_b are the same arm")
        return self
