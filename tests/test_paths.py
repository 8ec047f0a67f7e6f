"""Assumption v in its between-site form, chains of paths, total effects; spillover onto the treated;
mediator interactions in Y (issue 14).

Every truth is checked against an independent computation: a hand-derived formula, or plain numpy
drawing the sites (or persons) from the model's own distribution.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulate.dgp import draw, plan, streams
from simulate.kernels.dgp_nb import draw_sites
from simulate.layout import Layout, path_name
from simulate.scenario import ScenarioError, from_dict, loads
from simulate.truth import truth

TWO = """
name = "t"
n_sites = 40
n_per_site = 100
[mediators]
names = ["a", "b"]
[site]
compliance_mean = [1.0, 0.6]
compliance_sd = [0.4, 0.3]
effect_mean = [0.5, 0.25]
effect_sd = [0.1, 0.2]
{site}
[person]
effect_sd = [0.2, 0.2]
[[paths]]
from = 1
to = 2
mean = 0.5
site_sd = 0.3
{path}
{rest}
"""


def two(site="", path="", rest=""):
    return loads(TWO.format(site=site, path=path, rest=rest))


def _batches(fn, n_batches=16, seed=5):
    """Mean and standard error over independent numpy batches of ``fn(rng)``."""
    rng = np.random.default_rng(seed)
    vals = np.array([fn(rng) for _ in range(n_batches)])
    return vals.mean(axis=0), vals.std(axis=0, ddof=1) / math.sqrt(n_batches)


# -- layout and validation -------------------------------------------------------------


def test_layout_names_the_path_components_after_the_site_vector():
    L = Layout(3, 2, ((0, 1), (1, 2)))
    assert L.path_names == ("path_1_2", "path_2_3")
    assert L.site_path(0) == L.site_size and L.site_path(1) == L.site_size + 1
    assert L.site_extended_names[L.site_path(1)] == "path_2_3" == path_name(1, 2)
    assert L.site_extended_size == 2 * 3 + 1 + 2
    with pytest.raises(ValueError):
        Layout(2, 1, ((0, 1), (0, 1)))


@pytest.mark.parametrize(("text", "message"), [
    (TWO.format(site='[site.correlations]\n"path_1_3:effect_2" = 0.3', path="", rest=""),
     "site.correlations.path_1_3:effect_2: unknown component 'path_1_3'"),
    (TWO.format(site='[site.correlations]\n"path_1_2:effect_2" = 0.3', path="", rest="").replace(
        "site_sd = 0.3", "site_sd = 0.0"),
     "site.correlations.path_1_2:effect_2: has no effect while paths[1].site_sd is 0"),
    (TWO.format(site='[site.correlations]\n"path_1_2:effect_2" = 0.9\n"path_1_2:compliance_1" = 0.9\n'
                     '"compliance_1:effect_2" = -0.9', path="", rest=""),
     "site.correlations: the correlation matrix of (compliance_1, compliance_2, effect_1, effect_2, "
     "direct_effect, path_1_2) is not positive semi-definite"),
    (TWO.format(site="", path="", rest="[[interactions]]\nfirst = 2\nsecond = 1\ncoefficient = 0.1"),
     "interactions[1]: must name two different mediators with first < second"),
    (TWO.format(site="", path="", rest="[[interactions]]\nfirst = 1\nsecond = 3\ncoefficient = 0.1"),
     "interactions[1]: first and second must name mediators 1..2"),
    (TWO.format(site="", path="", rest="[[interactions]]\nfirst = 1\ncoefficient = 0.1"),
     "interactions[1].second: is required"),
    (TWO.format(site="", path="", rest="[[interactions]]\nfirst = 1\nsecond = 2\n[[interactions]]\nfirst = 1\n"
                                       "second = 2"),
     "interactions[2]: a second interaction of mediators 1 and 2"),
    (TWO.format(site="", path="", rest="[spillover]\ntreated_outcom = 0.1"),
     "spillover.treated_outcom"),
])
def test_bad_input_is_one_line_naming_the_field(text, message):
    with pytest.raises(ScenarioError) as e:
        loads(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_chains_are_valid_and_off_dials_leave_the_spec_and_hash_alone():
    three = loads("""
