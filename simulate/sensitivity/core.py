r"""Sensitivity of a finished multisite study: how strong must an assumption's failure be to change it.

:func:`sensitivity` chains the pieces a user would otherwise chain by hand:

1. **Analysis**: every estimator and diagnostic on the data (:func:`simulate.analyze.analyze`);
   each estimator x mediator gives an estimate ``e`` and the half-width ``h`` of its own 95%
   interval.
2. **Calibration**: a scenario mirroring the study (:func:`simulate.calibrate.calibrate`, site
   moments net of sampling error).  What the calibration could not identify (person-level effect
   SDs, the within-site correlation, the between-site compliance-effect correlation, a between-site
   effect SD that the data put at zero) is listed in ``not_identified``; where a dial needs one of
   them, the assumption catalogue's recipe sets a stated value (its ``changes``).
3. **Dial sweeps in the study's own units**, from the exact large-sample truth
   (:func:`simulate.stress.exact_curves`, the truth's site moments): each assumption of
   :data:`simulate.assumptions.ASSUMPTIONS` that can fail in the study is moved from 0 to each side
   of its range (:data:`RANGES`): a correlation from -0.8 to 0.8, a direct effect or a spillover as a
   share of the study's ITT on the outcome, a path as a share of the downstream mediator's
   compliance, an outcome curvature as the relative change of the mediator's effect per SD of the
   mediator.  Along it,

       D(u) = [limit(u) - target(u)] - [limit(0) - target(0)]

   is the identification bias the violation u adds to an estimator, and the study's
   **bias-adjusted estimate** is ``e - D(u)`` (what the estimate would be once that bias is taken
   out, as in Cinelli & Hazlett's sensemakr).  The **breakdown values**: ``breakdown_ci``, the
   violation of smallest size (either side) with ``|D(u)| = h`` (the violation moves the estimator's
   limit by the half-width of the study's own interval), and ``breakdown_zero``, the smallest with
   ``e - D(u) = 0`` (it explains the estimate away); both interpolated linearly between grid values.
   Neither reached within the range: None, and the report says so in words.
4. **Monte Carlo at the study's size** (:func:`simulate.runner.run`, a modest number of replications):
   at no violation (the finite-sample bias of each estimator at the study's K and site sizes) and at
   each breakdown value (the first grid value at or past it): bias, coverage and RMSE of the study's
   estimators, and how often the study's own checks (first-stage F below 10, the overidentification
   test, the nonlinearity (falsification) test, at 5%) would have fired, with MCSEs.
5. **Contours** (sensemakr style) of the bias-adjusted 2SLS estimate over two dials for the two
   assumptions the founding paper calls unverifiable: between-site independence (ix) against a mean
   direct effect, and parallel mediators (v) against a mean direct effect.

:func:`write_report` (in :mod:`simulate.sensitivity.report`) writes ``DIR/report.html``,
``DIR/report.md``, ``DIR/figures/`` and ``DIR/tables/`` (``breakdown.csv``: one row per assumption x
estimator x mediator, ``curves.csv``, ``analysis.csv``, ``contours.csv``, ``monte_carlo.csv``).
"""

from __future__ import annotations

import copy
import math
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..analyze import AnalysisError, analyze
from ..assumptions import BY_KEY, Assumption, Design, SweepPlan
from ..assumptions import design as make_design
from ..calibrate import CalibrationError, calibrate, to_toml
from ..errors import SimulateError
from ..scenario import from_dict, set_path
from ..stress import StressSettings, Sweep, exact_curves

__all__ = ["sensitivity", "SensitivityResult", "SensitivityError", "DialRange", "RANGES", "crossing",
           "breakdown_values", "BREAKDOWN_COLUMNS"]

SOURCE = "<sensitivity>"
BREAKDOWN_COLUMNS = ("assumption", "numeral", "dial", "unit", "estimator", "mediator", "estimate", "ci_halfwidth",
                     "breakdown_ci", "breakdown_zero", "breakdown_ci_above", "breakdown_ci_below",
                     "breakdown_zero_above", "breakdown_zero_below", "range_low", "range_high", "grid_step",
                     "bias_at_breakdown", "bias_mcse_at_breakdown", "coverage_at_breakdown",
                     "coverage_mcse_at_breakdown", "rmse_at_breakdown", "rmse_mcse_at_breakdown",
                     "detect_rate_at_breakdown", "detect_mcse_at_breakdown", "weak_first_stage_at_breakdown",
                     "weak_first_stage_mcse_at_breakdown", "overidentification_at_breakdown",
                     "overidentification_mcse_at_breakdown", "nonlinearity_at_breakdown",
                     "nonlinearity_mcse_at_breakdown", "mc_value", "mc_reps", "note")
"""Columns of ``tables/breakdown.csv`` (the first nine are the issue's contract)."""


class SensitivityError(SimulateError):
    """Invalid settings of a sensitivity analysis (one line)."""


