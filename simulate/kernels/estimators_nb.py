r"""Numba kernels: cell-level sufficient statistics and every MSMM-IV estimator.

Nothing here knows pandas, names or files. Kernels take arrays, return arrays and
integer status codes, and never raise for a numerical failure.

Notation
--------
Persons i = 1..n in sites s = 0..K-1 and arms t = 0..L (A = L + 1 arms); a cell
c = (s, t). The Q = P + 1 variables are stacked as v_i = (Y_i, M_1i, ..., M_Pi), so
index 0 is the outcome and indices 1..P are the mediators (the endogenous regressors
x_i). With site fixed effects W (K dummies) and the saturated site-by-arm instruments
Z (K L dummies, arms 1..L in every site), [Z, W] spans the K A cell dummies, so

* P_{[Z,W]} v = cell means, P_W v = site means, and P_{Z~} = P_{[Z,W]} - P_W with
  Z~ = M_W Z;
* ``B  = V' P_{Z~} V = sum_c n_c (vbar_c - vbar_s)(vbar_c - vbar_s)'``
  (between cells, within sites);
* ``Wc = V' M_{[Z,W]} V = sum_c sum_{i in c} (v_i - vbar_c)(v_i - vbar_c)'``
  (within cells);
* ``V' M_W V = Wc + B`` (within sites).

Every k-class estimator with site fixed effects is then
``beta(kappa) = A_XX^{-1} A_XY`` with ``A = B + (1 - kappa) Wc``:
OLS (kappa = 0), 2SLS (kappa = 1), LIML (kappa = smallest root of
det(Wc + B - kappa Wc) = 0), Fuller (kappa_LIML - alpha / (n - K A)) and the
modified bias-corrected 2SLS of Kolesar, Chetty, Friedman, Glaeser & Imbens (2015)
(kappa = 1 + K L / (n - K A)). See ``notes/estimators.md`` for every formula.
"""

import numpy as np
from numba import njit

# ---------------------------------------------------------------- status codes
STATUS_OK = 0
STATUS_SINGULAR = 1  # singular (or numerically singular) first stage / design
STATUS_EMPTY_CELL = 2  # a site with an empty arm
STATUS_TOO_FEW_SITES = 3  # fewer site contrasts than mediators (or regressors)
STATUS_NOT_APPLICABLE = 4  # e.g. the pooled Wald estimator with P > 1
STATUS_SINGLETON_CELL = 5  # a cell with one person (UJIVE, precision weights)
STATUS_NUMERICAL = 6  # a non-finite result or a failed decomposition

# ---------------------------------------------------------------- estimator rows
E_OLS = 0
E_TSLS = 1
E_LIML = 2
E_FULLER = 3
E_UJIVE = 4
E_BTSLS = 5
E_BETWEEN_OLS = 6
E_BETWEEN_PRECISION = 7
E_BETWEEN_INTERCEPT = 8
E_WALD = 9
N_ESTIMATORS = 10

# ---------------------------------------------------------------- standard errors
SE_CONVENTIONAL = 0
SE_HC0 = 1
SE_HC1 = 2
SE_CLUSTER = 3
SE_MANY_INSTRUMENT = 4
SE_HETEROGENEITY = 5
N_SE = 6

# ---------------------------------------------------------------- scalar diagnostics
D_N = 0
D_SITES = 1
D_ARMS = 2
D_LIML_KAPPA = 3
D_FULLER_KAPPA = 4
D_SIGMA_MIN = 5  # smallest singular value of the (K L) x P compliance matrix
D_SIGMA_RATIO = 6  # smallest / largest singular value
D_SARGAN = 7  # n u'P u / u'M_W u with 2SLS residuals
D_SARGAN_DF = 8
D_CRAGG_DONALD = 9  # (n - K A)(kappa_LIML - 1), the LIML overid statistic
D_NONLINEAR = 10  # Wald statistic of the squared compliances (between-site)
D_NONLINEAR_DF = 11
D_DIRECT = 12  # intercept (mean direct effect) of between_intercept
D_DIRECT_SE_CONVENTIONAL = 13
D_DIRECT_SE_HC0 = 14
D_DIRECT_SE_HC1 = 15
D_FIRST_STAGE_DF1 = 16
D_FIRST_STAGE_DF2 = 17
D_NONLINEAR_STATUS = 18
N_DIAGNOSTICS = 19

_REL_TOL = 1e-11


