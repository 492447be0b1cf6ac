"""``rtl reproduce``: the whole study on one profile, each step skipped when it is already done.

Steps: data splits → pretraining (each pool × method) → evaluation grid → feature-space analysis → claims
(``claims.json``, copied to ``reports/``) → notebooks (papermill) → HTML (nbconvert) → ``reports/index.html``.
``reports/`` is :func:`rtl_core.paths.reports_dir`: ``$RTL_OUTPUT_DIR/reports`` when that is set (nothing is written
into the repository then), else the repository's. The pages follow the study (:func:`study_pages`).
After the data step a plan is printed: a short calibration on this machine and an estimate per stage
(:mod:`rtl_core.pipeline.eta`); each finished step prints its time beside its estimate and the time left.
Progress is printed per step; a failing notebook names its cell and
where its partial output is. Wall time and peak memory are printed, put on the index page and merged into
``reports/bench.json`` (``reproduce.wall_minutes``, ``reproduce.peak_rss_mb``).
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rtl_core.config import StudyConfig, load_config
from rtl_core.errors import ConfigError, Interrupted, RtlError
from rtl_core.io import atomic_write, write_json
from rtl_core.paths import checkpoints_dir, results_dir, study_dir
from rtl_core.report.notebooks import NOTEBOOK_DIR, execute_page, study_pages, to_html


@dataclass
class Step:
    name: str
    run: Callable[[], None]
    done: Callable[[], bool] = lambda: False
    what: tuple = ()  # what the step works on (pretrain: pool, method, sequential, replicate; notebook: page)

    @property
    def stage(self) -> str:
        """data / pretrain / evaluate / analyze / claims / advise / notebook."""
        return self.name.split(":")[0].split()[0]


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its finished children (notebook kernels), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _fingerprint(config: StudyConfig, roots: list[Path]) -> str:
    """Changes whenever a file below ``roots`` or the config changes (so stale outputs are redone)."""
    digest = hashlib.sha256(config.hash().encode())
    for root in roots:
        if root.exists():
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    stat = path.stat()
                    digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _compute_roots(config: StudyConfig) -> list[Path]:
    return [study_dir("results", config.study), checkpoints_dir(config.study)]


def _inputs_fingerprint(config: StudyConfig) -> str:
    """What the notebooks read: results, checkpoints, analysis tables, the notebooks themselves, the config."""
    return _fingerprint(
        config,
        _compute_roots(config) + [study_dir("analysis", config.study), NOTEBOOK_DIR],
    )


def chosen_pages(config: StudyConfig, pages: Sequence[str] | None = None) -> list:
    """The study's report pages (:func:`~rtl_core.report.notebooks.study_pages`), or only those named in ``pages``
    (e.g. ``["21_linear_eval", "90_summary"]`` to refresh two pages); an unknown name is a :class:`ConfigError`
    naming the study's pages."""
    specs = study_pages(config)
    if pages is None:
        return specs
    known = {spec.name for spec in specs}
    unknown = [name for name in pages if name not in known]
    if unknown:
        raise ConfigError(f"no report page {', '.join(unknown)} in study {config.study}; its pages: {sorted(known)}")
    return [spec for spec in specs if spec.name in set(pages)]


def notebook_steps(
    config: StudyConfig,
    report_dir: Path,
    show_code: bool,
    config_path: str | None = None,
    pages: Sequence[str] | None = None,
) -> list[Step]:
    executed_dir = study_dir("notebooks", config.study)
    stamp_dir = study_dir("report_stamps", config.study)
    parameters = {"profile": config.profile, "config": str(Path(config_path).resolve()) if config_path else ""}
    steps = []
    for spec in chosen_pages(config, pages):
        html_path = report_dir / f"{spec.name}.html"
        stamp = stamp_dir / f"{spec.name}.json"

        def run(spec=spec, html_path=html_path, stamp=stamp) -> None:
            executed = execute_page(spec, parameters, executed_dir)
            to_html(executed, html_path, show_code=show_code)
            write_json(stamp, {"inputs": _inputs_fingerprint(config), "show_code": show_code})

        def done(html_path=html_path, stamp=stamp) -> bool:
            if not (html_path.is_file() and stamp.is_file()):
                return False
            recorded = json.loads(stamp.read_text())
            return recorded == {"inputs": _inputs_fingerprint(config), "show_code": show_code}

        steps.append(Step(f"notebook {spec.name} → reports/{html_path.name}", run, done, (spec.name,)))
    return steps


