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
``D_INTERCEPT_TEST`` and their degrees of freedom and status); their F references are
applied in :mod:`simulate.estimators.falsification`.
"""

import numpy as np
from numba import njit

from .codes_nb import (
    D_FALSIFICATION,
    D_FALSIFICATION_DF,
    D_INTERCEPT_TEST,
    D_QUADRATIC,
    D_QUADRATIC_DF,
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
        stat, ok = _wald(bq, c3, quad_idx)
        if ok:
            diag[D_QUADRATIC] = stat
            diag[D_QUADRATIC_DF] = m
        else:
            diag[D_QUADRATIC_STATUS] = STATUS_SINGULAR
        joint_idx = np.empty(m + 1, np.int64)
        joint_idx[0] = 0
        joint_idx[1:] = quad_idx
        stat, ok = _wald(bq, c3, joint_idx)
        if ok:
            diag[D_FALSIFICATION] = stat
            diag[D_FALSIFICATION_DF] = m + 1
    Gl = np.ascontiguousarray(G[:, : 1 + P])
    bl, _, _, _, stl, GGl = site_gls(itt, Gl, srow, ones, K, L)
    if stl == STATUS_OK:
        c3 = cr3_cov(itt, Gl, bl, GGl, K, L)
        if c3[0, 0] > 0:
            diag[D_INTERCEPT_TEST] = bl[0] * bl[0] / c3[0, 0]
