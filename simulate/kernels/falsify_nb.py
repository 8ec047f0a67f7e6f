r"""Numba kernel: the founding paper's falsification check with the full quadratic, and the zero-intercept tests.

If the site effects are independent of the site compliances (assumption ix) and there is no
direct effect (ii), the site ITT effects on Y lie, in expectation, on a plane through the
origin: :math:`E[\mathrm{ITT}_{Y,s} \mid \gamma_s] = \sum_p \gamma_{ps}\delta_p`.  Three Wald
tests of that, on the unweighted between-site regression of the site ITT contrasts
(ybar_st - ybar_s0) on the site compliance contrasts, each with the jackknife (CR3)
site-clustered covariance of :func:`simulate.kernels.sitelevel_nb.cr3_cov`:

* **quadratic**: the regression with the arm value t (the intercept column, as in
  ``between_intercept``), the P compliances and all P(P+1)/2 squares and cross-products
  :math:`\gamma_p\gamma_q` (p <= q); H0: every quadratic coefficient is zero (P(P+1)/2
  degrees of freedom).  With P = 1 it is the squares-only ``nonlinearity`` test.
* **falsification**: the same regression; H0: the intercept and every quadratic coefficient
  are zero (1 + P(P+1)/2 degrees of freedom): the site effects lie on a plane through the origin.
* **intercept**: the regression with t and the P compliances (``between_intercept``);
  H0: the intercept is zero (1 degree of freedom).

The statistics go into the diagnostics (``D_QUADRATIC``, ``D_FALSIFICATION``,
``D_INTERCEPT_TEST``, their degrees of freedom and status), each with the degrees of freedom
nu of its Hotelling approximation (:func:`htz_df`, ``D_*_NU``), a measure of how variable the
CR3 covariance is (a few high-leverage sites make it small); the F references are applied in
:mod:`simulate.estimators.falsification`.
"""

import numpy as np
from numba import njit

from .codes_nb import (
    D_FALSIFICATION,
    D_FALSIFICATION_DF,
    D_FALSIFICATION_NU,
    D_INTERCEPT_NU,
    D_INTERCEPT_TEST,
    D_QUADRATIC,
    D_QUADRATIC_DF,
    D_QUADRATIC_NU,
    D_QUADRATIC_STATUS,
    STATUS_OK,
    STATUS_SINGULAR,
)
from .linalg_nb import sym_inverse
from .sitelevel_nb import cr3_cov, site_gls


@njit(inline="always")
def _wald(beta, cov, idx):
    """b_I' V_II^{-1} b_I over the coefficients ``idx``; (stat, ok)."""
    m = idx.shape[0]
    V = np.empty((m, m))
    b = np.empty(m)
    for a in range(m):
        b[a] = beta[idx[a]]
        for c in range(m):
            V[a, c] = cov[idx[a], idx[c]]
    Vi, ok = sym_inverse(V, np.bool_(True))
    if not ok:
        return np.nan, False
    return b @ Vi @ b, True


@njit(cache=True)
def _leverage(G, GGi, n_sites, L):
    """The CR3 blocks shared by every test on one regression: (F, H, ok).

    ``H[s] = I - G_s (G'G)^{-1} G_s'`` (K, L, L) and ``F[s] = (G'G)^{-1} G_s' H_ss^{-1}`` (K, k, L), so
    that ``a_s`` of :func:`htz_df` is the rows ``idx`` of ``F[s]``; ok is False where a leverage block is
    singular.  Explicit loops: the blocks are tiny and BLAS calls per site cost more than their flops.
    """
    k = G.shape[1]
    K = n_sites
    H = np.empty((K, L, L))
    F = np.zeros((K, k, L))
    T = np.empty((k, L))
    for s in range(K):
        r0 = s * L
        # T = GGi G_s' (k, L); H_s = I - G_s T
        for c in range(k):
            for r in range(L):
                acc = 0.0
                for e in range(k):
                    acc += GGi[c, e] * G[r0 + r, e]
                T[c, r] = acc
        for r in range(L):
            for q in range(L):
                acc = 0.0
                for c in range(k):
                    acc += G[r0 + r, c] * T[c, q]
                H[s, r, q] = (1.0 if r == q else 0.0) - acc
        if L == 1:
            if not abs(H[s, 0, 0]) > 1e-12:
                return F, H, False
            inv = 1.0 / H[s, 0, 0]
            for c in range(k):
                F[s, c, 0] = T[c, 0] * inv
        else:
            Hs = np.ascontiguousarray(H[s])
            if not abs(np.linalg.det(Hs)) > 1e-12:
                return F, H, False
            As = np.linalg.inv(Hs)
            for c in range(k):
                for q in range(L):
                    acc = 0.0
                    for r in range(L):
                        acc += T[c, r] * As[r, q]
                    F[s, c, q] = acc
    return F, H, True


