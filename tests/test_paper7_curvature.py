"""Dose curves that vary by site and person (issue 14, assumption iii).

Person i's curvature is c_pi = c_p + c_ps + c_pi' (``mediators.curvature_site_sd``,
``mediators.curvature_person_sd``, their correlations with delta_p and Delta_p), and
g_pi(t) = g_p(t) + t (t - 1) (c_pi - c_p).  Checked here: the one-line validation errors; that
the dial, while off, keeps the hash and draws nothing; the kernel against the numpy reference
bit for bit; the truth's compliance-weighted estimand against a closed form derived by hand;
its 2SLS and between-site limits against a brute-force Monte Carlo over sites of cell means
derived by hand (within 4 SE); the estimand against the persons drawn (within 4 SE); and the
bundled scenario's rows reproducible.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import simulate as sm
from simulate.scenario import ScenarioError, from_dict

sys.path.insert(0, str(Path(__file__).parent))
from naive_dgp import draw_reference  # noqa: E402
from test_dgp import assert_identical  # noqa: E402

BASE = """
n_sites = 40
n_per_site = 300
[treatment]
arms = 3
arm_shares = [0.4, 0.3, 0.3]
[mediators]
curvature = 0.3
{mediators}
[site]
compliance_mean = 1.0
compliance_sd = 0.4
effect_mean = 0.5
effect_sd = 0.2
[person]
compliance_sd = 0.3
effect_sd = 0.3
"""

ON = """curvature_site_sd = 0.4
curvature_person_sd = 0.5
curvature_site_effect_correlation = 0.6
curvature_effect_correlation = 0.6"""

SHARES = np.array([0.4, 0.3, 0.3])


def scenario(mediators: str = ON, **replace) -> sm.Scenario:
    text = BASE.format(mediators=mediators)
    for old, new in replace.items():
        text = text.replace(old, new)
    return sm.loads(text)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("mediators", "extra", "field", "says"), [
    ("curvature_site_sd = 0.3", {"arms = 3": "arms = 2", "arm_shares = [0.4, 0.3, 0.3]": "share = 0.5",
                                 "curvature = 0.3": ""}, "mediators.curvature_site_sd", "arms = 2"),
    ("curvature_person_sd = 0.3\nkind = 'binary'", {"compliance_mean = 1.0": "", "compliance_sd = 0.4": "",
                                                    "compliance_sd = 0.3": "", "curvature = 0.3": ""},
     "mediators.curvature_person_sd", "continuous mediators only"),
    ("curvature_effect_correlation = 0.5", {}, "mediators.curvature_effect_correlation",
     "mediators.curvature_person_sd is 0"),
    ("curvature_site_effect_correlation = 0.5\ncurvature_site_sd = 0.2", {"effect_sd = 0.2": "effect_sd = 0.0"},
     "mediators.curvature_site_effect_correlation", "site.effect_sd is 0"),
    ("curvature_person_sd = -0.1", {}, "mediators.curvature_person_sd", ">= 0"),
    ("curvature_effect_correlation = 1.5\ncurvature_person_sd = 0.1", {}, "mediators.curvature_effect_correlation",
     "<= 1"),
])
def test_bad_settings_are_one_line_errors_naming_the_field(mediators, extra, field, says):
    with pytest.raises(ScenarioError) as err:
        scenario(mediators, **extra)
    message = str(err.value)
    assert "\n" not in message and f": {field}" in message and says in message, message


def test_a_list_entry_is_named_with_its_mediator():
    text = BASE.format(mediators="names = ['a', 'b']\ncurvature_person_sd = [0.0, 0.2]\n"
                                 "curvature_effect_correlation = [0.0, 0.3]")
    text = text.replace("effect_sd = 0.3", "effect_sd = [0.3, 0.0]")
    with pytest.raises(ScenarioError, match=r"mediators\.curvature_effect_correlation\[2\]: .*person\.effect_sd"):
        sm.loads(text)


# -- off: the same scenario, the same numbers -------------------------------------------


def test_off_keeps_the_hash_and_the_draws():
    one = scenario("")
    zeros = scenario("curvature_site_sd = 0.0\ncurvature_person_sd = [0.0]")
    assert one.hash == zeros.hash and one.spec == zeros.spec
    assert one.curvature_site_sd == () and not any(one.curvature_varies)
    assert_identical(sm.draw(one, 3), sm.draw(zeros, 3))
    back = from_dict(one.to_dict())  # the defaults filled in, read back: the same scenario
    assert back.hash == one.hash


def test_on_moves_only_the_mediators_and_outcome():
    """The curvature normals come from stream 0 after the sizes: nothing else drawn moves."""
    off, on = sm.draw(scenario(""), 7), sm.draw(scenario(), 7)
    for name in ("site", "treatment", "effect", "site_compliance", "site_effect", "arm_counts"):
        assert np.array_equal(getattr(off, name), getattr(on, name)), name
    top = on.treatment == 2
    assert not np.array_equal(off.mediators[top], on.mediators[top])
    first = on.treatment <= 1  # g_i(0) = 0 and g_i(1) = 1 for everyone: arms 0 and 1 do not move
    assert np.array_equal(off.mediators[first], on.mediators[first])


@pytest.mark.parametrize("seed", [0, 11])
def test_kernel_matches_numpy_reference_bit_for_bit(seed):
    mediators = ("names = ['a', 'b']\ncurvature = [0.3, -0.2]\ncurvature_site_sd = [0.4, 0.0]\n"
                 "curvature_person_sd = [0.5, 0.3]\ncurvature_site_effect_correlation = [0.6, 0.0]\n"
                 "curvature_effect_correlation = [-0.4, 0.7]")
    text = BASE.replace("curvature = 0.3\n", "").format(mediators=mediators)
    text = text.replace("n_per_site = 300", "n_per_site = {min = 60, max = 120}")
    sc = sm.loads(text)
    assert_identical(sm.draw(sc, seed), draw_reference(sc, seed))


# -- the truth ----------------------------------------------------------------------------


def _cw_by_hand(L=2, c=0.3, g_mean=1.0, d_mean=0.5, sd_d=0.2, sd_D=0.3, ss=0.4, rs=0.6, sp=0.5, rp=0.6):
    """E[g_i(L) Gamma Delta] / E[g_i(L) Gamma] with e = c_i - c independent of Gamma (no within-site correlation).

    g_i(L) = g(L) + L (L - 1) e; E[Gamma Delta] = gamma delta (no compliance-effect correlation);
    E[e Gamma Delta] = gamma cov(e, Delta) = gamma (ss rs sd(delta) + sp rp sd(Delta)); E[e Gamma] = 0.
    """
    g = L + c * L * (L - 1)
    cov_e_delta = ss * rs * sd_d + sp * rp * sd_D
    return (g * g_mean * d_mean + L * (L - 1) * g_mean * cov_e_delta) / (g * g_mean)


def test_compliance_weighted_estimand_against_a_closed_form_by_hand():
    tr = sm.truth(scenario())
    assert tr.limit_method == "closed form"
    assert tr.compliance_weighted[0] == pytest.approx(_cw_by_hand(), abs=1e-12)
    assert tr.compliance_weighted[0] == pytest.approx(0.6061538461538461, abs=1e-12)
    assert tr.ate[0] == 0.5


def test_an_independent_curvature_changes_no_estimand_and_no_limit():
    one = sm.truth(scenario(""))
    spread = sm.truth(scenario("curvature_site_sd = 0.4\ncurvature_person_sd = 0.5"))
    for name in ("ate", "compliance_weighted", "limit_2sls", "limit_between_ols", "limit_between_intercept",
                 "limit_wald", "limit_liml"):
        assert getattr(spread, name)[0] == pytest.approx(getattr(one, name)[0], abs=1e-10), name


def _brute_force_sites(K, rng, ss=0.4, rs=0.6, sp=0.5, rp=0.6, c=0.3):
    """Cell means E[M | s, t], E[Y | s, t] derived by hand, for K simulated sites (numpy, no package code).

    M_i(t) = M_i(0) + g_i(t) Gamma_i, g_i(t) = g(t) + t (t - 1) (e_s + x_i), x_i = sp (rp u_Delta + ...);
    E[M | s, t] = g(t) gamma_s + t (t - 1) e_s gamma_s and
    E[Y | s, t] = g(t) delta_s gamma_s + t (t - 1) gamma_s (delta_s e_s + sd(Delta) sp rp).
    """
    z = rng.standard_normal((K, 3))
    gamma = 1.0 + 0.4 * z[:, 0]
    delta = 0.5 + 0.2 * z[:, 1]
    e = ss * (rs * z[:, 1] + np.sqrt(1 - rs * rs) * z[:, 2])
    t = np.arange(3.0)
    g = t + c * t * (t - 1)
    w = t * (t - 1)
    mM = g * gamma[:, None] + w * (e * gamma)[:, None]
    mY = g * (delta * gamma)[:, None] + w * (gamma * (delta * e + 0.3 * sp * rp))[:, None]
    return mM, mY


def _limits_of(mM, mY):
    """Per site: the 2SLS normal equations' terms sum_t p_t x y, sum_t p_t x^2, and the between-site OLS terms."""
    x = mM - mM @ SHARES[:, None]
    y = mY - mY @ SHARES[:, None]
    itt_m, itt_y = (mM[:, 1:] - mM[:, :1]).ravel(), (mY[:, 1:] - mY[:, :1]).ravel()
    return (x * y) @ SHARES, (x * x) @ SHARES, itt_m * itt_y, itt_m * itt_m


