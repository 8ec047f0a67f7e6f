r"""Stress-test a planned design: every assumption's dial swept from zero to a severe value.

``simulate stress-test DESIGN --out DIR`` reads a planned design (an ordinary scenario
file, or the name of a bundled design, every dial at zero, plus an optional ``[stress]``
table) and, for each assumption of :data:`simulate.assumptions.ASSUMPTIONS` that can fail
in the design, moves its dial from 0 (it holds) to a severe value.  Each estimator x
mediator gets a verdict a methodologist can sign, decided in this order.

**The exact part.**  The identification bias (large-sample limit minus target) needs no
replication: it is evaluated on a fine grid of the dial (``fine_steps`` values, 41 by
default) from the truth (:func:`simulate.truth.truth`): by Gauss-Hermite quadrature, exact
(error 0) for Gaussian scenarios; where a scenario has none, from ``truth_batches x
truth_batch_sites`` simulated sites in :data:`simulate.truth.SE_BATCHES` batches, so that the
limit carries its own standard error.  The *exact breakdown* is the smallest dial value where
|identification bias| exceeds the tolerance, decided beyond ``t(B-1)`` standard errors (no
margin for an exact limit) and interpolated linearly between grid values.

**The Monte Carlo part.**  At each simulated dial value (``steps`` of them, 0 included) every
comparison of a Monte Carlo measure with its threshold is *decided* only when the threshold
lies outside the measure's 95% Monte Carlo interval (estimate +- 1.96 MCSE):

- |total bias| against the tolerance (``tolerance`` times |target| where the assumption holds);
- coverage of the 95% interval against ``coverage_floor``;
- RMSE against ``rmse_ratio`` times the smallest RMSE of the IV estimators at that value
  (an estimator many times less precise than another is not a safe choice, whatever its bias).

A comparison that is not decided is *undecided*, and the replications that would decide it
are estimated from the MCSE's 1/sqrt(R) law.  **Adaptive replications**: the dial values
whose undecided comparisons bear on a verdict get more replications, up to ``max_reps``
(replication r keeps its random numbers, so extending adds replications and changes none;
a resumed or re-run stress test replays the same plan and gives identical tables).

**Verdict states** (one per dial x estimator x mediator):

``fails_at_zero``
    already fails where every assumption holds (see the baseline table).
``breaks_at``
    the smallest dial value at which a comparison fails: the exact breakdown, or the first
    simulated value with a decided Monte Carlo failure; ``driver`` says what drives it
    (``identification``, ``finite_sample`` bias, ``bias`` where the estimator has no exact
    limit to split it by, ``coverage`` or ``rmse``).
``not_applicable``
    the dial cannot move any target or limit in this design (the exact truth is flat along
    it), and no Monte Carlo failure was seen.
``cannot_tell``
    no failure is decided, but some comparison is not decided either at the replications
    run (the note says about how many would tell).
``holds``
    every comparison decided within its threshold, at every simulated value, and the exact
    identification bias within the tolerance up to the severe value.

The target is the population LATE (the complier average effect: what the IV estimators aim
at when compliance types exist) for binary mediators and the population ATE for continuous
ones.  OLS is reported as the confounded reference, never in a headline.  For each dial value
the rates at which the design's own checks would have fired (first-stage F below 10, the
overidentification test and the nonlinearity (falsification) test at 5%) are reported with
their MCSE.

``[stress]`` (all optional)::

    [stress]
    reps = 200              # first-pass replications per dial value
    max_reps = 1000         # adaptive replications stop here
    seed = 1
    steps = 5               # simulated dial values from 0 to the severe value
    fine_steps = 41         # dial values of the exact part (at least; a multiple of steps - 1, plus 1)
    tolerance = 0.10        # bias tolerance, a share of the target where the assumption holds
    coverage_floor = 0.90
    rmse_ratio = 3.0        # RMSE beyond this multiple of the best IV estimator's fails
    truth_sites = 50000     # simulated sites for each simulated cell's truth
    truth_batches = 4       # exact part, where a limit has no quadrature: 4 x 2,500 simulated sites
    truth_batch_sites = 2500
    defier_effect_shift = -0.4   # defiers' effect minus compliers' (default: defiers gain nothing)
    [stress.dials]          # a dial's severe value, or false to leave it out
    selection = 1.5
    spillover = false

Output: ``DIR/report.html`` (one self-contained page, figures embedded), ``DIR/report.md``,
``DIR/figures/``, ``DIR/tables/`` (``verdicts.csv``, ``measures.csv``, ``checks.csv``,
``exact.csv``, ``baseline.csv``), ``DIR/cells/HASH/`` (one run directory per distinct
simulated scenario: rows, manifest, summary; shared by the dials whose value 0 is the same
design), ``DIR/plan.json`` (the replications of each pass).  An interrupted stress test
resumes where it stopped.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import sys
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .assumptions import ASSUMPTIONS, BY_KEY, Assumption, SweepPlan
from .assumptions import design as make_design
from .cell_measures import cell_measures
from .cell_measures import target_name as _target_name
from .errors import SimulateError
from .runner import BatchRun, RunConfig, run_batch
from .scenario import GridCell, from_dict, set_path
from .store import code_version

__all__ = ["StressSettings", "StressError", "Sweep", "stress_test", "plan_sweeps", "read_design",
           "exact_curves", "exact_breakdown", "compare", "decide", "VERDICTS"]

VERDICTS = ("holds", "breaks_at", "fails_at_zero", "cannot_tell", "not_applicable")
Z = 1.959963984540054  # Phi^{-1}(0.975)
OLS = "ols"
DIRECT_EFFECT = "direct_effect"
_SCENARIOS = Path(__file__).resolve().parent / "scenarios"


class StressError(SimulateError):
    """An invalid design or [stress] table (one line)."""


@dataclass(frozen=True)
class StressSettings:
    """The ``[stress]`` table (see the module docstring), plus the command line's jobs and quiet."""

    reps: int = 200
    max_reps: int = 1000
    seed: int = 1
    steps: int = 5
    fine_steps: int = 41
    tolerance: float = 0.10
    coverage_floor: float = 0.90
    rmse_ratio: float = 3.0
    truth_sites: int = 50_000
    truth_batches: int = 4
    truth_batch_sites: int = 2500
    defier_effect_shift: float | None = None
    severe: tuple[tuple[str, float | bool], ...] = ()
    jobs: int = 1
    quiet: bool = False
    pdf: bool = False

    def severe_of(self, key: str, default: float):
        """The value ``[stress.dials]`` gives dial ``key`` (a severe value, or False: not swept), else ``default``."""
        for k, v in self.severe:
            if k == key:
                return v
        return default

    @property
    def fine_count(self) -> int:
        """Values of the exact grid: (steps - 1) k + 1 >= fine_steps, so the simulated values are on it."""
        k = math.ceil((self.fine_steps - 1) / (self.steps - 1))
        return (self.steps - 1) * k + 1

    def fingerprint(self) -> dict:
        """The settings that decide the results (all but jobs, quiet and pdf), for the fingerprint in ``plan.json``."""
        keep = ("reps", "max_reps", "seed", "steps", "fine_steps", "tolerance", "coverage_floor", "rmse_ratio",
                "truth_sites", "truth_batches", "truth_batch_sites", "defier_effect_shift")
        return {k: getattr(self, k) for k in keep} | {"severe": [list(s) for s in self.severe]}


