r"""Numba kernels: every estimator, its standard errors and the diagnostics, from cell statistics.

:func:`fit_from_statistics` runs the stages in order: the moments of the cells
(:mod:`.moments_nb`), OLS, the first-stage diagnostics, the k-class family
(:mod:`.kclass_nb`), UJIVE (:mod:`.jive_nb`), the between-site regressions
(:mod:`.sitelevel_nb`) and the pooled Wald estimator.  Each stage is a named step below
that writes its estimator's rows of the output arrays.

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

Compile time: the steps and the orchestration are inlined into their caller when Numba
builds its IR (``inline="always"``), so they cost no compilation of their own, and the
fused replication kernel compiles the estimation once instead of once per layer.  Integer
counters start as ``np.int64(0)`` and flags are passed as ``np.bool_(...)``: a bare literal
would make Numba compile the callee once more for the literal's type.
"""

import numpy as np
from numba import njit

from .ar_nb import ar_statistics, jackknife_ar_statistics
from .codes_nb import (
    D_ARMS,
    D_CRAGG_DONALD,
    D_DIRECT,
    D_DIRECT_SE_CONVENTIONAL,
    D_DIRECT_SE_HC0,
    D_DIRECT_SE_HC1,
    D_FIRST_STAGE_DF1,
    D_FIRST_STAGE_DF2,
    D_FULLER_KAPPA,
    D_LIML_KAPPA,
    D_N,
    D_NONLINEAR,
    D_NONLINEAR_DF,
    D_NONLINEAR_STATUS,
    D_SARGAN,
    D_SARGAN_DF,
    D_SIGMA_MIN,
    D_SIGMA_RATIO,
    D_SITES,
    E_BETWEEN_INTERCEPT,
    E_BETWEEN_OLS,
    E_BETWEEN_PRECISION,
    E_FULLER,
    E_LIML,
    E_MBTSLS,
    E_OLS,
    E_RCIV_BIVARIATE,
    E_RCIV_META,
    E_TSLS,
    E_UJIVE,
    E_WALD,
    N_DIAGNOSTICS,
    N_ESTIMATORS,
    N_SE,
    SE_CONVENTIONAL,
    SE_HC0,
    SE_HC1,
    SE_HETEROGENEITY,
    SE_HETEROGENEITY_JIVE,
    SE_MANY_INSTRUMENT,
    SE_MANY_INSTRUMENT_COMPLETE,
    STATUS_EMPTY_CELL,
    STATUS_NOT_APPLICABLE,
    STATUS_OK,
    STATUS_SINGULAR,
    STATUS_TOO_FEW_SITES,
)
from .falsify_nb import falsification_tests
from .jive_nb import person_meats_all, ujive_from_deviations
from .kclass_nb import bekker_se, kcfgi_complete_se, kcfgi_se, kclass_from_deviations, liml_kappa, wald_fit
from .linalg_nb import coef_vector, quad, sandwich_se, sym_inverse
from .moments_nb import between_within_from_deviations, cell_deviations, cell_statistics, site_moments
from .rciv_nb import rciv_bivariate_fit, rciv_meta_fit
from .sitelevel_nb import cr3_cov, precision_weights, site_contrasts, site_gls


# ============================================================ storing a fit
@njit(inline="always")
def _put_kclass(est, se, status, e, beta, se_e, st):
    """Store a fit with its full (N_SE, P) standard-error block as estimator e."""
    est[e] = beta
    se[e] = se_e
    status[e] = st


@njit(inline="always")
def _put_site_fit(est, se, status, e, beta, cov_c, cov_r, cov_1, st, first):
    """Store a between-site regression as estimator e.

    The mediators' coefficients are beta[first:first + P] (after ``first`` leading columns such
    as the intercept), their conventional, HC0 and HC1 SEs the roots of the covariances' diagonals.
    """
    P = est.shape[1]
    status[e] = st
    for p in range(P):
        j = first + p
        est[e, p] = beta[j]
        se[e, SE_CONVENTIONAL, p] = np.sqrt(cov_c[j, j])
        se[e, SE_HC0, p] = np.sqrt(cov_r[j, j])
        se[e, SE_HC1, p] = np.sqrt(cov_1[j, j])


# ============================================================ the steps
@njit(inline="always")
def _sample_size(count):
    """(n, whether some cell is empty)."""
    K, A = count.shape
    n = np.int64(0)
    empty = False
    for s in range(K):
        for t in range(A):
            n += count[s, t]
            if count[s, t] == 0:
                empty = True
    return n, empty


