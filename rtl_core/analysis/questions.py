"""A study's declared questions, and their pre-registration.

The declared set is the paper's claims (``analysis.builtin_questions: paper``, the default; their margin is
``analysis.equivalence_margin``) and the study's own ``analysis.questions``
(:class:`rtl_core.config.Question`), each resolved into a :class:`~rtl_core.analysis.claims.model.Claim`.

**Pre-registration.** Each question's definition as the engine judges it (its arms and the inits they resolve to,
expectation, cells, margins, α) is hashed. The first time the study has runs and its questions are judged
(``rtl evaluate`` once the grid has written records, ``rtl claims``, or the reproduce pipeline's claims step) the
hashes are written to ``analysis/<study>/preregistration.json`` (atomically; never rewritten). From then on a
question whose hash differs (its arms, cells — so its Holm family —, margin or α changed), or that was declared
only after the runs, carries the flag ``changed after the runs`` on every verdict it touches. The grid itself does
not write the file (the evaluation stage knows nothing of questions); delete the file to register anew, for a study
whose runs are all redone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rtl_core.analysis.claims.arms import claim_arms
from rtl_core.analysis.claims.catalogue import builtin_claims
from rtl_core.analysis.claims.model import Claim, from_question
from rtl_core.errors import ConfigError

REGISTRATION_FILE = "preregistration.json"


def declared_claims(config) -> tuple[Claim, ...]:
    """The questions ``config`` declares, as claims: the paper's (unless ``analysis.builtin_questions: none``) and
    the study's own, in that order. An own question may not reuse a built-in claim's id."""
    ac = config.analysis
    builtin = builtin_claims(ac.equivalence_margin) if ac.builtin_questions == "paper" else ()
    taken = {c.id for c in builtin}
    clash = [q.id for q in ac.questions if q.id in taken]
    if clash:
        raise ConfigError(
            f"analysis.questions: id(s) {clash} are the paper's built-in claims; rename your question(s), or set "
            "analysis.builtin_questions: none to judge only your own"
        )
    return builtin + tuple(from_question(q) for q in ac.questions)


def question_definitions(config) -> dict[str, dict[str, Any]]:
    """Each declared question as the engine judges it: what the pre-registration hashes."""
    claims = declared_claims(config)
    arms = claim_arms(config, claims)
    alpha = config.analysis.alpha
    out = {}
    for c in claims:
        margins = {k: m.model_dump(mode="json", exclude={"rationale"}) for k, m in sorted(c.margins.items())}
        out[c.id] = {
            "arm_a": [c.arm_a, list(arms.get(c.arm_a, ()))],
            "arm_b": [c.arm_b, list(arms.get(c.arm_b, ()))],
            "expectation": c.expected,
            "cells": [[cell.task, cell.protocol, cell.metric or "primary"] for cell in c.cells],
            "margins": margins or {"*": {"value": config.analysis.equivalence_margin, "kind": "relative"}},
            "alpha": c.alpha or alpha,
        }
    return out


def question_hashes(config) -> dict[str, str]:
    """Question id → the short hash of its definition (:func:`question_definitions`)."""
    from rtl_core.provenance import settings_digest

    return {q: settings_digest(d) for q, d in question_definitions(config).items()}


def registration_path(study: str) -> Path:
    """``analysis/<study>/preregistration.json``: the questions' hashes when the study's first runs were judged."""
    from rtl_core.paths import analysis_dir

    return analysis_dir(study) / REGISTRATION_FILE


def register_questions(config, results) -> Path | None:
    """Write the pre-registration of ``config``'s questions unless one exists or ``results`` (the study's results
    table) is empty (then ``None``): the first call once runs exist fixes the questions, margins and families that
    later verdicts are checked against."""
    from rtl_core.io import write_json

    path = registration_path(config.study)
    if path.is_file() or not len(results):
        return None
    n_records = results["path"].nunique() if "path" in results else len(results)
    return write_json(
        path,
        {
            "registered": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "study": config.study,
            "records_at_registration": int(n_records),
            "questions": question_hashes(config),
            "definitions": question_definitions(config),
        },
    )


def registration_status(config) -> dict[str, str | None]:
    """Question id → ``None`` when it matches its registration, else why it is flagged (changed, or declared after
    the runs). Empty when nothing is registered yet."""
    path = registration_path(config.study)
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text())
        registered, when = dict(content["questions"]), content.get("registered", "?")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path} is not a pre-registration rtl_core wrote ({exc}); restore it, or delete it to register the "
            "current questions anew (their verdicts then carry no 'changed after the runs' check)"
        ) from exc
    status: dict[str, str | None] = {}
    for qid, digest in question_hashes(config).items():
        if qid not in registered:
            status[qid] = f"declared after the runs (registration of {when})"
        elif registered[qid] != digest:
            status[qid] = f"question, margin or family differs from its registration of {when}"
        else:
            status[qid] = None
    return status


def question_index(config) -> dict[tuple[str, str, frozenset], str]:
    """(task, protocol, {init A, init B}) → the ids of the declared questions whose family holds that comparison
    (single-init arms), for the CLI's table of every pair."""
    claims = declared_claims(config)
    arms = claim_arms(config, claims)
    index: dict[tuple[str, str, frozenset], list[str]] = {}
    for c in claims:
        a, b = arms.get(c.arm_a, ()), arms.get(c.arm_b, ())
        if len(a) != 1 or len(b) != 1:
            continue
        for cell in c.cells:
            if cell.metric is None:
                index.setdefault((cell.task, cell.protocol, frozenset((a[0], b[0]))), []).append(c.id)
    return {k: ", ".join(dict.fromkeys(v)) for k, v in index.items()}
