"""Truth: closed forms, exact cell means against large simulations, large-sample limits."""

import importlib
import math

import numpy as np
import pytest
from scipy import special

import simulate as sm

T = importlib.import_module("simulate.truth")
from simulate.dgp import plan
from simulate.layout import Layout


def _bands(sc):
    cum = np.concatenate([[0.0], np.cumsum(sc.arm_shares[0])])
    return [(special.ndtri(cum[t]) if t > 0 else -np.inf, special.ndtri(cum[t + 1]) if t < sc.arms - 1 else np.inf)
            for t in range(sc.arms)]


def _one_site_model(sc):
    """Exact E[M | t], E[Y | t] of a single site whose site-level SDs are zero."""
    pl = plan(sc)
    model = T._Model(sc, pl)
    L = Layout.of(sc)
    P = L.P
    gamma = np.array([[pl.bin_a[p] if sc.is_binary[p] else pl.site_mean[L.site_compliance(p)] for p in range(P)]])
    delta = pl.site_mean[L.site_effects][None, :]
    kappa = np.array([pl.site_mean[L.site_direct]])
    beta = pl.path_mean[None, :]
    base_m = np.zeros((1, P))
    share = 1.0 - sc.arm_shares[0][0]
    out = [model.cell(t, band, share, gamma, delta, kappa, beta, base_m) for t, band in enumerate(_bands(sc))]
    return np.array([m[0] for m, _ in out]), np.array([y[0] for _, y in out])


ONE_SITE = "n_sites = 1\nn_per_site = 600000\n[site]\ncompliance_sd = 0.0\n"

DIALS = {
    "holds": "",
    "selection on Y(0)": "[selection]\nstrength = 0.8\n[person]\nconfounding = 0.4\ncompliance_sd = 0.3\n",
    "selection on compliance, 3 arms": "[treatment]\narms = 3\n[selection]\nstrength = -0.6\n"
                                       "on = 'compliance'\n[person]\ncompliance_sd = 0.5\neffect_sd = 0.3\n"
                                       "within_site_correlation = 0.4\n",
    "spillover": "[spillover]\noutcome = 0.5\nmediator = 0.4\n",
    "direct effect, 3 arms": "[treatment]\narms = 3\n[site]\ndirect_effect_mean = 0.3\n",
    "mediator curvature": "[treatment]\narms = 4\n[mediators]\ncurvature = 0.4\n",
    "outcome curvature": "[mediators]\noutcome_curvature = 0.3\n[person]\nconfounding = 0.3\ncompliance_sd = 0.4\n"
                         "effect_sd = 0.2\nwithin_site_correlation = 0.3\n",
    "within-site correlation": "[person]\ncompliance_sd = 0.5\neffect_sd = 0.4\nwithin_site_correlation = 0.6\n",
    "paths": "[mediators]\ncount = 2\noutcome_curvature = [0.0, 0.2]\n[site]\ncompliance_sd = 0.0\n"
             "compliance_mean = [1.0, 0.3]\n[person]\ncompliance_sd = 0.3\neffect_sd = 0.3\n"
             "[[paths]]\nfrom = 1\nto = 2\nmean = 0.5\nperson_sd = 0.4\neffect_correlation = 0.5\n",
    "paths with selection, 3 arms": "[treatment]\narms = 3\n[mediators]\ncount = 2\n[site]\ncompliance_sd = 0.0\n"
                                    "[person]\ncompliance_sd = 0.3\neffect_sd = 0.3\nconfounding = 0.3\n"
                                    "[selection]\nstrength = 0.5\n"
                                    "[[paths]]\nfrom = 1\nto = 2\nmean = 0.5\nperson_sd = 0.4\n"
                                    "effect_correlation = 0.5\n",
    "binary with defiers": "[mediators]\nkind = 'binary'\n[binary]\ncomplier_share = 0.5\nalways_share = 0.2\n"
                           "never_share = 0.2\ndefier_share = 0.1\nalways_effect_shift = 0.3\n"
                           "defier_effect_shift = -0.4\n"
                           "[person]\neffect_sd = 0.3\nwithin_site_correlation = 0.5\nconfounding = 0.4\n",
    "binary, 3 arms, curvature": "[treatment]\narms = 3\n[mediators]\nkind = 'binary'\ncurvature = 0.3\n"
                                 "[binary]\ndefier_share = 0.1\nnever_share = 0.1\n[person]\neffect_sd = 0.3\n"
                                 "within_site_correlation = 0.3\n[spillover]\nmediator = 0.2\n",
    "binary source of a path": "[mediators]\ncount = 2\nkind = ['binary', 'continuous']\n[site]\ncompliance_sd = 0.0\n"
                               "compliance_mean = [1.0, 0.0]\n[binary]\ndefier_share = 0.05\nnever_share = 0.15\n"
                               "[person]\neffect_sd = 0.3\ncompliance_sd = [0.0, 0.2]\nwithin_site_correlation = 0.3\n"
                               "[[paths]]\nfrom = 1\nto = 2\nmean = -0.6\nperson_sd = 0.3\neffect_correlation = 0.4\n",
    "bernoulli with selection": "[treatment]\nassignment = 'bernoulli'\nshare = 0.3\n[selection]\nstrength = 1.0\n"
                                "[person]\nconfounding = 0.5\n",
}