[mediators]
count = 3
[site]
compliance_sd = 0.3
[[paths]]
from = 1
to = 2
mean = 0.3
[[paths]]
from = 2
to = 3
mean = 0.3
""")
    assert [(r.source, r.target) for r in three.paths] == [(0, 1), (1, 2)]
    sc = two()
    assert '"interactions"' not in sc.spec and "treated_outcome" not in sc.spec
    full = sc.to_dict()  # the normalised table, every default filled in
    assert full["interactions"] == [] and full["spillover"]["treated_outcome"] == 0.0
    assert two(rest="[spillover]\ntreated_outcome = 0.0").hash == sc.hash
    assert two(rest="[spillover]\ntreated_outcome = 0.1").hash != sc.hash
    assert from_dict(sc.to_dict()).hash == sc.hash
    on = two(rest="[[interactions]]\nfirst = 1\nsecond = 2\ncoefficient = 0.1")
    assert from_dict(on.to_dict()).interactions == on.interactions == ((0, 1, 0.1),)


# -- the generator ----------------------------------------------------------------------


def test_path_factor_reproduces_the_extended_correlation_and_is_exact_when_off():
    sc = two(site='[site.correlations]\n"path_1_2:effect_2" = 0.6\n"path_1_2:compliance_1" = -0.3')
    pl = plan(sc)
    F = np.block([[pl.F_site, np.zeros((pl.F_site.shape[0], 1))], [pl.F_path_site, pl.F_path]])
    np.testing.assert_allclose(F @ F.T, np.array(sc.site_path_correlation), atol=1e-12)
    off = plan(two())
    assert not off.F_path_site.any() and np.array_equal(off.F_path, np.eye(1))


def test_generator_draws_the_site_path_coefficient_correlated_with_the_site_effect():
    sc = two(site='[site.correlations]\n"path_1_2:effect_2" = 0.6')
    pl = plan(sc)
    K = 40_000
    site_params, _, _, path_site, _ = draw_sites(streams(11), K, pl)
    L = Layout.of(sc)
    beta = path_site[:, 0]
    delta2 = site_params[:, L.site_effect(1)]
    r = np.corrcoef(beta, delta2)[0, 1]
    assert abs(r - 0.6) < 4 * (1 - 0.36) / math.sqrt(K)
    assert abs(beta.mean() - 0.5) < 4 * 0.3 / math.sqrt(K) and abs(beta.std() - 0.3) < 0.01
    # the site vector itself is drawn as without the correlation (same stream, same loadings)
    site0, _, _, path0, _ = draw_sites(streams(11), K, plan(two()))
    assert np.array_equal(site0, site_params)
    assert np.corrcoef(path0[:, 0], site0[:, L.site_effect(1)])[0, 1] < 4 / math.sqrt(K)


def test_chain_compliance_is_the_whole_change_of_the_source():
    sc = loads("""