_KINDS = {"reps": int, "max_reps": int, "seed": int, "steps": int, "fine_steps": int, "tolerance": float,
          "coverage_floor": float, "rmse_ratio": float, "truth_sites": int, "truth_batches": int,
          "truth_batch_sites": int, "defier_effect_shift": float, "dials": dict}


def _settings(table: dict, source: str, jobs: int, quiet: bool, reps: int | None, pdf: bool = False) -> StressSettings:
    for key, value in table.items():
        if key not in _KINDS:
            near = difflib.get_close_matches(key, list(_KINDS), n=1)
            hint = f"; did you mean 'stress.{near[0]}'?" if near else ""
            raise StressError(f"{source}: stress.{key}: unknown key{hint}")
        want = _KINDS[key]
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if want is int:
            ok = is_int
        else:
            ok = (is_int or isinstance(value, float)) if want is float else isinstance(value, dict)
        if not ok:
            what = {int: "an integer", float: "a number", dict: "a table"}[want]
            raise StressError(f"{source}: stress.{key}: must be {what}")
    s = dict(table)
    dials = s.pop("dials", {})
    severe = []
    for key, value in dials.items():
        if key not in BY_KEY:
            near = difflib.get_close_matches(key, list(BY_KEY), n=1)
            hint = f"; did you mean 'stress.dials.{near[0]}'?" if near else f"; dials are {', '.join(BY_KEY)}"
            raise StressError(f"{source}: stress.dials.{key}: unknown dial{hint}")
        if value is True or not (value is False or isinstance(value, (int, float))):
            raise StressError(f"{source}: stress.dials.{key}: must be a severe value (a number) or false")
        if value is not False and not math.isfinite(value):
            raise StressError(f"{source}: stress.dials.{key}: must be a finite number, got {value}")
        severe.append((key, value if value is False else float(value)))
    for k in ("tolerance", "coverage_floor", "rmse_ratio", "defier_effect_shift"):
        if k in s:
            try:
                s[k] = float(s[k])
            except OverflowError:
                raise StressError(f"{source}: stress.{k}: must be a number of ordinary size") from None
    for k, v in s.items():
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63:
            digits = len(str(abs(v)))
            raise StressError(f"{source}: stress.{k}: must be below 2^63 in size, got a {digits}-digit integer")
    out = StressSettings(severe=tuple(severe), jobs=jobs, quiet=quiet, pdf=pdf, **s)
    if reps is not None:
        out = replace(out, reps=reps, max_reps=max(out.max_reps, reps) if "max_reps" not in table else out.max_reps)
    checks = [("reps", 2 <= out.reps <= 1_000_000, "must be in 2..1000000"),
              ("max_reps", out.reps <= out.max_reps <= 1_000_000, f"must be in reps ({out.reps})..1000000"),
              ("steps", 2 <= out.steps <= 20, "must be in 2..20"),
              ("fine_steps", 2 <= out.fine_steps <= 401, "must be in 2..401"),
              ("tolerance", 0 < out.tolerance < 10, "must be in (0, 10)"),
              ("coverage_floor", 0 < out.coverage_floor < 1, "must be in (0, 1)"),
              ("rmse_ratio", 1 < out.rmse_ratio <= 1000, "must be in (1, 1000]"),
              ("truth_sites", 1000 <= out.truth_sites <= 10_000_000, "must be in 1000..10000000"),
              ("truth_batches", 2 <= out.truth_batches <= 100, "must be in 2..100"),
              ("truth_batch_sites", 500 <= out.truth_batch_sites <= 1_000_000, "must be in 500..1000000"),
              ("seed", 0 <= out.seed < 2**63, "must be in [0, 2^63)"),
              ("defier_effect_shift", out.defier_effect_shift is None or abs(out.defier_effect_shift) <= 1e6,
               "must be a number of at most 1e6 in size")]
    for name, ok, msg in checks:
        if not ok:
            raise StressError(f"{source}: stress.{name}: {msg}, got {getattr(out, name)}")
    return out


