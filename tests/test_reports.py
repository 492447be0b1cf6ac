"""The reproduce pipeline on the smoke profile: every report exists, holds its tables and figures, renders in
headless Chromium; notebook parameters are validated; a failing cell is reported with its location."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from rtl_core.analysis.claims import CLAIMS, VERDICTS
from rtl_core.errors import ConfigError, RtlError
from rtl_core.pipeline import reproduce
from rtl_core.report.browser import dump_dom, screenshot
from rtl_core.report.notebooks import (
    NOTEBOOK_DIR,
    NOTEBOOKS,
    NotebookFailed,
    check_parameters,
    execute,
    notebook_parameters,
    study_pages,
)

#: What each report must contain (key tables / figure captions), beyond at least one embedded figure.
_RESULTS = [
    "Results per task and init",
    "Statistics",
    "p Welch",
    "p Holm (claim family)",
    "95 % CI of Δ (Welch)",
    "exploratory",
    "Learning curves",
    "ct_cls",
    "ssl:ct:simclr",
    "ssl:natural:simclr",
    "scratch",
    "ddof",
]
KEY_CONTENT = {
    "00_data": ["Tasks", "ct_liver_seg", "natural_cls", "Pools", "tiny_imagenet", "groups_test"],
    "10_pretrain": [
        "Pretraining runs",
        "pairs/s",
        "ct",
        "natural",
        "simclr",
        "knn_random_max",
        "imagenette_cls",
        "natural_cls",
    ],
    "20_finetune": _RESULTS,
    "21_linear_eval": _RESULTS,
    "22_low_label": _RESULTS + ["Labels vs performance"],
    "23_segmentation": ["dice_scan", "dice_batch", "ssl:ct:simclr", "p Welch"],
    "30_feature_space": [
        "kNN sanity check",
        "beats_random",
        "CKA between encoders",
        "Domain separability",
        "Linear probes",
        "mean_intensity",
        "plotly_hover",
        "Interactive view",
        "Feature uniqueness",
        "Who knew what",
        "expected",
    ],
    "40_advisor": [
        "Scores per task and init",
        "logme",
        "domain_distance",
        "Recommendations",
        "Validation on the measured grid",
        "top-1",
        "baseline_natural",
        "baseline_domain",
        "kendall_tau",
        "Every cell",
    ],
    "90_summary": [
        "Claims at a glance",
        "Every row",
        "The paper judged by the same rule",
        "paper verdict",
        "supports",
        "abstract (quoted, interpolated)",
        "Caveats",
        "C1",
        "C7",
        "C10",
        "Holm",
        "Inconclusive is not",
    ],
}


#: The smoke study's pages: every page but those of the protocols it does not run (linear_bn_train, lowlabel_10).
SMOKE_PAGES = [spec for spec in NOTEBOOKS if spec.name in KEY_CONTENT]


#: As the default study: CT and natural pretrained twice each (replicates), the extra encoders evaluated linearly.
REPLICATES = {
    "pretrain": {"replicates": {"ssl:ct:simclr": 2, "ssl:natural:simclr": 2}},
    "evaluate": {"replicate_protocols": ["linear"]},
}


@pytest.fixture(scope="module")
def smoke_reports(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("reports")
    figures = reproduce("smoke", report_dir=report_dir, overrides=REPLICATES)
    return report_dir, figures


def _embedded_images(html: str) -> list[Image.Image]:
    blobs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in blobs]


@pytest.mark.slow
def test_every_report_exists_with_key_tables_and_figures(smoke_reports):
    report_dir, figures = smoke_reports
    assert figures["reproduce.wall_minutes"] > 0 and figures["reproduce.peak_rss_mb"] > 100
    for spec in SMOKE_PAGES:
        page = report_dir / f"{spec.name}.html"
        html = page.read_text()
        for needle in KEY_CONTENT[spec.name]:
            assert needle in html, f"{page.name} lacks {needle!r}"
        images = _embedded_images(html)
        assert images, f"{page.name} has no embedded figure"
        for image in images:
            pixels = np.asarray(image.convert("L"), dtype=float)
            assert pixels.std() > 5, f"{page.name}: a blank figure"
        visible = re.sub(r'<script.*?</script>|srcdoc="[^"]*"', "", html, flags=re.S)  # page text, not embedded code
        assert "Traceback" not in visible and "Error:" not in visible
        assert "from rtl_core" not in html and "import overview" not in html  # code is hidden by default
    index = (report_dir / "index.html").read_text()
    for spec in SMOKE_PAGES:
        assert f"href='{spec.name}.html'" in index
    assert "profile <b>smoke</b>" in index and "wall time" in index  # complete run (or "last complete run")
    assert "Claims: the paper's" in index and "paper verdict" in index and "href='claims.json'" in index
    claims = json.loads((report_dir / "claims.json").read_text())
    assert {row["claim"] for row in claims["claims"]} == {c.id for c in CLAIMS}
    assert all(row["verdict"] in VERDICTS and row["paper_verdict"] for row in claims["claims"])
    # CT and natural are replicated (K = 2, linear only): those linear cells speak about pretraining
    replicated = [r for r in claims["claims"] if r["scope"] == "pretraining"]
    assert replicated and all(r["protocol"] == "linear" and r["k_a"] == r["k_b"] == 2 for r in replicated)
    assert {r["scope"] for r in claims["claims"] if r["protocol"] == "finetune"} <= {"checkpoints", None}
    assert f"{os.cpu_count()} CPUs" in index and "{" not in re.sub(r"<(style|script)>.*?</\1>", "", index, flags=re.S)


@pytest.mark.slow
def test_rerun_skips_done_steps(smoke_reports, capsys):
    report_dir, _ = smoke_reports
    reproduce("smoke", report_dir=report_dir, overrides=REPLICATES)
    out = capsys.readouterr().out
    for spec in SMOKE_PAGES:
        assert re.search(rf"notebook {spec.name} .*: done already, skipped", out), out


@pytest.mark.slow
def test_pages_render_in_headless_chromium(smoke_reports, tmp_path):
    report_dir, _ = smoke_reports
    for page in (report_dir / "index.html", report_dir / f"{NOTEBOOKS[0].name}.html"):
        png = screenshot(page, tmp_path / f"{page.stem}.png")
        pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert pixels.std() > 10 and (pixels < 128).mean() > 0.005, f"{page.name} rendered blank"
        dom = dump_dom(page)
        text = re.sub(r"<[^>]+>", " ", dom)
        assert "rtl_core" in dom or "Data" in text
        for bad in ("Traceback", "NameError", "ModuleNotFoundError", "This page isn", "ERR_FILE_NOT_FOUND"):
            assert bad not in text, f"{page.name} shows {bad!r}"
    dom = dump_dom(report_dir / f"{NOTEBOOKS[0].name}.html")
    assert dom.count("<img") >= 3


SOURCES = sorted({spec.source_name for spec in NOTEBOOKS})


@pytest.mark.parametrize("source_name", SOURCES)
def test_every_notebook_source_checks_its_parameters(source_name):
    """Each jupytext source declares profile and config, and refuses an unknown parameter or profile by name."""
    source = NOTEBOOK_DIR / f"{source_name}.py"
    declared = notebook_parameters(source)
    assert {"profile", "config"} <= set(declared) and declared["profile"] == '"default"'
    with pytest.raises(ConfigError, match=rf"{source.name}: unknown parameter\(s\) \['epochs'\]"):
        check_parameters(source, {"epochs": 3})
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        check_parameters(source, {"profile": "fast"})


def test_the_protocol_pages_share_one_source_with_their_protocol():
    """20/21/22 are one notebook run with ``protocol`` set; each page's protocol is one the notebook can show."""
    from rtl_core.config import load_config
    from rtl_core.report.views import protocol_page

    pages = [spec for spec in NOTEBOOKS if spec.source_name == "20_protocol"]
    assert [spec.protocol for spec in pages] == ["finetune", "linear", "linear_bn_train", "lowlabel_1", "lowlabel_10"]
    assert "protocol" in notebook_parameters(NOTEBOOK_DIR / "20_protocol.py")
    for spec in pages:
        assert protocol_page(spec.parameters["protocol"]).startswith(f"# {spec.name[:2]} · {spec.title}")
    # the report set follows the study: one page per protocol it ran, the segmentation page only with such a task
    assert [spec.name for spec in study_pages(load_config("smoke"))] == [spec.name for spec in SMOKE_PAGES]
    assert len(study_pages(load_config("paper"))) == len(NOTEBOOKS)
    linear = load_config("smoke", overrides={"evaluate": {"protocols": ["linear"], "tasks": ["mri_cls"]}})
    names = [spec.name for spec in study_pages(linear)]
    assert "21_linear_eval" in names and not {"20_finetune", "22_low_label", "23_segmentation"} & set(names)
    with pytest.raises(RtlError, match="No protocol page for 'lowlabel_5'"):
        protocol_page("lowlabel_5")


