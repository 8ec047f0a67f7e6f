"""Random-coefficient IV (Raudenbush, Reardon & Nomi 2012) and the complete many-instrument SEs.

Each kernel quantity is checked against plain numpy written from the papers' formulas
(person-level arrays, explicit projection matrices where the formula has them), against
an exact identity, or against ManyIV's published AK80 figures.
"""

import naive_estimators as nv
import numpy as np
import pytest
from _data import make_data

from simulate.estimators import ESTIMATORS, SPECS, estimate, estimate_arrays, estimate_statistics
from simulate.kernels import codes_nb as codes

E = {name: i for i, name in enumerate(ESTIMATORS)}


def hetero_data(seed, K, A, P, n_lo=30, n_hi=80, gamma=1.5, gamma_sd=0.3, delta_sd=0.3):
    """Sites with their own effects: M = gamma_s,t + noise, Y = M'delta_s + noise; unequal cells."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(n_lo, n_hi + 1, size=(K, A))
    site = np.repeat(np.arange(K), sizes.sum(1))
    arm = np.concatenate([np.repeat(np.arange(A), sizes[s]) for s in range(K)])
    n = site.shape[0]
    g = gamma + gamma_sd * rng.standard_normal((K, A, P))
    g[:, 0] = 0.0
    if A - 1 >= P:  # a distinct compliance per arm and mediator
        for t in range(1, A):
            g[:, t] *= np.roll(np.arange(1, P + 1), t)
    d = 0.5 + delta_sd * rng.standard_normal((K, P))
    V = rng.standard_normal((n, P))
    M = g[site, arm] + V + rng.standard_normal((K, P))[site]
    U = rng.standard_normal(n) * (1 + 0.3 * arm) + 0.5 * V.sum(1)
    Y = (M * d[site]).sum(1) + U + rng.standard_normal(K)[site]
    return site.astype(np.int64), arm.astype(np.int64), M, Y


def fit(site, arm, M, Y):
    return estimate_arrays(site, arm, M, Y, site.max() + 1, arm.max() + 1)


def dl_numpy(b, v):
    """DerSimonian & Laird (1986), from the paper."""
    w = 1 / v
    bfe = np.sum(w * b) / np.sum(w)
    Qs = np.sum(w * (b - bfe) ** 2)
    K = len(b)
    tau2 = max(0.0, (Qs - (K - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    ws = 1 / (v + tau2)
    mu = np.sum(ws * b) / np.sum(ws)
    robust = np.sqrt(K / (K - 1) * np.sum((ws * (b - mu)) ** 2)) / np.sum(ws)
    return mu, tau2, 1 / np.sqrt(np.sum(ws)), robust


# --------------------------------------------------------------- 1(a) site IV pooled by DL
def test_rciv_meta_binary_is_dl_over_wald_ratios():
    """Binary T, P = 1: each site's ratio and its delta-method variance, pooled by DL, in plain numpy."""
    site, arm, M, Y = hetero_data(3, 12, 2, 1)
    x = M[:, 0]
    b, v = [], []
    for s in range(12):
        i1, i0 = (site == s) & (arm == 1), (site == s) & (arm == 0)
        bs = (Y[i1].mean() - Y[i0].mean()) / (x[i1].mean() - x[i0].mean())
        u = Y - bs * x
        b.append(bs)
        v.append((u[i1].var(ddof=1) / i1.sum() + u[i0].var(ddof=1) / i0.sum()) / (x[i1].mean() - x[i0].mean()) ** 2)
    mu, tau2, s_model, s_rob = dl_numpy(np.array(b), np.array(v))
    r = fit(site, arm, M, Y)
    e = E["rciv_meta"]
    assert r.status[e] == codes.STATUS_OK
    np.testing.assert_allclose(r.estimate[e, 0], mu, rtol=1e-10)
    np.testing.assert_allclose(r.se[e, codes.SE_CONVENTIONAL, 0], s_model, rtol=1e-10)
    np.testing.assert_allclose(r.se[e, codes.SE_CLUSTER, 0], s_rob, rtol=1e-10)
    np.testing.assert_allclose(r.se[e, codes.SE_EFFECT_SD, 0], np.sqrt(tau2), rtol=1e-9)
    assert tau2 > 0  # the data have effect variation: the test exercises the random-effects branch