# ============================================================ sufficient statistics
@njit(cache=True)
def _sum4(x, n):
    """sum(x[:n]) in four interleaved partial sums (j mod 4), combined in a fixed order.

    Four independent chains instead of one: the additions no longer wait on each other.
    """
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    m = n - n % 4
    for j in range(0, m, 4):
        s0 += x[j]
        s1 += x[j + 1]
        s2 += x[j + 2]
        s3 += x[j + 3]
    for j in range(m, n):
        s0 += x[j]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def _dot4(x, y, n):
    """sum_j x[j] y[j] over j < n, in the partial sums of :func:`_sum4`."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    m = n - n % 4
    for j in range(0, m, 4):
        s0 += x[j] * y[j]
        s1 += x[j + 1] * y[j + 1]
        s2 += x[j + 2] * y[j + 2]
        s3 += x[j + 3] * y[j + 3]
    for j in range(m, n):
        s0 += x[j] * y[j]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def _cell_moments(w, nc, mean_c, cross_c):
    """One cell's mean and centred cross-product from its persons' v = (Y, M) in w[:, :nc].

    w is (Q, >= nc), one column per person in person order; it is centred in place.  Two
    passes (the mean, then centred products) so that the sums of squares do not lose digits
    to large means.  An empty cell gets zeros.
    """
    Q = w.shape[0]
    for q in range(Q):
        mean_c[q] = _sum4(w[q], nc) / nc if nc > 0 else 0.0
        for j in range(nc):
            w[q, j] -= mean_c[q]
    for a in range(Q):
        for b in range(a, Q):
            cross_c[a, b] = _dot4(w[a], w[b], nc)
            cross_c[b, a] = cross_c[a, b]


@njit(cache=True)
def site_cell_statistics(s, arm, mediators, outcome, start, stop, count, mean, cross, w):
    """Fill site s's cells of (count, mean, cross) from persons start..stop-1, all of site s.

    ``w`` is a work array (Q, >= stop - start + 1).  Each arm's persons are gathered in
    person order (a branch-free compaction: every person is written, the next slot advances
    only for the arm's own) and passed to :func:`_cell_moments`, exactly as
    :func:`cell_statistics` does, so the fused replication kernel (which calls this per
    site while the site's persons are in cache) gives bit-identical statistics.
    """
    A = count.shape[1]
    P = mediators.shape[1]
    for t in range(A):
        k = 0
        for i in range(start, stop):
            w[0, k] = outcome[i]
            for p in range(P):
                w[p + 1, k] = mediators[i, p]
            k += 1 if arm[i] == t else 0
        count[s, t] = k
        _cell_moments(w, k, mean[s, t], cross[s, t])


@njit(cache=True)
def cell_statistics(site, arm, mediators, outcome, n_sites, n_arms):
    r"""Per-cell counts, means and centred cross-products of v = (Y, M).

    Each cell's persons, in person order, go through :func:`_cell_moments` (two passes:
    means, then centred products, so that the within-cell sums of squares do not lose
    digits to large means; sums in four interleaved partial sums).

    Parameters
    ----------
    site, arm : int64 arrays (n,)
        Site codes 0..K-1 and arm codes 0..L; need not be sorted.
    mediators : float64 array (n, P)
    outcome : float64 array (n,)
    n_sites, n_arms : int
        K and A = L + 1.

    Returns
    -------
    count : int64 (K, A)
        n_c.
    mean : float64 (K, A, Q)
        vbar_c = n_c^{-1} sum_{i in c} v_i (0 for an empty cell).
    cross : float64 (K, A, Q, Q)
        W_c = sum_{i in c} (v_i - vbar_c)(v_i - vbar_c)'.
    """
    n = outcome.shape[0]
    P = mediators.shape[1]
    Q = P + 1
    A = n_arms
    count = np.zeros((n_sites, n_arms), np.int64)
    for i in range(n):
        count[site[i], arm[i]] += 1
    # each cell's persons in person order (a stable counting sort by cell)
    first = np.zeros(n_sites * A + 1, np.int64)
    for s in range(n_sites):
        for t in range(A):
            first[s * A + t + 1] = first[s * A + t] + count[s, t]
    order = np.empty(n, np.int64)
    fill = first[:-1].copy()
    for i in range(n):
        c = site[i] * A + arm[i]
        order[fill[c]] = i
        fill[c] += 1
    mean = np.zeros((n_sites, n_arms, Q))
    cross = np.zeros((n_sites, n_arms, Q, Q))
    nmax = 0
    for s in range(n_sites):
        for t in range(A):
            nmax = max(nmax, count[s, t])
    w = np.empty((Q, nmax + 1))
    for s in range(n_sites):
        for t in range(A):
            c = s * A + t
            nc = count[s, t]
            for j in range(nc):
                i = order[first[c] + j]
                w[0, j] = outcome[i]
                for p in range(P):
                    w[p + 1, j] = mediators[i, p]
            _cell_moments(w, nc, mean[s, t], cross[s, t])
    return count, mean, cross


@njit(cache=True)
def site_moments(count, mean):
    """Site sizes n_s, site means vbar_s and arm means tbar_s (arm codes as values)."""
    K, A, Q = mean.shape
    n_site = np.zeros(K, np.int64)
    site_mean = np.zeros((K, Q))
    arm_mean = np.zeros(K)
    for s in range(K):
        for t in range(A):
            n_site[s] += count[s, t]
            arm_mean[s] += count[s, t] * t
            for q in range(Q):
                site_mean[s, q] += count[s, t] * mean[s, t, q]
        if n_site[s] > 0:
            arm_mean[s] /= n_site[s]
            for q in range(Q):
                site_mean[s, q] /= n_site[s]
    return n_site, site_mean, arm_mean


@njit(cache=True)
def cell_deviations(mean, site_mean):
    """Within-site deviations of the cell means, vbar_c - vbar_s: (K, A, Q)."""
    K, A, Q = mean.shape
    dev = np.empty((K, A, Q))
    for s in range(K):
        for t in range(A):
            for q in range(Q):
                dev[s, t, q] = mean[s, t, q] - site_mean[s, q]
    return dev


@njit(cache=True)
def between_within(count, mean, cross):
    r"""B = V'P_{Z~}V (between cells within sites) and Wc = V'M_{[Z,W]}V (within cells)."""
    _, site_mean, _ = site_moments(count, mean)
    return _between_within(count, cell_deviations(mean, site_mean), cross)


@njit(cache=True)
def _between_within(count, dev, cross):
    """:func:`between_within` given the cell deviations ``dev`` = vbar_c - vbar_s."""
    K, A, Q = dev.shape
    B = np.zeros((Q, Q))
    Wc = np.zeros((Q, Q))
    for s in range(K):
        for t in range(A):
            nc = count[s, t]
            if nc == 0:
                continue
            for a in range(Q):
                da = dev[s, t, a]
                for b in range(Q):
                    B[a, b] += nc * da * dev[s, t, b]
                    Wc[a, b] += cross[s, t, a, b]
    return B, Wc


# ============================================================ small linear algebra
@njit(cache=True)
def _sym_inverse(A, require_pd):
    """Inverse of a symmetric matrix, with a relative-eigenvalue singularity check.

    Returns (inverse, ok). The check is on the matrix scaled to unit diagonal so that
    it does not depend on the units of the variables.
    """
    m = A.shape[0]
    if m == 1:
        a_inv, ok = _scalar_inverse(A[0, 0])
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
        if ev[0] <= _REL_TOL * big:
            return np.full((m, m), np.nan), False
    else:
        if np.min(np.abs(ev)) <= _REL_TOL * big:
            return np.full((m, m), np.nan), False
    Ci = np.linalg.inv(C)
    out = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            out[a, b] = Ci[a, b] * d[a] * d[b]
    return out, True


@njit(cache=True)
def _scalar_inverse(a):
    """:func:`_sym_inverse` of the 1 x 1 matrix [[a]], without LAPACK: (1/a, a > 0 and finite).

    The same operations as the general path (scale to unit diagonal, invert, scale back;
    the one eigenvalue of the scaled matrix is positive), so the same bits.
    """
    if not (a > 0.0) or not np.isfinite(a):
        return np.nan, False
    d = 1.0 / np.sqrt(a)
    return (1.0 / (a * d * d)) * d * d, True


@njit(cache=True)
def _sandwich_se(bread_inv, meat, scale):
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
def _quad(M, b):
    """b'M b."""
    Q = b.shape[0]
    acc = 0.0
    for a in range(Q):
        row = 0.0
        for c in range(Q):
            row += M[a, c] * b[c]
        acc += b[a] * row
    return acc


@njit(cache=True)
def _coef_vector(beta):
    """b = (1, -beta') so that the residual is u = b'v."""
    P = beta.shape[0]
    b = np.empty(P + 1)
    b[0] = 1.0
    for p in range(P):
        b[p + 1] = -beta[p]
    return b


@njit(cache=True)
def liml_kappa(B, Wc):
    r"""LIML kappa: the smallest root of det(Wc + B - kappa Wc) = 0.

    Computed as the smallest eigenvalue of L^{-1}(Wc + B)L^{-T} with Wc = L L'.
    Returns (kappa, ok).
    """
    Q = Wc.shape[0]
    d = np.empty(Q)
    for j in range(Q):
        if not (Wc[j, j] > 0.0):
            return np.nan, False
        d[j] = 1.0 / np.sqrt(Wc[j, j])
    Ws = np.empty((Q, Q))
    Ts = np.empty((Q, Q))
    for a in range(Q):
        for b in range(Q):
            Ws[a, b] = Wc[a, b] * d[a] * d[b]
            Ts[a, b] = (Wc[a, b] + B[a, b]) * d[a] * d[b]
    ev = np.linalg.eigvalsh(Ws)
    if ev[0] <= _REL_TOL * ev[Q - 1]:
        return np.nan, False
    L = np.linalg.cholesky(Ws)
    Li = np.linalg.inv(L)
    C = Li @ Ts @ Li.T
    C = 0.5 * (C + C.T)
    return np.linalg.eigvalsh(C)[0], True


# ============================================================ k-class family
@njit(cache=True)
def kclass_fit(count, mean, cross, B, Wc, kappa, require_pd):
    r"""k-class estimate with site fixed effects and its standard errors.

    ``beta = A_XX^{-1} A_XY``, ``A = B + (1 - kappa) Wc``. With ``b = (1, -beta')``,
    the residuals are ``u_i = b'(v_i - vbar_s)`` and ``u'u = b'(Wc + B)b``.

    Standard errors (columns of the returned (N_SE, P) array):

    * conventional: ``(u'u / n) A_XX^{-1}`` (linearmodels ``unadjusted``,
      Stata ``ivregress``);
    * HC0: ``A_XX^{-1} [sum_c d_c d_c' sum_{i in c} u_i^2] A_XX^{-1}`` with
      ``d_c = xbar_c - xbar_s`` the fitted first stage net of site effects (the
      convention of linearmodels ``robust`` and Stata for every k-class estimator;
      exact HC0 for 2SLS). ``sum_{i in c} u_i^2 = b'[W_c + n_c (vbar_c - vbar_s)
      (vbar_c - vbar_s)']b``. For OLS the person-level version is filled in by
      :func:`person_meats`;
    * HC1: HC0 times n / (n - K - P);
    * site-clustered: scores ``sum_{i in s} h_i u_i`` of the k-class estimating
      equation, ``h_i = (x_i - xbar_s) - kappa (x_i - xbar_c)``, which per cell are
      ``(1 - kappa) W_c[X, :] b + n_c d_c g_c`` with ``g_c = b'(vbar_c - vbar_s)``;
      small-sample factor G/(G-1) (n-1)/(n-K-P) (Stata, linearmodels debiased);
    * heterogeneity-robust (Kolesar 2013): influence ``psi_i = d_c u_i + g_c
      (x_i - xbar_c)``, which adds the first-stage estimation error when effects
      vary; its meat per cell is ``d d' sum u^2 + g (d w' + w d') + g^2 W_c[X,X]``
      with ``w = W_c[X, :] b``.

    Returns
    -------
    beta : (P,)
    se : (N_SE, P)  (the many-instrument column is left NaN)
    status : int
    bread_inv : (P, P)  A_XX^{-1}
    """
    _, site_mean, _ = site_moments(count, mean)
    return _kclass_fit(count, cell_deviations(mean, site_mean), cross, B, Wc, kappa, require_pd)


@njit(cache=True)
def _kclass_fit(count, dev, cross, B, Wc, kappa, require_pd):
    """:func:`kclass_fit` given the cell deviations ``dev`` = vbar_c - vbar_s."""
    K, A, Q = dev.shape
    P = Q - 1
    se = np.full((N_SE, P), np.nan)
    beta = np.full(P, np.nan)
    Axx = np.empty((P, P))
    Axy = np.empty(P)
    for p in range(P):
        Axy[p] = B[p + 1, 0] + (1.0 - kappa) * Wc[p + 1, 0]
        for r in range(P):
            Axx[p, r] = B[p + 1, r + 1] + (1.0 - kappa) * Wc[p + 1, r + 1]
    Ainv, ok = _sym_inverse(Axx, require_pd)
    if not ok:
        return beta, se, STATUS_SINGULAR, Ainv
    for p in range(P):
        acc = 0.0
        for r in range(P):
            acc += Ainv[p, r] * Axy[r]
        beta[p] = acc
    b = _coef_vector(beta)
    n = 0
    for s in range(K):
        for t in range(A):
            n += count[s, t]
    ssr = _quad(Wc + B, b)
    s2 = ssr / n
    for p in range(P):
        se[SE_CONVENTIONAL, p] = np.sqrt(s2 * Ainv[p, p]) if Ainv[p, p] >= 0 else np.nan
    meat = np.zeros((P, P))
    meat_cl = np.zeros((P, P))
    meat_h = np.zeros((P, P))
    score = np.empty(P)
    Wb = np.empty(Q)
    for s in range(K):
        score[:] = 0.0
        for t in range(A):
            nc = count[s, t]
            if nc == 0:
                continue
            # g_c = b'(vbar_c - vbar_s), Wb = W_c b (its X rows are w), u2 = sum_{i in c} u_i^2
            g = 0.0
            bWb = 0.0
            for q in range(Q):
                g += b[q] * dev[s, t, q]
                acc = 0.0
                for r in range(Q):
                    acc += cross[s, t, q, r] * b[r]
                Wb[q] = acc
                bWb += b[q] * acc
            u2 = bWb + nc * g * g
            # d = dev[s, t, 1:]; the meats are symmetric: upper triangle here, mirrored below
            for p in range(P):
                dp = dev[s, t, p + 1]
                wp = Wb[p + 1]
                score[p] += (1.0 - kappa) * wp + nc * dp * g
                for r in range(p, P):
                    dr = dev[s, t, r + 1]
                    ddu = dp * dr * u2
                    meat[p, r] += ddu
                    meat_h[p, r] += ddu + g * (dp * Wb[r + 1] + wp * dr) + g * g * cross[s, t, p + 1, r + 1]
        for p in range(P):
            for r in range(p, P):
                meat_cl[p, r] += score[p] * score[r]
    for p in range(P):
        for r in range(p + 1, P):
            meat[r, p] = meat[p, r]
            meat_h[r, p] = meat_h[p, r]
            meat_cl[r, p] = meat_cl[p, r]
    se[SE_HC0] = _sandwich_se(Ainv, meat, 1.0)
    dof = n - K - P
    se[SE_HC1] = se[SE_HC0] * np.sqrt(n / dof) if dof > 0 else np.full(P, np.nan)
    if K > 1 and dof > 0:
        se[SE_CLUSTER] = _sandwich_se(
            Ainv, meat_cl, (K / (K - 1.0)) * ((n - 1.0) / dof)
        )
    se[SE_HETEROGENEITY] = _sandwich_se(Ainv, meat_h, 1.0)
    for p in range(P):
        if not np.isfinite(beta[p]):
            return beta, se, STATUS_NUMERICAL, Ainv
    return beta, se, STATUS_OK, Ainv


@njit(cache=True)
def bekker_se(B, Wc, beta, kappa, n, n_sites):
    r"""Bekker (1994) many-instrument standard errors for a k-class estimator.

    The form of Hansen, Hausman & Newey (2008, JBES 26:398), eq. for LIML/FULL,
    applied after partialling out the site effects (so ``I -> M_W``,
    ``P -> P_{Z~}``, ``I - P -> M_{[Z,W]}``):

    ``V = H^{-1} Sigma H^{-1}``, ``H = X'P X - alpha X'M_W X``,
    ``Sigma = sigma^2 [(1 - alpha)^2 X~'P X~ + alpha^2 X~'M_{[Z,W]} X~]``,
    ``X~ = X - u (u'X / u'u)``, ``alpha = (kappa - 1) / kappa``,
    ``sigma^2 = u'u / (n - K - P)``.

    Everything is a quadratic form in B and Wc: with ``b = (1, -beta')`` and
    ``C = E_X - b (b'(Wc+B)E_X) / b'(Wc+B)b``, ``X~'P X~ = C'BC`` and
    ``X~'M X~ = C'Wc C``.
    """
    Q = B.shape[0]
    P = Q - 1
    out = np.full(P, np.nan)
    b = _coef_vector(beta)
    S = Wc + B
    uu = _quad(S, b)
    dof = n - n_sites - P
    if not (uu > 0) or dof <= 0 or not np.isfinite(kappa) or kappa == 0.0:
        return out
    alpha = (kappa - 1.0) / kappa
    sigma2 = uu / dof
    C = np.zeros((Q, P))
    Sb = S @ b
    for p in range(P):
        C[p + 1, p] = 1.0
    for q in range(Q):
        for p in range(P):
            C[q, p] -= b[q] * Sb[p + 1] / uu
    H = np.ascontiguousarray(B[1:, 1:] - alpha * S[1:, 1:])
    Sig = sigma2 * ((1 - alpha) ** 2 * (C.T @ B @ C) + alpha**2 * (C.T @ Wc @ C))
    Hi, ok = _sym_inverse(H, False)
    if not ok:
        return out
    return _sandwich_se(Hi, Sig, 1.0)


@njit(cache=True)
def kcfgi_se(B, Wc, beta, n, n_sites, n_instruments):
    r"""Many-invalid-instrument SE of the bias-corrected 2SLS (KCFGI 2015).

    With ``T = B / n``, ``S = Wc / (n - k - l)``, ``k = K L`` instruments,
    ``l = K`` site effects, ``Xi = T - (k/n) S`` (so that beta = Xi_XX^{-1}
    Xi_XY) and ``b = (1, -beta')``, the Gaussian many-instrument variance of
    ``sqrt(n) Xi b`` allowing direct effects (invalid instruments) uncorrelated with
    the first stage is (Kolesar 2018, ManyIV ``MDDelta`` with ``invalid=TRUE``)

    ``G = (b'Xi b) S + Xi b b'S + S b b'Xi + (b'S b) Xi
    + tau [(b'S b) S + S b b'S]``, ``tau = (k/n)(n - l)/(n - k - l)``,

    and ``Var(beta) = Xi_XX^{-1} G_XX Xi_XX^{-1} / n``.
    """
    Q = B.shape[0]
    P = Q - 1
    out = np.full(P, np.nan)
    k = n_instruments
    l = n_sites
    nu = n - k - l
    if nu <= 0:
        return out
    T = B / n
    S = Wc / nu
    Xi = T - (k / n) * S
    tau = (k / n) * (n - l) / nu
    b = _coef_vector(beta)
    Xb = Xi @ b
    Sb = S @ b
    bXb = b @ Xb
    bSb = b @ Sb
    G = np.empty((Q, Q))
    for a in range(Q):
        for c in range(Q):
            G[a, c] = (
                bXb * S[a, c]
                + Xb[a] * Sb[c]
                + Sb[a] * Xb[c]
                + bSb * Xi[a, c]
                + tau * (bSb * S[a, c] + Sb[a] * Sb[c])
            )
    Xxx = np.ascontiguousarray(Xi[1:, 1:])
    Xi_inv, ok = _sym_inverse(Xxx, True)
    if not ok:
        return out
    return _sandwich_se(Xi_inv, np.ascontiguousarray(G[1:, 1:]), 1.0 / n)


# ============================================================ UJIVE
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
    B, Wc = _between_within(count, dev, cross)
    return _ujive_fit(count, dev, cross, B, Wc)


@njit(cache=True)
def _ujive_fit(count, dev, cross, B, Wc):
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
    Gi, ok = _sym_inverse(G, False)
    if not ok:
        return beta, se, STATUS_SINGULAR, Gi
    for p in range(P):
        acc = 0.0
        for r in range(P):
            acc += Gi[p, r] * XV[r, 0]
        beta[p] = acc
    b = _coef_vector(beta)
    s2 = _quad(Wc + B, b) / n
    se[SE_CONVENTIONAL] = _sandwich_se(Gi, XX, s2)
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
        se[SE_CLUSTER] = _sandwich_se(Gi, meat_cl, (K / (K - 1.0)) * ((n - 1.0) / dof))
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
    (:func:`_dot4`).
    """
    P = mediators.shape[1]
    K, A = count.shape
    n_site, site_mean, _ = site_moments(count, mean)
    # per cell c = s A + t: ybar_s, xbar_s (columns 1..P), c2_c and (c1_s - c2_c) d_c
    C2 = 1 + P
    ALPHA = 2 + P
    cell = np.zeros((K * A, 2 + 2 * P))
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
    n = outcome.shape[0]
    score_ols = np.empty((P, _PERSON_BLOCK))
    score_uj = np.empty((P, _PERSON_BLOCK))
    u_ols = np.empty(_PERSON_BLOCK)
    u_uj = np.empty(_PERSON_BLOCK)
    meat_ols = np.zeros((P, P))
    meat_uj = np.zeros((P, P))
    do_uj = np.isfinite(beta_ujive[0])
    for i0 in range(0, n, _PERSON_BLOCK):
        m = min(_PERSON_BLOCK, n - i0)
        # h_i of both fits by column, and their residuals u_i
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
        for p in range(P):
            for j in range(m):
                score_ols[p, j] *= u_ols[j]
                score_uj[p, j] *= u_uj[j]
        for p in range(P):
            for r in range(p, P):
                meat_ols[p, r] += _dot4(score_ols[p], score_ols[r], m)
                if do_uj:
                    meat_uj[p, r] += _dot4(score_uj[p], score_uj[r], m)
    for p in range(P):
        for r in range(p + 1, P):
            meat_ols[r, p] = meat_ols[p, r]
            meat_uj[r, p] = meat_uj[p, r]
    return meat_ols, meat_uj


# ============================================================ between-site regressions
@njit(cache=True)
def site_contrasts(count, mean):
    r"""Site ITT contrasts against arm 0: rows (s, t), t = 1..L.

    Returns ``itt_outcome`` (K L,) = ybar_{st} - ybar_{s0}, ``compliance``
    (K L, P) = xbar_{st} - xbar_{s0} (the estimated compliance matrix), ``arm_value``
    (K L,) = t and ``site_of_row`` (K L,).
    """
    K, A, Q = mean.shape
    P = Q - 1
    L = A - 1
    N = K * L
    itt = np.empty(N)
    comp = np.empty((N, P))
    tval = np.empty(N)
    srow = np.empty(N, np.int64)
    r = 0
    for s in range(K):
        for t in range(1, A):
            itt[r] = mean[s, t, 0] - mean[s, 0, 0]
            for p in range(P):
                comp[r, p] = mean[s, t, p + 1] - mean[s, 0, p + 1]
            tval[r] = t
            srow[r] = s
            r += 1
    return itt, comp, tval, srow


@njit(cache=True)
def _cr3_cov(itt, G, beta, Gi, n_sites, L):
    r"""Jackknife (CR3 / HC3) site-clustered covariance of the unweighted between-site regression.

    ``(G'G)^{-1} [sum_s G_s' e_s e_s' G_s] (G'G)^{-1}`` with ``e_s = (I - H_ss)^{-1} r_s`` and
    ``H_ss = G_s (G'G)^{-1} G_s'`` the site's block of the hat matrix (Bell & McCaffrey 2002;
    MacKinnon & White 1985).  The squared compliances of the nonlinearity test have high
    leverage, and the HC1 sandwich then rejects about twice as often as it should with 20-50
    sites; with this covariance the size is close to nominal.  NaN where a leverage block is
    singular.  ``Gi`` = (G'G)^{-1}, as returned by :func:`_site_gls` with unit weights.
    """
    N, p = G.shape
    out = np.full((p, p), np.nan)
    res = itt - G @ beta
    meat = np.zeros((p, p))
    GsGi = np.empty((L, p))  # G_s (G'G)^{-1}
    Hs = np.empty((L, L))  # I - H_ss
    es = np.empty(L)
    sc = np.empty(p)
    for s in range(n_sites):
        r0 = s * L
        for a in range(L):
            for k in range(p):
                acc = 0.0
                for j in range(p):
                    acc += G[r0 + a, j] * Gi[j, k]
                GsGi[a, k] = acc
        for a in range(L):
            for c in range(L):
                acc = 0.0
                for k in range(p):
                    acc += GsGi[a, k] * G[r0 + c, k]
                Hs[a, c] = (1.0 if a == c else 0.0) - acc
        if L == 1:  # a scalar leverage: its determinant is itself
            det = Hs[0, 0]
            if not abs(det) > 1e-12:
                return out
            es[0] = res[r0] / det
        else:
            det = np.linalg.det(Hs)
            if not abs(det) > 1e-12:
                return out
            es[:] = np.linalg.solve(Hs, res[r0:r0 + L])
        for j in range(p):
            acc = 0.0
            for a in range(L):
                acc += G[r0 + a, j] * es[a]
            sc[j] = acc
        for j in range(p):
            for k in range(p):
                meat[j, k] += sc[j] * sc[k]
    return Gi @ meat @ Gi


@njit(cache=True)
def _site_gls(itt, G, site_of_row, weight, n_sites, L):
    r"""Weighted least squares of itt on the columns of G through the origin.

    ``weight`` is (K, L, L): a weight matrix per site (block-diagonal GLS).
    ``beta = (sum_s G_s'W_s G_s)^{-1} sum_s G_s'W_s itt_s``.

    Conventional covariance ``s^2 (G'WG)^{-1}`` with ``s^2 = r'Wr / (N - p)``;
    robust: the site-level sandwich ``(G'WG)^{-1} [sum_s G_s'W_s r_s r_s'W_s G_s]
    (G'WG)^{-1}`` (HC0 when L = 1) and that times K / (K - p).
    Returns (beta, cov_conventional, cov_hc0, cov_hc1, status, (G'WG)^{-1}).
    """
    N, p = G.shape
    beta = np.full(p, np.nan)
    nanm = np.full((p, p), np.nan)
    if N <= p or n_sites <= p:
        return beta, nanm, nanm, nanm, STATUS_TOO_FEW_SITES, nanm
    GWG = np.zeros((p, p))
    GWy = np.zeros(p)
    for s in range(n_sites):
        for a in range(L):
            ra = s * L + a
            for c in range(L):
                rc = s * L + c
                wac = weight[s, a, c]
                for j in range(p):
                    gw = G[ra, j] * wac
                    GWy[j] += gw * itt[rc]
                    for k in range(p):
                        GWG[j, k] += gw * G[rc, k]
    Gi, ok = _sym_inverse(GWG, True)
    if not ok:
        return beta, nanm, nanm, nanm, STATUS_SINGULAR, nanm
    beta = Gi @ GWy
    res = itt - G @ beta
    rwr = 0.0
    meat = np.zeros((p, p))
    sc = np.empty(p)
    for s in range(n_sites):
        sc[:] = 0.0
        for a in range(L):
            ra = s * L + a
            for c in range(L):
                rc = s * L + c
                wac = weight[s, a, c]
                rwr += res[ra] * wac * res[rc]
                for j in range(p):
                    sc[j] += G[ra, j] * wac * res[rc]
        for j in range(p):
            for k in range(p):
                meat[j, k] += sc[j] * sc[k]
    cov_c = Gi * (rwr / (N - p))
    cov_r = Gi @ meat @ Gi
    cov_1 = cov_r * (n_sites / (n_sites - p))
    for j in range(p):
        if not np.isfinite(beta[j]):
            return beta, cov_c, cov_r, cov_1, STATUS_NUMERICAL, Gi
    return beta, cov_c, cov_r, cov_1, STATUS_OK, Gi


@njit(cache=True)
def precision_weights(count, cross):
    r"""Inverse of the estimated covariance of each site's ITT contrasts on Y.

    ``V_s = diag(s^2_{st} / n_{st})_{t=1..L} + (s^2_{s0} / n_{s0}) 1 1'`` with
    cell variances ``s^2_c = W_c[Y, Y] / (n_c - 1)``; weight ``W_s = V_s^{-1}``
    (for a binary treatment ``1 / (s^2_{s1}/n_{s1} + s^2_{s0}/n_{s0})``).
    Returns (W, status).
    """
    K, A = count.shape
    L = A - 1
    W = np.zeros((K, L, L))
    for s in range(K):
        for t in range(A):
            if count[s, t] < 2:
                return W, STATUS_SINGLETON_CELL
        v0 = cross[s, 0, 0, 0] / (count[s, 0] - 1.0) / count[s, 0]
        if L == 1:  # binary treatment: V_s is a scalar
            w, ok = _scalar_inverse(v0 + cross[s, 1, 0, 0] / (count[s, 1] - 1.0) / count[s, 1])
            if not ok:
                return W, STATUS_SINGULAR
            W[s, 0, 0] = w
            continue
        V = np.zeros((L, L))
        for a in range(L):
            for c in range(L):
                V[a, c] = v0
            V[a, a] += cross[s, a + 1, 0, 0] / (count[s, a + 1] - 1.0) / count[s, a + 1]
        Vi, ok = _sym_inverse(V, True)
        if not ok:
            return W, STATUS_SINGULAR
        W[s] = Vi
    return W, STATUS_OK


# ============================================================ everything from statistics
@njit(cache=True)
def _put_site_fit(est, se, status, e, beta, cov_c, cov_r, cov_1, st, first):
    """Store a between-site regression as estimator e: the mediators' coefficients are
    beta[first:first + P] (after ``first`` leading columns such as the intercept), their
    conventional, HC0 and HC1 SEs the roots of the covariances' diagonals."""
    P = est.shape[1]
    status[e] = st
    for p in range(P):
        j = first + p
        est[e, p] = beta[j]
        se[e, SE_CONVENTIONAL, p] = np.sqrt(cov_c[j, j])
        se[e, SE_HC0, p] = np.sqrt(cov_r[j, j])
        se[e, SE_HC1, p] = np.sqrt(cov_1[j, j])


@njit(cache=True)
def fit_from_statistics(count, mean, cross, fuller_alpha):
    r"""Every estimator, its standard errors and the diagnostics, from cell statistics.

    Returns
    -------
    estimate : (N_ESTIMATORS, P)
    se : (N_ESTIMATORS, N_SE, P)
    status : (N_ESTIMATORS,) int64
    diagnostics : (N_DIAGNOSTICS,)
    first_stage_f : (P,)
        ``(B_pp / (K L)) / (Wc_pp / (n - K A))``.
    conditional_f : (P,)
        Sanderson & Windmeijer (2016): with ``delta = B_{-p,-p}^{-1} B_{-p,p}`` and
        ``a = e_p - E_{-p} delta``, ``(a'B a / (K L - P + 1)) / (a'Wc a / (n - K A))``.
    """
    est, se, status, diag, fs_f, sw_f, _, _ = _fit_from_statistics(count, mean, cross, fuller_alpha)
    return est, se, status, diag, fs_f, sw_f


@njit(cache=True)
def _fit_from_statistics(count, mean, cross, fuller_alpha):
    """:func:`fit_from_statistics`, and the breads of OLS and UJIVE for their person-level HC0.

    Returns the six outputs of :func:`fit_from_statistics`, ``(Wc + B)_XX^{-1}`` and
    ``(Xdot'X)^{-1}`` (NaN where not computed).
    """
    K, A, Q = mean.shape
    P = Q - 1
    L = A - 1
    E = N_ESTIMATORS
    est = np.full((E, P), np.nan)
    se = np.full((E, N_SE, P), np.nan)
    status = np.zeros(E, np.int64)
    diag = np.full(N_DIAGNOSTICS, np.nan)
    fs_f = np.full(P, np.nan)
    sw_f = np.full(P, np.nan)
    n = 0
    empty = False
    for s in range(K):
        for t in range(A):
            n += count[s, t]
            if count[s, t] == 0:
                empty = True
    n_inst = K * L
    n_cells = K * A
    diag[D_N] = n
    diag[D_SITES] = K
    diag[D_ARMS] = A
    _, site_mean, arm_mean = site_moments(count, mean)
    dev = cell_deviations(mean, site_mean)
    B, Wc = _between_within(count, dev, cross)

    # ---- OLS with site effects: needs no instrument
    b_ols, s_ols, st_ols, ols_bread_inv = _kclass_fit(count, dev, cross, B, Wc, 0.0, True)
    est[E_OLS] = b_ols
    se[E_OLS] = s_ols
    se[E_OLS, SE_HC0] = np.nan  # person-level, see person_meats
    se[E_OLS, SE_HC1] = np.nan
    se[E_OLS, SE_HETEROGENEITY] = np.nan
    status[E_OLS] = st_ols

    iv_status = STATUS_OK
    if empty or L < 1:
        iv_status = STATUS_EMPTY_CELL
    elif n_inst < P:
        iv_status = STATUS_TOO_FEW_SITES
    ujive_bread_inv = np.full((P, P), np.nan)
    if iv_status != STATUS_OK:
        for e in range(1, E):
            status[e] = iv_status
        return est, se, status, diag, fs_f, sw_f, ols_bread_inv, ujive_bread_inv

    # ---- first-stage diagnostics
    df2 = n - n_cells
    diag[D_FIRST_STAGE_DF1] = n_inst
    diag[D_FIRST_STAGE_DF2] = df2
    if df2 > 0:
        for p in range(P):
            if Wc[p + 1, p + 1] > 0:
                fs_f[p] = (B[p + 1, p + 1] / n_inst) / (Wc[p + 1, p + 1] / df2)
        if P == 1:
            sw_f[0] = fs_f[0]
        elif n_inst - P + 1 > 0:
            for p in range(P):
                m = P - 1
                Boo = np.empty((m, m))
                Bop = np.empty(m)
                idx = np.empty(m, np.int64)
                j = 0
                for r in range(P):
                    if r != p:
                        idx[j] = r + 1
                        j += 1
                for a in range(m):
                    Bop[a] = B[idx[a], p + 1]
                    for c in range(m):
                        Boo[a, c] = B[idx[a], idx[c]]
                Boi, ok = _sym_inverse(Boo, True)
                if not ok:
                    continue
                dlt = Boi @ Bop
                avec = np.zeros(Q)
                avec[p + 1] = 1.0
                for a in range(m):
                    avec[idx[a]] = -dlt[a]
                den = _quad(Wc, avec) / df2
                if den > 0:
                    sw_f[p] = (_quad(B, avec) / (n_inst - P + 1)) / den

    # ---- compliance matrix rank
    itt, comp, tval, srow = site_contrasts(count, mean)
    # singular values of the compliance matrix = sqrt(eigenvalues of comp'comp)
    ev = np.linalg.eigvalsh(comp.T @ comp)
    smax = np.sqrt(max(ev[P - 1], 0.0))
    diag[D_SIGMA_MIN] = np.sqrt(max(ev[0], 0.0)) if n_inst >= P else 0.0
    diag[D_SIGMA_RATIO] = diag[D_SIGMA_MIN] / smax if smax > 0 else 0.0

    # ---- 2SLS
    b_2s, s_2s, st_2s, _ = _kclass_fit(count, dev, cross, B, Wc, 1.0, True)
    est[E_TSLS] = b_2s
    se[E_TSLS] = s_2s
    status[E_TSLS] = st_2s
    if st_2s == STATUS_OK and n_inst > P:
        bb = _coef_vector(b_2s)
        uu = _quad(Wc + B, bb)
        if uu > 0:
            diag[D_SARGAN] = n * _quad(B, bb) / uu
            diag[D_SARGAN_DF] = n_inst - P

    # ---- LIML and Fuller
    kap, okk = liml_kappa(B, Wc)
    if not okk:
        status[E_LIML] = STATUS_SINGULAR
        status[E_FULLER] = STATUS_SINGULAR
    else:
        diag[D_LIML_KAPPA] = kap
        diag[D_CRAGG_DONALD] = df2 * (kap - 1.0)
        b_l, s_l, st_l, _ = _kclass_fit(count, dev, cross, B, Wc, kap, True)
        est[E_LIML] = b_l
        se[E_LIML] = s_l
        status[E_LIML] = st_l
        if st_l == STATUS_OK:
            se[E_LIML, SE_MANY_INSTRUMENT] = bekker_se(B, Wc, b_l, kap, n, K)
        kf = kap - fuller_alpha / (n - n_cells)
        diag[D_FULLER_KAPPA] = kf
        b_f, s_f, st_f, _ = _kclass_fit(count, dev, cross, B, Wc, kf, True)
        est[E_FULLER] = b_f
        se[E_FULLER] = s_f
        status[E_FULLER] = st_f
        if st_f == STATUS_OK:
            se[E_FULLER, SE_MANY_INSTRUMENT] = bekker_se(B, Wc, b_f, kf, n, K)

    # ---- UJIVE
    b_u, s_u, st_u, ujive_bread_inv = _ujive_fit(count, dev, cross, B, Wc)
    est[E_UJIVE] = b_u
    se[E_UJIVE] = s_u
    status[E_UJIVE] = st_u

    # ---- bias-corrected 2SLS (KCFGI 2015)
    if df2 > 0:
        kb = 1.0 + n_inst / df2
        b_b, s_b, st_b, _ = _kclass_fit(count, dev, cross, B, Wc, kb, False)
        est[E_BTSLS] = b_b
        se[E_BTSLS] = s_b
        status[E_BTSLS] = st_b
        if st_b == STATUS_OK:
            se[E_BTSLS, SE_MANY_INSTRUMENT] = kcfgi_se(B, Wc, b_b, n, K, n_inst)
    else:
        status[E_BTSLS] = STATUS_SINGULAR

    # ---- between-site regressions of site ITT contrasts on site compliances
    N = K * L
    ones = np.zeros((K, L, L))
    for s in range(K):
        for a in range(L):
            ones[s, a, a] = 1.0
    bo, cc, cr, c1, sto, _ = _site_gls(itt, comp, srow, ones, K, L)
    _put_site_fit(est, se, status, E_BETWEEN_OLS, bo, cc, cr, c1, sto, 0)
    pw, stw = precision_weights(count, cross)
    if stw != STATUS_OK:
        status[E_BETWEEN_PRECISION] = stw
    else:
        bp, cc, cr, c1, stp, _ = _site_gls(itt, comp, srow, pw, K, L)
        _put_site_fit(est, se, status, E_BETWEEN_PRECISION, bp, cc, cr, c1, stp, 0)
    # with an intercept: the direct effect enters as kappa_s * t, so the
    # intercept column is the arm value t (1 for a binary treatment)
    Gi = np.empty((N, P + 1))
    for r in range(N):
        Gi[r, 0] = tval[r]
        for p in range(P):
            Gi[r, p + 1] = comp[r, p]
    bi, cc, cr, c1, sti, _ = _site_gls(itt, Gi, srow, ones, K, L)
    _put_site_fit(est, se, status, E_BETWEEN_INTERCEPT, bi, cc, cr, c1, sti, 1)
    diag[D_DIRECT] = bi[0]
    diag[D_DIRECT_SE_CONVENTIONAL] = np.sqrt(cc[0, 0])
    diag[D_DIRECT_SE_HC0] = np.sqrt(cr[0, 0])
    diag[D_DIRECT_SE_HC1] = np.sqrt(c1[0, 0])
    # nonlinearity: add the squared compliances, Wald-test them (site-robust, jackknife CR3)
    Gn = np.empty((N, 2 * P + 1))
    for r in range(N):
        Gn[r, 0] = tval[r]
        for p in range(P):
            Gn[r, p + 1] = comp[r, p]
            Gn[r, P + 1 + p] = comp[r, p] * comp[r, p]
    bn, cc, cr, c1, stn, GGn_inv = _site_gls(itt, Gn, srow, ones, K, L)
    diag[D_NONLINEAR_STATUS] = stn
    if stn == STATUS_OK:
        c3 = _cr3_cov(itt, Gn, bn, GGn_inv, K, L)
        Vq = np.ascontiguousarray(c3[P + 1 :, P + 1 :])
        Vqi, okq = _sym_inverse(Vq, True)
        if okq:
            bq = np.ascontiguousarray(bn[P + 1 :])
            diag[D_NONLINEAR] = bq @ Vqi @ bq
            diag[D_NONLINEAR_DF] = P
        else:
            diag[D_NONLINEAR_STATUS] = STATUS_SINGULAR

    # ---- pooled Wald estimator (P = 1): T's value as the single instrument
    if P != 1:
        status[E_WALD] = STATUS_NOT_APPLICABLE
    else:
        bw, sew, stw2 = _wald(count, dev, cross, B, Wc, arm_mean)
        est[E_WALD, 0] = bw
        for j in range(N_SE):
            se[E_WALD, j, 0] = sew[j]
        status[E_WALD] = stw2
    return est, se, status, diag, fs_f, sw_f, ols_bread_inv, ujive_bread_inv


@njit(cache=True)
def _wald(count, dev, cross, B, Wc, arm_mean):
    r"""Pooled Wald / IV with instrument ``z_i = t_i - tbar_s`` and site effects (P = 1).

    ``beta = z'y / z'x`` with ``z'v = sum_c n_c (t - tbar_s)(vbar_c - vbar_s)``;
    conventional ``(u'u/n) z'z / (z'x)^2``; HC0 ``sum_c (t - tbar_s)^2 sum_{i in c}
    u_i^2 / (z'x)^2``; site-clustered with scores ``sum_c (t - tbar_s) n_c g_c``.
    ``dev`` are the cell deviations vbar_c - vbar_s, ``arm_mean`` tbar_s.
    """
    K, A, Q = dev.shape
    se = np.full(N_SE, np.nan)
    zy = 0.0
    zx = 0.0
    zz = 0.0
    n = 0
    for s in range(K):
        for t in range(A):
            nc = count[s, t]
            n += nc
            z = t - arm_mean[s]
            zz += nc * z * z
            zy += nc * z * dev[s, t, 0]
            zx += nc * z * dev[s, t, 1]
    if zz <= 0 or zx == 0.0:
        return np.nan, se, STATUS_SINGULAR
    beta = zy / zx
    b = np.array([1.0, -beta])
    s2 = _quad(Wc + B, b) / n
    se[SE_CONVENTIONAL] = np.sqrt(s2 * zz) / abs(zx)
    meat = 0.0
    meat_cl = 0.0
    for s in range(K):
        sc = 0.0
        for t in range(A):
            nc = count[s, t]
            if nc == 0:
                continue
            z = t - arm_mean[s]
            g = dev[s, t, 0] - beta * dev[s, t, 1]
            u2 = _quad(cross[s, t], b) + nc * g * g
            meat += z * z * u2
            sc += z * nc * g
        meat_cl += sc * sc
    se[SE_HC0] = np.sqrt(meat) / abs(zx)
    dof = n - K - 1
    if dof > 0:
        se[SE_HC1] = se[SE_HC0] * np.sqrt(n / dof)
        if K > 1:
            se[SE_CLUSTER] = np.sqrt(meat_cl * (K / (K - 1.0)) * ((n - 1.0) / dof)) / abs(zx)
    return beta, se, STATUS_OK


@njit(cache=True)
def fit_persons(site, arm, mediators, outcome, n_sites, n_arms, fuller_alpha):
    """Cell statistics, :func:`fit_from_statistics`, and the person-level HC0 meats."""
    count, mean, cross = cell_statistics(site, arm, mediators, outcome, n_sites, n_arms)
    return fit_with_statistics(site, arm, mediators, outcome, count, mean, cross, n_sites, fuller_alpha)


@njit(cache=True)
def fit_with_statistics(site, arm, mediators, outcome, count, mean, cross, n_sites, fuller_alpha):
    """:func:`fit_persons` given the cell statistics of the same persons."""
    est, se, status, diag, fs_f, sw_f, ols_bread_inv, ujive_bread_inv = _fit_from_statistics(
        count, mean, cross, fuller_alpha
    )
    P = mediators.shape[1]
    n = outcome.shape[0]
    meat_ols, meat_uj = person_meats(
        site, arm, mediators, outcome, count, mean, est[E_OLS], est[E_UJIVE]
    )
    dof = n - n_sites - P
    if status[E_OLS] == STATUS_OK:
        se[E_OLS, SE_HC0] = _sandwich_se(ols_bread_inv, meat_ols, 1.0)
        if dof > 0:
            se[E_OLS, SE_HC1] = se[E_OLS, SE_HC0] * np.sqrt(n / dof)
    if status[E_UJIVE] == STATUS_OK:
        se[E_UJIVE, SE_HC0] = _sandwich_se(ujive_bread_inv, meat_uj, 1.0)
        if dof > 0:
            se[E_UJIVE, SE_HC1] = se[E_UJIVE, SE_HC0] * np.sqrt(n / dof)
    return est, se, status, diag, fs_f, sw_f


@njit(cache=True)
def anderson_rubin(count, mean, cross, beta0):
    r"""Anderson-Rubin statistic of H0: beta = beta0.

    ``AR = [b0'B b0 / (K L)] / [b0'Wc b0 / (n - K A)]`` with ``b0 = (1, -beta0')``;
    F(K L, n - K A) under H0 with normal homoskedastic errors. Returns
    (statistic, df1, df2); the statistic is NaN when a degree of freedom is not positive
    or the within-cell residual sum of squares is not.
    """
    K, A, Q = mean.shape
    n = 0
    for s in range(K):
        for t in range(A):
            n += count[s, t]
    B, Wc = between_within(count, mean, cross)
    b0 = _coef_vector(beta0)
    df1 = K * (A - 1)
    df2 = n - K * A
    if df1 <= 0 or df2 <= 0:
        return np.nan, df1, df2
    den = _quad(Wc, b0) / df2
    if not den > 0.0:
        return np.nan, df1, df2
    return (_quad(B, b0) / df1) / den, df1, df2
