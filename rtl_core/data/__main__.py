"""``python -m rtl_core.data --summary``: print every pool and task; ``--save-splits`` writes the split files.

The same as ``rtl summary`` / ``rtl splits`` (see :mod:`rtl_core.cli`).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtl_core.data", description=__doc__)
    parser.add_argument("--summary", action="store_true", help="print every pool and task with sizes and splits")
    parser.add_argument("--save-splits", action="store_true", help="write each task's split to artifacts/splits/")
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args(argv)
    from rtl_core.data.registry import TASKS
    from rtl_core.data.summary import format_summary, save_splits
    from rtl_core.errors import RtlError

    try:
        if args.summary or not args.save_splits:
            print(format_summary(split_seed=args.split_seed))
        if args.save_splits:
            for name in TASKS:
                print(f"{name}: {save_splits(name, args.split_seed)}")
    except RtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
