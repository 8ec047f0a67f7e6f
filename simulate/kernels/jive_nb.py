r"""Numba kernels: UJIVE (Kolesar 2013) with site effects, and person-level HC0 meats.

The meats are those that need fourth moments (OLS and UJIVE).
"""

import numpy as np
from numba import njit

from .codes_nb import (
    N_SE,
    SE_CLUSTER,
    SE_CONVENTIONAL,
    STATUS_NUMERICAL,
    STATUS_OK,
    STATUS_SINGLETON_CELL,
    STATUS_SINGULAR,
)
from .linalg_nb import coef_vector, quad, sandwich_se, sym_inverse
from .moments_nb import between_within_from_deviations, cell_deviations, dot4, site_moments


@njit(cache=True)
def ujive_fit(count, mean, cross):
    r"""UJIVE of Kolesar (2013) with site effects and site-by-arm instruments.

    ``beta = (Xdot'X)^{-1} Xdot'Y`` with ``Xdot = (I - D_Z)^{-1}(P_Z - D_Z)X -
    (I - D_W)^{-1}(P_W - D_W)X`` (Z = all cell dummies, W = site dummies, D_A =
    diag(P_A)). Here that is ``Xdot_i = xbar_{c,-i} - xbar_{s,-i}``, the
    leave-one-out cell mean minus the leave-one-out site mean, i.e.
    ``Xdot_i = c1_s d_c + c2_c (x_i - xbar_c)``, ``c1_s = n_s/(n_s - 1)``,
    ``c2_c = 1/(n_s - 1) - 1/(n_c - 1)``, ``d_c = xbar_c - xbar_s``. Hence

    * ``Xdot'V = sum_c [c2_c W_c[X, :] + c1_s n_c d_c (vbar_c - vbar_s)']``;
    * ``Xdot'Xdot = sum_c [c1_s^2 n_c d_c d_c' + c2_c^2 W_c[X, X]]``.

    Standard errors: conventional ``(u'u/n) G^{-1} Xdot'Xdot G^{-1}``
    (G = Xdot'X), site-clustered with per-cell scores ``c2_c W_c[X,:] b + c1_s n_c
    d_c g_c``; HC0 needs fourth moments and is filled in by :func:`person_meats`.

    Returns (beta, se (N_SE, P), status, G^{-1}).
    """
    _, site_mean, _ = site_moments(count, mean)
    dev = cell_deviations(mean, site_mean)
    B, Wc = between_within_from_deviations(count, dev, cross)
    return ujive_from_deviations(count, dev, cross, B, Wc)