def _merge(text):
    import tomllib

    raw = tomllib.loads(ONE_SITE)
    for k, v in tomllib.loads(text).items():
        if isinstance(v, dict):
            raw.setdefault(k, {}).update(v)
        else:
            raw[k] = v
    if raw.get("mediators", {}).get("kind") == "binary" or raw.get("mediators", {}).get("kind") == ["binary"]:
        raw["site"].pop("compliance_sd", None)
    return sm.scenario.from_dict(raw)


@pytest.mark.parametrize("dial", list(DIALS))
def test_cell_means_of_one_large_site_match_the_exact_model(dial):
    """The site-level effects of T on M and Y (cell means) match the truth's exact moments, per dial."""
    sc = _merge(DIALS[dial])
    m_exact, y_exact = _one_site_model(sc)
    tr = sm.draw(sc, 2024)
    for t in range(sc.arms):
        sel = tr.treatment == t
        n = sel.sum()
        for p in range(sc.n_mediators):
            x = tr.mediators[sel, p]
            z = (x.mean() - m_exact[t, p]) / (x.std() / math.sqrt(n))
            assert abs(z) < 4.5, f"{dial}: E[M_{p + 1} | T={t}] simulated {x.mean():.5f}, exact {m_exact[t, p]:.5f}"
        y = tr.outcome[sel]
        z = (y.mean() - y_exact[t]) / (y.std() / math.sqrt(n))
        assert abs(z) < 4.5, f"{dial}: E[Y | T={t}] simulated {y.mean():.5f}, exact {y_exact[t]:.5f}"


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.7])
def test_single_site_iv_ratio_tends_to_the_compliance_weighted_estimand(rho):
    """With corr(Gamma, Delta) = rho within site, ITT_Y / ITT_M -> delta + rho sd(Gamma) sd(Delta) / gamma."""
    sc = _merge(f"[site]\ncompliance_mean = 0.8\neffect_mean = 0.5\n[person]\ncompliance_sd = 0.6\neffect_sd = 0.5\n"
                f"within_site_correlation = {rho}\nconfounding = 0.3\n")
    tr = sm.draw(sc, 7)
    t = tr.treatment == 1
    m, y = tr.mediators[:, 0], tr.outcome
    itt_m = m[t].mean() - m[~t].mean()
    itt_y = y[t].mean() - y[~t].mean()
    ratio = itt_y / itt_m
    # delta-method SE of the ratio: residual y - ratio m within arms
    r = y - ratio * m
    se = math.sqrt(r[t].var() / t.sum() + r[~t].var() / (~t).sum()) / abs(itt_m)
    target = 0.5 + rho * 0.6 * 0.5 / 0.8
    assert abs(ratio - target) < 4 * se, (ratio, target, se)
    assert T.truth(sc, n_sites=10_000).compliance_weighted[0] == pytest.approx(target, abs=1e-12)


