r"""Estimators, inference and diagnostics for MSMM-IV: the validated Python API.

The algebra lives in :mod:`simulate.kernels.estimators_nb` (Numba, cell-level
sufficient statistics). This module checks inputs, names things, turns standard
errors into confidence intervals and p-values, and returns tidy rows.

Two entry points:

* :func:`estimate_arrays` -- no validation, plain numpy arrays, small Python
  overhead; for the runner that calls it thousands of times;
* :func:`estimate` -- validated, returns a tidy :class:`pandas.DataFrame`, one row
  per estimator x mediator.

Estimators (:data:`ESTIMATORS`), all with site fixed effects and site-by-arm
instruments where instruments are used:

``ols``
    OLS of Y on the mediators with site fixed effects (confounded baseline).
``2sls``
    Two-stage least squares, instruments 1{site = s} 1{T = t}, t = 1..L.
``liml``, ``fuller``
    LIML and Fuller (alpha = 1 by default; kappa_LIML - alpha / (n - K A)).
``ujive``
    Kolesar (2013) unbiased jackknife IV.
``bias_corrected_2sls``
    Kolesar, Chetty, Friedman, Glaeser & Imbens (2015) modified bias-corrected
    2SLS, k-class with kappa = 1 + K L / (n - K A).
``between_ols``, ``between_precision``, ``between_intercept``
    Regression of the site ITT contrasts on Y (ybar_st - ybar_s0) on the site
    compliance contrasts (xbar_st - xbar_s0): through the origin unweighted;
    through the origin weighted by the inverse of the estimated sampling covariance
    of each site's ITT contrasts on Y (cell variances); unweighted with the arm value
    t as an extra regressor, whose coefficient estimates the mean direct effect.
``wald``
    Pooled Wald (P = 1 only): T's value as the single instrument, site effects.

The confidence interval and p-value of each row use the standard error named in
:data:`PRIMARY_SE` (Student's t with :func:`primary_df` degrees of freedom).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import special

from .errors import SimulateError
from .kernels import estimators_nb as nb

ESTIMATORS: tuple[str, ...] = (
    "ols",
    "2sls",
    "liml",
    "fuller",
    "ujive",
    "bias_corrected_2sls",
    "between_ols",
    "between_precision",
    "between_intercept",
    "wald",
)
"""Estimator names, in the row order of the kernel outputs."""

SE_TYPES: tuple[str, ...] = (
    "conventional",
    "hc0",
    "hc1",
    "cluster",
    "many_instrument",
    "heterogeneity",
)
"""Standard-error kinds, in the column order of ``EstimateArrays.se``."""

PRIMARY_SE: dict[str, str] = {
    "ols": "cluster",
    "2sls": "cluster",
    "liml": "cluster",
    "fuller": "cluster",
    "ujive": "cluster",
    "bias_corrected_2sls": "cluster",
    "between_ols": "hc0",
    "between_precision": "hc0",
    "between_intercept": "hc0",
    "wald": "cluster",
}
"""The standard error behind each estimator's confidence interval and p-value.

Site-clustered for the person-level estimators, the site-level sandwich (HC0 over
sites) for the between-site regressions: in a multisite trial the effects vary
between sites (delta_s, kappa_s), which makes the errors of persons in a site
dependent; person-level HC0, Bekker or KCFGI standard errors then understate the
sampling variance (they are still reported as columns).  Critical values and
p-values use Student's t with K - 1 degrees of freedom (clustered) or K - p (between
sites, p coefficients), which keeps the intervals honest with few sites."""


def primary_df(n_sites: int, n_mediators: int) -> np.ndarray:
    """Degrees of freedom of each estimator's t reference (:data:`ESTIMATORS` order)."""
    K, P = n_sites, n_mediators
    out = np.empty(len(ESTIMATORS))
    for e, name in enumerate(ESTIMATORS):
        if PRIMARY_SE[name] == "cluster":
            out[e] = K - 1
        elif name == "between_intercept":
            out[e] = K - P - 1
        elif name.startswith("between"):
            out[e] = K - P
        else:
            out[e] = np.inf
    return np.where(out > 0, out, np.nan)


STATUS_NAMES: dict[int, str] = {
    nb.STATUS_OK: "ok",
    nb.STATUS_SINGULAR: "singular",
    nb.STATUS_EMPTY_CELL: "empty_cell",
    nb.STATUS_TOO_FEW_SITES: "too_few_sites",
    nb.STATUS_NOT_APPLICABLE: "not_applicable",
    nb.STATUS_SINGLETON_CELL: "singleton_cell",
    nb.STATUS_NUMERICAL: "numerical",
}
"""Status code -> name. Any status other than ``ok`` comes with NaN estimates."""

