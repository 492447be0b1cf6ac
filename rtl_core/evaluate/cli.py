"""``rtl evaluate``: run the downstream grid of a profile, then print the comparison of inits.

    rtl evaluate --profile default [--config my.yaml] [--tasks ct_cls mri_cls] [--inits scratch ssl:ct:simclr]
                 [--protocols finetune] [--seeds 42 1] [--threads 2] [--launcher local --workers 2 | --launcher submitit]

Finished runs are skipped, so the command resumes a killed grid; records go to ``artifacts/results/<profile>/``.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to an ``rtl`` parser's subparsers."""
    p = subparsers.add_parser("evaluate", help="fine-tune / linear / low-label / segmentation grid, one record per run")
    p.add_argument("--profile", default=None, help="smoke | default | paper (default: the config's, else default)")
    p.add_argument("--config", default=None, help="a YAML config overriding the profile")
    p.add_argument("--tasks", nargs="+", default=None, help="subset of evaluate.tasks")
    p.add_argument("--inits", nargs="+", default=None, help="subset of evaluate.inits (scratch, ssl:<pool>:<method>, …)")
    p.add_argument("--protocols", nargs="+", default=None, help="subset of evaluate.protocols")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="subset of evaluate.seeds")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--launcher", choices=["inline", "local", "submitit"], default=None,
                   help="inline (this process), local (--workers processes) or submitit (a SLURM job array); "
                        "default: the config's launcher.kind")
    p.add_argument("--workers", type=int, default=None, help="local launcher: worker processes (default launcher.workers)")
    p.set_defaults(func=evaluate_command)
    return p


def evaluate_command(args: argparse.Namespace) -> None:
    import pandas as pd
    import torch

    from rtl_core.analysis.stats import paper_table
    from rtl_core.config import load_config
    from rtl_core.evaluate.results import compare_all, results_table, summary
    from rtl_core.evaluate.runner import run_grid

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.profile, args.config)
    print(f"rtl evaluate: profile {config.profile} (config hash {config.hash()})")
    kind = args.launcher or config.launcher.kind
    if kind == "inline":
        report = run_grid(config, args.tasks, args.inits, args.protocols, args.seeds, progress=not args.no_progress)
    else:
        from rtl_core.evaluate.launch import launch
        from rtl_core.evaluate.runner import plan_grid

        keys = plan_grid(config, args.tasks, args.inits, args.protocols, args.seeds)
        report = launch(config, kind, args.workers, keys=keys)
    print(f"{report.summary()} ({report.wall_seconds:.0f} s, launcher {kind}); records in {report.root}")
    for key, where in report.failed:
        print(f"  failed: {key}: traceback in {where}")
    df = results_table(root=report.root)
    chosen = set(args.tasks or config.evaluate.tasks), set(args.inits or config.evaluate.inits)
    df = df[df["task"].isin(chosen[0]) & df["init"].isin(chosen[1])]
    if df.empty:
        print("no results to summarise")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500):
        print("\nPrimary metric per task (mean, SD over seeds with ddof=1):")
        print(summary(df).to_string(index=False))
        comparisons = compare_all(df)
        if comparisons.empty:
            print("\n(no pair of inits has ≥ 2 seeds in a common group: no t-tests)")
        else:
            print("\nInit comparisons (Welch t-test as in the paper, uncorrected; `rtl claims` judges each claim "
                  "with Holm within its family):")
            print(paper_table(comparisons, digits=4).drop(columns=["p (Holm)", "p (BH)"]).to_string(index=False))
