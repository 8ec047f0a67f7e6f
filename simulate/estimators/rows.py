"""One row schema for analysis tables and simulation rows, and the one function that fills it.

A row is one estimator x mediator of one dataset (plus, after ``between_intercept``'s
rows, one row of mediator ``direct_effect``: the mean direct effect).  :data:`COLUMNS`
names every column, its dtype, its meaning and the path that carries it:

* ``both``: the analysis of a real dataset (:func:`simulate.estimators.estimate`,
  :func:`simulate.analyze.analyze`) and every simulated replication
  (:func:`simulate.replicate.run_replications`);
* ``analysis``: only the analysis table (the direct-effect diagnostics repeated on every
  row, which a simulation carries once, in its ``direct_effect`` row);
* ``simulation``: only simulation rows (grid cell, replication, seed, and the sample
  estimands that need the simulated potential outcomes).

:data:`ANALYSIS_COLUMNS` and :data:`SIMULATION_COLUMNS` are the two column lists (name ->
dtype, in order); the latter is :data:`simulate.replicate.ROW_COLUMNS`, the format of
every stored part file.  :func:`estimate_columns` builds the ``both`` columns of R
datasets from the kernels' arrays in one vectorised pass, for both paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..kernels import codes_nb as codes
from .falsification import falsification_columns, within_site_columns
from .inference import (
    ar_sets,
    ar_tests,
    diagnostic_columns,
    direct_effect_inference_arrays,
    jackknife_ar_sets,
    jackknife_ar_tests,
    primary_standard_error,
    t_inference,
)
from .registry import DIRECT_EFFECT, ESTIMATORS, PRIMARY_SE, SPECS, STATUS_NAMES, primary_df

__all__ = ["Column", "COLUMNS", "ANALYSIS_COLUMNS", "SIMULATION_COLUMNS", "RowPlan", "row_plan",
           "estimate_columns", "ERROR_STATUS_CODE"]

ERROR_STATUS_CODE = -1
"""``status_code`` of the rows of a replication that raised (its ``status`` is ``error: ...``)."""


@dataclass(frozen=True)
class Column:
    """One column of the row schema.

    Attributes
    ----------
    dtype : str
        numpy dtype name (``str`` for text).
    meaning : str
        One line.
    paths : str
        ``both``, ``analysis`` or ``simulation``.
    """

    dtype: str
    meaning: str
    paths: str = "both"


_F = "float64"
_PER_DATASET = " (the same on every row of a dataset)"

COLUMNS: dict[str, Column] = {
    "cell": Column("int32", "grid cell index", "simulation"),
    "rep": Column("int64", "replication index", "simulation"),
    "estimator": Column("str", "estimator name (simulate.estimators.ESTIMATORS)"),
    "mediator": Column("str", "mediator name, or direct_effect for the between-site intercept"),
    "estimate": Column(_F, "the estimate"),
    "std_error": Column(_F, "the standard error behind conf_low, conf_high and p_value (of the kind se_type)"),
    "se_type": Column("str", "the kind of std_error (simulate.estimators.PRIMARY_SE; hc0 for direct_effect)"),
    "se_conventional": Column(_F, "conventional (homoskedastic) standard error"),
    "se_robust": Column(_F, "heteroskedasticity-robust HC0 standard error"),
    "se_hc1": Column(_F, "HC1 standard error (HC0 with a degrees-of-freedom correction)"),
    "se_cluster": Column(_F, "site-clustered standard error"),
    "se_many_instrument": Column(_F, "many-instrument standard error (Bekker; KCFGI for MBTSLS)"),
    "se_heterogeneity": Column(_F, "standard error allowing for heterogeneous effects"),
    "conf_low": Column(_F, "lower end of the confidence interval (t reference, simulate.estimators.primary_df)"),
    "conf_high": Column(_F, "upper end of the confidence interval"),
    "p_value": Column(_F, "two-sided p-value of H0: the effect is zero"),
    "status": Column("str", "ok, or why the estimate is NaN (simulate.estimators.STATUS_NAMES, or error: ...)"),
    "status_code": Column("int64", "the kernel's status code of status (-1: the replication raised)"),
    "first_stage_f": Column(_F, "first-stage F statistic of the mediator (NaN on the direct_effect row)"),
    "conditional_f": Column(_F, "Sanderson-Windmeijer conditional F of the mediator (first_stage_f when P = 1)"),
    "n": Column(_F, "number of persons" + _PER_DATASET),
    "n_sites": Column(_F, "number of sites K" + _PER_DATASET),
    "n_arms": Column(_F, "number of treatment arms L + 1" + _PER_DATASET),
    "liml_kappa": Column(_F, "LIML's kappa" + _PER_DATASET),
    "fuller_kappa": Column(_F, "Fuller's kappa" + _PER_DATASET),
    "sigma_min": Column(_F, "smallest singular value of the (K L) x P compliance matrix" + _PER_DATASET),
    "sigma_ratio": Column(_F, "sigma_min over the largest singular value" + _PER_DATASET),
    "overid_stat": Column(_F, "Sargan overidentification statistic, 2SLS residuals" + _PER_DATASET),
    "overid_df": Column(_F, "its degrees of freedom K L - P" + _PER_DATASET),
    "overid_p": Column(_F, "its chi-square p-value" + _PER_DATASET),
    "cragg_donald": Column(_F, "Cragg-Donald statistic (n - K A)(kappa_LIML - 1)" + _PER_DATASET),
    "overid_p_many_instrument": Column(_F, "its many-instrument p-value (Kolesar 2018)" + _PER_DATASET),
    "nonlinearity_stat": Column(_F, "Wald statistic of the squared site compliances (between sites)"
                                + _PER_DATASET),
    "nonlinearity_df": Column(_F, "its degrees of freedom" + _PER_DATASET),
    "nonlinearity_p": Column(_F, "its p-value, F(df, K - 1 - 2P) reference" + _PER_DATASET),
    "ar_stat": Column(_F, "Anderson-Rubin F statistic of H0: beta = 0, the K L site-by-arm instruments"
                          + _PER_DATASET),
    "ar_p": Column(_F, "its p-value, F(K L, n - K A)" + _PER_DATASET),
    "ar_cluster_stat": Column(_F, "site-clustered AR statistic of H0: beta = 0, the pooled instrument t - tbar_s"
                                  + _PER_DATASET),
    "ar_cluster_p": Column(_F, "its p-value, F(1, K - 1)" + _PER_DATASET),
    "ar_true_stat": Column(_F, "ar_stat at the true value: H0: beta = the scenario's mean effects "
                               "(site.effect_mean)" + _PER_DATASET, "simulation"),
    "ar_true_p": Column(_F, "its p-value (its rejection rate is the AR test's size where the AR null holds)"
                            + _PER_DATASET, "simulation"),
    "ar_cluster_true_stat": Column(_F, "ar_cluster_stat at the true value" + _PER_DATASET, "simulation"),
    "ar_cluster_true_p": Column(_F, "its p-value" + _PER_DATASET, "simulation"),
    "ar_low": Column(_F, "AR confidence set (P = 1, at the level of conf_low): its lower end, see ar_set_kind"
                         + _PER_DATASET),
    "ar_high": Column(_F, "its upper end (see ar_set_kind)" + _PER_DATASET),
    "ar_set_kind": Column("str", "interval [ar_low, ar_high], two_rays (-inf, ar_low] U [ar_high, inf), whole_line, "
                                 "empty, or not_computed (P > 1)" + _PER_DATASET),
    "ar_cluster_low": Column(_F, "site-clustered AR confidence set (P = 1): lower end" + _PER_DATASET),
    "ar_cluster_high": Column(_F, "its upper end" + _PER_DATASET),
    "ar_cluster_set_kind": Column("str", "as ar_set_kind" + _PER_DATASET),
    "jar_stat": Column(_F, "jackknife AR statistic (Mikusheva & Sun 2022, many weak instruments) of H0: beta = 0, "
                           "one-sided N(0, 1); NaN with a cell of fewer than two persons or P > 3" + _PER_DATASET),
    "jar_p": Column(_F, "its p-value 1 - Phi(jar_stat)" + _PER_DATASET),
    "jar_true_stat": Column(_F, "jar_stat at the true value (site.effect_mean)" + _PER_DATASET, "simulation"),
    "jar_true_p": Column(_F, "its p-value (its rejection rate is the jackknife AR's size)" + _PER_DATASET,
                         "simulation"),
    "jar_low": Column(_F, "jackknife AR confidence set (P = 1, at the level of conf_low): lower end, see "
                          "jar_set_kind" + _PER_DATASET),
    "jar_high": Column(_F, "its upper end (see jar_set_kind)" + _PER_DATASET),
    "jar_set_kind": Column("str", "as ar_set_kind, or several_pieces (a union of intervals; jar_low, jar_high "
                                  "its hull)" + _PER_DATASET),
    "balanced_design": Column(_F, "1 when every site x arm cell has the same size: UJIVE and MBTSLS are then the "
                                  "same k-class estimator, kappa = 1 + (A - 1)/(n_s - A)" + _PER_DATASET),
    "direct_effect": Column(_F, "the between-site intercept (also the estimate of the direct_effect row)"
                            + _PER_DATASET, "analysis"),
    "direct_effect_se_conventional": Column(_F, "its conventional standard error" + _PER_DATASET, "analysis"),
    "direct_effect_se_hc0": Column(_F, "its HC0 (site sandwich) standard error" + _PER_DATASET, "analysis"),
    "direct_effect_se_hc1": Column(_F, "its HC1 standard error" + _PER_DATASET, "analysis"),
    "sample_ate": Column(_F, "mean Delta_p over the persons drawn", "simulation"),
    "sample_late": Column(_F, "mean Delta_p over the compliers drawn (binary mediators)", "simulation"),
    "sample_compliance_weighted": Column(_F, "sum Gamma Delta / sum Gamma over the persons drawn", "simulation"),
    "seed": Column("int64", "the run seed (entropy)", "simulation"),
    "cell_key": Column("int64", "spawn key: SeedSequence(seed, spawn_key=(cell_key, rep)) replays the replication",
                       "simulation"),
    "se_heterogeneity_jive": Column(_F, "Kolesar (2013) heterogeneity-robust standard error of UJIVE (person "
                                    "level; NaN for the other estimators and on the cell-statistics path)"),
    "se_many_instrument_complete": Column(_F, "complete KCFGI (2015) standard error of bias-corrected 2SLS, "
                                          "the Gaussian part plus the third- and fourth-moment terms (person level)"),
    "effect_sd": Column(_F, "estimated cross-site SD of the mediator's effect (RCIV rows; NaN elsewhere); its "
                        "truth: simulate.truth.site_effect_sd"),
    "quadratic_stat": Column(_F, "Wald statistic (CR3) of the squares and cross-products of the site compliances "
                             "(between sites, with intercept)" + _PER_DATASET),
    "quadratic_df": Column(_F, "its degrees of freedom P(P+1)/2" + _PER_DATASET),
    "quadratic_htz_df": Column(_F, "Hotelling (HTZ) degrees of freedom of its CR3 covariance: small means a few "
                               "high-leverage sites, read the p-value with care" + _PER_DATASET),
    "quadratic_p": Column(_F, "its p-value, F(df, K - 1 - P - P(P+1)/2) reference" + _PER_DATASET),
    "falsification_stat": Column(_F, "Wald statistic (CR3) of the intercept and the quadratic terms jointly: the "
                                 "site ITT effects on a plane through the origin" + _PER_DATASET),
    "falsification_df": Column(_F, "its degrees of freedom 1 + P(P+1)/2" + _PER_DATASET),
    "falsification_htz_df": Column(_F, "Hotelling (HTZ) degrees of freedom of its CR3 covariance" + _PER_DATASET),
    "falsification_p": Column(_F, "its p-value, F(df, K - 1 - P - P(P+1)/2) reference" + _PER_DATASET),
    "intercept_stat": Column(_F, "Wald statistic (CR3) of the intercept of between_intercept" + _PER_DATASET),
    "intercept_htz_df": Column(_F, "Hotelling (HTZ) degrees of freedom of its CR3 variance" + _PER_DATASET),
    "intercept_p": Column(_F, "its p-value, F(1, K - 1 - P) reference" + _PER_DATASET),
    "conf_low_within": Column(_F, "one site (K = 1) only: lower end of the within-site interval, person-level HC1 "
                              "standard error, t(n - 1 - P); NaN when K > 1"),
    "conf_high_within": Column(_F, "one site (K = 1) only: its upper end"),
}
"""Every column: name -> :class:`Column` (dtype, meaning, the path that carries it), in column order."""

ANALYSIS_COLUMNS: dict[str, str] = {k: c.dtype for k, c in COLUMNS.items() if c.paths in ("both", "analysis")}
"""Columns of the analysis table (:func:`simulate.estimators.estimate`), name -> dtype, in order."""

SIMULATION_COLUMNS: dict[str, str] = {k: c.dtype for k, c in COLUMNS.items() if c.paths in ("both", "simulation")}
"""Columns of a simulation row (:data:`simulate.replicate.ROW_COLUMNS`), name -> dtype, in order."""

_PER_MEDIATOR_SE = (("se_conventional", codes.SE_CONVENTIONAL), ("se_robust", codes.SE_HC0), ("se_hc1", codes.SE_HC1),
                    ("se_cluster", codes.SE_CLUSTER), ("se_many_instrument", codes.SE_MANY_INSTRUMENT),
                    ("se_heterogeneity", codes.SE_HETEROGENEITY),
                    ("se_heterogeneity_jive", codes.SE_HETEROGENEITY_JIVE),
                    ("se_many_instrument_complete", codes.SE_MANY_INSTRUMENT_COMPLETE),
                    ("effect_sd", codes.SE_EFFECT_SD))
# the direct-effect row's standard errors (diagnostic keys); the others are NaN
_DIRECT_SE = {"se_conventional": "direct_effect_se_conventional", "se_robust": "direct_effect_se_hc0",
              "se_hc1": "direct_effect_se_hc1"}
_STATUS = np.array([STATUS_NAMES[k] for k in sorted(STATUS_NAMES)], dtype=object)


class RowPlan(NamedTuple):
    """Which row is which, for every dataset alike (n rows).

    Attributes
    ----------
    estimator, mediator, se_type : (n,) object arrays
        The text columns.
    row : (n,) int
        Kernel row of the estimator.
    column : (n,) int
        Mediator index, -1 for the direct-effect row.
    """

    estimator: np.ndarray
    mediator: np.ndarray
    se_type: np.ndarray
    row: np.ndarray
    column: np.ndarray


def row_plan(mediator_names: Sequence[str], estimators: Sequence[str] = ESTIMATORS, *,
             direct_effect: str | None = "after") -> RowPlan:
    """The rows of one dataset: each estimator's P mediators, and the direct-effect row.

    Parameters
    ----------
    mediator_names : sequence of str
        The P mediator names.
    estimators : sequence of str
        The estimators, in row order.
    direct_effect : {"after", "last", None}
        Where the direct-effect row goes: right after the rows of ``between_intercept``
        (the analysis table), after every other row (simulation rows; the row is there even
        when ``between_intercept`` is not among ``estimators``), or nowhere.

    Returns
    -------
    RowPlan
    """
    names, row, col, se_type = [], [], [], []
    direct_spec = next(s for s in SPECS.values() if s.direct_effect_row)

    def add_direct():
        names.append(direct_spec.name)
        row.append(direct_spec.kernel_row)
        col.append(-1)
        se_type.append("hc0")

    for name in estimators:
        s = SPECS[name]
        for p in range(len(mediator_names)):
            names.append(name)
            row.append(s.kernel_row)
            col.append(p)
            se_type.append(PRIMARY_SE[name])
        if s.direct_effect_row and direct_effect == "after":
            add_direct()
    if direct_effect == "last":
        add_direct()
    mediators = [mediator_names[c] if c >= 0 else DIRECT_EFFECT for c in col]
    arrays = [np.array(names, dtype=object), np.array(mediators, dtype=object), np.array(se_type, dtype=object),
              np.array(row, dtype=np.intp), np.array(col, dtype=np.intp)]
    for a in arrays:
        a.flags.writeable = False  # plans are cached and shared
    return RowPlan(*arrays)


def estimate_columns(estimate: np.ndarray, se: np.ndarray, status: np.ndarray, diag: np.ndarray,
                     first_stage_f: np.ndarray, conditional_f: np.ndarray, plan: RowPlan, n_sites: int,
                     level: float = 0.95, ar_null=None) -> dict[str, np.ndarray]:
    """The ``both`` columns of R datasets (R x n rows, dataset-major), from the kernels' arrays.

    The analysis (R = 1) and the simulation (a batch of replications) call this with the
    same arrays, so the two paths do the same floating-point operations.

    Parameters
    ----------
    estimate : (R, E, P)
    se : (R, E, len(SE_TYPES), P)
    status : (R, E) int
    diag : (R, N_DIAGNOSTICS)
    first_stage_f, conditional_f : (R, P)
    plan : RowPlan
        The n rows of each dataset (:func:`row_plan`).
    n_sites : int
        K (the degrees of freedom of the t references).
    level : float
        Confidence level.
    ar_null : array_like, optional
        (P,) or (R, P): the true effects; given, the Anderson-Rubin tests at them are added
        (``ar_true_stat``, ``ar_true_p``, ``ar_cluster_true_stat``, ``ar_cluster_true_p``:
        simulation columns).  ``ar_stat`` and its kin are at zero on both paths.

    Returns
    -------
    dict
        Column name -> (R n,) array, for every ``both`` column of :data:`COLUMNS` except
        the plan's text columns (``estimator``, ``mediator``, ``se_type``); the
        analysis-only diagnostics come along under their names.
    """
    R, E, P = estimate.shape
    n = len(plan.row)
    direct = plan.column < 0
    row, column = plan.row, np.maximum(plan.column, 0)
    std = primary_standard_error(se)
    df = primary_df(n_sites, P)  # (E,)
    lo, hi, pv = t_inference(estimate, std, df[None, :, None], level)
    d = diagnostic_columns(diag, n_sites, P)
    b, s = d["direct_effect"], d["direct_effect_se_hc0"]
    d_lo, d_hi, d_p = direct_effect_inference_arrays(b, s, n_sites, P, level)
    nan = np.full(R, np.nan)

    def rows(a, extra):
        """(R, E, P) or (R, P) -> (R n,), the direct-effect rows taking ``extra`` (R,)."""
        out = a[:, row, column] if a.ndim == 3 else a[:, column]
        if direct.any():
            out[:, direct] = extra[:, None]
        return out.reshape(-1)

    col: dict[str, np.ndarray] = {}
    col["estimate"] = rows(estimate, b)
    col["std_error"] = rows(std, s)
    for name, k in _PER_MEDIATOR_SE:
        col[name] = rows(se[:, :, k, :], d[_DIRECT_SE[name]] if name in _DIRECT_SE else nan)
    col["conf_low"] = rows(lo, d_lo)
    col["conf_high"] = rows(hi, d_hi)
    col["p_value"] = rows(pv, d_p)
    code = np.asarray(status, np.int64)[:, row]
    col["status"] = _STATUS[code].reshape(-1)
    col["status_code"] = code.reshape(-1)
    col["first_stage_f"] = rows(np.asarray(first_stage_f, float), nan)
    col["conditional_f"] = rows(np.asarray(conditional_f, float), nan)
    for key, v in d.items():
        col[key] = np.repeat(v, n)
    for key, v in _ar_columns(diag, P, level, ar_null).items():
        col[key] = np.repeat(v, n)
    for key, v in falsification_columns(diag, n_sites, P).items():
        col[key] = np.repeat(v, n)
    for key, v in within_site_columns(estimate, se, diag, n_sites, level).items():
        col[key] = rows(v, nan)
    return col


def _ar_columns(diag: np.ndarray, P: int, level: float, ar_null) -> dict[str, np.ndarray]:
    """The dataset-level Anderson-Rubin columns and the balanced-design flag, (R,) each."""
    R = diag.shape[0]
    out = ar_tests(diag, np.zeros(P), P)
    if ar_null is not None:
        out.update({k.replace("_stat", "_true_stat").replace("_p", "_true_p"): v
                    for k, v in ar_tests(diag, ar_null, P).items()})
    out.update(jackknife_ar_tests(diag, np.zeros(P), P))
    if ar_null is not None:
        out.update({k.replace("jar_", "jar_true_"): v for k, v in jackknife_ar_tests(diag, ar_null, P).items()})
    if P == 1:
        sets = ar_sets(diag, level)
        sets.update(jackknife_ar_sets(diag, level))
        for k in ("ar_set_kind", "ar_cluster_set_kind", "jar_set_kind"):
            sets[k] = np.where(sets[k] == None, "not_computed", sets[k]).astype(object)  # noqa: E711
    else:
        nan = np.full(R, np.nan)
        none = np.full(R, "not_computed", dtype=object)
        sets = {"ar_low": nan, "ar_high": nan, "ar_set_kind": none, "ar_cluster_low": nan, "ar_cluster_high": nan,
                "ar_cluster_set_kind": none, "jar_low": nan, "jar_high": nan, "jar_set_kind": none}
    out.update(sets)
    out["balanced_design"] = np.asarray(diag, float)[:, codes.D_BALANCED]
    return out