@njit(cache=True)
def ujive_from_deviations(count, dev, cross, B, Wc):
    """:func:`ujive_fit` given the cell deviations ``dev`` = vbar_c - vbar_s, B and Wc."""
    K, A, Q = dev.shape
    P = Q - 1
    se = np.full((N_SE, P), np.nan)
    beta = np.full(P, np.nan)
    for s in range(K):
        for t in range(A):
            if count[s, t] < 2:
                return beta, se, STATUS_SINGLETON_CELL, np.full((P, P), np.nan)
    XV = np.zeros((P, Q))
    XX = np.zeros((P, P))
    n = 0
    for s in range(K):
        ns = 0
        for t in range(A):
            ns += count[s, t]
        c1 = ns / (ns - 1.0)
        for t in range(A):
            nc = count[s, t]
            n += nc
            c2 = 1.0 / (ns - 1.0) - 1.0 / (nc - 1.0)
            for p in range(P):
                dp = dev[s, t, p + 1]
                for q in range(Q):
                    XV[p, q] += c2 * cross[s, t, p + 1, q] + c1 * nc * dp * dev[s, t, q]
                for r in range(P):
                    dr = dev[s, t, r + 1]
                    XX[p, r] += c1 * c1 * nc * dp * dr + c2 * c2 * cross[s, t, p + 1, r + 1]
    G = np.empty((P, P))
    for p in range(P):
        for r in range(P):
            G[p, r] = 0.5 * (XV[p, r + 1] + XV[r, p + 1])
    Gi, ok = sym_inverse(G, np.bool_(False))
    if not ok:
        return beta, se, STATUS_SINGULAR, Gi
    for p in range(P):
        acc = 0.0
        for r in range(P):
            acc += Gi[p, r] * XV[r, 0]
        beta[p] = acc
    b = coef_vector(beta)
    s2 = quad(Wc + B, b) / n
    se[SE_CONVENTIONAL] = sandwich_se(Gi, XX, s2)
    meat_cl = np.zeros((P, P))
    score = np.empty(P)
    for s in range(K):
        ns = 0
        for t in range(A):
            ns += count[s, t]
        c1 = ns / (ns - 1.0)
        score[:] = 0.0
        for t in range(A):
            nc = count[s, t]
            c2 = 1.0 / (ns - 1.0) - 1.0 / (nc - 1.0)
            g = 0.0
            for q in range(Q):
                g += b[q] * dev[s, t, q]
            for p in range(P):
                acc = 0.0
                for q in range(Q):
                    acc += cross[s, t, p + 1, q] * b[q]
                score[p] += c2 * acc + c1 * nc * dev[s, t, p + 1] * g
        for p in range(P):
            for r in range(P):
                meat_cl[p, r] += score[p] * score[r]
    dof = n - K - P
    if K > 1 and dof > 0:
        se[SE_CLUSTER] = sandwich_se(Gi, meat_cl, (K / (K - 1.0)) * ((n - 1.0) / dof))
    for p in range(P):
        if not np.isfinite(beta[p]):
            return beta, se, STATUS_NUMERICAL, Gi
    return beta, se, STATUS_OK, Gi


# ============================================================ person-level meats
_PERSON_BLOCK = 128  # persons per block in person_meats


@njit(cache=True)
def person_meats(site, arm, mediators, outcome, count, mean, beta_ols, beta_ujive):
    r"""HC0 meats that need fourth moments: OLS and UJIVE.

    ``sum_i u_i^2 h_i h_i'`` with ``u_i = (y_i - ybar_s) - (x_i - xbar_s)'beta``
    and ``h_i = x_i - xbar_s`` (OLS) or ``h_i = Xdot_i`` (UJIVE, see
    :func:`ujive_fit`). Within a cell the UJIVE instrument is affine in
    ``x_i - xbar_s``: ``Xdot_i = (c1_s - c2_c) d_c + c2_c (x_i - xbar_s)``.

    One pass over persons, O(n P^2), in blocks: a block's ``h_i`` are stored by column
    and scaled by ``u_i``, then each meat entry adds the dot product of two rows
    (:func:`dot4`).  The first two outputs of :func:`person_meats_all`.
    """
    P = mediators.shape[1]
    nanb = np.full(P, np.nan)
    out = person_meats_all(site, arm, mediators, outcome, count, mean, beta_ols, beta_ujive, nanb)
    return out[0], out[1]


@njit(cache=True)
def _person_cell_table(count, mean, beta_ujive):
    """Per cell c = s A + t, the constants of :func:`person_meats_all`'s person pass.

    ``cell[c]``: ybar_s, xbar_s (columns 1..P), c2_c (column 1 + P) and (c1_s - c2_c) d_c (columns 2 + P ..);
    ``cell_h[c]``: g_c of UJIVE and a_c.  Zeros for a cell or site with fewer than two persons.
    """
    K, A, Q = mean.shape
    P = Q - 1
    n_site, site_mean, _ = site_moments(count, mean)
    C2 = 1 + P
    ALPHA = 2 + P
    cell = np.zeros((K * A, 2 + 2 * P))
    cell_h = np.zeros((K * A, 2))
    for s in range(K):
        ns = n_site[s]
        for t in range(A):
            nc = count[s, t]
            c = s * A + t
            cell[c, 0] = site_mean[s, 0]
            for p in range(P):
                cell[c, 1 + p] = site_mean[s, p + 1]
            if ns > 1 and nc > 1:
                c1 = ns / (ns - 1.0)
                c2 = 1.0 / (ns - 1.0) - 1.0 / (nc - 1.0)
                cell[c, C2] = c2
                for p in range(P):
                    cell[c, ALPHA + p] = (c1 - c2) * (mean[s, t, p + 1] - site_mean[s, p + 1])
                g = mean[s, t, 0] - site_mean[s, 0]
                for p in range(P):
                    g -= beta_ujive[p] * (mean[s, t, p + 1] - site_mean[s, p + 1])
                cell_h[c, 0] = g
                cell_h[c, 1] = (1.0 / nc - 1.0 / ns) / (1.0 - 1.0 / nc)
    return cell, cell_h


