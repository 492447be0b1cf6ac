"""The verdicts of 90 · Summary and the index page: the study's own questions apart from the paper's claims, the
rows a study did not run apart from those it judged, the verdict table with each side's flags, one line per claim."""

from __future__ import annotations

from collections import Counter

import pandas as pd

#: The paper verdict the claims engine gives a row of a study's own question (not one of the paper's claims).
OWN_QUESTION = "not a paper claim"


def _own(rows: pd.DataFrame) -> pd.Series:
    """Which rows belong to the study's own questions (claims rows, or a table of :func:`display_table`)."""
    for column in ("paper_verdict", "paper verdict"):
        if column in rows:
            return rows[column] == OWN_QUESTION
    return pd.Series(False, index=rows.index)


def split_questions(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the study's own questions and those of the paper's claims (claims rows, or a table of
    :func:`verdict_table` / the index page's), each in its order."""
    own = _own(rows)
    return rows[own].reset_index(drop=True), rows[~own].reset_index(drop=True)


def without_paper(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the paper's columns (for a study's own questions, which are no paper claim)."""
    return frame[[c for c in frame.columns if not str(c).startswith("paper")]]


def verdict_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The claims table of 90 · Summary: :func:`~rtl_core.analysis.claims.display_table` (per verdict the arm
    ahead, Δ absolute and %, scope, K × D, flags) with the paper side's flags beside its verdict."""
    from rtl_core.analysis.claims import display_table

    out = display_table(rows)
    if "paper verdict" in out and "paper_flags" in rows:
        flags = [f if isinstance(f, str) and f else "–" for f in rows["paper_flags"]]
        out.insert(out.columns.get_loc("paper verdict") + 1, "paper flags", flags)
    return out


def _flag_kinds(flags: object) -> list[str]:
    """The kinds of the flags of one row (``changed after the runs``, ``degenerate``, ``outlying runs``)."""
    from rtl_core.analysis.claims import CHANGED

    if not isinstance(flags, str) or flags in ("", "–"):
        return []
    kinds = []
    for flag in flags.split(" | "):
        if flag.startswith(CHANGED):
            kinds.append(CHANGED)
        elif flag.startswith("degenerate"):
            kinds.append("degenerate")
        elif "robust SDs" in flag:
            kinds.append("outlying runs")
        else:
            kinds.append(flag.split(":")[0])
    return kinds


def overview_details(overview: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``overview`` (one line per claim) with, from ``table`` (its rows as :func:`verdict_table` or the index page
    shows them), the K × D its rows ran at and how many of its rows carry each flag, after ``scope``."""
    out = overview.copy()
    designs, flags = [], []
    for claim in out["claim"]:
        part = table[table["claim"] == claim]
        kd = [str(v) for v in dict.fromkeys(part["K × D"]) if v != "–"] if "K × D" in part else []
        designs.append(", ".join(kd) or "–")
        counts = Counter(k for f in part.get("flags", []) for k in _flag_kinds(f))  # in order of appearance
        flags.append(", ".join(f"{k} ×{n}" if n > 1 else k for k, n in counts.items()) or "–")
    at = out.columns.get_loc("scope") + 1 if "scope" in out else len(out.columns)
    out.insert(at, "K × D", designs)
    out.insert(at + 1, "flags", flags)
    return out


def split_claims(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims rows that apply to the study (judged, withheld; the study's own questions first, then the
    paper's claims) and those it did not run (it lacks their arms, tasks or protocols)."""
    if not len(rows):
        return rows, rows
    rows = pd.concat([rows[_own(rows)], rows[~_own(rows)]])
    not_run = rows["verdict"] == "not run"
    return rows[~not_run].reset_index(drop=True), rows[not_run].reset_index(drop=True)


def not_run_note(rows: pd.DataFrame, where: str = "below") -> str | None:
    """One sentence on the paper's claims this study did not run (None when it ran them all): none apply, or how
    many rows and which claims are left out of the tables, and where they are listed."""
    if len(rows):
        rows = rows[~_own(rows)]
    shown, not_run = split_claims(rows)
    if not len(not_run):
        return None
    claims = list(dict.fromkeys(not_run["claim"]))
    reasons = list(dict.fromkeys(str(r) for r in not_run["reason"] if r))
    example = f"; e.g. {reasons[0]}" if reasons else ""
    if not len(shown):
        return (
            f"None of the paper's claims ({len(claims)}) applies to this study (it lacks their arms, tasks or "
            f"protocols{example}): all {len(not_run)} of their rows are 'not run'. They are listed {where}."
        )
    whole = [c for c in claims if c not in set(shown["claim"])]
    return (
        f"{len(not_run)} row(s) of the paper's claims are not run in this study (it lacks their arms, tasks or "
        f"protocols{example})"
        + (f"; no row of claim(s) {', '.join(whole)} applies" if whole else "")
        + f". They are listed {where}."
    )
