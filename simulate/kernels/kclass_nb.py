r"""Numba kernels: k-class estimators with site fixed effects, the pooled Wald estimator and the AR statistic.

The k-class family (OLS, 2SLS, LIML, Fuller, MBTSLS) comes with its standard errors;
AR is the Anderson-Rubin statistic.

Every k-class estimator is ``beta(kappa) = A_XX^{-1} A_XY`` with ``A = B + (1 - kappa) Wc``,
B the between-cell and Wc the within-cell cross-products of v = (Y, M) (see
:mod:`simulate.kernels.fit_nb`).
"""

import numpy as np
from numba import njit

from .codes_nb import (
    N_SE,
    SE_CLUSTER,
    SE_CONVENTIONAL,
    SE_HC0,
    SE_HC1,
    SE_HETEROGENEITY,
    STATUS_NUMERICAL,
    STATUS_OK,
    STATUS_SINGULAR,
)
from .linalg_nb import REL_TOL, coef_vector, quad, sandwich_se, sym_inverse
from .moments_nb import between_within, cell_deviations, site_moments


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
    if ev[0] <= REL_TOL * ev[Q - 1]:
        return np.nan, False
    L = np.linalg.cholesky(Ws)
    Li = np.linalg.inv(L)
    C = Li @ Ts @ Li.T
    C = 0.5 * (C + C.T)
    return np.linalg.eigvalsh(C)[0], True


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
    return kclass_from_deviations(count, cell_deviations(mean, site_mean), cross, B, Wc, kappa, require_pd)


@njit(cache=True)
def kclass_from_deviations(count, dev, cross, B, Wc, kappa, require_pd):
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
    Ainv, ok = sym_inverse(Axx, require_pd)
    if not ok:
        return beta, se, STATUS_SINGULAR, Ainv
    for p in range(P):
        acc = 0.0
        for r in range(P):
            acc += Ainv[p, r] * Axy[r]
        beta[p] = acc
    b = coef_vector(beta)
    n = 0
    for s in range(K):
        for t in range(A):
            n += count[s, t]
    ssr = quad(Wc + B, b)
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
    se[SE_HC0] = sandwich_se(Ainv, meat, 1.0)
    dof = n - K - P
    se[SE_HC1] = se[SE_HC0] * np.sqrt(n / dof) if dof > 0 else np.full(P, np.nan)
    if K > 1 and dof > 0:
        se[SE_CLUSTER] = sandwich_se(Ainv, meat_cl, (K / (K - 1.0)) * ((n - 1.0) / dof))
    se[SE_HETEROGENEITY] = sandwich_se(Ainv, meat_h, 1.0)
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
    b = coef_vector(beta)
    S = Wc + B
    uu = quad(S, b)
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
    Hi, ok = sym_inverse(H, np.bool_(False))
    if not ok:
        return out
    return sandwich_se(Hi, Sig, 1.0)


