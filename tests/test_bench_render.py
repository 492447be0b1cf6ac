"""docs/measurements.md's table is rendered from reports/bench.json (`python -m rtl_core.bench.render`), never
copied by hand: the docs hold exactly what the committed file renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtl_core.bench import render
from rtl_core.errors import DataError, OutputError

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "measurements.md"
BENCH = ROOT / "reports" / "bench.json"


def _block(text: str) -> str:
    start, end = text.index(render.BEGIN) + len(render.BEGIN), text.index(render.END)
    return text[start:end].strip("\n") + "\n"


def test_the_docs_table_is_what_bench_json_renders():
    figures = render.read_figures(BENCH)
    block = _block(DOC.read_text())
    assert block == render.render(figures), (
        "docs/measurements.md differs from reports/bench.json: run "
        "`python -m rtl_core.bench.render --update docs/measurements.md`"
    )
    # every figure is in the docs with its value
    for key in ("reproduce.wall_minutes", "pretrain.knn_ct_cls_mcnemar_p", "cka.speedup"):
        assert f"| `{key}` | {render._cell(figures[key])} |" in block


def test_a_section_with_its_own_provenance_gets_the_columns():
    figures = {
        "bench.machine": "host A, 2 CPUs",
        "bench.git_commit": "abc123",
        "bench.measured_at": "2026-12-03",
        "gpu.machine": "host B | H100",
        "gpu.git_commit": "def456",
        "gpu.pairs_per_s": 4123.456789,
        "cka.n_images": 5000.0,
        "cka.max_abs_diff": 1.5765166949677223e-14,
        "pretrain.precision": "bf16-mixed",
    }
    text = render.render(figures)
    assert text.startswith("4 figures. Last `make bench`: machine host A, 2 CPUs, commit abc123, date 2026-12-03.")
    assert "| key | value | machine | commit | date |" in text
    assert "| `gpu.pairs_per_s` | 4123.5 | host B \\| H100 | def456 |  |" in text
    assert "| `cka.n_images` | 5000 | host A, 2 CPUs | abc123 | 2026-12-03 |" in text
    assert "| `cka.max_abs_diff` | 1.5765e-14 |" in text and "| `pretrain.precision` | bf16-mixed |" in text
    assert "gpu.machine`" not in text and "bench.git_commit`" not in text
    plain = render.render({k: v for k, v in figures.items() if not k.startswith("gpu.")})
    assert "| key | value |\n" in plain and "machine |" not in plain


def test_update_rewrites_only_the_marked_block(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"data.load_seconds_total": 15.229}))
    doc = tmp_path / "m.md"
    doc.write_text(f"# M\n\nbefore\n\n{render.BEGIN}\nstale table\n{render.END}\n\nafter\n")
    assert render.main([str(bench), "--update", str(doc)]) == 0
    text = doc.read_text()
    assert "stale table" not in text and "| `data.load_seconds_total` | 15.229 |" in text
    assert text.startswith("# M\n\nbefore\n\n") and text.endswith(f"{render.END}\n\nafter\n")
    assert _block(text) == render.render(render.read_figures(bench))


def test_bad_inputs_name_the_file_and_the_fix(tmp_path, capsys):
    with pytest.raises(DataError, match="no such file.*make bench"):
        render.read_figures(tmp_path / "missing.json")
    broken = tmp_path / "bench.json"
    broken.write_text('{"a.b": 1,')
    with pytest.raises(DataError, match="not valid JSON"):
        render.read_figures(broken)
    broken.write_text("[1, 2]")
    with pytest.raises(DataError, match="expected a JSON object"):
        render.read_figures(broken)
    doc = tmp_path / "plain.md"
    doc.write_text("no markers here\n")
    with pytest.raises(OutputError, match="no generated block"):
        render.update(doc, {"a.b": 1})
    assert render.main([str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err
