"""Site distributions beyond the normal (issue 14): a skewed and a heavy-tailed (multivariate t) family.

Both keep the means and the covariance of the site vector.  Which moments the truth reads: for
continuous mediators without paths or nonlinear dependence, the 2SLS limit is
E[G G']^-1 E[G G' delta]-type moments, polynomials of degree three in the site draws, so a
symmetric family with the normal's covariance (the t) leaves it where it is, and a skewed one moves
it through the third cross moments E[u_gamma^2 u_delta]; with path coefficients that vary between
sites (or nonlinear dependence) fourth moments enter and the t moves the limit too.  Checked
against closed forms and plain numpy site simulations; the generator's own draws are checked for
the family's moments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulate.dgp import plan, streams
from simulate.kernels.dgp_nb import draw_sites
from simulate.layout import Layout
from simulate.scenario import ScenarioError, loads
from simulate.truth import truth

ONE = """
n_sites = 50
n_per_site = 200
[site]
compliance_mean = 1.0
compliance_sd = 0.4
effect_mean = 0.5
effect_sd = 0.2
compliance_effect_correlation = 0.5
{extra}
"""


def one(extra=""):
    return loads(ONE.format(extra=extra))


def kappa3(b):
    """E[w^3] of w = sqrt(1 - b^2) z + b (z^2 - 1) / sqrt 2."""
    return 3 * math.sqrt(2) * (1 - b * b) * b + 2 * math.sqrt(2) * b ** 3


def _spread(fn, seeds):
    vals = np.array([fn(s) for s in seeds])
    return vals.mean(axis=0), vals.std(axis=0, ddof=1) / math.sqrt(len(seeds))


@pytest.mark.parametrize(("extra", "message"), [
    ("heavy_tails = 0.25", "site.heavy_tails: must be < 0.25"),
    ("skew = 1.0", "site.skew: must be < 1"),
])
def test_bounds_are_one_line_errors(extra, message):
    with pytest.raises(ScenarioError) as e:
        one(extra)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_binary_mediators_refuse_a_non_normal_site_distribution():
    with pytest.raises(ScenarioError, match="site.skew: applies to continuous mediators only"):
        loads('[mediators]\nkind = "binary"\n[site]\nskew = 0.3\neffect_sd = 0.1\n')


def test_off_leaves_the_spec_alone():
    assert one().hash == one("skew = 0.0\nheavy_tails = 0.0").hash != one("skew = 0.1").hash
    assert '"skew"' not in one().spec and one().to_dict()["site"]["skew"] == 0.0


def test_generator_skewed_sites_have_the_family_moments():
    b = 0.6
    sc = one(f"skew = {b}")
    L = Layout.of(sc)
    pl = plan(sc)

    def stats(seed, K=100_000):
        site, _, _, _, _ = draw_sites(streams(seed), K, pl)
        u1 = (site[:, L.site_compliance(0)] - 1.0) / 0.4
        u2 = (site[:, L.site_effect(0)] - 0.5) / 0.2
        return np.array([u1.mean(), u1.var(), (u1 ** 3).mean(), (u1 * u2).mean(), (u1 ** 2 * u2).mean()])

    mean, se = _spread(stats, range(12))
    # u = F w with F = chol([[1, r], [r, 1]]): E[u1^3] = kappa3, E[u1^2 u2] = r kappa3
    want = np.array([0.0, 1.0, kappa3(b), 0.5, 0.5 * kappa3(b)])
    assert np.all(np.abs(mean - want) < 4 * se + 1e-9), (mean, want, se)


def test_generator_heavy_tailed_sites_are_t_with_the_same_covariance():
    nu = 10.0
    sc = one(f"heavy_tails = {1 / nu}")
    L = Layout.of(sc)
    pl = plan(sc)

    def stats(seed, K=100_000):
        site, _, _, _, _ = draw_sites(streams(seed), K, pl)
        u1 = (site[:, L.site_compliance(0)] - 1.0) / 0.4
        u2 = (site[:, L.site_effect(0)] - 0.5) / 0.2
        return np.array([u1.var(), (u1 * u2).mean(), (u1 ** 4).mean(), (u1 ** 3).mean()])

    mean, se = _spread(stats, range(12))
    want = np.array([1.0, 0.5, 3 + 6 / (nu - 4), 0.0])  # the t's kurtosis 3 + 6 / (nu - 4)
    assert np.all(np.abs(mean - want) < 4 * se), (mean, want, se)


def test_skewed_limit_matches_the_third_moment_closed_form():
    b = 0.6
    sc = one(f"skew = {b}")
    # 2SLS limit E[gamma^2 delta] / E[gamma^2] = mu_d + r s_g s_d (2 mu_g + s_g kappa3 E) / (mu_g^2 + s_g^2)
    want = 0.5 + 0.5 * 0.4 * 0.2 * (2 * 1.0 + 0.4 * kappa3(b)) / (1.0 + 0.16)
    normal = 0.5 + 0.5 * 0.4 * 0.2 * 2 / 1.16
    mean, se = _spread(lambda s: truth(sc, n_sites=250_000, seed=s).limit_2sls[0], range(4))
    assert abs(mean - want) < 4 * se + 1e-6, (mean, want, se)
    assert abs(want - normal) > 20 * se  # the check can tell the families apart
    assert truth(sc).ate[0] == 0.5


def test_heavy_tails_leave_a_degree_three_limit_and_move_a_path_limit():
    nu = 6.0
    sc = one(f"heavy_tails = {1 / nu}")
    normal = 0.5 + 0.5 * 0.4 * 0.2 * 2 / 1.16
    mean, se = _spread(lambda s: truth(sc, n_sites=250_000, seed=s).limit_2sls[0], range(4))
    assert abs(mean - normal) < 4 * se + 1e-6, (mean, normal, se)
    # with a path whose coefficient varies between sites the limit reads E[beta^2 gamma^2 delta]-type
    # moments: check against numpy drawing the multivariate t sites itself
    text = """
