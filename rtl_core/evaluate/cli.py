"""``rtl evaluate``: run the downstream grid of a profile (the comparison of inits is printed by :mod:`rtl_core.cli`).

    rtl evaluate --profile default [--config my.yaml] [--tasks ct_cls mri_cls] [--inits scratch ssl:ct:simclr]
                 [--protocols finetune] [--seeds 42 1] [--threads 2]
                 [--launcher local --workers 2 | --launcher submitit]

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
    p.add_argument(
        "--inits", nargs="+", default=None, help="subset of evaluate.inits (scratch, ssl:<pool>:<method>, …)"
    )
    p.add_argument("--protocols", nargs="+", default=None, help="subset of evaluate.protocols")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="subset of evaluate.seeds")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--launcher",
        choices=["inline", "local", "submitit"],
        default=None,
        help="inline (this process), local (--workers processes) or submitit (a SLURM job array); "
        "default: the config's launcher.kind",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="local launcher: worker processes (default launcher.workers)"
    )
    p.set_defaults(func=evaluate_command)  # rtl_core.cli adds the comparison printout
    return p


def evaluate_command(args: argparse.Namespace):
    """Run the grid the arguments name; returns the config and the :class:`~rtl_core.evaluate.runner.GridReport`
    (``rtl evaluate`` then prints the comparison of inits: :func:`rtl_core.cli`, which sits above analysis)."""
    import torch

    from rtl_core.config import load_config
    from rtl_core.errors import Interrupted
    from rtl_core.evaluate.runner import records_kept, run_grid
    from rtl_core.paths import results_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.profile, args.config)
    print(f"rtl evaluate: profile {config.profile} (config hash {config.hash()})")
    kind = args.launcher or config.launcher.kind
    try:
        if kind == "inline":
            report = run_grid(config, args.tasks, args.inits, args.protocols, args.seeds, progress=not args.no_progress)
        else:
            from rtl_core.evaluate.launch import launch
            from rtl_core.evaluate.runner import plan_grid

            keys = plan_grid(config, args.tasks, args.inits, args.protocols, args.seeds)
            report = launch(config, kind, args.workers, keys=keys)
    except Interrupted as exc:  # `rtl` prints it: which records a rerun keeps
        exc.kept = exc.kept or records_kept(results_dir(config.study))
        raise
    print(f"{report.summary()} ({report.wall_seconds:.0f} s, launcher {kind}); records in {report.root}")
    for key, where in report.failed:
        print(f"  failed: {key}: traceback in {where}")
    return config, report