n_sites = 6
n_per_site = 40
[mediators]
count = 3
[site]
compliance_mean = [1.0, 0.5, 0.2]
compliance_sd = 0.3
[[paths]]
from = 1
to = 2
mean = 0.4
[[paths]]
from = 2
to = 3
mean = -0.7
[[paths]]
from = 1
to = 3
mean = 0.25
""")
    tr = draw(sc, 3)
    g = tr.site_compliance[tr.site]
    g2 = g[:, 1] + 0.4 * g[:, 0]
    np.testing.assert_allclose(tr.compliance[:, 1], g2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tr.compliance[:, 2], g[:, 2] - 0.7 * g2 + 0.25 * g[:, 0], rtol=0, atol=1e-12)


def test_spillover_onto_the_treated_and_interactions_consume_no_random_numbers():
    base = two()
    on = two(rest="[spillover]\ntreated_outcome = 0.3\ntreated_mediator = [0.2, 0.0]")
    a, b = draw(base, 9), draw(on, 9)
    treated = a.treatment > 0
    share = a.share_treated[a.site]
    assert np.array_equal(a.treatment, b.treatment)
    np.testing.assert_array_equal(b.mediators[~treated], a.mediators[~treated])
    np.testing.assert_allclose(b.mediators[treated, 0] - a.mediators[treated, 0], 0.2 * share[treated], atol=1e-12)
    # Y moves by the outcome spillover and by Delta_1 times the mediator's spillover
    extra = 0.3 * share + 0.2 * share * a.effect[:, 0]
    np.testing.assert_allclose(b.outcome - a.outcome, np.where(treated, extra, 0.0), atol=1e-12)
    inter = two(rest="[[interactions]]\nfirst = 1\nsecond = 2\ncoefficient = 0.25")
    c = draw(inter, 9)
    np.testing.assert_allclose(c.outcome - a.outcome, 0.25 * a.mediators[:, 0] * a.mediators[:, 1], atol=1e-12)


# -- the truth --------------------------------------------------------------------------


def test_limit_with_a_site_path_correlated_with_the_downstream_effect_matches_numpy_sites():
    sc = two(site='[site.correlations]\n"path_1_2:effect_2" = 0.6')
    tr = truth(sc)

    def batch(rng, K=500_000):
        g1 = 1.0 + 0.4 * rng.standard_normal(K)
        g2 = 0.6 + 0.3 * rng.standard_normal(K)
        d1 = 0.5 + 0.1 * rng.standard_normal(K)
        z, w = rng.standard_normal(K), rng.standard_normal(K)
        d2 = 0.25 + 0.2 * z
        b = 0.5 + 0.3 * (0.6 * z + 0.8 * w)
        G = np.column_stack([g1, g2 + b * g1])  # the site ITTs on the mediators (binary treatment)
        y = g1 * d1 + G[:, 1] * d2  # and on the outcome
        return np.linalg.solve(G.T @ G, G.T @ y)

    mean, se = _batches(batch)
    assert np.all(np.abs(np.array(tr.limit_2sls) - mean) < 4 * se + 2e-4), (tr.limit_2sls, mean, se)
    assert abs(tr.limit_2sls[0] - 0.5) > 0.1  # the correlation moves the upstream mediator's limit
    assert tr.total_effect[0] == pytest.approx(0.5 + 0.5 * 0.25 + 0.6 * 0.3 * 0.2, abs=1e-12)
    assert tr.total_effect[1] == tr.ate[1]


def test_total_effect_by_hand_with_person_level_path_coefficients():
    sc = two(site='[site.correlations]\n"path_1_2:effect_2" = -0.4',
             path="person_sd = 0.5\neffect_correlation = 0.7")
    tr = truth(sc, n_sites=20_000)
    # E[Delta_1 + B Delta_2] = d1 + m d2 + cov(beta, delta_2) + person_sd rho sd(Delta_2)
    want = 0.5 + 0.5 * 0.25 - 0.4 * 0.3 * 0.2 + 0.5 * 0.7 * 0.2
    assert tr.total_effect[0] == pytest.approx(want, abs=1e-12)
    assert tr.to_records()[0]["total_effect"] == tr.total_effect[0]


CHAIN = """
n_sites = 40
n_per_site = 100
[mediators]
count = 3
[site]
compliance_mean = [1.0, 0.6, 0.4]
compliance_sd = [0.4, 0.3, 0.3]
effect_mean = [0.5, 0.25, 0.3]
effect_sd = [0.1, 0.2, 0.15]
nonlinear_dependence = [0.0, 0.0, 0.5]
[site.correlations]
"path_1_2:effect_3" = 0.3
"path_2_3:effect_3" = 0.5
[person]
effect_sd = [0.2, 0.2, 0.2]
[[paths]]
from = 1
to = 2
mean = 0.5
site_sd = 0.3
[[paths]]
from = 2
to = 3
mean = 0.4
site_sd = 0.2
person_sd = 0.3
effect_correlation = 0.6
"""


def test_chain_total_effect_matches_a_numpy_person_simulation():
    sc = loads(CHAIN)
    tr = truth(sc, n_sites=20_000)

    def batch(rng, n=1_000_000):
        # site components: compliance_3 (the nonlinear term's), effect_2, and (path_1_2, path_2_3, effect_3)
        u_c3, e2 = rng.standard_normal(n), rng.standard_normal(n)
        r = np.array([[1, 0.0, 0.3], [0.0, 1, 0.5], [0.3, 0.5, 1]])
        zz = rng.standard_normal((n, 3)) @ np.linalg.cholesky(r).T
        p12, p23, e3 = zz[:, 0], zz[:, 1], zz[:, 2]
        d1 = 0.5 + 0.1 * rng.standard_normal(n) + 0.2 * rng.standard_normal(n)
        uD2, uD3 = rng.standard_normal(n), rng.standard_normal(n)
        D2 = 0.25 + 0.2 * e2 + 0.2 * uD2
        D3 = 0.3 + 0.15 * e3 + 0.5 * 0.15 * (u_c3 ** 2 - 1) / math.sqrt(2) + 0.2 * uD3
        B12 = 0.5 + 0.3 * p12
        B23 = 0.4 + 0.2 * p23 + 0.3 * (0.6 * uD3 + 0.8 * rng.standard_normal(n))
        T1 = d1 + B12 * (D2 + B23 * D3)
        T2 = D2 + B23 * D3
        return np.array([T1.mean(), T2.mean()])

    mean, se = _batches(batch, n_batches=12)
    assert np.all(np.abs(np.array(tr.total_effect[:2]) - mean) < 3.5 * se), (tr.total_effect, mean, se)
    # and by hand: E[B23 D3] = 0.4 * 0.3 + 0.2 * 0.5 * 0.15 + 0.3 * 0.6 * 0.2
    e_b23_d3 = 0.4 * 0.3 + 0.2 * 0.5 * 0.15 + 0.3 * 0.6 * 0.2
    assert tr.total_effect[1] == pytest.approx(0.25 + e_b23_d3, abs=1e-12)
    assert tr.total_effect[2] == tr.ate[2]


def test_chain_limit_matches_numpy_sites():
    sc = loads(CHAIN.replace('nonlinear_dependence = [0.0, 0.0, 0.5]', '').replace(
        'person_sd = 0.3\neffect_correlation = 0.6', ''))
    tr = truth(sc)

    def batch(rng, K=400_000):
        g = np.array([1.0, 0.6, 0.4]) + np.array([0.4, 0.3, 0.3]) * rng.standard_normal((K, 3))
        d1 = 0.5 + 0.1 * rng.standard_normal(K)
        e2 = rng.standard_normal(K)
        r = np.array([[1, 0.0, 0.3], [0.0, 1, 0.5], [0.3, 0.5, 1]])  # (p12, p23, e3)
        zz = rng.standard_normal((K, 3)) @ np.linalg.cholesky(r).T
        b12, b23 = 0.5 + 0.3 * zz[:, 0], 0.4 + 0.2 * zz[:, 1]
        d2, d3 = 0.25 + 0.2 * e2, 0.3 + 0.15 * zz[:, 2]
        G1 = g[:, 0]
        G2 = g[:, 1] + b12 * G1
        G3 = g[:, 2] + b23 * G2
        G = np.column_stack([G1, G2, G3])
        y = G1 * d1 + G2 * d2 + G3 * d3
        return np.linalg.solve(G.T @ G, G.T @ y)

    mean, se = _batches(batch, n_batches=12)
    assert np.all(np.abs(np.array(tr.limit_2sls) - mean) < 4 * se + 5e-4), (tr.limit_2sls, mean, se)


def test_spillover_onto_the_treated_limit_by_hand():
    # P = 1, gamma ~ N(m, s^2) independent of delta: the ITT on Y gains (s_t - s_c) p, so the 2SLS
    # limit is E[delta] + (s_t - s_c) p m / (m^2 + s^2)
    text = """
