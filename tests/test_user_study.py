"""A user's own study end to end: `rtl reproduce --config` with an ImageFolder classification task, a PNG
slice + mask segmentation task, a DICOM pool and an ImageFolder pool, all built from real pack files copied
into those layouts; every report renders, the study's artifacts live under its own name, the splits are saved
and no pool holds a task's val/test file."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from rtl_core.analysis.claims import COMPACT, VERDICTS
from rtl_core.data.pack import read_arrays
from rtl_core.paths import output_root
from rtl_core.pipeline import reproduce
from rtl_core.report.notebooks import study_pages

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _imagefolder(pack: Path, dest: Path, members_from: str, per_class: int, offset: int = 0) -> Path:
    with zipfile.ZipFile(pack / "natural/imagenette_64/images.zip") as archive:
        names = archive.namelist()
        for label in ("000", "001", "002"):
            members = [n for n in names if n.startswith(f"{members_from}/{label}/")][offset : offset + per_class]
            for member in members:
                target = dest / f"class{label}" / Path(member).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    return dest


def _liver_pngs(pack: Path, dest: Path, scans: int = 10, per_scan: int = 4) -> Path:
    """MSD / LiTS liver slices (8-bit) and masks written as <scan>_<i>.png into images/ and masks/."""
    data = read_arrays(pack, "ct/msd_liver_slices_sarah")
    (dest / "images").mkdir(parents=True)
    (dest / "masks").mkdir()
    for scan in list(dict.fromkeys(data.groups))[:scans]:
        for i, row in enumerate(np.flatnonzero(data.groups == scan)[:per_scan]):
            name = f"s{str(scan).replace('_', '-')}_{i}.png"  # patient id before the first _
            Image.fromarray(np.asarray(data.images[row]).astype(np.uint8)).save(dest / "images" / name)
            mask = (np.asarray(data.masks[row]) > 0).astype(np.uint8) * 255
            Image.fromarray(mask).save(dest / "masks" / name)
    return dest


@pytest.fixture(scope="module")
def user_study(tmp_path_factory):
    from rtl_core.paths import data_root

    pack, root = data_root(), tmp_path_factory.mktemp("user_data")
    dicom = root / "my_ct_dicom"
    shutil.copytree(pack / "raw-samples/dicom_series_totalseg", dicom / "series")
    shutil.copytree(pack / "raw-samples/dicom_tcga", dicom / "tcga", ignore=shutil.ignore_patterns("*.csv"))
    _imagefolder(pack, root / "my_cls" / "train", "train", per_class=12)
    _imagefolder(pack, root / "my_cls" / "test", "train", per_class=6, offset=12)
    _imagefolder(pack, root / "my_photos", "train", per_class=12)  # = the task's train/ (from which val is carved)
    _liver_pngs(pack, root / "my_liver")
    # docs/data.md's example study, at smoke sizes (the DICOM pool has 24 slices: batches of 8).
    values = yaml.safe_load((EXAMPLES / "user_study.yaml").read_text())
    values.update(profile="smoke")
    values["pretrain"].update(batch_size=8, epochs=1)
    values["evaluate"].update(seeds=[42, 1])
    config = root / "study.yaml"
    config.write_text(yaml.safe_dump(values))
    mp = pytest.MonkeyPatch()
    mp.setenv("RTL_USER_DATA", str(root))
    report_dir = tmp_path_factory.mktemp("user_reports")
    try:
        reproduce(config_path=str(config), report_dir=report_dir)
        yield report_dir, config
    finally:
        mp.undo()


@pytest.mark.slow
def test_every_report_of_a_user_study_renders(user_study):
    user_study, config = user_study
    from rtl_core.config import load_config

    for spec in study_pages(load_config(None, config)):
        html = (user_study / f"{spec.name}.html").read_text()
        visible = re.sub(r'<script.*?</script>|srcdoc="[^"]*"', "", html, flags=re.S)
        assert "Traceback" not in visible and "Error:" not in visible, spec.name
        assert "my_study" in html, spec.name  # the provenance banner names the study
    assert "my_cls" in (user_study / "20_finetune.html").read_text()
    assert "my_seg" in (user_study / "23_segmentation.html").read_text()
    index = (user_study / "index.html").read_text()
    assert "study my_study" in index and "href='claims.json'" in index
    claims = json.loads((user_study / "claims.json").read_text())
    assert claims["meta"]["study"] == "my_study"
    assert (
        claims["meta"]["arms"]["ct"] == "ssl:my_ct:simclr"
        and claims["meta"]["arms"]["natural"] == "ssl:my_natural:simclr"
    )
    # the index page leads with the example's own two questions: their lines and verdicts before any paper claim
    questions = load_config(None, config).analysis.questions
    assert [q.id for q in questions] == ["ct_vs_photos", "ct_vs_scratch"]
    own_at = index.index("<h2>Questions of this study</h2>")
    paper_at = index.index("<h2>Claims: the paper")
    first_paper_row = re.search(r"<td>C\d+b?</td>", index)
    assert own_at < paper_at and (first_paper_row is None or first_paper_row.start() > paper_at)
    own = index[own_at:paper_at]
    columns = [c for c in COMPACT if not c.startswith("paper")]
    cells = [re.findall(r"<td>(.*?)</td>", tr, flags=re.S) for tr in own.split("<tr")]
    for q in questions:
        assert f"<td>{q.id}</td>" in own and escape(q.text) in own, q.id
        verdicts = [dict(zip(columns, c)) for c in cells if len(c) == len(columns) and c[0] == q.id]
        assert len(verdicts) == 2, q.id  # linear and finetune: each a verdict with its arm ahead, Δ, scope, K × D
        for v in verdicts:
            assert v["verdict"] in VERDICTS and v["scope"] in ("pretraining", "checkpoints"), v
            assert re.fullmatch(r"\d+(/\d+)? × \d+", v["K × D"]), v
            assert "–" not in (v["ahead"], v["Δ = A − B"]) and "Δ %" in v, v  # Δ %: '–' only where B's mean is 0
    summary = (user_study / "90_summary.html").read_text()
    section = summary[summary.index("Questions of this study") : summary.index("Claims at a glance")]
    assert all(q.id in section for q in questions) and "Variance components" in summary


@pytest.mark.slow
def test_a_user_study_keeps_its_artifacts_splits_and_pools_apart(user_study):
    out = output_root()
    records = sorted((out / "results" / "my_study").rglob("seed*.json"))
    assert {json.loads(p.read_text())["task"] for p in records} == {"my_cls", "my_seg"}
    assert len(records) == 2 * 3 * 3 * 2  # tasks × inits × protocols × seeds
    assert (out / "checkpoints" / "my_study" / "my_ct-simclr.pt").is_file()
    splits = {p.name.split("-")[0]: pd.read_csv(p) for p in (out / "splits" / "my_study").glob("*.csv")}
    assert set(splits) == {"my_cls", "my_seg"}
    seg = splits["my_seg"]
    assert seg.groupby("group")["split"].nunique().max() == 1  # grouped: no scan in two splits
    cls = splits["my_cls"]
    assert set(cls["split"]) == {"train", "val", "test"} and set(cls.loc[cls["split"] == "val", "label"]) == {0, 1, 2}
    sidecar = json.loads((out / "checkpoints" / "my_study" / "my_natural-simclr.json").read_text())
    assert sidecar["study"] == "my_study"
    # the natural pool is a copy of the task's train/ folder, from which the task carves val: those files stay out
    assert sidecar["pool_images"] == 36 - int((cls["split"] == "val").sum())
    record = json.loads(records[0].read_text())
    assert record["split_fingerprint"] and record["study"] == "my_study"


@pytest.mark.slow
def test_rtl_summary_lists_the_studys_own_pools_and_tasks(user_study, capsys):
    from rtl_core.cli import main

    _, config = user_study
    assert main(["summary", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "Study my_study" in out and "my_ct" in out and "task (segmentation)" in out
    from rtl_core.config import load_config
    from rtl_core.data.study import study_data_table

    table = study_data_table(load_config(None, config)).set_index("name")
    assert table.loc["my_natural", "held-out files left out"] > 0 and table.loc["my_ct", "images"] == 24
    assert "Study my_study: its own pools and tasks" in (user_study[0] / "00_data.html").read_text()


@pytest.mark.slow
def test_rtl_advise_ranks_the_inits_of_a_user_imagefolder_task_and_says_how_often_it_was_right(user_study, capsys):
    from rtl_core.cli import main

    report_dir, config = user_study
    summary = json.loads((output_root() / "analysis" / "my_study" / "advisor" / "summary.json").read_text())
    assert summary["advisor.cells"] == 2 * 3  # tasks × protocols of the finished grid
    assert 0.0 <= summary["advisor.top1"] <= 1.0 and "baseline_domain.top1" in summary
    assert "top-1" in (report_dir / "40_advisor.html").read_text()
    assert main(["advise", "--config", str(config), "--task", "my_cls"]) == 0
    out = capsys.readouterr().out
    assert "Recommended:" in out and "Validated on study 'my_study'" in out
    for init in ("scratch", "ssl:my_ct:simclr", "ssl:my_natural:simclr"):
        assert init in out


# --------------------------------------------------------------------------------------------- a linear-only study
def _digests(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _visible(html: str) -> str:
    return re.sub(r'<script.*?</script>|<style.*?</style>|srcdoc="[^"]*"', "", html, flags=re.S)


@pytest.mark.slow
def test_a_linear_only_user_study_reproduces_to_its_index_page_and_writes_nothing_into_the_repository(
    tmp_path, monkeypatch, capsys
):
    """`rtl reproduce --profile smoke --config linear_only.yaml`: an ImageFolder pool, an ImageFolder and a PNG
    slice task, `protocols: [linear]`, no `study:`. The study is named after its file, the reports follow it (one
    protocol page, its own data first, the advisor says its grid is too small, the paper's claims do not lead), the
    plan is printed with an estimate per stage, and everything lands under RTL_OUTPUT_DIR."""
    from rtl_core.cli import main
    from rtl_core.paths import REPO_REPORTS, data_root

    pack, root = data_root(), tmp_path / "user_data"
    _imagefolder(pack, root / "my_cls" / "train", "train", per_class=12)
    _imagefolder(pack, root / "my_cls" / "test", "train", per_class=4, offset=12)
    _imagefolder(pack, root / "my_photos", "train", per_class=12)
    _liver_pngs(pack, root / "my_liver")
    values = yaml.safe_load((EXAMPLES / "user_study.yaml").read_text())
    del values["study"], values["data"]["pools"]["my_ct"]
    values["pretrain"] = {"pools": ["my_natural"], "batch_size": 8, "epochs": 1}
    values["evaluate"].update(
        protocols=["linear"], seeds=[42, 1], inits=["scratch", "ssl:my_natural:simclr"], max_train_images=32
    )
    values["evaluate"]["init_details"].pop("ssl:my_ct:simclr")
    values["analysis"] = {"cka_images": 16, "embedding_images": 16}
    config = tmp_path / "linear_only.yaml"
    config.write_text(yaml.safe_dump(values))
    monkeypatch.setenv("RTL_USER_DATA", str(root))
    repository = _digests(REPO_REPORTS)

    assert main(["reproduce", "--profile", "smoke", "--config", str(config)]) == 0
    out = capsys.readouterr().out

    assert _digests(REPO_REPORTS) == repository  # reports/bench.json, claims.json untouched
    reports = output_root() / "reports" / "linear_only"  # named after its file, under RTL_OUTPUT_DIR
    assert (output_root() / "checkpoints" / "linear_only" / "my_natural-simclr.pt").is_file()
    assert not list((output_root() / "results" / "smoke").rglob("my_cls"))
    index = (reports / "index.html").read_text()
    assert "href='21_linear_eval.html'" in index and "href='23_segmentation.html'" in index
    for absent in ("20_finetune", "21_linear_bn_train", "22_low_label", "22_low_label_10"):
        assert f"href='{absent}.html'" not in index and not (reports / f"{absent}.html").exists()
    for page in reports.glob("*.html"):
        text = _visible(page.read_text())
        assert "Traceback" not in text and "Error:" not in text, page.name

    # the paper's claims do not lead: one line says none applies, no table of 'not run' rows
    assert "None of the paper&#x27;s" in index and "href='claims.json'" in index and "paper verdict" not in index
    summary = (reports / "90_summary.html").read_text()
    assert "None of the paper" in summary and "Not run in this study" in summary

    # the data page leads with the study's own pools and tasks: integers, no NaN, no index column
    data = _visible((reports / "00_data.html").read_text())
    own, demo = data.index("Study linear_only: its own pools and tasks"), data.index("The demo pack")
    assert own < demo and "uses none of the demo pack" in data
    table = data[own : data.index("</table>", own)]
    assert "my_cls" in table and "my_photos" in table and "my_seg" in table
    assert not re.search(r">\s*(NaN|nan|None)\s*<", table) and not re.search(r">\s*\d+\.0\s*<", table)
    assert not re.search(r"<tbody>\s*<tr>\s*<th", table)  # no pandas index column

    # the advisor's validation on 2 cells says it is too small instead of printing top-1 1.00
    advisor = _visible((reports / "40_advisor.html").read_text())
    assert "Too few cells to validate the advisor" in advisor and "2 task × protocol cell(s)" in advisor
    assert "Not validated on study 'linear_only'" in out

    # the plan: one line per stage with numbers, then each step's time beside its estimate
    plan = out[out.index("rtl reproduce: plan") :]
    for stage in ("pretrain", "evaluate", "analyze", "claims", "advise", "notebook"):
        assert re.search(rf"^  {stage} +\d+ of \d+ step\(s\) to do, ~\d+(\.\d)? (s|min|h)", plan, re.M), stage
    assert re.search(r"^  total +~\d+(\.\d)? (s|min|h) \(finishing around \d\d:\d\d", plan, re.M)
    assert "pairs/s" in plan and re.search(r"finished in \d+ s \(estimated ~[\d.]+ (s|min|h)\); .* to go", out)


def test_a_config_file_without_a_study_name_gets_its_own_study(tmp_path):
    """A user's smoke-sized config without `study:` must not write into the stock smoke study's folders or reports:
    it is named after its file."""
    from rtl_core.config import PROFILE_DIR, load_config, study_from_file
    from rtl_core.pipeline import report_dir_of

    mine = tmp_path / "my smoke-test.yaml"
    mine.write_text("profile: smoke\nevaluate: {epochs: 1}\n")
    config = load_config(None, mine)
    assert (config.profile, config.study) == ("smoke", "my_smoke-test")
    assert report_dir_of(config) == output_root() / "reports" / "my_smoke-test"
    (tmp_path / "smoke.yaml").write_text("evaluate: {epochs: 1}\n")
    assert load_config("smoke", tmp_path / "smoke.yaml").study == "smoke_config"
    mine.write_text("profile: smoke\nstudy: shared\n")
    assert load_config(None, mine).study == "shared"  # a name given is kept
    assert load_config(None, mine, overrides={"study": "other"}).study == "other"
    assert load_config("smoke").study == "smoke" and study_from_file(PROFILE_DIR / "smoke.yaml") == "smoke"