def test_limits_against_a_brute_force_monte_carlo_over_sites():
    tr = sm.truth(scenario())
    rng = np.random.default_rng(2026)
    batches = []
    for _ in range(16):
        num, den, bn, bd = _limits_of(*_brute_force_sites(200_000, rng))
        batches.append((num.mean() / den.mean(), bn.mean() / bd.mean()))
    b = np.array(batches)
    est, se = b.mean(axis=0), b.std(axis=0, ddof=1) / 4.0
    assert abs(tr.limit_2sls[0] - est[0]) < 4 * se[0], (tr.limit_2sls[0], est[0], se[0])
    assert abs(tr.limit_between_ols[0] - est[1]) < 4 * se[1], (tr.limit_between_ols[0], est[1], se[1])
    assert abs(tr.limit_2sls[0] - 0.5) > 0.1  # the correlated curvature moves the limit


def test_simulated_sites_agree_with_the_quadrature():
    sc = scenario()
    exact, simulated = sm.truth(sc), sm.truth(sc, method="simulate", n_sites=100_000)
    for name in ("limit_2sls", "limit_between_ols", "limit_between_intercept", "limit_liml"):
        se = simulated.se_of(name)[0]
        assert 0 < se < 0.01 and abs(getattr(exact, name)[0] - getattr(simulated, name)[0]) < 4 * se, name