# ---------------------------------------------------------------------------
# From a design to one sweep per assumption
# ---------------------------------------------------------------------------


@dataclass
class Sweep:
    """One assumption's sweep: the plan (paths from start to end) or the reason it is skipped."""

    assumption: Assumption
    severe: float | None = None
    plan: SweepPlan | None = None
    skipped: str | None = None
    ts: list[float] = field(default_factory=list)  # simulated fractions of the way to the severe value

    @property
    def dial(self) -> Assumption:
        """The assumption swept (the same as ``assumption``)."""
        return self.assumption

    @property
    def paths(self) -> list[str]:
        """The grid paths the dial moves (none if skipped)."""
        return self.plan.paths if self.plan else []

    @property
    def axis(self) -> str:
        """The first path: the dial's axis."""
        return self.paths[0]

    @property
    def changes(self) -> list[str]:
        """The changes the sweep makes to the design (none if skipped)."""
        return self.plan.changes if self.plan else []

    @property
    def values(self) -> list[list[float]]:
        """Per path, its value at each simulated dial value."""
        return [[self.plan.values_at(t)[j] for t in self.ts] for j in range(len(self.paths))]

    @property
    def dial_values(self) -> list[float]:
        """The simulated dial values: the axis at each fraction in ``ts``."""
        return [self.plan.axis_at(t) for t in self.ts]

    def raw_at(self, t: float) -> dict:
        """A copy of the plan's design table with every path set to its value at fraction t."""
        raw = copy.deepcopy(self.plan.raw)
        for path, value in zip(self.paths, self.plan.values_at(t)):
            raw = set_path(raw, path, value, f"[stress dial {self.assumption.key}]")
        return raw

    def cell_at(self, t: float, source: str) -> GridCell:
        """The :class:`GridCell` at fraction t: the scenario of :meth:`raw_at`, its source naming dial and values."""
        values = tuple(zip(self.paths, self.plan.values_at(t)))
        label = ", ".join(f"{p} = {v}" for p, v in values)
        return GridCell(0, values, from_dict(self.raw_at(t), f"{source} [stress dial {self.assumption.key}: {label}]"))


def plan_sweeps(raw: dict, settings: StressSettings, source: str) -> list[Sweep]:
    """The sweep of each assumption for this design (or the reason it does not apply)."""
    d = make_design(raw, source, {"defier_effect_shift": settings.defier_effect_shift})
    ts = [round(i / (settings.steps - 1), 12) for i in range(settings.steps)]
    out = []
    for a in ASSUMPTIONS:
        severe = settings.severe_of(a.key, None)
        if severe is False:
            out.append(Sweep(a, skipped="left out in [stress.dials]"))
            continue
        severe = float(a.severe(d) if severe is None else severe)
        res = a.recipe(d, severe)
        if isinstance(res, str):
            out.append(Sweep(a, severe, skipped=res))
        else:
            out.append(Sweep(a, severe, res, ts=list(ts)))
    return out


def _cells(sw: Sweep, source: str) -> list[GridCell]:
    """The simulated cells of a sweep (validated)."""
    return [replace(sw.cell_at(t, source), index=i) for i, t in enumerate(sw.ts)]


def _resolve(design) -> Path:
    path = Path(design)
    if path.exists():
        return path
    for folder in (_SCENARIOS / "designs", _SCENARIOS):
        cand = folder / f"{design}.toml"
        if cand.exists():
            return cand
    names = sorted(p.stem for p in (_SCENARIOS / "designs").glob("*.toml"))
    raise StressError(f"{design}: no such file or bundled design (bundled designs: {', '.join(names) or 'none'})")


