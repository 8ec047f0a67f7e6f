r"""Numba kernels: random-coefficient IV of Raudenbush, Reardon & Nomi (2012), from cell statistics.

Two estimators of the cross-site mean of the mediator effect and of its cross-site
variance, whose identifying assumption is that a site's average compliance is independent
of its average effect (the project's dial ix):

* :func:`rciv_meta_fit` (row ``E_RCIV_META``): each site's own IV estimate with its
  sampling variance, pooled by the DerSimonian & Laird (1986) method of moments, one
  mediator at a time;
* :func:`rciv_bivariate_fit` (row ``E_RCIV_BIVARIATE``, P = 1): the cross-site mean and
  covariance of the site ITT effects on Y and on M (a bivariate random-effects model fitted
  by moments), combined into the ratio of the means and, under the independence
  assumption, the variance of the site effects.

Site s's own IV (any P, needs L >= P): with the site's between-cell matrix
``B_s = sum_t n_c (vbar_c - vbar_s)(vbar_c - vbar_s)'`` (the site's block of B),
``beta_s = B_s,XX^{-1} B_s,XY`` (2SLS within the site, the arm dummies its instruments;
the Wald ratio (ybar_s1 - ybar_s0) / (xbar_s1 - xbar_s0) for a binary treatment), and
``V_s = B_s,XX^{-1} [sum_t n_c d_c d_c' b_s'W_c b_s / (n_c - 1)] B_s,XX^{-1}`` with
``d_c = xbar_c - xbar_s`` and ``b_s = (1, -beta_s')`` (the delta method; for a binary
treatment ``(s2_u1 / n_1 + s2_u0 / n_0) / (xbar_s1 - xbar_s0)^2``).

A site is too weak for its own ratio when its first-stage statistic (P = 1: its F,
``(B_s,XX / L) / (W_s,XX / (n_s - A))``; P > 1: the smallest eigenvalue of the same
matrix ratio, the site's Cragg-Donald statistic) is below :data:`RCIV_MIN_SITE_F`, the
chi-square(1) 95% point: below it the site's own 95% Fieller interval is unbounded, and
its delta-method variance means nothing.  The estimator then fails as a whole (status
``weak_site_compliance``) rather than dropping the site, since dropping sites on their
estimated compliance selects on the sampling error of the ratio's denominator.
"""

import numpy as np
from numba import njit

from .codes_nb import (
    N_SE,
    RCIV_MIN_SITE_F,
    SE_CLUSTER,
    SE_CONVENTIONAL,
    SE_EFFECT_SD,
    STATUS_NOT_APPLICABLE,
    STATUS_NUMERICAL,
    STATUS_OK,
    STATUS_SINGLETON_CELL,
    STATUS_SINGULAR,
    STATUS_SITE_UNDERIDENTIFIED,
    STATUS_TOO_FEW_SITES,
    STATUS_WEAK_SITE_COMPLIANCE,
)
from .linalg_nb import sym_inverse


@njit(inline="always")
def _site_blocks(count, mean, cross, s, dev):
    """Site s's between-cell and within-cell matrices ``(B_s, W_s, n_s)``; ``dev`` (A, Q) gets its cell deviations."""
    A, Q = dev.shape
    ns = 0
    sm = np.zeros(Q)
    for t in range(A):
        ns += count[s, t]
        for q in range(Q):
            sm[q] += count[s, t] * mean[s, t, q]
    for q in range(Q):
        sm[q] /= ns
    Bs = np.zeros((Q, Q))
    Ws = np.zeros((Q, Q))
    for t in range(A):
        for q in range(Q):
            dev[t, q] = mean[s, t, q] - sm[q]
        for a in range(Q):
            for c in range(Q):
                Bs[a, c] += count[s, t] * dev[t, a] * dev[t, c]
                Ws[a, c] += cross[s, t, a, c]
    return Bs, Ws, ns