def test_rciv_meta_multi_arm_two_mediators_just_identified():
    """A = 3, P = 2: each site solves Pi_M beta = pi_Y; the delta method on the arm contrasts; DL per mediator."""
    K = 10
    site, arm, M, Y = hetero_data(5, K, 3, 2, n_lo=60, n_hi=120, gamma=2.0)
    bs, vs = [], []
    for s in range(K):
        cm = [(site == s) & (arm == t) for t in range(3)]
        xm = np.array([M[c].mean(0) for c in cm])
        ym = np.array([Y[c].mean() for c in cm])
        Pi = xm[1:] - xm[0]
        piy = ym[1:] - ym[0]
        beta = np.linalg.solve(Pi, piy)
        u = Y - M @ beta
        var = [u[c].var(ddof=1) / c.sum() for c in cm]
        Vc = np.diag(var[1:]) + var[0]  # covariance of the contrasts of the residual means
        Pinv = np.linalg.inv(Pi)
        bs.append(beta)
        vs.append(Pinv @ Vc @ Pinv.T)
    bs, vs = np.array(bs), np.array(vs)
    r = fit(site, arm, M, Y)
    e = E["rciv_meta"]
    assert r.status[e] == codes.STATUS_OK
    for p in range(2):
        mu, tau2, s_model, s_rob = dl_numpy(bs[:, p], vs[:, p, p])
        np.testing.assert_allclose(r.estimate[e, p], mu, rtol=1e-9)
        np.testing.assert_allclose(r.se[e, codes.SE_CONVENTIONAL, p], s_model, rtol=1e-9)
        np.testing.assert_allclose(r.se[e, codes.SE_CLUSTER, p], s_rob, rtol=1e-9)
        np.testing.assert_allclose(r.se[e, codes.SE_EFFECT_SD, p], np.sqrt(tau2), rtol=1e-8, atol=1e-12)


def test_rciv_statuses():
    """Fewer than P + 1 arms: site_underidentified; a site with no compliance: weak_site_compliance."""
    site, arm, M, Y = hetero_data(7, 8, 2, 2)
    r = fit(site, arm, M, Y)
    assert r.status[E["rciv_meta"]] == codes.STATUS_SITE_UNDERIDENTIFIED
    assert r.status[E["rciv_bivariate"]] == codes.STATUS_NOT_APPLICABLE
    site, arm, M, Y = hetero_data(7, 8, 2, 1)
    rng = np.random.default_rng(0)
    weak = site == 3
    M[weak, 0] = rng.standard_normal(weak.sum())  # site 3: T does not move M
    r = fit(site, arm, M, Y)
    assert r.status[E["rciv_meta"]] == codes.STATUS_WEAK_SITE_COMPLIANCE
    assert np.isnan(r.estimate[E["rciv_meta"], 0])
    assert r.status[E["2sls"]] == codes.STATUS_OK  # the pooled estimators are not affected
    frame = estimate(site, arm, M, Y, mediator_names=["m"])
    row = frame[frame.estimator == "rciv_meta"].iloc[0]
    assert row["status"] == "weak_site_compliance" and np.isnan(row["effect_sd"])


# --------------------------------------------------------------- 1(b) bivariate: ratio of mean ITTs
def test_rciv_bivariate_equals_pooled_wald_in_balanced_designs():
    """Equal sites and arm shares: the ratio of the mean ITT effects is the pooled Wald estimate (exact)."""
    site, arm, M, Y = hetero_data(11, 9, 2, 1, n_lo=40, n_hi=40)
    r = fit(site, arm, M, Y)
    np.testing.assert_allclose(r.estimate[E["rciv_bivariate"], 0], r.estimate[E["wald"], 0], rtol=1e-12)


def test_rciv_bivariate_against_numpy():
    """Unbalanced design: means, sample covariance, sampling covariance and tau^2 from the moments, in numpy."""
    K = 15
    site, arm, M, Y = hetero_data(13, K, 2, 1)
    x = M[:, 0]
    pi, V = [], []
    for s in range(K):
        c1, c0 = (site == s) & (arm == 1), (site == s) & (arm == 0)
        pi.append([Y[c1].mean() - Y[c0].mean(), x[c1].mean() - x[c0].mean()])
        V.append(np.cov(Y[c1], x[c1]) / c1.sum() + np.cov(Y[c0], x[c0]) / c0.sum())
    pi, V = np.array(pi), np.array(V)
    pb = pi.mean(0)
    S = np.cov(pi.T)
    beta = pb[0] / pb[1]
    g = np.array([1.0, -beta]) / pb[1]
    se = np.sqrt(g @ S @ g / K)
    T = S - V.mean(0)
    tau2 = (T[0, 0] - beta**2 * T[1, 1]) / (T[1, 1] + pb[1] ** 2)
    r = fit(site, arm, M, Y)
    e = E["rciv_bivariate"]
    assert r.status[e] == codes.STATUS_OK
    np.testing.assert_allclose(r.estimate[e, 0], beta, rtol=1e-11)
    np.testing.assert_allclose(r.se[e, codes.SE_CLUSTER, 0], se, rtol=1e-10)
    np.testing.assert_allclose(r.se[e, codes.SE_EFFECT_SD, 0], np.sqrt(max(tau2, 0.0)), rtol=1e-8)