n_sites = 50
n_per_site = 200
[mediators]
names = ["a", "b"]
[site]
compliance_mean = [1.0, 0.6]
compliance_sd = [0.4, 0.3]
effect_mean = [0.5, 0.25]
effect_sd = [0.1, 0.2]
heavy_tails = %s
[site.correlations]
"path_1_2:effect_2" = 0.6
[[paths]]
from = 1
to = 2
mean = 0.5
site_sd = 0.6
"""
    nu = 10.0  # eighth moments finite, so the fourth-moment estimates settle
    tr_t = truth(loads(text % (1 / nu)))
    tr_n = truth(loads(text % 0.0))

    def batch(seed, K=500_000):
        rng = np.random.default_rng(100 + seed)
        z = rng.standard_normal((K, 5))
        r = np.eye(5)
        r[3, 4] = r[4, 3] = 0.6  # (g1, g2, d1, d2, beta): beta with d2
        u = z @ np.linalg.cholesky(r).T * np.sqrt((nu - 2) / rng.chisquare(nu, K))[:, None]
        g1, g2 = 1.0 + 0.4 * u[:, 0], 0.6 + 0.3 * u[:, 1]
        d1, d2 = 0.5 + 0.1 * u[:, 2], 0.25 + 0.2 * u[:, 3]
        beta = 0.5 + 0.6 * u[:, 4]
        G = np.column_stack([g1, g2 + beta * g1])
        y = g1 * d1 + G[:, 1] * d2
        return np.linalg.solve(G.T @ G, G.T @ y)

    mean, se = _spread(batch, range(16))
    assert np.all(np.abs(np.array(tr_t.limit_2sls) - mean) < 4 * se + 3e-3), (tr_t.limit_2sls, mean, se)
    assert abs(tr_t.limit_2sls[0] - tr_n.limit_2sls[0]) > 0.005  # fourth moments: the t moves this limit (SE ~5e-4)
