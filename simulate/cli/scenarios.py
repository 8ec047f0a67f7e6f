"""Scenario commands: ``validate``, ``truth``, ``draw``, ``list``, ``show``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..scenario import validate_file
from ._common import MAX_SEED, SCENARIO_DIR, UsageError, check_range, check_truth_sites, resolve

__all__ = ["add_commands", "cmd_validate", "cmd_truth", "cmd_draw", "cmd_list", "cmd_show"]


def add_commands(sub) -> None:
    """Register ``validate``, ``truth``, ``draw``, ``list`` and ``show`` on an argparse subparsers object.

    Parameters
    ----------
    sub
        The object ``ArgumentParser.add_subparsers`` returned.
    """
    p = sub.add_parser("validate", help="check a scenario file (and every cell of its grid)")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("truth", help="print a scenario's truth: ATE, LATE, compliance-weighted estimand, limits")
    p.add_argument("file", help="a scenario file, or the name of a bundled scenario")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--sites", type=int, default=None,
                   help="simulated sites where the site moments cannot be integrated by quadrature (default 1,000,000)")
    p.set_defaults(func=cmd_truth)

    p = sub.add_parser("draw", help="draw one replication's persons and write them as CSV")
    p.add_argument("file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="-", help="CSV file (default: standard output)")
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser("list", help="name the bundled scenarios")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="print a bundled scenario with its truth")
    p.add_argument("name")
    p.add_argument("--sites", type=int, default=None)
    p.set_defaults(func=cmd_show)


def cmd_validate(args) -> int:
    """``simulate validate FILE``: a scenario (every grid cell) or a stress-test design."""
    import tomllib

    args.file = str(resolve(args.file)) if not Path(args.file).exists() else args.file
    try:
        has_stress = "stress" in tomllib.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        has_stress = False  # validate_file says what is wrong
    if has_stress:  # a design for simulate stress-test
        from ..stress import StressError, _cells, plan_sweeps, read_design

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


def _fmt_se(x: float) -> str:
    return "." if x is None or math.isnan(x) else f"{x:.1e}"


def _error_line(tr) -> str:
    """How exact the limits are: 0 (closed form), quadrature (its error) or the simulation SEs (rows ``SE``)."""
    method = tr.limit_method
    if method == "closed form":
        return (f"0 (closed form: Gauss-Hermite quadrature over the sites, exact for these polynomial integrands, "
                f"{int(tr.quadrature_nodes):,} nodes)")
    if method == "quadrature":
        return (f"quadrature (Gauss-Hermite over the sites, {int(tr.quadrature_nodes):,} nodes; largest change "
                f"between two orders {tr.quadrature_error:.0e})")
    return (f"simulated over {tr.n_sites_simulated:,} sites: the rows SE give each limit's simulation standard "
            f"error (intercept {_fmt_se(tr.limit_between_intercept_constant_se)})")


def _truth_table(cell, tr) -> str:
    sc = cell.scenario
    lines = []
    head = f"{sc.name} [{sc.hash}]"
    if cell.values:
        head += "  " + ", ".join(f"{p} = {v}" for p, v in cell.values)
    lines.append(head)
    cols = ["ate", "late", "late_site_mean", "total_effect", "compliance_weighted", "limit_2sls",
            "limit_between_ols", "limit_between_intercept", "limit_wald"]
    short = ["ATE", "LATE", "LATE site mean", "total effect", "compl.-weighted", "2SLS limit", "between OLS",
             "between w/ int.", "Wald limit"]
    width = max(8, max(len(n) for n in sc.mediator_names))
    lines.append(f"  {'mediator':<{width}} " + " ".join(f"{s:>16}" for s in short))
    for rec in tr.to_records():
        lines.append(f"  {rec['mediator']:<{width}} " + " ".join(f"{_fmt(rec[c]):>16}" for c in cols))
    if tr.limit_method == "simulation":
        se_cols = ["compliance_weighted", "limit_2sls", "limit_between_ols", "limit_between_intercept", "limit_wald"]
        for p, name in enumerate(sc.mediator_names):
            cells = ["", "", "", ""] + [_fmt_se(tr.se_of(c)[p]) for c in se_cols]
            lines.append(f"  {'SE ' + name:<{width}} " + " ".join(f"{s:>16}" for s in cells))
    lines.append(f"  intercept of the between-site regression (mean direct effect) limit: "
                 f"{_fmt(tr.limit_between_intercept_constant)}")
    lines.append(f"  error of the limits: {_error_line(tr)}")
    for note in tr.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def cmd_truth(args) -> int:
    """``simulate truth FILE``: every grid cell's truth, as a table or JSON."""
    from ..truth import TRUTH_SITES, truth

    path = resolve(args.file)
    cells = validate_file(path)
    n_sites = args.sites if args.sites is not None else TRUTH_SITES
    check_truth_sites("--sites", n_sites)
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
        from ..store import nan_to_none as _nan_to_none

        print(json.dumps(_nan_to_none(out if len(out) > 1 else out[0]), indent=2, allow_nan=False, default=str))
    return 0


def cmd_draw(args) -> int:
    """``simulate draw FILE``: one replication's persons as CSV."""
    import pandas as pd

    from ..dgp import draw

    check_range("--seed", args.seed, 0, MAX_SEED, "an integer in [0, 2^63)")
    cells = validate_file(resolve(args.file))
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
    return 0


def cmd_list(args) -> int:
    """``simulate list``: the bundled scenarios, one a line with the first line of its description."""
    import tomllib

    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        with path.open("rb") as fh:
            desc = tomllib.load(fh).get("description", "")
        print(f"{path.stem:<32} {desc.splitlines()[0] if desc else ''}")
    return 0


def cmd_show(args) -> int:
    """``simulate show NAME``: a bundled scenario's text, then its truth."""
    path = SCENARIO_DIR / f"{args.name}.toml"
    if not path.exists():
        raise UsageError(f"{args.name}: no bundled scenario of that name (simulate list names them)")
    print(path.read_text(encoding="utf-8").rstrip())
    print()
    ns = argparse.Namespace(file=str(path), json=False, sites=args.sites)
    return cmd_truth(ns)