def test_rciv_rows_and_registry():
    """Both estimators are rows of the analysis table with the effect_sd column; statistics path equals person path."""
    site, arm, M, Y = hetero_data(17, 10, 2, 1, gamma=3.0)
    frame = estimate(site, arm, M, Y, mediator_names=["m"])
    for name in ("rciv_meta", "rciv_bivariate"):
        row = frame[frame.estimator == name].iloc[0]
        assert row["status"] == "ok" and row["se_type"] == "cluster" and row["effect_sd"] >= 0
        assert row["conf_low"] < row["estimate"] < row["conf_high"]
        assert SPECS[name].limit is None
    assert frame.loc[frame.estimator == "2sls", "effect_sd"].isna().all()
    a = fit(site, arm, M, Y)
    from simulate.kernels.moments_nb import cell_statistics

    b = estimate_statistics(*cell_statistics(site, arm, M, Y, 10, 2))
    for name in ("rciv_meta", "rciv_bivariate"):
        np.testing.assert_array_equal(a.estimate[E[name]], b.estimate[E[name]])
        np.testing.assert_array_equal(a.se[E[name]], b.se[E[name]])


# --------------------------------------------------------------- 2. UJIVE heterogeneity-robust SE
def ujive_hte_numpy(y, X, Z, W):
    """Kolesar (2013) heterogeneity-robust variance of UJIVE on explicit projections (ManyIV's se_hte, P >= 1).

    psi_i = u_i Xdot_i + GY_i (M_[Z,W] X)_i, GY = (P_[Z,W] - P_W)(y - X beta) - M_[Z,W][(y - X beta) (dX - dW) / dM].
    """
    n = y.shape[0]
    PX = nv.projection(np.column_stack([Z, W]))
    PW = nv.projection(W)
    dX, dW = np.diag(PX), np.diag(PW)
    I = np.eye(n)
    Xdot = np.linalg.solve(I - np.diag(dX), (PX - np.diag(dX)) @ X) - np.linalg.solve(I - np.diag(dW),
                                                                                     (PW - np.diag(dW)) @ X)
    G = Xdot.T @ X
    beta = np.linalg.solve(G, Xdot.T @ y)
    r = y - X @ beta
    u = (I - PW) @ r
    GY = (PX - PW) @ r - (I - PX) @ (r * (dX - dW) / (1 - dX))
    psi = u[:, None] * Xdot + GY[:, None] * ((I - PX) @ X)
    Gi = np.linalg.inv(0.5 * (G + G.T))
    return beta, np.sqrt(np.diag(Gi @ psi.T @ psi @ Gi.T))


@pytest.mark.parametrize(("seed", "K", "L", "P"), [(1, 4, 1, 1), (2, 3, 2, 1), (3, 4, 2, 2), (4, 3, 3, 2)])
def test_ujive_heterogeneity_se_matches_numpy(seed, K, L, P):
    site, arm, M, Y = make_data(seed, K, L + 1, P, min_cell=3)
    W, Z, _ = nv.design(site, arm, K, L + 1)
    beta, se = ujive_hte_numpy(Y, M, Z, W)
    r = fit(site, arm, M, Y)
    e = E["ujive"]
    np.testing.assert_allclose(r.estimate[e], beta, rtol=1e-8)
    np.testing.assert_allclose(r.se[e, codes.SE_HETEROGENEITY_JIVE], se, rtol=1e-8)