@dataclass(frozen=True)
class DialRange:
    """How far an assumption's dial is moved, in the study's own units.

    Attributes
    ----------
    key : str
        The assumption's key in :data:`simulate.assumptions.BY_KEY`.
    high : float
        The end of the range in the study's units (the range is ``[-high, high]`` when two-sided,
        ``[0, high]`` otherwise).
    unit : str
        The study's unit, in words.
    two_sided : bool
        Whether the dial is also moved below zero.
    """

    key: str
    high: float
    unit: str
    two_sided: bool = True
    short: str = ""

    @property
    def axis(self) -> str:
        """A short axis label (the unit when no short label is set)."""
        return self.short or self.unit


RANGES: tuple[DialRange, ...] = (
    DialRange("spillover", 1.0, "share of the study's ITT on the outcome (top arm against control), per unit share "
              "treated in the site"),
    DialRange("direct_effect", 1.0, "share of the study's ITT on the outcome (top arm against control) that the "
              "offer causes directly", short="direct effect, share of the study's ITT"),
    DialRange("outcome_curvature", 0.5, "relative change of the mediator's effect per SD of the mediator"),
    DialRange("mediator_paths", 1.0, "path as a share of the downstream mediator's compliance",
              short="path, share of the downstream compliance"),
    DialRange("selection", 1.0, "selection on the untreated outcome, scaled so that 1 is an imbalance in Y(0) of about "
              "the study's ITT (probit strength xi = u ITT / (0.8 sd(Y(0))))"),
    DialRange("within_site_correlation", 0.8, "correlation of compliance and effect within sites"),
    DialRange("defiers", 0.15, "share of persons who are defiers", two_sided=False),
    DialRange("between_site_correlation", 0.8, "correlation of compliance and effect between sites",
              short="between-site corr(compliance, effect)"),
    DialRange("nonlinear_dependence", 1.0, "lambda of the quadratic between-site dependence (in SDs of the effect)"),
)
"""The range of each dial the sensitivity analysis sweeps (the others are said why not)."""

_NOT_SWEPT = {
    "mediator_curvature": "identified from the data: the calibration estimates the dose profile of the mediators "
                          "over the arms, and the saturated site-by-arm first stage absorbs it",
    "rank": "does not move any large-sample limit (it acts through weak instruments at the study's size): the "
            "study's first-stage and conditional F statistics speak to it",
}


# ---------------------------------------------------------------------------
# Crossings (the breakdown values)
# ---------------------------------------------------------------------------


def crossing(u, g) -> float | None:
    """The first value of ``u`` (ordered away from 0) at which ``g`` reaches 0, interpolated linearly.

    Parameters
    ----------
    u : array_like
        Dial values, ``u[0] = 0`` and moving away from it.
    g : array_like
        A function of the dial, positive at ``u[0]`` before any crossing.

    Returns
    -------
    float or None
        The interpolated dial value of the first sign change (or exact zero), None when ``g`` stays
        positive over the range or is not finite before it crosses.
    """
    u, g = np.asarray(u, float), np.asarray(g, float)
    for j in range(len(g)):
        if not math.isfinite(g[j]):
            return None
        if g[j] <= 0:
            if j == 0:
                return float(u[0])
            frac = g[j - 1] / (g[j - 1] - g[j])
            return float(u[j - 1] + frac * (u[j] - u[j - 1]))
    return None


def breakdown_values(sides: Sequence[tuple[np.ndarray, np.ndarray]], estimate: float,
                     halfwidth: float) -> tuple[float | None, float | None]:
    """Breakdown values of one estimator x mediator along a dial swept to each side of zero.

    Parameters
    ----------
    sides : sequence of (u, D)
        Per side, the dial values from 0 outward and the added identification bias ``D(u)``.
    estimate : float
        The study's estimate ``e``.
    halfwidth : float
        Half the width of the study's own interval ``h``.

    Returns
    -------
    (float or None, float or None)
        ``breakdown_ci``: the ``u`` of smallest size where ``|D(u)| = h``; ``breakdown_zero``: the ``u`` of
        smallest size where ``e - D(u) = 0``.  None where not reached within the range.
    """
    ci, zero = [], []
    for u, D in sides:
        D = np.asarray(D, float)
        if math.isfinite(halfwidth):
            c = crossing(u, halfwidth - np.abs(D))
            if c is not None:
                ci.append(c)
        if math.isfinite(estimate) and estimate != 0:
            z = crossing(u, np.sign(estimate) * (estimate - D))
            if z is not None:
                zero.append(z)
    pick = lambda xs: min(xs, key=abs) if xs else None
    return pick(ci), pick(zero)


# ---------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------


@dataclass
class DialSweep:
    """One assumption's sweep in the study: its plans per side, or why it is not swept."""

    assumption: Assumption
    range: DialRange | None = None
    sides: list[tuple[int, Sweep]] = field(default_factory=list)  # (+1 or -1, the stress test's Sweep)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The assumption's key."""
        return self.assumption.key

    @property
    def changes(self) -> list[str]:
        """The changes the sweep makes to the calibrated scenario (from the catalogue's recipe)."""
        return self.sides[0][1].changes if self.sides else []


