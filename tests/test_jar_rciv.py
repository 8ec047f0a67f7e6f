"""Issue 15: the random-coefficient IV (RRN 2012) with several mediators: per-mediator pooled estimates where
each site has L >= P arms, a status where a site's own compliance matrix is singular or too weak."""

import numpy as np
from test_rciv import E, dl_numpy, fit, hetero_data

from simulate.kernels import codes_nb as codes


def _site_iv(site, arm, M, Y, s, A):
    """Site s's own 2SLS with its arm dummies (overidentified when L > P) and its delta-method covariance
    B_XX^{-1} [sum_t n_c d_c d_c' s2_u,c] B_XX^{-1}, from the cell means (notes/estimators.md)."""
    cm = [(site == s) & (arm == t) for t in range(A)]
    n = np.array([c.sum() for c in cm], float)
    xm = np.array([M[c].mean(0) for c in cm])
    ym = np.array([Y[c].mean() for c in cm])
    xs, ys = n @ xm / n.sum(), n @ ym / n.sum()
    D, g = xm - xs, ym - ys
    Bxx = D.T @ (n[:, None] * D)
    beta = np.linalg.solve(Bxx, D.T @ (n * g))
    u = Y - M @ beta
    s2 = np.array([u[c].var(ddof=1) for c in cm])
    meat = (D * (n * s2)[:, None]).T @ D
    Bi = np.linalg.inv(Bxx)
    return beta, Bi @ meat @ Bi


def test_overidentified_sites_with_two_mediators_pool_per_mediator():
    """A = 4 arms, P = 2: each site's own (overidentified) 2SLS and its covariance in numpy; the pooled mean,
    both SEs and the cross-site SD are DerSimonian-Laird's per mediator."""
    K, A = 12, 4
    site, arm, M, Y = hetero_data(11, K, A, 2, n_lo=60, n_hi=120, gamma=2.0)
    r = fit(site, arm, M, Y)
    e = E["rciv_meta"]
    assert r.status[e] == codes.STATUS_OK
    fits = [_site_iv(site, arm, M, Y, s, A) for s in range(K)]
    bs = np.array([b for b, _ in fits])
    vs = np.array([v for _, v in fits])
    for p in range(2):
        mu, tau2, s_model, s_rob = dl_numpy(bs[:, p], vs[:, p, p])
        np.testing.assert_allclose(r.estimate[e, p], mu, rtol=1e-9)
        np.testing.assert_allclose(r.se[e, codes.SE_CONVENTIONAL, p], s_model, rtol=1e-9)
        np.testing.assert_allclose(r.se[e, codes.SE_CLUSTER, p], s_rob, rtol=1e-9)
        np.testing.assert_allclose(r.se[e, codes.SE_EFFECT_SD, p], np.sqrt(tau2), rtol=1e-8, atol=1e-12)


def test_a_site_with_a_singular_compliance_matrix_fails_with_a_status():
    """L = P = 2 arms beyond control, but in one site both arms move the mediators in proportion (rank 1):
    its own IV is not identified, rciv_meta fails as weak_site_compliance; the pooled estimators still run."""
    K, A = 8, 3
    site, arm, M, Y = hetero_data(3, K, A, 2, n_lo=60, n_hi=120, gamma=2.0)
    rng = np.random.default_rng(1)
    s0 = site == 2
    z = rng.standard_normal(s0.sum())
    M[s0, 0] = 1.0 * arm[s0] + z  # both mediators move by the same arm contrast: rank-one compliance
    M[s0, 1] = 2.0 * arm[s0] + 2.0 * z
    r = fit(site, arm, M, Y)
    assert r.status[E["rciv_meta"]] == codes.STATUS_WEAK_SITE_COMPLIANCE
    assert np.all(np.isnan(r.estimate[E["rciv_meta"]]))
    assert r.status[E["2sls"]] == codes.STATUS_OK
    # the same data without the degenerate site: ok
    keep = site != 2
    site2 = np.where(site[keep] > 2, site[keep] - 1, site[keep])
    r2 = fit(site2, arm[keep], M[keep], Y[keep])
    assert r2.status[E["rciv_meta"]] == codes.STATUS_OK
