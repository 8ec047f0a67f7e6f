"""Cross-mediator nonlinear dependence (assumption ix across mediators, ``[site.cross_dependence]``).

A term ``"effect_p:compliance_q:compliance_r" = lambda`` adds lambda sd(delta_p) (z_q z_r - r_qr) /
sqrt(1 + r_qr^2) to delta_p.  Checked here: its one-line validation errors, that it is off by
default (no hash change, no random number drawn: the generator's data differ from the data
without the term by exactly the term), its truth against an independent brute-force
integration and a closed form, the bundled scenario and the stress-test catalogue entry.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, special
from test_truth_exact import _grid, brute_limits

import simulate as sm
from simulate.dgp import draw
from simulate.scenario import ScenarioError, validate_file
from simulate.scenario.validation import from_dict
from simulate.truth import truth

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

TWO = ("n_sites = 30\nn_per_site = 40\n[mediators]\nnames = [\"income\", \"hours\"]\n[site]\n"
       "compliance_mean = [1.0, 0.6]\ncompliance_sd = [0.4, 0.3]\ncompliance_correlation = 0.2\n"
       "effect_mean = [0.5, 0.25]\neffect_sd = [0.1, 0.16]\n{extra}[person]\ncompliance_sd = [0.3, 0.3]\n"
       "effect_sd = [0.2, 0.2]\nconfounding = 0.3\n")


def _two(terms: str = "", corr: str = "") -> str:
    extra = ""
    if corr:
        extra += f"[site.correlations]\n{corr}\n"
    if terms:
        extra += f"[site.cross_dependence]\n{terms}\n"
    return TWO.format(extra=extra)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("terms,field,text", [
    ('"effect_2:compliance_1" = 0.5', "site.cross_dependence.effect_2:compliance_1", "a term is written"),
    ('"effect_3:compliance_1:compliance_2" = 0.5', "site.cross_dependence.effect_3:compliance_1:compliance_2",
     "'effect_3' is not an effect of the 2 mediator(s)"),
    ('"effect_2:complience_1:compliance_2" = 0.5', "site.cross_dependence.effect_2:complience_1:compliance_2",
     "did you mean 'compliance_1'?"),
    ('"effect_2:compliance_2:compliance_2" = 0.5', "site.cross_dependence.effect_2:compliance_2:compliance_2",
     "set site.nonlinear_dependence[2] instead"),
    ('"effect_2:compliance_1:compliance_2" = 0.5\n"effect_2:compliance_2:compliance_1" = 0.1',
     "site.cross_dependence.effect_2:compliance_2:compliance_1", "names the same term"),
    ('"effect_2:compliance_1:compliance_2" = "a"', "site.cross_dependence.effect_2:compliance_1:compliance_2",
     "must be a number"),
    ('"effect_2:compliance_1:compliance_2" = 1e9', "site.cross_dependence.effect_2:compliance_1:compliance_2",
     "must be <= 1000000"),
])
def test_bad_terms_fail_in_one_line_naming_the_term(terms, field, text):
    with pytest.raises(ScenarioError) as info:
        sm.loads(_two(terms), source="c.toml")
    msg = str(info.value)
    assert msg.startswith(f"c.toml: {field}: ") and text in msg, msg
    assert "\n" not in msg


def test_a_term_without_effect_sd_or_varying_compliance_fails():
    with pytest.raises(ScenarioError, match=r"c.toml: site.cross_dependence.effect_2:compliance_1:compliance_1: "
                                            r"has no effect while site.effect_sd is 0 for mediator 2"):
        sm.loads(_two('"effect_2:compliance_1:compliance_1" = 0.5').replace("effect_sd = [0.1, 0.16]",
                                                                            "effect_sd = [0.1, 0.0]"), "c.toml")
    with pytest.raises(ScenarioError, match=r"c.toml: site.cross_dependence.effect_2:compliance_1:compliance_2: "
                                            r"needs mediator 1's compliance to vary between sites"):
        sm.loads(_two('"effect_2:compliance_1:compliance_2" = 0.5').replace("compliance_sd = [0.4, 0.3]",
                                                                            "compliance_sd = [0.0, 0.3]"), "c.toml")
    with pytest.raises(ScenarioError, match="must be a table of terms"):
        sm.loads(_two().replace("[person]", "cross_dependence = 0.5\n[person]"), "c.toml")
    # one mediator: the only term is its own dependence
    with pytest.raises(ScenarioError, match="site.nonlinear_dependence instead"):
        sm.loads("[site]\neffect_sd = 0.2\n[site.cross_dependence]\n\"effect_1:compliance_1:compliance_1\" = 1\n")


def test_off_by_default_leaves_the_hash_and_reads_back():
    plain = sm.loads(_two())
    assert plain.cross_dependence == () and "cross_dependence" not in plain.spec
    sc = sm.loads(_two('"effect_2:compliance_2:compliance_1" = 0.7'))
    assert sc.cross_dependence == ((1, 0, 1, 0.7),)
    assert dict(sc.site.cross_dependence) == {"effect_2:compliance_1:compliance_2": 0.7}
    assert sc.hash != plain.hash
    assert from_dict(sc.to_dict(), "back") == sc


def test_a_grid_sweeps_a_term():
    cells = validate_file(SCENARIOS / "cross_dependence.toml")
    assert [c.scenario.cross_dependence for c in cells] == [(), ((1, 0, 1, 1.0),)] * 2
    assert [round(c.scenario.site_correlation[0][3], 2) for c in cells] == [0.0, 0.0, 0.6, 0.6]


# ---------------------------------------------------------------------------
# the generator: no random number drawn, the term added exactly
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("term", ["effect_2:compliance_1:compliance_2", "effect_2:compliance_1:compliance_1",
                                  "effect_1:compliance_2:compliance_2"])
def test_generator_adds_exactly_the_term_and_draws_nothing_more(term):
    corr = '"compliance_1:effect_2" = 0.3'
    plain = sm.loads(_two(corr=corr))
    sc = sm.loads(_two(f'"{term}" = 0.8', corr=corr))
    a, b = draw(plain, 11), draw(sc, 11)
    assert np.array_equal(a.site_compliance, b.site_compliance)
    assert np.array_equal(a.treatment, b.treatment) and np.array_equal(a.site_direct_effect, b.site_direct_effect)
    mean, sd = np.array([1.0, 0.6]), np.array([0.4, 0.3])
    z = (a.site_compliance - mean) / sd
    p, q, r = (int(x.split("_")[1]) - 1 for x in term.split(":"))
    rho = 1.0 if q == r else 0.2
    expected = 0.8 * (0.1, 0.16)[p] * (z[:, q] * z[:, r] - rho) / math.sqrt(1 + rho * rho)
    other = 1 - p
    assert np.array_equal(a.site_effect[:, other], b.site_effect[:, other])
    np.testing.assert_allclose(b.site_effect[:, p] - a.site_effect[:, p], expected, rtol=0, atol=1e-12)
    # the persons' effects carry the site's: the same person-level draws
    np.testing.assert_allclose(b.effect[:, p] - a.effect[:, p], expected[b.site], rtol=0, atol=1e-12)
    assert np.array_equal(a.mediators, b.mediators)


# ---------------------------------------------------------------------------
# the truth
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("terms,corr", [
    ('"effect_2:compliance_1:compliance_2" = 1.0', ""),
    ('"effect_2:compliance_1:compliance_1" = -0.8', '"compliance_1:effect_2" = 0.4'),
    ('"effect_2:compliance_1:compliance_2" = 0.6\n"effect_1:compliance_2:compliance_2" = 0.9',
     '"compliance_1:effect_2" = 0.3\n"compliance_2:effect_1" = -0.2'),
])
def test_cross_dependence_limits_match_an_independent_brute_force_integration(terms, corr):
    sc = sm.loads(_two(terms, corr))
    tr = truth(sc)
    ref = brute_limits(sc, site_order=5, person_order=3)
    for name in ("limit_2sls", "limit_between_ols", "limit_between_intercept", "limit_liml"):
        np.testing.assert_allclose(getattr(tr, name), ref[name], rtol=0, atol=1e-10, err_msg=name)
    assert tr.limit_method == "closed form" and tr.se_of("limit_2sls") == (0.0, 0.0)
    assert tr.ate == (0.5, 0.25)  # the term has mean zero


def test_product_term_2sls_limit_in_closed_form():
    """2SLS: E[gamma gamma']^-1 (E[gamma gamma' delta] + within), two arms; by Isserlis with a product term.

    With delta_2 = mu_2 + c (z_1 z_2 - r) / sqrt(1 + r^2) (no other site variation of delta) and
    gamma_p = m_p + s_p z_p: E[gamma_p gamma_2 delta_2] - mu_2 E[gamma_p gamma_2] =
    c / sqrt(1 + r^2) s_p s_2 (E[z_p z_2 z_1 z_2] - r E[z_p z_2]).
    """
    text = _two('"effect_2:compliance_1:compliance_2" = 1.0').replace("effect_sd = [0.1, 0.16]\n",
                                                                      "effect_sd = [0.0, 0.16]\n")
    tr = truth(sm.loads(text))
    m, s, r, c = np.array([1.0, 0.6]), np.array([0.4, 0.3]), 0.2, 1.0 * 0.16
    Ezz = np.array([[1, r], [r, 1]])
    A = np.outer(m, m) + np.outer(s, s) * Ezz
    e4 = np.array([1 + 2 * r * r, 3 * r])  # E[z_1 z_2 z_1 z_2] = 1 + 2 r^2, E[z_2 z_2 z_1 z_2] = 3 r
    extra = c / math.sqrt(1 + r * r) * s * s[1] * (e4 - r * Ezz[:, 1])
    b = A @ np.array([0.5, 0.25])
    b = b + np.array([extra[0], extra[1]])
    # b holds E[gamma_p (gamma' delta)]: the term enters through gamma_2 delta_2
    np.testing.assert_allclose(tr.limit_2sls, np.linalg.solve(A, b), rtol=0, atol=1e-12)


def test_binary_late_with_a_cross_term_matches_two_dimensional_integration():
    """LATE of a binary mediator whose effect depends on the square of a continuous one's compliance."""
    text = ("n_sites = 40\n[mediators]\nnames = [\"takeup\", \"hours\"]\nkind = [\"binary\", \"continuous\"]\n"
            "[site]\ncompliance_sd = [0.0, 0.3]\neffect_sd = [0.3, 0.1]\n"
            "[site.correlations]\n\"compliance_1:compliance_2\" = 0.5\n"
            "[site.cross_dependence]\n\"effect_1:compliance_2:compliance_2\" = 0.9\n"
            "[binary]\ncomplier_share = [0.7, 0.6]\nalways_share = [0.2, 0.2]\nnever_share = [0.1, 0.2]\n"
            "complier_share_site_sd = [0.8, 0.0]\n")
    sc = sm.loads(text)
    tr = truth(sc)
    tau, R = 0.8, 0.5
    a = special.ndtri(0.7) * math.sqrt(1 + tau * tau)
    c = 0.9 * 0.3 / math.sqrt(2)
    dens = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731

    def f(w, u):  # u: binary latent's normal, w: the rest of z_2
        z2 = R * u + math.sqrt(1 - R * R) * w
        return (0.5 + c * (z2 * z2 - 1)) * special.ndtr(a + tau * u) * dens(u) * dens(w)

    num = integrate.dblquad(f, -10, 10, -10, 10, epsabs=1e-13, epsrel=1e-12)[0]
    late = num / 0.7
    assert tr.late[0] == pytest.approx(late, abs=1e-9)
    assert tr.late[0] != pytest.approx(0.5, abs=1e-3)  # the term moves the LATE
    assert tr.limit_method == "quadrature"


