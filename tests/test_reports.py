"""The reproduce pipeline on the smoke profile: every report exists, holds its tables and figures, renders in
headless Chromium; notebook parameters are validated; a failing cell is reported with its location."""

from __future__ import annotations

import base64
import os
import io
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from rtl_core.errors import ConfigError
from rtl_core.report.browser import dump_dom, screenshot
from rtl_core.report.notebooks import NOTEBOOKS, NotebookFailed, check_parameters, execute, NOTEBOOK_DIR
from rtl_core.report.pipeline import reproduce

#: What each report must contain (key tables / figure captions), beyond at least one embedded figure.
_RESULTS = ["Results per task and init", "Statistics", "p Welch", "p Holm", "p BH", "95 % CI of Δ", "Learning curves",
            "ct_cls", "ssl:ct:simclr", "ssl:natural:simclr", "scratch"]
KEY_CONTENT = {
    "00_data": ["Tasks", "ct_liver_seg", "natural_cls", "Pools", "tiny_imagenet", "groups_test"],
    "10_pretrain": ["Pretraining runs", "pairs/s", "ct", "natural", "simclr"],
    "20_finetune": _RESULTS,
    "21_linear_eval": _RESULTS,
    "22_low_label": _RESULTS + ["Labels vs performance"],
    "23_segmentation": ["dice_scan", "dice_batch", "ssl:ct:simclr", "p Welch"],
    "30_feature_space": ["CKA between encoders", "Domain separability", "Linear probes", "mean_intensity", "plotly_hover",
                         "Interactive view", "Feature uniqueness", "Who knew what", "expected"],
    "90_summary": ["verdict", "paper Δ %", "abstract (interpolated)", "Caveats", "Full fine-tune", "Linear evaluation"],
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


def test_unknown_parameter_and_profile_are_errors():
    source = NOTEBOOK_DIR / "00_data.ipynb"
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['epochs'\]"):
        check_parameters(source, {"epochs": 3})
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        check_parameters(source, {"profile": "fast"})


def test_failing_cell_names_notebook_cell_and_partial_output(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = 'smoke'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "broken.ipynb"))
    with pytest.raises(NotebookFailed, match=r"broken.ipynb failed in cell \d+ \(ZeroDivisionError") as err:
        execute("broken", {"profile": "smoke"}, tmp_path / "out", source_dir=tmp_path)
    assert str(tmp_path / "out" / "broken.ipynb") in str(err.value)
    assert (tmp_path / "out" / "broken.ipynb").is_file()