def test_a_missing_notebook_source_is_named():
    with pytest.raises(ConfigError, match="Notebook source .*nowhere.py does not exist"):
        notebook_parameters(NOTEBOOK_DIR / "nowhere.py")


def test_failing_cell_names_notebook_cell_and_partial_output(tmp_path):
    (tmp_path / "broken.py").write_text('# %% tags=["parameters"]\nprofile = "smoke"\n\n# %%\nx = 1\n\n# %%\n1 / 0\n')
    with pytest.raises(NotebookFailed, match=r"broken.py failed in cell \d+ \(ZeroDivisionError") as err:
        execute("broken", {"profile": "smoke"}, tmp_path / "out", source_dir=tmp_path)
    assert str(tmp_path / "out" / "broken.ipynb") in str(err.value)
    assert (tmp_path / "out" / "broken.ipynb").is_file()


@pytest.mark.slow
def test_summary_and_index_render_with_protocols_outside_the_default_claims(smoke_reports, tmp_path, monkeypatch):
    """A results store that also holds lowlabel_10 and linear_bn_train runs (the paper profile runs the first; here
    the smoke study's lowlabel_1 / linear records are relabelled, so only the rendering is under test) renders
    90_summary and the index; lowlabel_10 rows join their claims (C3, C4), linear_bn_train belongs to none."""
    from rtl_core.analysis.claims import study_claims
    from rtl_core.config import load_config
    from rtl_core.paths import output_root
    from rtl_core.pipeline.run import _summary
    from rtl_core.report.index import build_index
    from rtl_core.report.notebooks import to_html

    source = output_root() / "results" / "smoke"
    root = tmp_path / "artifacts"
    shutil.copytree(source, root / "results" / "smoke")
    for path in list((root / "results" / "smoke").rglob("seed*.json")):
        record = json.loads(path.read_text())
        relabel = {"lowlabel_1": ("lowlabel_10", 0.1), "linear": ("linear_bn_train", 1.0)}.get(record["protocol"])
        if relabel:
            record["protocol"], record["data_fraction"] = relabel
            target = path.parent.parent / relabel[0] / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(record))
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(root))
    config = load_config("smoke")
    rows, _ = study_claims(config)
    c3 = rows[(rows["claim"] == "C3") & (rows["protocol"] == "lowlabel_10")]
    assert len(c3) == 1 and c3.iloc[0]["verdict"] != "not run" and c3.iloc[0]["family_size"] == 2
    assert "linear_bn_train" not in set(rows["protocol"])
    executed = execute("90_summary", {"profile": "smoke"}, tmp_path / "executed")
    html = to_html(executed, tmp_path / "90_summary.html").read_text()
    assert "lowlabel_10" in html and "linear_bn_train" in html and "Claims at a glance" in html
    index = build_index(tmp_path, [("90_summary.html", "Summary", "claims")], "smoke", summary=_summary(config))
    assert "lowlabel_10" in index.read_text()


