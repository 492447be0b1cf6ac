"""``python -m rtl_core.data --summary``: print every pool and task; ``--save-splits`` writes the split files.

The same as ``rtl summary`` / ``rtl splits`` (see :mod:`rtl_core.cli`).
"""

from __future__ import annotations

import argparse
import sys

from rtl_core.cli import main as rtl_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtl_core.data", description=__doc__)
    parser.add_argument("--summary", action="store_true", help="print every pool and task with sizes and splits")
    parser.add_argument("--save-splits", action="store_true", help="write each task's split to artifacts/splits/")
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args(argv)
    seed = ["--split-seed", str(args.split_seed)]
    code = rtl_main(["summary", *seed]) if args.summary or not args.save_splits else 0
    return code or (rtl_main(["splits", *seed]) if args.save_splits else 0)


if __name__ == "__main__":
    sys.exit(main())
