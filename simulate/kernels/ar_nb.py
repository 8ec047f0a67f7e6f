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

**Jackknife AR** (Mikusheva & Sun 2022, :func:`jackknife_ar_statistics`): its numerator
``T(a) = sum_{i != j} C_ij e_i e_j`` (e = a'v, C the UJIVE leave-one-out matrix, see
:func:`simulate.estimators.inference.jackknife_ar`) is the quadratic form ``a'N a`` with
``N = B - sum_c W_c / (n_c - 1) + sum_s W_s / (n_s - 1)`` (``W_s = sum_{c in s} W_c + n_c d_c d_c'``),
and its cross-fit variance ``Phi(a)`` is a quartic form in ``a``:

``Phi / 2 = sum_c (k_c - l_s / m_c^2) F_c^2 + sum_s l_s (sum_{c in s} F_c / m_c)^2 - sum_c k_c G_c``,

``F_c = a'W_c a``, ``G_c = sum_{i in c} [a'(v_i - vbar_s)]^2 [a'(v_i - vbar_c)]^2`` (the one person
pass), ``m_c = 1 - 1/n_c``, ``k_c = (1/(n_c - 1) - 1/(n_s - 1))^2 / (m_c^2 + 1/n_c^2)``,
``l_s = 1/(n_s - 1)^2``.  The kernel stores N (upper triangle) and the coefficients of Phi's monomials
``a_i a_j a_k a_l`` (i <= j <= k <= l, lexicographic: ``itertools.combinations_with_replacement``),
so the statistic ``T / sqrt(Phi)`` can be evaluated at any beta0 afterwards, and for P = 1 its
confidence set found from the roots of two polynomials.  Needs every cell with two persons (else NaN).
"""

import numpy as np
from numba import njit

from .codes_nb import AR_MAX_Q, D_AR_B, D_AR_G, D_AR_V, D_AR_W, D_BALANCED, D_JAR_N, D_JAR_PHI
from .moments_nb import dot4


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


@njit(inline="always")
def _quartic_tables(Q):
    """The pairs (i <= j) of the quadratic monomials and, for two of them, their product's quartic monomial."""
    Q2 = Q * (Q + 1) // 2
    pi = np.empty(Q2, np.int64)
    pj = np.empty(Q2, np.int64)
    k = 0
    for i in range(Q):
        for j in range(i, Q):
            pi[k] = i
            pj[k] = j
            k += 1
    idx4 = np.full((Q, Q, Q, Q), -1, np.int64)
    m = 0
    for i in range(Q):
        for j in range(i, Q):
            for k in range(j, Q):
                for l in range(k, Q):
                    idx4[i, j, k, l] = m
                    m += 1
    prod = np.empty((Q2, Q2), np.int64)
    w = np.empty(4, np.int64)
    for p in range(Q2):
        for r in range(Q2):
            w[0], w[1], w[2], w[3] = pi[p], pj[p], pi[r], pj[r]
            for a in range(1, 4):  # insertion sort of four indices
                x = w[a]
                b = a - 1
                while b >= 0 and w[b] > x:
                    w[b + 1] = w[b]
                    b -= 1
                w[b + 1] = x
            prod[p, r] = idx4[w[0], w[1], w[2], w[3]]
    return pi, pj, prod, m


@njit(inline="always")
def _quadratic_coefficients(S, pi, pj, out):
    """Coefficients of a'S a on the monomials a_i a_j (i <= j) of a symmetric S."""
    for p in range(pi.shape[0]):
        i, j = pi[p], pj[p]
        out[p] = S[i, j] if i == j else S[i, j] + S[j, i]


_JAR_BLOCK = 128  # persons per block of the jackknife AR's person pass


