"""Estimators, inference and diagnostics against linearmodels, plain numpy and identities."""

import json
import os
import subprocess
import sys

import naive_estimators as nv
import numpy as np
import pandas as pd
import pytest
from _data import make_data
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simulate import estimators as est_api
from simulate.estimators import ESTIMATORS, estimate, estimate_arrays
from simulate.kernels import codes_nb as nb
from simulate.kernels import jive_nb

linearmodels_iv = pytest.importorskip("linearmodels.iv")
IV2SLS, IVLIML = linearmodels_iv.IV2SLS, linearmodels_iv.IVLIML

E = {name: i for i, name in enumerate(ESTIMATORS)}
RTOL = 1e-8

designs = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(2, 7),  # sites
    st.integers(1, 3),  # arms beyond control (L)
    st.integers(1, 3),  # mediators
)


def fit(site, arm, M, Y):
    K, A = site.max() + 1, arm.max() + 1
    return estimate_arrays(site, arm, M, Y, K, A)


def well_posed(data):
    """All IV estimators succeed and every mediator is strongly identified.

    Agreement to 1e-8 between two implementations is only meaningful when the
    problem is well conditioned: with a near-singular first stage both sides lose
    digits in proportion to the condition number.
    """
    site, arm, M, Y = data
    K, A, P = site.max() + 1, arm.max() + 1, M.shape[1]
    if K * (A - 1) < P + 1:
        return False
    r = fit(*data)
    return (bool(np.all(r.status[:6] == 0)) and r.diagnostics[nb.D_SIGMA_RATIO] > 1e-2
            and bool(np.min(r.conditional_f) > 10.0))


# --------------------------------------------------------------- linearmodels
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(designs)
def test_kclass_agrees_with_linearmodels(design):
    """2SLS, LIML, Fuller(1): estimates and SEs equal linearmodels to relative 1e-8."""
    seed, K, L, P = design
    data = make_data(seed, K, L + 1, P, compliance_sd=3.0)
    assume(well_posed(data))
    site, arm, M, Y = data
    r = fit(*data)
    W, Z, _ = nv.design(site, arm, K, L + 1)
    n = Y.shape[0]
    exog, endog, instr = pd.DataFrame(W), pd.DataFrame(M), pd.DataFrame(Z)
    models = {
        "2sls": IV2SLS(Y, exog, endog, instr),
        "liml": IVLIML(Y, exog, endog, instr),
        "fuller": IVLIML(Y, exog, endog, instr, fuller=1),
    }
    for name, model in models.items():
        e = E[name]
        for cov, col in (("unadjusted", nb.SE_CONVENTIONAL), ("robust", nb.SE_HC0)):
            res = model.fit(cov_type=cov)
            np.testing.assert_allclose(r.estimate[e], np.asarray(res.params)[-P:], rtol=RTOL, atol=1e-13)
            np.testing.assert_allclose(r.se[e, col], np.asarray(res.std_errors)[-P:], rtol=RTOL)
        # debiased=True is n / (n - K - P) on the variance: our HC1 for 'robust'
        res = model.fit(cov_type="robust", debiased=True)
        np.testing.assert_allclose(r.se[e, nb.SE_HC1], np.asarray(res.std_errors)[-P:], rtol=RTOL)
        res = model.fit(cov_type="unadjusted", debiased=True)
        np.testing.assert_allclose(
            r.se[e, nb.SE_CONVENTIONAL] * np.sqrt(n / (n - K - P)), np.asarray(res.std_errors)[-P:], rtol=RTOL
        )
    res = models["2sls"].fit(cov_type="clustered", clusters=site, debiased=True)
    np.testing.assert_allclose(r.se[E["2sls"], nb.SE_CLUSTER], np.asarray(res.std_errors)[-P:], rtol=RTOL)
    res = models["2sls"].fit(cov_type="unadjusted")
    if K * L > P:
        np.testing.assert_allclose(r.diagnostics[nb.D_SARGAN], res.sargan.stat, rtol=RTOL)
    np.testing.assert_allclose(
        r.diagnostics[nb.D_LIML_KAPPA], models["liml"].fit().kappa, rtol=1e-10
    )


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.integers(1, 3))
def test_wald_and_ols_agree_with_linearmodels(seed, K, L):
    """Pooled Wald = IV2SLS with T as the single instrument; OLS = IV2SLS without instruments."""
    data = make_data(seed, K, L + 1, 1)
    site, arm, M, Y = data
    r = fit(*data)
    assume(r.status[E["wald"]] == 0)
    W, _, _ = nv.design(site, arm, K, L + 1)
    exog = pd.DataFrame(W)
    iv = IV2SLS(Y, exog, pd.DataFrame(M), pd.Series(arm.astype(float)))
    ols = IV2SLS(Y, pd.DataFrame(np.column_stack([W, M])), None, None)
    for cov, col in (("unadjusted", nb.SE_CONVENTIONAL), ("robust", nb.SE_HC0)):
        res = iv.fit(cov_type=cov)
        np.testing.assert_allclose(r.estimate[E["wald"], 0], res.params.iloc[-1], rtol=RTOL)
        np.testing.assert_allclose(r.se[E["wald"], col, 0], res.std_errors.iloc[-1], rtol=RTOL)
        res = ols.fit(cov_type=cov)
        np.testing.assert_allclose(r.estimate[E["ols"], 0], res.params.iloc[-1], rtol=RTOL)
        np.testing.assert_allclose(r.se[E["ols"], col, 0], res.std_errors.iloc[-1], rtol=RTOL)


