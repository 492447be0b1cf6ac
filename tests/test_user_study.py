"""A user's own study end to end: `rtl reproduce --config` with an ImageFolder classification task, a PNG
slice + mask segmentation task, a DICOM pool and an ImageFolder pool, all built from real pack files copied
into those layouts; every report renders, the study's artifacts live under its own name, the splits are saved
and no pool holds a task's val/test file."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from rtl_core.data.pack import read_arrays
from rtl_core.paths import output_root
from rtl_core.report.notebooks import NOTEBOOKS
from rtl_core.report.pipeline import reproduce

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
    # README's example study, at smoke sizes (the DICOM pool has 24 slices: batches of 8).
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


def test_every_report_of_a_user_study_renders(user_study):
    user_study, _ = user_study
    for spec in NOTEBOOKS:
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
    assert "The study's own pools and tasks" in (user_study[0] / "00_data.html").read_text()


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