@njit(cache=True)
def _person_block(i0, m, site, arm, mediators, outcome, mean, cell, cell_h, beta_ols, beta_ujive, beta_mbtsls,
                  do_extra, work):
    """Fill the block's columns for persons i0 .. i0 + m - 1 (see :func:`person_meats_all`).

    ``work = (score_ols, score_uj, score_uh, u_ols, u_uj, wcol, rcol, wr)``: the h_i of OLS and UJIVE by column
    (not yet scaled by their residuals u_i), the heterogeneity scores psi_i, the residuals, and
    ``w_i = x_i - xbar_c`` and the MBTSLS residual ``r_i`` by column (``wr``, w_i r_i, is filled later).
    """
    score_ols, score_uj, score_uh, u_ols, u_uj, wcol, rcol, _ = work
    P = mediators.shape[1]
    A = mean.shape[1]
    C2 = 1 + P
    ALPHA = 2 + P
    for j in range(m):
        i = i0 + j
        c = site[i] * A + arm[i]
        uo = outcome[i] - cell[c, 0]
        uu = uo
        c2 = cell[c, C2]
        for p in range(P):
            hp = mediators[i, p] - cell[c, 1 + p]
            score_ols[p, j] = hp
            score_uj[p, j] = cell[c, ALPHA + p] + c2 * hp
            uo -= hp * beta_ols[p]
            uu -= hp * beta_ujive[p]
        u_ols[j] = uo
        u_uj[j] = uu
        if do_extra:
            s_i = site[i]
            t_i = arm[i]
            y_c = outcome[i] - mean[s_i, t_i, 0]
            e = y_c
            rr = y_c
            for p in range(P):
                wp = mediators[i, p] - mean[s_i, t_i, p + 1]
                wcol[p, j] = wp
                e -= wp * beta_ujive[p]
                rr -= wp * beta_mbtsls[p]
            rcol[j] = rr
            gy = cell_h[c, 0] - cell_h[c, 1] * e
            for p in range(P):
                score_uh[p, j] = uu * score_uj[p, j] + gy * wcol[p, j]


@njit(cache=True)
def _accumulate_block(m, do_uj, do_mb, work, meats):
    """Add the block's m persons to ``meats = (meat_ols, meat_uj, meat_uh, m_wwuu, m_wuu, m_wwu)``, upper triangles.

    Every sum is a :func:`dot4` of two rows of the block: the meats of ``h_i u_i``, the MBTSLS moments of
    ``w_i r_i`` (``wr = w r``: ``m_wwuu = sum wr . wr``, ``m_wwu = sum w . wr``, ``m_wuu = sum wr . r``).
    """
    score_ols, score_uj, score_uh, u_ols, u_uj, wcol, rcol, wr = work
    meat_ols, meat_uj, meat_uh, m_wwuu, m_wuu, m_wwu = meats
    P = score_ols.shape[0]
    for p in range(P):
        for j in range(m):
            score_ols[p, j] *= u_ols[j]
            score_uj[p, j] *= u_uj[j]
    for p in range(P):
        for r in range(p, P):
            meat_ols[p, r] += dot4(score_ols[p], score_ols[r], m)
            if do_uj:
                meat_uj[p, r] += dot4(score_uj[p], score_uj[r], m)
                meat_uh[p, r] += dot4(score_uh[p], score_uh[r], m)
    if do_mb:
        for p in range(P):
            for j in range(m):
                wr[p, j] = wcol[p, j] * rcol[j]
        for p in range(P):
            m_wuu[p] += dot4(wr[p], rcol, m)
            for r in range(p, P):
                m_wwuu[p, r] += dot4(wr[p], wr[r], m)
                m_wwu[p, r] += dot4(wcol[p], wr[r], m)