def test_heterogeneity_reference_reproduces_the_2sls_column():
    """The same psi with 2SLS (GY = (P_[Z,W] - P_W)(y - X beta)) is the existing 2SLS heterogeneity SE."""
    site, arm, M, Y = make_data(9, 4, 3, 1, min_cell=3)
    W, Z, _ = nv.design(site, arm, 4, 3)
    r = fit(site, arm, M, Y)
    b = r.estimate[E["2sls"]]
    H = M.T @ nv.projection((np.eye(len(Y)) - nv.projection(W)) @ Z) @ M
    meat = nv.heterogeneity_se(Y, M, Z, W, b)
    Hi = np.linalg.inv(H)
    np.testing.assert_allclose(r.se[E["2sls"], codes.SE_HETEROGENEITY], np.sqrt(np.diag(Hi @ meat @ Hi)), rtol=1e-8)


# --------------------------------------------------------------- 2. complete KCFGI SE of MBTSLS
def kcfgi_complete_numpy(y, X, Z, W, beta):
    """KCFGI (2015) variance with the non-Gaussian terms, in vec form on explicit projections (Kolesar 2018, MDDelta).

    Var(sqrt(n) vec Xi) = D1 + D2 + D3 + D3' with D1 = 2 N (Xi x S + S x Xi + tau S x S),
    D2 = (k/n) delta (Psi4 - vec S vec S' - 2 N (S x S)), D3 = 2 sqrt(k/n) N (Psi3' x mu); m3, m4 approximated.
    """
    n, P = X.shape
    Q = P + 1
    k, l = Z.shape[1], W.shape[1]
    nu = n - k - l
    Yv = np.column_stack([y, X])
    PXW = nv.projection(np.column_stack([Z, W]))
    MW = np.eye(n) - nv.projection(W)
    Zt = MW @ Z
    PZt = nv.projection(Zt)
    T = Yv.T @ MW @ PZt @ MW @ Yv / n
    V = Yv - PXW @ Yv
    S = V.T @ V / nu
    Xi = T - k / n * S
    tau = (k / n) * (n - l) / nu
    Nm = 0.5 * (np.eye(Q * Q) + nv.commutation(Q))
    D1 = 2 * Nm @ (np.kron(Xi, S) + np.kron(S, Xi) + tau * np.kron(S, S))
    dX = np.diag(PXW)
    h = np.diag(PZt) - k / nu * (1 - dX)
    delta = np.sum(h**2) / k
    mu = (PZt @ Yv).T @ h / np.sqrt(n * k)
    m2 = np.sum((1 - dX) ** 2)
    m3, m4 = n - 3 * (k + l), n - 4 * (k + l)
    # Psi3[(a, b), c] = sum V_a V_b V_c / m3 (rows vec(a, b)); Psi4 likewise, less its Gaussian part
    Psi3 = np.einsum("ia,ib,ic->bac", V, V, V).reshape(Q * Q, Q) / m3
    vecS = S.reshape(-1, order="F")
    Psi4 = np.einsum("ia,ib,ic,id->badc", V, V, V, V).reshape(Q * Q, Q * Q)
    Psi4 = (Psi4 - (m2 - m4) * (2 * Nm @ np.kron(S, S) + np.outer(vecS, vecS))) / m4
    D2 = (k / n) * delta * (Psi4 - np.outer(vecS, vecS) - 2 * Nm @ np.kron(S, S))
    D3 = 2 * np.sqrt(k / n) * Nm @ np.kron(Psi3.T, mu[:, None])
    D = D1 + D2 + D3 + D3.T
    b = np.concatenate([[1.0], -beta])
    Jb = np.kron(b[None, :], np.eye(Q))  # vec(Xi b) = (b' x I) vec(Xi)
    G = Jb @ D @ Jb.T
    Xinv = np.linalg.inv(Xi[1:, 1:])
    Vb = Xinv @ G[1:, 1:] @ Xinv / n
    return np.sqrt(np.diag(Vb))


@pytest.mark.parametrize(("seed", "K", "L", "P"), [(1, 5, 1, 1), (2, 4, 2, 1), (3, 5, 2, 2)])
def test_kcfgi_complete_matches_numpy(seed, K, L, P):
    site, arm, M, Y = make_data(seed, K, L + 1, P, min_cell=4, max_cell=15)
    W, Z, _ = nv.design(site, arm, K, L + 1)
    r = fit(site, arm, M, Y)
    e = E["mbtsls"]
    assert r.status[e] == codes.STATUS_OK
    ref = kcfgi_complete_numpy(Y, M, Z, W, r.estimate[e])
    np.testing.assert_allclose(r.se[e, codes.SE_MANY_INSTRUMENT_COMPLETE], ref, rtol=1e-8)
    # the Gaussian part alone is the existing column (and the reference with its extra terms zeroed agrees)
    np.testing.assert_allclose(r.se[e, codes.SE_MANY_INSTRUMENT], nv.kcfgi_se(Y, M, Z, W, r.estimate[e]), rtol=1e-8)
    assert not np.allclose(r.se[e, codes.SE_MANY_INSTRUMENT_COMPLETE], r.se[e, codes.SE_MANY_INSTRUMENT])


