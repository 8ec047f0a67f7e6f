"""Stress-test a planned design: every assumption's dial swept from zero to a severe value.

``simulate stress-test DESIGN.toml --out DIR`` reads a planned design (an ordinary
scenario file, every dial at zero, plus an optional ``[stress]`` table), and for each
of the founding paper's assumptions that can fail in that design runs a grid that
moves the assumption's dial from 0 (it holds) to a severe value, with every estimator
on the same simulated data.  Each assumption gets a figure and a verdict: for each
estimator and mediator, the smallest dial value at which

- the bias exceeds the tolerance (default 10% of the effect) with the Monte Carlo
  error in mind: |bias| - 1.96 MCSE > tolerance |target|, or
- the coverage of the 95% interval falls below the floor (default 90%) with the
  Monte Carlo error in mind: coverage + 1.96 MCSE < floor,

or "no threshold reached" up to the severe value.  The target is the population
ATE for continuous mediators and the LATE (the complier average effect, which the
IV estimators aim at) for binary ones.

``[stress]`` (all optional)::

    [stress]
    reps = 200             # replications per dial value
    seed = 1
    steps = 5              # dial values from 0 to the severe value
    tolerance = 0.10       # bias tolerance, a share of the effect
    coverage_floor = 0.90
    truth_sites = 200000   # simulated sites for each cell's truth
    [stress.dials]         # a dial's severe value, or false to leave it out
    selection = 1.5
    spillover = false

Output: ``DIR/report.html`` (one self-contained page, figures embedded),
``DIR/report.md``, ``DIR/figures/``, ``DIR/tables/`` (per dial: the summary as CSV
and the verdicts), ``DIR/dials/NAME/`` (each dial's run directory: rows, manifest,
summary; an interrupted stress test resumes where it stopped).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .runner import RunConfig, RunError, code_version, run
from .scenario import ScenarioError, expand_grid, from_dict

__all__ = ["DIALS", "StressSettings", "StressError", "stress_test", "verdicts", "plan_sweeps", "read_design",
           "add_subcommand", "run_cli"]


class StressError(ValueError):
    """An invalid design or [stress] table (one line)."""


@dataclass(frozen=True)
class Dial:
    """One assumption's dial."""

    key: str
    assumption: str
    title: str
    meaning: str  # what a violation means in the study (plain words)


DIALS: tuple[Dial, ...] = (
    Dial("spillover", "i (SUTVA)", "Spillovers onto controls",
         "controls' outcomes move with the share treated in their site (displacement or contamination), "
         "so the site ITT on the outcome no longer comes only through the mediators"),
    Dial("direct_effect", "ii (exclusion)", "A direct effect of treatment on the outcome",
         "the offer changes the outcome by a route other than the mediators, and 2SLS through the origin "
         "credits that route to the mediators"),
    Dial("mediator_curvature", "iii (M linear in T)", "Mediators not linear in the treatment dose",
         "the higher arms move the mediators more (or less) than in proportion"),
    Dial("outcome_curvature", "iv (Y linear in M)", "An outcome not linear in the mediators",
         "the outcome responds to the square of a mediator, so the effect of a unit depends on the level"),
    Dial("mediator_paths", "v (parallel mediators)", "One mediator moving another",
         "part of the treatment's effect on a later mediator runs through an earlier one, with person-level "
         "path coefficients that go with the later mediator's effect"),
    Dial("selection", "vi (ignorable assignment)", "Selection into treatment",
         "within sites, persons with higher untreated outcomes are more likely to be treated"),
    Dial("within_site_correlation", "vii.a (no within-site compliance-effect covariance)",
         "Within-site correlation of compliance and effect",
         "persons who respond more to the offer also gain more from the mediator, so each site's IV ratio "
         "tends to delta + cov(Gamma, Delta) / gamma instead of delta"),
    Dial("defiers", "vii.b (no defiers)", "Defiers",
         "some persons take up the mediator only when not offered, entering the estimand with a negative weight"),
    Dial("rank", "viii (rank of the compliance matrix)", "A weak or collinear compliance matrix",
         "the sites' compliances carry less independent variation, so the mediators' effects are barely "
         "separable (weak instruments)"),
    Dial("between_site_correlation", "ix (between-site independence)", "Between-site correlation of compliance "
         "and effect", "sites where the offer moves the mediator more are also sites where the mediator matters more"),
    Dial("nonlinear_dependence", "ix (between-site independence, nonlinear)", "Nonlinear between-site dependence",
         "the mediator's effect depends on the site's compliance nonlinearly, with zero correlation, which "
         "a correlation check cannot see"),
)
_BY_KEY = {d.key: d for d in DIALS}


