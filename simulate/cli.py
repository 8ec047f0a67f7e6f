"""The ``simulate`` command.

Every failure the user can cause or fix is one line on stderr and exit code 2
(130 for Ctrl-C), with the ``--resume`` hint where a run can be finished; an
unexpected failure (a bug) is one line, "internal error", and exit code 1; never a
traceback.  One handler, in :func:`main`, decides which is which
(:data:`USER_ERRORS`).  numpy's RuntimeWarnings are counted, not printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path

from . import __version__
from .errors import SimulateError
from .scenario import ScenarioError, validate_file

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"  # package data (top-level scenarios/ links here)
MAX_SEED = 2**63
MIN_TRUTH_SITES = 1000
MAX_TRUTH_SITES = 10**8
MAX_MESSAGE = 2000  # characters of an error message at most


class UsageError(SimulateError):
    """A user error with a one-line message (exit code 2)."""


def _num(x) -> str:
    text = str(x)
    return f"a {len(text.lstrip('-'))}-digit integer" if len(text) > 24 else text


def _check_range(option: str, value, lo: int, hi: int, what: str) -> None:
    """One-line UsageError unless lo <= value < hi (``what`` says so in words)."""
    if value is not None and not lo <= value < hi:
        raise UsageError(f"{option}: must be {what}, got {_num(value)}")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="simulate", description="A Monte Carlo laboratory for multisite, "
                                 "multi-mediator instrumental variables (MSMM-IV).")
    ap.add_argument("--version", action="version", version=f"simulate {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", help="check a scenario file (and every cell of its grid)")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("truth", help="print a scenario's truth: ATE, LATE, compliance-weighted estimand, limits")
    p.add_argument("file", help="a scenario file, or the name of a bundled scenario")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--sites", type=int, default=None, help="simulated sites for the site moments (default 1,000,000)")
    p.set_defaults(func=cmd_truth)

    p = sub.add_parser("draw", help="draw one replication's persons and write them as CSV")
    p.add_argument("file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="-", help="CSV file (default: standard output)")
    p.set_defaults(func=cmd_draw)

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

    p = sub.add_parser("list", help="name the bundled scenarios")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="print a bundled scenario with its truth")
    p.add_argument("name")
    p.add_argument("--sites", type=int, default=None)
    p.set_defaults(func=cmd_show)

    from .analyze import add_subcommand as add_analyze
    from .calibrate import add_subcommand as add_calibrate
    from .plots import add_subcommand as add_plot
    from .stress import add_subcommand as add_stress
    from .summary import add_subcommand as add_summarize

    add_analyze(sub)
    add_plot(sub)
    add_summarize(sub)
    add_calibrate(sub)
    add_stress(sub)
    return ap


def _resolve(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    for bundled in (SCENARIO_DIR / f"{name}.toml", SCENARIO_DIR / "designs" / f"{name}.toml"):
        if bundled.exists():
            return bundled
    raise UsageError(f"{name}: no such file or bundled scenario (simulate list names them)")


def cmd_validate(args) -> int:
    import tomllib

    args.file = str(_resolve(args.file)) if not Path(args.file).exists() else args.file
    try:
        has_stress = "stress" in tomllib.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        has_stress = False  # validate_file says what is wrong
    if has_stress:  # a design for simulate stress-test
        from .stress import StressError, _cells, plan_sweeps, read_design

        try:
            raw, settings = read_design(args.file)
            sweeps = [sw for sw in plan_sweeps(raw, settings, args.file) if sw.skipped is None]
            n = sum(len(_cells(sw, args.file)) for sw in sweeps)
        except StressError as exc:
            raise UsageError(str(exc)) from None
        print(f"ok (a stress-test design: {len(sweeps)} dials, {n} grid cells)")
        return 0
    cells = validate_file(args.file)
    for cell in cells:
        values = ", ".join(f"{p} = {v}" for p, v in cell.values)
        where = f" [grid cell {cell.index + 1}: {values}]" if cell.values else ""
        for w in cell.scenario.warnings:
            print(f"{args.file}{where}: warning: {w}", file=sys.stderr)
    print("ok" if len(cells) == 1 else f"ok ({len(cells)} grid cells)")
    return 0


def _fmt(x: float) -> str:
    return "." if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _truth_table(cell, tr) -> str:
    sc = cell.scenario
    lines = []
    head = f"{sc.name} [{sc.hash}]"
    if cell.values:
        head += "  " + ", ".join(f"{p} = {v}" for p, v in cell.values)
    lines.append(head)
    cols = ["ate", "late", "compliance_weighted", "limit_2sls", "limit_between_ols", "limit_between_intercept",
            "limit_wald"]
    short = ["ATE", "LATE", "compl.-weighted", "2SLS limit", "between OLS", "between w/ int.", "Wald limit"]
    width = max(8, max(len(n) for n in sc.mediator_names))
    lines.append(f"  {'mediator':<{width}} " + " ".join(f"{s:>16}" for s in short))
    for rec in tr.to_records():
        lines.append(f"  {rec['mediator']:<{width}} " + " ".join(f"{_fmt(rec[c]):>16}" for c in cols))
    lines.append(f"  intercept of the between-site regression (mean direct effect) limit: "
                 f"{_fmt(tr.limit_between_intercept_constant)}; site moments over {tr.n_sites_simulated:,} sites")
    for note in tr.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def cmd_truth(args) -> int:
    from .truth import TRUTH_SITES, truth

    path = _resolve(args.file)
    cells = validate_file(path)
    n_sites = args.sites if args.sites is not None else TRUTH_SITES
    if n_sites < MIN_TRUTH_SITES:
        raise UsageError(f"--sites: must be at least 1000, got {_num(n_sites)}")
    _check_range("--sites", n_sites, MIN_TRUTH_SITES, MAX_TRUTH_SITES + 1, f"at most {MAX_TRUTH_SITES:,}")
    out = []
    for cell in cells:
        tr = truth(cell.scenario, n_sites=n_sites)
        if args.json:
            out.append({"scenario": cell.scenario.name, "hash": cell.hash,
                        "grid": {p: v for p, v in cell.values}, **tr.to_dict()})
        else:
            print(_truth_table(cell, tr))
            for w in cell.scenario.warnings:
                print(f"  warning: {w}")
    if args.json:
        from .runner import _nan_to_none

        print(json.dumps(_nan_to_none(out if len(out) > 1 else out[0]), indent=2, allow_nan=False, default=str))
    return 0


def cmd_draw(args) -> int:
    import numpy as np
    import pandas as pd

    from .dgp import draw

    _check_range("--seed", args.seed, 0, MAX_SEED, "an integer in [0, 2^63)")
    cells = validate_file(_resolve(args.file))
    if len(cells) > 1:
        raise UsageError(f"{args.file}: has a grid of {len(cells)} cells; draw takes a scenario without [grid]")
    sc = cells[0].scenario
    tr = draw(sc, args.seed)
    frame = pd.DataFrame({"site": tr.site, "treatment": tr.treatment})
    for p, name in enumerate(sc.mediator_names):
        frame[name] = tr.mediators[:, p]
    frame["outcome"] = tr.outcome
    if args.out == "-":
        frame.to_csv(sys.stdout, index=False, float_format="%.10g")
    else:
        frame.to_csv(args.out, index=False, float_format="%.10g")
        print(f"wrote {len(frame):,} persons in {tr.n_sites} sites to {args.out}", file=sys.stderr)
    del np
    return 0


def cmd_run(args) -> int:
    from .runner import config_from_args, run

    if args.truth_sites is not None and args.truth_sites < MIN_TRUTH_SITES:
        raise UsageError(f"--truth-sites: must be at least 1000, got {_num(args.truth_sites)}")
    _check_range("--truth-sites", args.truth_sites, MIN_TRUTH_SITES, MAX_TRUTH_SITES + 1,
                 f"at most {MAX_TRUTH_SITES:,}")
    config = config_from_args(args)
    config.check()  # bad settings are named before the scenario is read
    path = _resolve(args.file)
    try:
        manifest = run(path, args.out, config, truth_sites=args.truth_sites)
    except KeyboardInterrupt as exc:
        print(_one_line(f"simulate: interrupted; {exc}" if str(exc) else "simulate: interrupted"), file=sys.stderr)
        return 130
    if not args.quiet:
        last = manifest["runs"][-1]
        warned = manifest.get("numerical_warnings", 0)
        note = f"; {warned:,} numerical warning(s) counted, not printed (manifest.json notes)" if warned else ""
        print(_one_line(f"{args.out}: {last['replications']} replications in {last['wall_seconds']:.1f} s "
                        f"({len(manifest['cells'])} cell(s) x {manifest['reps']} reps); summary in "
                        f"{args.out}/summary.csv{note}"))
    return 0


def cmd_list(args) -> int:
    import tomllib

    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        with path.open("rb") as fh:
            desc = tomllib.load(fh).get("description", "")
        print(f"{path.stem:<32} {desc.splitlines()[0] if desc else ''}")
    return 0


def cmd_show(args) -> int:
    path = SCENARIO_DIR / f"{args.name}.toml"
    if not path.exists():
        raise UsageError(f"{args.name}: no bundled scenario of that name (simulate list names them)")
    print(path.read_text(encoding="utf-8").rstrip())
    print()
    ns = argparse.Namespace(file=str(path), json=False, sites=args.sites)
    return cmd_truth(ns)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that are the user's to fix (exit code 2).

    :class:`simulate.errors.SimulateError` and, until they subclass it, the error
    classes of the other stages.
    """
    from .analyze import AnalysisError
    from .estimators import EstimationError
    from .plots import PlotError
    from .stress import StressError
    from .summary import SummaryError

    return (SimulateError, ScenarioError, AnalysisError, EstimationError, PlotError, StressError, SummaryError)