n_sites = 40
n_per_site = 100
[site]
compliance_mean = 0.8
compliance_sd = 0.4
effect_mean = 0.3
effect_sd = 0.1
[spillover]
outcome = 0.1
treated_outcome = 0.4
"""
    tr = truth(loads(text), n_sites=20_000)
    want = 0.3 + (0.4 - 0.1) * 0.5 * 0.8 / (0.8 ** 2 + 0.4 ** 2)
    assert tr.limit_2sls[0] == pytest.approx(want, abs=1e-9)
    # a spillover onto everyone alike is absorbed by the site effects
    same = truth(loads(text.replace("treated_outcome = 0.4", "treated_outcome = 0.1")), n_sites=20_000)
    assert same.limit_2sls[0] == pytest.approx(0.3, abs=1e-9)


def test_interaction_limit_by_hand():
    # Y += theta M_1 M_2, M_p = mu_p + t gamma_p (no within-site variation that correlates):
    # ITT of the term = theta (mu_1 gamma_2 + mu_2 gamma_1 + gamma_1 gamma_2), gammas independent
    theta, mu, g, s = 0.3, (1.0, -0.5), (1.0, 0.6), (0.4, 0.3)
    text = f"""
n_sites = 40
n_per_site = 100
[mediators]
names = ["a", "b"]
[site]
compliance_mean = [{g[0]}, {g[1]}]
compliance_sd = [{s[0]}, {s[1]}]
effect_mean = [0.5, 0.25]
[person]
mediator_mean = [{mu[0]}, {mu[1]}]
[[interactions]]
first = 1
second = 2
coefficient = {theta}
"""
    tr = truth(loads(text), n_sites=50_000)
    e11, e22 = g[0] ** 2 + s[0] ** 2, g[1] ** 2 + s[1] ** 2
    # E[gamma_1 x term] and E[gamma_2 x term]
    b1 = theta * (mu[0] * g[0] * g[1] + mu[1] * e11 + e11 * g[1])
    b2 = theta * (mu[0] * e22 + mu[1] * g[0] * g[1] + g[0] * e22)
    A = np.array([[e11, g[0] * g[1]], [g[0] * g[1], e22]])
    want = np.array([0.5, 0.25]) + np.linalg.solve(A, [b1, b2])
    np.testing.assert_allclose(tr.limit_2sls, want, atol=1e-9)
