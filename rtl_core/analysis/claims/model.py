"""What the engine judges: a claim (a declared question resolved into cells) and its cells.

A :class:`rtl_core.config.Question` (a study's own, or one of the paper's built-in claims in
:mod:`.catalogue`) becomes a :class:`Claim` by :func:`from_question`: its arms become names the engine resolves to
inits (a role such as ``ct``, ``domain:<d>`` or the inits joined by ``+``), its tasks × protocols × metrics become
:class:`Cell` s, and its margins are kept per metric. The cells of one claim are one Holm family, fixed by the
declaration: a cell that is not run still counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rtl_core.config import Margin, Question, QuestionArm

Expected = Literal["a_better", "b_better", "no_difference", "non_inferior"]
VERDICTS = ("supports", "contradicts", "equivalent", "inconclusive", "withheld", "not run")
#: Power of every "detectable" / "needed" figure and of `rtl plan`.
POWER = 0.8
#: The flag a verdict carries when its question, margin or family differs from the one registered with the runs.
CHANGED = "changed after the runs"


@dataclass(frozen=True)
class PaperCell:
    """Rows of ``paper_runs.csv``: one experiment, task, label fraction and metric (``dice_mean`` = the mean of
    BraTS' three class Dice scores per run)."""

    experiment: str
    task: str
    data_fraction: float
    metric: str
    note: str = ""

    @property
    def protocol(self) -> str:
        """How a row names the paper's protocol: the experiment, and the label fraction below 100 %."""
        return self.experiment + (f" {self.data_fraction:g}" if self.data_fraction < 1 else "")


@dataclass(frozen=True)
class Cell:
    """One comparison of a claim: our task × protocol (× metric; ``None`` = the task's primary metric), and the
    paper's matching rows (``None`` where the paper ran nothing comparable)."""

    task: str
    protocol: str
    paper: PaperCell | None = None
    metric: str | None = None


@dataclass(frozen=True)
class Claim:
    """A question as the engine judges it. ``arm_a`` / ``arm_b`` name arms that the caller's arm map resolves to
    inits (a role, ``domain:<d>``, or inits joined by ``+``); ``margins`` maps a metric (``primary`` for the task's
    primary metric) to its declared margin, where empty the engine's ``margin_pct`` (relative) applies."""

    id: str
    text: str
    arm_a: str
    arm_b: str
    expected: Expected
    cells: tuple[Cell, ...]
    abstract_quoted: str = ""
    note: str = ""
    needs: Mapping[str, str] = field(default_factory=dict)  # role -> how to add it, when no config change can
    margins: Mapping[str, Margin] = field(default_factory=dict)
    alpha: float | None = None
    builtin: bool = False
    specs: tuple[QuestionArm | None, QuestionArm | None] = (None, None)

    def describe_expected(self) -> str:
        if self.expected == "no_difference":
            return f"no difference between {self.arm_a} and {self.arm_b}"
        if self.expected == "non_inferior":
            return f"{self.arm_a} as good as or better than {self.arm_b} (not worse by more than the margin)"
        better, worse = (self.arm_a, self.arm_b) if self.expected == "a_better" else (self.arm_b, self.arm_a)
        return f"{better} better than {worse}"

    def margin_for(self, metric: str | None) -> Margin | None:
        """The declared margin of a cell's metric (``None`` = the primary metric), else ``None``."""
        return self.margins.get(metric or "primary", self.margins.get("*"))


def from_question(
    question: Question,
    paper: Mapping[tuple[str, str], PaperCell] | None = None,
    *,
    builtin: bool = False,
    abstract_quoted: str = "",
    needs: Mapping[str, str] | None = None,
    margin: Margin | None = None,
) -> Claim:
    """The claim of ``question``: one cell per task × protocol × metric (in that order), each with the paper's
    matching rows from ``paper`` ((task, protocol) → rows); ``margin`` overrides every metric's margin (the
    built-in claims take ``analysis.equivalence_margin``)."""
    paper = paper or {}
    cells = tuple(
        Cell(task, protocol, paper.get((task, protocol)), None if metric == "primary" else metric)
        for task in question.tasks
        for protocol in question.protocols
        for metric in question.metrics
    )
    margins = {m: margin or question.margin_for(m) for m in question.metrics}
    return Claim(
        question.id,
        question.text,
        question.arm_a.key(),
        question.arm_b.key(),
        question.expectation,
        cells,
        abstract_quoted=abstract_quoted,
        note=question.note,
        needs=dict(needs or {}),
        margins={k: v for k, v in margins.items() if v is not None},
        alpha=question.alpha,
        builtin=builtin,
        specs=(question.arm_a, question.arm_b),
    )