def _repository_reports() -> dict[str, tuple[int, str]]:
    import hashlib

    from rtl_core.paths import REPO_REPORTS

    return {
        p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(REPO_REPORTS.iterdir())
        if p.is_file()
    }


def test_with_rtl_output_dir_set_bench_and_reports_write_nothing_into_the_repository(capsys):
    """`rtl bench` (its cheapest section) merges its figures into $RTL_OUTPUT_DIR/reports/bench.json, never into the
    committed reports/bench.json; the reproduce's report folders live there too."""
    from rtl_core.cli import main
    from rtl_core.config import load_config
    from rtl_core.paths import REPO_REPORTS, bench_json, output_root, reports_dir
    from rtl_core.pipeline import report_dir_of

    before = _repository_reports()
    assert main(["bench", "--only", "advisor"]) == 0
    assert _repository_reports() == before
    assert bench_json() == output_root() / "reports" / "bench.json"
    assert "bench.machine" in json.loads(bench_json().read_text())
    assert f"figures written to {bench_json()}" in capsys.readouterr().out
    assert reports_dir() == output_root() / "reports" != REPO_REPORTS
    assert report_dir_of(load_config("smoke")) == reports_dir()


def test_the_plan_has_one_line_per_stage_with_an_estimate():
    """The calibration measures positive rates on this machine; the plan prints one line per stage with its number
    of steps and a duration, and the total."""
    from rtl_core.config import load_config
    from rtl_core.pipeline import eta

    config = load_config("smoke", overrides={"launcher": {"kind": "inline"}})
    cal = eta.calibrate(config, threads=1)
    assert cal.pretrain_seconds_per_pair > 0 and cal.train_seconds_per_image > cal.infer_seconds_per_image > 0
    seconds = eta.run_seconds(config, "finetune", ("classification", 400, 100, 100), cal)
    assert seconds > eta.run_seconds(config, "linear", ("classification", 400, 100, 100), cal) > 0
    assert eta.run_seconds(config, "finetune", ("segmentation", 400, 100, 100), cal) > seconds
    steps = [
        eta.StepEstimate("data", "data", False),
        eta.StepEstimate("pretrain", "pretrain: simclr on ct", True, 120.0, "1 epoch(s)"),
        eta.StepEstimate("pretrain", "pretrain: simclr on natural", False),
        eta.StepEstimate("evaluate", "evaluate", True, 6000.0, "30 of 90 run(s) left"),
        eta.StepEstimate("notebook", "notebook 00_data", True, 20.0),
    ]
    lines = eta.Plan(steps, cal).lines()
    assert "pairs/s" in lines[0] and len(lines) == 1 + 4 + 1  # calibration, data/pretrain/evaluate/notebook, total
    assert lines[1] == "  data      1 step(s), done already"
    assert lines[2].startswith("  pretrain  1 of 2 step(s) to do, ~2.0 min: 1 epoch(s)")
    assert lines[3].startswith("  evaluate  1 of 1 step(s) to do, ~1.7 h: 30 of 90")
    assert lines[5].startswith("  total     ~1.7 h (finishing around ")
    assert eta.Plan(steps, cal).remaining_after(1) == 6020.0