@dataclass
class SensitivityResult:
    """Everything a sensitivity analysis computed (see :mod:`simulate.sensitivity`).

    Attributes
    ----------
    analysis : pandas.DataFrame
        :func:`simulate.analyze.analyze` of the data.
    calibration : simulate.calibrate.Calibration
        The calibrated moments.
    scenario_toml : str
        The calibrated scenario (a runnable scenario file).
    not_identified : list of str
        What the calibration could not identify, in words.
    dials : list of DialSweep
        Per assumption of the catalogue, its sweep or why it is not swept.
    curves : pandas.DataFrame
        The exact part: one row per dial x side x grid value x estimator x mediator (``u`` in the
        study's units, ``limit``, ``target_value``, ``added_bias`` D(u), ``adjusted`` e - D(u)).
    breakdown : pandas.DataFrame
        One row per assumption x estimator x mediator, columns :data:`BREAKDOWN_COLUMNS`.
    monte_carlo : pandas.DataFrame
        The simulated cells: dial, ``u``, estimator, mediator, bias, coverage, RMSE with MCSEs, and
        the rates of the study's checks.
    contours : dict
        Per contour (``"ix"``, ``"v"``): the two axes and the bias-adjusted 2SLS estimate on the
        grid per mediator, or a string saying why it is not drawn.
    settings : dict
        The settings of the run (replications, seed, grid sizes, columns of the data).
    """

    analysis: pd.DataFrame
    calibration: object
    scenario_toml: str
    not_identified: list[str]
    dials: list[DialSweep]
    curves: pd.DataFrame
    breakdown: pd.DataFrame
    monte_carlo: pd.DataFrame
    contours: dict
    settings: dict

    def write(self, out: str | Path) -> Path:
        """Write the report, figures and tables into ``out``; returns the path of ``report.html``.

        Parameters
        ----------
        out : str or Path
            The output folder (created).

        Returns
        -------
        Path
            ``out/report.html``.
        """
        from .report import write_report

        return write_report(self, Path(out))

    def headline(self, estimator: str = "2sls") -> list[str]:
        """One plain sentence per assumption x mediator for ``estimator`` (the report's rows).

        Parameters
        ----------
        estimator : str
            The estimator whose breakdown values are read (default 2SLS).

        Returns
        -------
        list of str
        """
        from .report import sentence

        b = self.breakdown
        return [sentence(r) for _, r in b[b.estimator == estimator].iterrows()]


# ---------------------------------------------------------------------------
# The sweeps of a study
# ---------------------------------------------------------------------------


def _itt_top(d: Design) -> float:
    """The calibrated ITT on Y of the top arm against control, sum_p g_p(L) gamma_p delta_p (signed)."""
    sc = d.scenario
    return float(sum((1.0 if d.binary[p] else sc.dose(p)[-1]) * d.compliance[p] * d.effect(p) for p in range(d.P)))


def _scale(key: str, d: Design, raw: dict) -> float | str:
    """Path units per study unit of a dial's axis (a string: why the dial cannot be expressed)."""
    itt = _itt_top(d)
    if key in ("spillover", "direct_effect") and itt == 0:
        return "the study's ITT on the outcome is zero, so a share of it is not defined"
    if key == "spillover":
        return itt
    if key == "direct_effect":
        return itt / (d.scenario.arms - 1)
    if key == "selection":
        # a probit cut at strength xi on the standardized Y(0) shifts E[Y(0) | treated] - E[Y(0) | control] by about
        # 2 phi(0) xi sd(Y(0)) = 0.8 xi sd(Y(0)) for small xi: one unit of the dial is an imbalance of the ITT
        sd = float(raw.get("person", {}).get("outcome_sd", 1.0)) or 1.0
        return abs(itt) / (0.8 * sd) if itt else "the study's ITT on the outcome is zero"
    if key == "mediator_paths":
        a, b = _path_pair(d)
        if a is None:
            return "needs a second, continuous mediator"
        ga, gb = d.compliance[a], d.compliance[b]
        if ga == 0:
            return "the upstream mediator's compliance is zero"
        return gb / ga
    return 1.0


def _path_pair(d: Design):
    cont = d.continuous
    if d.P < 2 or len(cont) < 2:
        return None, None
    return cont[0], cont[1]


def _plan(a: Assumption, d: Design, rng: DialRange, raw: dict, sign: int) -> SweepPlan | str:
    """The catalogue's plan of one side of the dial, its ends in the study's units times the scale."""
    scale = _scale(a.key, d, raw)
    if isinstance(scale, str):
        return scale
    end = sign * rng.high * scale
    if a.key == "mediator_paths":
        res = a.recipe(d, abs(end))
        if isinstance(res, str):
            return res
        res.end = [end if p.endswith(".mean") else abs(end) for p in res.paths]
        return res
    res = a.recipe(d, end)
    if isinstance(res, str):
        return res
    if a.key == "outcome_curvature":
        sd = list(d.scenario.mediator_sd)
        res.end = [sign * rng.high / (2 * (sd[int(p.rsplit("[", 1)[1][:-1]) - 1] or 1.0)) for p in res.paths]
    return res


