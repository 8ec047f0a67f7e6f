"""Real-data commands: ``analyze`` (every estimator on a dataset) and ``calibrate`` (a scenario from it)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

__all__ = ["add_commands", "add_data_arguments", "add_analyze", "add_calibrate", "cmd_analyze", "cmd_calibrate"]


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The columns of a real multisite dataset: FILE.csv --site --treatment --mediator ... --outcome.

    Parameters
    ----------
    p
        The subcommand's parser.
    """
    p.add_argument("file", metavar="FILE.csv", help="CSV file (optionally gzipped), one row per person")
    p.add_argument("--site", required=True, metavar="COL", help="site column")
    p.add_argument("--treatment", required=True, metavar="COL",
                   help="treatment column (sorted labels: the smallest is the control arm)")
    p.add_argument("--mediator", required=True, action="append", metavar="COL",
                   help="mediator column (repeat for several)")
    p.add_argument("--outcome", required=True, metavar="COL", help="outcome column")


def add_commands(sub) -> None:
    """Register ``analyze`` and ``calibrate`` on an argparse subparsers object.

    Parameters
    ----------
    sub
        The object ``ArgumentParser.add_subparsers`` returned.
    """
    add_analyze(sub)
    add_calibrate(sub)


def add_analyze(sub) -> argparse.ArgumentParser:
    """Register ``analyze``; returns its parser.

    Parameters
    ----------
    sub
        The object ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser.
    """
    p = sub.add_parser(
        "analyze",
        help="analyse a real multisite dataset with every estimator",
        description="Analyse a real multisite dataset (CSV, optionally gzipped) with every "
        "MSMM-IV estimator, standard errors and diagnostics.",
    )
    add_data_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.set_defaults(func=cmd_analyze, error_prefix="simulate analyze: error: ")
    return p


def add_calibrate(sub) -> argparse.ArgumentParser:
    """Register ``calibrate``; returns its parser.

    Parameters
    ----------
    sub
        The object ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser.
    """
    p = sub.add_parser(
        "calibrate",
        help="calibrate a scenario from a real multisite dataset (TOML on standard output)",
        description="Estimate site-level means, SDs and correlations of compliance and ITT effects, net of "
                    "sampling error, and write a runnable scenario that mirrors the study.",
    )
    add_data_arguments(p)
    p.add_argument("--name", default=None, help="scenario name (default: calibrated_<file stem>)")
    p.add_argument("--direct-effect", action="store_true",
                   help="use the between-site regression with an intercept (mean direct effect, assumption ii)")
    p.add_argument("--n-sites", type=int, default=None, metavar="K", help="replace the study's number of sites")
    p.add_argument("--n-per-site", type=int, default=None, metavar="N", help="replace the study's site sizes")
    p.add_argument("--no-truth", action="store_true", help="do not write the truth lines in the header")
    p.set_defaults(func=cmd_calibrate, error_prefix="simulate calibrate: error: ")
    return p


def cmd_analyze(args) -> int:
    """``simulate analyze FILE.csv ...``: every estimator on the dataset, as a table or JSON."""
    from ..analyze import AnalysisError, analyze, format_table, read_csv, to_records, weak_instrument_warning

    if not 0 < args.level < 1:
        raise AnalysisError(f"--level must be in (0, 1), got {args.level}")
    frame = read_csv(args.file)
    result = analyze(frame, site=args.site, treatment=args.treatment, mediators=args.mediator,
                     outcome=args.outcome, level=args.level)
    print(json.dumps(to_records(result), indent=1) if args.json else format_table(result))
    warn = weak_instrument_warning(result)
    if warn and args.json:  # the table carries it as its first line; JSON output keeps stdout JSON
        print(warn, file=sys.stderr)
    return 0


def cmd_calibrate(args) -> int:
    """``simulate calibrate FILE.csv ...``: a runnable scenario mirroring the study, TOML on stdout."""
    from ..analyze import read_csv
    from ..calibrate import CalibrationError, calibrate, to_toml
    from ..scenario import loads

    if args.n_sites is not None and args.n_sites < 2:
        raise CalibrationError(f"--n-sites must be at least 2, got {args.n_sites}")
    if args.n_per_site is not None and args.n_per_site < 2:
        raise CalibrationError(f"--n-per-site must be at least 2, got {args.n_per_site}")
    frame = read_csv(args.file)  # one line for an unreadable file or repeated column names
    cal = calibrate(frame, site=args.site, treatment=args.treatment, mediators=args.mediator,
                    outcome=args.outcome, direct_effect=args.direct_effect)
    name = args.name
    if name is None:
        stem = str(args.file).rsplit("/", 1)[-1].split(".")[0]
        name = f"calibrated_{stem}"
    command = "simulate calibrate " + " ".join(shlex.quote(a) for a in _argv_of(args))
    text = to_toml(cal, name=name, command=command, n_sites=args.n_sites, n_per_site=args.n_per_site,
                   truth_sites=None if args.no_truth else 1_000_000)
    loads(text, source="<calibrated scenario>")  # it must validate
    sys.stdout.write(text)
    return 0


def _argv_of(args) -> list[str]:
    """The command line that reproduces a calibration (written into the scenario's header)."""
    out = [str(args.file), "--site", args.site, "--treatment", args.treatment]
    for m in args.mediator:
        out += ["--mediator", m]
    out += ["--outcome", args.outcome]
    if args.name is not None:
        out += ["--name", args.name]
    if args.direct_effect:
        out.append("--direct-effect")
    if args.n_sites is not None:
        out += ["--n-sites", str(args.n_sites)]
    if args.n_per_site is not None:
        out += ["--n-per-site", str(args.n_per_site)]
    return out