def test_limits_are_exact_when_every_assumption_holds():
    tr = sm.truth(sm.load("scenarios/baseline.toml"))
    for name in ("limit_2sls", "limit_between_ols", "limit_between_intercept"):
        np.testing.assert_allclose(getattr(tr, name), tr.ate, atol=1e-10, err_msg=name)
    assert abs(tr.limit_between_intercept_constant) < 1e-10
    assert tr.ate == (0.5, 0.25)


def test_within_site_correlation_limits_in_closed_form():
    """2SLS through the origin: delta + c E[gamma] / E[gamma^2], c = rho sd(Gamma) sd(Delta)."""
    cells = sm.expand_grid(__import__("tomllib").loads(open("scenarios/within_site_correlation.toml").read()))
    for cell in cells:
        rho = dict(cell.values)["person.within_site_correlation"]
        tr = sm.truth(cell.scenario, n_sites=100_000)
        c = rho * 0.5 * 0.4
        assert tr.compliance_weighted[0] == pytest.approx(0.5 + c, abs=1e-12)
        assert tr.limit_2sls[0] == pytest.approx(0.5 + c * 1.0 / (1.0 + 0.16), abs=1e-10)
        assert tr.limit_between_intercept[0] == pytest.approx(0.5, abs=1e-10)
        assert tr.limit_between_intercept_constant == pytest.approx(c, abs=1e-10)
        assert tr.limit_wald[0] == pytest.approx(0.5 + c, abs=1e-10)


def test_binary_closed_forms_match_site_moments():
    text = ("n_sites = 40\n[mediators]\nkind = 'binary'\n[site]\neffect_sd = 0.3\ncompliance_effect_correlation = 0.4\n"
            "nonlinear_dependence = 0.6\n[binary]\ncomplier_share = 0.5\nalways_share = 0.15\nnever_share = 0.25\n"
            "defier_share = 0.1\ncomplier_share_site_sd = 0.6\nalways_effect_shift = 0.2\nnever_effect_shift = -0.1\n"
            "defier_effect_shift = -0.3\n[person]\neffect_sd = 0.4\nwithin_site_correlation = 0.5\n"
            "[person.correlations]\n'effect_1:mediator_1' = 0.3\n")
    sc = sm.loads(text)
    tr = sm.truth(sc, n_sites=20_000)
    pl = plan(sc)
    model = T._Model(sc, pl)
    rng = np.random.Generator(np.random.PCG64(5))
    gamma, delta, kappa, beta, base_m, _ = T._sites(sc, pl, rng, 2_000_000)
    pc, pa, pn, pd, eC, eA, eN, eD = model._types(0, gamma[:, 0], delta[:, 0])
    assert tr.late[0] == pytest.approx(eC.mean() / pc.mean(), rel=2e-3)
    assert tr.compliance_weighted[0] == pytest.approx((eC - eD).mean() / (pc - pd).mean(), rel=2e-3)
    assert tr.ate[0] == pytest.approx((eC + eA + eN + eD).mean(), abs=2e-3)
    assert tr.ate[0] == pytest.approx(0.5 + 0.15 * 0.2 - 0.25 * 0.1 - 0.1 * 0.3, abs=1e-12)
    # and against the persons of a large draw: mean effect of compliers, of everyone
    big = sm.loads(text.replace("n_sites = 40", "n_sites = 400\nn_per_site = 2000"))
    d = sm.draw(big, 1)
    comp = d.complier_type[:, 0] == 0
    site_se = d.effect[:, 0].std() / math.sqrt(400) * 3
    assert abs(d.effect[comp, 0].mean() - tr.late[0]) < site_se
    assert abs(d.effect[:, 0].mean() - tr.ate[0]) < site_se


def test_nonlinear_dependence_has_zero_correlation_but_a_curve():
    sc = sm.loads("n_sites = 200000\nn_per_site = 4\n[site]\ncompliance_sd = 0.5\neffect_sd = 0.2\n"
                  "nonlinear_dependence = 1.0\n")
    d = sm.draw(sc, 0)
    g, e = d.site_compliance[:, 0], d.site_effect[:, 0]
    assert abs(np.corrcoef(g, e)[0, 1]) < 4 / math.sqrt(200000)
    # E[delta | gamma] = mean + lambda sd(delta) (z^2 - 1) / sqrt(2): the quadratic coefficient in gamma
    coef = np.polyfit(g, e, 2)[0]
    assert coef == pytest.approx(1.0 * 0.2 / math.sqrt(2) / 0.25, rel=0.03)
    assert e.std() == pytest.approx(0.2 * math.sqrt(2), rel=0.01)  # sd(delta) sqrt(1 + lambda^2)


