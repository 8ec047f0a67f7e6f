"""Truths without simulation error: the large-sample limits by Gauss-Hermite quadrature.

Each quadrature limit is checked against (a) a closed form where one exists, (b) an
independent plain-numpy computation that integrates the DGP's equations over the site AND
the person normals by brute-force tensor Gauss-Hermite (no Isserlis moments, no hafnians,
none of the truth's code), and (c) a long simulation of sites, within a few of its
standard errors (slow).  Where the sites are simulated the stored SE is positive; where
the limit is exact it is 0.
"""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, linalg, special

import simulate as sm
from simulate.scenario import validate_file
from simulate.truth import truth
from simulate.truth.api import LIMIT_FIELDS

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

NONLINEAR = ("n_sites = 50\nn_per_site = 200\n[site]\ncompliance_mean = 1.0\ncompliance_sd = 0.4\n"
             "effect_mean = 0.5\neffect_sd = 0.2\nnonlinear_dependence = {lam}\n"
             "compliance_effect_correlation = {r}\n[person]\ncompliance_sd = 0.3\neffect_sd = 0.2\n"
             "confounding = 0.3\nwithin_site_correlation = {rho}\n")


# ---------------------------------------------------------------------------
# the independent reference: brute-force Gauss-Hermite over site and person normals
# ---------------------------------------------------------------------------


