r"""Numba kernel: the level-free sufficient statistics of the Anderson-Rubin tests (issue 15).

For a hypothesised effect vector beta0 write ``a = (1, -beta0')`` and ``u = a'v`` with
``v = (Y, M_1..M_P)``.  Two AR tests of H0: beta = beta0 are quadratic forms in ``a``:

* **conventional** (Anderson & Rubin 1949), the K L site-by-arm instruments with site fixed
  effects: ``AR = [a'B a / (K L)] / [a'Wc a / (n - K A)]``, F(K L, n - K A) under H0 with
  homoskedastic normal errors; B and Wc are the between-cell-within-site and within-cell
  cross-products (:mod:`.moments_nb`);
* **site-clustered**, the single pooled instrument ``z_i = t_i - tbar_s`` (the arm value,
  the pooled Wald estimator's instrument) with site fixed effects and a site-clustered
  variance: with the site scores ``g_s = sum_t n_st (t - tbar_s) vbar_st`` (a Q-vector),
  ``g = sum_s g_s``, ``h_s = sum_t n_st (t - tbar_s)^2``, ``H = sum_s h_s`` and the
  scores at the unrestricted fit ``e_s = g_s - (h_s / H) g``,
  ``AR_cl = (a'g)^2 / ((K / (K - 1)) a'V a)``, ``V = sum_s e_s e_s'``, against F(1, K - 1).
  A site-clustered AR with the K L site-by-arm instruments does not exist: each site's
  instruments are non-zero in that site only, so its cluster covariance has rank K at most
  and the statistic is degenerate (K L with L = 1, whatever the data).

This kernel stores B, Wc, g and V (upper triangles, row-major) in the diagnostics; the
tests, their p-values at any beta0 and the confidence sets for P = 1 (the set where the
quadratic form is not positive: an interval, two rays, the whole line or empty) are
computed by :mod:`simulate.estimators.inference`, which knows the level and the value.
Q = P + 1 <= ``AR_MAX_Q``; beyond that the slots stay NaN.  The same pass records whether the design
is balanced (every cell the same size n_c): then UJIVE and MBTSLS are one k-class estimator,
kappa = 1 + (A - 1) / (n_s - A) (``notes/estimators.md``).
"""

import numpy as np
from numba import njit

from .codes_nb import AR_MAX_Q, D_AR_B, D_AR_G, D_AR_V, D_AR_W, D_BALANCED


@njit(inline="always")
def _put_upper(diag, first, S):
    """The upper triangle of the symmetric (Q, Q) matrix S, row-major, into ``diag[first:]``."""
    Q = S.shape[0]
    k = first
    for i in range(Q):
        for j in range(i, Q):
            diag[k] = S[i, j]
            k += 1


@njit(inline="always")
def ar_statistics(diag, count, dev, arm_mean, B, Wc):
    """Store the sufficient statistics of both AR tests (see the module docstring) in ``diag``.

    Parameters
    ----------
    diag : float64 (N_DIAGNOSTICS,)
        Written at ``D_AR_B``, ``D_AR_W``, ``D_AR_G`` and ``D_AR_V``; and ``D_BALANCED``: 1 when every
        cell has the same size, where UJIVE and MBTSLS are the same k-class estimator.
    count : int64 (K, A)
    dev : float64 (K, A, Q)
        Cell deviations from the site means, vbar_st - vbar_s.
    arm_mean : float64 (K,)
        tbar_s.
    B, Wc : float64 (Q, Q)
    """
    K, A, Q = dev.shape
    balanced = 1.0
    for s in range(K):
        for t in range(A):
            if count[s, t] != count[0, 0]:
                balanced = 0.0
    diag[D_BALANCED] = balanced
    if Q > AR_MAX_Q:
        return
    _put_upper(diag, D_AR_B, B)
    _put_upper(diag, D_AR_W, Wc)
    gs = np.zeros((K, Q))
    h = np.zeros(K)
    for s in range(K):
        for t in range(A):
            nc = count[s, t]
            z = t - arm_mean[s]
            h[s] += nc * z * z
            for q in range(Q):
                gs[s, q] += nc * z * dev[s, t, q]
    g = np.zeros(Q)
    H = 0.0
    for s in range(K):
        H += h[s]
        for q in range(Q):
            g[q] += gs[s, q]
    if not H > 0.0:
        return
    V = np.zeros((Q, Q))
    e = np.empty(Q)
    for s in range(K):
        w = h[s] / H
        for q in range(Q):
            e[q] = gs[s, q] - w * g[q]
        for i in range(Q):
            for j in range(Q):
                V[i, j] += e[i] * e[j]
    for q in range(Q):
        diag[D_AR_G + q] = g[q]
    _put_upper(diag, D_AR_V, V)
