"""The claims engine: every declared question (the paper's claims, a study's own) judged by one rule.

Modules: :mod:`.model` (a claim and its cells), :mod:`.catalogue` (the paper's claims as data, the paper's arms),
:mod:`.arms` (roles, domains and inits), :mod:`.tables` (our runs, the paper's), :mod:`.rule` (the verdict rule),
:mod:`.judge` (rows, the paper's side, a study), :mod:`.rows` (the row schema), :mod:`.store` (``claims.json``),
:mod:`.display` (tables and the figure). The unit of replication is :mod:`rtl_core.analysis.replicates`; the
declared question set and its pre-registration :mod:`rtl_core.analysis.questions`.

Example::

    rows = judge_paper()                        # the paper judged by the same rule
    ours = judge_study(load_config("default"))  # our study; written to claims.json by `rtl claims`
"""

from rtl_core.analysis.claims.arms import add_init_hint, claim_arms, config_arms, study_arms
from rtl_core.analysis.claims.catalogue import (
    CLAIM_IDS,
    CLAIMS,
    PAPER_ARMS,
    PAPER_CELLS,
    PAPER_SENSITIVITY,
    ROLE_DOMAINS,
    builtin_claims,
)
from rtl_core.analysis.claims.display import COMPACT, claim_overview, claim_texts, display_table, verdict_figure
from rtl_core.analysis.claims.judge import judge, judge_paper, judge_study, merge_paper
from rtl_core.analysis.claims.model import CHANGED, POWER, VERDICTS, Cell, Claim, Expected, PaperCell, from_question
from rtl_core.analysis.claims.rows import CLAIMS_VERSION, ROW_KEYS, frame
from rtl_core.analysis.claims.rule import judge_family
from rtl_core.analysis.claims.store import (
    claims_path,
    current_claims,
    load_claims,
    read_claims,
    study_claims,
    write_claims,
)
from rtl_core.analysis.claims.tables import current_results, our_table, paper_table

__all__ = [
    "CHANGED",
    "CLAIMS",
    "CLAIMS_VERSION",
    "CLAIM_IDS",
    "COMPACT",
    "PAPER_ARMS",
    "PAPER_CELLS",
    "PAPER_SENSITIVITY",
    "POWER",
    "ROLE_DOMAINS",
    "ROW_KEYS",
    "VERDICTS",
    "Cell",
    "Claim",
    "Expected",
    "PaperCell",
    "add_init_hint",
    "builtin_claims",
    "claim_arms",
    "claim_overview",
    "claim_texts",
    "claims_path",
    "config_arms",
    "current_claims",
    "current_results",
    "display_table",
    "frame",
    "from_question",
    "judge",
    "judge_family",
    "judge_paper",
    "judge_study",
    "load_claims",
    "merge_paper",
    "our_table",
    "paper_table",
    "read_claims",
    "study_arms",
    "study_claims",
    "verdict_figure",
    "write_claims",
]