@njit(inline="always")
def _site_first_stage(Bxx, Wxx, L):
    """The smallest eigenvalue of ``Wxx^{-1/2} (Bxx / L) Wxx^{-1/2}`` (the F when P = 1); 0 when Wxx is not PD."""
    P = Bxx.shape[0]
    if P == 1:
        return (Bxx[0, 0] / L) / Wxx[0, 0] if Wxx[0, 0] > 0 else 0.0
    ev = np.linalg.eigvalsh(Wxx)
    if not ev[0] > 0:
        return 0.0
    Li = np.linalg.inv(np.linalg.cholesky(Wxx))
    C = Li @ (Bxx / L) @ Li.T
    return np.linalg.eigvalsh(0.5 * (C + C.T))[0]


@njit(inline="always")
def _site_fit(count, cross, s, dev, Bs, Bi, beta_s):
    """Site s's own IV estimate into ``beta_s`` and its delta-method covariance (returned)."""
    A, Q = dev.shape
    P = Q - 1
    b = np.empty(Q)
    b[0] = 1.0
    for p in range(P):
        acc = 0.0
        for r in range(P):
            acc += Bi[p, r] * Bs[r + 1, 0]
        beta_s[p] = acc
        b[p + 1] = -acc
    meat = np.zeros((P, P))
    for t in range(A):
        nc = count[s, t]
        bWb = 0.0
        for a in range(Q):
            for c in range(Q):
                bWb += b[a] * cross[s, t, a, c] * b[c]
        f = nc * bWb / (nc - 1.0)
        for p in range(P):
            for r in range(P):
                meat[p, r] += f * dev[t, p + 1] * dev[t, r + 1]
    return Bi @ meat @ Bi


@njit(cache=True)
def site_iv(count, mean, cross):
    """Each site's own IV estimate, its sampling covariance and its first-stage statistic.

    Parameters
    ----------
    count : int64 (K, A)
    mean : float64 (K, A, Q)
    cross : float64 (K, A, Q, Q)
        Cell statistics.

    Returns
    -------
    beta : (K, P)
    cov : (K, P, P)
    first_stage : (K,)
        The site's F (P = 1) or smallest eigenvalue statistic (P > 1).
    status : int
        ``ok``, ``site_underidentified`` (L < P), ``singleton_cell`` (a cell with fewer
        than two persons), ``weak_site_compliance`` or ``numerical``.
    """
    K, A, Q = mean.shape
    P = Q - 1
    L = A - 1
    beta = np.full((K, P), np.nan)
    cov = np.full((K, P, P), np.nan)
    fs = np.full(K, np.nan)
    if L < P:
        return beta, cov, fs, STATUS_SITE_UNDERIDENTIFIED
    for s in range(K):
        for t in range(A):
            if count[s, t] < 2:
                return beta, cov, fs, STATUS_SINGLETON_CELL
    weak = False
    dev = np.empty((A, Q))
    for s in range(K):
        Bs, Ws, ns = _site_blocks(count, mean, cross, s, dev)
        if ns - A <= 0:
            return beta, cov, fs, STATUS_SINGLETON_CELL
        Bxx = np.ascontiguousarray(Bs[1:, 1:])
        fs[s] = _site_first_stage(Bxx, np.ascontiguousarray(Ws[1:, 1:]) / (ns - A), L)
        Bi, ok = sym_inverse(Bxx, np.bool_(True))
        if not (fs[s] >= RCIV_MIN_SITE_F and ok):
            weak = True
            continue
        cov[s] = _site_fit(count, cross, s, dev, Bs, Bi, beta[s])
    if weak:
        return beta, cov, fs, STATUS_WEAK_SITE_COMPLIANCE
    for s in range(K):
        for p in range(P):
            if not (np.isfinite(beta[s, p]) and cov[s, p, p] > 0):
                return beta, cov, fs, STATUS_NUMERICAL
    return beta, cov, fs, STATUS_OK


