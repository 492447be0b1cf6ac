"""``rtl pretrain``: SSL pretraining from the command line (wired into :mod:`rtl_core.cli`).

    rtl pretrain --pool ct --method simclr --profile default [--config file.yaml] [--sequential] [--force]
                 [--replicate 0 1 2]

Without ``--pool``/``--method`` it trains every pool and method the config lists (``pretrain.pools``,
``pretrain.methods``), and every replicate of each (``pretrain.replicates``) unless ``--replicate`` picks some (one
SLURM job per replicate, say). An existing encoder for the same settings is skipped; a killed run resumes.
"""

from __future__ import annotations

import argparse


def add_pretrain_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``pretrain`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("pretrain", help="self-supervised pretraining of a ResNet encoder on a pool")
    p.add_argument("--pool", nargs="*", default=None, help="pool name(s); default: pretrain.pools of the config")
    p.add_argument("--method", nargs="*", default=None, help="SSL method(s): simclr, moco, byol, vicreg, dino")
    p.add_argument("--profile", default=None, help="smoke | default | paper (default: the config's, else default)")
    p.add_argument("--config", default=None, help="a YAML config overriding the profile")
    p.add_argument(
        "--sequential", action="store_true", help="continue from the natural encoder (init sequential:<pool>:<method>)"
    )
    p.add_argument(
        "--force", action="store_true", help="retrain even if the encoder exists (discards the run's last.ckpt)"
    )
    p.add_argument("--epochs", type=int, default=None, help="override pretrain.epochs")
    p.add_argument(
        "--replicate",
        type=int,
        nargs="*",
        default=None,
        help="which replicate(s) of each arm to train (0 … K-1); default: all K of pretrain.replicates",
    )
    p.set_defaults(func=run_pretrain_command)
    return p


def run_pretrain_command(args: argparse.Namespace) -> list:
    from rtl_core.config import load_config
    from rtl_core.errors import ConfigError, Interrupted
    from rtl_core.pretrain.train import check_request, pretrain

    overrides = {"pretrain": {"epochs": args.epochs}} if args.epochs else None
    config = load_config(args.profile, args.config, overrides)
    pools = args.pool or config.pretrain.pools
    methods = args.method or config.pretrain.methods
    kind = "sequential" if args.sequential else "ssl"
    jobs = []
    for pool in pools:  # fail on a bad name before any training starts
        for method in methods:
            check_request(config, pool, method)
            k = config.pretrain.replicates_of(f"{kind}:{pool}:{method}")
            replicates = range(k) if args.replicate is None else args.replicate
            outside = [r for r in replicates if not 0 <= r < k]
            if outside:
                raise ConfigError(
                    f"--replicate {' '.join(map(str, outside))}: {kind}:{pool}:{method} has K = {k} replicate(s) "
                    f"(0 … {k - 1}) in pretrain.replicates; pick among those or raise K in the config."
                )
            jobs += [(pool, method, r) for r in replicates]
    written = []
    try:
        for pool, method, replicate in jobs:
            path = pretrain(config, pool, method, sequential=args.sequential, force=args.force, replicate=replicate)
            print(f"encoder: {path}")
            written.append(path)
    except Interrupted as exc:  # `rtl` prints what was kept: the stopped pretraining's checkpoint, the encoders before
        if written:
            exc.kept = "; ".join(filter(None, [exc.kept, "the finished encoders " + ", ".join(map(str, written))]))
        raise
    return written
