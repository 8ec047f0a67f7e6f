"""Run commands: ``run`` (replications streamed to a run directory), ``summarize``, ``plot``."""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import check_truth_sites, resolve
from .handler import one_line

__all__ = ["add_commands", "cmd_run", "cmd_summarize", "cmd_plot"]


def add_commands(sub) -> None:
    """Register ``run``, ``summarize`` and ``plot`` on an argparse subparsers object.

    Parameters
    ----------
    sub
        The object ``ArgumentParser.add_subparsers`` returned.
    """
    from ..measures import ALPHA, TARGETS

    p = sub.add_parser("run", help="run replications of a scenario (every grid cell), streaming rows to DIR")
    p.add_argument("file", help="a scenario file, or the name of a bundled scenario")
    p.add_argument("--reps", type=int, required=True, help="replications per grid cell")
    p.add_argument("--seed", type=int, default=0, help="the run seed (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", required=True, help="run directory (parts, manifest.json, summary.csv)")
    p.add_argument("--backend", default="loky", help="loky (processes, default), threads or dask")
    p.add_argument("--scheduler", default=None, help="address of a Dask scheduler (with --backend dask); "
                                                     "without it a local cluster is started")
    p.add_argument("--chunk", type=int, default=None, help="replications per task (default: automatic)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted (or shorter) run in DIR")
    p.add_argument("--independent-cells", action="store_true",
                   help="own random numbers per grid cell (default: common random numbers across cells)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--truth-sites", type=int, default=None,
                   help="simulated sites for each cell's truth (default 1,000,000)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "summarize", help="performance measures of a run directory, with Monte Carlo SEs",
        description="Performance measures (bias, empirical and model SE, RMSE, coverage, power, median bias, "
                    "MAD, failure share, first-stage F) per grid cell x estimator x mediator x target, each with "
                    "its Monte Carlo SE (Morris, White & Crowther 2019).")
    p.add_argument("directory", metavar="DIR", help="a run directory (with manifest.json and parts/)")
    p.add_argument("--format", choices=("csv", "markdown", "latex", "json"), default="markdown",
                   help="output format (default markdown; csv and json give the long tidy frame)")
    p.add_argument("--target", action="append", choices=TARGETS, metavar="TARGET",
                   help=f"keep only this target (repeatable; one of {', '.join(TARGETS)})")
    p.add_argument("--alpha", type=float, default=ALPHA, help="significance level of the power (default 0.05)")
    p.add_argument("--out", default="-", help="write to this file instead of standard output")
    p.set_defaults(func=cmd_summarize, error_prefix="simulate summarize: error: ")

    p = sub.add_parser(
        "plot", help="write every figure of a run directory under DIR/figures/",
        description="Figures of a run: bias, coverage and RMSE against each dial with Monte Carlo bands, "
                    "identification vs finite-sample bias, heat maps of two-dimensional grids, sampling "
                    "distributions, zip plots of the intervals, and the site-level picture of one replication.")
    p.add_argument("directory", metavar="DIR", help="a complete run directory (simulate run ... --out DIR)")
    p.add_argument("--format", action="append", choices=("png", "pdf", "svg"), metavar="FORMAT",
                   help="png, pdf or svg (repeatable; default png and pdf)")
    p.set_defaults(func=cmd_plot, error_prefix="simulate plot: error: ")


def cmd_run(args) -> int:
    """``simulate run FILE --reps R --out DIR``: every grid cell's replications, streamed to DIR."""
    from ..runner import config_from_args, run

    check_truth_sites("--truth-sites", args.truth_sites)
    config = config_from_args(args)
    config.check()  # bad settings are named before the scenario is read
    path = resolve(args.file)
    try:
        manifest = run(path, args.out, config, truth_sites=args.truth_sites)
    except KeyboardInterrupt as exc:  # the runner says how to resume
        print(one_line(f"simulate: interrupted; {exc}" if str(exc) else "simulate: interrupted"), file=sys.stderr)
        return 130
    if not args.quiet:
        last = manifest["runs"][-1]
        warned = manifest.get("numerical_warnings", 0)
        note = f"; {warned:,} numerical warning(s) counted, not printed (manifest.json notes)" if warned else ""
        print(one_line(f"{args.out}: {last['replications']} replications in {last['wall_seconds']:.1f} s "
                       f"({len(manifest['cells'])} cell(s) x {manifest['reps']} reps); summary in "
                       f"{args.out}/summary.csv{note}"))
    return 0


def cmd_summarize(args) -> int:
    """``simulate summarize DIR``: the performance measures of a run, in the chosen format."""
    from ..measures import SummaryError
    from ..run_summary import summarize_run
    from ..tables import render

    if not 0 < args.alpha < 1:
        raise SummaryError(f"--alpha must be in (0, 1), got {args.alpha}")
    summary = summarize_run(args.directory, alpha=args.alpha)
    if args.target:
        summary = summary.select(args.target)
    text = render(summary, args.format)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


def cmd_plot(args) -> int:
    """``simulate plot DIR``: every figure of a run under DIR/figures/."""
    from ..plots import plot_directory

    files = plot_directory(args.directory, formats=tuple(args.format or ("png", "pdf")))
    print(f"wrote {len(files)} files under {Path(args.directory) / 'figures'}")
    return 0