@dataclass(frozen=True)
class StressSettings:
    reps: int = 200
    seed: int = 1
    steps: int = 5
    tolerance: float = 0.10
    coverage_floor: float = 0.90
    truth_sites: int = 200_000
    severe: tuple[tuple[str, float | bool], ...] = ()
    jobs: int = 1
    quiet: bool = False

    def severe_of(self, key: str, default: float):
        for k, v in self.severe:
            if k == key:
                return v
        return default


def _settings(table: dict, source: str, jobs: int, quiet: bool, reps: int | None) -> StressSettings:
    allowed = {"reps": int, "seed": int, "steps": int, "tolerance": float, "coverage_floor": float,
               "truth_sites": int, "dials": dict}
    for key, value in table.items():
        if key not in allowed:
            import difflib
            near = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"; did you mean 'stress.{near[0]}'?" if near else ""
            raise StressError(f"{source}: stress.{key}: unknown key{hint}")
        want = allowed[key]
        ok = isinstance(value, want) and not isinstance(value, bool) or (want is float and isinstance(value, int)
                                                                         and not isinstance(value, bool))
        if not ok:
            raise StressError(f"{source}: stress.{key}: must be {'an integer' if want is int else 'a number' if want is float else 'a table'}")
    s = dict(table)
    dials = s.pop("dials", {})
    severe = []
    for key, value in dials.items():
        if key not in _BY_KEY:
            import difflib
            near = difflib.get_close_matches(key, list(_BY_KEY), n=1)
            hint = f"; did you mean 'stress.dials.{near[0]}'?" if near else f"; dials are {', '.join(_BY_KEY)}"
            raise StressError(f"{source}: stress.dials.{key}: unknown dial{hint}")
        if value is True or not (value is False or isinstance(value, (int, float))):
            raise StressError(f"{source}: stress.dials.{key}: must be a severe value (a number) or false")
        severe.append((key, value if value is False else float(value)))
    out = StressSettings(severe=tuple(severe), jobs=jobs, quiet=quiet, **s)
    if reps is not None:
        out = StressSettings(**{**out.__dict__, "reps": reps})
    checks = [("reps", out.reps >= 2, "must be >= 2"), ("steps", 2 <= out.steps <= 20, "must be in 2..20"),
              ("tolerance", out.tolerance > 0, "must be > 0"),
              ("coverage_floor", 0 < out.coverage_floor < 1, "must be in (0, 1)"),
              ("truth_sites", out.truth_sites >= 1000, "must be >= 1000"), ("seed", out.seed >= 0, "must be >= 0")]
    for name, ok, msg in checks:
        if not ok:
            raise StressError(f"{source}: stress.{name}: {msg}, got {getattr(out, name)}")
    return out


# ---------------------------------------------------------------------------
# From a design to one grid per dial
# ---------------------------------------------------------------------------


@dataclass
class Sweep:
    dial: Dial
    paths: list[str]  # zipped grid paths; the first is the plotted axis
    values: list[list[float]]  # per path, the values in sweep order
    changes: list[str] = field(default_factory=list)  # changes to the design the sweep needs
    raw: dict | None = None
    skipped: str | None = None

    @property
    def axis(self) -> str:
        return self.paths[0]


def _lin(severe: float, steps: int) -> list[float]:
    return [round(severe * i / (steps - 1), 10) for i in range(steps)]