@njit(inline="always")
def _fit_ols(est, se, status, count, dev, cross, B, Wc):
    """OLS with site effects (needs no instrument); returns its bread ``(Wc + B)_XX^{-1}``.

    Its HC0, HC1 and heterogeneity-robust SEs are left NaN: the HC0 is person-level
    (:func:`person_meats`, filled in by :func:`fit_with_statistics`).
    """
    b_ols, s_ols, st_ols, ols_bread_inv = kclass_from_deviations(count, dev, cross, B, Wc, 0.0, np.bool_(True))
    _put_kclass(est, se, status, E_OLS, b_ols, s_ols, st_ols)
    se[E_OLS, SE_HC0] = np.nan
    se[E_OLS, SE_HC1] = np.nan
    se[E_OLS, SE_HETEROGENEITY] = np.nan
    return ols_bread_inv


@njit(inline="always")
def _iv_status(empty, L, n_inst, P):
    """Whether the instrumental-variable estimators apply: STATUS_OK or the reason they do not."""
    if empty or L < 1:
        return STATUS_EMPTY_CELL
    if n_inst < P:
        return STATUS_TOO_FEW_SITES
    return STATUS_OK


@njit(inline="always")
def _conditional_f(sw_f, B, Wc, n_inst, df2, p):
    """Sanderson-Windmeijer conditional F of mediator p (P > 1), into ``sw_f[p]``."""
    P = B.shape[0] - 1
    Q = P + 1
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
    Boi, ok = sym_inverse(Boo, np.bool_(True))
    if not ok:
        return
    dlt = Boi @ Bop
    avec = np.zeros(Q)
    avec[p + 1] = 1.0
    for a in range(m):
        avec[idx[a]] = -dlt[a]
    den = quad(Wc, avec) / df2
    if den > 0:
        sw_f[p] = (quad(B, avec) / (n_inst - P + 1)) / den


@njit(inline="always")
def _first_stage(diag, fs_f, sw_f, B, Wc, n_inst, df2):
    """First-stage F statistics and their degrees of freedom (see :func:`fit_from_statistics`)."""
    P = B.shape[0] - 1
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
                _conditional_f(sw_f, B, Wc, n_inst, df2, p)


@njit(inline="always")
def _compliance_rank(diag, comp, n_inst):
    """Smallest singular value of the compliance matrix and its ratio to the largest."""
    P = comp.shape[1]
    # singular values of the compliance matrix = sqrt(eigenvalues of comp'comp)
    ev = np.linalg.eigvalsh(comp.T @ comp)
    smax = np.sqrt(max(ev[P - 1], 0.0))
    diag[D_SIGMA_MIN] = np.sqrt(max(ev[0], 0.0)) if n_inst >= P else 0.0
    diag[D_SIGMA_RATIO] = diag[D_SIGMA_MIN] / smax if smax > 0 else 0.0


@njit(inline="always")
def _fit_tsls(est, se, status, diag, count, dev, cross, B, Wc, n, n_inst):
    """2SLS and the Sargan overidentification statistic from its residuals."""
    P = B.shape[0] - 1
    b_2s, s_2s, st_2s, _ = kclass_from_deviations(count, dev, cross, B, Wc, 1.0, np.bool_(True))
    _put_kclass(est, se, status, E_TSLS, b_2s, s_2s, st_2s)
    if st_2s == STATUS_OK and n_inst > P:
        bb = coef_vector(b_2s)
        uu = quad(Wc + B, bb)
        if uu > 0:
            diag[D_SARGAN] = n * quad(B, bb) / uu
            diag[D_SARGAN_DF] = n_inst - P


@njit(inline="always")
def _fit_liml_fuller(est, se, status, diag, count, dev, cross, B, Wc, n, df2, fuller_alpha):
    """LIML and Fuller (kappa_LIML - alpha / (n - K A)), with Bekker many-instrument SEs."""
    K = count.shape[0]
    kap, okk = liml_kappa(B, Wc)
    if not okk:
        status[E_LIML] = STATUS_SINGULAR
        status[E_FULLER] = STATUS_SINGULAR
        return
    diag[D_LIML_KAPPA] = kap
    diag[D_CRAGG_DONALD] = df2 * (kap - 1.0)
    b_l, s_l, st_l, _ = kclass_from_deviations(count, dev, cross, B, Wc, kap, np.bool_(True))
    _put_kclass(est, se, status, E_LIML, b_l, s_l, st_l)
    if st_l == STATUS_OK:
        se[E_LIML, SE_MANY_INSTRUMENT] = bekker_se(B, Wc, b_l, kap, n, K)
    kf = kap - fuller_alpha / df2
    diag[D_FULLER_KAPPA] = kf
    b_f, s_f, st_f, _ = kclass_from_deviations(count, dev, cross, B, Wc, kf, np.bool_(True))
    _put_kclass(est, se, status, E_FULLER, b_f, s_f, st_f)
    if st_f == STATUS_OK:
        se[E_FULLER, SE_MANY_INSTRUMENT] = bekker_se(B, Wc, b_f, kf, n, K)


