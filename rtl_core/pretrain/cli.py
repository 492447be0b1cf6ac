"""``rtl pretrain``: SSL pretraining from the command line (wired into :mod:`rtl_core.cli`).

    rtl pretrain --pool ct --method simclr --profile default [--config file.yaml] [--sequential] [--force]

Without ``--pool``/``--method`` it trains every pool and method the config lists (``pretrain.pools``,
``pretrain.methods``). An existing encoder for the same settings is skipped; a killed run resumes.
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
    p.set_defaults(func=run_pretrain_command)
    return p


def run_pretrain_command(args: argparse.Namespace) -> list:
    from rtl_core.config import load_config
    from rtl_core.errors import Interrupted
    from rtl_core.pretrain.train import check_request, pretrain

    overrides = {"pretrain": {"epochs": args.epochs}} if args.epochs else None
    config = load_config(args.profile, args.config, overrides)
    pools = args.pool or config.pretrain.pools
    methods = args.method or config.pretrain.methods
    for pool in pools:  # fail on a bad name before any training starts
        for method in methods:
            check_request(config, pool, method)
    written = []
    try:
        for pool in pools:
            for method in methods:
                path = pretrain(config, pool, method, sequential=args.sequential, force=args.force)
                print(f"encoder: {path}")
                written.append(path)
    except Interrupted as exc:  # `rtl` prints what was kept: the stopped pretraining's checkpoint, the encoders before
        if written:
            exc.kept = "; ".join(filter(None, [exc.kept, "the finished encoders " + ", ".join(map(str, written))]))
        raise
    return written
