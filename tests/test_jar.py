"""Issue 15: the jackknife AR (Mikusheva & Sun 2022) in the simulation rows, from the kernel's forms.

The kernel (``kernels/ar_nb.jackknife_ar_statistics``) stores the numerator matrix N and the variance
quartic Phi; ``inference.jackknife_ar_tests`` / ``jackknife_ar_sets`` evaluate them.  Checked against the
person-level analysis implementation (``inference.jackknife_ar``), a dense n x n implementation of the
paper's formula, and a brute-force grid for the sets; its size under many weak instruments is checked by
Monte Carlo (slow).
"""

from __future__ import annotations

import numpy as np
import pytest

from simulate.estimators.inference import (
    jackknife_ar,
    jackknife_ar_set,
    jackknife_ar_sets,
    jackknife_ar_tests,
)
from simulate.kernels import fit_nb


def draw(seed, K=8, n_c=(2, 9), A=2, P=1, pi=0.3):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(n_c[0], n_c[1] + 1, (K, A))
    site = np.repeat(np.arange(K), sizes.sum(1))
    arm = np.concatenate([np.repeat(np.arange(A), sizes[s]) for s in range(K)])
    n = site.size
    comp = pi * (1 + rng.normal(size=(K, P)))
    v = rng.normal(size=(n, P))
    x = 2.0 * site[:, None] + comp[site] * (arm[:, None] + 0.3 * arm[:, None] ** 2 * np.arange(P)) + v
    beta = 0.5 + 0.25 * np.arange(P)
    y = -1.0 * site + x @ beta + 0.6 * v.sum(1) + rng.normal(size=n) * (1 + 0.5 * arm)
    return site.astype(np.int64), arm.astype(np.int64), x, y


def dense_jackknife_ar(site, arm, x, y, beta0):
    """The paper's formula with explicit n x n matrices (no cell sums), any P."""
    e = y - x @ np.asarray(beta0, float)
    K, A = site.max() + 1, arm.max() + 1
    W = (site[:, None] == np.arange(K)).astype(float)
    Zc = ((site * A + arm)[:, None] == np.arange(K * A)).astype(float)
    proj = lambda X: X @ np.linalg.pinv(X.T @ X) @ X.T  # noqa: E731
    Pzw, Pw = proj(Zc), proj(W)
    n = len(y)
    eye = np.eye(n)
    Dzw, Dw = np.diag(np.diag(Pzw)), np.diag(np.diag(Pw))
    C = np.linalg.inv(eye - Dzw) @ (Pzw - Dzw) - np.linalg.inv(eye - Dw) @ (Pw - Dw)
    M = eye - Pzw
    off = ~np.eye(n, dtype=bool)
    T = np.sum((C * np.outer(e, e))[off])
    w = (e - Pw @ e) * (M @ e)
    den = np.outer(np.diag(M), np.diag(M)) + M ** 2
    phi = 2 * np.sum((C ** 2 / den * np.outer(w, w))[off])
    return T / np.sqrt(phi)


def kernel_diag(site, arm, x, y):
    K, A = int(site.max()) + 1, int(arm.max()) + 1
    out = fit_nb.fit_persons(site, arm, np.ascontiguousarray(x), y, K, A, 1.0)
    return out[3][None, :]


@pytest.mark.parametrize(("seed", "P", "A"), [(1, 1, 2), (2, 1, 3), (3, 2, 3), (4, 3, 4), (5, 2, 4)])
def test_kernel_forms_equal_the_person_level_and_dense_statistics(seed, P, A):
    site, arm, x, y = draw(seed, A=A, P=P)
    diag = kernel_diag(site, arm, x, y)
    for b0 in (0.5 + 0.25 * np.arange(P), np.zeros(P), np.linspace(-1.0, 2.0, P)):
        got = jackknife_ar_tests(diag, b0, P)
        ref = jackknife_ar(site, arm, x, y, b0)
        assert got["jar_stat"][0] == pytest.approx(ref["stat"], rel=1e-10, abs=1e-12)
        assert got["jar_p"][0] == pytest.approx(ref["p_value"], rel=1e-9, abs=1e-12)
        assert got["jar_stat"][0] == pytest.approx(dense_jackknife_ar(site, arm, x, y, b0), rel=1e-9)