def test_rank_failure_gives_no_limit_and_a_note():
    sc = sm.loads("n_sites = 30\n[mediators]\ncount = 2\n[site]\ncompliance_sd = [0.3, 0.3]\n"
                  "compliance_correlation = 1.0\n")
    tr = sm.truth(sc, n_sites=20_000)
    assert all(math.isnan(x) for x in tr.limit_2sls)
    assert any("assumption viii" in n for n in tr.notes)


def test_binary_with_selection_says_no_limit():
    sc = sm.loads("[mediators]\nkind = 'binary'\n[selection]\nstrength = 0.5\n")
    tr = sm.truth(sc, n_sites=10_000)
    assert math.isnan(tr.limit_2sls[0]) and tr.notes
    assert tr.late[0] == pytest.approx(0.5)  # the estimands still exist


@pytest.mark.slow
@pytest.mark.parametrize("text", [
    "n_sites = 3000\nn_per_site = 3000\n[treatment]\narms = 3\n[mediators]\ncount = 2\ncurvature = [0.3, 0]\n"
    "outcome_curvature = [0.1, 0]\n[site]\neffect_sd = 0.2\ncompliance_effect_correlation = [0.3, 0]\n"
    "[person]\nwithin_site_correlation = 0.5\ncompliance_sd = 0.5\neffect_sd = 0.3\n[selection]\nstrength = 0.7\n",
    "n_sites = 3000\nn_per_site = 3000\n[mediators]\nkind = 'binary'\n[binary]\ncomplier_share = 0.5\n"
    "always_share = 0.2\nnever_share = 0.2\ndefier_share = 0.1\ncomplier_share_site_sd = 0.5\n"
    "always_effect_shift = 0.3\n[person]\nwithin_site_correlation = 0.4\neffect_sd = 0.3\n[site]\neffect_sd = 0.2\n"
    "compliance_effect_correlation = 0.3\n",
], ids=["three_arms_selection_curvature", "binary_defiers"])
def test_weighted_between_site_regression_tends_to_the_2sls_limit(text):
    """Many large sites: the n_s p_s(1-p_s)-weighted regression of cell-mean contrasts hits the 2SLS limit."""
    sc = sm.loads(text)
    P, arms = sc.n_mediators, sc.arms
    tr = sm.truth(sc)
    ests = []
    for seed in range(6):
        d = sm.draw(sc, seed)
        K = d.n_sites
        cnt = d.arm_counts.astype(float)
        mM = np.zeros((K, arms, P))
        mY = np.zeros((K, arms))
        for p in range(P):
            np.add.at(mM[:, :, p], (d.site, d.treatment), d.mediators[:, p])
        np.add.at(mY, (d.site, d.treatment), d.outcome)
        mM /= cnt[:, :, None]
        mY /= cnt
        pa = cnt / cnt.sum(1, keepdims=True)
        x = mM - np.einsum("kt,ktp->kp", pa, mM)[:, None]
        y = mY - (pa * mY).sum(1)[:, None]
        n = cnt.sum(1)
        A = np.einsum("k,kt,ktp,ktq->pq", n, pa, x, x)
        b = np.einsum("k,kt,ktp,kt->p", n, pa, x, y)
        ests.append(np.linalg.solve(A, b))
    ests = np.array(ests)
    se = ests.std(axis=0, ddof=1) / math.sqrt(len(ests))
    assert np.all(np.abs(ests.mean(axis=0) - np.array(tr.limit_2sls)) < 4 * se + 2e-3), (ests.mean(0), tr.limit_2sls)


