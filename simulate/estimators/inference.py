"""Confidence intervals and p-values from estimates and standard errors: the one vectorised implementation.

Every interval and p-value of the project comes from here, for the analysis tables
(:func:`simulate.estimators.tidy`) and the simulation rows
(:func:`simulate.replicate.run_replications`) alike, through
:func:`simulate.estimators.rows.estimate_columns`.  The functions work elementwise on
arrays of any shape (numpy broadcasting), so one replication and a batch of thousands
take the same floating-point operations and give the same bits.

* :func:`t_inference`: ``estimate -+ q se`` with ``q`` the t quantile, and the two-sided
  p-value of H0: 0, for the degrees of freedom of :func:`simulate.estimators.primary_df`
  (an infinite value is the normal reference, NaN gives NaN);
* :func:`primary_standard_error` picks the standard error of
  :data:`simulate.estimators.PRIMARY_SE` from the kernels' (..., E, SE kinds, P) array;
* :func:`direct_effect_inference_arrays`: the between-site intercept (mean direct effect);
* :func:`diagnostic_columns`: the dataset-level diagnostics with their p-values
  (overidentification, many-instrument, nonlinearity).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ..kernels import estimators_nb as nb
from .registry import PRIMARY_SE, REGISTRY, SE_TYPES, SPECS

__all__ = ["t_inference", "primary_standard_error", "direct_effect_inference_arrays", "diagnostic_columns",
           "nonlinearity_p", "DIAGNOSTIC_KEYS"]

_ROWS = np.arange(len(REGISTRY))
_PRIMARY_INDEX = np.array([SE_TYPES.index(PRIMARY_SE[s.name]) for s in REGISTRY])

DIAGNOSTIC_KEYS: tuple[str, ...] = (
    "n", "n_sites", "n_arms", "liml_kappa", "fuller_kappa", "sigma_min", "sigma_ratio", "overid_stat", "overid_df",
    "overid_p", "cragg_donald", "overid_p_many_instrument", "nonlinearity_stat", "nonlinearity_df",
    "nonlinearity_p", "direct_effect", "direct_effect_se_conventional", "direct_effect_se_hc0",
    "direct_effect_se_hc1",
)
"""Keys of :func:`diagnostic_columns`, in order."""


def t_inference(estimate, se, df, level: float = 0.95):
    """Confidence interval and two-sided p-value (H0: 0) with a Student t reference, elementwise.

    Parameters
    ----------
    estimate, se : array_like
        Estimates and their standard errors (broadcast together with ``df``).
    df : array_like
        Degrees of freedom (``inf``: normal reference; NaN gives NaN).
    level : float
        Confidence level.

    Returns
    -------
    (conf_low, conf_high, p_value) : tuple of numpy.ndarray
        ``estimate -+ q se`` with ``q = F_t^{-1}(1/2 + level/2; df)`` and
        ``2 F_t(-|estimate / se|; df)``.
    """
    q = special.stdtrit(df, 0.5 + level / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2.0 * special.stdtr(df, -np.abs(estimate / se))
    return estimate - q * se, estimate + q * se, p


def primary_standard_error(se: np.ndarray) -> np.ndarray:
    """The standard error of :data:`~simulate.estimators.PRIMARY_SE` of every estimator.

    Parameters
    ----------
    se : numpy.ndarray
        (..., E, len(SE_TYPES), P), the kernels' standard errors.

    Returns
    -------
    numpy.ndarray
        (..., E, P).
    """
    return se[..., _ROWS, _PRIMARY_INDEX, :]


def direct_effect_inference_arrays(estimate, se, n_sites: int, n_mediators: int, level: float = 0.95):
    """Interval and p-value of the between-site intercept (the mean direct effect), elementwise.

    Site-level sandwich standard error, t reference with the degrees of freedom of
    ``between_intercept`` (K - P - 1); NaN where the standard error is not positive and
    finite or the degrees of freedom are not positive.

    Parameters
    ----------
    estimate, se : array_like
        The intercepts and their HC0 (site sandwich) standard errors.
    n_sites, n_mediators : int
        K and P.
    level : float
        Confidence level.

    Returns
    -------
    (conf_low, conf_high, p_value) : tuple of numpy.ndarray
    """
    b, s = np.asarray(estimate, float), np.asarray(se, float)
    df = SPECS["between_intercept"].df(n_sites, n_mediators)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (s > 0) & np.isfinite(s)
        lo, hi, p = t_inference(b, s, df, level)
        return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), np.where(ok, p, np.nan)


def nonlinearity_p(stat, df, n_sites, n_mediators):
    """p-value of the between-site nonlinearity test: stat / df against F(df, K - 1 - 2P).

    The statistic is a Wald statistic of the P squared compliances added to the between-site
    regression with an intercept (1 + 2P coefficients), with the jackknife (CR3) site-clustered
    covariance: the squared compliances have high leverage, and the HC1 sandwich with a
    chi-square reference rejected 17% (20 sites) and 10% (50 sites) of the time at 5%.  The
    p-value uses an F reference with the sites left after the coefficients as denominator
    degrees of freedom.  Works elementwise on arrays.

    Parameters
    ----------
    stat, df : array_like
        The Wald statistics and their degrees of freedom (the number of squared terms).
    n_sites, n_mediators : int
        K and P.

    Returns
    -------
    numpy.ndarray
        NaN where ``df`` is not positive or K - 1 - 2P < 1.
    """
    stat, df = np.asarray(stat, float), np.asarray(df, float)
    df2 = float(n_sites - 1 - 2 * n_mediators)
    with np.errstate(invalid="ignore", divide="ignore"):
        if df2 <= 0:
            return np.full(np.shape(stat), np.nan)
        return np.where(df > 0, special.fdtrc(np.maximum(df, 1), df2, stat / np.maximum(df, 1)), np.nan)


def diagnostic_columns(diag: np.ndarray, n_sites: int, n_mediators: int) -> dict[str, np.ndarray]:
    """The dataset-level diagnostics of each replication, with their p-values.

    * ``overid_stat`` / ``overid_p``: Sargan n u'P_{Z~}u / u'M_W u with 2SLS residuals,
      chi-square with K L - P degrees of freedom (linearmodels ``sargan``);
    * ``overid_p_many_instrument``: the Cragg-Donald statistic (n - K A)(kappa_LIML - 1)
      with the many-instrument critical value of Kolesar (2018) / Anatolyev &
      Gospodinov (2011) under normal errors,
      ``1 - Phi(sqrt((n - K A)/(n - K)) Phi^{-1}(F_{chi2, K L - P}(CD)))``;
    * ``nonlinearity_stat`` / ``nonlinearity_p``: Wald test that the coefficients of
      the squared site compliances are zero when added to ``between_intercept``
      (see :func:`nonlinearity_p`);
    * ``sigma_min`` / ``sigma_ratio``: smallest singular value of the (K L) x P
      compliance matrix, and its ratio to the largest;
    * ``liml_kappa``, ``fuller_kappa``, ``direct_effect`` (and its SEs), ``n``,
      ``n_sites``, ``n_arms``.

    Parameters
    ----------
    diag : numpy.ndarray
        (R, N_DIAGNOSTICS), the kernels' diagnostics of R datasets (indexed by ``D_*``).
    n_sites, n_mediators : int
        K and P (the reference distributions' degrees of freedom).

    Returns
    -------
    dict
        :data:`DIAGNOSTIC_KEYS` -> (R,) float64.
    """
    d = np.asarray(diag, float)
    n, K, A = d[:, nb.D_N], d[:, nb.D_SITES], d[:, nb.D_ARMS]
    sargan, sdf, cd = d[:, nb.D_SARGAN], d[:, nb.D_SARGAN_DF], d[:, nb.D_CRAGG_DONALD]
    with np.errstate(invalid="ignore", divide="ignore"):
        overid_p = np.where(sdf > 0, special.chdtrc(sdf, sargan), np.nan)
        q = special.ndtri(np.clip(special.chdtr(sdf, cd), 1e-300, 1 - 1e-16))
        p_many = np.where((sdf > 0) & np.isfinite(cd), 1.0 - special.ndtr(np.sqrt((n - K * A) / (n - K)) * q),
                          np.nan)
        nl_p = nonlinearity_p(d[:, nb.D_NONLINEAR], d[:, nb.D_NONLINEAR_DF], n_sites, n_mediators)
    return {
        "n": n,
        "n_sites": K,
        "n_arms": A,
        "liml_kappa": d[:, nb.D_LIML_KAPPA],
        "fuller_kappa": d[:, nb.D_FULLER_KAPPA],
        "sigma_min": d[:, nb.D_SIGMA_MIN],
        "sigma_ratio": d[:, nb.D_SIGMA_RATIO],
        "overid_stat": sargan,
        "overid_df": sdf,
        "overid_p": overid_p,
        "cragg_donald": cd,
        "overid_p_many_instrument": p_many,
        "nonlinearity_stat": d[:, nb.D_NONLINEAR],
        "nonlinearity_df": d[:, nb.D_NONLINEAR_DF],
        "nonlinearity_p": nl_p,
        "direct_effect": d[:, nb.D_DIRECT],
        "direct_effect_se_conventional": d[:, nb.D_DIRECT_SE_CONVENTIONAL],
        "direct_effect_se_hc0": d[:, nb.D_DIRECT_SE_HC0],
        "direct_effect_se_hc1": d[:, nb.D_DIRECT_SE_HC1],
    }