def plan_sweeps(raw: dict, settings: StressSettings, source: str) -> list[Sweep]:
    """The grid of each dial for this design (or the reason it does not apply)."""
    sc = from_dict(raw, source)
    P, arms = sc.n_mediators, sc.arms
    binary = list(sc.is_binary)
    cont = [p for p in range(P) if not binary[p]]
    L = arms - 1
    gamma = [((sc.complier_share[p] - sc.defier_share[p]) if binary[p] else sc.site_mean[p]) for p in range(P)]
    # the ITT on Y of the top arm against control, sum_p g_p(L) gamma_p delta_p (binary: the top arm's take-up)
    itt = abs(sum((1.0 if binary[p] else sc.dose(p)[-1]) * gamma[p] * sc.site_mean[P + p] for p in range(P))) or 1.0
    steps = settings.steps
    out = []

    def add(key, default, build):
        dial = _BY_KEY[key]
        severe = settings.severe_of(key, default)
        if severe is False:
            out.append(Sweep(dial, [], [], skipped="left out in [stress.dials]"))
            return
        res = build(float(severe))
        if isinstance(res, str):
            out.append(Sweep(dial, [], [], skipped=res))
        else:
            out.append(res)

    def sweep(key, paths, values, changes=(), extra=None):
        r = copy.deepcopy(raw)
        if extra:
            extra(r)
        return Sweep(_BY_KEY[key], list(paths), [list(v) for v in values], list(changes), r)

    add("spillover", round(itt, 4), lambda v: sweep("spillover", ["spillover.outcome"], [_lin(v, steps)]))
    add("direct_effect", round(0.5 * itt / L, 4),
        lambda v: sweep("direct_effect", ["site.direct_effect_mean"], [_lin(v, steps)]))
    add("mediator_curvature", 0.5, lambda v: "has no effect with a binary treatment (needs 3+ arms)" if arms == 2
        else sweep("mediator_curvature", ["mediators.curvature"], [_lin(v, steps)]))

    def outcome_curv(v):
        if not cont:
            return "applies to continuous mediators only"
        paths = [f"mediators.outcome_curvature[{p + 1}]" for p in cont]
        return sweep("outcome_curvature", paths, [_lin(v, steps)] * len(paths))
    add("outcome_curvature", 0.2, outcome_curv)

    def paths_dial(v):
        if P < 2 or not [p for p in cont if p >= 1]:
            return "needs a second, continuous mediator"
        # the first pair (earlier -> later continuous mediator, 1-based) that can take a new path: not
        # already joined, and no chain (a path's source receives none, its target sends none)
        have = raw.get("paths", [])
        joined = {(pa.get("from"), pa.get("to")) for pa in have}
        receive = {pa.get("to") for pa in have}
        send = {pa.get("from") for pa in have}
        free = [(a, b + 1) for b in cont for a in range(1, b + 1)
                if (a, b + 1) not in joined and a not in receive and b + 1 not in send]
        if not free:
            listed = ", ".join(f"{a} -> {b}" for a, b in sorted(joined))
            return (f"the design's own paths ({listed}) leave no pair of mediators that can take another "
                    "(chains of paths are not supported)")
        a, b = free[0]

        def extra(r):
            r.setdefault("paths", []).append({"from": a, "to": b, "mean": 0.0, "person_sd": 0.0,
                                              "effect_correlation": 0.5})
        k = len(have) + 1
        return sweep("mediator_paths", [f"paths[{k}].mean", f"paths[{k}].person_sd"], [_lin(v, steps)] * 2,
                     [f"a path from mediator {a} to mediator {b} whose mean and person SD grow with the dial, "
                      "correlation 0.5 with the later mediator's effect"], extra)
    add("mediator_paths", 1.0, paths_dial)
    add("selection", 1.0, lambda v: sweep("selection", ["selection.strength"], [_lin(v, steps)]))

    def within(v):
        changes = []

        def extra(r):
            person = r.setdefault("person", {})
            for key, fallback, label in (("effect_sd", [0.5 * abs(sc.site_mean[P + p]) or 0.2 for p in range(P)],
                                          "person-level effect SD"),
                                         ("compliance_sd", [0.5 * abs(gamma[p]) or 0.2 for p in range(P)],
                                          "person-level compliance SD")):
                if key == "compliance_sd" and not cont:
                    continue
                cur = getattr(sc, key)
                if all(x == 0 for x in cur):
                    vals = [fallback[p] if (key == "effect_sd" or not binary[p]) else 0.0 for p in range(P)]
                    person[key] = vals
                    changes.append(f"{label} set to {', '.join(f'{x:g}' for x in vals)} (zero in the design)")
        res = sweep("within_site_correlation", ["person.within_site_correlation"], [_lin(v, steps)], (), extra)
        res.changes = changes
        return res
    add("within_site_correlation", 0.6, within)

    def defiers(v):
        b = [p for p in range(P) if binary[p]]
        if not b:
            return "applies to binary mediators only"
        paths, values = [], []
        for p in b:
            if v >= sc.complier_share[p] - 0.05:
                return f"the severe defier share {v:g} must stay below the complier share {sc.complier_share[p]:g}"
            donor = "never_share" if sc.never_share[p] >= v else "complier_share"
            base = getattr(sc, donor)[p]
            paths += [f"binary.defier_share[{p + 1}]", f"binary.{donor}[{p + 1}]"]
            values += [_lin(v, steps), [round(base - x, 10) for x in _lin(v, steps)]]
        return sweep("defiers", paths, values, [f"the defier share is taken from the never-takers (or compliers)"])
    add("defiers", 0.15, defiers)

    def rank(v):
        if P >= 2:
            return sweep("rank", ["site.compliance_correlation"], [_lin(min(v, 0.99), steps)])
        sd0 = sc.site_sd[0] if not binary[0] else sc.complier_share_site_sd[0]
        path = "site.compliance_sd" if not binary[0] else "binary.complier_share_site_sd"
        if sd0 == 0:
            return "the design's compliance does not vary between sites: the instruments are already weak"
        vals = [round(sd0 * (1 - min(v, 0.95) * i / (steps - 1)), 10) for i in range(steps)]
        return sweep("rank", [path], [vals], ["with one mediator the rank dial shrinks the between-site SD of "
                                              "compliance (the instruments' strength)"])
    add("rank", 0.9, rank)

    def site_effect_extra(changes):
        def extra(r):
            site = r.setdefault("site", {})
            if all(sc.site_sd[P + p] == 0 for p in range(P)):
                vals = [0.5 * abs(sc.site_mean[P + p]) or 0.1 for p in range(P)]
                site["effect_sd"] = vals
                changes.append(f"between-site effect SD set to {', '.join(f'{x:g}' for x in vals)} (zero in the design)")
        return extra

    def varies():
        return all((sc.complier_share_site_sd[p] if binary[p] else sc.site_sd[p]) > 0 for p in range(P))

    def between(v):
        if not varies():
            return "needs compliance that varies between sites"
        changes = []
        res = sweep("between_site_correlation", ["site.compliance_effect_correlation"], [_lin(v, steps)], (),
                    site_effect_extra(changes))
        res.changes = changes
        return res
    add("between_site_correlation", 0.6, between)

    def nonlinear(v):
        if not varies():
            return "needs compliance that varies between sites"
        changes = []
        res = sweep("nonlinear_dependence", ["site.nonlinear_dependence"], [_lin(v, steps)], (),
                    site_effect_extra(changes))
        res.changes = changes
        return res
    add("nonlinear_dependence", 1.0, nonlinear)
    return out