_SHRINK = (1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
"""Fractions of a range tried, largest first, when the calibrated scenario cannot take its far end."""


def _side(a: Assumption, d: Design, rng: DialRange, raw: dict, sign: int) -> Sweep | str:
    """One side of a dial's sweep, its far end validated (a string: why not)."""
    res = _plan(a, d, rng, raw, sign)
    if isinstance(res, str):
        return res
    sw = Sweep(a, rng.high * sign, res, ts=[0.0, 1.0])
    try:
        sw.cell_at(1.0, SOURCE)  # the far end must be a valid scenario
    except SimulateError as exc:
        return f"the calibrated scenario cannot take it: {str(exc).splitlines()[0]}"
    return sw


def _dial_sweeps(raw: dict, ranges: Sequence[DialRange]) -> list[DialSweep]:
    d = make_design(raw, SOURCE)
    by = {r.key: r for r in ranges}
    out = []
    for a in BY_KEY.values():
        if a.key in _NOT_SWEPT:
            out.append(DialSweep(a, skipped=_NOT_SWEPT[a.key]))
            continue
        rng = by.get(a.key)
        if rng is None:
            out.append(DialSweep(a, skipped="no range set"))
            continue
        first = None
        for f in _SHRINK:  # the widest range whose far end above zero is a valid scenario
            r = replace(rng, high=round(rng.high * f, 10))
            up = _side(a, d, r, raw, 1)
            if not isinstance(up, str):
                break
            first = first or up
            if not up.startswith("the calibrated scenario cannot take it"):
                break  # the dial does not apply: no range helps
        if isinstance(up, str):
            out.append(DialSweep(a, skipped=first))
            continue
        ds = DialSweep(a, r, sides=[(1, up)])
        if r.high != rng.high:
            why = first.rsplit("]: ", 1)[-1]
            ds.notes.append(f"range reduced to {r.high:g} (from {rng.high:g}): the calibrated scenario is not valid "
                            f"beyond it ({why})")
        if r.two_sided:
            down = _side(a, d, r, raw, -1)
            if isinstance(down, str):
                ds.notes.append(f"swept above zero only ({down})")
            else:
                ds.sides.append((-1, down))
        out.append(ds)
    return out


def _valid_scenario(cal, text: str) -> tuple[dict, str, list[str]]:
    """The calibrated scenario as a table (and its text), made valid where the study's own shares are not.

    With a binary treatment the calibration keeps each site's share treated; the scenario's validation pairs the
    smallest site with the smallest share of any site, and may then find an arm of fewer than 2 persons.  The
    pooled share replaces the per-site shares in that case (said in the returned note).
    """
    import tomlkit

    raw = tomllib.loads(text)
    try:
        from_dict(copy.deepcopy(raw), SOURCE)
        return raw, text, []
    except SimulateError as exc:
        share = raw.get("treatment", {}).get("share")
        if not isinstance(share, list):
            raise
        why = str(exc).split(": ", 2)[-1]
    raw["treatment"]["share"] = round(float(cal.arm_shares[1]), 6)
    from_dict(copy.deepcopy(raw), SOURCE)
    note = (f"the study's per-site shares treated were replaced by the pooled share {raw['treatment']['share']:g}: "
            f"with them the scenario is not valid ({why})")
    return raw, f"# {note}\n" + tomlkit.dumps(raw), [note]


def _not_identified(cal, raw: dict) -> list[str]:
    out = ["person-level effect SDs and the within-site compliance-effect correlation (vii.a): not identified from "
           "cell moments; the calibrated scenario sets them to 0 and the within-site dial gives the effect a "
           "person-level SD of half the mean effect",
           "the between-site compliance-effect correlation (ix): not identified (the calibration assumes "
           "independence); the sweep states what a correlation would do"]
    if float(cal.effect_sd) == 0:
        out.append("the between-site effect SD: the data put it at zero (the residual between-site variance of the "
                   "ITT on the outcome does not exceed its sampling variance); the between-site dials give the effect "
                   "an SD of half the mean effect")
    if not cal.direct_effect:
        out.append(f"the mean direct effect (ii): exclusion is assumed; the between-site regression with an intercept "
                   f"would put it at {cal.direct_effect_mean:.4g} (outcome units per unit of treatment dose)")
    out += [f"calibration note: {n}" for n in cal.notes]
    return out


# ---------------------------------------------------------------------------
# The exact part
# ---------------------------------------------------------------------------


def _exact(dials: list[DialSweep], analysis: pd.DataFrame, settings: StressSettings,
           estimators: list[str]) -> pd.DataFrame:
    parts = []
    for ds in dials:
        for sign, sw in ds.sides:
            e = exact_curves([sw], settings, SOURCE, estimators)
            e["side"] = sign
            e["u"] = e["t"] * sign * ds.range.high
            parts.append(e)
    if not parts:
        return pd.DataFrame()
    return _derived(pd.concat(parts, ignore_index=True), analysis)


def _derived(ex: pd.DataFrame, analysis: pd.DataFrame) -> pd.DataFrame:
    """The added bias D(u), the study's estimate and the bias-adjusted estimate e - D(u) of every curve row."""
    ex = ex.copy()
    ex["identification_bias"] = ex["limit"] - ex["target_value"]
    base = ex[ex.t == 0].groupby(["dial", "side", "estimator", "mediator"]).identification_bias.first()
    ex["added_bias"] = ex["identification_bias"].to_numpy() - base.reindex(
        pd.MultiIndex.from_frame(ex[["dial", "side", "estimator", "mediator"]])).to_numpy()
    est = analysis.set_index(["estimator", "mediator"])
    key = pd.MultiIndex.from_frame(ex[["estimator", "mediator"]])
    ex["estimate"] = est["estimate"].reindex(key).to_numpy()
    ex["adjusted"] = ex["estimate"] - ex["added_bias"]
    return ex


def _halfwidths(analysis: pd.DataFrame) -> pd.DataFrame:
    a = analysis[analysis.mediator != "direct_effect"][["estimator", "mediator", "estimate", "conf_low",
                                                        "conf_high"]].copy()
    a["ci_halfwidth"] = (a.conf_high - a.conf_low) / 2
    return a


def _first_past(g: pd.DataFrame, b: float) -> tuple[float, float]:
    """The grid fraction t and value u of the first grid value at or past the breakdown ``b`` on its side."""
    side = g[g.side == (1 if b >= 0 else -1)].sort_values("t")
    past = side[np.abs(side.u) >= abs(b) - 1e-12]
    r = past.iloc[0] if len(past) else side.iloc[-1]
    return float(r.t), float(r.u)


def _breakdown(dials: list[DialSweep], curves: pd.DataFrame, analysis: pd.DataFrame, n_grid: int) -> pd.DataFrame:
    hw = _halfwidths(analysis)
    rows = []
    for ds in dials:
        if ds.skipped is not None:
            continue
        c = curves[curves.dial == ds.key]
        for _, r in hw.iterrows():
            g = c[(c.estimator == r.estimator) & (c.mediator == r.mediator)]
            note = "; ".join(ds.notes)
            mc_t = mc_u = math.nan
            step = ds.range.high / (n_grid - 1)
            per_side = {f"breakdown_{k}_{w}": None for k in ("ci", "zero") for w in ("above", "below")}
            if not len(g) or not np.isfinite(g.limit.to_numpy(float)).all():
                ci = zero = None
                why = (g.note.dropna().iloc[0] if len(g) and g.note.astype(bool).any() else
                       "the estimator has no large-sample limit in the truth")
                note = "; ".join(x for x in (note, f"no exact limit: {why}") if x)
            else:
                sides = {sign: (s.sort_values("t").u.to_numpy(), s.sort_values("t").added_bias.to_numpy())
                         for sign, s in g.groupby("side")}
                ci, zero = breakdown_values(list(sides.values()), float(r.estimate), float(r.ci_halfwidth))
                for sign, word in ((1, "above"), (-1, "below")):
                    if sign in sides:
                        per_side[f"breakdown_ci_{word}"], per_side[f"breakdown_zero_{word}"] = breakdown_values(
                            [sides[sign]], float(r.estimate), float(r.ci_halfwidth))
                if ci is not None:
                    mc_t, mc_u = _first_past(g, ci)
                    t_side = np.sort(g[g.side == (1 if ci >= 0 else -1)].t.unique())
                    k = int(np.searchsorted(t_side, abs(ci) / ds.range.high - 1e-12))
                    step = ds.range.high * float(t_side[min(k, len(t_side) - 1)] - t_side[max(k - 1, 0)]) or step
            rng = ds.range
            rows.append({"assumption": ds.assumption.label, "numeral": ds.assumption.numeral, "dial": ds.key,
                         "unit": rng.unit, "estimator": r.estimator, "mediator": r.mediator,
                         "estimate": float(r.estimate), "ci_halfwidth": float(r.ci_halfwidth),
                         "breakdown_ci": ci, "breakdown_zero": zero, **per_side,
                         "range_low": -rng.high if len(ds.sides) == 2 else 0.0, "range_high": rng.high,
                         "grid_step": step, "mc_t": mc_t, "mc_value": mc_u, "note": note})
    return pd.DataFrame(rows)


def _refine(dials: list[DialSweep], curves: pd.DataFrame, breakdown: pd.DataFrame, analysis: pd.DataFrame,
            settings: StressSettings, estimators: list[str], n_grid: int) -> pd.DataFrame:
    """Curves with a finer grid over the first step of every side on which a breakdown value falls in it."""
    by = {d.key: d for d in dials}
    need = set()
    for _, r in breakdown.iterrows():
        high = by[r.dial].range.high
        for v in (r.breakdown_ci, r.breakdown_zero):
            if v is not None and math.isfinite(v) and 0 < abs(v) < high / (n_grid - 1):
                need.add((r.dial, 1 if v >= 0 else -1))
    parts = [curves]
    for key, sign in sorted(need):
        ds = by[key]
        sw = dict(ds.sides)[sign]
        f = 1.0 / (n_grid - 1)
        sub = SweepPlan(sw.plan.paths, sw.plan.start, [a + f * (b - a) for a, b in zip(sw.plan.start, sw.plan.end)],
                        sw.plan.raw, sw.plan.changes)
        e = exact_curves([Sweep(ds.assumption, sw.severe, sub, ts=[0.0, 1.0])], settings, SOURCE, estimators)
        e = e[(e.t > 0) & (e.t < 1)].copy()
        e["t"] = e["t"] * f
        e["side"] = sign
        e["u"] = e["t"] * sign * ds.range.high
        parts.append(e)
    if len(parts) == 1:
        return curves
    out = pd.concat(parts, ignore_index=True)
    return _derived(out, analysis).sort_values(["dial", "side", "estimator", "mediator", "t"], ignore_index=True)


# ---------------------------------------------------------------------------
# The Monte Carlo part
# ---------------------------------------------------------------------------


def _monte_carlo(dials, breakdown: pd.DataFrame, base_raw: dict, cfg, work: Path, quiet: bool,
                 truth_sites: int) -> pd.DataFrame:
    """Simulate the cell at no violation and at each breakdown value (``cfg``: a quiet :class:`RunConfig`)."""
    from ..cell_measures import cell_measures
    from ..runner import run
    from ..scenario import GridCell

    base = from_dict(copy.deepcopy(base_raw), SOURCE)
    kinds = dict(zip(base.mediator_names, base.mediator_kind))
    cells: dict[str, tuple[str, float, GridCell]] = {}
    wanted = [("none", 0.0, GridCell(0, (), base))]
    by = {ds.key: ds for ds in dials}
    for _, r in breakdown.iterrows():
        b = r.breakdown_ci
        if b is None or not math.isfinite(b):
            continue
        sw = dict(by[r.dial].sides)[1 if b >= 0 else -1]
        wanted.append((r.dial, float(r.mc_value), sw.cell_at(float(r.mc_t), SOURCE)))
    for dial, u, cell in wanted:
        cells.setdefault(f"{dial}:{u:.10g}", (dial, u, cell))
    rows = []
    for n, (dial, u, cell) in enumerate(cells.values()):
        if not quiet:
            print(f"simulate sensitivity: Monte Carlo {n + 1}/{len(cells)}: {dial} at {u:.4g} "
                  f"({cfg.reps} replications)",
                  flush=True)
        d = work / f"cell{n:03d}"
        run([replace(cell, index=0)], d, cfg, truth_sites=truth_sites)
        m, checks = cell_measures(d, kinds)
        for _, r in m.iterrows():
            rec = {"dial": dial, "u": u, "estimator": r.estimator, "mediator": r.mediator, "reps": int(r.reps)}
            for k in ("bias", "finite_sample_bias", "coverage", "rmse"):
                rec[k], rec[f"{k}_mcse"] = r[k], r[f"{k}_mcse"]
            for c, (rate, se, _) in checks.items():
                rec[f"{c}_rate"], rec[f"{c}_mcse"] = rate, se
            rows.append(rec)
    return pd.DataFrame(rows)


def _attach_mc(breakdown: pd.DataFrame, mc: pd.DataFrame) -> pd.DataFrame:
    b = breakdown.copy()
    cols = ["bias_at_breakdown", "bias_mcse_at_breakdown", "coverage_at_breakdown", "coverage_mcse_at_breakdown",
            "rmse_at_breakdown", "rmse_mcse_at_breakdown", "detect_rate_at_breakdown", "detect_mcse_at_breakdown",
            "mc_reps"]
    checks = ("weak_first_stage", "overidentification", "nonlinearity")
    cols += [f"{c}{x}_at_breakdown" for c in checks for x in ("", "_mcse")]
    for col in cols:
        b[col] = math.nan
    if not len(mc):
        return b
    for i, r in b.iterrows():
        if not math.isfinite(r.mc_value):
            continue
        m = mc[(mc.dial == r.dial) & (np.abs(mc.u - r.mc_value) < 1e-12 * (1 + abs(r.mc_value)))
               & (mc.estimator == r.estimator) & (mc.mediator == r.mediator)]
        if not len(m):
            continue
        m = m.iloc[0]
        b.loc[i, cols] = [m.bias, m.bias_mcse, m.coverage, m.coverage_mcse, m.rmse, m.rmse_mcse,
                          m.get("any_check_rate", math.nan), m.get("any_check_mcse", math.nan), m.reps] + [
                              m.get(f"{c}_{x}", math.nan) for c in checks for x in ("rate", "mcse")]
    return b


# ---------------------------------------------------------------------------
# Contours
# ---------------------------------------------------------------------------


def _contour(first: DialSweep, second: DialSweep, analysis: pd.DataFrame, n: int, truth_sites: int) -> dict | str:
    """The bias-adjusted 2SLS estimate on an n x n grid of two dials (each over its range)."""
    from ..truth import LIMIT_OF, truth

    if first.skipped is not None:
        return f"{first.assumption.label} {first.skipped}"
    if second.skipped is not None:
        return f"{second.assumption.label} {second.skipped}"
    sw1 = dict(first.sides)[1]
    sw2 = dict(second.sides)[1]
    lo1 = -first.range.high if len(first.sides) == 2 else 0.0
    lo2 = -second.range.high if len(second.sides) == 2 else 0.0
    x = np.linspace(lo1, first.range.high, n)
    y = np.linspace(lo2, second.range.high, n)
    meds = list(from_dict(copy.deepcopy(sw1.plan.raw), SOURCE).mediator_names)
    kinds = from_dict(copy.deepcopy(sw1.plan.raw), SOURCE).mediator_kind
    lim = LIMIT_OF["2sls"]
    bias = np.full((len(meds), n, n), math.nan)
    for i, u1 in enumerate(x):
        for j, u2 in enumerate(y):
            raw = copy.deepcopy(sw1.plan.raw)
            for path, v in zip(sw1.paths, _values(sw1, u1 / first.range.high)):
                raw = set_path(raw, path, v, SOURCE)
            for path, v in zip(sw2.paths, _values(sw2, u2 / second.range.high)):
                raw = set_path(raw, path, v, SOURCE)
            tr = truth(from_dict(raw, SOURCE), n_sites=truth_sites)
            for p in range(len(meds)):
                target = tr.late[p] if kinds[p] == "binary" else tr.ate[p]
                bias[p, j, i] = getattr(tr, lim)[p] - target
    i0, j0 = int(np.argmin(np.abs(x))), int(np.argmin(np.abs(y)))
    est = analysis[analysis.estimator == "2sls"].set_index("mediator")
    out = {"x": x, "y": y, "x_label": first.assumption.label, "x_unit": first.range.axis,
           "y_label": second.assumption.label, "y_unit": second.range.axis, "mediators": meds, "adjusted": {},
           "estimate": {}, "halfwidth": {}}
    for p, m in enumerate(meds):
        e = float(est.loc[m, "estimate"])
        out["adjusted"][m] = e - (bias[p] - bias[p, j0, i0])
        out["estimate"][m] = e
        out["halfwidth"][m] = float((est.loc[m, "conf_high"] - est.loc[m, "conf_low"]) / 2)
    return out


def _values(sw: Sweep, frac: float) -> list[float]:
    """A sweep's path values at a signed fraction of its range (negative: the far side, mirrored)."""
    vals = sw.plan.values_at(abs(frac))
    if frac >= 0:
        return vals
    return [-v if not p.endswith("person_sd") else v for p, v in zip(sw.paths, vals)]


# ---------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------


def sensitivity(frame: pd.DataFrame, site: str, treatment: str, mediators: Sequence[str] | str, outcome: str, *,
                out: str | Path | None = None, reps: int = 100, seed: int = 1, jobs: int = 1, grid: int = 21,
                contour_grid: int = 13, truth_batches: int = 2, truth_batch_sites: int = 2500,
                ranges: Sequence[DialRange] = RANGES, quiet: bool = True,
                title: str | None = None) -> SensitivityResult:
    """Sensitivity of a finished multisite study to each assumption's failure (see :mod:`simulate.sensitivity`).

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per person.
    site, treatment, mediators, outcome
        Columns, as in :func:`simulate.analyze.analyze`.
    out : str or Path, optional
        Write the report, figures and tables here (and keep the simulated cells under ``out/cells``).
    reps : int
        Monte Carlo replications per simulated cell (at no violation and at each breakdown value);
        0 skips the Monte Carlo part.
    seed : int
        Seed of the Monte Carlo part.
    jobs : int
        Worker processes.
    grid : int
        Dial values per side of each sweep (0 included); the resolution is the range over ``grid - 1``.
    contour_grid : int
        Values per axis of the contour plots.
    truth_batches, truth_batch_sites : int
        The exact part's batches of simulated sites (as the stress test's ``[stress]`` options).
    ranges : sequence of DialRange
        The dial ranges in the study's units (default :data:`RANGES`).
    quiet : bool
        No progress lines.
    title : str, optional
        The study's name in the report.

    Returns
    -------
    SensitivityResult

    Raises
    ------
    AnalysisError
        Bad data (the one-line errors of :func:`simulate.analyze.analyze`).
    SensitivityError
        Bad settings.
    """
    _check_settings(reps=reps, grid=grid, contour_grid=contour_grid, jobs=jobs, truth_batches=truth_batches,
                    truth_batch_sites=truth_batch_sites)
    mediators = [mediators] if isinstance(mediators, str) else list(mediators)
    columns = {"site": site, "treatment": treatment, "mediators": mediators, "outcome": outcome}
    analysis, cal, raw, text, extra = _study(frame, columns)
    K = int(analysis.n_sites.iloc[0])
    dials = _dial_sweeps(raw, ranges)
    settings = StressSettings(steps=2, fine_steps=grid, truth_batches=truth_batches,
                              truth_batch_sites=truth_batch_sites, jobs=jobs, quiet=True)
    if not quiet:
        print(f"simulate sensitivity: exact part, {sum(len(d.sides) for d in dials)} sweeps x {grid} values",
              flush=True)
    curves, breakdown = _exact_part(dials, analysis, settings, grid)
    mc = _monte_carlo_part(dials, breakdown, raw, reps=reps, seed=seed, jobs=jobs, out=out, quiet=quiet)
    breakdown = _attach_mc(breakdown, mc)
    breakdown = breakdown[[c for c in BREAKDOWN_COLUMNS if c in breakdown.columns]]
    if not quiet:
        print("simulate sensitivity: contours", flush=True)
    contours = _contours(dials, analysis, contour_grid, truth_batch_sites * truth_batches)
    res = SensitivityResult(analysis=analysis, calibration=cal, scenario_toml=text,
                            not_identified=_not_identified(cal, raw) + extra, dials=dials, curves=curves,
                            breakdown=breakdown, monte_carlo=mc, contours=contours,
                            settings={"title": title, **columns,
                                      "reps": reps, "seed": seed, "grid": grid, "contour_grid": contour_grid,
                                      "truth_batches": truth_batches, "truth_batch_sites": truth_batch_sites,
                                      "n": int(analysis.n.iloc[0]), "n_sites": K,
                                      "n_arms": int(analysis.n_arms.iloc[0]), "arms": analysis.attrs.get("arms", [])})
    if out is not None:
        res.write(out)
    return res


def _check_settings(**limits: int) -> None:
    """One-line errors for settings outside their bounds (before any work starts)."""
    for name, lo, hi in (("reps", 0, 100_000), ("grid", 3, 401), ("contour_grid", 3, 101), ("jobs", 1, 256),
                         ("truth_batches", 2, 100), ("truth_batch_sites", 500, 1_000_000)):
        v = limits[name]
        if not (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi):
            raise SensitivityError(f"{name} must be an integer in {lo}..{hi}, got {v!r}")
    if limits["reps"] == 1:
        raise SensitivityError("reps must be 0 (no Monte Carlo) or at least 2, got 1")


def _study(frame: pd.DataFrame, columns: dict) -> tuple:
    """The study's analysis and calibration, and the scenario calibrated to it (raw table, TOML text, notes)."""
    mediators = columns["mediators"]
    analysis = analyze(frame, **columns)
    K = int(analysis.n_sites.iloc[0])
    if K <= len(mediators):
        raise AnalysisError(f"{K} sites for {len(mediators)} mediators: the between-site relation needs more sites "
                            "than mediators")
    try:
        cal = calibrate(frame, **columns)
    except CalibrationError as exc:
        raise AnalysisError(str(exc)) from None
    text = to_toml(cal, name="sensitivity", truth_sites=None)
    raw, text, extra = _valid_scenario(cal, text)
    return analysis, cal, raw, text, extra


def _exact_part(dials, analysis: pd.DataFrame, settings: StressSettings, grid: int) -> tuple[list, pd.DataFrame]:
    """The exact curves of every sweep and the breakdown values they give (refined near the origin)."""
    from ..estimators import ESTIMATORS

    curves = _exact(dials, analysis, settings, list(ESTIMATORS))
    breakdown = _breakdown(dials, curves, analysis, grid)
    refined = _refine(dials, curves, breakdown, analysis, settings, list(ESTIMATORS), grid)
    if refined is not curves:  # a breakdown value inside the first grid step: a finer grid there
        curves = refined
        breakdown = _breakdown(dials, curves, analysis, grid)
    return curves, breakdown


def _monte_carlo_part(dials, breakdown: pd.DataFrame, raw: dict, *, reps: int, seed: int, jobs: int,
                      out: str | Path | None, quiet: bool) -> pd.DataFrame:
    """The Monte Carlo cells, under ``out/cells`` (or a temporary folder); an empty frame when ``reps`` is 0."""
    if not reps:
        return pd.DataFrame()
    from ..runner import RunConfig

    cfg = RunConfig(reps=reps, seed=seed, jobs=jobs, quiet=True)
    if out is not None:
        work = Path(out) / "cells"
        work.mkdir(parents=True, exist_ok=True)
        return _monte_carlo(dials, breakdown, raw, cfg, work, quiet, 20_000)
    with tempfile.TemporaryDirectory(prefix="simulate-sensitivity-") as tmp:
        return _monte_carlo(dials, breakdown, raw, cfg, Path(tmp), quiet, 20_000)


def _contours(dials, analysis: pd.DataFrame, n: int, truth_sites: int) -> dict:
    """The two contour plots' data: (ix) and (v), each against a direct effect."""
    by = {d.key: d for d in dials}
    return {"ix": _contour(by["between_site_correlation"], by["direct_effect"], analysis, n, truth_sites),
            "v": _contour(by["mediator_paths"], by["direct_effect"], analysis, n, truth_sites)}
