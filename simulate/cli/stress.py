"""``simulate stress-test``: sweep every assumption's dial on a planned design; write a report."""

from __future__ import annotations

import argparse

from ..assumptions import ASSUMPTIONS

__all__ = ["add_commands", "cmd_stress_test"]


def add_commands(sub) -> None:
    """Register ``stress-test`` on an argparse subparsers object.

    Parameters
    ----------
    sub
        The object ``ArgumentParser.add_subparsers`` returned.
    """
    dials = "\n".join(f"  {a.key:<26} ({a.numeral}) {a.title}" for a in ASSUMPTIONS)
    p = sub.add_parser("stress-test", help="sweep every assumption's dial on a planned design; write a report",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="dials swept (their [stress.dials] keys; see simulate.assumptions):\n" + dials)
    p.add_argument("design", help="a scenario file describing the planned design (optional [stress] table), or the "
                                  "name of a bundled design (e.g. flagship)")
    p.add_argument("--out", required=True, help="output directory (report.html, report.md, figures, tables)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--reps", type=int, default=None, help="first-pass replications per dial value "
                                                          "(overrides [stress].reps)")
    p.add_argument("--pdf", action="store_true", help="also write the figures as PDF (PNG only by default)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_stress_test)


def cmd_stress_test(args) -> int:
    """``simulate stress-test DESIGN --out DIR``: the report of every dial's sweep."""
    from ..stress import stress_test

    path = stress_test(args.design, args.out, jobs=args.jobs, quiet=args.quiet, reps=args.reps, pdf=args.pdf)
    if not args.quiet:
        print(f"report: {path}")
    return 0