def test_kcfgi_complete_equals_gaussian_in_balanced_designs():
    """Equal cells: every h_i = 0, so delta = mu = 0 and the non-Gaussian terms vanish (exact identity)."""
    site, arm, M, Y = hetero_data(21, 6, 3, 1, n_lo=20, n_hi=20)
    r = fit(site, arm, M, Y)
    e = E["mbtsls"]
    np.testing.assert_allclose(r.se[e, codes.SE_MANY_INSTRUMENT_COMPLETE], r.se[e, codes.SE_MANY_INSTRUMENT],
                               rtol=1e-10)


# --------------------------------------------------------------- truth of effect_sd, Monte Carlo
RCIV_SCENARIO = """
name = "rciv_check"
n_sites = {K}
n_per_site = {n}
[treatment]
share = 0.5
[mediators]
names = ["m"]
[site]
compliance_mean = [1.0]
compliance_sd = [0.2]
effect_mean = [0.5]
effect_sd = [{sd}]
nonlinear_dependence = [{lam}]
[person]
effect_sd = [0.1]
confounding = 0.3
"""


def test_site_effect_sd_truth():
    from simulate.scenario import loads
    from simulate.truth import site_effect_sd, site_effect_sd_applies

    sc = loads(RCIV_SCENARIO.format(K=20, n=100, sd=0.3, lam=0.0))
    assert site_effect_sd(sc) == pytest.approx((0.3,), rel=1e-15) and site_effect_sd_applies(sc)
    sc = loads(RCIV_SCENARIO.format(K=20, n=100, sd=0.3, lam=0.5))
    assert site_effect_sd(sc) == pytest.approx((0.3 * np.sqrt(1.25),), rel=1e-15)
    assert not site_effect_sd_applies(loads(RCIV_SCENARIO.format(K=20, n=100, sd=0.3, lam=0.0)
                                            + "compliance_sd = [0.2]\nwithin_site_correlation = [0.3]\n"))


@pytest.mark.slow
def test_rciv_coverage_and_effect_sd_by_monte_carlo():
    """RRN's identifying assumption holds (compliance independent of effects): both RCIV intervals cover E[delta]
    within 3 MCSE of 95%, and the mean estimated effect variance is within 3 MCSE (plus the DL truncation's small
    upward bias, bounded here by 10%) of the truth's."""
    from simulate.replicate import run_replications
    from simulate.scenario import loads
    from simulate.truth import site_effect_sd

    sc = loads(RCIV_SCENARIO.format(K=60, n=400, sd=0.25, lam=0.0))
    R = 1000
    rows = run_replications(sc, 0, 0, 20260402, range(R))
    tau = site_effect_sd(sc)[0]
    for name in ("rciv_meta", "rciv_bivariate"):
        keep = rows["estimator"] == name
        # a site's own F < 3.84 happens with P(estimated compliance < 0.2) ~ 1.7e-4 per site: ~1% of replications
        assert (rows["status"][keep] == "ok").mean() > (0.97 if name == "rciv_meta" else 0.999)
        ok = keep & (rows["status"] == "ok")
        lo, hi = rows["conf_low"][ok], rows["conf_high"][ok]
        cover = ((lo <= 0.5) & (0.5 <= hi)).mean()
        mcse = np.sqrt(0.95 * 0.05 / ok.sum())
        assert abs(cover - 0.95) < 3 * mcse, (name, cover)
        v = rows["effect_sd"][ok] ** 2
        assert abs(v.mean() - tau**2) < 3 * v.std() / np.sqrt(len(v)) + 0.1 * tau**2, (name, v.mean(), tau**2)


# --------------------------------------------------------------- AK80 (ManyIV's data set)
def _group_mean(v, g):
    s = np.bincount(g, weights=v)
    c = np.bincount(g)
    return (s / c)[g], c[g]