_PRIMARY_INDEX = np.array([SE_TYPES.index(PRIMARY_SE[e]) for e in ESTIMATORS])
_ROWS = np.arange(len(ESTIMATORS))


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
    out = nb.fit_persons(
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
    return EstimateArrays(*nb.fit_from_statistics(count, mean, cross, float(fuller_alpha)))


def primary_inference(arrays: EstimateArrays, level: float = 0.95):
    """Standard error of :data:`PRIMARY_SE`, t-based CI and two-sided p-value (H0: 0).

    Returns (std_error, conf_low, conf_high, p_value), each (E, P).  The t reference
    has :func:`primary_df` degrees of freedom (K - 1 for site-clustered SEs).
    """
    se = arrays.se[_ROWS, _PRIMARY_INDEX]
    K = int(arrays.diagnostics[nb.D_SITES])
    df = primary_df(K, arrays.estimate.shape[1])[:, None]
    q = special.stdtrit(df, 0.5 + level / 2.0)
    est = arrays.estimate
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2.0 * special.stdtr(df, -np.abs(est / se))
    return se, est - q * se, est + q * se, p


def direct_effect_inference(diag: dict, n_mediators: int, level: float = 0.95):
    """(estimate, SE, conf_low, conf_high, p_value) of the between-site intercept (mean direct effect).

    Site-level sandwich SE with a t reference of K - P - 1 degrees of freedom.
    """
    b, s = diag["direct_effect"], diag["direct_effect_se_hc0"]
    df = diag["n_sites"] - n_mediators - 1
    if not (df > 0 and s > 0 and np.isfinite(s)):
        return b, s, np.nan, np.nan, np.nan
    q = special.stdtrit(df, 0.5 + level / 2.0)
    return b, s, b - q * s, b + q * s, 2.0 * special.stdtr(df, -abs(b / s))


def nonlinearity_p(stat, df, n_sites, n_mediators):
    """p-value of the between-site nonlinearity test: stat / df against F(df, K - 1 - 2P).

    The statistic is a Wald statistic of the P squared compliances added to the between-site
    regression with an intercept (1 + 2P coefficients), with the jackknife (CR3) site-clustered
    covariance: the squared compliances have high leverage, and the HC1 sandwich with a
    chi-square reference rejected 17% (20 sites) and 10% (50 sites) of the time at 5%.  The
    p-value uses an F reference with the sites left after the coefficients as denominator
    degrees of freedom.  Works elementwise on arrays.
    """
    stat, df = np.asarray(stat, float), np.asarray(df, float)
    df2 = float(n_sites - 1 - 2 * n_mediators)
    with np.errstate(invalid="ignore", divide="ignore"):
        if df2 <= 0:
            return np.full(np.shape(stat), np.nan)
        return np.where(df > 0, special.fdtrc(np.maximum(df, 1), df2, stat / np.maximum(df, 1)), np.nan)


def diagnostic_values(arrays: EstimateArrays) -> dict[str, float]:
    """Scalar diagnostics with their p-values.

    * ``overid_stat`` / ``overid_p``: Sargan n u'P_{Z~}u / u'M_W u with 2SLS residuals,
      chi-square with K L - P degrees of freedom (linearmodels ``sargan``);
    * ``overid_p_many_instrument``: the Cragg-Donald statistic (n - K A)(kappa_LIML - 1)
      with the many-instrument critical value of Kolesar (2018) / Anatolyev &
      Gospodinov (2011) under normal errors,
      ``1 - Phi(sqrt((n - K A)/(n - K)) Phi^{-1}(F_{chi2, K L - P}(CD)))``;
    * ``nonlinearity_stat`` / ``nonlinearity_p``: Wald test that the coefficients of
      the squared site compliances are zero when added to ``between_intercept``,
      jackknife (CR3) site-clustered covariance; p-value from stat / P against
      F(P, K - 1 - 2P) (see :func:`nonlinearity_p`);
    * ``sigma_min`` / ``sigma_ratio``: smallest singular value of the (K L) x P
      compliance matrix, and its ratio to the largest;
    * ``liml_kappa``, ``fuller_kappa``, ``direct_effect`` (and its SEs), ``n``,
      ``n_sites``, ``n_arms``.
    """
    d = arrays.diagnostics
    n, K, A = d[nb.D_N], d[nb.D_SITES], d[nb.D_ARMS]
    sargan, sdf = d[nb.D_SARGAN], d[nb.D_SARGAN_DF]
    cd = d[nb.D_CRAGG_DONALD]
    with np.errstate(invalid="ignore", divide="ignore"):
        overid_p = special.chdtrc(sdf, sargan) if sdf > 0 else np.nan
        if sdf > 0 and np.isfinite(cd):
            q = special.ndtri(np.clip(special.chdtr(sdf, cd), 1e-300, 1 - 1e-16))
            p_many = 1.0 - special.ndtr(np.sqrt((n - K * A) / (n - K)) * q)
        else:
            p_many = np.nan
        nl, nldf = d[nb.D_NONLINEAR], d[nb.D_NONLINEAR_DF]
        nl_p = float(nonlinearity_p(nl, nldf, K, arrays.estimate.shape[1]))
    return {
        "n": n,
        "n_sites": K,
        "n_arms": A,
        "liml_kappa": d[nb.D_LIML_KAPPA],
        "fuller_kappa": d[nb.D_FULLER_KAPPA],
        "sigma_min": d[nb.D_SIGMA_MIN],
        "sigma_ratio": d[nb.D_SIGMA_RATIO],
        "overid_stat": sargan,
        "overid_df": sdf,
        "overid_p": float(overid_p),
        "cragg_donald": cd,
        "overid_p_many_instrument": float(p_many),
        "nonlinearity_stat": nl,
        "nonlinearity_df": d[nb.D_NONLINEAR_DF],
        "nonlinearity_p": float(nl_p),
        "direct_effect": d[nb.D_DIRECT],
        "direct_effect_se_conventional": d[nb.D_DIRECT_SE_CONVENTIONAL],
        "direct_effect_se_hc0": d[nb.D_DIRECT_SE_HC0],
        "direct_effect_se_hc1": d[nb.D_DIRECT_SE_HC1],
    }


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
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise EstimationError(f"unknown estimator(s) {unknown}; choose from {list(ESTIMATORS)}")
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
    """Turn :class:`EstimateArrays` into the tidy frame of :func:`estimate`."""
    P = len(mediator_names)
    se_p, lo, hi, pv = primary_inference(arrays, level)
    diag = diagnostic_values(arrays)
    records = []
    for name in estimators:
        e = ESTIMATORS.index(name)
        code = int(arrays.status[e])
        for p in range(P):
            records.append(
                {
                    "estimator": name,
                    "mediator": mediator_names[p],
                    "estimate": arrays.estimate[e, p],
                    "std_error": se_p[e, p],
                    "se_type": PRIMARY_SE[name],
                    "se_conventional": arrays.se[e, nb.SE_CONVENTIONAL, p],
                    "se_robust": arrays.se[e, nb.SE_HC0, p],
                    "se_hc1": arrays.se[e, nb.SE_HC1, p],
                    "se_cluster": arrays.se[e, nb.SE_CLUSTER, p],
                    "se_many_instrument": arrays.se[e, nb.SE_MANY_INSTRUMENT, p],
                    "se_heterogeneity": arrays.se[e, nb.SE_HETEROGENEITY, p],
                    "conf_low": lo[e, p],
                    "conf_high": hi[e, p],
                    "p_value": pv[e, p],
                    "status": STATUS_NAMES[code],
                    "status_code": code,
                    "first_stage_f": arrays.first_stage_f[p],
                    "conditional_f": arrays.conditional_f[p],
                }
            )
        if name == "between_intercept" and include_direct_effect:
            b, s, d_lo, d_hi, d_p = direct_effect_inference(diag, P, level)
            records.append(
                {
                    "estimator": name,
                    "mediator": "direct_effect",
                    "estimate": b,
                    "std_error": s,
                    "se_type": "hc0",
                    "se_conventional": diag["direct_effect_se_conventional"],
                    "se_robust": s,
                    "se_hc1": diag["direct_effect_se_hc1"],
                    "se_cluster": np.nan,
                    "se_many_instrument": np.nan,
                    "se_heterogeneity": np.nan,
                    "conf_low": d_lo,
                    "conf_high": d_hi,
                    "p_value": d_p,
                    "status": STATUS_NAMES[code],
                    "status_code": code,
                    "first_stage_f": np.nan,
                    "conditional_f": np.nan,
                }
            )
    frame = pd.DataFrame.from_records(records)
    for key, value in diag.items():
        frame[key] = value
    return frame


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
    count, mean, cross = nb.cell_statistics(site, treatment, mediators, outcome, K, A)
    stat, df1, df2 = nb.anderson_rubin(count, mean, cross, effect)
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
    return nb.cell_statistics(site, treatment, mediators, outcome, K, A)
