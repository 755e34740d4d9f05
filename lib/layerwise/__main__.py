"""Command line: ``python -m layerwise figures [NOTEBOOK ...] [--fresh] [--jobs N]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .harness.runner import available, run_notebooks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layerwise", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    figures = commands.add_parser(
        "figures", help="execute study notebooks in place and regenerate figures/"
    )
    figures.add_argument(
        "notebooks",
        nargs="*",
        metavar="NOTEBOOK",
        help=f"notebooks to run (default: all of {', '.join(available()) or 'none found'})",
    )
    figures.add_argument(
        "--fresh",
        action="store_true",
        help="discard the notebooks' stored runs (in the store they read: $LAYERWISE_RESULTS "
        "when set, else results/; the folder is printed first) and retrain them (hours for a "
        "full study)",
    )
    figures.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes for training (passed to each notebook's `jobs` parameter)",
    )
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    try:
        outcomes = run_notebooks(
            args.notebooks,
            parameters={"jobs": args.jobs} if args.jobs is not None else None,
            fresh=args.fresh,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print("\nsummary:")
    for o in outcomes:
        status = "ok" if o.ok else f"FAILED ({o.error})"
        print(f"  {o.name:<32} {o.seconds:7.1f} s  {status}")
    failed = [o.name for o in outcomes if not o.ok]
    if failed:
        print(f"failed notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