def test_ak80_new_standard_errors_match_person_level_numpy():
    """AK80 (sites = year of birth, arms = quarter of birth, as in ManyIV's Table V tests).

    ManyIV's tests publish AK80 figures for the conventional and robust SEs of TSLS and MBTSLS (checked in
    tests/test_analyze.py); its heterogeneity-robust UJIVE and complete MBTSLS SEs are checked there only against
    their own matrix forms.  Here both are recomputed person by person: UJIVE from the leave-one-out means, the
    complete KCFGI SE from the vec-form formula with the residuals' third and fourth moments.
    """
    from simulate.datasets import ak80

    df = ak80()
    site = (df["yob"] - df["yob"].min()).to_numpy(np.int64)
    arm = df["qob"].str[1:].astype(int).to_numpy(np.int64) - 1  # Q1..Q4
    y = df["lwage"].to_numpy(float)
    x = df["education"].to_numpy(float)
    K, A = site.max() + 1, arm.max() + 1
    r = fit(site, arm, x[:, None], y)
    cell = site * A + arm
    # UJIVE, Kolesar (2013): Xdot_i = leave-one-out cell mean - leave-one-out site mean
    xc, nc = _group_mean(x, cell)
    xs, ns = _group_mean(x, site)
    xdot = (nc * xc - x) / (nc - 1) - (ns * xs - x) / (ns - 1)
    beta = np.sum(xdot * y) / np.sum(xdot * x)
    yc, _ = _group_mean(y, cell)
    ys, _ = _group_mean(y, site)
    u = (y - ys) - (x - xs) * beta
    res = y - x * beta
    rc, _ = _group_mean(res, cell)
    rs, _ = _group_mean(res, site)
    a = (1 / nc - 1 / ns) / (1 - 1 / nc)
    gy = (rc - rs) - a * (res - rc)
    psi = u * xdot + gy * (x - xc)
    e = E["ujive"]
    np.testing.assert_allclose(r.estimate[e, 0], beta, rtol=1e-9)
    np.testing.assert_allclose(r.se[e, codes.SE_HETEROGENEITY_JIVE, 0], np.sqrt(psi @ psi) / abs(np.sum(xdot * x)),
                               rtol=1e-7)
    # complete KCFGI (2015) SE of MBTSLS, vec form
    e = E["mbtsls"]
    b_mb = r.estimate[e, 0]
    n, k, l = len(y), K * (A - 1), K
    nu = n - k - l
    V = np.column_stack([y - yc, x - xc])
    Yh = np.column_stack([yc - ys, xc - xs])  # P_Z~ [y, x]
    T = Yh.T @ Yh / n
    S = V.T @ V / nu
    Xi = T - k / n * S
    tau = (k / n) * (n - l) / nu
    Nm = 0.5 * (np.eye(4) + np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]))
    h = (1 / nc - 1 / ns) - k / nu * (1 - 1 / nc)
    delta = np.sum(h**2) / k
    mu = Yh.T @ h / np.sqrt(n * k)
    m2, m3, m4 = np.sum((1 - 1 / nc) ** 2), n - 3 * (k + l), n - 4 * (k + l)
    Psi3 = np.einsum("ia,ib,ic->bac", V, V, V).reshape(4, 2) / m3
    vecS = S.reshape(-1, order="F")
    Psi4 = np.einsum("ia,ib,ic,id->badc", V, V, V, V).reshape(4, 4)
    Psi4 = (Psi4 - (m2 - m4) * (2 * Nm @ np.kron(S, S) + np.outer(vecS, vecS))) / m4
    D = (2 * Nm @ (np.kron(Xi, S) + np.kron(S, Xi) + tau * np.kron(S, S))
         + (k / n) * delta * (Psi4 - np.outer(vecS, vecS) - 2 * Nm @ np.kron(S, S)))
    D3 = 2 * np.sqrt(k / n) * Nm @ np.kron(Psi3.T, mu[:, None])
    D = D + D3 + D3.T
    g = np.array([0.0, 1.0, 0.0, -b_mb]) / Xi[1, 1]  # d beta / d vec(Xi): Xi_21 and Xi_22
    np.testing.assert_allclose(r.se[e, codes.SE_MANY_INSTRUMENT_COMPLETE, 0], np.sqrt(g @ D @ g / n), rtol=1e-7)
    # the published MBTSLS estimate (ManyIV test_stata.R) and the Gaussian SE it extends
    np.testing.assert_allclose(b_mb, 0.0937333665, rtol=1e-8)
    assert np.isfinite(r.se[e, codes.SE_MANY_INSTRUMENT, 0])