@njit(inline="always")
def _fit_mbtsls(est, se, status, count, dev, cross, B, Wc, n, n_inst, df2):
    """MBTSLS (KCFGI 2015, modified bias-corrected 2SLS): kappa = 1 + K L / (n - K A), many-instrument SE."""
    K = count.shape[0]
    if df2 <= 0:
        status[E_MBTSLS] = STATUS_SINGULAR
        return
    kb = 1.0 + n_inst / df2
    b_b, s_b, st_b, _ = kclass_from_deviations(count, dev, cross, B, Wc, kb, np.bool_(False))
    _put_kclass(est, se, status, E_MBTSLS, b_b, s_b, st_b)
    if st_b == STATUS_OK:
        se[E_MBTSLS, SE_MANY_INSTRUMENT] = kcfgi_se(B, Wc, b_b, n, K, n_inst)


@njit(inline="always")
def _unit_weights(K, L):
    """(K, L, L) identity weight matrices: the unweighted between-site regression."""
    ones = np.zeros((K, L, L))
    for s in range(K):
        for a in range(L):
            ones[s, a, a] = 1.0
    return ones


@njit(inline="always")
def _fit_between_site(est, se, status, count, cross, itt, comp, srow, ones):
    """Between-site regressions through the origin: unweighted and precision-weighted."""
    K = count.shape[0]
    L = count.shape[1] - 1
    bo, cc, cr, c1, sto, _ = site_gls(itt, comp, srow, ones, K, L)
    _put_site_fit(est, se, status, E_BETWEEN_OLS, bo, cc, cr, c1, sto, 0)
    pw, stw = precision_weights(count, cross)
    if stw != STATUS_OK:
        status[E_BETWEEN_PRECISION] = stw
    else:
        bp, cc, cr, c1, stp, _ = site_gls(itt, comp, srow, pw, K, L)
        _put_site_fit(est, se, status, E_BETWEEN_PRECISION, bp, cc, cr, c1, stp, 0)


@njit(inline="always")
def _fit_between_intercept(est, se, status, diag, itt, comp, tval, srow, ones):
    """Between-site regression with an intercept: the mean direct effect and its SEs into ``diag``.

    The direct effect enters as kappa_s * t, so the intercept column is the arm value t
    (1 for a binary treatment).
    """
    K, L = ones.shape[0], ones.shape[1]
    N, P = comp.shape
    Gi = np.empty((N, P + 1))
    for r in range(N):
        Gi[r, 0] = tval[r]
        for p in range(P):
            Gi[r, p + 1] = comp[r, p]
    bi, cc, cr, c1, sti, _ = site_gls(itt, Gi, srow, ones, K, L)
    _put_site_fit(est, se, status, E_BETWEEN_INTERCEPT, bi, cc, cr, c1, sti, 1)
    diag[D_DIRECT] = bi[0]
    diag[D_DIRECT_SE_CONVENTIONAL] = np.sqrt(cc[0, 0])
    diag[D_DIRECT_SE_HC0] = np.sqrt(cr[0, 0])
    diag[D_DIRECT_SE_HC1] = np.sqrt(c1[0, 0])