@njit(cache=True)
def _jar_cell_terms(count, mean, cross, pi, pj, prod, n_quart):
    """The cell and site sums of the jackknife AR: (site means sm, k_c, N, Phi without the person term)."""
    K, A, Q = mean.shape
    Q2 = pi.shape[0]
    sm = np.zeros((K, Q))
    ns = np.zeros(K)
    for s in range(K):
        for t in range(A):
            ns[s] += count[s, t]
            for q in range(Q):
                sm[s, q] += count[s, t] * mean[s, t, q]
        for q in range(Q):
            sm[s, q] /= ns[s]
    kc = np.empty((K, A))
    N = np.zeros((Q, Q))
    phi = np.zeros(n_quart)
    F = np.empty(Q2)
    U = np.empty(Q2)
    d = np.empty(Q)
    for s in range(K):
        lam = 1.0 / ((ns[s] - 1.0) * (ns[s] - 1.0))
        U[:] = 0.0
        for t in range(A):
            nc = float(count[s, t])
            mc = 1.0 - 1.0 / nc
            ccc = 1.0 / (nc - 1.0) - 1.0 / (ns[s] - 1.0)
            kc[s, t] = ccc * ccc / (mc * mc + 1.0 / (nc * nc))
            for q in range(Q):
                d[q] = mean[s, t, q] - sm[s, q]
            for i in range(Q):
                for j in range(Q):
                    b = nc * d[i] * d[j]
                    w = cross[s, t, i, j]
                    N[i, j] += b - w / (nc - 1.0) + (w + b) / (ns[s] - 1.0)
            _quadratic_coefficients(cross[s, t], pi, pj, F)
            wt = 2.0 * (kc[s, t] - lam / (mc * mc))
            for p in range(Q2):
                U[p] += F[p] / mc
                for r in range(Q2):
                    phi[prod[p, r]] += wt * F[p] * F[r]
        for p in range(Q2):
            for r in range(Q2):
                phi[prod[p, r]] += 2.0 * lam * U[p] * U[r]
    return sm, kc, N, phi


@njit(cache=True)
def _jar_person_pass(site, arm, mediators, outcome, sm, mean, kc, pi, pj, prod, phi):
    """Subtract the person term of Phi: ``sum_c k_c sum_{i in c} f_i f_i' = Fw Fw'``.

    Column i of Fw holds the monomial coefficients f_i of ``a'(v_i - vbar_s)(v_i - vbar_c)'a`` times
    ``sqrt(k_c)`` (k_c >= 0).  Persons go in blocks of ``_JAR_BLOCK`` columns; each block adds the
    :func:`dot4` of every pair of its rows.  Explicit loops, not BLAS: the same bits whatever the threads,
    workers or batch.
    """
    n = outcome.shape[0]
    Q = sm.shape[1]
    P = Q - 1
    Q2 = pi.shape[0]
    Fw = np.empty((Q2, _JAR_BLOCK))
    Hs = np.zeros((Q2, Q2))
    x = np.empty(Q)
    y = np.empty(Q)
    rk = np.sqrt(kc)
    for i0 in range(0, n, _JAR_BLOCK):
        m = min(_JAR_BLOCK, n - i0)
        for j in range(m):
            i = i0 + j
            s, t = site[i], arm[i]
            x[0] = outcome[i] - sm[s, 0]
            y[0] = outcome[i] - mean[s, t, 0]
            for p in range(P):
                x[p + 1] = mediators[i, p] - sm[s, p + 1]
                y[p + 1] = mediators[i, p] - mean[s, t, p + 1]
            w = rk[s, t]
            for p in range(Q2):
                a, b = pi[p], pj[p]
                Fw[p, j] = w * (x[a] * y[a] if a == b else x[a] * y[b] + x[b] * y[a])
        for p in range(Q2):
            for r in range(p, Q2):
                Hs[p, r] += dot4(Fw[p], Fw[r], m)
    for p in range(Q2):
        for r in range(p, Q2):
            phi[prod[p, r]] -= (2.0 if p == r else 4.0) * Hs[p, r]


@njit(cache=True)
def jackknife_ar_statistics(diag, site, arm, mediators, outcome, count, mean, cross):
    """Store the jackknife AR's numerator matrix N and variance quartic Phi (module docstring) in ``diag``.

    Parameters
    ----------
    diag : float64 (N_DIAGNOSTICS,)
        Written at ``D_JAR_N`` (upper triangle of N) and ``D_JAR_PHI`` (Phi's monomial coefficients);
        left as they are (NaN) when a cell has fewer than two persons or Q > ``AR_MAX_Q``.
    site, arm : int64 (n,)
    mediators : float64 (n, P)
    outcome : float64 (n,)
    count, mean, cross : the cell statistics of the same persons (:func:`.moments_nb.cell_statistics`).
    """
    K, A, Q = mean.shape
    if Q > AR_MAX_Q:
        return
    for s in range(K):
        for t in range(A):
            if count[s, t] < 2:
                return
    pi, pj, prod, n_quart = _quartic_tables(Q)
    sm, kc, N, phi = _jar_cell_terms(count, mean, cross, pi, pj, prod, n_quart)
    _jar_person_pass(site, arm, mediators, outcome, sm, mean, kc, pi, pj, prod, phi)
    _put_upper(diag, D_JAR_N, N)
    for m in range(n_quart):
        diag[D_JAR_PHI + m] = phi[m]