def read_design(path: str | Path, jobs: int = 1, quiet: bool = False, reps: int | None = None, pdf: bool = False):
    """(raw scenario table without [stress], StressSettings) of a design file or bundled design name."""
    path = _resolve(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StressError(f"{path}: cannot be read ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise StressError(f"{path}: not valid TOML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise StressError(f"{path}: not valid TOML (nested too deeply)") from None
    if "grid" in raw:
        raise StressError(f"{path}: grid: a design for stress-test has no [grid]; the stress test makes its own")
    table = raw.pop("stress", {})
    if not isinstance(table, dict):
        raise StressError(f"{path}: stress: must be a table ([stress])")
    settings = _settings(table, str(path), jobs, quiet, reps, pdf)
    from_dict(copy.deepcopy(raw), str(path))  # the design itself must be valid
    return raw, settings


# ---------------------------------------------------------------------------
# The exact part: identification bias on a fine grid of the dial
# ---------------------------------------------------------------------------


def _limit_of():
    from .truth import LIMIT_OF

    return LIMIT_OF


def _exact_point(raw: dict, source: str, sites: int, estimators: list[str]) -> list[dict]:
    """Targets and limits at one dial value, each limit with its numerical error.

    The truth's limits come from Gauss-Hermite quadrature (error 0: exact for the polynomial
    integrands of Gaussian scenarios, converged to 1e-10 along a binary mediator's index);
    where a scenario has no quadrature, ``sites`` simulated sites in
    :data:`simulate.truth.SE_BATCHES` batches give each limit with its standard error.
    """
    from .truth import truth

    sc = from_dict(raw, source)
    limit_of = _limit_of()
    try:
        tr, note = truth(sc, n_sites=sites), ""
    except Exception as exc:  # a limit that does not exist: NaN with the reason
        tr, note = None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    rows = []
    kinds = dict(zip(sc.mediator_names, sc.mediator_kind))
    for p, med in enumerate(sc.mediator_names):
        target = _target_name(kinds[med])
        for est in estimators:
            lim = limit_of.get(est)
            tv = getattr(tr, target)[p] if tr is not None else math.nan
            limit = float(getattr(tr, lim)[p]) if (tr is not None and lim) else math.nan
            se = float(tr.se_of(lim)[p]) if math.isfinite(limit) else math.nan
            rows.append({"estimator": est, "mediator": med, "target": target, "target_value": tv,
                         "limit": limit, "limit_se": se,
                         "limit_method": tr.limit_method if math.isfinite(limit) else "",
                         "note": note})
    return rows


def exact_curves(sweeps: list[Sweep], settings: StressSettings, source: str, estimators: list[str]) -> pd.DataFrame:
    """The exact part of every sweep: one row per dial x fine value x estimator x mediator.

    Columns ``dial, t, value, estimator, mediator, target, target_value, limit, limit_se,
    identification_bias, note``.
    """
    n = settings.fine_count
    tasks = []
    for sw in sweeps:
        if sw.skipped is None:
            for i in range(n):
                t = round(i / (n - 1), 12)
                tasks.append((sw, t))
    sites = settings.truth_batches * settings.truth_batch_sites
    args = [(sw.raw_at(t), f"{source} [stress dial {sw.dial.key}]", sites, estimators) for sw, t in tasks]
    if settings.jobs > 1 and len(args) > 8:
        from joblib import Parallel, delayed

        res = Parallel(n_jobs=settings.jobs, backend="loky", batch_size=4)(delayed(_exact_point)(*a) for a in args)
    else:
        res = [_exact_point(*a) for a in args]
    rows = []
    for (sw, t), part in zip(tasks, res):
        for r in part:
            rows.append({"dial": sw.dial.key, "t": t, "value": sw.plan.axis_at(t), **r})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["identification_bias"] = frame["limit"] - frame["target_value"]
    return frame


_T_CRIT = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 8: 2.365, 10: 2.262}


def _t_crit(batches: int) -> float:
    if batches in _T_CRIT:
        return _T_CRIT[batches]
    from scipy.special import stdtrit  # the t quantile without importing scipy.stats (1-2 s)

    return float(stdtrit(batches - 1, 0.975))


def exact_breakdown(values, bias, se, tolerance: float, crit: float) -> tuple[str, float | None]:
    """The exact part's state along a fine grid: ``(state, breakdown)``.

    ``bias`` is the identification bias at each of ``values`` (increasing from 0) with its
    standard error ``se`` (0 for closed forms).  State ``breaks`` with the smallest value at
    which |bias| exceeds ``tolerance`` beyond ``crit`` SEs, interpolated linearly between the
    grid value before it and it (the value itself where the bias is already beyond at the
    first value); ``holds`` when |bias| is within the tolerance beyond ``crit`` SEs at every
    value; ``undecided`` when neither; ``unavailable`` when the limit is not known.
    """
    values, a, se = np.asarray(values, float), np.abs(np.asarray(bias, float)), np.asarray(se, float)
    if not np.isfinite(a).all() or not np.isfinite(se).all() or len(a) == 0:
        return "unavailable", None
    over = a - crit * se > tolerance
    within = a + crit * se < tolerance
    if over.any():
        j = int(np.argmax(over))
        if j == 0:
            return "breaks", float(values[0])
        a0, a1 = a[j - 1], a[j]
        frac = 1.0 if a1 == a0 else min(1.0, max(0.0, (tolerance - a0) / (a1 - a0)))
        return "breaks", float(values[j - 1] + frac * (values[j] - values[j - 1]))
    if within.all():
        return "holds", None
    return "undecided", None


# ---------------------------------------------------------------------------
# The Monte Carlo part
# ---------------------------------------------------------------------------


@dataclass
class Comparison:
    """One Monte Carlo measure against its threshold at one dial value."""

    measure: str  # bias, coverage, rmse
    state: str  # fail, ok, undecided, na
    needed: float = math.nan  # replications that would decide it (undecided only)


def _needed(reps: int, spread: float, gap: float) -> float:
    """Replications R' at which ``Z spread sqrt(R / R')`` falls below ``gap`` (the 1/sqrt(R) law)."""
    if not (math.isfinite(spread) and math.isfinite(gap)) or gap <= 0:
        return math.inf
    return reps * (Z * spread / gap) ** 2


def compare(value: float, mcse: float, threshold: float, above_fails: bool, reps: int, measure: str) -> Comparison:
    """Decide ``value`` against ``threshold`` only when the threshold is outside value +- 1.96 MCSE.

    ``above_fails``: the measure fails above the threshold (|bias|, RMSE) or below it (coverage).
    """
    if not (math.isfinite(value) and math.isfinite(threshold)):
        return Comparison(measure, "na")
    mcse = mcse if math.isfinite(mcse) else math.inf
    lo, hi = value - Z * mcse, value + Z * mcse
    if above_fails:
        if lo > threshold:
            return Comparison(measure, "fail")
        if hi < threshold:
            return Comparison(measure, "ok")
    else:
        if hi < threshold:
            return Comparison(measure, "fail")
        if lo > threshold:
            return Comparison(measure, "ok")
    return Comparison(measure, "undecided", _needed(reps, mcse, abs(value - threshold)))


def _rmse_comparison(a: float, sa: float, b: float, sb: float, ratio: float, reps: int) -> Comparison:
    """RMSE ``a`` (MCSE ``sa``) against ``ratio`` times the best IV estimator's ``b`` (``sb``), conservatively."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return Comparison("rmse", "na")
    sa, sb = (s if math.isfinite(s) else math.inf for s in (sa, sb))
    if a - Z * sa > ratio * (b + Z * sb):
        return Comparison("rmse", "fail")
    if a + Z * sa < ratio * (b - Z * sb):
        return Comparison("rmse", "ok")
    return Comparison("rmse", "undecided", _needed(reps, sa + ratio * sb, abs(a - ratio * b)))


def _bias_comparison(bias: float, mcse: float, tol: float, reps: int) -> Comparison:
    if not math.isfinite(bias):
        return Comparison("bias", "undecided", math.inf)  # no successful replication: nothing demonstrated
    c = compare(abs(bias), mcse, tol, True, reps, "bias")
    return c


def _state(comps: list[Comparison]) -> str:
    states = [c.state for c in comps if c.state != "na"]
    if "fail" in states:
        return "fail"
    if states and all(s == "ok" for s in states):
        return "ok"
    return "undecided" if states else "na"


def decide(values: list[float], mc: list[list[Comparison]], exact: tuple[str, float | None],
           exact_over: list[bool], flat: bool, reps: list[int]) -> dict:
    """Combine the exact part and the Monte Carlo comparisons into one verdict.

    Parameters
    ----------
    values : the simulated dial values, increasing from 0.
    mc : per simulated value, its comparisons (bias, coverage, RMSE).
    exact : ``(state, breakdown)`` of :func:`exact_breakdown`.
    exact_over : per simulated value, whether |identification bias| is decided beyond the
        tolerance there (a bias failure is then driven by ``identification``, else by
        ``finite_sample``); None where the estimator has no exact limit (driver ``bias``).
    flat : the exact truth does not move along the dial (an identification dial that cannot matter).
    reps : replications behind each simulated value.

    Returns
    -------
    dict with ``verdict, breakdown, breakdown_exact, breakdown_mc, driver, needed, note``.
    """
    states = [_state(c) for c in mc]
    e_state, e_value = exact
    mc_first = next((i for i, s in enumerate(states) if s == "fail"), None)

    def driver_at(i: int) -> str:
        failed = {c.measure for c in mc[i] if c.state == "fail"}
        if "bias" in failed:
            if exact_over[i] is None:
                return "bias"  # no exact limit to split the bias by
            return "identification" if exact_over[i] else "finite_sample"
        return "coverage" if "coverage" in failed else "rmse"

    out = {"breakdown_exact": e_value if e_state == "breaks" else None,
           "breakdown_mc": values[mc_first] if mc_first is not None else None, "needed": math.nan, "note": ""}
    undecided = [c for cs in mc for c in cs if c.state == "undecided"]
    if undecided:
        out["needed"] = max(c.needed for c in undecided)
    cands = []
    if e_state == "breaks":
        cands.append((e_value, 0, "identification"))
    if mc_first is not None:
        cands.append((values[mc_first], 1, driver_at(mc_first)))
    if cands:
        value, _, driver = min(cands)
        verdict = "fails_at_zero" if value <= values[0] else "breaks_at"
        out.update(verdict=verdict, breakdown=value, driver=driver)
        earlier = [values[i] for i, s in enumerate(states[:mc_first if mc_first is not None else len(states)])
                   if s == "undecided" and values[i] < value]
        if earlier:
            out["note"] = f"cannot tell at {', '.join(f'{v:.3g}' for v in earlier)}: it may break earlier"
        return out
    if flat:
        out.update(verdict="not_applicable", breakdown=None, driver="")
        return out
    if undecided or e_state == "undecided":
        out.update(verdict="cannot_tell", breakdown=None, driver="")
        where = [f"{values[i]:.3g} ({reps[i]:,} replications)" for i, s in enumerate(states) if s == "undecided"]
        need = out["needed"]
        need_txt = ("more than 10^6" if not math.isfinite(need) or need > 1e6 else f"about {_round_up(need):,}")
        if where:
            out["note"] = f"cannot tell at {', '.join(where)}: {need_txt} needed"
        else:
            out["note"] = "the exact identification bias is too close to the tolerance to decide"
        return out
    out.update(verdict="holds", breakdown=None, driver="")
    return out


def _round_up(x: float, step: int = 50) -> int:
    return int(math.ceil(x / step) * step)


# ---------------------------------------------------------------------------
# Reading the simulated cells
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def _say(settings: StressSettings, msg: str) -> None:
    if not settings.quiet:
        print(msg, file=sys.stderr, flush=True)


def _complete(run_dir: Path, reps: int) -> bool:
    """Whether ``run_dir`` holds a finished run of ``reps`` replications with its summary."""
    if not (run_dir / "manifest.json").exists() or not (run_dir / "summary.csv").exists():
        return False
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return bool(manifest.get("complete")) and manifest.get("reps") == reps


def _held(run_dir: Path) -> bool:
    return (run_dir / "manifest.json").exists()


def _run_cells(todo: list[tuple[GridCell, Path, int]], settings: StressSettings) -> None:
    """Run every (cell, directory, replications) of a pass as one batch: one pool, one warm-up."""
    cfg = RunConfig(reps=max((r for *_, r in todo), default=1), seed=settings.seed, jobs=settings.jobs,
                    quiet=settings.quiet)
    run_batch([BatchRun([replace(c, index=0)], d, r) for c, d, r in todo], cfg, truth_sites=settings.truth_sites)


def _read_cells(cells: list[str], out: Path, kinds, reps_of: dict, cache: dict, jobs: int) -> None:
    """:func:`cell_measures` of ``cells`` into ``cache``, over ``jobs`` workers when there are many."""
    if jobs > 1 and len(cells) > 8:
        from joblib import Parallel, delayed

        res = Parallel(n_jobs=jobs, backend="loky", batch_size=4)(
            delayed(cell_measures)(out / "cells" / h, kinds) for h in cells)
    else:
        res = [cell_measures(out / "cells" / h, kinds) for h in cells]
    for h, r in zip(cells, res):
        cache[(h, reps_of[h])] = r


def _evaluate(sweeps, cell_of, out: Path, kinds, reps_of: dict, cache: dict, jobs: int = 1):
    """Read every simulated cell (``cache`` keeps a cell's numbers while its replications stay the same)."""
    active = [sw for sw in sweeps if sw.skipped is None]
    hashes = dict.fromkeys(cell_of[(sw.dial.key, i)] for sw in active for i in range(len(sw.ts)))
    new = [h for h in hashes if (h, reps_of[h]) not in cache]
    _read_cells(new, out, kinds, reps_of, cache, jobs)
    mrows, crows = [], []
    for sw in active:
        for i, t in enumerate(sw.ts):
            h = cell_of[(sw.dial.key, i)]
            m, checks = cache[(h, reps_of[h])]
            m = m.copy()
            m.insert(0, "value", sw.plan.axis_at(t))
            m.insert(0, "t", t)
            m.insert(0, "dial", sw.dial.key)
            m["cell"] = h
            mrows.append(m)
            for name, (rate, se, n) in checks.items():
                crows.append({"dial": sw.dial.key, "t": t, "value": sw.plan.axis_at(t), "check": name,
                              "rate": rate, "mcse": se, "n": n})
    measures = pd.concat(mrows, ignore_index=True) if mrows else pd.DataFrame()
    return measures, pd.DataFrame(crows)


def _tolerances(exact: pd.DataFrame, measures: pd.DataFrame, settings: StressSettings) -> dict:
    """Absolute tolerance per dial x mediator: ``tolerance`` x |target| where the assumption holds (t = 0)."""
    tol = {}
    for (dial, med), g in measures.groupby(["dial", "mediator"], sort=False):
        e = exact[(exact.dial == dial) & (exact.mediator == med) & (exact.t == 0)]
        tv = float(e.target_value.iloc[0]) if len(e) else math.nan
        if not math.isfinite(tv):
            tv = float(g[g.t == 0].target_value.iloc[0]) if len(g[g.t == 0]) else math.nan
        tol[(dial, med)] = settings.tolerance * (abs(tv) if math.isfinite(tv) and tv != 0 else 1.0)
    return tol


def _flat(exact: pd.DataFrame, dial: str) -> tuple[bool, float]:
    """Whether every target and limit stays where it is at 0 along the dial (and the largest move)."""
    e = exact[exact.dial == dial]
    biggest = 0.0
    flat = True
    for _, g in e.groupby(["estimator", "mediator"], sort=False):
        g = g.sort_values("t")
        for col, secol in (("target_value", None), ("limit", "limit_se")):
            x = g[col].to_numpy(float)
            if not np.isfinite(x).any():
                continue
            if not np.isfinite(x).all():
                return False, math.nan
            se = g[secol].to_numpy(float) if secol else np.zeros_like(x)
            move = np.abs(x - x[0])
            biggest = max(biggest, float(move.max()))
            if (move > 1e-9 * (1 + abs(x[0])) + 4 * (se + se[0])).any():
                flat = False
    return flat, biggest


def _judge(sweeps, measures: pd.DataFrame, exact: pd.DataFrame, settings: StressSettings, kinds):
    """Verdict rows (one per dial x estimator x mediator) and, per cell, the replications that would decide more."""
    tol = _tolerances(exact, measures, settings)
    from .truth.limits import SE_BATCHES

    crit = _t_crit(SE_BATCHES)  # a simulated limit's SE is from its batches (quadrature: SE 0)
    rows, requests = [], {}
    by_dial = dict(tuple(measures.groupby("dial", sort=False)))
    exact_of = {k: g.sort_values("t") for k, g in exact.groupby(["dial", "estimator", "mediator"], sort=False)}
    empty = exact.iloc[0:0]
    for sw in sweeps:
        if sw.skipped is not None:
            continue
        key = sw.dial.key
        m = by_dial[key]
        flat, move = _flat(exact, key) if sw.dial.identification else (False, math.nan)
        ests = list(dict.fromkeys(m.estimator))
        for med, mm in m.groupby("mediator", sort=False):
            iv = mm[mm.estimator != OLS]
            best = {t: g.loc[g.rmse.idxmin()] if g.rmse.notna().any() else None for t, g in iv.groupby("t")}
            tolerance = tol[(key, med)]
            per_est = dict(tuple(mm.groupby("estimator", sort=False)))
            for est in ests:
                if est not in per_est:
                    continue
                g = per_est[est].sort_values("t")
                e = exact_of.get((key, est, med), empty)
                estate = exact_breakdown(e.value, e.identification_bias, e.limit_se, tolerance, crit)
                over = []
                e_at = {round(t, 9): (b, se) for t, b, se in zip(e.t, e.identification_bias, e.limit_se)}
                for t in g.t:
                    b, se = e_at.get(round(t, 9), (math.nan, math.nan))
                    over.append(None if not math.isfinite(b) else bool(abs(b) - crit * se > tolerance))
                comps = []
                rows_g = list(g.itertuples(index=False))
                for r in rows_g:
                    cs = [_bias_comparison(r.bias, r.bias_mcse, tolerance, r.reps),
                          compare(r.coverage, r.coverage_mcse, settings.coverage_floor, False, r.reps, "coverage")]
                    b = best.get(r.t)
                    if b is not None and est != b.estimator:
                        cs.append(_rmse_comparison(r.rmse, r.rmse_mcse, b.rmse, b.rmse_mcse, settings.rmse_ratio,
                                                   r.reps))
                    comps.append(cs)
                res = decide(list(g.value), comps, estate, over, flat, list(g.reps))
                if res["verdict"] == "not_applicable":
                    res["note"] = (f"the exact truth is flat along the dial: no target or large-sample limit moves "
                                   f"by more than {move:.2g} up to the severe value")
                sev = g.iloc[-1]
                esev = e.iloc[-1] if len(e) else None
                rows.append({
                    "dial": key, "assumption": sw.dial.numeral, "estimator": est, "mediator": med,
                    "target": g.target.iloc[0], "verdict": res["verdict"],
                    "breakdown": res["breakdown"], "breakdown_exact": res["breakdown_exact"],
                    "breakdown_mc": res["breakdown_mc"], "driver": res["driver"], "note": res["note"],
                    "severe": sw.plan.axis_at(1.0),
                    "target_value": e.target_value.iloc[0] if len(e) else g.target_value.iloc[0],
                    "tolerance": tolerance,
                    "identification_bias_at_severe": esev.identification_bias if esev is not None else math.nan,
                    "identification_bias_se_at_severe": esev.limit_se if esev is not None else math.nan,
                    "bias_at_severe": sev.bias, "bias_mcse_at_severe": sev.bias_mcse,
                    "coverage_at_severe": sev.coverage, "coverage_mcse_at_severe": sev.coverage_mcse,
                    "rmse_at_severe": sev.rmse, "rmse_mcse_at_severe": sev.rmse_mcse,
                    "reps_at_severe": int(sev.reps), "reps_needed": res["needed"],
                })
                if est == OLS:
                    continue  # the confounded reference: no replications spent on deciding it
                # replications that would decide the comparisons bearing on this verdict
                stop = res["breakdown"] if res["verdict"] in ("breaks_at", "fails_at_zero") else math.inf
                for r, cs in zip(rows_g, comps):
                    if r.value > stop:
                        break
                    need = [c.needed for c in cs if c.state == "undecided" and c.needed <= settings.max_reps]
                    if need:
                        want = min(settings.max_reps, _round_up(1.1 * max(need)))
                        requests[r.cell] = max(requests.get(r.cell, 0), want)
    return pd.DataFrame(rows), requests


def stress_test(design: str | Path, out: str | Path, *, jobs: int = 1, quiet: bool = False,
                reps: int | None = None, pdf: bool = False) -> Path:
    """Run the stress test of a design and write the report; returns the report's path."""
    import warnings

    with warnings.catch_warnings():
        # loky retires idle workers between the stress test's many short runs and says so; it loses nothing
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs", category=UserWarning)
        return _stress_test(design, out, jobs=jobs, quiet=quiet, reps=reps, pdf=pdf)


@dataclass
class StressResult:
    """What a stress test found: the report's input (:func:`simulate.report.write_report`).

    Attributes
    ----------
    design : Path
        The design file (a bundled design resolved to its file).
    base : Scenario
        The design with every assumption holding.
    settings : StressSettings
    sweeps : list of Sweep
    verdicts, measures, checks, exact, baseline : pandas.DataFrame
        The verdicts per dial x estimator x mediator, the simulated measures per dial value, the design's
        checks' rates, the exact curves, and the measures where every assumption holds.
    baseline_checks : dict
        The checks' rates where every assumption holds.
    figures : dict
        The figure files of each dial.
    elapsed : float
        Seconds the stress test took.
    version, code : str
        The package version and the code version.
    """

    design: Path
    base: object
    settings: StressSettings
    sweeps: list
    verdicts: pd.DataFrame
    measures: pd.DataFrame
    checks: pd.DataFrame
    exact: pd.DataFrame
    baseline: pd.DataFrame
    baseline_checks: dict
    figures: dict
    elapsed: float
    version: str
    code: str


@dataclass
class _Cells:
    """The stress test's simulated cells, each once: by hash, the hash of each (dial, value), labels."""

    cells: dict[str, GridCell]
    cell_of: dict[tuple[str, int], str]
    base_hash: str
    label_of: dict[str, str]


def _stress_cells(sweeps, raw: dict, source: str, base) -> _Cells:
    """Every dial value's grid cell, validated before any work, the baseline among them."""
    cells: dict[str, GridCell] = {}
    cell_of: dict[tuple[str, int], str] = {}
    for sw in sweeps:
        if sw.skipped is None:
            for i, c in enumerate(_cells(sw, source)):
                cells.setdefault(c.hash, c)
                cell_of[(sw.dial.key, i)] = c.hash
    base_hash = base.hash
    cells.setdefault(base_hash, GridCell(0, (), base))
    label_of = {base_hash: "baseline (every assumption holds)"}
    for (key, i), h in cell_of.items():
        sw = next(s for s in sweeps if s.dial.key == key)
        label_of.setdefault(h, f"{sw.dial.label}: {sw.axis} = {sw.plan.axis_at(sw.ts[i]):.4g}")
    return _Cells(cells, cell_of, base_hash, label_of)


def _open_plan(out: Path, base_hash: str, settings: StressSettings) -> tuple[Path, dict]:
    """The directory's plan of passes: new, or the one of a stress test of the same design, settings and code."""
    for sub in ("figures", "tables", "cells"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    plan_path = out / "plan.json"
    fp = {"design": base_hash, "settings": settings.fingerprint(), "code_version": code_version()}
    plan = {"fingerprint": fp, "passes": []}
    if plan_path.exists():
        old = json.loads(plan_path.read_text())
        if old.get("fingerprint") != fp:
            raise StressError(f"{out}: holds a stress test of another design, settings or code version; "
                              "choose another --out")
        plan = old
    return plan_path, plan


def _simulate_passes(sweeps, sc: _Cells, plan_path: Path, plan: dict, out: Path, exact, settings, kinds):
    """Up to three passes of replications, each adding them where a verdict is undecided; the last verdicts."""
    cells = sc.cells
    max_passes = 3
    if not plan["passes"]:
        plan["passes"].append({h: settings.reps for h in cells})
        _write_json(plan_path, plan)
    cache: dict = {}
    k = len(plan["passes"]) - 1  # a resumed stress test replays its last recorded pass, then decides on
    while True:
        reps_of = plan["passes"][k]
        todo = [h for h in cells if not (k > 0 and reps_of[h] == plan["passes"][k - 1].get(h))
                and not _complete(out / "cells" / h, reps_of[h])]
        if todo:
            before = plan["passes"][k - 1] if k else {}
            new = sum(reps_of[h] - (before.get(h, 0) if _held(out / "cells" / h) else 0) for h in todo)
            _say(settings, f"[pass {k + 1}] {len(todo)} of {len(cells)} cells, up to {new:,} replications, "
                           f"one batch on {settings.jobs} worker(s): "
                           + ", ".join(dict.fromkeys(sc.label_of[h].split(" (")[0].split(":")[0] for h in todo)))
            _run_cells([(cells[h], out / "cells" / h, reps_of[h]) for h in todo], settings)
        measures, checks = _evaluate(sweeps, sc.cell_of, out, kinds, reps_of, cache, settings.jobs)
        ver, requests = _judge(sweeps, measures, exact, settings, kinds)
        grow = {h: r for h, r in requests.items() if r > reps_of[h]}
        if not grow or k + 1 >= max_passes:
            return ver, measures, checks
        _say(settings, f"adding replications where a verdict is undecided: {len(grow)} dial values, "
                       f"up to {max(grow.values()):,} replications")
        plan["passes"].append({**reps_of, **grow})
        _write_json(plan_path, plan)
        k += 1


def _figures(sweeps, measures, exact, ver, out: Path, settings: StressSettings) -> dict:
    """Every dial's figures (in parallel over the dials); the files of each dial."""
    from .stress_figures import dial_figures

    active = [sw for sw in sweeps if sw.skipped is None]
    args = [(sw, measures[measures.dial == sw.dial.key], exact[exact.dial == sw.dial.key],
             ver[ver.dial == sw.dial.key], out / "figures", settings) for sw in active]
    if settings.jobs > 1 and len(args) > 1:
        from joblib import Parallel, delayed

        paths = Parallel(n_jobs=settings.jobs, backend="loky")(delayed(dial_figures)(*a) for a in args)
    else:
        paths = [dial_figures(*a) for a in args]
    return {sw.dial.key: p for sw, p in zip(active, paths)}


def _stress_test(design, out, *, jobs, quiet, reps, pdf) -> Path:
    raw, settings = read_design(design, jobs, quiet, reps, pdf)
    source = str(design)
    out = Path(out)
    sweeps = plan_sweeps(raw, settings, source)
    base = from_dict(copy.deepcopy(raw), source)
    sc = _stress_cells(sweeps, raw, source, base)
    kinds = dict(zip(base.mediator_names, base.mediator_kind))
    t0 = time.perf_counter()
    plan_path, plan = _open_plan(out, sc.base_hash, settings)

    from .estimators import ESTIMATORS

    active = [sw for sw in sweeps if sw.skipped is None]
    _say(settings, f"exact part: {len(active)} dials x {settings.fine_count} values (large-sample limits by "
                   "quadrature where they have one)")
    exact = exact_curves(sweeps, settings, source, list(ESTIMATORS))
    ver, measures, checks = _simulate_passes(sweeps, sc, plan_path, plan, out, exact, settings, kinds)
    ver = _with_detection(ver, checks)
    baseline, base_checks = cell_measures(out / "cells" / sc.base_hash, kinds)
    elapsed = time.perf_counter() - t0
    _write_tables(out, ver, measures, checks, exact, baseline)
    figs = _figures(sweeps, measures, exact, ver, out, settings)
    from .report import write_report

    return write_report(out, StressResult(
        design=_resolve(design), base=base, settings=settings, sweeps=sweeps, verdicts=ver, measures=measures,
        checks=checks, exact=exact, baseline=baseline, baseline_checks=base_checks, figures=figs, elapsed=elapsed,
        version=__version__, code=code_version()))


def _with_detection(ver: pd.DataFrame, checks: pd.DataFrame) -> pd.DataFrame:
    """Add how often the design's own checks fire (any of them) at the breakdown.

    The rate is read at the first simulated value at or past the breakdown (the last value if none is).
    """
    rate, mcse, at = [], [], []
    anyc = checks[checks.check == "any_check"]
    by_dial = {d: g.sort_values("value") for d, g in anyc.groupby("dial")}
    for dial, b in zip(ver.dial, ver.breakdown):
        g = by_dial.get(dial)
        if g is None or b is None or not math.isfinite(b):
            rate.append(math.nan), mcse.append(math.nan), at.append(math.nan)
            continue
        r = g[g.value >= b - 1e-12]
        r = r.iloc[0] if len(r) else g.iloc[-1]
        rate.append(r.rate), mcse.append(r.mcse), at.append(r.value)
    return ver.assign(checks_fire_at_breakdown=rate, checks_fire_mcse=mcse, checks_fire_value=at)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _write_tables(out: Path, ver, measures, checks, exact, baseline) -> None:
    t = out / "tables"
    ver.to_csv(t / "verdicts.csv", index=False)
    measures.drop(columns=["cell"]).to_csv(t / "measures.csv", index=False)
    checks.to_csv(t / "checks.csv", index=False)
    exact.to_csv(t / "exact.csv", index=False)
    baseline.to_csv(t / "baseline.csv", index=False)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