@njit(cache=True)
def kcfgi_se(B, Wc, beta, n, n_sites, n_instruments):
    r"""Many-invalid-instrument SE of MBTSLS, the modified bias-corrected 2SLS (KCFGI 2015).

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
    b = coef_vector(beta)
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
    Xi_inv, ok = sym_inverse(Xxx, np.bool_(True))
    if not ok:
        return out
    return sandwich_se(Xi_inv, np.ascontiguousarray(G[1:, 1:]), 1.0 / n)


@njit(cache=True)
def kcfgi_complete_se(B, Wc, beta, n, count, dev, m_wwuu, m_wuu, m_wwu):
    r"""The complete many-invalid-instrument SE of MBTSLS (KCFGI 2015): :func:`kcfgi_se` plus its non-Gaussian terms.

    With the notation of :func:`kcfgi_se` (``Xi``, ``S``, ``b``, ``k = K L``, ``l = K``),
    within-cell residuals ``V_i = v_i - vbar_c``, ``u_i = b'V_i`` and ``w_i`` the mediator
    part of ``V_i``, the variance of ``sqrt(n) vec(Xi)`` gains (KCFGI 2015; Kolesar 2018,
    ManyIV ``MDDelta`` with ``invalid=TRUE``) the fourth-moment term
    ``D2 = (k/n) delta (Psi4 - vec S vec S' - 2 N (S x S))`` and the third-moment terms
    ``D3 + D3'``, ``D3 = 2 sqrt(k/n) N (Psi3' x mu)``.  Here, with the cell dummies as
    ``[Z, W]``, the diagonal ``h_i = (P_Z~)_ii - (k/nu)(1 - (P_[Z,W])_ii)`` is
    ``h_c = 1/n_c - 1/n_s - (k/nu)(1 - 1/n_c)``, ``delta = sum_i h_i^2 / k``,
    ``mu = sum_c n_c (vbar_c - vbar_s) h_c / sqrt(n k)``, ``Psi3`` and ``Psi4`` the residuals'
    third and fourth moments over ``m3 = n - 3(k + l)`` and ``m4 = n - 4(k + l)``
    (ManyIV's default approximation), ``Psi4`` less ``(m2 - m4)(2 N (S x S) + vec S vec S')``,
    ``m2 = sum_i (1 - (P_[Z,W])_ii)^2``.  Contracted with the gradient of ``beta``, the
    (p, r) entry added to ``G`` of :func:`kcfgi_se` is

    ``(k/n) delta [Psi4(w_p w_r u u) - S_pr b'Sb - 2 (Sb)_p (Sb)_r]
    + sqrt(k/n) [mu_p E(w_r u^2) + mu_r E(w_p u^2) + 2 (b'mu) E(w_p w_r u)]``.

    In a balanced design (equal cells) every ``h_c`` is 0 and the SE equals :func:`kcfgi_se`.

    Parameters
    ----------
    B, Wc : (Q, Q)
    beta : (P,)
    n : int
    count : int64 (K, A)
    dev : (K, A, Q)
        Cell deviations vbar_c - vbar_s.
    m_wwuu, m_wuu, m_wwu : (P, P), (P,), (P, P)
        ``sum_i w_ip w_ir u_i^2``, ``sum_i w_ip u_i^2``, ``sum_i w_ip w_ir u_i``.

    Returns
    -------
    (P,) standard errors (NaN where not defined).
    """
    K, A, Q = dev.shape
    P = Q - 1
    out = np.full(P, np.nan)
    k = K * (A - 1)
    l = K
    nu = n - k - l
    m3 = n - 3.0 * (k + l)
    m4 = n - 4.0 * (k + l)
    if nu <= 0 or m3 <= 0 or m4 <= 0 or k <= 0:
        return out
    S = Wc / nu
    Xi = B / n - (k / n) * S
    delta, m2, mu = _kcfgi_leverage_sums(count, dev, n, k, nu)
    G = _kcfgi_complete_meat(S, Xi, coef_vector(beta), n, k, l, nu, m2, m3, m4, delta, mu, m_wwuu, m_wuu, m_wwu)
    Xxx = np.ascontiguousarray(Xi[1:, 1:])
    Xi_inv, ok = sym_inverse(Xxx, np.bool_(True))
    if not ok:
        return out
    return sandwich_se(Xi_inv, G, 1.0 / n)


@njit(cache=True)
def _kcfgi_leverage_sums(count, dev, n, k, nu):
    """``(delta, m2, mu)`` of :func:`kcfgi_complete_se`, sums over cells of the diagonal ``h_c``."""
    K, A, Q = dev.shape
    delta = 0.0
    m2 = 0.0
    mu = np.zeros(Q)
    for s in range(K):
        ns = 0
        for t in range(A):
            ns += count[s, t]
        for t in range(A):
            nc = count[s, t]
            if nc == 0:
                continue
            h = 1.0 / nc - 1.0 / ns - (k / nu) * (1.0 - 1.0 / nc)
            delta += nc * h * h
            m2 += nc * (1.0 - 1.0 / nc) ** 2
            for q in range(Q):
                mu[q] += nc * dev[s, t, q] * h
    delta /= k
    mu /= np.sqrt(n * float(k))
    return delta, m2, mu


@njit(cache=True)
def _kcfgi_complete_meat(S, Xi, b, n, k, l, nu, m2, m3, m4, delta, mu, m_wwuu, m_wuu, m_wwu):
    """The (P, P) ``G`` of :func:`kcfgi_complete_se`: the Gaussian part of :func:`kcfgi_se` plus D2 and D3."""
    Q = S.shape[0]
    P = Q - 1
    tau = (k / n) * (n - l) / nu
    Xb = Xi @ b
    Sb = S @ b
    bXb = b @ Xb
    bSb = b @ Sb
    bmu = b @ mu
    G = np.empty((P, P))
    for p in range(P):
        a = p + 1
        for r in range(P):
            c = r + 1
            gauss = (bXb * S[a, c] + Xb[a] * Sb[c] + Sb[a] * Xb[c] + bSb * Xi[a, c]
                     + tau * (bSb * S[a, c] + Sb[a] * Sb[c]))
            psi4 = (m_wwuu[p, r] - (m2 - m4) * (S[a, c] * bSb + 2.0 * Sb[a] * Sb[c])) / m4
            d2 = (k / n) * delta * (psi4 - S[a, c] * bSb - 2.0 * Sb[a] * Sb[c])
            d3 = np.sqrt(k / n) * (mu[a] * m_wuu[r] + mu[c] * m_wuu[p] + 2.0 * bmu * m_wwu[p, r]) / m3
            G[p, r] = gauss + d2 + d3
    return G


@njit(cache=True)
def wald_fit(count, dev, cross, B, Wc, arm_mean):
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
    s2 = quad(Wc + B, b) / n
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
            u2 = quad(cross[s, t], b) + nc * g * g
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
    b0 = coef_vector(beta0)
    df1 = K * (A - 1)
    df2 = n - K * A
    if df1 <= 0 or df2 <= 0:
        return np.nan, df1, df2
    den = quad(Wc, b0) / df2
    if not den > 0.0:
        return np.nan, df1, df2
    return (quad(B, b0) / df1) / den, df1, df2