@njit(cache=True)
def person_meats_all(site, arm, mediators, outcome, count, mean, beta_ols, beta_ujive, beta_mbtsls):
    r"""The person-level meats and moments: OLS and UJIVE HC0, UJIVE heterogeneity, MBTSLS third and fourth moments.

    Returns ``(meat_ols, meat_uj, meat_uh, m_wwuu, m_wuu, m_wwu)``.  The first two are those
    of :func:`person_meats` (the same operations in the same order).

    ``meat_uh = sum_i psi_i psi_i'`` is the meat of the heterogeneity-robust SE of UJIVE
    (Kolesar 2013; ManyIV's ``se_hte``): ``psi_i = u_i Xdot_i + GY_i (x_i - xbar_c)`` with
    ``GY_i = g_c - a_c e_i``, ``g_c = b'(vbar_c - vbar_s)`` (the reduced-form residual of the
    cell), ``e_i = b'(v_i - vbar_c)`` and ``a_c = (1/n_c - 1/n_s) / (1 - 1/n_c)``
    (``(P_[Z,W] - P_W)_ii / (1 - (P_[Z,W])_ii)``), ``b = (1, -beta_ujive')``.  The second
    term is the first stage's estimation error, which matters when effects vary.

    ``m_wwuu = sum_i w_i w_i' r_i^2``, ``m_wuu = sum_i w_i r_i^2``, ``m_wwu = sum_i w_i w_i' r_i``
    with ``w_i = x_i - xbar_c`` and ``r_i = b'(v_i - vbar_c)``, ``b = (1, -beta_mbtsls')``:
    the moments of :func:`simulate.kernels.kclass_nb.kcfgi_complete_se` (zeros when
    ``beta_mbtsls`` is NaN), blocked like the meats: per block of persons, dot products of rows.
    """
    P = mediators.shape[1]
    cell, cell_h = _person_cell_table(count, mean, beta_ujive)
    n = outcome.shape[0]
    B = _PERSON_BLOCK
    work = (np.empty((P, B)), np.empty((P, B)), np.empty((P, B)), np.empty(B), np.empty(B), np.empty((P, B)),
            np.empty(B), np.empty((P, B)))
    meats = (np.zeros((P, P)), np.zeros((P, P)), np.zeros((P, P)), np.zeros((P, P)), np.zeros(P), np.zeros((P, P)))
    do_uj = np.isfinite(beta_ujive[0])
    do_mb = np.isfinite(beta_mbtsls[0])
    do_extra = do_uj or do_mb
    for i0 in range(0, n, B):
        m = min(B, n - i0)
        _person_block(i0, m, site, arm, mediators, outcome, mean, cell, cell_h, beta_ols, beta_ujive, beta_mbtsls,
                      do_extra, work)
        _accumulate_block(m, do_uj, do_mb, work, meats)
    meat_ols, meat_uj, meat_uh, m_wwuu, m_wuu, m_wwu = meats
    for p in range(P):
        for r in range(p + 1, P):
            meat_ols[r, p] = meat_ols[p, r]
            meat_uj[r, p] = meat_uj[p, r]
            meat_uh[r, p] = meat_uh[p, r]
            m_wwuu[r, p] = m_wwuu[p, r]
            m_wwu[r, p] = m_wwu[p, r]
    return meat_ols, meat_uj, meat_uh, m_wwuu, m_wuu, m_wwu