# --------------------------------------------------------------- plain-numpy references
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(designs)
def test_kernels_agree_with_naive_references(design):
    """UJIVE, bias-corrected 2SLS, Bekker, KCFGI, heterogeneity SEs, between-site, OLS HC0."""
    seed, K, L, P = design
    data = make_data(seed, K, L + 1, P, max_cell=8, compliance_sd=3.0)
    assume(well_posed(data))
    site, arm, M, Y = data
    A = L + 1
    r = fit(*data)
    W, Z, _ = nv.design(site, arm, K, A)
    tol = dict(rtol=1e-9)

    u = nv.ujive(Y, M, Z, W)
    np.testing.assert_allclose(r.estimate[E["ujive"]], u["beta"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.se[E["ujive"], nb.SE_CONVENTIONAL], u["se_conventional"], **tol)
    np.testing.assert_allclose(r.se[E["ujive"], nb.SE_HC0], u["se_hc0"], **tol)

    b = nv.bias_corrected_tsls(Y, M, Z, W)
    e = E["mbtsls"]
    np.testing.assert_allclose(r.estimate[e], b["beta"], rtol=1e-9, atol=1e-12)
    for col, key in ((nb.SE_CONVENTIONAL, "se_conventional"), (nb.SE_HC0, "se_hc0"),
                     (nb.SE_HC1, "se_hc1"), (nb.SE_CLUSTER, "se_cluster")):
        np.testing.assert_allclose(r.se[e, col], b[key], **tol)
    if np.all(np.isfinite(r.se[e, nb.SE_MANY_INSTRUMENT])):
        np.testing.assert_allclose(r.se[e, nb.SE_MANY_INSTRUMENT], nv.kcfgi_se(Y, M, Z, W, b["beta"]), **tol)

    kap = nv.liml_kappa(Y, M, Z, W)
    for name, kk in (("liml", kap), ("fuller", kap - 1.0 / (Y.shape[0] - K * A))):
        e = E[name]
        ref = nv.kclass(Y, M, Z, W, kk)
        np.testing.assert_allclose(r.se[e, nb.SE_CLUSTER], ref["se_cluster"], **tol)
        np.testing.assert_allclose(r.se[e, nb.SE_MANY_INSTRUMENT],
                                   nv.bekker_se(Y, M, Z, W, r.estimate[e], kk), **tol)

    e = E["2sls"]
    H = nv.heterogeneity_se(Y, M, Z, W, r.estimate[e])
    PZ = nv.projection(np.column_stack([Z, W])) - nv.projection(W)
    Bi = np.linalg.inv(M.T @ PZ @ M)
    np.testing.assert_allclose(r.se[e, nb.SE_HETEROGENEITY], np.sqrt(np.diag(Bi @ H @ Bi)), **tol)

    np.testing.assert_allclose(r.se[E["ols"], nb.SE_HC0], nv.ols_hc0(Y, M, W), **tol)

    for name, w in (("between_ols", "none"), ("between_precision", "precision")):
        if K <= P:  # the site-level sandwich needs more sites than regressors
            assert r.status[E[name]] == nb.STATUS_TOO_FEW_SITES
            continue
        beta, sc, sr = nv.between_site(site, arm, M, Y, K, A, w)
        np.testing.assert_allclose(r.estimate[E[name]], beta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(r.se[E[name], nb.SE_CONVENTIONAL], sc, **tol)
        np.testing.assert_allclose(r.se[E[name], nb.SE_HC0], sr, **tol)
    if K > P + 1:
        beta, sc, sr = nv.between_site(site, arm, M, Y, K, A, "intercept")
        np.testing.assert_allclose(r.estimate[E["between_intercept"]], beta[1:], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(r.diagnostics[nb.D_DIRECT], beta[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(r.se[E["between_intercept"], nb.SE_HC0], sr[1:], **tol)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 3), st.integers(1, 3))
def test_cell_statistics_match_numpy(seed, K, L, P):
    site, arm, M, Y = make_data(seed, K, L + 1, P, min_cell=1)
    count, mean, cross = est_api.cell_statistics(site, arm, M, Y)
    V = np.column_stack([Y, M])
    for s in range(K):
        for t in range(L + 1):
            m = (site == s) & (arm == t)
            assert count[s, t] == m.sum()
            np.testing.assert_allclose(mean[s, t], V[m].mean(0), rtol=1e-12)
            D = V[m] - V[m].mean(0)
            np.testing.assert_allclose(cross[s, t], D.T @ D, rtol=1e-10, atol=1e-10)


def test_person_meats_match_numpy_over_several_blocks():
    """The blocked person-level HC0 meats equal sum_i u_i^2 h_i h_i' computed directly.

    OLS: h_i = x_i - xbar_s; UJIVE: h_i = leave-one-out cell mean minus leave-one-out site
    mean. Several blocks of persons and a partial last block, rows not sorted by site.
    """
    K, A = 9, 3
    for P in (1, 3):
        site, arm, M, Y = make_data(40 + P, K, A, P, min_cell=20, max_cell=60)
        n = Y.shape[0]
        assert n > 3 * 128 and n % 128 != 0
        count, mean, cross = est_api.cell_statistics(site, arm, M, Y)
        rng = np.random.default_rng(P)
        beta_ols, beta_uj = rng.normal(size=P), rng.normal(size=P)
        meat_ols, meat_uj = jive_nb.person_meats(site, arm, M, Y, count, mean, beta_ols, beta_uj)

        V = np.column_stack([Y, M])
        n_site = np.bincount(site, minlength=K)
        site_sum = np.zeros((K, P + 1))
        np.add.at(site_sum, site, V)
        cell_sum = np.zeros((K, A, P + 1))
        np.add.at(cell_sum, (site, arm), V)
        dev = V - (site_sum / n_site[:, None])[site]
        u_ols = dev[:, 0] - dev[:, 1:] @ beta_ols
        u_uj = dev[:, 0] - dev[:, 1:] @ beta_uj
        xdot = ((cell_sum[site, arm, 1:] - M) / (count[site, arm] - 1.0)[:, None]
                - (site_sum[site, 1:] - M) / (n_site[site] - 1.0)[:, None])
        for got, h, u in ((meat_ols, dev[:, 1:], u_ols), (meat_uj, xdot, u_uj)):
            ref = (h * (u**2)[:, None]).T @ h
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


# --------------------------------------------------------------- identities
@settings(max_examples=50, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(st.integers(0, 2**32 - 1), st.integers(2, 8), st.integers(1, 3))
def test_tsls_equals_between_site_regression_binary(seed, K, P):
    """Binary T: 2SLS = between-site regression weighted by n_s p_s (1 - p_s), through 0."""
    site, arm, M, Y = make_data(seed, K, 2, P, max_cell=30)
    assume(K >= P + 1)
    r = fit(site, arm, M, Y)
    assume(r.status[E["2sls"]] == 0)
    itt = np.array([Y[(site == s) & (arm == 1)].mean() - Y[(site == s) & (arm == 0)].mean() for s in range(K)])
    comp = np.array([M[(site == s) & (arm == 1)].mean(0) - M[(site == s) & (arm == 0)].mean(0) for s in range(K)])
    n_s = np.bincount(site)
    p_s = np.bincount(site, weights=arm) / n_s
    w = n_s * p_s * (1 - p_s)
    beta = np.linalg.solve((comp * w[:, None]).T @ comp, (comp * w[:, None]).T @ itt)
    np.testing.assert_allclose(r.estimate[E["2sls"]], beta, rtol=1e-10, atol=1e-12)


@settings(max_examples=50, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.integers(2, 4), st.integers(1, 3))
def test_tsls_equals_between_site_gls_multi_arm(seed, K, L, P):
    """Multi-arm T: 2SLS = GLS of the site ITT contrasts with weight n_s (diag p_s - p_s p_s')."""
    site, arm, M, Y = make_data(seed, K, L + 1, P, max_cell=20)
    r = fit(site, arm, M, Y)
    assume(r.status[E["2sls"]] == 0 and K * L > P)
    beta, _, _ = nv.between_site(site, arm, M, Y, K, L + 1, "tsls")
    np.testing.assert_allclose(r.estimate[E["2sls"]], beta, rtol=1e-10, atol=1e-12)


def test_kclass_ordering_and_anderson_rubin():
    """LIML minimises the Anderson-Rubin ratio; AR equals the F-test of the instruments."""
    site, arm, M, Y = make_data(7, 6, 3, 2)
    r = fit(site, arm, M, Y)
    K, A = 6, 3
    W, Z, C = nv.design(site, arm, K, A)
    ar = {name: est_api.anderson_rubin_test(site, arm, M, Y, r.estimate[E[name]])["statistic"]
          for name in ("2sls", "liml", "fuller")}
    assert ar["liml"] < ar["2sls"] and ar["liml"] < ar["fuller"]
    beta0 = np.array([0.3, -0.1])
    res = est_api.anderson_rubin_test(site, arm, M, Y, beta0)
    e = Y - M @ beta0
    rss_u = e @ (np.eye(len(e)) - nv.projection(C)) @ e
    rss_r = e @ (np.eye(len(e)) - nv.projection(W)) @ e
    df1, df2 = K * (A - 1), len(e) - K * A
    f = ((rss_r - rss_u) / df1) / (rss_u / df2)
    assert res["df1"] == df1 and res["df2"] == df2
    np.testing.assert_allclose(res["statistic"], f, rtol=1e-10)
    from scipy import stats
    np.testing.assert_allclose(res["p_value"], stats.f.sf(f, df1, df2), rtol=1e-10)


def test_anderson_rubin_without_degrees_of_freedom_is_a_message_not_a_crash():
    # one person per cell: n - K A = 0 within-cell degrees of freedom
    site = np.repeat(np.arange(4), 2)
    arm = np.tile([0, 1], 4)
    M = np.arange(8.0)[:, None] ** 1.5
    Y = np.sin(np.arange(8.0))
    with pytest.raises(est_api.EstimationError, match="more persons .8. than site-by-arm cells .8."):
        est_api.anderson_rubin_test(site, arm, M, Y, [0.1])
    with pytest.raises(est_api.EstimationError, match="treatment: .* at least two arms"):
        est_api.anderson_rubin_test(site, np.zeros(8, np.int64), M, Y, [0.1], n_arms=1)
    # an exact fit at the hypothesised effect: no residual variance, so no statistic (NaN, not a ZeroDivisionError)
    site = np.repeat(np.arange(3), 6)
    arm = np.tile([0, 0, 0, 1, 1, 1], 3)
    M = np.random.default_rng(0).normal(size=(18, 1))
    res = est_api.anderson_rubin_test(site, arm, M, 0.5 * M[:, 0], [0.5])
    assert np.isnan(res["statistic"]) and np.isnan(res["p_value"])


def test_first_stage_and_conditional_f():
    """First-stage F per mediator and the Sanderson-Windmeijer conditional F from numpy."""
    site, arm, M, Y = make_data(11, 7, 3, 2)
    K, A, P = 7, 3, 2
    r = fit(site, arm, M, Y)
    W, Z, C = nv.design(site, arm, K, A)
    n = len(Y)
    MC = np.eye(n) - nv.projection(C)
    MW = np.eye(n) - nv.projection(W)
    k, df2 = K * (A - 1), n - K * A
    for p in range(P):
        x = M[:, p]
        f = ((x @ MW @ x - x @ MC @ x) / k) / (x @ MC @ x / df2)
        np.testing.assert_allclose(r.first_stage_f[p], f, rtol=1e-10)
        # SW: 2SLS of x_p on x_-p (with W), then F of its residual on the instruments
        other = np.delete(M, p, axis=1)
        delta = nv.tsls(x, other, Z, W)["beta"]
        e = MW @ (x - other @ delta)
        sw = ((e @ e - e @ MC @ e) / (k - P + 1)) / (e @ MC @ e / df2)
        np.testing.assert_allclose(r.conditional_f[p], sw, rtol=1e-9)
    assert r.first_stage_f[0] != r.conditional_f[0]


def test_nonlinearity_test_detects_curvature():
    """The squared-compliance test rejects a strongly nonlinear between-site relation."""
    flat = fit(*make_data(3, 60, 2, 1, min_cell=40, max_cell=60, compliance_sd=1.0))
    bent = fit(*make_data(3, 60, 2, 1, min_cell=40, max_cell=60, compliance_sd=1.0, curvature=2.0))
    d_flat = est_api.diagnostic_values(flat)
    d_bent = est_api.diagnostic_values(bent)
    assert d_bent["nonlinearity_df"] == 1
    assert d_bent["nonlinearity_p"] < 1e-4
    assert d_flat["nonlinearity_p"] > 1e-3
    # the statistic is a Wald test on the squared-compliance coefficient: check by numpy
    site, arm, M, Y = make_data(3, 60, 2, 1, min_cell=40, max_cell=60, curvature=2.0)
    yv, G, tval, srow = nv.site_contrasts(site, arm, M, Y, 60, 2)
    X = np.column_stack([tval, G, G**2])
    XtXi = np.linalg.inv(X.T @ X)
    b = XtXi @ X.T @ yv
    res = yv - X @ b
    h = np.einsum("ij,jk,ik->i", X, XtXi, X)  # leverages: the jackknife (CR3 = HC3 with one contrast per site)
    e = res / (1 - h)
    V = XtXi @ ((X * e[:, None] ** 2).T @ X) @ XtXi
    np.testing.assert_allclose(d_bent["nonlinearity_stat"], b[2] ** 2 / V[2, 2], rtol=1e-9)
    from scipy import stats
    np.testing.assert_allclose(d_bent["nonlinearity_p"], stats.f.sf(b[2] ** 2 / V[2, 2], 1, 60 - 1 - 2), rtol=1e-9)


# --------------------------------------------------------------- failure is a status
def test_empty_arm_is_a_status():
    site, arm, M, Y = make_data(1, 4, 2, 1)
    keep = ~((site == 2) & (arm == 1))
    r = estimate_arrays(site[keep], arm[keep], M[keep], Y[keep], 4, 2)
    assert r.status[E["ols"]] == nb.STATUS_OK
    assert np.all(r.status[1:] == nb.STATUS_EMPTY_CELL)
    assert np.all(np.isnan(r.estimate[1:]))
    frame = estimate(site[keep], arm[keep], M[keep], Y[keep], n_sites=4, n_arms=2)
    assert set(frame.loc[frame.estimator == "2sls", "status"]) == {"empty_cell"}


def test_fewer_sites_than_mediators_is_a_status():
    site, arm, M, Y = make_data(2, 1, 2, 3, min_cell=20, max_cell=30)
    r = fit(site, arm, M, Y)
    assert np.all(r.status[1:] == nb.STATUS_TOO_FEW_SITES)
    assert np.all(np.isnan(r.estimate[1:]))
    assert r.status[E["ols"]] == nb.STATUS_OK


def test_singular_first_stage_is_a_status():
    site, arm, M, Y = make_data(5, 5, 2, 1)
    M2 = np.column_stack([M[:, 0], 2.0 * M[:, 0]])  # collinear mediators
    r = fit(site, arm, M2, Y)
    for name in ("2sls", "liml", "fuller", "ujive", "mbtsls", "between_ols"):
        assert r.status[E[name]] == nb.STATUS_SINGULAR, name
        assert np.all(np.isnan(r.estimate[E[name]]))
    # no first stage at all: the mediator does not move with the arm in any site
    site, arm, M, Y = make_data(6, 5, 2, 1)
    M0 = np.zeros_like(M) + 1.0
    r = fit(site, arm, M0, Y)
    assert r.status[E["2sls"]] == nb.STATUS_SINGULAR
    assert r.status[E["wald"]] == nb.STATUS_SINGULAR


def test_wald_needs_one_mediator_and_ujive_two_per_cell():
    r = fit(*make_data(4, 5, 2, 2))
    assert r.status[E["wald"]] == nb.STATUS_NOT_APPLICABLE
    site, arm, M, Y = make_data(4, 5, 2, 1, min_cell=1, max_cell=1)
    r = fit(site, arm, M, Y)
    assert r.status[E["ujive"]] == nb.STATUS_SINGLETON_CELL
    assert r.status[E["between_precision"]] == nb.STATUS_SINGLETON_CELL


def test_estimate_frame_columns_and_inference():
    site, arm, M, Y = make_data(9, 8, 2, 2, min_cell=10, max_cell=30)
    frame = estimate(site, arm, M, Y, mediator_names=["a", "b"], level=0.9)
    needed = {"estimator", "mediator", "estimate", "se_conventional", "se_robust", "conf_low",
              "conf_high", "p_value", "status", "first_stage_f", "conditional_f", "sigma_min",
              "overid_stat", "overid_p", "nonlinearity_stat", "nonlinearity_p", "se_many_instrument"}
    assert needed <= set(frame.columns)
    assert len(frame) == len(ESTIMATORS) * 2 + 1  # + the direct effect row
    row = frame[(frame.estimator == "liml") & (frame.mediator == "b")].iloc[0]
    assert row.se_type == "cluster" and row.std_error == row.se_cluster
    from scipy import stats
    q = stats.t.ppf(0.95, df=8 - 1)  # 8 sites: t with K - 1 degrees of freedom
    np.testing.assert_allclose(row.conf_low, row.estimate - q * row.se_cluster, rtol=1e-12)
    np.testing.assert_allclose(row.p_value, 2 * stats.t.sf(abs(row.estimate / row.se_cluster), df=7), rtol=1e-10)
    row = frame[(frame.estimator == "between_intercept") & (frame.mediator == "direct_effect")].iloc[0]
    q = stats.t.ppf(0.95, df=8 - 2 - 1)
    np.testing.assert_allclose(row.conf_high, row.estimate + q * row.se_robust, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate(site, arm, M, Y, estimators=["2sls", "jive9"])
    with pytest.raises(ValueError, match="NaN"):
        estimate(site, arm, np.where(np.arange(len(Y))[:, None] == 3, np.nan, M), Y)
    sub = estimate(site, arm, M, Y, estimators=["2sls"])
    assert list(sub.estimator.unique()) == ["2sls"]


def test_statistics_path_equals_person_path():
    site, arm, M, Y = make_data(12, 5, 3, 2)
    full = fit(site, arm, M, Y)
    count, mean, cross = est_api.cell_statistics(site, arm, M, Y)
    stats_only = est_api.estimate_statistics(count, mean, cross)
    np.testing.assert_array_equal(full.estimate, stats_only.estimate)
    assert np.all(np.isnan(stats_only.se[E["ols"], nb.SE_HC0]))
    np.testing.assert_array_equal(full.se[E["2sls"]], stats_only.se[E["2sls"]])


# --------------------------------------------------------------- Numba disabled
_SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from _data import make_data
from simulate.estimators import estimate_arrays
import numba
site, arm, M, Y = make_data(21, 5, 3, 2)
r = estimate_arrays(site, arm, M, Y, 5, 3)
print(json.dumps({{"jit": not numba.config.DISABLE_JIT, "estimate": r.estimate.tolist(),
                  "se": r.se.tolist(), "status": r.status.tolist()}}))
"""


def test_kernels_run_without_jit():
    """The pure-Python run of the kernels (NUMBA_DISABLE_JIT=1) equals the compiled run."""
    here = os.path.dirname(__file__)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1",
               PYTHONPATH=os.pathsep.join([os.path.dirname(here), env_path()]))
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(tests=here)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    py = json.loads(out.stdout)
    assert py["jit"] is False
    r = fit(*make_data(21, 5, 3, 2))
    np.testing.assert_allclose(np.array(py["estimate"], float), r.estimate, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(np.array(py["se"], float), r.se, rtol=1e-10, equal_nan=True)
    assert py["status"] == r.status.tolist()


def env_path():
    return os.environ.get("PYTHONPATH", "")
