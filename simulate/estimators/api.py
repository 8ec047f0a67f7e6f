r"""The validated Python API of the estimators: arrays in, tidy rows out.

The algebra lives in :mod:`simulate.kernels` (Numba, cell-level sufficient statistics,
:mod:`simulate.kernels.fit_nb` for every estimator).  This module checks inputs, names things and returns tidy
rows; the estimators themselves are listed in :mod:`.registry`, the intervals and
p-values come from :mod:`.inference` and the row format from :mod:`.rows`.

Two entry points:

* :func:`estimate_arrays` -- no validation, plain numpy arrays, small Python
  overhead; for the runner that calls it thousands of times;
* :func:`estimate` -- validated, returns a tidy :class:`pandas.DataFrame`, one row
  per estimator x mediator (the columns of :data:`.rows.ANALYSIS_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import special

from ..errors import SimulateError
from ..kernels import codes_nb as codes
from ..kernels import fit_nb, kclass_nb, moments_nb
from .inference import (
    diagnostic_columns,
    direct_effect_inference_arrays,
    nonlinearity_p,
    primary_standard_error,
    t_inference,
)
from .registry import ESTIMATORS, primary_df, unknown_estimator_message
from .rows import ANALYSIS_COLUMNS, estimate_columns, row_plan

__all__ = ["EstimateArrays", "EstimationError", "estimate_arrays", "estimate_statistics", "primary_inference",
           "direct_effect_inference", "nonlinearity_p", "diagnostic_values", "estimate", "tidy",
           "anderson_rubin_test", "cell_statistics"]


class EstimateArrays(NamedTuple):
    """Plain-array output of :func:`estimate_arrays` (E = len(ESTIMATORS)).

    Attributes
    ----------
    estimate : (E, P)
    se : (E, len(SE_TYPES), P)
    status : (E,) int64, see :data:`STATUS_NAMES`
    diagnostics : (N_DIAGNOSTICS,), indexed by the ``D_*`` constants of the kernels
    first_stage_f : (P,)
    conditional_f : (P,), Sanderson-Windmeijer (equal to first_stage_f when P = 1)
    """

    estimate: np.ndarray
    se: np.ndarray
    status: np.ndarray
    diagnostics: np.ndarray
    first_stage_f: np.ndarray
    conditional_f: np.ndarray


class EstimationError(SimulateError):
    """Invalid input to :func:`estimate` (never raised for numerical failure)."""


def estimate_arrays(
    site: np.ndarray,
    treatment: np.ndarray,
    mediators: np.ndarray,
    outcome: np.ndarray,
    n_sites: int,
    n_arms: int,
    fuller_alpha: float = 1.0,
) -> EstimateArrays:
    """Every estimator on one dataset, without validation (the fast path).

    Parameters
    ----------
    site : int64 (n,)
        Site codes 0..n_sites-1 (any order).
    treatment : int64 (n,)
        Arm codes 0..n_arms-1.
    mediators : float64 (n, P)
    outcome : float64 (n,)
    n_sites, n_arms : int
    fuller_alpha : float
        Fuller's constant.

    Returns
    -------
    EstimateArrays
        Failures are status codes with NaN estimates; nothing raises for a singular
        first stage, an empty arm or too few sites.
    """
    out = fit_nb.fit_persons(
        np.ascontiguousarray(site, dtype=np.int64),
        np.ascontiguousarray(treatment, dtype=np.int64),
        np.ascontiguousarray(mediators, dtype=np.float64),
        np.ascontiguousarray(outcome, dtype=np.float64),
        int(n_sites),
        int(n_arms),
        float(fuller_alpha),
    )
    return EstimateArrays(*out)


def estimate_statistics(count, mean, cross, fuller_alpha: float = 1.0) -> EstimateArrays:
    """Every estimator from cell statistics (see ``cell_statistics`` in the kernels).

    The HC0/HC1 standard errors of OLS and UJIVE need person-level fourth moments and
    are NaN on this path; everything else equals :func:`estimate_arrays`.
    """
    return EstimateArrays(*fit_nb.fit_from_statistics(count, mean, cross, float(fuller_alpha)))


def primary_inference(arrays: EstimateArrays, level: float = 0.95):
    """Standard error of :data:`PRIMARY_SE`, t-based CI and two-sided p-value (H0: 0).

    The t reference has :func:`primary_df` degrees of freedom (K - 1 for site-clustered SEs).

    Parameters
    ----------
    arrays : EstimateArrays
    level : float
        Confidence level.

    Returns
    -------
    (std_error, conf_low, conf_high, p_value) : tuple of (E, P) arrays
    """
    se = primary_standard_error(arrays.se)
    K = int(arrays.diagnostics[codes.D_SITES])
    df = primary_df(K, arrays.estimate.shape[1])[:, None]
    lo, hi, p = t_inference(arrays.estimate, se, df, level)
    return se, lo, hi, p


def direct_effect_inference(diag: dict, n_mediators: int, level: float = 0.95):
    """(estimate, SE, conf_low, conf_high, p_value) of the between-site intercept (mean direct effect).

    Site-level sandwich SE with a t reference of K - P - 1 degrees of freedom.

    Parameters
    ----------
    diag : dict
        The output of :func:`diagnostic_values`.
    n_mediators : int
        P.
    level : float
        Confidence level.

    Returns
    -------
    tuple of float
    """
    b, s = diag["direct_effect"], diag["direct_effect_se_hc0"]
    lo, hi, p = direct_effect_inference_arrays(b, s, int(diag["n_sites"]), n_mediators, level)
    return b, s, float(lo), float(hi), float(p)


def diagnostic_values(arrays: EstimateArrays) -> dict[str, float]:
    """Scalar diagnostics with their p-values (see :func:`.inference.diagnostic_columns`).

    Parameters
    ----------
    arrays : EstimateArrays

    Returns
    -------
    dict
        Keys ``n, n_sites, n_arms, liml_kappa, fuller_kappa, sigma_min, sigma_ratio,
        overid_stat, overid_df, overid_p, cragg_donald, overid_p_many_instrument,
        nonlinearity_stat, nonlinearity_df, nonlinearity_p, direct_effect,
        direct_effect_se_conventional, direct_effect_se_hc0, direct_effect_se_hc1``.
    """
    K = int(arrays.diagnostics[codes.D_SITES])
    cols = diagnostic_columns(arrays.diagnostics[None, :], K, arrays.estimate.shape[1])
    out = {k: v[0] for k, v in cols.items()}
    for k in ("overid_p", "overid_p_many_instrument", "nonlinearity_p"):
        out[k] = float(out[k])
    return out


def _validate(site, treatment, mediators, outcome):
    site = np.asarray(site)
    treatment = np.asarray(treatment)
    mediators = np.asarray(mediators)
    outcome = np.asarray(outcome)
    if mediators.ndim == 1:
        mediators = mediators[:, None]
    if mediators.ndim != 2 or mediators.shape[1] < 1:
        raise EstimationError("mediators must be an (n, P) array with P >= 1")
    n = outcome.shape[0] if outcome.ndim == 1 else -1
    if outcome.ndim != 1:
        raise EstimationError("outcome must be a 1-d array")
    for name, a in (("site", site), ("treatment", treatment), ("mediators", mediators)):
        if a.shape[0] != n:
            raise EstimationError(f"{name} has {a.shape[0]} rows but outcome has {n}")
    for name, a in (("site", site), ("treatment", treatment)):
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise EstimationError(f"{name} must be a 1-d integer array of codes")
        if n and a.min() < 0:
            raise EstimationError(f"{name} codes must be >= 0")
    for name, a in (("mediators", mediators), ("outcome", outcome)):
        if not np.issubdtype(a.dtype, np.number):
            raise EstimationError(f"{name} must be numeric")
        if not np.all(np.isfinite(a)):
            raise EstimationError(f"{name} contains NaN or infinite values")
    if n == 0:
        raise EstimationError("no observations")
    return (
        site.astype(np.int64),
        treatment.astype(np.int64),
        mediators.astype(np.float64),
        outcome.astype(np.float64),
    )


def estimate(
    site,
    treatment,
    mediators,
    outcome,
    *,
    estimators: Sequence[str] = ESTIMATORS,
    mediator_names: Sequence[str] | None = None,
    level: float = 0.95,
    fuller_alpha: float = 1.0,
    n_sites: int | None = None,
    n_arms: int | None = None,
    include_direct_effect: bool = True,
) -> pd.DataFrame:
    """Every requested estimator on one multisite dataset, as tidy rows.

    Parameters
    ----------
    site : int array (n,)
        Site codes 0..K-1.
    treatment : int array (n,)
        Arm codes 0..L (0 = control; ordered arms).
    mediators : float array (n, P) or (n,)
    outcome : float array (n,)
    estimators : sequence of str
        A subset of :data:`ESTIMATORS`.
    mediator_names : sequence of str, optional
        Defaults to ``mediator_1..mediator_P``.
    level : float
        Confidence level of ``conf_low``/``conf_high``.
    fuller_alpha : float
        Fuller's constant (1 gives Fuller(1)).
    n_sites, n_arms : int, optional
        Default to max code + 1.
    include_direct_effect : bool
        Add a ``between_intercept`` row with mediator ``direct_effect`` (the
        intercept, i.e. the mean direct effect of one unit of T).

    Returns
    -------
    pandas.DataFrame
        Columns ``estimator, mediator, estimate, std_error, se_type,
        se_conventional, se_robust (HC0), se_hc1, se_cluster, se_many_instrument,
        se_heterogeneity, conf_low, conf_high, p_value, status, status_code,
        first_stage_f, conditional_f`` and the scalar diagnostics of
        :func:`diagnostic_values` (the same on every row).

    Raises
    ------
    EstimationError
        For malformed input only; numerical failures are statuses.
    """
    refused = unknown_estimator_message(estimators)
    if refused:
        raise EstimationError(refused)
    if not 0 < level < 1:
        raise EstimationError(f"level must be in (0, 1), got {level}")
    site, treatment, mediators, outcome = _validate(site, treatment, mediators, outcome)
    P = mediators.shape[1]
    names = list(mediator_names) if mediator_names is not None else [f"mediator_{p + 1}" for p in range(P)]
    if len(names) != P:
        raise EstimationError(f"{len(names)} mediator names for {P} mediators")
    K = int(site.max()) + 1 if n_sites is None else int(n_sites)
    A = int(treatment.max()) + 1 if n_arms is None else int(n_arms)
    if site.max() >= K or treatment.max() >= A:
        raise EstimationError("site or treatment codes exceed n_sites / n_arms")
    arrays = estimate_arrays(site, treatment, mediators, outcome, K, A, fuller_alpha)
    return tidy(arrays, names, estimators=estimators, level=level,
                include_direct_effect=include_direct_effect)


def tidy(
    arrays: EstimateArrays,
    mediator_names: Sequence[str],
    *,
    estimators: Sequence[str] = ESTIMATORS,
    level: float = 0.95,
    include_direct_effect: bool = True,
) -> pd.DataFrame:
    """Turn :class:`EstimateArrays` into the tidy frame of :func:`estimate`.

    The rows are built by :func:`.rows.estimate_columns`, the function that builds the
    simulation rows.

    Parameters
    ----------
    arrays : EstimateArrays
    mediator_names : sequence of str
    estimators, level, include_direct_effect
        As in :func:`estimate`.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`.rows.ANALYSIS_COLUMNS`.
    """
    plan = row_plan(list(mediator_names), estimators, direct_effect="after" if include_direct_effect else None)
    K = int(arrays.diagnostics[codes.D_SITES])
    cols = estimate_columns(arrays.estimate[None], arrays.se[None], arrays.status[None], arrays.diagnostics[None],
                            arrays.first_stage_f[None], arrays.conditional_f[None], plan, K, level)
    cols.update(estimator=plan.estimator, mediator=plan.mediator, se_type=plan.se_type)
    return pd.DataFrame({k: cols[k] for k in ANALYSIS_COLUMNS})


def anderson_rubin_test(site, treatment, mediators, outcome, effect, *, n_sites=None, n_arms=None):
    r"""Anderson-Rubin test of H0: the mediator effects equal ``effect``.

    ``AR = [b0'B b0 / (K L)] / [b0'Wc b0 / (n - K A)]``, ``b0 = (1, -effect')``, with B
    and Wc the between-cell-within-site and within-cell cross-products of (Y, M);
    F(K L, n - K A) under H0 (exact with normal homoskedastic errors, robust to weak
    instruments).

    Returns
    -------
    dict with ``statistic``, ``df1``, ``df2``, ``p_value`` (NaN when the within-cell
    residuals at ``effect`` are all zero).
    """
    site, treatment, mediators, outcome = _validate(site, treatment, mediators, outcome)
    effect = np.atleast_1d(np.asarray(effect, dtype=np.float64))
    if effect.shape != (mediators.shape[1],):
        raise EstimationError(f"effect must have {mediators.shape[1]} entries")
    K = int(site.max()) + 1 if n_sites is None else int(n_sites)
    A = int(treatment.max()) + 1 if n_arms is None else int(n_arms)
    if K * (A - 1) <= 0:
        raise EstimationError("treatment: the Anderson-Rubin test needs at least two arms")
    if len(outcome) <= K * A:
        raise EstimationError(f"the Anderson-Rubin test needs more persons ({len(outcome)}) than site-by-arm "
                              f"cells ({K * A})")
    count, mean, cross = moments_nb.cell_statistics(site, treatment, mediators, outcome, K, A)
    stat, df1, df2 = kclass_nb.anderson_rubin(count, mean, cross, effect)
    return {
        "statistic": float(stat),
        "df1": int(df1),
        "df2": int(df2),
        "p_value": float(special.fdtrc(df1, df2, stat)),
    }


def cell_statistics(site, treatment, mediators, outcome, n_sites=None, n_arms=None):
    """Validated wrapper of the kernel: (count (K, A), mean (K, A, Q), cross (K, A, Q, Q))."""
    site, treatment, mediators, outcome = _validate(site, treatment, mediators, outcome)
    K = int(site.max()) + 1 if n_sites is None else int(n_sites)
    A = int(treatment.max()) + 1 if n_arms is None else int(n_arms)
    return moments_nb.cell_statistics(site, treatment, mediators, outcome, K, A)
