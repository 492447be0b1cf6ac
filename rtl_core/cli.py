"""``rtl``: the command line of rtl_core (``python -m rtl_core.cli`` works too).

Subcommands: ``summary`` (pools and tasks), ``splits`` (write split files), ``pretrain``, ``evaluate``, ``analyze``,
``claims`` (every declared question, the paper's claims and the study's own, judged on the study's runs, or
``--paper`` the paper's on its own runs), ``plan`` (the K × D each question needs, before running), ``export`` (an
encoder as safetensors + model card), ``reproduce`` (the
whole study on a profile, then the HTML reports), ``bench`` (benchmarks → reports/bench.json).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading

from rtl_core.errors import Interrupted, RtlError

log = logging.getLogger("rtl_core")


def _summary(args: argparse.Namespace) -> None:
    from rtl_core.data.summary import format_summary

    print(format_summary(split_seed=args.split_seed))
    if args.config:
        from rtl_core.config import load_config
        from rtl_core.data.study import format_study_data

        print("\n" + format_study_data(load_config(None, args.config)))


def _splits(args: argparse.Namespace) -> None:
    from rtl_core.data.registry import TASKS
    from rtl_core.data.summary import save_splits

    for name in TASKS:
        print(f"{name}: {save_splits(name, args.split_seed)}")


def _evaluate(args: argparse.Namespace) -> None:
    """``rtl evaluate``: the grid (:func:`rtl_core.evaluate.cli.evaluate_command`), then the comparison of inits."""
    import pandas as pd

    from rtl_core.analysis.questions import question_index, register_questions
    from rtl_core.analysis.stats import directed_comparisons, direction_table, summarize
    from rtl_core.evaluate.cli import evaluate_command
    from rtl_core.results import results_table

    config, report = evaluate_command(args)
    df = results_table(root=report.root)
    if register_questions(config, df):
        print(f"questions pre-registered with the study's first runs (analysis/{config.study}/preregistration.json)")
    chosen = set(args.tasks or config.evaluate.tasks), set(args.inits or config.evaluate.inits)
    df = df[df["task"].isin(chosen[0]) & df["init"].isin(chosen[1])]
    if df.empty:
        print("no results to summarise")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500):
        print("\nPrimary metric per task (mean, SD over seeds with ddof=1):")
        print(summarize(df[df["primary"]]).to_string(index=False))
        comparisons = directed_comparisons(df, config.evaluate.inits)
        if comparisons.empty:
            print("\n(no pair of inits has ≥ 2 seeds in a common group: no t-tests)")
        else:
            print(
                "\nInit comparisons, B vs A (A = the earlier init of evaluate.inits; Δ = B − A, so Δ > 0 means B "
                "scores higher). Every p here is Welch's, UNCORRECTED for multiple comparisons; a comparison "
                "'judged in' a declared question is corrected with Holm over that question's cells by `rtl claims`, "
                "the 'exploratory' ones are not corrected anywhere:"
            )
            print(direction_table(comparisons, question_index(config)).to_string(index=False))


def _reproduce(args: argparse.Namespace) -> None:
    from rtl_core.pipeline.run import reproduce

    overrides = {}
    if args.launcher or args.workers:
        overrides["launcher"] = {k: v for k, v in (("kind", args.launcher), ("workers", args.workers)) if v}
    reproduce(
        args.profile,
        args.config,
        show_code=args.show_code,
        pages=args.pages,
        **({"overrides": overrides} if overrides else {}),
    )


def _analyze(args: argparse.Namespace) -> None:
    from rtl_core.analysis.study import analyze
    from rtl_core.config import load_config

    out = analyze(load_config(args.profile, args.config), force=args.force)
    print(f"analysis tables in {out}")


def _claims(args: argparse.Namespace) -> None:
    import pandas as pd

    from rtl_core.analysis import claims
    from rtl_core.config import load_config

    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 60)
    if args.paper:
        config = load_config(args.profile, args.config)
        rows = claims.judge_paper(alpha=config.analysis.alpha, margin_pct=config.analysis.equivalence_margin)
        print(
            f"The paper's own runs (paper_runs.csv), judged by rtl_core's rule (α {config.analysis.alpha}, "
            f"equivalence margin ±{config.analysis.equivalence_margin:g} %, Holm within each claim):"
        )
        table = claims.display_table(rows, paper=False)
        print(table.drop(columns=["why"]).to_string(index=False))
        print("\nWhy:")
        for r in rows.itertuples():
            print(f"  {r.claim} {r.task} {r.protocol} {r.metric}: {r.verdict}: {r.reason}")
        return
    config = load_config(args.profile, args.config)
    rows, path = claims.study_claims(config)
    print(claims.display_table(rows)[claims.COMPACT].to_string(index=False))
    own = {q.id for q in config.analysis.questions}
    if own:
        print("\nThe study's own questions:")
        for r in rows[rows["claim"].isin(own)].itertuples():
            print(f"  {r.claim} {r.task} {r.protocol} {r.metric}: {r.verdict} [{r.scope}]: {r.reason}")
    flagged = rows[rows["flags"].fillna("").astype(bool)]
    if len(flagged):
        print("\nFlags:")
        for r in flagged.itertuples():
            print(f"  {r.claim} {r.task} {r.protocol} {r.metric}: {r.flags}")
    print(f"\nclaims written to {path} (reasons in the 'reason' field; `rtl claims --paper` for the paper alone)")


def _plan(args: argparse.Namespace) -> None:
    """``rtl plan``: the K × D each declared question needs for 80 % power at its margin, from a pilot."""
    from rtl_core.analysis.plan import format_plan, plan_study
    from rtl_core.config import load_config

    config = load_config(args.profile, args.config)
    designs, pilots = plan_study(config, encoder_cost=args.encoder_cost, power=args.power)
    print(
        f"Plan for study {config.study}: K pretraining runs per replicated arm × D downstream seeds per encoder, "
        f"{args.power:.0%} power at each question's declared margin, level α / m (m = its declared cells):"
    )
    print(format_plan(designs, pilots, args.power))


def _advise(args: argparse.Namespace) -> None:
    import pandas as pd

    from rtl_core.analysis import advisor
    from rtl_core.config import load_config

    config = load_config(args.profile, args.config)
    table = advisor.advise(config, args.task, args.inits or None)
    pd.set_option("display.width", 250)
    columns = ["advisor_rank", "init", "domain", "knn", "probe", "logme", "domain_distance", "seconds"]
    print(
        f"Transfer advisor, task {args.task} ({int(table['n_images'].iloc[0])} training images, one forward pass each):"
    )
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    best = advisor.recommendation(table)
    print(
        f"\nRecommended: {best['best']} (runner-up {best['runner_up']}, mean-rank margin "
        f"{best['margin_mean_rank']:.2f}; "
        f"top by {', '.join(best['agree']) or 'no single score'})"
    )
    print(advisor.validation_note(config))


def _export(args: argparse.Namespace) -> None:
    from rtl_core.config import load_config
    from rtl_core.report.export import WEIGHTS_NAME, export_encoder

    out = export_encoder(load_config(args.profile, args.config), args.init, args.out)
    print(f"exported {args.init}: {out / WEIGHTS_NAME} and its model card {out / 'README.md'}")


def _bench(args: argparse.Namespace) -> None:
    from rtl_core.bench import (
        advisor_section,
        bench_json,
        cka_section,
        data_bench,
        evaluate_bench,
        gpu_pretrain_bench,
        merge_figures,
        pool_bench,
        pretrain_bench,
        stream_bench,
    )

    sections = {
        "data": data_bench.run,
        "data_pool": pool_bench.run,
        "data_stream": stream_bench.run,
        "pretrain": pretrain_bench.run,
        "evaluate": evaluate_bench.run,
        "cka": cka_section.run,
        "advisor": advisor_section.run,
        "gpu": gpu_pretrain_bench.run,
        "grid_full": evaluate_bench.grid_full,
    }
    import time

    import torch

    from rtl_core.provenance import git_commit, machine

    info = machine()
    context = {
        "bench.machine": f"{info['platform']}, {info['cpus']} CPUs" + (f", {info['gpus']}" if "gpus" in info else ""),
        "bench.git_commit": git_commit()[:12],
        "bench.measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    chosen = args.only or [
        name for name in sections if (name != "gpu" or torch.cuda.is_available()) and name != "grid_full"
    ]
    for name in chosen:
        figures = sections[name]()
        merge_figures({**figures, **context})
    print(f"figures written to {bench_json()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtl", description="CT vs natural-image pretraining, measured.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print every pool and task with sizes and splits")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--config", default=None, help="a study config: its own pools and tasks are listed too")
    p.set_defaults(func=_summary)
    p = sub.add_parser("splits", help="write every task's split to artifacts/splits/")
    p.add_argument("--split-seed", type=int, default=0)
    p.set_defaults(func=_splits)
    p = sub.add_parser("reproduce", help="run the demo study on a profile")
    p.add_argument("--profile", default=None, help="smoke | default | paper (default: the config's, else default)")
    p.add_argument("--config", default=None, help="a YAML config overriding the profile")
    p.add_argument("--show-code", action="store_true", help="show notebook code in the HTML reports")
    p.add_argument(
        "--launcher",
        choices=["inline", "local", "submitit"],
        default=None,
        help="where the evaluation grid runs (default: the config's launcher.kind)",
    )
    p.add_argument("--workers", type=int, default=None, help="local launcher: worker processes")
    p.add_argument(
        "--pages", nargs="+", default=None, help="render only these report pages, e.g. 90_summary (default: every page)"
    )
    p.set_defaults(func=_reproduce)
    from rtl_core.evaluate.cli import add_evaluate_parser
    from rtl_core.pretrain.cli import add_pretrain_parser

    add_pretrain_parser(sub)
    add_evaluate_parser(sub).set_defaults(func=_evaluate)
    p = sub.add_parser("analyze", help="feature-space analysis (CKA, embeddings, probes) of a study's encoders")
    p.add_argument("--profile", default=None, help="smoke | default | paper (default: the config's, else default)")
    p.add_argument("--config", default=None)
    p.add_argument("--force", action="store_true", help="recompute even if the tables exist")
    p.set_defaults(func=_analyze)
    p = sub.add_parser(
        "claims", help="judge every claim of the paper on the study's runs (claims.json), or on the paper's"
    )
    p.add_argument("--profile", default=None, help="smoke | default | paper (default: the config's, else default)")
    p.add_argument("--config", default=None)
    p.add_argument("--paper", action="store_true", help="judge the paper's own runs (paper_runs.csv) instead")
    p.set_defaults(func=_claims)
    p = sub.add_parser(
        "plan", help="K pretraining runs × D seeds each declared question needs for 80 %% power, before running"
    )
    p.add_argument("--profile", default=None, help="smoke | default | paper (default: the config's, else default)")
    p.add_argument("--config", default=None)
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument(
        "--encoder-cost",
        type=float,
        default=20.0,
        help="one pretraining costs this many downstream runs (marks the cheapest design; default 20)",
    )
    p.set_defaults(func=_plan)
    p = sub.add_parser("advise", help="rank candidate inits for a task from one forward pass (transfer advisor)")
    p.add_argument("--task", required=True, help="a demo task or one of the config's own")
    p.add_argument("--inits", nargs="*", default=None, help="candidate inits (default: the config's evaluate.inits)")
    p.add_argument("--profile", default=None)
    p.add_argument("--config", default=None)
    p.set_defaults(func=_advise)
    p = sub.add_parser("export", help="an encoder of the study as safetensors + model card, to share or publish")
    p.add_argument("--init", required=True, help="ssl:<pool>:<method> or sequential:<pool>:<method>")
    p.add_argument("--profile", default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--out", default=None, help="folder (default artifacts/exports/<profile>/<init>/)")
    p.set_defaults(func=_export)
    p = sub.add_parser("bench", help="benchmarks; figures merged into reports/bench.json")
    p.add_argument(
        "--only",
        nargs="*",
        choices=["data", "data_pool", "data_stream", "pretrain", "evaluate", "cka", "advisor", "gpu", "grid_full"],
        help="run only these sections (data_pool: a user pool of 1 M files resolved for pretraining; data_stream: "
        "one loader worker per pool format; gpu: the paper profile's pretraining step on one CUDA GPU; grid_full: "
        "the whole default grid on the old and the new path, ~15 min, not run by default)",
    )
    p.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with signals_interrupt():
            args.func(args)
    except RtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(interrupted_line(args.command, exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # a SIGINT before the handlers were set
        print(interrupted_line(args.command, Interrupted(signal.SIGINT)), file=sys.stderr)
        return 128 + signal.SIGINT
    return 0


#: What a stopped command keeps, where the code it stopped in says nothing more precise.
KEPT = {
    "pretrain": "every encoder finished before the signal (and the pretraining's last.ckpt, if one was written)",
    "evaluate": "every finished run's record",
    "reproduce": "every step finished before the signal",
}


def interrupted_line(command: str, exc: Interrupted) -> str:
    """The one line a stopped command prints: which signal, where, what was kept, and that a rerun resumes."""
    where = f" during {exc.where}" if exc.where else ""
    kept = exc.kept or KEPT.get(command, "what finished before the signal")
    return (
        f"rtl {command}: stopped by {exc.signal_name}{where}; kept {kept}; "
        f"rerun the same command to resume (exit {exc.exit_code})"
    )


@contextlib.contextmanager
def signals_interrupt():
    """While the block runs, SIGTERM and SIGINT raise :class:`~rtl_core.errors.Interrupted` (exit 143 / 130
    instead of Lightning's exit 0 on SIGTERM); the previous handlers come back afterwards. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame) -> None:
        raise Interrupted(signum)

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    for signum in previous:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