def test_claims_the_study_did_not_run_do_not_lead_and_its_own_questions_come_first():
    """The index and 90 · Summary show the rows that apply (a study's own questions first) and one line on the
    paper's claims it did not run, not a table of 'not run' rows."""
    import pandas as pd

    from rtl_core.report.views import not_run_note, split_claims

    rows = pd.DataFrame(
        {
            "claim": ["C1", "C1", "Q1", "C2"],
            "verdict": ["not run", "supports", "inconclusive", "not run"],
            "reason": ["no ct arm: add 'ssl:ct:simclr'", "", "", "task ct_cls is not in the study"],
            "paper_verdict": ["supports", "supports", "not a paper claim", "contradicts"],
        }
    )
    applies, not_run = split_claims(rows)
    assert applies["claim"].tolist() == ["Q1", "C1"] and not_run["claim"].tolist() == ["C1", "C2"]
    note = not_run_note(rows, where="in claims.json")
    assert note.startswith("2 row(s) of the paper's claims are not run") and "no row of claim(s) C2 applies" in note
    none = not_run_note(rows[rows["verdict"] == "not run"])
    assert none.startswith("None of the paper's claims (2) applies") and "e.g. no ct arm" in none
    assert not_run_note(rows[rows["verdict"] != "not run"]) is None


