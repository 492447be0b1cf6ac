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
from rtl_core.report.browser import dump_dom, screenshot
from rtl_core.report.notebooks import (
    NOTEBOOK_DIR,
    NOTEBOOKS,
    NotebookFailed,
    check_parameters,
    execute,
    notebook_parameters,
)
from rtl_core.report.pipeline import reproduce

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


@pytest.fixture(scope="module")
def smoke_reports(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("reports")
    figures = reproduce("smoke", report_dir=report_dir)
    return report_dir, figures


def _embedded_images(html: str) -> list[Image.Image]:
    blobs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in blobs]


def test_every_report_exists_with_key_tables_and_figures(smoke_reports):
    report_dir, figures = smoke_reports
    assert figures["reproduce.wall_minutes"] > 0 and figures["reproduce.peak_rss_mb"] > 100
    for spec in NOTEBOOKS:
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
    for spec in NOTEBOOKS:
        assert f"href='{spec.name}.html'" in index
    assert "profile <b>smoke</b>" in index and "wall time" in index  # complete run (or "last complete run")
    assert "Claims: the paper's" in index and "paper verdict" in index and "href='claims.json'" in index
    claims = json.loads((report_dir / "claims.json").read_text())
    assert {row["claim"] for row in claims["claims"]} == {c.id for c in CLAIMS}
    assert all(row["verdict"] in VERDICTS and row["paper_verdict"] for row in claims["claims"])
    assert f"{os.cpu_count()} CPUs" in index and "{" not in re.sub(r"<(style|script)>.*?</\1>", "", index, flags=re.S)


def test_rerun_skips_done_steps(smoke_reports, capsys):
    report_dir, _ = smoke_reports
    reproduce("smoke", report_dir=report_dir)
    out = capsys.readouterr().out
    for spec in NOTEBOOKS:
        assert re.search(rf"notebook {spec.name} .*: done already, skipped", out), out


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
    from rtl_core.report.views import protocol_page

    pages = [spec for spec in NOTEBOOKS if spec.source_name == "20_protocol"]
    assert [spec.name for spec in pages] == ["20_finetune", "21_linear_eval", "22_low_label"]
    assert "protocol" in notebook_parameters(NOTEBOOK_DIR / "20_protocol.py")
    for spec in pages:
        assert protocol_page(spec.parameters["protocol"]).startswith(f"# {spec.name[:2]} · {spec.title}")
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


def test_summary_and_index_render_with_protocols_outside_the_default_claims(smoke_reports, tmp_path, monkeypatch):
    """A results store that also holds lowlabel_10 and linear_bn_train runs (the paper profile runs the first; here
    the smoke study's lowlabel_1 / linear records are relabelled, so only the rendering is under test) renders
    90_summary and the index; lowlabel_10 rows join their claims (C3, C4), linear_bn_train belongs to none."""
    from rtl_core.analysis.claims import study_claims
    from rtl_core.config import load_config
    from rtl_core.paths import output_root
    from rtl_core.report.index import build_index
    from rtl_core.report.notebooks import to_html
    from rtl_core.report.pipeline import _summary

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