@njit(cache=True)
def dersimonian_laird(b, v):
    r"""DerSimonian & Laird (1986) random-effects meta-analysis of estimates b with variances v.

    ``w_s = 1 / v_s``, ``Q = sum_s w_s (b_s - b_FE)^2`` with ``b_FE`` the ``w``-weighted mean,
    ``tau^2 = max(0, (Q - (K - 1)) / (sum w - sum w^2 / sum w))``; then ``w*_s = 1 / (v_s +
    tau^2)`` and ``mu = sum w* b / sum w*``.

    Parameters
    ----------
    b, v : float64 (K,)

    Returns
    -------
    (mu, tau2, se_model, se_robust) : tuple of float
        ``se_model = (sum w*)^{-1/2}``; ``se_robust`` the sandwich over sites
        ``sqrt(K / (K - 1) sum w*^2 (b - mu)^2) / sum w*``.
    """
    K = b.shape[0]
    sw = 0.0
    sw2 = 0.0
    swb = 0.0
    for s in range(K):
        w = 1.0 / v[s]
        sw += w
        sw2 += w * w
        swb += w * b[s]
    bfe = swb / sw
    Qs = 0.0
    for s in range(K):
        Qs += (b[s] - bfe) ** 2 / v[s]
    den = sw - sw2 / sw
    tau2 = (Qs - (K - 1.0)) / den if den > 0 else 0.0
    if not tau2 > 0:
        tau2 = 0.0
    sw = 0.0
    swb = 0.0
    for s in range(K):
        w = 1.0 / (v[s] + tau2)
        sw += w
        swb += w * b[s]
    mu = swb / sw
    meat = 0.0
    for s in range(K):
        w = 1.0 / (v[s] + tau2)
        meat += (w * (b[s] - mu)) ** 2
    return mu, tau2, 1.0 / np.sqrt(sw), np.sqrt(meat * K / (K - 1.0)) / sw


@njit(cache=True)
def rciv_meta_fit(count, mean, cross):
    """RRN (2012) site IV estimates pooled by DerSimonian-Laird, one mediator at a time.

    Parameters
    ----------
    count, mean, cross
        Cell statistics.

    Returns
    -------
    beta : (P,)
        The random-effects means.
    se : (N_SE, P)
        Conventional: the model-based ``(sum w*)^{-1/2}``; cluster: the sandwich over sites;
        the ``SE_EFFECT_SD`` slot: ``tau``, the estimated cross-site SD of the effect.
    status : int
    """
    K, A, Q = mean.shape
    P = Q - 1
    beta = np.full(P, np.nan)
    se = np.full((N_SE, P), np.nan)
    if K < 2:
        return beta, se, STATUS_TOO_FEW_SITES
    bs, cv, _, st = site_iv(count, mean, cross)
    if st != STATUS_OK:
        return beta, se, st
    v = np.empty(K)
    b = np.empty(K)
    for p in range(P):
        for s in range(K):
            b[s] = bs[s, p]
            v[s] = cv[s, p, p]
        mu, tau2, s_model, s_robust = dersimonian_laird(b, v)
        beta[p] = mu
        se[SE_CONVENTIONAL, p] = s_model
        se[SE_CLUSTER, p] = s_robust
        se[SE_EFFECT_SD, p] = np.sqrt(tau2)
        if not np.isfinite(mu):
            return beta, se, STATUS_NUMERICAL
    return beta, se, STATUS_OK