def test_bundled_scenario_reproduces_the_issue_benchmark():
    cells = validate_file(SCENARIOS / "cross_dependence.toml")
    tr = truth(cells[2].scenario)  # corr(gamma_1, delta_2) = 0.6
    bias = np.array(tr.limit_2sls) - np.array(tr.ate)
    assert round(bias[0], 2) == 0.08 and round(bias[1], 2) == -0.11


def test_catalogue_sweeps_the_product_term():
    from simulate.assumptions import BY_KEY, CROSS_TERM, design
    from simulate.scenario.grid import set_path

    a = BY_KEY["cross_dependence"]
    assert a.numeral == "ix" and a.identification
    import tomllib

    d = design(tomllib.loads(_two()), "d.toml")
    plan = a.recipe(d, a.severe(d))
    assert plan.paths == [CROSS_TERM]
    sc = from_dict(set_path(plan.raw, CROSS_TERM, plan.end[0]), "d.toml")
    assert sc.cross_dependence == ((1, 0, 1, 1.0),)
    one = design(tomllib.loads("[site]\neffect_sd = 0.2\n"), "d.toml")
    assert "two or more mediators" in a.recipe(one, 1.0)


def test_grid_helper_is_not_silently_wrong():
    # _grid integrates polynomials exactly: E[z^4] = 3
    X, W = _grid(1, 3)
    assert W @ X[:, 0] ** 4 == pytest.approx(3.0, abs=1e-12)