def _cells(sw: Sweep, source: str):
    raw = copy.deepcopy(sw.raw)
    raw["grid"] = {p: v for p, v in zip(sw.paths, sw.values)}
    if len(sw.paths) > 1:
        raw["grid"]["zip"] = [list(sw.paths)]
    return expand_grid(raw, f"{source} [stress dial {sw.dial.key}]")


# ---------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------


def _target_name(mediator: str, kinds: dict) -> str:
    return "late" if kinds.get(mediator) == "binary" else "ate"


def verdicts(summary: pd.DataFrame, sweep_values: list[float], kinds: dict, tolerance: float,
             coverage_floor: float) -> pd.DataFrame:
    """Per estimator x mediator: the first dial value (sweep order) where bias or coverage fail.

    ``summary`` is the long frame of :func:`simulate.summary.summarize_directory` for the dial's
    run (cell i has dial value ``sweep_values[i]``).  Returns columns estimator, mediator,
    target, bias_threshold, coverage_threshold, first_threshold, verdict.
    """
    rows = []
    s = summary[summary.mediator != "direct_effect"]
    for (est, med), g in s.groupby(["estimator", "mediator"], sort=False):
        target = _target_name(med, kinds)
        bias_at = cov_at = None
        for cell, value in enumerate(sweep_values):
            gall = g[g.cell == cell]
            gc = gall[gall.target == target]
            b = gc[gc.measure == "bias"]
            if bias_at is None and len(b):
                theta = _theta(gall, b)
                if np.isfinite(b.value.iloc[0]) and abs(b.value.iloc[0]) - 1.96 * b.mcse.iloc[0] > tolerance * abs(theta):
                    bias_at = value
            c = gc[gc.measure == "coverage"]
            if cov_at is None and len(c) and np.isfinite(c.value.iloc[0]):
                if c.value.iloc[0] + 1.96 * c.mcse.iloc[0] < coverage_floor:
                    cov_at = value
        firsts = [v for v in (bias_at, cov_at) if v is not None]
        first = None if not firsts else min(firsts, key=lambda v: sweep_values.index(v))
        if first is None:
            verdict = f"no threshold reached up to {sweep_values[-1]:.3g}"
        else:
            parts = []
            if bias_at is not None:
                parts.append(f"bias beyond {tolerance:.0%} from {bias_at:.3g}")
            if cov_at is not None:
                parts.append(f"coverage below {coverage_floor:.0%} from {cov_at:.3g}")
            verdict = "; ".join(parts)
            if first == sweep_values[0]:
                verdict += " (already where the assumption holds)"
        rows.append({"estimator": est, "mediator": med, "target": target, "bias_threshold": bias_at,
                     "coverage_threshold": cov_at, "first_threshold": first, "verdict": verdict})
    return pd.DataFrame(rows)


