"""Issue 15: Anderson-Rubin tests and confidence sets, checked against plain numpy references.

The references are person-level: the AR statistic is the F test of the instruments in the
regression of u = Y - M beta0 on the instruments and the site dummies (numpy least squares);
the site-clustered AR is the cluster-robust Wald test (CR1, K / (K - 1)) of the pooled
instrument t - tbar_s in the regression of u on it and the site dummies.  The sets are
checked against a brute-force inversion over a fine grid of beta0.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from simulate.estimators import estimate
from simulate.estimators.inference import AR_SET_KINDS, in_ar_set, quadratic_set


def draw(seed, K=12, n_s=30, P=1, pi=0.4, beta=0.5, arms=2, effect_sd=0.0, unequal=True):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(n_s - 8, n_s + 9, K) if unequal else np.full(K, n_s)
    site = np.repeat(np.arange(K), sizes)
    t = np.concatenate([rng.permutation(np.arange(k) % arms) for k in sizes])
    comp = pi * (1 + 0.8 * rng.normal(size=(K, P)))
    u = rng.normal(size=site.size)
    M = comp[site] * t[:, None] + 0.5 * u[:, None] + rng.normal(size=(site.size, P))
    b = beta + effect_sd * rng.normal(size=(K, P))
    y = (M * b[site]).sum(1) + u
    return site, t, M, y


def naive_ar(site, t, M, y, beta0):
    """F test of the site-by-arm dummies in u ~ site dummies + site-by-arm dummies."""
    u = y - M @ np.atleast_1d(beta0)
    K, A = site.max() + 1, t.max() + 1
    W = (site[:, None] == np.arange(K)).astype(float)
    Z = np.column_stack([(site == s) & (t == a) for s in range(K) for a in range(1, A)]).astype(float)
    rss0 = np.sum((u - W @ np.linalg.lstsq(W, u, rcond=None)[0]) ** 2)
    X = np.column_stack([W, Z])
    rss1 = np.sum((u - X @ np.linalg.lstsq(X, u, rcond=None)[0]) ** 2)
    df1, df2 = Z.shape[1], len(u) - X.shape[1]
    F = ((rss0 - rss1) / df1) / (rss1 / df2)
    return F, stats.f.sf(F, df1, df2)


def naive_cluster_ar(site, t, M, y, beta0):
    """Cluster-robust (CR1) Wald test of z = t - tbar_s in u ~ z + site dummies."""
    u = y - M @ np.atleast_1d(beta0)
    K = site.max() + 1
    W = (site[:, None] == np.arange(K)).astype(float)
    z = t - (W @ np.linalg.lstsq(W, t.astype(float), rcond=None)[0])
    X = np.column_stack([z, W])
    coef = np.linalg.lstsq(X, u, rcond=None)[0]
    e = u - X @ coef
    zz = z @ z
    scores = np.array([np.sum(z[site == s] * e[site == s]) for s in range(K)])
    var = K / (K - 1) * np.sum(scores ** 2) / zz ** 2
    stat = coef[0] ** 2 / var
    return stat, stats.f.sf(stat, 1, K - 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ar_statistics_at_a_value_match_the_person_level_regressions(seed):
    site, t, M, y = draw(seed, arms=3)
    rows = estimate(site, t, M, y)
    beta0 = 0.3
    # the columns are at beta0 = 0 in analysis; the reference at 0 and the set at any value
    F0, p0 = naive_ar(site, t, M, y, 0.0)
    assert rows["ar_stat"].iloc[0] == pytest.approx(F0, rel=1e-10)
    assert rows["ar_p"].iloc[0] == pytest.approx(p0, rel=1e-8, abs=1e-14)
    C0, q0 = naive_cluster_ar(site, t, M, y, 0.0)
    assert rows["ar_cluster_stat"].iloc[0] == pytest.approx(C0, rel=1e-10)
    assert rows["ar_cluster_p"].iloc[0] == pytest.approx(q0, rel=1e-8, abs=1e-14)
    from simulate.estimators import estimate_arrays
    from simulate.estimators.inference import ar_tests

    arr = estimate_arrays(site, t, M, y, site.max() + 1, t.max() + 1, 1.0)
    got = ar_tests(arr.diagnostics[None], [beta0], 1)
    assert got["ar_stat"][0] == pytest.approx(naive_ar(site, t, M, y, beta0)[0], rel=1e-10)
    assert got["ar_cluster_stat"][0] == pytest.approx(naive_cluster_ar(site, t, M, y, beta0)[0], rel=1e-10)


def test_joint_ar_for_two_mediators_matches_the_person_level_f_test():
    from simulate.estimators import estimate_arrays
    from simulate.estimators.inference import ar_tests

    site, t, M, y = draw(7, K=15, P=2, arms=2)
    arr = estimate_arrays(site, t, M, y, site.max() + 1, 2, 1.0)
    for beta0 in ([0.5, 0.5], [0.0, 1.0]):
        got = ar_tests(arr.diagnostics[None], beta0, 2)
        F, p = naive_ar(site, t, M, y, np.array(beta0))
        assert got["ar_stat"][0] == pytest.approx(F, rel=1e-10)
        assert got["ar_p"][0] == pytest.approx(p, rel=1e-8, abs=1e-14)
        C, q = naive_cluster_ar(site, t, M, y, np.array(beta0))
        assert got["ar_cluster_stat"][0] == pytest.approx(C, rel=1e-10)
    rows = estimate(site, t, M, y)
    assert (rows["ar_set_kind"] == "not_computed").all() and rows["ar_low"].isna().all()


def _grid_set(site, t, M, y, test, level, grid):
    keep = np.array([test(site, t, M, y, b)[1] > 1 - level for b in grid])
    return keep


@pytest.mark.parametrize(("seed", "pi"), [(11, 0.5), (12, 0.05), (13, 0.02)])
def test_ar_sets_match_a_brute_force_grid_inversion(seed, pi):
    site, t, M, y = draw(seed, K=10, n_s=24, pi=pi)
    rows = estimate(site, t, M, y, level=0.9).iloc[0]
    grid = np.linspace(-6, 6, 1201)
    for prefix, test in (("ar", naive_ar), ("ar_cluster", naive_cluster_ar)):
        lo, hi, kind = rows[f"{prefix}_low"], rows[f"{prefix}_high"], rows[f"{prefix}_set_kind"]
        assert kind in AR_SET_KINDS
        brute = _grid_set(site, t, M, y, test, 0.9, grid)
        mine = in_ar_set(grid, lo, hi, kind)
        # they may differ only at grid points next to an end of the set
        step = grid[1] - grid[0]
        ends = np.array([lo, hi])
        near = np.min(np.abs(grid[:, None] - ends[None, np.isfinite(ends)]), axis=1) < step if np.isfinite(
            ends).any() else np.zeros(grid.size, bool)
        assert np.array_equal(mine[~near], brute[~near]), (prefix, kind, lo, hi)


def test_quadratic_set_kinds_against_a_grid():
    grid = np.linspace(-10, 10, 4001)
    cases = {(-1.0, 0.0, 1.0): "interval", (1.0, 0.0, 1.0): "empty", (-1.0, 0.0, -1.0): "whole_line",
             (1.0, 0.0, -1.0): "two_rays", (1.0, -2.0, 0.0): "interval", (-1.0, 0.0, 0.0): "whole_line",
             (0.3, 1.7, -0.4): "two_rays"}
    for (c0, c1, c2), want in cases.items():
        lo, hi, kind = quadratic_set(c0, c1, c2)
        assert kind[()] == want
        brute = c0 + c1 * grid + c2 * grid ** 2 <= 0
        assert np.array_equal(in_ar_set(grid, lo, hi, kind[()]), brute), (c0, c1, c2)


def test_a_weak_instrument_gives_an_unbounded_set_and_a_strong_one_an_interval():
    strong = estimate(*draw(21, K=20, pi=1.0)).iloc[0]
    assert strong["ar_set_kind"] == "interval" and np.isfinite([strong["ar_low"], strong["ar_high"]]).all()
    kinds = {estimate(*draw(s, K=8, n_s=16, pi=0.0)).iloc[0]["ar_set_kind"] for s in range(30)}
    assert kinds & {"two_rays", "whole_line"}  # irrelevant instruments: unbounded sets happen


@pytest.mark.slow
def test_conventional_and_clustered_ar_have_their_size_under_a_homogeneous_null():
    """Normal homoskedastic errors, homogeneous effect: the AR is exact F; the clustered one near nominal."""
    R, beta = 600, 0.5
    rej = np.zeros(2)
    for r in range(R):
        site, t, M, y = draw(1000 + r, K=30, n_s=20, pi=0.1, beta=beta)
        from simulate.estimators import estimate_arrays
        from simulate.estimators.inference import ar_tests

        arr = estimate_arrays(site, t, M, y, 30, 2, 1.0)
        got = ar_tests(arr.diagnostics[None], [beta], 1)
        rej += [got["ar_p"][0] < 0.05, got["ar_cluster_p"][0] < 0.05]
    size = rej / R
    mcse = np.sqrt(0.05 * 0.95 / R)
    assert abs(size[0] - 0.05) < 3 * mcse, size
    assert abs(size[1] - 0.05) < 3 * mcse, size