@njit(inline="always")
def _nonlinearity_test(diag, itt, comp, tval, srow, ones):
    """Add the squared compliances to the between-site regression and Wald-test them (site-robust, jackknife CR3).

    The squares only, no cross-products: the full quadratic and the zero-intercept tests are
    :func:`simulate.kernels.falsify_nb.falsification_tests`.
    """
    K, L = ones.shape[0], ones.shape[1]
    N, P = comp.shape
    Gn = np.empty((N, 2 * P + 1))
    for r in range(N):
        Gn[r, 0] = tval[r]
        for p in range(P):
            Gn[r, p + 1] = comp[r, p]
            Gn[r, P + 1 + p] = comp[r, p] * comp[r, p]
    bn, cc, cr, c1, stn, GGn_inv = site_gls(itt, Gn, srow, ones, K, L)
    diag[D_NONLINEAR_STATUS] = stn
    if stn == STATUS_OK:
        c3 = cr3_cov(itt, Gn, bn, GGn_inv, K, L)
        Vq = np.ascontiguousarray(c3[P + 1 :, P + 1 :])
        Vqi, okq = sym_inverse(Vq, np.bool_(True))
        if okq:
            bq = np.ascontiguousarray(bn[P + 1 :])
            diag[D_NONLINEAR] = bq @ Vqi @ bq
            diag[D_NONLINEAR_DF] = P
        else:
            diag[D_NONLINEAR_STATUS] = STATUS_SINGULAR


@njit(inline="always")
def _fit_wald(est, se, status, count, dev, cross, B, Wc, arm_mean):
    """The pooled Wald estimator (P = 1): T's value as the single instrument."""
    P = est.shape[1]
    if P != 1:
        status[E_WALD] = STATUS_NOT_APPLICABLE
        return
    bw, sew, stw2 = wald_fit(count, dev, cross, B, Wc, arm_mean)
    est[E_WALD, 0] = bw
    for j in range(N_SE):
        se[E_WALD, j, 0] = sew[j]
    status[E_WALD] = stw2


@njit(inline="always")
def _fit_rciv(est, se, status, count, mean, cross):
    """The random-coefficient IV estimators of Raudenbush, Reardon & Nomi (2012) (:mod:`.rciv_nb`)."""
    b_m, s_m, st_m = rciv_meta_fit(count, mean, cross)
    _put_kclass(est, se, status, E_RCIV_META, b_m, s_m, st_m)
    b_b, s_b, st_b = rciv_bivariate_fit(count, mean, cross)
    _put_kclass(est, se, status, E_RCIV_BIVARIATE, b_b, s_b, st_b)