def test_the_estimand_against_the_persons_drawn():
    """The sample compliance-weighted estimand of many replications against the truth, within 4 SE."""
    sc = scenario(**{"n_sites = 40": "n_sites = 60"})
    values = np.array([sm.draw(sc, seed).sample_estimands()["compliance_weighted"][0] for seed in range(40)])
    truth = sm.truth(sc).compliance_weighted[0]
    assert abs(values.mean() - truth) < 4 * values.std(ddof=1) / np.sqrt(len(values)), (values.mean(), truth)


def test_the_bundled_scenario_reproduces_its_rows_and_header():
    from simulate.replicate import run_replications
    from simulate.scenario import validate_file

    path = Path(sm.__file__).parent / "scenarios" / "dose_curves.toml"
    cells = validate_file(path)
    header = path.read_text(encoding="utf-8")
    for cell in (cells[0], cells[-1]):
        a = run_replications(cell.scenario, cell.index, 0, 20130401, [0, 1])
        b = run_replications(cell.scenario, cell.index, 0, 20130401, [0, 1])
        assert a.keys() == b.keys()
        for key in a:
            x, y = np.asarray(a[key]), np.asarray(b[key])
            same = np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f" else np.array_equal(x, y)
            assert same, key
        tr = sm.truth(cell.scenario)
        line = f"[cell {cell.index + 1}] {tr.mediators[0]}: ate = {tr.ate[0]:.4f}, limit_2sls = {tr.limit_2sls[0]:.4f}"
        assert line in header, cell.index


PATHED = """
n_sites = 60
n_per_site = 300
[treatment]
arms = 3
arm_shares = [0.4, 0.3, 0.3]
[mediators]
names = ["a", "b"]
curvature = [0.3, 0.0]
curvature_site_sd = [0.4, 0.0]
curvature_person_sd = [0.5, 0.0]
curvature_site_effect_correlation = [0.6, 0.0]
curvature_effect_correlation = [0.6, 0.0]
[site]
compliance_mean = [1.0, 0.6]
compliance_sd = [0.4, 0.3]
effect_mean = [0.5, 0.25]
effect_sd = [0.2, 0.1]
[person]
compliance_sd = [0.3, 0.2]
effect_sd = [0.3, 0.1]
[[paths]]
from = 1
to = 2
mean = 0.5
site_sd = 0.2
"""


def test_a_path_from_a_curved_mediator_carries_its_curve():
    """Downstream of a varying dose curve: quadrature against simulated sites, the estimand against persons."""
    sc = sm.loads(PATHED)
    exact = sm.truth(sc)
    assert exact.limit_method == "closed form"
    simulated = sm.truth(sc, method="simulate", n_sites=100_000)
    for name in ("limit_2sls", "limit_between_ols", "compliance_weighted"):
        for p in range(2):
            se = simulated.se_of(name)[p]
            assert abs(getattr(exact, name)[p] - getattr(simulated, name)[p]) < 4 * se + 1e-12, (name, p)
    values = np.array([sm.draw(sc, seed).sample_estimands()["compliance_weighted"] for seed in range(40)])
    se = values.std(axis=0, ddof=1) / np.sqrt(len(values))
    assert np.all(np.abs(values.mean(axis=0) - np.array(exact.compliance_weighted)) < 4 * se), (
        values.mean(axis=0), exact.compliance_weighted)