def test_liml_limit_differs_from_2sls_under_heterogeneity_and_is_finite():
    sc = sm.loads("n_sites = 50\n[site]\ncompliance_sd = 0.4\neffect_sd = 0.2\n"
                  "[person]\nwithin_site_correlation = 0.6\ncompliance_sd = 0.5\neffect_sd = 0.4\nconfounding = 0.3\n")
    tr = sm.truth(sc, n_sites=100_000)
    assert np.isfinite(tr.limit_liml[0]) and tr.between_site_heterogeneity > 0
    assert tr.limit_liml[0] < tr.limit_2sls[0] - 1e-3  # LIML leans toward the within-cell relation


@pytest.mark.slow
def test_liml_tends_to_its_limit():
    from simulate.estimators import ESTIMATORS, estimate_arrays

    sc = sm.loads("n_sites = 800\nn_per_site = 5000\n[site]\ncompliance_sd = 0.4\neffect_sd = 0.2\n[person]\n"
                  "within_site_correlation = 0.6\ncompliance_sd = 0.5\neffect_sd = 0.4\nconfounding = 0.3\n")
    tr = sm.truth(sc)
    est = []
    for seed in range(4):
        d = sm.draw(sc, seed)
        a = estimate_arrays(d.site, d.treatment, d.mediators, d.outcome, sc.n_sites, sc.arms)
        est.append([a.estimate[ESTIMATORS.index("liml"), 0], a.estimate[ESTIMATORS.index("2sls"), 0]])
    est = np.array(est)
    se = est.std(axis=0, ddof=1) / 2
    gap = est[:, 0] - est[:, 1]  # the LIML - 2SLS gap is free of their common finite-sample drift
    assert abs(gap.mean() - (tr.limit_liml[0] - tr.limit_2sls[0])) < 4 * gap.std(ddof=1) / 2 + 1e-3
    assert np.all(np.abs(est.mean(axis=0) - [tr.limit_liml[0], tr.limit_2sls[0]]) < 4 * se + 5e-3)


_ISSUE_12 = ("n_sites = 12\nn_per_site = 40\n[mediators]\nnames = [\"income\", \"hours\"]\n[site]\n"
             "compliance_mean = [1.0, 0.6]\ncompliance_sd = [0.4, 0.3]\neffect_mean = [0.5, 0.25]\n"
             "effect_sd = [{sd}, {sd}]\n")


@pytest.mark.parametrize("sd", [0.28, 0.35, 0.5])
def test_liml_limit_at_infinity_is_nan_with_a_note(sd):
    # issue 12: with site effects this heterogeneous the mediators' own weakest between-site direction
    # fits better than any coefficient (the pencil (G, W) is block diagonal in (1, b - delta)), so the
    # LIML ratio has its infimum at an infinite b; solving gave LinAlgError or numbers such as 115
    sc = sm.loads(_ISSUE_12.format(sd=sd))
    tr = sm.truth(sc, n_sites=20_000)
    assert all(math.isnan(x) for x in tr.limit_liml)
    assert any("LIML/Fuller" in n and "infinite coefficient" in n for n in tr.notes)
    assert np.allclose(tr.limit_2sls, [0.5, 0.25], atol=1e-9)


@pytest.mark.parametrize("sd", [0.05, 0.2])
def test_liml_limit_exists_below_the_threshold(sd):
    # the same design with milder heterogeneity: the minimum is at b = delta (the mean effects)
    tr = sm.truth(sm.loads(_ISSUE_12.format(sd=sd)), n_sites=20_000)
    assert np.allclose(tr.limit_liml, [0.5, 0.25], atol=1e-7)
    assert not tr.notes


def test_liml_limit_degenerate_within_cell_covariance_is_nan_with_a_note():
    # no within-cell variation at all: W = 0, so the LIML ratio has no denominator (eigh(G, W) raised)
    sc = sm.loads("n_sites = 20\n[site]\ncompliance_sd = 0.4\neffect_sd = 0.3\n[person]\nmediator_sd = 0.0\n"
                  "outcome_sd = 0.0\n")
    tr = sm.truth(sc, n_sites=20_000)
    assert math.isnan(tr.limit_liml[0])
    assert any("LIML/Fuller" in n for n in tr.notes)
