"""``reports/index.html``: the dashboard that links every report and shows the summary table."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import pandas as pd

from rtl_core.analysis.claims.rule import RULE_SUMMARY
from rtl_core.io import atomic_write
from rtl_core.provenance import git_commit, machine
from rtl_core.report.views.verdicts import overview_details, split_questions, without_paper

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left}
th{background:#f4f4f4;cursor:pointer} tr:nth-child(even){background:#fafafa} .meta{color:#555;font-size:.85em}
a{color:#0b5cad}
"""

# Click a header to sort a table (no external scripts; works offline).
SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0]; const rows = Array.from(body.rows);
  const asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
  const key = r => { const t = r.cells[i].innerText; const n = parseFloat(t); return isNaN(n) ? t : n; };
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (asc ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}));
"""


def table_html(frame: pd.DataFrame) -> str:
    """A sortable HTML table."""
    return frame.to_html(
        index=False, classes="sortable", border=0, escape=True, na_rep="–", float_format=lambda x: f"{x:.4g}"
    )


def build_index(
    report_dir: Path,
    reports: list[tuple[str, str, str]],
    profile: str,
    summary: pd.DataFrame | None = None,
    overview: pd.DataFrame | None = None,
    claims_note: str | None = None,
    bench: dict | None = None,
    wall_minutes: float | None = None,
    peak_rss_mb: float | None = None,
    notes: list[str] | None = None,
    seeds: list[int] | None = None,
    complete_run: bool = True,
) -> Path:
    """Write ``index.html``; ``reports`` holds (file name, title, one-line summary) in reading order; ``summary`` is
    the claims table (one row per claim × task × metric that applies to the study, as ``display_table(rows)[COMPACT]``),
    ``overview`` one line per claim, ``claims_note`` the line on the paper's claims the study did not run. The
    study's own questions lead (:func:`_verdicts`)."""
    info = machine()
    rows = "".join(
        f"<tr><td><a href='{html.escape(file)}'>{html.escape(title)}</a></td><td>{html.escape(text)}</td></tr>"
        for file, title, text in reports
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>rtl_core reports</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>CT or birds? Pretraining-domain study</h1>",
        "<p>Reproduction and extension of Jonske et al., <i>Why does my medical AI look at pictures of birds?</i> "
        "(Comput Methods Programs Biomed 2025).</p>",
        f"<p class='meta'>profile <b>{html.escape(profile)}</b>"
        + (f" · seeds {', '.join(map(str, seeds))}" if seeds else "")
        + f" · machine {html.escape(info['platform'])}, {info['cpus']} CPUs"
        + (f", {html.escape(info['gpus'])}" if "gpus" in info else "")
        + f" · commit {git_commit()[:12]} · built {time.strftime('%Y-%m-%d %H:%M %Z')}</p>",
    ]
    if wall_minutes is not None and complete_run:
        parts.append(
            f"<p class='meta'>make reproduce: {wall_minutes:.1f} min wall time, peak memory {peak_rss_mb:.0f} MB.</p>"
        )
    elif wall_minutes is not None:
        last = bench or {}
        full = (
            f"last complete run: {last['reproduce.wall_minutes']:.1f} min wall time, peak memory "
            f"{last['reproduce.peak_rss_mb']:.0f} MB; "
            if "reproduce.wall_minutes" in last
            else ""
        )
        parts.append(
            f"<p class='meta'>make reproduce ({full}this run reused finished steps: {wall_minutes:.1f} min, "
            f"peak memory {peak_rss_mb:.0f} MB).</p>"
        )
    parts.append(
        "<h2>Reports</h2><table><thead><tr><th>report</th><th>what it shows</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    parts += _verdicts(summary, overview, claims_note)
    for note in notes or []:
        parts.append(f"<p class='meta'>{html.escape(note)}</p>")
    if bench:
        frame = pd.DataFrame(sorted(bench.items()), columns=["figure", "value"])
        parts.append("<h2>Benchmarks (bench.json)</h2>" + table_html(frame))
    parts.append(f"<script>{SORT_JS}</script></body></html>")
    path = report_dir / "index.html"
    text = "\n".join(parts)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def _verdicts(summary: pd.DataFrame | None, overview: pd.DataFrame | None, claims_note: str | None) -> list[str]:
    """The index page's verdicts: the study's own questions first (no paper columns: they are no paper claim), then
    the paper's claims; the rule (:data:`~rtl_core.analysis.claims.rule.RULE_SUMMARY`) once, before the first
    table; every row with the arm ahead, Δ (absolute and %), scope, K × D and flags, and each claim's line with the
    K × D and flags of its rows."""
    empty = pd.DataFrame(columns=["claim"])
    summary = summary if summary is not None else empty
    own, paper = split_questions(summary)
    overview = overview_details(overview, summary) if overview is not None and len(overview) else empty
    mine = overview["claim"].isin(set(own["claim"]))
    links = "Full rows: <a href='claims.json'>claims.json</a>; the reading: <a href='90_summary.html'>90 · Summary</a>."
    rule = [f"<p class='meta'>{html.escape(RULE_SUMMARY)} {links}</p>"]
    parts: list[str] = []
    if len(own):
        parts.append("<h2>Questions of this study</h2>")
        parts.append("<p>The questions this study declares (<code>analysis.questions</code>), judged on its runs.</p>")
        parts += rule
        rule = []
        if mine.any():
            parts.append(table_html(without_paper(overview[mine])))
        parts.append(table_html(without_paper(own)))
    if len(paper) or claims_note or not len(own):
        parts.append("<h2>Claims: the paper's, judged on our runs and on its own</h2>")
    if claims_note:
        parts.append(
            f"<p>{html.escape(claims_note)} (<a href='claims.json'>claims.json</a>, "
            "<a href='90_summary.html'>90 · Summary</a>)</p>"
        )
    if len(paper):
        parts += rule
        if (~mine).any():
            parts.append(table_html(overview[~mine]))
        parts.append(table_html(paper))
    elif not claims_note and not len(own):
        parts.append("<p>No claims judged yet (run <code>rtl claims</code> after the evaluation grid).</p>")
    return parts


def read_bench(report_dir: Path) -> dict:
    path = report_dir / "bench.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