def study_steps(config: StudyConfig, threads: int | None = 1) -> list[Step]:
    """Data → pretraining (every pool × method the inits need) → evaluation grid → feature-space analysis."""
    from rtl_core.data.study import save_task_split, task_names

    steps = [
        Step("data: save every task's split", lambda: [save_task_split(config, name) for name in task_names(config)])
    ]
    needed: list[tuple[str, str, bool, int]] = []
    from rtl_core.names import parse_init

    for name in config.evaluate.inits:
        init = parse_init(name)
        if init.ours:  # torchvision: and file: inits come ready-made; replicate r of sequential needs natural's r
            for r in range(config.pretrain.replicates_of(name)):
                if init.kind == "sequential":
                    needed.append(("natural", init.method, False, r))
                needed.append((init.pool, init.method, init.kind == "sequential", r))
    for pool in config.pretrain.pools:
        for method in config.pretrain.methods:
            needed += [(pool, method, False, r) for r in range(config.pretrain.replicates_of(f"ssl:{pool}:{method}"))]
    for pool, method, sequential, replicate in sorted(dict.fromkeys(needed), key=lambda n: n[3]):
        steps.append(_pretrain_step(config, pool, method, sequential, replicate))
    steps.append(Step("evaluate: downstream grid (finished runs are skipped)", lambda: _evaluate(config, threads)))
    steps.append(
        Step(
            "analyze: CKA, embeddings, probes, who knew what", lambda: _analyze(config), lambda: _analysis_done(config)
        )
    )
    steps.append(
        Step(
            "claims: every claim of the paper, judged on our runs and on the paper's (claims.json)",
            lambda: _claims(config),
            lambda: _claims_done(config),
        )
    )
    steps.append(
        Step(
            "advise: the transfer advisor's ranking of the inits per task, validated on the grid",
            lambda: _advise(config),
            lambda: _advise_done(config),
        )
    )
    return steps


def _advise_inputs(config: StudyConfig) -> str:
    from rtl_core.analysis.advisor import ADVISOR_VERSION

    return f"{_analysis_fingerprint(config)}:v{ADVISOR_VERSION}"


def _advise_done(config: StudyConfig) -> bool:
    from rtl_core.analysis.advisor import load_study_advice

    _, _, summary = load_study_advice(config)
    return summary.get("inputs") == _advise_inputs(config)


def _advise(config: StudyConfig) -> None:
    from rtl_core.analysis.advisor import advisor_dir, bench_figures, study_advice, validated_line
    from rtl_core.io import merge_figures, write_json

    _, _, summary = study_advice(config)
    summary["inputs"] = _advise_inputs(config)
    write_json(advisor_dir(config) / "summary.json", summary)
    print("  " + validated_line(summary, config.study))
    if config.study == "default" and config.profile == "default":  # the demo study's figures (docs/advisor.md)
        merge_figures(bench_figures(summary), report_dir_of(config) / "bench.json")


def _claims_inputs(config: StudyConfig) -> str:
    from rtl_core.analysis.claims import CLAIMS_VERSION

    return f"{_analysis_fingerprint(config)}:v{CLAIMS_VERSION}"


def _claims_done(config: StudyConfig) -> bool:
    from rtl_core.analysis.claims import claims_path

    path = claims_path(config.study)
    try:
        return path.is_file() and json.loads(path.read_text())["meta"].get("inputs") == _claims_inputs(config)
    except (json.JSONDecodeError, KeyError, TypeError):
        return False


def _claims(config: StudyConfig) -> None:
    from rtl_core.analysis.claims import study_claims

    rows, path = study_claims(config, inputs=_claims_inputs(config))
    counts = rows["verdict"].value_counts()
    print("  " + ", ".join(f"{verdict} {n}" for verdict, n in counts.items()) + f"; {path}")


def _pretrain_step(config: StudyConfig, pool: str, method: str, sequential: bool, replicate: int = 0) -> Step:
    from rtl_core.pretrain.train import existing_encoder, pretrain

    label = f"pretrain: {method} on {'natural → ' if sequential else ''}{pool}"
    label += f" (replicate {replicate})" if replicate else ""
    return Step(
        label,
        lambda: pretrain(config, pool, method, sequential=sequential, replicate=replicate),
        lambda: existing_encoder(config, pool, method, sequential, replicate) is not None,
        (pool, method, sequential, replicate),
    )