def _grid(d, n):
    """Tensor Gauss-Hermite nodes (N, d) and weights (N,) for d standard normals."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    if d == 0:
        return np.zeros((1, 0)), np.ones(1)
    X = np.array(list(itertools.product(x, repeat=d)))
    W = np.prod(np.array(list(itertools.product(w, repeat=d))), axis=1)
    return X, W


def _factor(R):
    lam, V = np.linalg.eigh(R)
    return V * np.sqrt(np.clip(lam, 0.0, None))


def brute_limits(sc, site_order=6, person_order=4):
    """2SLS, between-site (with and without intercept) and LIML limits of a continuous scenario.

    Written from the model in ``simulate/dgp.py``'s docstring: two or more arms with equal
    site sizes and shares, no selection, no paths, no spillover; every site and person
    expectation by tensor Gauss-Hermite quadrature.
    """
    P, arms = sc.n_mediators, sc.arms
    p_arm = np.array(sc.arm_shares[0], float)
    tv = np.arange(arms, dtype=float)
    Rs = np.array(sc.site_correlation, float)
    Rp = np.array(sc.person_correlation, float)
    mean, sd = np.array(sc.site_mean, float), np.array(sc.site_sd, float)
    lam = np.array(sc.nonlinear_dependence, float)
    Zs, ws = _grid(2 * P + 1, site_order)
    Us = Zs @ _factor(Rs).T
    gamma = mean[:P] + sd[:P] * Us[:, :P]
    delta = mean[P:2 * P] + sd[P:2 * P] * Us[:, P:2 * P] + lam * sd[P:2 * P] * (Us[:, :P] ** 2 - 1) / math.sqrt(2)
    for p, a, b, coef, centre in _cross_terms(sc):
        delta[:, p] += coef * (Us[:, a] * Us[:, b] - centre)
    kappa = mean[2 * P] + sd[2 * P] * Us[:, 2 * P]
    Zp, wp = _grid(3 * P + 1, person_order)
    Up = Zp @ _factor(Rp).T
    dose = np.array([sc.dose(p) for p in range(P)])
    phi = np.array(sc.outcome_curvature, float)
    K = len(ws)
    mM = np.zeros((K, arms, P))
    mY = np.zeros((K, arms))
    cov = np.zeros((K, arms, 1 + P, 1 + P))
    for t in range(arms):
        # persons (axis 1) in every site (axis 0)
        y = sc.outcome_mean + sc.outcome_sd * Up[None, :, 3 * P] + kappa[:, None] * t
        Ms = []
        for p in range(P):
            Gam = gamma[:, p, None] + sc.compliance_sd[p] * Up[None, :, p]
            Dl = delta[:, p, None] + sc.effect_sd[p] * Up[None, :, P + p]
            M = sc.mediator_mean[p] + sc.mediator_sd[p] * Up[None, :, 2 * P + p] + dose[p, t] * Gam
            y = y + Dl * (M + phi[p] * M * M)
            Ms.append(M)
        Z = np.stack([y] + Ms, axis=2)  # (K, persons, 1 + P)
        mu = np.einsum("j,kjd->kd", wp, Z)
        mY[:, t], mM[:, t] = mu[:, 0], mu[:, 1:]
        dev = Z - mu[:, None, :]
        cov[:, t] = np.einsum("j,kjd,kje->kde", wp, dev, dev)
    x = mM - np.einsum("t,ktp->kp", p_arm, mM)[:, None, :]
    yv = mY - (mY @ p_arm)[:, None]
    A2 = np.einsum("k,t,ktp,ktq->pq", ws, p_arm, x, x)
    b2 = np.einsum("k,t,ktp,kt->p", ws, p_arm, x, yv)
    c2 = np.einsum("k,t,kt,kt->", ws, p_arm, yv, yv)
    W = np.einsum("k,t,ktde->de", ws, p_arm, cov)
    tsls = np.linalg.solve(A2, b2)
    G = np.block([[np.array([[c2]]), b2[None, :]], [b2[:, None], A2]])
    ev = linalg.eigh(G, W, eigvals_only=True)[0]
    liml = np.linalg.solve(A2 - ev * W[1:, 1:], b2 - ev * W[1:, 0])
    itt_m = (mM[:, 1:] - mM[:, :1]).reshape(-1, P)
    itt_y = (mY[:, 1:] - mY[:, :1]).reshape(-1)
    wr = np.repeat(ws, arms - 1)
    between = np.linalg.solve((itt_m * wr[:, None]).T @ itt_m, (itt_m * wr[:, None]).T @ itt_y)
    Xi = np.column_stack([np.tile(tv[1:], K), itt_m])
    inter = np.linalg.solve((Xi * wr[:, None]).T @ Xi, (Xi * wr[:, None]).T @ itt_y)
    return {"limit_2sls": tsls, "limit_between_ols": between, "limit_between_intercept": inter[1:],
            "limit_liml": liml, "constant": inter[0]}


def _cross_terms(sc):
    """Per term of ``sc.cross_dependence`` (p, q, r, lambda): (effect p, factors a, b, coefficient, centre).

    The term adds lambda sd(delta_p) (z_q z_r - R_qr) / sqrt(1 + R_qr^2) to delta_p (the model's docstring).
    """
    R = np.array(sc.site_correlation, float)
    P = sc.n_mediators
    out = []
    for p, q, r, lam in getattr(sc, "cross_dependence", ()):
        rho = R[q, r]
        out.append((p, q, r, lam * sc.site_sd[P + p] / math.sqrt(1 + rho * rho), rho))
    return out


# ---------------------------------------------------------------------------
# nonlinear dependence within a mediator
# ---------------------------------------------------------------------------


def _closed_nonlinear(mg, sg, md, sdl, lam, r, cw):
    """2SLS limit and between-site slope with intercept, nonlinear dependence, one mediator, two arms.

    delta = md + sdl v + c (u^2 - 1), c = lam sdl / sqrt 2, corr(u, v) = r, gamma = mg + sg u;
    E[gamma^2 delta] = md E[gamma^2] + 2 mg sg sdl r + 2 c sg^2, E[gamma delta] = mg md + sg sdl r;
    the within-site covariance cw = cov(Gamma, Delta) adds cw E[gamma] to the site ITT on Y.
    """
    c = lam * sdl / math.sqrt(2)
    e_g2 = mg * mg + sg * sg
    e_g2d = md * e_g2 + 2 * mg * sg * sdl * r + 2 * c * sg * sg
    tsls = (e_g2d + cw * mg) / e_g2
    e_gd = mg * md + sg * sdl * r
    slope = (e_g2d - mg * e_gd) / (sg * sg)
    return tsls, slope


@pytest.mark.parametrize("lam,r,rho", [(0.0, 0.0, 0.0), (1.5, 0.0, 0.0), (1.0, 0.4, 0.3), (-0.7, -0.2, 0.5)])
def test_nonlinear_dependence_limits_equal_the_closed_form(lam, r, rho):
    sc = sm.loads(NONLINEAR.format(lam=lam, r=r, rho=rho))
    tr = truth(sc)
    tsls, slope = _closed_nonlinear(1.0, 0.4, 0.5, 0.2, lam, r, rho * 0.3 * 0.2)
    assert tr.limit_2sls[0] == pytest.approx(tsls, abs=1e-12)
    assert tr.limit_between_intercept[0] == pytest.approx(slope, abs=1e-12)
    assert tr.limit_method == "closed form"
    assert tr.n_sites_simulated == 0
    for name in LIMIT_FIELDS:
        assert tr.se_of(name) == (0.0,)
    assert tr.limit_between_intercept_constant_se == 0.0


def test_bundled_nonlinear_dependence_numbers_of_the_issue():
    # issue 14: 2SLS limit 0.558380 simulated against the closed form 0.558519; the intercept slope
    # 0.923256 against 0.924264
    cells = validate_file(SCENARIOS / "nonlinear_dependence.toml")
    tr = truth(cells[-1].scenario)
    assert tr.limit_2sls[0] == pytest.approx(0.5 + 2 * 1.5 * 0.2 / math.sqrt(2) * 0.16 / 1.16, abs=1e-12)
    assert round(tr.limit_2sls[0], 6) == 0.558519
    assert tr.limit_between_intercept[0] == pytest.approx(0.5 + 0.3 * math.sqrt(2), abs=1e-12)
    assert round(tr.limit_between_intercept[0], 6) == 0.924264


@pytest.mark.parametrize("text", [
    NONLINEAR.format(lam=1.5, r=0.0, rho=0.0),
    NONLINEAR.format(lam=1.0, r=0.4, rho=0.3),
    NONLINEAR.format(lam=0.8, r=0.3, rho=0.2).replace("[site]", "[treatment]\narms = 3\n[mediators]\n"
                                                      "curvature = 0.3\noutcome_curvature = 0.1\n[site]"),
    pytest.param(  # about 45 s on two cores: a two-mediator brute-force integration
        "n_sites = 40\n[mediators]\ncount = 2\n[site]\ncompliance_sd = [0.4, 0.3]\neffect_sd = [0.2, 0.3]\n"
        "nonlinear_dependence = [1.0, -0.5]\ncompliance_correlation = 0.3\ndirect_effect_sd = 0.1\n"
        "compliance_effect_correlation = [0.2, 0.0]\n[person]\ncompliance_sd = [0.3, 0.2]\neffect_sd = 0.2\n"
        "within_site_correlation = [0.3, 0.0]\nconfounding = 0.2\n", marks=pytest.mark.slow),
], ids=["nonlinear", "nonlinear-correlated", "three-arms-curvature", "two-mediators"])
def test_quadrature_limits_match_an_independent_brute_force_integration(text):
    sc = sm.loads(text)
    tr = truth(sc)
    ref = brute_limits(sc)
    for name in ("limit_2sls", "limit_between_ols", "limit_between_intercept", "limit_liml"):
        np.testing.assert_allclose(getattr(tr, name), ref[name], rtol=0, atol=1e-10, err_msg=name)
    assert tr.limit_between_intercept_constant == pytest.approx(ref["constant"], abs=1e-10)
    assert tr.limit_method == "closed form"


def test_quadrature_is_exact_a_higher_order_changes_nothing():
    """The integrands are polynomials of the stated degree: one more node per normal changes no limit."""
    from simulate.dgp import plan
    from simulate.truth.api import _limits_quiet
    from simulate.truth.limits import _Model, quadrature_design, quadrature_moments

    sc = sm.loads(NONLINEAR.format(lam=1.0, r=0.4, rho=0.3).replace("[site]", "[mediators]\noutcome_curvature = 0.2"
                                                                                "\n[site]"))
    pl = plan(sc)
    model = _Model(sc, pl)
    design = quadrature_design(sc, pl)
    base = _limits_quiet(model, quadrature_moments(model, design, 1))
    more = type(design)(design.components, design.factor, design.n_binary, design.paths, design.bases,
                        design.degree + 4)
    finer = _limits_quiet(model, quadrature_moments(model, more, 1))
    for a, b in zip((base.tsls, base.liml, base.between_intercept), (finer.tsls, finer.liml, finer.between_intercept)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    # and one node fewer than the degree needs is not exact (the check can fail)
    less = type(design)(design.components, design.factor, design.n_binary, design.paths, design.bases,
                        design.degree - 4)
    coarse = _limits_quiet(model, quadrature_moments(model, less, 1))
    assert abs(coarse.liml[0] - base.liml[0]) > 1e-8


# ---------------------------------------------------------------------------
# simulated limits carry their SE; a long simulation agrees with the quadrature
# ---------------------------------------------------------------------------


def test_simulated_limits_carry_a_positive_se_and_agree_within_it():
    sc = sm.loads(NONLINEAR.format(lam=1.5, r=0.0, rho=0.0))
    exact = truth(sc)
    sim = truth(sc, n_sites=200_000, method="simulate")
    assert sim.limit_method == "simulation" and sim.n_sites_simulated == 200_000
    for name in ("limit_2sls", "limit_between_intercept", "limit_liml"):
        se = sim.se_of(name)[0]
        assert se > 0
        assert abs(getattr(sim, name)[0] - getattr(exact, name)[0]) < 4 * se, name
    d = sim.to_dict()
    assert d["mediators"][0]["limit_2sls_se"] == sim.limit_2sls_se[0] and d["limit_method"] == "simulation"
    # the exact truth's dict says 0
    e = exact.to_dict()
    assert e["mediators"][0]["limit_2sls_se"] == 0.0 and e["limit_method"] == "closed form"


def test_simulated_se_matches_the_spread_of_independent_simulations():
    """The batch SE estimates the SD of the simulated limit over seeds (within a factor of about 2)."""
    sc = sm.loads(NONLINEAR.format(lam=1.5, r=0.0, rho=0.0))
    runs = [truth(sc, n_sites=16_000, seed=s, method="simulate") for s in range(12)]
    sd = np.std([r.limit_2sls[0] for r in runs], ddof=1)
    se = np.mean([r.limit_2sls_se[0] for r in runs])
    assert 0.5 < se / sd < 2.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nonlinear_dependence", "outcome_curvature", "mediator_paths", "binary_defiers",
                                  "mto"])
def test_quadrature_agrees_with_a_long_simulation_of_sites(name):
    cells = validate_file(SCENARIOS / f"{name}.toml")
    sc = cells[-1].scenario
    exact = truth(sc)
    sim = truth(sc, n_sites=2_000_000, method="simulate")
    for lim in ("limit_2sls", "limit_between_ols", "limit_between_intercept", "limit_liml", "compliance_weighted"):
        for p in range(sc.n_mediators):
            a, b, se = getattr(exact, lim)[p], getattr(sim, lim)[p], sim.se_of(lim)[p]
            if math.isnan(a):
                assert math.isnan(b)
                continue
            assert abs(a - b) <= 4 * se + 1e-12, f"{lim}[{p}]: {a} vs {b} (SE {se})"


def test_method_argument_is_checked():
    sc = sm.loads(NONLINEAR.format(lam=1.0, r=0.0, rho=0.0))
    with pytest.raises(ValueError, match="method"):
        truth(sc, method="exact")


# ---------------------------------------------------------------------------
# binary mediators: quadrature along the latent complier index
# ---------------------------------------------------------------------------

BINARY = ("n_sites = 40\n[mediators]\nkind = 'binary'\n[site]\neffect_sd = 0.3\n"
          "compliance_effect_correlation = {r}\n[binary]\ncomplier_share = 0.5\nalways_share = 0.2\n"
          "never_share = 0.3\ncomplier_share_site_sd = {tau}\n[person]\neffect_sd = 0.2\n"
          "within_site_correlation = {rho}\n")


def _binary_reference(r, tau, rho, md=0.5, sdl=0.3, sdD=0.2, pc=0.5):
    """2SLS and between-site limits of a binary mediator without defiers, by adaptive 1-D integration.

    Site ITT on M: Phi(c), c = a + tau u; on Y: E[Delta 1{complier} | s] = delta Phi(c) + sdD rho phi(c),
    with E[delta | u] = md + sdl r u.  2SLS: E[Phi (delta Phi + sdD rho phi)] / E[Phi^2] (two arms, equal shares).
    """
    a = special.ndtri(pc) * math.sqrt(1 + tau * tau)
    dens = lambda u: math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)  # noqa: E731
    Phi = lambda u: special.ndtr(a + tau * u)  # noqa: E731
    phi = lambda u: dens(a + tau * u)  # noqa: E731
    E = lambda f: integrate.quad(lambda u: f(u) * dens(u), -12, 12, epsabs=1e-14, epsrel=1e-13, limit=200)[0]  # noqa: E731
    num = E(lambda u: Phi(u) * ((md + sdl * r * u) * Phi(u) + sdD * rho * phi(u)))
    den = E(lambda u: Phi(u) ** 2)
    return num / den


@pytest.mark.parametrize("r,tau,rho", [(0.4, 0.5, 0.0), (-0.3, 1.0, 0.4), (0.6, 0.3, -0.2)])
def test_binary_limits_by_quadrature_match_adaptive_integration(r, tau, rho):
    sc = sm.loads(BINARY.format(r=r, tau=tau, rho=rho))
    tr = truth(sc)
    assert tr.limit_method == "quadrature"
    assert 0 < tr.quadrature_error <= 1e-10
    assert tr.limit_2sls[0] == pytest.approx(_binary_reference(r, tau, rho), abs=1e-10)
    assert tr.se_of("limit_2sls") == (0.0,)


# ---------------------------------------------------------------------------
# the command line reports each limit's error
# ---------------------------------------------------------------------------


def _truth_out(capsys, *args):
    from simulate.cli import main

    code = main(["truth", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_truth_command_says_closed_form_quadrature_or_the_se(tmp_path, capsys, monkeypatch):
    import importlib
    import json

    api = importlib.import_module("simulate.truth.api")  # simulate.truth is also the function's name
    out = _truth_out(capsys, "nonlinear_dependence")
    assert out.count("error of the limits: 0 (closed form") == 4
    out = _truth_out(capsys, "binary_defiers")
    assert out.count("error of the limits: quadrature (") == 3
    path = tmp_path / "big.toml"
    path.write_text(NONLINEAR.format(lam=1.0, r=0.0, rho=0.0))
    monkeypatch.setattr(api, "QUADRATURE_MAX_NODES", 1)  # too small a grid: the sites are simulated
    out = _truth_out(capsys, str(path), "--sites", "20000")
    rec = json.loads(_truth_out(capsys, str(path), "--sites", "20000", "--json"))
    assert "error of the limits: simulated over 20,000 sites" in out
    se_row = [line for line in out.splitlines() if line.strip().startswith("SE M1")]
    assert len(se_row) == 1 and "e-0" in se_row[0]
    assert rec["limit_method"] == "simulation" and rec["mediators"][0]["limit_2sls_se"] > 0


# ---------------------------------------------------------------------------
# the limit's SE in the MCSE of the bias decomposition
# ---------------------------------------------------------------------------


def test_limit_se_enters_the_mcse_of_the_bias_decomposition():
    from simulate import measures as M
    from simulate.accumulator import SummaryAccumulator

    x = np.random.default_rng(3).normal(0.6, 0.2, 400)
    mom = M.moments(x)
    se_mean = x.std(ddof=1) / math.sqrt(len(x))
    assert M.identification_bias(0.55, 0.5, 400) == M.Measure(pytest.approx(0.05), 0.0, 400)
    assert M.identification_bias(0.55, 0.5, 400, 0.003).mcse == 0.003
    fsb = M.finite_sample_bias(mom, 0.55, 0.003)
    assert fsb.value == pytest.approx(x.mean() - 0.55, abs=1e-12)
    assert fsb.mcse == pytest.approx(math.sqrt(se_mean ** 2 + 0.003 ** 2), rel=1e-12)
    assert M.finite_sample_bias(mom, 0.55).mcse == pytest.approx(se_mean, rel=1e-12)
    # the accumulator reads limit_se (and a site-moment target's own SE) from the targets
    tg = {"ate": 0.5, "late": math.nan, "compliance_weighted": 0.52, "limit": 0.55, "limit_se": 0.003,
          "compliance_weighted_se": 0.004}
    out = {(t, m): q for t, m, q in SummaryAccumulator._fixed_target_measures(tg, x, mom, x - 1, x + 1, 0.6, 0.01)}
    assert out[("ate", "identification_bias")].mcse == pytest.approx(0.003, rel=1e-12)
    assert out[("compliance_weighted", "identification_bias")].mcse == pytest.approx(0.005, rel=1e-12)
    assert out[("ate", "finite_sample_bias")].mcse == pytest.approx(fsb.mcse, rel=1e-12)
    # a truth stored before the SEs (no key): exact, as before
    del tg["limit_se"], tg["compliance_weighted_se"]
    out = {(t, m): q for t, m, q in SummaryAccumulator._fixed_target_measures(tg, x, mom, x - 1, x + 1, 0.6, 0.01)}
    assert out[("ate", "identification_bias")].mcse == 0.0


def test_targets_carry_the_limit_se():
    from simulate.truth import targets

    sc = sm.loads(NONLINEAR.format(lam=1.0, r=0.0, rho=0.0))
    exact = targets(truth(sc), sc)
    assert all(v["limit_se"] == 0.0 for k, v in exact.items() if math.isfinite(v["limit"]))
    sim = truth(sc, n_sites=20_000, method="simulate")
    tg = targets(sim, sc)
    assert tg[("2sls", "M1")]["limit_se"] == sim.limit_2sls_se[0] > 0
    assert tg[("between_intercept", "direct_effect")]["limit_se"] == sim.limit_between_intercept_constant_se > 0