# ============================================================ the whole fit
@njit(cache=True)
def fit_from_statistics(count, mean, cross, fuller_alpha):
    r"""Every estimator, its standard errors and the diagnostics, from cell statistics.

    Parameters
    ----------
    count : int64 (K, A)
    mean : float64 (K, A, Q)
    cross : float64 (K, A, Q, Q)
        The cell statistics of :func:`simulate.kernels.moments_nb.cell_statistics`.
    fuller_alpha : float
        Fuller's constant.

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
    est, se, status, diag, fs_f, sw_f, _, _ = fit_with_breads(count, mean, cross, fuller_alpha)
    return est, se, status, diag, fs_f, sw_f


@njit(cache=True, inline="always")
def fit_with_breads(count, mean, cross, fuller_alpha):
    """:func:`fit_from_statistics`, and the breads of OLS and UJIVE for their person-level HC0.

    Returns the six outputs of :func:`fit_from_statistics`, ``(Wc + B)_XX^{-1}`` and
    ``(Xdot'X)^{-1}`` (NaN where not computed).
    """
    K, A, Q = mean.shape
    P = Q - 1
    L = A - 1
    est = np.full((N_ESTIMATORS, P), np.nan)
    se = np.full((N_ESTIMATORS, N_SE, P), np.nan)
    status = np.zeros(N_ESTIMATORS, np.int64)
    diag = np.full(N_DIAGNOSTICS, np.nan)
    fs_f = np.full(P, np.nan)
    sw_f = np.full(P, np.nan)
    n, empty = _sample_size(count)
    n_inst = K * L
    diag[D_N] = n
    diag[D_SITES] = K
    diag[D_ARMS] = A
    _, site_mean, arm_mean = site_moments(count, mean)
    dev = cell_deviations(mean, site_mean)
    B, Wc = between_within_from_deviations(count, dev, cross)
    ols_bread_inv = _fit_ols(est, se, status, count, dev, cross, B, Wc)
    ujive_bread_inv = np.full((P, P), np.nan)
    iv_status = _iv_status(empty, L, n_inst, P)
    if iv_status != STATUS_OK:
        for e in range(1, N_ESTIMATORS):
            status[e] = iv_status
        return est, se, status, diag, fs_f, sw_f, ols_bread_inv, ujive_bread_inv
    df2 = n - K * A
    _first_stage(diag, fs_f, sw_f, B, Wc, n_inst, df2)
    ar_statistics(diag, count, dev, arm_mean, B, Wc)
    itt, comp, tval, srow = site_contrasts(count, mean)
    _compliance_rank(diag, comp, n_inst)
    _fit_tsls(est, se, status, diag, count, dev, cross, B, Wc, n, n_inst)
    _fit_liml_fuller(est, se, status, diag, count, dev, cross, B, Wc, n, df2, fuller_alpha)
    b_u, s_u, st_u, ujive_bread_inv = ujive_from_deviations(count, dev, cross, B, Wc)
    _put_kclass(est, se, status, E_UJIVE, b_u, s_u, st_u)
    _fit_mbtsls(est, se, status, count, dev, cross, B, Wc, n, n_inst, df2)
    ones = _unit_weights(K, L)
    _fit_between_site(est, se, status, count, cross, itt, comp, srow, ones)
    _fit_between_intercept(est, se, status, diag, itt, comp, tval, srow, ones)
    _nonlinearity_test(diag, itt, comp, tval, srow, ones)
    falsification_tests(diag, itt, comp, tval, srow, ones)
    _fit_wald(est, se, status, count, dev, cross, B, Wc, arm_mean)
    _fit_rciv(est, se, status, count, mean, cross)
    return est, se, status, diag, fs_f, sw_f, ols_bread_inv, ujive_bread_inv


@njit(cache=True)
def fit_persons(site, arm, mediators, outcome, n_sites, n_arms, fuller_alpha):
    """Cell statistics, :func:`fit_from_statistics`, and the person-level HC0 meats.

    Parameters
    ----------
    site, arm : int64 (n,)
        Site codes 0..K-1 and arm codes 0..A-1.
    mediators : float64 (n, P)
    outcome : float64 (n,)
    n_sites, n_arms : int
        K and A.
    fuller_alpha : float
        Fuller's constant.

    Returns
    -------
    tuple
        The six outputs of :func:`fit_from_statistics`, with the person-level HC0 and HC1
        of OLS and UJIVE filled in.
    """
    count, mean, cross = cell_statistics(site, arm, mediators, outcome, n_sites, n_arms)
    return fit_with_statistics(site, arm, mediators, outcome, count, mean, cross, n_sites, fuller_alpha)


@njit(cache=True, inline="always")
def fit_with_statistics(site, arm, mediators, outcome, count, mean, cross, n_sites, fuller_alpha):
    """:func:`fit_persons` given the cell statistics of the same persons.

    Inlined into its caller (the fused replication kernel), so that the estimation is
    compiled once there and not again as a layer of its own.
    """
    est, se, status, diag, fs_f, sw_f, ols_bread_inv, ujive_bread_inv = fit_with_breads(
        count, mean, cross, fuller_alpha
    )
    jackknife_ar_statistics(diag, site, arm, mediators, outcome, count, mean, cross)
    P = mediators.shape[1]
    n = outcome.shape[0]
    beta_mb = est[E_MBTSLS] if status[E_MBTSLS] == STATUS_OK else np.full(P, np.nan)
    meat_ols, meat_uj, meat_uh, m_wwuu, m_wuu, m_wwu = person_meats_all(
        site, arm, mediators, outcome, count, mean, est[E_OLS], est[E_UJIVE], beta_mb
    )
    dof = n - n_sites - P
    if status[E_OLS] == STATUS_OK:
        se[E_OLS, SE_HC0] = sandwich_se(ols_bread_inv, meat_ols, 1.0)
        if dof > 0:
            se[E_OLS, SE_HC1] = se[E_OLS, SE_HC0] * np.sqrt(n / dof)
    if status[E_UJIVE] == STATUS_OK:
        se[E_UJIVE, SE_HC0] = sandwich_se(ujive_bread_inv, meat_uj, 1.0)
        if dof > 0:
            se[E_UJIVE, SE_HC1] = se[E_UJIVE, SE_HC0] * np.sqrt(n / dof)
        se[E_UJIVE, SE_HETEROGENEITY_JIVE] = sandwich_se(ujive_bread_inv, meat_uh, 1.0)
    if status[E_MBTSLS] == STATUS_OK:
        _, site_mean, _ = site_moments(count, mean)
        dev = cell_deviations(mean, site_mean)
        B, Wc = between_within_from_deviations(count, dev, cross)
        se[E_MBTSLS, SE_MANY_INSTRUMENT_COMPLETE] = kcfgi_complete_se(B, Wc, est[E_MBTSLS], n, count, dev, m_wwuu,
                                                                     m_wuu, m_wwu)
    return est, se, status, diag, fs_f, sw_f