@njit(cache=True)
def _htz_omega(F, H, idx, n_sites, L):
    """``Omega = sum_s a_s H_s a_s'`` (m, m) from the blocks of :func:`_leverage`."""
    m = idx.shape[0]
    Om = np.zeros((m, m))
    for s in range(n_sites):
        for i in range(m):
            for j in range(m):
                acc = 0.0
                for r in range(L):
                    hr = 0.0
                    for q in range(L):
                        hr += H[s, r, q] * F[s, idx[j], q]
                    acc += F[s, idx[i], r] * hr
                Om[i, j] += acc
    return Om


@njit(cache=True)
def _htz_site_terms(G, GGi, F, Li, idx, n_sites, L):
    """The per-site part of :func:`htz_df`'s double sum: (t1, t2, Em, Xm).

    Per site ``b = Li a_s`` (m, L), ``E = b G_s`` (m, k), ``X = E GGi`` (m, k); rows ``vec(E_s)`` of Em and
    ``vec(X_s)`` of Xm; t1 and t2 the diagonal (s = t) terms of the two traces.
    """
    k = G.shape[1]
    m = idx.shape[0]
    K = n_sites
    d = m * k
    Em = np.empty((K, d))
    Xm = np.empty((K, d))
    b = np.empty((m, L))
    E = np.empty((m, k))
    t1 = 0.0
    t2 = 0.0
    for s in range(K):
        r0 = s * L
        for i in range(m):
            for r in range(L):
                acc = 0.0
                for j in range(i + 1):
                    acc += Li[i, j] * F[s, idx[j], r]
                b[i, r] = acc
        for i in range(m):
            for c in range(k):
                acc = 0.0
                for r in range(L):
                    acc += b[i, r] * G[r0 + r, c]
                E[i, c] = acc
                Em[s, i * k + c] = acc
        for i in range(m):
            for c in range(k):
                acc = 0.0
                for e in range(k):
                    acc += E[i, e] * GGi[e, c]
                Xm[s, i * k + c] = acc
        # D = b b', XE = X E'
        trD = 0.0
        trXE = 0.0
        DD = 0.0
        DXE = 0.0
        for i in range(m):
            for j in range(m):
                dij = 0.0
                for r in range(L):
                    dij += b[i, r] * b[j, r]
                xe_ji = 0.0
                for c in range(k):
                    xe_ji += Xm[s, j * k + c] * E[i, c]
                DD += dij * dij
                DXE += dij * xe_ji
                if i == j:
                    trD += dij
                    trXE += xe_ji
        t1 += trD * trD - 2.0 * trD * trXE
        t2 += DD - 2.0 * DXE
    return t1, t2, Em, Xm


@njit(cache=True)
def _htz_from_leverage(G, GGi, F, H, idx, n_sites, L):
    """The nu of :func:`htz_df` from the blocks of :func:`_leverage` (see there for the algebra)."""
    k = G.shape[1]
    m = idx.shape[0]
    d = m * k
    Om = _htz_omega(F, H, idx, n_sites, L)
    ev = np.linalg.eigvalsh(Om)
    if not ev[0] > 1e-14 * max(ev[m - 1], 1e-300):
        return np.nan
    Li = np.linalg.inv(np.linalg.cholesky(Om))
    t1, t2, Em, Xm = _htz_site_terms(G, GGi, F, Li, idx, n_sites, L)
    # S_x = sum_s vec(X_s) vec(X_s)', S_e likewise: two products of the stacked (K, d) matrices
    Sx = np.ascontiguousarray(Xm.T) @ Xm
    Se = np.ascontiguousarray(Em.T) @ Em
    for u in range(d):
        for v in range(d):
            t1 += Sx[u, v] * Se[u, v]
    # sum_{s,t} tr(X_s E_t' X_s E_t') = sum_{i,j,a,b} Sx[(i,a),(j,b)] Se[(j,a),(i,b)]
    for i in range(m):
        for j in range(m):
            for aa in range(k):
                for bb in range(k):
                    t2 += Sx[i * k + aa, j * k + bb] * Se[j * k + aa, i * k + bb]
    total = t1 + t2
    if not total > 0:
        return np.nan
    return m * (m + 1) / total


