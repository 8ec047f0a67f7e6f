"""``simulate plot DIR``: write every figure of a run directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .base import PlotError
from .directory import plot_directory


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Register ``plot`` on an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "plot", help="write every figure of a run directory under DIR/figures/",
        description="Figures of a run: bias, coverage and RMSE against each dial with Monte Carlo bands, "
                    "identification vs finite-sample bias, heat maps of two-dimensional grids, sampling "
                    "distributions, zip plots of the intervals, and the site-level picture of one replication.")
    p.add_argument("directory", metavar="DIR", help="a complete run directory (simulate run ... --out DIR)")
    p.add_argument("--format", action="append", choices=("png", "pdf", "svg"), metavar="FORMAT",
                   help="png, pdf or svg (repeatable; default png and pdf)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``simulate plot``; returns the exit code (2 with one line on stderr for a user error)."""
    try:
        files = plot_directory(args.directory, formats=tuple(args.format or ("png", "pdf")))
    except PlotError as exc:
        print(f"simulate plot: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback on the command line
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"simulate plot: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} files under {Path(args.directory) / 'figures'}")
    return 0
