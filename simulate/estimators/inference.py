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
  (overidentification, many-instrument, nonlinearity);
* :func:`ar_tests` and :func:`ar_sets`: weak-instrument-robust Anderson-Rubin tests (joint, any P) and
  confidence sets (P = 1; an interval, two rays, the whole line or empty), conventional and
  site-clustered, from the sufficient statistics of :mod:`simulate.kernels.ar_nb`;
* :func:`jackknife_ar_tests` and :func:`jackknife_ar_sets`: the jackknife AR of Mikusheva & Sun (2022)
  (many weak instruments) at any beta0 and its P = 1 set, from the numerator matrix and variance quartic
  that :func:`simulate.kernels.ar_nb.jackknife_ar_statistics` stores; :func:`jackknife_ar` is the same
  statistic from person-level data (analysis).
"""

from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np
from scipy import special

from ..kernels import codes_nb as codes
from .registry import PRIMARY_SE, REGISTRY, SE_TYPES, SPECS

__all__ = ["t_inference", "primary_standard_error", "direct_effect_inference_arrays", "diagnostic_columns",
           "nonlinearity_p", "DIAGNOSTIC_KEYS", "AR_SET_KINDS", "ar_matrices", "ar_tests", "ar_sets", "quadratic_set",
           "in_ar_set", "jackknife_ar", "jackknife_ar_set", "JAR_SET_KINDS", "jackknife_ar_forms",
           "jackknife_ar_tests", "jackknife_ar_sets"]

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
    n, K, A = d[:, codes.D_N], d[:, codes.D_SITES], d[:, codes.D_ARMS]
    sargan, sdf, cd = d[:, codes.D_SARGAN], d[:, codes.D_SARGAN_DF], d[:, codes.D_CRAGG_DONALD]
    with np.errstate(invalid="ignore", divide="ignore"):
        overid_p = np.where(sdf > 0, special.chdtrc(sdf, sargan), np.nan)
        q = special.ndtri(np.clip(special.chdtr(sdf, cd), 1e-300, 1 - 1e-16))
        p_many = np.where((sdf > 0) & np.isfinite(cd), 1.0 - special.ndtr(np.sqrt((n - K * A) / (n - K)) * q),
                          np.nan)
        nl_p = nonlinearity_p(d[:, codes.D_NONLINEAR], d[:, codes.D_NONLINEAR_DF], n_sites, n_mediators)
    return {
        "n": n,
        "n_sites": K,
        "n_arms": A,
        "liml_kappa": d[:, codes.D_LIML_KAPPA],
        "fuller_kappa": d[:, codes.D_FULLER_KAPPA],
        "sigma_min": d[:, codes.D_SIGMA_MIN],
        "sigma_ratio": d[:, codes.D_SIGMA_RATIO],
        "overid_stat": sargan,
        "overid_df": sdf,
        "overid_p": overid_p,
        "cragg_donald": cd,
        "overid_p_many_instrument": p_many,
        "nonlinearity_stat": d[:, codes.D_NONLINEAR],
        "nonlinearity_df": d[:, codes.D_NONLINEAR_DF],
        "nonlinearity_p": nl_p,
        "direct_effect": d[:, codes.D_DIRECT],
        "direct_effect_se_conventional": d[:, codes.D_DIRECT_SE_CONVENTIONAL],
        "direct_effect_se_hc0": d[:, codes.D_DIRECT_SE_HC0],
        "direct_effect_se_hc1": d[:, codes.D_DIRECT_SE_HC1],
    }


# ---------------------------------------------------------------------------------------------- Anderson-Rubin
AR_SET_KINDS: tuple[str, ...] = ("interval", "two_rays", "whole_line", "empty")
"""What an Anderson-Rubin confidence set (P = 1) can be.  ``interval``: ``[ar_low, ar_high]``, one end
possibly infinite (a ray); ``two_rays``: ``(-inf, ar_low] U [ar_high, inf)``; ``whole_line``: every value
(``ar_low = -inf``, ``ar_high = inf``); ``empty``: no value (both NaN).  NaN kind (None): not computed."""


def _upper(d: np.ndarray, first: int, Q: int) -> np.ndarray:
    """(R, Q, Q) symmetric matrices from their row-major upper triangles stored at ``d[:, first:]``."""
    R = d.shape[0]
    out = np.empty((R, Q, Q))
    k = first
    for i in range(Q):
        for j in range(i, Q):
            out[:, i, j] = out[:, j, i] = d[:, k]
            k += 1
    return out


def ar_matrices(diag: np.ndarray, n_mediators: int) -> dict[str, np.ndarray]:
    """The AR sufficient statistics of R datasets (:mod:`simulate.kernels.ar_nb`), unpacked.

    Parameters
    ----------
    diag : numpy.ndarray
        (R, N_DIAGNOSTICS).
    n_mediators : int
        P.

    Returns
    -------
    dict
        ``B``, ``Wc``, ``V`` (R, Q, Q) and ``g`` (R, Q); all NaN when Q = P + 1 exceeds
        ``AR_MAX_Q``; ``df1`` (K L), ``df2`` (n - K A) and ``K`` (R,).
    """
    d = np.asarray(diag, float)
    R, Q = d.shape[0], n_mediators + 1
    if Q > codes.AR_MAX_Q:
        nanm = np.full((R, Q, Q), np.nan)
        out = {"B": nanm, "Wc": nanm, "V": nanm, "g": np.full((R, Q), np.nan)}
    else:
        out = {"B": _upper(d, codes.D_AR_B, Q), "Wc": _upper(d, codes.D_AR_W, Q), "V": _upper(d, codes.D_AR_V, Q),
               "g": d[:, codes.D_AR_G:codes.D_AR_G + Q].copy()}
    out.update(df1=d[:, codes.D_FIRST_STAGE_DF1], df2=d[:, codes.D_FIRST_STAGE_DF2], K=d[:, codes.D_SITES])
    return out


def ar_tests(diag: np.ndarray, beta0, n_mediators: int) -> dict[str, np.ndarray]:
    """Joint Anderson-Rubin tests of H0: beta = beta0 (any P), conventional and site-clustered.

    Conventional: ``[a'B a / (K L)] / [a'Wc a / (n - K A)]``, ``a = (1, -beta0')``, against
    F(K L, n - K A).  Site-clustered (the pooled instrument, see :mod:`simulate.kernels.ar_nb`):
    ``(a'g)^2 / ((K / (K - 1)) a'V a)`` against F(1, K - 1).

    Parameters
    ----------
    diag : numpy.ndarray
        (R, N_DIAGNOSTICS).
    beta0 : array_like
        (P,) or (R, P): the hypothesised effects.
    n_mediators : int
        P.

    Returns
    -------
    dict
        ``ar_stat``, ``ar_p``, ``ar_cluster_stat``, ``ar_cluster_p``: (R,) float64 (NaN where not computed).
    """
    m = ar_matrices(diag, n_mediators)
    R = m["g"].shape[0]
    b0 = np.broadcast_to(np.asarray(beta0, float), (R, n_mediators))
    a = np.concatenate([np.ones((R, 1)), -b0], axis=1)
    quad = lambda S: np.einsum("ri,rij,rj->r", a, S, a)  # noqa: E731
    df1, df2, K = m["df1"], m["df2"], m["K"]
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = (quad(m["B"]) / df1) / (quad(m["Wc"]) / df2)
        stat = np.where((df1 > 0) & (df2 > 0), stat, np.nan)
        p = special.fdtrc(np.where(df1 > 0, df1, 1), np.where(df2 > 0, df2, 1), stat)
        ag = np.einsum("ri,ri->r", a, m["g"])
        cl = ag * ag / ((K / (K - 1)) * quad(m["V"]))
        cl = np.where(K > 1, cl, np.nan)
        p_cl = special.fdtrc(1.0, np.maximum(K - 1, 1), cl)
    return {"ar_stat": stat, "ar_p": np.where(np.isfinite(stat), p, np.nan),
            "ar_cluster_stat": cl, "ar_cluster_p": np.where(np.isfinite(cl), p_cl, np.nan)}


def quadratic_set(c0, c1, c2):
    """The set ``{b : c0 + c1 b + c2 b^2 <= 0}``, elementwise: (low, high, kind) as in :data:`AR_SET_KINDS`.

    Parameters
    ----------
    c0, c1, c2 : array_like
        The coefficients (broadcast together).

    Returns
    -------
    (low, high, kind) : tuple of numpy.ndarray
        Floats, and an object array of kind names (None where a coefficient is not finite).
    """
    c0, c1, c2 = np.broadcast_arrays(*(np.asarray(c, float) for c in (c0, c1, c2)))
    low, high = np.full(c0.shape, np.nan), np.full(c0.shape, np.nan)
    kind = np.full(c0.shape, None, dtype=object)
    fin = np.isfinite(c0) & np.isfinite(c1) & np.isfinite(c2)
    with np.errstate(invalid="ignore", divide="ignore"):
        disc = c1 * c1 - 4.0 * c2 * c0
        root = np.sqrt(np.maximum(disc, 0.0))
        # the numerically stable pair of roots
        qq = -0.5 * (c1 + np.where(c1 >= 0, root, -root))
        r1, r2 = qq / c2, c0 / qq
        lo_r, hi_r = np.minimum(r1, r2), np.maximum(r1, r2)
    quad_ = fin & (c2 != 0)
    up, down = quad_ & (c2 > 0), quad_ & (c2 < 0)
    real = disc >= 0
    kind[up & ~real] = "empty"
    kind[up & real] = "interval"
    kind[down & ~real] = "whole_line"
    kind[down & real] = "two_rays"
    sel = quad_ & real
    low[sel], high[sel] = lo_r[sel], hi_r[sel]
    low[down & ~real], high[down & ~real] = -np.inf, np.inf
    lin = fin & (c2 == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = -c0 / c1
    ray_up = lin & (c1 < 0)  # c0 + c1 b <= 0 for b >= r
    ray_down = lin & (c1 > 0)
    flat = lin & (c1 == 0)
    kind[ray_up | ray_down] = "interval"
    low[ray_up], high[ray_up] = r[ray_up], np.inf
    low[ray_down], high[ray_down] = -np.inf, r[ray_down]
    kind[flat & (c0 <= 0)] = "whole_line"
    kind[flat & (c0 > 0)] = "empty"
    low[flat & (c0 <= 0)], high[flat & (c0 <= 0)] = -np.inf, np.inf
    return low, high, kind


def ar_sets(diag: np.ndarray, level: float = 0.95) -> dict[str, np.ndarray]:
    """Anderson-Rubin confidence sets for P = 1 by inverting the tests of :func:`ar_tests`.

    The set is ``{b : a'M a <= 0}``, ``a = (1, -b)``, a quadratic inequality in b:
    ``M = B / (K L) - q Wc / (n - K A)`` with q the ``level`` quantile of F(K L, n - K A)
    (conventional), ``M = g g' - q (K / (K - 1)) V`` with q that of F(1, K - 1) (site-clustered).

    Parameters
    ----------
    diag : numpy.ndarray
        (R, N_DIAGNOSTICS) of datasets with one mediator.
    level : float
        Confidence level.

    Returns
    -------
    dict
        ``ar_low``, ``ar_high``, ``ar_set_kind``, ``ar_cluster_low``, ``ar_cluster_high``,
        ``ar_cluster_set_kind`` (R,): see :data:`AR_SET_KINDS`.
    """
    m = ar_matrices(diag, 1)
    df1, df2, K = m["df1"], m["df2"], m["K"]
    with np.errstate(invalid="ignore", divide="ignore"):
        q = special.fdtri(np.where(df1 > 0, df1, np.nan), np.where(df2 > 0, df2, np.nan), level)
        M = m["B"] / df1[:, None, None] - (q / df2)[:, None, None] * m["Wc"]
        q1 = special.fdtri(1.0, np.where(K > 1, K - 1, np.nan), level)
        Mc = np.einsum("ri,rj->rij", m["g"], m["g"]) - (q1 * K / (K - 1))[:, None, None] * m["V"]
    out = {}
    for prefix, S in (("ar", M), ("ar_cluster", Mc)):
        lo, hi, kind = quadratic_set(S[:, 0, 0], -2.0 * S[:, 0, 1], S[:, 1, 1])
        out[f"{prefix}_low"], out[f"{prefix}_high"], out[f"{prefix}_set_kind"] = lo, hi, kind
    return out


def in_ar_set(theta, low, high, kind) -> np.ndarray:
    """Whether ``theta`` lies in each AR set (:data:`AR_SET_KINDS`), elementwise; False where not computed.

    Parameters
    ----------
    theta, low, high : array_like
    kind : array_like of str or None

    Returns
    -------
    numpy.ndarray of bool
    """
    theta, low, high = (np.asarray(x, float) for x in (theta, low, high))
    kind = np.asarray(kind, dtype=object)
    inside = (low <= theta) & (theta <= high)
    return np.where(kind == "interval", inside,
                    np.where(kind == "two_rays", (theta <= low) | (theta >= high), kind == "whole_line"))


def jackknife_ar(site, arm, mediators, outcome, beta0, *, alpha: float = 0.05, _parts: bool = False) -> dict:
    """Jackknife Anderson-Rubin test of H0: beta = beta0, robust to many weak instruments (person level).

    Mikusheva & Sun (2022, Review of Economic Studies 89(5)) with the site fixed effects absorbed by the
    leave-one-out matrix of UJIVE (Kolesar 2013) in place of their projection P: with e = Y - M beta0,
    ``C = (I - D_ZW)^{-1}(P_ZW - D_ZW) - (I - D_W)^{-1}(P_W - D_W)`` (zero diagonal, C W = 0, symmetric
    here: for i != j in site s, ``C_ij = 1{same cell}/(n_c - 1) - 1/(n_s - 1)``),

    ``AR = sum_{i != j} C_ij e_i e_j / sqrt(Phi)``,
    ``Phi = 2 sum_{i != j} C_ij^2 / (M_ii M_jj + M_ij^2) [e~_i (M e)_i] [e~_j (M e)_j]``,

    M = I - P_ZW (residuals from the cell means), e~ = e less its site mean (so that the variance is
    free of the site effects); their cross-fit variance estimator.  Reject when AR > z_{1 - alpha}
    (one-sided, N(0, 1) under H0 as the number of instruments grows).  In cell sums:
    ``sum_{i != j} C_ij e_i e_j = sum_c (n_c ebar_c^2 - s_c^2) - sum_s (n_s ebar_s^2 - s_s^2)``.

    Parameters
    ----------
    site, arm : int arrays (n,)
        Codes 0..K-1 and 0..A-1; every cell needs two persons.
    mediators : float array (n, P) or (n,)
    outcome : float array (n,)
    beta0 : array_like (P,)
    alpha : float
        Level of the one-sided test.

    Returns
    -------
    dict
        ``stat``, ``p_value`` (1 - Phi(stat)), ``reject`` (bool); NaN and False where a cell has
        fewer than two persons or Phi is not positive.
    """
    site, arm = np.asarray(site, np.int64), np.asarray(arm, np.int64)
    Mx = np.asarray(mediators, float).reshape(len(site), -1)
    e = np.asarray(outcome, float) - Mx @ np.atleast_1d(np.asarray(beta0, float))
    K, A = int(site.max()) + 1, int(arm.max()) + 1
    cell = site * A + arm
    n_c = np.bincount(cell, minlength=K * A).astype(float)
    n_s = np.bincount(site, minlength=K).astype(float)
    nan = {"stat": np.nan, "p_value": np.nan, "reject": False, "_T": np.nan, "_phi": np.nan}
    if n_c.min() < 2:
        return nan
    sum_c, sum_s = np.bincount(cell, e, K * A), np.bincount(site, e, K)
    ebar_c, ebar_s = sum_c / n_c, sum_s / n_s
    q_c, q_s = np.bincount(cell, e * e, K * A), np.bincount(site, e * e, K)
    s2_c = (q_c - n_c * ebar_c ** 2) / (n_c - 1)
    s2_s = (q_s - n_s * ebar_s ** 2) / (n_s - 1)
    T = np.sum(n_c * ebar_c ** 2 - s2_c) - np.sum(n_s * ebar_s ** 2 - s2_s)
    w = (e - ebar_s[site]) * (e - ebar_c[cell])
    W_c, W2_c = np.bincount(cell, w, K * A), np.bincount(cell, w * w, K * A)
    m_c = 1.0 - 1.0 / n_c
    site_of_c = np.repeat(np.arange(K), A)
    c_cc = 1.0 / (n_c - 1) - 1.0 / (n_s[site_of_c] - 1)
    same = np.sum(c_cc ** 2 / (m_c ** 2 + 1.0 / n_c ** 2) * (W_c ** 2 - W2_c))
    u = (W_c / m_c).reshape(K, A)  # W_c / M_c per site and arm
    lam = 1.0 / (n_s - 1) ** 2
    other = np.sum(lam * (u.sum(1) ** 2 - (u ** 2).sum(1)))  # sum over ordered pairs of different cells
    phi = 2.0 * (same + other)
    if not phi > 0:
        return nan
    stat = T / np.sqrt(phi)
    p = float(special.ndtr(-stat))
    out = {"stat": float(stat), "p_value": p, "reject": bool(p < alpha)}
    if _parts:  # the numerator and variance, for jackknife_ar_set
        out.update(_T=float(T), _phi=float(phi))
    return out


def jackknife_ar_set(site, arm, mediators, outcome, *, level: float = 0.95) -> list[tuple[float, float]]:
    """The jackknife AR confidence set for P = 1: every b that :func:`jackknife_ar` does not reject.

    The statistic is T(b) / sqrt(Phi(b)) with T quadratic and Phi quartic in b, so the set
    {b : T(b) <= z sqrt(Phi(b))} has its ends among the real roots of T and of T^2 - z^2 Phi
    (z the ``level`` normal quantile); both polynomials are recovered exactly from the
    statistic's parts at 5 points, and each piece between consecutive ends is classified at its
    midpoint by the statistic itself.  The set can be an interval, a union of intervals, unbounded
    or empty.

    Parameters
    ----------
    site, arm : int arrays (n,)
    mediators : float array (n,) or (n, 1)
    outcome : float array (n,)
    level : float
        1 - the level of the one-sided test.

    Returns
    -------
    list of (float, float)
        Disjoint closed intervals in increasing order (ends may be -inf / inf); empty list: the empty
        set; NaN pair alone: not computed (a singleton cell).
    """
    x = np.asarray(mediators, float).reshape(-1)
    pts = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    parts = [jackknife_ar(site, arm, x, outcome, [b], _parts=True) for b in pts]
    if not np.all(np.isfinite([p["_T"] for p in parts])):
        return [(np.nan, np.nan)]
    T = np.polyfit(pts, [p["_T"] for p in parts], 2)
    Phi = np.polyfit(pts, [p["_phi"] for p in parts], 4)
    z = float(special.ndtri(level))
    cand = np.concatenate([np.roots(T), np.roots(np.polysub(np.polymul(T, T), z * z * Phi))])
    ends = np.unique(np.real(cand[np.abs(np.imag(cand)) <= 1e-9 * np.maximum(1.0, np.abs(cand))]))
    cuts = np.concatenate([[-np.inf], ends, [np.inf]])

    def accepts(b):
        return not jackknife_ar(site, arm, x, outcome, [b], alpha=1.0 - level)["reject"]

    out: list[tuple[float, float]] = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        mid = (lo + hi) / 2 if np.isfinite(lo) and np.isfinite(hi) else (
            hi - 1.0 - abs(hi) if np.isfinite(hi) else (lo + 1.0 + abs(lo) if np.isfinite(lo) else 0.0))
        if accepts(mid):
            if out and out[-1][1] == lo:
                out[-1] = (out[-1][0], float(hi))
            else:
                out.append((float(lo), float(hi)))
    return out


# ------------------------------------------------------------------------- jackknife AR from the kernels' forms
JAR_SET_KINDS: tuple[str, ...] = AR_SET_KINDS + ("several_pieces",)
"""What a jackknife AR set (P = 1) can be: the kinds of :data:`AR_SET_KINDS`, or ``several_pieces`` (a union
of intervals that is none of those; ``jar_low`` / ``jar_high`` are then its hull's ends)."""


def jackknife_ar_forms(diag: np.ndarray, n_mediators: int) -> dict[str, np.ndarray]:
    """The jackknife AR's numerator matrix and variance quartic of R datasets, unpacked.

    Parameters
    ----------
    diag : numpy.ndarray
        (R, N_DIAGNOSTICS).
    n_mediators : int
        P.

    Returns
    -------
    dict
        ``N`` (R, Q, Q): ``T(a) = a'N a``; ``phi`` (R, C(Q + 3, 4)): the coefficients of Phi(a) on the
        monomials ``a_i a_j a_k a_l`` in the order of ``itertools.combinations_with_replacement(range(Q), 4)``;
        ``monomials`` (C(Q + 3, 4), 4) their indices.  All NaN when Q exceeds ``AR_MAX_Q``.
    """
    d = np.asarray(diag, float)
    R, Q = d.shape[0], n_mediators + 1
    mono = np.array(list(combinations_with_replacement(range(Q), 4)), dtype=np.int64)
    if Q > codes.AR_MAX_Q:
        return {"N": np.full((R, Q, Q), np.nan), "phi": np.full((R, len(mono)), np.nan), "monomials": mono}
    return {"N": _upper(d, codes.D_JAR_N, Q), "phi": d[:, codes.D_JAR_PHI:codes.D_JAR_PHI + len(mono)].copy(),
            "monomials": mono}


def jackknife_ar_tests(diag: np.ndarray, beta0, n_mediators: int) -> dict[str, np.ndarray]:
    """The jackknife AR test of H0: beta = beta0 (any P) from the kernels' forms (see :func:`jackknife_ar`).

    ``stat = a'N a / sqrt(Phi(a))``, ``a = (1, -beta0')``, one-sided: ``p = 1 - Phi_N(stat)``.

    Parameters
    ----------
    diag : numpy.ndarray
        (R, N_DIAGNOSTICS).
    beta0 : array_like
        (P,) or (R, P).
    n_mediators : int
        P.

    Returns
    -------
    dict
        ``jar_stat``, ``jar_p`` (R,): NaN where not computed (a cell with fewer than two persons, P > 3)
        or where Phi(a) is not positive.
    """
    f = jackknife_ar_forms(diag, n_mediators)
    R = f["N"].shape[0]
    b0 = np.broadcast_to(np.asarray(beta0, float), (R, n_mediators))
    a = np.concatenate([np.ones((R, 1)), -b0], axis=1)
    # sums in a fixed order, elementwise over rows (einsum's SIMD paths may depend on the batch's memory layout)
    Q = n_mediators + 1
    T = np.zeros(R)
    for i in range(Q):
        for j in range(Q):
            T = T + a[:, i] * f["N"][:, i, j] * a[:, j]
    phi = np.zeros(R)
    for m, (i, j, k, l) in enumerate(f["monomials"]):
        phi = phi + f["phi"][:, m] * (((a[:, i] * a[:, j]) * a[:, k]) * a[:, l])
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.where(phi > 0, T / np.sqrt(np.where(phi > 0, phi, 1.0)), np.nan)
    return {"jar_stat": stat, "jar_p": np.where(np.isfinite(stat), special.ndtr(-stat), np.nan)}


def _jar_pieces(t: np.ndarray, ph: np.ndarray, z: float) -> list[tuple[float, float]]:
    """{b : T(b) <= z sqrt(Phi(b))} for polynomial coefficients t (degree 2) and ph (degree 4), highest first."""
    def accepts(b):
        phi = np.polyval(ph, b)
        return not (phi > 0 and np.polyval(t, b) / np.sqrt(phi) > z)

    cand = np.concatenate([np.roots(t), np.roots(np.polysub(np.polymul(t, t), z * z * ph))])
    ends = np.unique(np.real(cand[np.abs(np.imag(cand)) <= 1e-9 * np.maximum(1.0, np.abs(cand))]))
    cuts = np.concatenate([[-np.inf], ends, [np.inf]])
    out: list[tuple[float, float]] = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        mid = (lo + hi) / 2 if np.isfinite(lo) and np.isfinite(hi) else (
            hi - 1.0 - abs(hi) if np.isfinite(hi) else (lo + 1.0 + abs(lo) if np.isfinite(lo) else 0.0))
        if accepts(mid):
            if out and out[-1][1] == lo:
                out[-1] = (out[-1][0], float(hi))
            else:
                out.append((float(lo), float(hi)))
    return out


def jackknife_ar_sets(diag: np.ndarray, level: float = 0.95) -> dict[str, np.ndarray]:
    """Jackknife AR confidence sets for P = 1 from the kernels' forms: every b the test does not reject.

    T(b) is quadratic and Phi(b) quartic in b (``a = (1, -b)``), so the set's ends are among the real
    roots of T and of ``T^2 - z^2 Phi`` (z the ``level`` normal quantile); each piece between two
    consecutive ends is classified by the statistic at its midpoint (as :func:`jackknife_ar_set`).

    Parameters
    ----------
    diag : numpy.ndarray
        (R, N_DIAGNOSTICS) of datasets with one mediator.
    level : float
        1 - the level of the one-sided test.

    Returns
    -------
    dict
        ``jar_low``, ``jar_high``, ``jar_set_kind`` (R,): see :data:`JAR_SET_KINDS`; kind None where not
        computed.
    """
    f = jackknife_ar_forms(diag, 1)
    R = f["N"].shape[0]
    z = float(special.ndtri(level))
    low, high = np.full(R, np.nan), np.full(R, np.nan)
    kind = np.full(R, None, dtype=object)
    sign = np.array([1.0, -1.0, 1.0, -1.0, 1.0])  # a = (1, -b): the monomial with r ones carries (-b)^r
    for r in range(R):
        N, ph = f["N"][r], f["phi"][r]
        if not (np.all(np.isfinite(N)) and np.all(np.isfinite(ph))):
            continue
        pieces = _jar_pieces(np.array([N[1, 1], -2.0 * N[0, 1], N[0, 0]]), (ph * sign)[::-1], z)
        if not pieces:
            kind[r] = "empty"
            continue
        low[r], high[r] = pieces[0][0], pieces[-1][1]
        if len(pieces) == 1:
            kind[r] = "whole_line" if low[r] == -np.inf and high[r] == np.inf else "interval"
        elif len(pieces) == 2 and low[r] == -np.inf and high[r] == np.inf:
            kind[r], low[r], high[r] = "two_rays", pieces[0][1], pieces[1][0]
        else:
            kind[r] = "several_pieces"
    return {"jar_low": low, "jar_high": high, "jar_set_kind": kind}