# --------------------------------------------------------------------------------------------- verdicts on the pages
def _claims_rows():
    """A crafted claims frame: a paper claim that applies (its paper side flagged degenerate), one that is not run,
    and a study's own question with two rows (B ahead over pretraining runs with flags; a degenerate cell)."""
    from rtl_core.analysis.claims import CHANGED, frame

    def row(claim, task, protocol, verdict, mean_a, mean_b, **extra):
        base = {
            "claim": claim,
            "task": task,
            "metric": "accuracy",
            "protocol": protocol,
            "arm_a": "ssl:ct:simclr",
            "arm_b": "ssl:natural:simclr",
            "n_a": 4,
            "n_b": 4,
            "mean_a": mean_a,
            "mean_b": mean_b,
            "sd_a": 0.01,
            "sd_b": 0.012,
            "delta_abs": mean_a - mean_b,
            "delta_rel_pct": (mean_a / mean_b - 1) * 100,
            "ci_low": mean_a - mean_b - 0.02,
            "ci_high": mean_a - mean_b + 0.02,
            "p_welch": 0.2,
            "p_holm": 0.4,
            "verdict": verdict,
            "reason": f"{claim} {verdict}",
            "ahead": "ssl:ct:simclr" if mean_a > mean_b else "ssl:natural:simclr",
            "scope": "checkpoints",
            "k_a": 1,
            "k_b": 1,
            "d": 4,
            "flags": "",
            "paper_verdict": "inconclusive",
            "paper_delta_rel_pct": 0.12,
        }
        return {**base, **extra}

    own = {"paper_verdict": "not a paper claim", "statement": "Is my CT encoder better on my_seg?"}
    replicated = {"scope": "pretraining", "k_a": 3, "k_b": 3, "d": 2}
    return frame(
        [
            row(
                "C1",
                "ct_cls",
                "finetune",
                "supports",
                0.80,
                0.78,
                paper_flags="degenerate: scratch within the arms' spread",
                statement="Full fine-tune on CT: no clear advantage",
            ),
            row(
                "C2",
                "ct_cls",
                "linear",
                "not run",
                float("nan"),
                float("nan"),
                reason="task ct_cls is not in the study: add it to evaluate.tasks",
            ),
            row(
                "Q1",
                "my_seg",
                "linear",
                "inconclusive",
                0.77,
                0.78,
                **own,
                **replicated,
                flags=f"{CHANGED}: declared after the runs | 1 run(s) > 3 robust SDs from their arm (kept): x",
            ),
            row(
                "Q1",
                "my_seg",
                "finetune",
                "withheld",
                0.81,
                0.80,
                **own,
                **replicated,
                flags="degenerate: scratch within the arms' spread",
            ),
        ]
    )


def test_the_index_leads_with_the_studys_own_questions_and_prints_the_one_rule(tmp_path):
    """As the reproduce pipeline builds it: the study's own question (its line, then its rows) before the paper's
    claims, without paper columns; every row with the arm ahead, Δ absolute and %, scope, K × D and flags; each
    question's line with its rows' K × D and flags; the rule once, as RULE_SUMMARY words it."""
    import html

    from rtl_core.analysis.claims import COMPACT, claim_overview, display_table
    from rtl_core.analysis.claims.rule import RULE_SUMMARY
    from rtl_core.report.index import build_index
    from rtl_core.report.views import not_run_note, split_claims

    rows = _claims_rows()
    applies = rows[rows["verdict"] != "not run"]  # the paper's claim first: the page itself must put Q1 first
    page = build_index(
        tmp_path,
        [("90_summary.html", "Summary", "claims")],
        "default, study mine",
        summary=display_table(applies)[COMPACT],
        overview=claim_overview(split_claims(rows)[0]),
        claims_note=not_run_note(rows),
    ).read_text()

    assert page.count(html.escape(RULE_SUMMARY)) == 1
    own_at, paper_at = page.index("<h2>Questions of this study</h2>"), page.index("<h2>Claims: the paper")
    assert own_at < page.index(html.escape(RULE_SUMMARY)) < page.index("<td>Q1</td>") < paper_at
    assert page.index("<td>C1</td>") > paper_at and "not run in this study" in page[paper_at:]
    own = page[own_at:paper_at]
    assert "Is my CT encoder better on my_seg?" in own and "<th>paper" not in own
    for header in ("ahead", "Δ = A − B", "Δ %", "scope", "K × D", "verdict", "flags"):
        assert f"<th>{header}</th>" in own, header
    assert "<td>ssl:natural:simclr</td>" in own and "<td>-0.0100</td>" in own and "<td>-1.28 %</td>" in own
    assert "<td>3 × 2</td>" in own and "<td>pretraining</td>" in own and "changed after the runs: declared" in own
    # the question's line: the design of its rows and how many carry each kind of flag
    assert "<td>changed after the runs, outlying runs, degenerate</td>" in own
    paper = page[paper_at:]
    assert "<th>paper verdict</th>" in paper and "<td>1 × 4</td>" in paper and "<td>ssl:ct:simclr</td>" in paper


