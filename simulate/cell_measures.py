"""The numbers a stress-test verdict reads from one simulated cell, and the rates of the design's checks.

A cell is a finished run directory (:mod:`simulate.store`): its ``summary.csv`` (the performance
measures with their Monte Carlo SEs, :mod:`simulate.run_summary`) and its tidy rows.
:func:`cell_measures` reads both and returns, per estimator x mediator, the measures the
verdicts of :mod:`simulate.stress` and the Monte Carlo part of :mod:`simulate.sensitivity`
compare (bias and its parts, RMSE, coverage of the Wald and AR intervals, power, mean interval
width), and the share of replications in which each of the design's own checks fires (weak
first stage, overidentification, nonlinearity, quadratic), each with its binomial SE.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .estimators.registry import DIRECT_EFFECT
from .store import read_rows

__all__ = ["ROW_COLUMNS", "CHECKS", "WEAK_F", "target_name", "cell_measures"]

ROW_COLUMNS = ["rep", "estimator", "mediator", "status", "estimate", "conf_low", "conf_high", "first_stage_f",
               "overid_p", "nonlinearity_p", "quadratic_p"]
"""The columns of the tidy rows that :func:`cell_measures` reads."""

WEAK_F = 10.0
"""The weak-first-stage check fires when the smallest first-stage F of a replication is below this."""

CHECKS = ("weak_first_stage", "overidentification", "nonlinearity", "quadratic")
"""The design's own checks, in the order their rates are reported (then ``any_check``)."""

_TARGET_MEASURES = ("target_value", "bias", "relative_bias", "identification_bias", "finite_sample_bias",
                    "rmse", "coverage", "ar_coverage", "ar_cluster_coverage", "jar_coverage")
_TARGET_FREE = ("power", "mean_estimate", "balanced_design_share")
_NAN2 = (math.nan, math.nan)


def target_name(kind: str) -> str:
    """The target of a mediator of this kind.

    Parameters
    ----------
    kind : str
        ``"binary"`` or ``"continuous"``.

    Returns
    -------
    str
        ``"late"`` for a binary mediator, else ``"ate"``.
    """
    return "late" if kind == "binary" else "ate"


def cell_measures(run_dir: Path, kinds: dict, level_alpha: float = 0.05) -> tuple[pd.DataFrame, dict]:
    """Per estimator x mediator of one simulated cell: the numbers a verdict reads; and the checks' rates.

    Parameters
    ----------
    run_dir : Path
        A finished run directory of one cell (with ``summary.csv``).
    kinds : dict
        Mediator name -> ``"binary"`` or ``"continuous"`` (a missing name counts as continuous).
    level_alpha : float
        Level of the overidentification, nonlinearity and quadratic checks.

    Returns
    -------
    measures : pandas.DataFrame
        One row per estimator x mediator (the direct effect left out): ``estimator``, ``mediator``,
        ``target``, ``reps``, ``failure_share``, and each measure with its ``*_mcse``.
    checks : dict
        Check name -> (rate, its binomial SE, replications with a finite statistic), for each of
        :data:`CHECKS` and, when any had one, ``any_check`` (the share of replications where one fires).
    """
    s = pd.read_csv(run_dir / "summary.csv", keep_default_na=False, na_values=[""])
    rows = read_rows(run_dir, columns=ROW_COLUMNS)
    return _estimator_measures(s, rows, kinds), _check_rates(rows, level_alpha)


def _estimator_measures(s: pd.DataFrame, rows: pd.DataFrame, kinds: dict) -> pd.DataFrame:
    """The summary's measures per estimator x mediator at its target, with the mean interval width."""
    look = {(e, m, t, me): (v, se) for e, m, t, me, v, se in
            zip(s.estimator, s.mediator, s.target, s.measure, s.value.astype(float), s.mcse.astype(float))}
    width_of = {}
    ok = rows[(rows.status == "ok") & np.isfinite(rows.conf_low) & np.isfinite(rows.conf_high)]
    for (est, med), g in ok.groupby(["estimator", "mediator"], sort=False):
        w = (g.conf_high - g.conf_low).to_numpy(float)
        width_of[(est, med)] = (float(w.mean()), float(w.std(ddof=1) / math.sqrt(len(w))) if len(w) > 1 else math.nan)
    count = rows.groupby(["estimator", "mediator"], sort=False).size().to_dict()
    out = []
    for est, med in dict.fromkeys(zip(s.estimator, s.mediator)):
        if med == DIRECT_EFFECT:
            continue
        target = target_name(kinds.get(med, "continuous"))
        rec = {"estimator": est, "mediator": med, "target": target, "reps": int(count.get((est, med), 0)),
               "failure_share": look.get((est, med, "none", "failure_share"), _NAN2)[0]}
        for measure in _TARGET_MEASURES:  # the AR sets' coverage beside Wald's (P = 1)
            rec[measure], rec[f"{measure}_mcse"] = look.get((est, med, target, measure), _NAN2)
        for measure in _TARGET_FREE:
            rec[measure], rec[f"{measure}_mcse"] = look.get((est, med, "none", measure), _NAN2)
        rec["width"], rec["width_mcse"] = width_of.get((est, med), _NAN2)
        out.append(rec)
    return pd.DataFrame(out)


def _check_rates(rows: pd.DataFrame, level_alpha: float) -> dict:
    """The design's own checks, from the 2SLS rows (diagnostics are the same on every estimator's row)."""
    first = "2sls" if (rows.estimator == "2sls").any() else rows.estimator.iloc[0]
    d = rows[rows.estimator == first]
    per_rep = d.groupby("rep").agg(f_min=("first_stage_f", "min"), overid=("overid_p", "first"),
                                   nonlin=("nonlinearity_p", "first"), quadratic=("quadratic_p", "first"))
    checks, flags = {}, {}
    for name, col, fires in ((CHECKS[0], "f_min", lambda x: x < WEAK_F),
                             (CHECKS[1], "overid", lambda x: x < level_alpha),
                             (CHECKS[2], "nonlin", lambda x: x < level_alpha),
                             (CHECKS[3], "quadratic", lambda x: x < level_alpha)):
        x = per_rep[col].to_numpy(float)
        fin = np.isfinite(x)
        if fin.any():
            f = fires(x[fin])
            checks[name] = (float(f.mean()), float(math.sqrt(f.mean() * (1 - f.mean()) / fin.sum())), int(fin.sum()))
            flags[name] = np.where(fin, fires(np.where(fin, x, 0)), False)
        else:
            checks[name] = (math.nan, math.nan, 0)
    if flags:
        anyf = np.logical_or.reduce(list(flags.values()))
        checks["any_check"] = (float(anyf.mean()), float(math.sqrt(anyf.mean() * (1 - anyf.mean()) / len(anyf))),
                               int(len(anyf)))
    return checks
