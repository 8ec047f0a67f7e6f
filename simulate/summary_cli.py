"""``simulate summarize DIR``: the performance measures of a run directory, printed in one format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .measures import ALPHA, TARGETS, SummaryError
from .run_summary import summarize_run
from .tables import FORMATS, render

__all__ = ["add_subcommand", "run"]


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Register ``summarize`` on an ``argparse`` subparsers object; returns its parser.

    Parameters
    ----------
    subparsers
        What ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
    """
    p = subparsers.add_parser(
        "summarize", help="performance measures of a run directory, with Monte Carlo SEs",
        description="Performance measures (bias, empirical and model SE, RMSE, coverage, power, median bias, "
                    "MAD, failure share, first-stage F) per grid cell x estimator x mediator x target, each with "
                    "its Monte Carlo SE (Morris, White & Crowther 2019).")
    p.add_argument("directory", metavar="DIR", help="a run directory (with manifest.json and parts/)")
    p.add_argument("--format", choices=FORMATS, default="markdown",
                   help="output format (default markdown; csv and json give the long tidy frame)")
    p.add_argument("--target", action="append", choices=TARGETS, metavar="TARGET",
                   help=f"keep only this target (repeatable; one of {', '.join(TARGETS)})")
    p.add_argument("--alpha", type=float, default=ALPHA, help="significance level of the power (default 0.05)")
    p.add_argument("--out", default="-", help="write to this file instead of standard output")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``simulate summarize``; returns the exit code (2 with one line on stderr for a user error).

    Parameters
    ----------
    args : argparse.Namespace
        ``directory``, ``format``, ``target``, ``alpha``, ``out``.

    Returns
    -------
    int
    """
    try:
        if not 0 < args.alpha < 1:
            raise SummaryError(f"--alpha must be in (0, 1), got {args.alpha}")
        summary = summarize_run(args.directory, alpha=args.alpha)
        if args.target:
            summary = summary.select(args.target)
        text = render(summary, args.format)
    except SummaryError as exc:
        print(f"simulate summarize: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback on the command line
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"simulate summarize: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 2
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0