def test_the_claims_rule_is_worded_once():
    """The rule's short text lives in analysis/claims/rule.py; the index page and 90 · Summary import it and hold no
    wording of their own; docs/claims.md explains it and names the constant."""
    from pathlib import Path

    import rtl_core.report.index as index

    root = Path(__file__).resolve().parents[1]
    assert not hasattr(index, "CLAIMS_RULE")
    for source in (Path(index.__file__), NOTEBOOK_DIR / "90_summary.py"):
        text = source.read_text()
        assert "import RULE_SUMMARY" in text and "TOST" not in text and "kNN sanity" not in text, source.name
    assert "`RULE_SUMMARY`" in (root / "docs" / "claims.md").read_text()


def test_90_summary_tables_give_the_papers_flags_and_each_questions_flags():
    from rtl_core.analysis.claims import claim_overview
    from rtl_core.report.views import overview_details, split_questions, verdict_table, without_paper

    rows = _claims_rows()
    table = verdict_table(rows)
    columns = list(table.columns)
    assert columns.index("paper flags") == columns.index("paper verdict") + 1
    assert table["paper flags"].tolist()[:2] == ["degenerate: scratch within the arms' spread", "–"]
    own, paper = split_questions(table)
    assert own["claim"].tolist() == ["Q1", "Q1"] and paper["claim"].tolist() == ["C1", "C2"]
    assert not [c for c in without_paper(own).columns if c.startswith("paper")]
    line = overview_details(claim_overview(rows), table).set_index("claim")
    assert line.loc["Q1", "K × D"] == "3 × 2" and line.loc["C1", "flags"] == "–"
    assert line.loc["Q1", "flags"] == "changed after the runs, outlying runs, degenerate"


def _runs(task: str, encoders: dict[str, int], d: int, rng) -> list[dict]:
    out = []
    for init, k in encoders.items():
        for rep in range(k):
            offset = rng.normal(0, 0.03)  # this encoder's own level: the between-encoder variance
            for seed in range(d):
                value = 0.7 + offset + rng.normal(0, 0.01)
                out.append(
                    {
                        "task": task,
                        "protocol": "linear",
                        "metric": "accuracy",
                        "primary": True,
                        "init": init,
                        "replicate": rep,
                        "seed": seed,
                        "value": value,
                    }
                )
    return out


def test_90_summary_variance_components_per_task_and_protocol_say_when_k_is_one():
    import pandas as pd

    from rtl_core.analysis.replicates import variance_components
    from rtl_core.report.views import variance_note, variance_table

    rng = np.random.default_rng(0)
    single = pd.DataFrame(_runs("ct_cls", {"ssl:ct:simclr": 1, "scratch": 1}, 4, rng))
    table = variance_table(single)
    assert table["σ² between encoders"].tolist() == ["cannot be estimated (K = 1)"]
    assert table["σ² between seeds"].iloc[0].startswith(f"{variance_components(single)['var_seed'].iloc[0]:.3g} (SD")
    note = variance_note(table)
    assert note.startswith(
        "Every init has one pretraining run (K = 1): the between-encoder component cannot be "
        "estimated with one pretraining per arm"
    )

    both = pd.concat([single, pd.DataFrame(_runs("xray_cls", {"ssl:ct:simclr": 3, "scratch": 1}, 2, rng))])
    table = variance_table(both).set_index("task")
    expected = variance_components(both).set_index("task")
    assert table.loc["xray_cls", "σ² between encoders"].startswith(f"{expected.loc['xray_cls', 'var_encoder']:.3g}")
    assert table.loc["xray_cls", "replicated inits (K ≥ 2)"] == "ssl:ct:simclr"
    assert table.loc["xray_cls", "D (seeds per encoder)"] == 2 and table.loc["xray_cls", "encoders"] == 4
    assert variance_note(variance_table(both)).startswith("1 of 2 task × protocol cell(s) have no replicated init")


def test_reproduce_renders_only_the_pages_asked_for_and_names_the_studys_pages_for_an_unknown_one():
    from rtl_core.config import load_config
    from rtl_core.errors import ConfigError
    from rtl_core.pipeline.run import chosen_pages

    config = load_config("smoke")
    assert [spec.name for spec in chosen_pages(config, ["90_summary", "00_data"])] == ["00_data", "90_summary"]
    assert chosen_pages(config) == study_pages(config)
    with pytest.raises(ConfigError, match=r"no report page 99_nothing in study smoke; its pages: \['00_data'"):
        chosen_pages(config, ["99_nothing"])
