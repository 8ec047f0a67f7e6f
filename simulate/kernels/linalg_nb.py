"""Small dense linear algebra for the estimator kernels: guarded inverses, sandwiches, quadratic forms."""

import numpy as np
from numba import njit

REL_TOL = 1e-11
"""Relative eigenvalue below which a matrix scaled to unit diagonal counts as singular."""


@njit(cache=True)
def sym_inverse(A, require_pd):
    """Inverse of a symmetric matrix, with a relative-eigenvalue singularity check.

    Returns (inverse, ok). The check is on the matrix scaled to unit diagonal so that
    it does not depend on the units of the variables.
    """
    m = A.shape[0]
    if m == 1:
        a_inv, ok = scalar_inverse(A[0, 0])
        return np.full((1, 1), a_inv), ok
    d = np.empty(m)
    for j in range(m):
        if not (A[j, j] > 0.0) or not np.isfinite(A[j, j]):
            return np.full((m, m), np.nan), False
        d[j] = 1.0 / np.sqrt(A[j, j])
    C = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            C[a, b] = A[a, b] * d[a] * d[b]
    for a in range(m):
        for b in range(m):
            if not np.isfinite(C[a, b]):
                return np.full((m, m), np.nan), False
    ev = np.linalg.eigvalsh(C)
    big = np.max(np.abs(ev))
    if require_pd:
        if ev[0] <= REL_TOL * big:
            return np.full((m, m), np.nan), False
    else:
        if np.min(np.abs(ev)) <= REL_TOL * big:
            return np.full((m, m), np.nan), False
    Ci = np.linalg.inv(C)
    out = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            out[a, b] = Ci[a, b] * d[a] * d[b]
    return out, True


@njit(cache=True)
def scalar_inverse(a):
    """:func:`sym_inverse` of the 1 x 1 matrix [[a]], without LAPACK: (1/a, a > 0 and finite).

    The same operations as the general path (scale to unit diagonal, invert, scale back;
    the one eigenvalue of the scaled matrix is positive), so the same bits.
    """
    if not (a > 0.0) or not np.isfinite(a):
        return np.nan, False
    d = 1.0 / np.sqrt(a)
    return (1.0 / (a * d * d)) * d * d, True


@njit(cache=True)
def sandwich_se(bread_inv, meat, scale):
    """sqrt(diag(scale * bread^{-1} meat bread^{-1}')), NaN where the variance is negative."""
    P = bread_inv.shape[0]
    out = np.empty(P)
    for p in range(P):
        v = 0.0
        for a in range(P):
            row = 0.0
            for c in range(P):
                row += meat[a, c] * bread_inv[p, c]
            v += bread_inv[p, a] * row
        out[p] = np.sqrt(scale * v) if v >= 0 else np.nan
    return out


@njit(cache=True)
def quad(M, b):
    """The quadratic form b'M b."""
    Q = b.shape[0]
    acc = 0.0
    for a in range(Q):
        row = 0.0
        for c in range(Q):
            row += M[a, c] * b[c]
        acc += b[a] * row
    return acc


@njit(cache=True)
def coef_vector(beta):
    """The coefficient vector b = (1, -beta') so that the residual is u = b'v."""
    P = beta.shape[0]
    b = np.empty(P + 1)
    b[0] = 1.0
    for p in range(P):
        b[p + 1] = -beta[p]
    return b