@njit(cache=True)
def site_itt(count, mean, cross):
    r"""Each site's ITT effects on Y and on M (P = 1) and their sampling covariance.

    The slope of the cell means on T's value within the site: with ``z_c = t - tbar_s``
    and ``a_c = n_c z_c / sum_t n_c z_c^2``, ``pi_s = sum_t a_c vbar_c`` (the difference of the
    two arm means for a binary treatment) and ``V_s = sum_t a_c^2 W_c / ((n_c - 1) n_c)``.

    Returns
    -------
    pi : (K, 2)
    cov : (K, 2, 2)
    status : int
    """
    K, A, Q = mean.shape
    pi = np.full((K, 2), np.nan)
    cov = np.zeros((K, 2, 2))
    for s in range(K):
        for t in range(A):
            if count[s, t] < 2:
                return pi, cov, STATUS_SINGLETON_CELL
    for s in range(K):
        ns = 0
        tb = 0.0
        for t in range(A):
            ns += count[s, t]
            tb += count[s, t] * t
        tb /= ns
        szz = 0.0
        for t in range(A):
            szz += count[s, t] * (t - tb) ** 2
        if not szz > 0:
            return pi, cov, STATUS_SINGULAR
        pi[s, 0] = 0.0
        pi[s, 1] = 0.0
        for t in range(A):
            nc = count[s, t]
            a = nc * (t - tb) / szz
            for q in range(2):
                pi[s, q] += a * mean[s, t, q]
                for r in range(2):
                    cov[s, q, r] += a * a * cross[s, t, q, r] / ((nc - 1.0) * nc)
    return pi, cov, STATUS_OK


@njit(cache=True)
def rciv_bivariate_fit(count, mean, cross):
    r"""RRN (2012) bivariate random-effects alternative (P = 1): the ratio of the mean ITT effects.

    With ``pibar`` the unweighted mean of the site ITT effects (Y, M) over the K sites, ``S``
    their sample covariance (divisor K - 1) and ``Vbar`` the mean sampling covariance
    (:func:`site_itt`), the between-site covariance is ``T = S - Vbar`` (moments), the
    estimate ``beta = pibar_Y / pibar_M``, its delta-method SE (cluster slot)
    ``sqrt((S_YY - 2 beta S_YM + beta^2 S_MM) / K) / |pibar_M|``, and, when a site's
    compliance is independent of its effect (``pi_Y,s = pi_M,s beta_s``), the cross-site
    variance of the effects ``tau^2 = (T_YY - beta^2 T_MM) / (T_MM + pibar_M^2)`` (floored
    at 0; its root in the ``SE_EFFECT_SD`` slot).

    Returns
    -------
    beta : (1,)
    se : (N_SE, 1)
    status : int
    """
    K, A, Q = mean.shape
    P = Q - 1
    beta = np.full(P, np.nan)
    se = np.full((N_SE, P), np.nan)
    if P != 1:
        return beta, se, STATUS_NOT_APPLICABLE
    if K < 2:
        return beta, se, STATUS_TOO_FEW_SITES
    pi, cv, st = site_itt(count, mean, cross)
    if st != STATUS_OK:
        return beta, se, st
    pb = np.zeros(2)
    vb = np.zeros((2, 2))
    for s in range(K):
        for q in range(2):
            pb[q] += pi[s, q] / K
            for r in range(2):
                vb[q, r] += cv[s, q, r] / K
    S = np.zeros((2, 2))
    for s in range(K):
        for q in range(2):
            for r in range(2):
                S[q, r] += (pi[s, q] - pb[q]) * (pi[s, r] - pb[r]) / (K - 1.0)
    if pb[1] == 0.0:
        return beta, se, STATUS_SINGULAR
    b = pb[0] / pb[1]
    beta[0] = b
    var = (S[0, 0] - 2.0 * b * S[0, 1] + b * b * S[1, 1]) / K
    se[SE_CLUSTER, 0] = np.sqrt(var) / abs(pb[1]) if var >= 0 else np.nan
    T = S - vb
    den = T[1, 1] + pb[1] * pb[1]
    tau2 = (T[0, 0] - b * b * T[1, 1]) / den if den > 0 else np.nan
    se[SE_EFFECT_SD, 0] = np.sqrt(tau2) if tau2 > 0 else (0.0 if tau2 <= 0 else np.nan)
    if not np.isfinite(b):
        return beta, se, STATUS_NUMERICAL
    return beta, se, STATUS_OK