def test_per_row_beta0_and_a_batch_of_datasets():
    data = [draw(s, K=6) for s in (11, 12, 13)]
    diag = np.concatenate([kernel_diag(*d) for d in data])
    b0 = np.array([[0.1], [0.5], [0.9]])
    got = jackknife_ar_tests(diag, b0, 1)["jar_stat"]
    ref = [jackknife_ar(*d, b)["stat"] for d, b in zip(data, b0)]
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_a_singleton_cell_leaves_the_forms_nan():
    site, arm, x, y = draw(5)
    keep = ~((site == 0) & (arm == 1))
    keep[np.flatnonzero((site == 0) & (arm == 1))[0]] = True
    diag = kernel_diag(site[keep], arm[keep], x[keep], y[keep])
    assert np.isnan(jackknife_ar_tests(diag, [0.5], 1)["jar_stat"][0])
    assert jackknife_ar_sets(diag)["jar_set_kind"][0] is None


def _grid_member(lo, hi, kind, b):
    if kind == "interval":
        return lo <= b <= hi
    if kind == "two_rays":
        return b <= lo or b >= hi
    return kind == "whole_line"


@pytest.mark.parametrize(("seed", "pi"), [(21, 0.8), (22, 0.1), (23, 0.0), (24, 0.3), (25, 0.05)])
def test_sets_equal_the_person_level_set_and_a_grid(seed, pi):
    site, arm, x, y = draw(seed, K=30, n_c=(3, 8), pi=pi)
    diag = kernel_diag(site, arm, x, y)
    s = jackknife_ar_sets(diag, 0.95)
    lo, hi, kind = s["jar_low"][0], s["jar_high"][0], s["jar_set_kind"][0]
    pieces = jackknife_ar_set(site, arm, x, y, level=0.95)
    if kind == "empty":
        assert pieces == []
    elif kind in ("interval", "whole_line"):
        assert len(pieces) == 1
        np.testing.assert_allclose(pieces[0], (lo, hi), rtol=1e-7)
    elif kind == "two_rays":
        assert len(pieces) == 2
        np.testing.assert_allclose((pieces[0][1], pieces[1][0]), (lo, hi), rtol=1e-7)
    else:
        assert kind == "several_pieces" and (pieces[0][0], pieces[-1][1]) == pytest.approx((lo, hi), rel=1e-7)
    grid = np.linspace(-3.0, 4.0, 141)
    grid = grid[np.min(np.abs(grid[:, None] - np.array([lo, hi])[None, :]), axis=1) > 1e-6]
    if kind != "several_pieces":
        for b in grid:
            inside = not jackknife_ar(site, arm, x, y, [b])["reject"]
            assert inside == _grid_member(lo, hi, kind, b), (b, lo, hi, kind)


@pytest.mark.slow
def test_size_in_the_simulation_rows_under_many_weak_instruments():
    """The bundled many-weak-instruments scenario (200 sites of 20: 200 weak instruments, homogeneous effect):
    the rows' jackknife AR at the truth rejects within 3 MCSE of its 5% level."""
    from importlib import resources

    from simulate import scenario as sm
    from simulate.replicate import run_replications

    text = resources.files("simulate").joinpath("scenarios/many_weak_instruments.toml").read_text()
    sc = sm.loads(text)
    R = 1500
    rows = run_replications(sc, 0, 0, 17, range(R))
    first = rows["estimator"] == "2sls"
    p = rows["jar_true_p"][first]
    assert np.isfinite(p).all() and len(p) == R
    rate = np.mean(p < 0.05)
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 / R), rate
