"""``rtl``: the command line of rtl_core (``python -m rtl_core.cli`` works too).

Subcommands: ``summary`` (pools and tasks), ``splits`` (write split files), ``pretrain``, ``evaluate``, ``analyze``,
``claims`` (every claim of the paper judged on the study's runs, or ``--paper`` on the paper's), ``export`` (an
encoder as safetensors + model card), ``reproduce`` (the
whole study on a profile, then the HTML reports), ``bench`` (benchmarks → reports/bench.json).
"""

from __future__ import annotations

import argparse
import logging
import sys

from rtl_core.errors import RtlError

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

    from rtl_core.analysis.stats import compare_all, paper_table, summarize
    from rtl_core.evaluate.cli import evaluate_command
    from rtl_core.results import results_table

    config, report = evaluate_command(args)
    df = results_table(root=report.root)
    chosen = set(args.tasks or config.evaluate.tasks), set(args.inits or config.evaluate.inits)
    df = df[df["task"].isin(chosen[0]) & df["init"].isin(chosen[1])]
    if df.empty:
        print("no results to summarise")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500):
        print("\nPrimary metric per task (mean, SD over seeds with ddof=1):")
        print(summarize(df[df["primary"]]).to_string(index=False))
        comparisons = compare_all(df)
        if comparisons.empty:
            print("\n(no pair of inits has ≥ 2 seeds in a common group: no t-tests)")
        else:
            print(
                "\nInit comparisons (Welch t-test as in the paper, uncorrected; `rtl claims` judges each claim "
                "with Holm within its family):"
            )
            print(paper_table(comparisons, digits=4).drop(columns=["p (Holm)", "p (BH)"]).to_string(index=False))


def _reproduce(args: argparse.Namespace) -> None:
    from rtl_core.report.pipeline import reproduce

    overrides = {}
    if args.launcher or args.workers:
        overrides["launcher"] = {k: v for k, v in (("kind", args.launcher), ("workers", args.workers)) if v}
    reproduce(args.profile, args.config, show_code=args.show_code, **({"overrides": overrides} if overrides else {}))


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
    print(f"\nclaims written to {path} (reasons in the 'reason' field; `rtl claims --paper` for the paper alone)")


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
        BENCH_JSON,
        advisor_section,
        cka_section,
        data_bench,
        evaluate_bench,
        gpu_pretrain_bench,
        merge_figures,
        pretrain_bench,
    )

    sections = {
        "data": data_bench.run,
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
    print(f"figures written to {BENCH_JSON}")


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
        choices=["data", "pretrain", "evaluate", "cka", "advisor", "gpu", "grid_full"],
        help="run only these sections (gpu: the paper profile's pretraining step on one CUDA GPU; grid_full: "
        "the whole default grid on the old and the new path, ~15 min, not run by default)",
    )
    p.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except RtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