def _evaluate(config: StudyConfig, threads: int | None) -> None:
    import torch

    from rtl_core.evaluate.launch import launch

    before = torch.get_num_threads()
    if threads and config.launcher.kind == "inline":
        torch.set_num_threads(threads)
    try:
        report = launch(config, progress=True)
    except Interrupted as exc:
        from rtl_core.evaluate.runner import records_kept

        exc.kept = exc.kept or records_kept(results_dir(config.study))
        raise
    finally:
        torch.set_num_threads(before)  # the caller's (a notebook kernel, a test session) thread count comes back
    print(f"  {report.summary()} (launcher {config.launcher.kind})")
    if report.failed:
        raise RtlError(f"{len(report.failed)} run(s) failed; tracebacks: " + "; ".join(w for _, w in report.failed[:5]))
    if report.busy:
        raise RtlError(
            f"{len(report.busy)} run(s) are held by other live workers (lease files beside their records); "
            f"rerun when those finish, or after launcher.stale_seconds if they died: {report.busy[:3]}"
        )


def _analysis_fingerprint(config: StudyConfig) -> str:
    return _fingerprint(config, _compute_roots(config))


def _analysis_done(config: StudyConfig) -> bool:
    from rtl_core.analysis.study import ANALYSIS_VERSION

    stamp = study_dir("analysis", config.study) / "inputs.json"
    return stamp.is_file() and json.loads(stamp.read_text()) == {
        "inputs": _analysis_fingerprint(config),
        "version": ANALYSIS_VERSION,
    }


def _analyze(config: StudyConfig) -> None:
    from rtl_core.analysis.study import ANALYSIS_VERSION, analyze

    out = analyze(config, force=True)
    write_json(out / "inputs.json", {"inputs": _analysis_fingerprint(config), "version": ANALYSIS_VERSION})


def _summary(config: StudyConfig):
    """The claims table for the index page: the rows that apply to the study (None before ``rtl claims`` ran or
    when none applies; :func:`_claims_note` says which were not run)."""
    from rtl_core.analysis.claims import COMPACT, display_table, load_claims
    from rtl_core.report.views.verdicts import split_claims

    applies, _ = split_claims(load_claims(config.study))
    return display_table(applies)[COMPACT] if len(applies) else None


def _overview(config: StudyConfig):
    """One line per claim that applies to the study, for the index page: statement, our verdicts, the paper's."""
    from rtl_core.analysis.claims import claim_overview, load_claims
    from rtl_core.report.views.verdicts import split_claims

    applies, _ = split_claims(load_claims(config.study))
    return claim_overview(applies) if len(applies) else None


def _claims_note(config: StudyConfig) -> str | None:
    """The index page's line on the paper's claims this study did not run (None when it ran them all)."""
    from rtl_core.analysis.claims import load_claims
    from rtl_core.report.views.verdicts import not_run_note

    return not_run_note(load_claims(config.study), where="in claims.json and 90 · Summary")


def _plan(config: StudyConfig, steps: list[Step], first: int, threads: int | None):
    """Calibrate on this machine and print the plan: one line per stage with its estimate (steps before
    ``first`` are done). An estimate that cannot be made is said and skipped: it never stops the study."""
    from rtl_core.pipeline.eta import Plan
    from rtl_core.pipeline.eta import plan as estimate

    try:
        plan = estimate(
            config,
            [(s.stage, s.name, s.what, i < first or s.done()) for i, s in enumerate(steps)],
            threads,
        )
    except (RtlError, OSError, ValueError, RuntimeError) as exc:
        print(f"rtl reproduce: no time estimate ({type(exc).__name__}: {exc})", flush=True)
        return Plan([], None)
    print("rtl reproduce: plan, " + "\n".join(plan.lines()), flush=True)
    return plan


def _progress(plan, index: int, start: float) -> str:
    """`` (estimated …); … elapsed, about … to go`` after step ``index``, from ``plan``."""
    from rtl_core.pipeline.eta import duration

    if plan is None or index >= len(plan.steps):
        return ""
    estimate = plan.steps[index].seconds
    said = f" (estimated ~{duration(estimate)})" if estimate is not None else ""
    elapsed, left = duration(time.perf_counter() - start), duration(plan.remaining_after(index))
    return f"{said}; {elapsed} elapsed, about {left} to go"


def _publish_claims(config: StudyConfig, report_dir: Path) -> None:
    """Copy the study's ``claims.json`` into the report folder (beside ``index.html``)."""
    import shutil

    from rtl_core.analysis.claims import claims_path
    from rtl_core.io import atomic_write

    source = claims_path(config.study)
    if source.is_file():
        atomic_write(report_dir / "claims.json", lambda tmp: shutil.copyfile(source, tmp))


def report_dir_of(config: StudyConfig) -> Path:
    """Where a study's HTML goes: ``reports/`` for a stock profile's own study, ``reports/<study>/`` otherwise (so
    studies never render over each other); ``reports/`` is :func:`rtl_core.paths.reports_dir` (under
    ``$RTL_OUTPUT_DIR`` when that is set)."""
    from rtl_core.paths import reports_dir

    return reports_dir() if config.study == config.profile else reports_dir() / config.study