def _theta(gall: pd.DataFrame, b: pd.DataFrame) -> float:
    """The target's value in a cell: mean estimate (target "none") minus bias."""
    m = gall[(gall.measure == "mean_estimate") & (gall.target == "none")]
    if len(m):
        return float(m.value.iloc[0] - b.value.iloc[0])
    return float("nan")


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def read_design(path: str | Path, jobs: int = 1, quiet: bool = False, reps: int | None = None):
    """(raw scenario table without [stress], StressSettings)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StressError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise StressError(f"{path}: not valid TOML ({exc})") from None
    if "grid" in raw:
        raise StressError(f"{path}: grid: a design for stress-test has no [grid]; the stress test makes its own")
    table = raw.pop("stress", {})
    if not isinstance(table, dict):
        raise StressError(f"{path}: stress: must be a table ([stress])")
    settings = _settings(table, str(path), jobs, quiet, reps)
    from_dict(raw, str(path))  # the design itself must be valid
    return raw, settings


def stress_test(design: str | Path, out: str | Path, *, jobs: int = 1, quiet: bool = False,
                reps: int | None = None) -> Path:
    """Run the stress test of a design and write the report; returns the report's path."""
    raw, settings = read_design(design, jobs, quiet, reps)
    source = str(design)
    out = Path(out)
    sweeps = plan_sweeps(raw, settings, source)
    for sw in sweeps:  # validate every cell before any work
        if sw.skipped is None:
            _cells(sw, source)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    from . import plots
    base = from_dict(raw, source)
    kinds = dict(zip(base.mediator_names, base.mediator_kind))
    results = []
    t0 = time.perf_counter()
    active = [sw for sw in sweeps if sw.skipped is None]
    for i, sw in enumerate(sweeps):
        if sw.skipped is not None:
            results.append((sw, None, None, []))
            continue
        if not quiet:
            print(f"[{active.index(sw) + 1}/{len(active)}] {sw.dial.assumption}: {sw.dial.title} "
                  f"({sw.axis} = {', '.join(f'{v:.3g}' for v in sw.values[0])})", file=sys.stderr)
        cells = _cells(sw, source)
        run_dir = out / "dials" / sw.dial.key
        cfg = RunConfig(reps=settings.reps, seed=settings.seed, jobs=jobs, quiet=quiet,
                        resume=(run_dir / "manifest.json").exists())
        run(cells, run_dir, cfg, truth_sites=settings.truth_sites)
        summary = plots.load_summary(run_dir)  # the summary.csv the run just wrote
        summary.to_csv(out / "tables" / f"{sw.dial.key}_summary.csv", index=False)
        ver = verdicts(summary, sw.values[0], kinds, settings.tolerance, settings.coverage_floor)
        ver.to_csv(out / "tables" / f"{sw.dial.key}_verdicts.csv", index=False)
        figs = _figures(plots, summary, sw, kinds, out / "figures", settings)
        results.append((sw, summary, ver, figs))
    elapsed = time.perf_counter() - t0
    from .report import write_report

    return write_report(out, design=Path(design), base=base, settings=settings, results=results,
                        elapsed=elapsed, version=__version__, code=code_version())


def _figures(plots, summary, sw: Sweep, kinds, folder: Path, settings: StressSettings) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    # each mediator's panel against its own target: the one its verdict uses
    targets = {m: _target_name(m, kinds) for m in summary.mediator.unique() if m != "direct_effect"}
    for measure, nominal in (("bias", None), ("coverage", 0.95)):
        fig = plots.dial_plot(summary[summary.mediator != "direct_effect"], sw.axis, measure,
                              target=targets, nominal=nominal,
                              title=f"{sw.dial.assumption}: {measure} against the dial")
        name = folder / f"{sw.dial.key}_{measure}"
        for ext in ("png", "pdf"):
            fig.savefig(f"{name}.{ext}", dpi=150, bbox_inches="tight")
        plt.close(fig)
        paths.append(Path(f"{name}.png"))
    return paths


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def add_subcommand(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("stress-test", help="sweep every assumption's dial on a planned design; write a report")
    p.add_argument("design", help="a scenario file describing the planned design (optional [stress] table)")
    p.add_argument("--out", required=True, help="output directory (report.html, report.md, figures, tables)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--reps", type=int, default=None, help="replications per dial value (overrides [stress].reps)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(run=run_cli)
    return p


def run_cli(args) -> int:
    try:
        path = stress_test(args.design, args.out, jobs=args.jobs, quiet=args.quiet, reps=args.reps)
    except (StressError, ScenarioError, RunError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"report: {path}")
    return 0


