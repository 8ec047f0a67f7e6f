"""Issue 15: the jackknife AR test (Mikusheva & Sun 2022, site effects absorbed by UJIVE's leave-one-out matrix)
against a dense n x n implementation of the paper's formula, and its size under many weak instruments."""

from __future__ import annotations

import numpy as np
import pytest

from simulate.estimators.inference import jackknife_ar


def dense_jackknife_ar(site, arm, x, y, beta0):
    """The formula with explicit n x n matrices (no cell sums)."""
    e = y - x * beta0
    K, A = site.max() + 1, arm.max() + 1
    W = (site[:, None] == np.arange(K)).astype(float)
    Zc = (site * A + arm)[:, None] == np.arange(K * A)
    Zc = Zc.astype(float)
    proj = lambda X: X @ np.linalg.pinv(X.T @ X) @ X.T  # noqa: E731
    Pzw, Pw = proj(Zc), proj(W)
    n = len(y)
    I = np.eye(n)  # noqa: E741
    Dzw, Dw = np.diag(np.diag(Pzw)), np.diag(np.diag(Pw))
    C = np.linalg.inv(I - Dzw) @ (Pzw - Dzw) - np.linalg.inv(I - Dw) @ (Pw - Dw)
    assert np.allclose(np.diag(C), 0) and np.allclose(C @ W, 0, atol=1e-12)
    M = I - Pzw
    off = ~np.eye(n, dtype=bool)
    T = np.sum((C * np.outer(e, e))[off])
    et = e - Pw @ e
    w = et * (M @ e)
    den = np.outer(np.diag(M), np.diag(M)) + M ** 2
    phi = 2 * np.sum((C ** 2 / den * np.outer(w, w))[off])
    return T / np.sqrt(phi)


def draw(seed, K=8, n_c=(2, 9), A=2, pi=0.2, beta=0.5):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(n_c[0], n_c[1] + 1, (K, A))
    site = np.repeat(np.arange(K), sizes.sum(1))
    arm = np.concatenate([np.repeat(np.arange(A), sizes[s]) for s in range(K)])
    comp = pi * (1 + rng.normal(size=K))
    v = rng.normal(size=site.size)
    x = 2.0 * site + comp[site] * arm + v  # site effects in x and y: C must absorb them
    y = -1.0 * site + beta * x + 0.6 * v + rng.normal(size=site.size) * (1 + 0.5 * arm)
    return site, arm, x, y


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_cell_sums_equal_the_dense_formula(seed):
    site, arm, x, y = draw(seed, A=2 + seed % 2)
    for b0 in (0.5, 0.0, 1.3):
        got = jackknife_ar(site, arm, x, y, [b0])["stat"]
        assert got == pytest.approx(dense_jackknife_ar(site, arm, x, y, b0), rel=1e-9)


def test_a_singleton_cell_gives_nan():
    site, arm, x, y = draw(5)
    keep = ~((site == 0) & (arm == 1))
    keep[np.flatnonzero((site == 0) & (arm == 1))[0]] = True
    out = jackknife_ar(site[keep], arm[keep], x[keep], y[keep], [0.5])
    assert np.isnan(out["stat"]) and not out["reject"]


@pytest.mark.slow
def test_size_under_many_weak_instruments():
    """300 sites of 10 (300 instruments, weak): the one-sided 5% test rejects within 3 MCSE of 5%."""
    R = 800
    rej = 0
    for r in range(R):
        site, arm, x, y = draw(100 + r, K=300, n_c=(5, 5), pi=0.05)
        rej += jackknife_ar(site, arm, x, y, [0.5])["reject"]
    mcse = np.sqrt(0.05 * 0.95 / R)
    assert abs(rej / R - 0.05) < 3 * mcse, rej / R


@pytest.mark.parametrize(("seed", "pi"), [(21, 0.8), (22, 0.1), (23, 0.0)])
def test_jackknife_set_matches_a_brute_force_grid(seed, pi):
    from simulate.estimators.inference import jackknife_ar_set

    site, arm, x, y = draw(seed, K=30, n_c=(3, 8), pi=pi)
    pieces = jackknife_ar_set(site, arm, x, y, level=0.95)
    grid = np.linspace(-8, 8, 801)
    brute = np.array([not jackknife_ar(site, arm, x, y, [b])["reject"] for b in grid])
    mine = np.zeros(grid.size, bool)
    for lo, hi in pieces:
        mine |= (grid >= lo) & (grid <= hi)
    ends = np.array([e for piece in pieces for e in piece if np.isfinite(e)])
    near = (np.min(np.abs(grid[:, None] - ends[None]), axis=1) < 0.02) if ends.size else np.zeros(grid.size, bool)
    assert np.array_equal(mine[~near], brute[~near]), pieces
    for e in ends:  # each finite end is where the statistic crosses the critical value
        assert jackknife_ar(site, arm, x, y, [e])["stat"] == pytest.approx(1.6448536269514722, rel=1e-6)