def _resolved_config(config: StudyConfig) -> Path:
    """Write ``config`` (a profile, a file and overrides, resolved) to ``report_stamps/<study>/config.yaml`` for the
    notebooks, which load their study with :func:`load_config` in their own kernel; it loads back to the same hash."""
    import yaml

    path = study_dir("report_stamps", config.study, create=True) / "config.yaml"
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    if load_config(None, path).hash() != config.hash():
        raise RtlError(f"{path}: the resolved study does not load back to config {config.hash()}; this is a bug.")
    return path


def reproduce(
    profile: str | None = None,
    config_path: str | None = None,
    show_code: bool = False,
    report_dir: Path | None = None,
    threads: int | None = 1,
    overrides: dict | None = None,
    pages: Sequence[str] | None = None,
) -> dict[str, float]:
    """Run every step not yet done; return the wall time (minutes) and peak memory (MB). The profile is
    ``profile`` if given, else the config file's ``profile:``, else ``default``; ``pages`` renders only these
    report pages (default: every page of the study), and the index links only the pages rendered."""
    from rtl_core.io import merge_figures
    from rtl_core.report.index import build_index, read_bench

    start = time.perf_counter()
    config = load_config(profile, config_path, overrides)
    if overrides:  # the notebooks load the study from a file: give them the study as resolved here, overrides included
        config_path = str(_resolved_config(config))
    report_dir = Path(report_dir) if report_dir else report_dir_of(config)
    report_dir.mkdir(parents=True, exist_ok=True)
    steps = study_steps(config, threads) + notebook_steps(config, report_dir, show_code, config_path, pages)
    print(
        f"rtl reproduce: study {config.study} (profile {config.profile}), config {config.hash()}, {len(steps)} steps; "
        f"reports in {report_dir}"
    )
    skipped = 0
    stage_seconds: dict[str, float] = {}
    plan = None
    for number, step in enumerate(steps, start=1):
        if plan is None and step.stage != "data":  # after the data step: the sizes are known
            plan = _plan(config, steps, number - 1, threads)
        label = f"[{number}/{len(steps)}] {step.name}"
        if step.done():
            print(f"{label}: done already, skipped")
            skipped += 1
            continue
        print(f"{label} …", flush=True)
        t0 = time.perf_counter()
        try:
            step.run()
        except Interrupted as exc:  # `rtl` prints it: the reproduce stops here, saying what a rerun keeps
            exc.where = f"step {number}/{len(steps)} ({step.name})"
            before = {1: "", 2: "step 1 (done)"}.get(number, f"steps 1-{number - 1} (done)")
            exc.kept = "; ".join(filter(None, [before, exc.kept])) or "nothing yet"
            raise
        seconds = time.perf_counter() - t0
        stage = step.name.split(":")[0].split()[0]  # data / pretrain / evaluate / analyze / notebook
        stage_seconds[stage] = stage_seconds.get(stage, 0.0) + seconds
        print(f"{label}: finished in {seconds:.0f} s{_progress(plan, number - 1, start)}", flush=True)
    wall = (time.perf_counter() - start) / 60
    peak = peak_rss_mb()
    figures = {
        "reproduce.wall_minutes": round(wall, 2),
        "reproduce.peak_rss_mb": round(peak, 1),
        **{f"reproduce.{stage}_minutes": round(sec / 60, 2) for stage, sec in stage_seconds.items()},
    }
    stock_default = config.profile == "default" and config.study == "default" and config_path is None and not overrides
    if stock_default and skipped == 0:  # the benchmark figure is a complete run of the stock study from scratch
        merge_figures(figures, report_dir / "bench.json")
    elif stock_default:
        print(f"({skipped} step(s) were already done: this run's time is not recorded in reports/bench.json)")
    reports = [(f"{spec.name}.html", spec.title, spec.summary) for spec in chosen_pages(config, pages)]
    _publish_claims(config, report_dir)
    label = config.profile if config.study == config.profile else f"{config.profile}, study {config.study}"
    build_index(
        report_dir,
        reports,
        label,
        summary=_summary(config),
        overview=_overview(config),
        claims_note=_claims_note(config),
        bench=read_bench(report_dir),
        wall_minutes=wall,
        peak_rss_mb=peak,
        seeds=config.evaluate.seeds,
        complete_run=skipped == 0,
    )
    print(f"rtl reproduce: done in {wall:.1f} min, peak memory {peak:.0f} MB; open {report_dir / 'index.html'}")
    return figures