def _one_line(msg: str) -> str:
    """A message on one line: newlines shown as \\n, at most MAX_MESSAGE characters."""
    msg = str(msg).replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r").strip()
    return msg if len(msg) <= MAX_MESSAGE else msg[:MAX_MESSAGE] + f" ... [{len(msg):,} characters]"


def _say(msg: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(_one_line(msg), file=sys.stderr, flush=True)


def _from_toml(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if "tomllib" in tb.tb_frame.f_code.co_filename or "tomli" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _input_name(args) -> str:
    for name in ("file", "design", "directory", "name"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            return value
    return "the input"


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    counter = [0]
    try:
        func = getattr(args, "func", None) or args.run
        from .runner import _counting_warnings

        with _counting_warnings(counter):
            code = int(func(args) or 0)
        if counter[0]:
            _say(f"simulate: note: {counter[0]:,} numerical warning(s) from numpy (overflow or invalid values, "
                 "usually from extreme inputs) were counted and not printed")
        return code
    except user_errors() as exc:
        _say(str(exc))
        return 2
    except KeyboardInterrupt:
        _say("simulate: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (simulate draw ... | head)
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    except RecursionError as exc:
        if _from_toml(exc):
            _say(f"{_input_name(args)}: nested too deeply to read (more than {sys.getrecursionlimit()} levels "
                 "of tables or arrays)")
            return 2
        return _internal(exc)
    except MemoryError:
        _say("simulate: out of memory; use smaller inputs (or for a run fewer --jobs or a smaller --chunk, "
             "then --resume)")
        return 2
    except OSError as exc:  # a path, a permission, a full disk
        from ._lock import describe_os_error

        _say(describe_os_error(exc))
        return 2
    except Exception as exc:  # never a traceback for the user
        return _internal(exc)


def _internal(exc: BaseException) -> int:
    _say(f"simulate: internal error: {exc.__class__.__name__}: {exc} (a bug: please report it with the command "
         f"line and the output of `simulate --version`, {__version__})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
