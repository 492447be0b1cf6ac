"""The package's shape (docs/architecture.md): imports point one way, from a stage to the stages below it, and no
two modules import each other, directly or around a loop; function-local imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rtl_core"
NOTEBOOKS = PACKAGE.parent / "notebooks"

#: Stages from the bottom up. A stage imports only stages of a lower rank (its own modules aside); stages of one
#: rank know nothing of each other (data and models; pretraining and the results store).
RANKS = {
    "errors": 0,
    "paths": 1,
    "io": 2,
    "leases": 2,
    "provenance": 2,
    "names": 3,
    "config": 4,
    "data": 5,
    "models": 5,
    "pretrain": 6,
    "results": 6,
    "evaluate": 7,
    "analysis": 8,
    "report": 9,
    "pipeline": 10,
    "bench": 11,
    "cli": 12,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    """The rtl_core modules a file imports anywhere in it (``from a.b import c`` counts a.b and a.b.c if c is a
    module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rtl_core"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & known


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rtl_core"


MODULES = _modules()
GRAPH = {name: _imports(path, set(MODULES)) - {name} for name, path in MODULES.items()}


def test_every_stage_has_a_rank():
    assert {_stage(m) for m in MODULES} - {"rtl_core"} == set(RANKS)


def test_imports_point_down_the_stages():
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if _stage(a) != "rtl_core" and _stage(a) != _stage(b) and RANKS[_stage(b)] >= RANKS[_stage(a)]
    )
    assert upward == [], "imports against the stage order (tests/test_architecture.py RANKS):\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    """Tarjan's strongly connected components over the whole import graph: each must be one module."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("planted", ["rtl_core.analysis.stats"])
def test_the_check_sees_an_upward_import(planted, tmp_path):
    """The checker itself: a data module importing an analysis module is reported."""
    fake = tmp_path / "mod.py"
    fake.write_text(f"def f():\n    from {planted} import format_p\n")
    assert _imports(fake, set(MODULES)) == {planted}
    assert RANKS[_stage(planted)] > RANKS["data"]


def test_benchmarks_live_only_in_bench():
    """One job per room (issue 27): a benchmark module (``*bench*``) outside ``rtl_core/bench/`` is misplaced."""
    misplaced = sorted(m for m in MODULES if "bench" in m.split(".")[-1] and _stage(m) != "bench")
    assert misplaced == [], f"benchmarks outside rtl_core/bench/: {misplaced}"


def test_notebook_views_live_only_in_report_views():
    """One job per room (issue 27): what a notebook shows is built under ``rtl_core/report/views/``; no other stage
    has a views module, and a notebook imports nothing from the stages below analysis (it reads their outputs
    through a view)."""
    misplaced = sorted(
        m for m in MODULES if m.split(".")[-1] in ("views", "overview") and not m.startswith("rtl_core.report.views")
    )
    assert misplaced == [], f"notebook views outside rtl_core/report/views/: {misplaced}"
    sources = sorted(NOTEBOOKS.glob("*.py"))
    assert sources, f"no notebook sources in {NOTEBOOKS}"
    below = sorted(
        f"{source.name} -> {module}"
        for source in sources
        for module in _imports(source, set(MODULES))
        if _stage(module) == "rtl_core" or RANKS[_stage(module)] < RANKS["analysis"]
    )
    assert below == [], "notebooks importing from below analysis (use rtl_core.report.views):\n" + "\n".join(below)


def test_reproduce_sits_above_the_report_stage():
    """``rtl reproduce`` drives every stage, so it lives at the CLI's level (``rtl_core/pipeline/``), not in report."""
    assert RANKS["report"] < RANKS["pipeline"] < RANKS["cli"]
    defines = sorted(
        name
        for name, path in MODULES.items()
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name == "reproduce"
    )
    assert defines == ["rtl_core.pipeline.run"]


@pytest.mark.parametrize("stage", ["analysis", "report", "pipeline"])
def test_rooms_of_the_upper_stages_stay_small(stage):
    """No module of these stages over 500 lines (issue 27: split a module by job before it grows past that)."""
    sizes = {m: len(MODULES[m].read_text().splitlines()) for m in MODULES if _stage(m) == stage}
    assert sizes, f"no modules in stage {stage}"
    large = sorted(f"{m}: {n} lines" for m, n in sizes.items() if n > 500)
    assert large == [], f"modules over 500 lines in {stage}: {large}"