@njit(cache=True)
def htz_df(G, GGi, idx, n_sites, L):
    r"""Degrees of freedom nu of the Hotelling approximation of a CR3 Wald test (Pustejovsky & Tipton 2018, HTZ).

    Under the working model (independent errors of equal variance) the residuals are
    ``r ~ N(0, I - H)`` and the CR3 covariance of the tested coefficients is
    ``V = sum_s a_s r_s r_s' a_s'`` with ``a_s = C (G'G)^{-1} G_s' (I - H_ss)^{-1}`` (C selects the
    rows ``idx``).  With ``Omega = E[V]`` and ``b_s = Omega^{-1/2} a_s`` (a Cholesky root; the
    total variance below does not depend on the root), nu is chosen so that a Wishart matrix with
    nu degrees of freedom and mean I has the total variance of ``Omega^{-1/2} V Omega^{-T/2}``:
    ``nu = m (m + 1) / sum_{s,t} [(tr C_st)^2 + tr(C_st C_st)]`` with
    ``C_st = b_s Cov(r_s, r_t) b_t' = delta_st b_s b_s' - X_s E_t'``, ``E_s = b_s G_s``,
    ``X_s = E_s (G'G)^{-1}`` (Isserlis' theorem; the double sum is computed in O(K) through
    ``S_x = sum_s vec(X_s) vec(X_s)'`` and ``S_e = sum_t vec(E_t) vec(E_t)'``).  The test then
    refers ``(nu - m + 1) / (nu m) W`` to F(m, nu - m + 1).  NaN where a leverage block or Omega
    is singular.

    Parameters
    ----------
    G : (K L, k)
        The regressors (rows of site s at s L .. s L + L - 1).
    GGi : (k, k)
        (G'G)^{-1}.
    idx : int64 (m,)
        The tested coefficients.
    n_sites, L : int
        K and the contrasts per site.

    Returns
    -------
    float
        nu.
    """
    F, H, ok = _leverage(G, GGi, n_sites, L)
    if not ok:
        return np.nan
    return _htz_from_leverage(G, GGi, F, H, idx, n_sites, L)


@njit(inline="always")
def falsification_tests(diag, itt, comp, tval, srow, ones):
    """The quadratic, falsification (plane through the origin) and intercept Wald statistics into ``diag``.

    Parameters
    ----------
    diag : (N_DIAGNOSTICS,)
        Written at ``D_QUADRATIC``, ``D_QUADRATIC_DF``, ``D_QUADRATIC_STATUS``,
        ``D_FALSIFICATION``, ``D_FALSIFICATION_DF`` and ``D_INTERCEPT_TEST`` (NaN where a
        regression or a covariance block is singular).
    itt, comp, tval, srow
        The site contrasts of :func:`simulate.kernels.sitelevel_nb.site_contrasts`.
    ones : (K, L, L)
        Identity weights (the unweighted regression).
    """
    K, L = ones.shape[0], ones.shape[1]
    N, P = comp.shape
    m = P * (P + 1) // 2
    k = 1 + P + m
    G = np.empty((N, k))
    for r in range(N):
        G[r, 0] = tval[r]
        j = 1 + P
        for p in range(P):
            G[r, p + 1] = comp[r, p]
            for q in range(p, P):
                G[r, j] = comp[r, p] * comp[r, q]
                j += 1
    bq, _, _, _, stq, GGi = site_gls(itt, G, srow, ones, K, L)
    diag[D_QUADRATIC_STATUS] = stq
    if stq == STATUS_OK:
        c3 = cr3_cov(itt, G, bq, GGi, K, L)
        quad_idx = np.arange(1 + P, k)
        F, H, lev_ok = _leverage(G, GGi, K, L)
        stat, ok = _wald(bq, c3, quad_idx)
        if ok:
            diag[D_QUADRATIC] = stat
            diag[D_QUADRATIC_DF] = m
            diag[D_QUADRATIC_NU] = _htz_from_leverage(G, GGi, F, H, quad_idx, K, L) if lev_ok else np.nan
        else:
            diag[D_QUADRATIC_STATUS] = STATUS_SINGULAR
        joint_idx = np.empty(m + 1, np.int64)
        joint_idx[0] = 0
        joint_idx[1:] = quad_idx
        stat, ok = _wald(bq, c3, joint_idx)
        if ok:
            diag[D_FALSIFICATION] = stat
            diag[D_FALSIFICATION_DF] = m + 1
            diag[D_FALSIFICATION_NU] = _htz_from_leverage(G, GGi, F, H, joint_idx, K, L) if lev_ok else np.nan
    Gl = np.ascontiguousarray(G[:, : 1 + P])
    bl, _, _, _, stl, GGl = site_gls(itt, Gl, srow, ones, K, L)
    if stl == STATUS_OK:
        c3 = cr3_cov(itt, Gl, bl, GGl, K, L)
        if c3[0, 0] > 0:
            diag[D_INTERCEPT_TEST] = bl[0] * bl[0] / c3[0, 0]
            diag[D_INTERCEPT_NU] = htz_df(Gl, GGl, np.zeros(1, np.int64), K, L)
