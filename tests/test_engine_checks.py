"""Issue 4's statistical checks: the engine, the truth and the summary agree."""

import filecmp

import pytest

from simulate.run_summary import summarize_directory
from simulate.runner import RunConfig, run

STRONG = """
name = "strong instruments, every assumption holding"
n_sites = 100
n_per_site = 1000
[site]
compliance_mean = 1.0
compliance_sd = 1.0
effect_mean = 0.5
effect_sd = 0.0
[person]
compliance_sd = 0.3
effect_sd = 0.2
confounding = 0.05
"""
# Strong instruments: the first-stage F is about 1 + n p(1-p) sd(gamma)^2 / Var(M) ~ 230, so that
# the 2SLS finite-sample bias toward OLS (~ K corr / (N p(1-p) Var(gamma))) stays below the MCSE;
# 100 sites keep the site-clustered standard errors accurate.


def _measure(summary, estimator, mediator, target, measure):
    row = summary[(summary.estimator == estimator) & (summary.mediator == mediator) & (summary.target == target)
                  & (summary.measure == measure)]
    assert len(row) == 1, (estimator, mediator, target, measure)
    return float(row.value.iloc[0]), float(row.mcse.iloc[0])


@pytest.fixture(scope="module")
def strong_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("strong")
    path = d / "strong.toml"
    path.write_text(STRONG)
    out = d / "run"
    run(path, out, RunConfig(reps=1000, seed=2024, jobs=2, quiet=True), truth_sites=200_000)
    return out, summarize_directory(out)


def test_2sls_coverage_and_mean_when_assumptions_hold(strong_run):
    _, s = strong_run
    cov, cov_mcse = _measure(s, "2sls", "M1", "ate", "coverage")
    assert abs(cov - 0.95) < 3 * cov_mcse, (cov, cov_mcse)
    # mean estimate within 3 MCSE of the large-sample limit; here the limit is the ATE
    bias, bias_mcse = _measure(s, "2sls", "M1", "limit", "bias")
    assert abs(bias) < 3 * bias_mcse, (bias, bias_mcse)
    ident, _ = _measure(s, "2sls", "M1", "ate", "identification_bias")
    assert abs(ident) < 1e-10
    # OLS is confounded: far from the truth
    ols_bias, ols_mcse = _measure(s, "ols", "M1", "ate", "bias")
    assert ols_bias > 10 * ols_mcse


def test_summary_is_bit_identical_for_other_workers_and_chunks(strong_run, tmp_path):
    out, _ = strong_run
    other = tmp_path / "other"
    run(out.parent / "strong.toml", other, RunConfig(reps=1000, seed=2024, jobs=1, chunk=333, quiet=True),
        truth_sites=200_000)
    assert filecmp.cmp(out / "summary.csv", other / "summary.csv", shallow=False)


WITHIN = """
name = "within-site correlation"
n_sites = 20
n_per_site = 1500
[site]
compliance_mean = 1.0
compliance_sd = 0.5
effect_mean = 0.5
effect_sd = 0.0
[person]
compliance_sd = 0.6
effect_sd = 0.5
within_site_correlation = 0.6
"""


def test_identification_bias_under_within_site_correlation_matches_the_truth(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text(WITHIN)
    out = tmp_path / "run"
    run(path, out, RunConfig(reps=400, seed=7, jobs=2, quiet=True), truth_sites=200_000)
    s = summarize_directory(out)
    ident, _ = _measure(s, "2sls", "M1", "ate", "identification_bias")
    c = 0.6 * 0.6 * 0.5
    assert ident == pytest.approx(c * 1.0 / 1.25, abs=1e-10)  # limit - ATE = c E[gamma] / E[gamma^2]
    total, total_mcse = _measure(s, "2sls", "M1", "ate", "bias")
    assert abs(total - ident) < 3 * total_mcse, (total, ident, total_mcse)
    fs, fs_mcse = _measure(s, "2sls", "M1", "ate", "finite_sample_bias")
    assert abs(fs) < 3 * fs_mcse
    # the between-site regression with an intercept recovers the ATE: the covariance is a constant
    b, b_mcse = _measure(s, "between_intercept", "M1", "ate", "bias")
    assert abs(b) < 3 * b_mcse
