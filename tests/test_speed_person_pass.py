"""The blocked person passes (issue 17) against plain numpy from the formulas, over several blocks of persons.

``jive_nb.person_meats_all``'s meats and MBTSLS moments, and the jackknife AR's forms from
``ar_nb.jackknife_ar_statistics``, on designs of several hundred to a few thousand persons (the kernels
work in blocks of 128 persons; the other tests use a hundred or so).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_jar import draw

from simulate.estimators.inference import jackknife_ar, jackknife_ar_tests
from simulate.kernels import fit_nb
from simulate.kernels.jive_nb import person_meats_all
from simulate.kernels.moments_nb import cell_statistics


def _group_mean(v, g, G):
    """Row i gets the mean of v over the rows with the same code g."""
    n_g = np.bincount(g, minlength=G).astype(float)
    sums = np.zeros((G,) + v.shape[1:])
    np.add.at(sums, g, v)
    return (sums / n_g.reshape((-1,) + (1,) * (v.ndim - 1)))[g]


def _numpy_person_moments(site, arm, x, y, beta_ols, beta_mb):
    K, A = int(site.max()) + 1, int(arm.max()) + 1
    cell = site * A + arm
    h = x - _group_mean(x, site, K)
    u = (y - _group_mean(y, site, K)) - h @ beta_ols
    meat_ols = (h * (u**2)[:, None]).T @ h
    w = x - _group_mean(x, cell, K * A)
    r = (y - _group_mean(y, cell, K * A)) - w @ beta_mb
    return meat_ols, (w * (r**2)[:, None]).T @ w, w.T @ r**2, (w * r[:, None]).T @ w


@pytest.mark.parametrize(("seed", "P", "A", "K", "n_c"), [(1, 1, 2, 20, (5, 40)), (2, 3, 3, 30, (10, 60)),
                                                        (3, 2, 4, 7, (20, 90))])
def test_person_meats_and_mbtsls_moments_match_numpy(seed, P, A, K, n_c):
    site, arm, x, y = draw(seed, K=K, n_c=n_c, A=A, P=P)
    assert site.size > 3 * 128 and site.size % 128
    count, mean, cross = cell_statistics(site, arm, np.ascontiguousarray(x), y, K, A)
    rng = np.random.default_rng(seed)
    b_ols, b_uj, b_mb = (0.5 + rng.normal(size=P) for _ in range(3))
    got = person_meats_all(site, arm, np.ascontiguousarray(x), y, count, mean, b_ols, b_uj, b_mb)
    meat_ols, m_wwuu, m_wuu, m_wwu = _numpy_person_moments(site, arm, x, y, b_ols, b_mb)
    for g, want in ((got[0], meat_ols), (got[3], m_wwuu), (got[4], m_wuu), (got[5], m_wwu)):
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
    # NaN MBTSLS coefficients: the moments stay zero and the meats do not change
    off = person_meats_all(site, arm, np.ascontiguousarray(x), y, count, mean, b_ols, b_uj, np.full(P, np.nan))
    assert not np.any(off[3]) and not np.any(off[4]) and not np.any(off[5])
    for a, b in zip(off[:3], got[:3], strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(("seed", "P", "A"), [(4, 1, 2), (5, 2, 3), (6, 3, 2)])
def test_jackknife_forms_over_many_blocks_match_the_person_level_statistic(seed, P, A):
    site, arm, x, y = draw(seed, K=25, n_c=(3, 50), A=A, P=P)
    assert site.size > 3 * 128
    K = int(site.max()) + 1
    diag = fit_nb.fit_persons(site, arm, np.ascontiguousarray(x), y, K, A, 1.0)[3][None, :]
    for b0 in (0.5 + 0.25 * np.arange(P), np.zeros(P), np.linspace(-1.0, 2.0, P)):
        got = jackknife_ar_tests(diag, b0, P)
        ref = jackknife_ar(site, arm, x, y, b0)
        assert got["jar_stat"][0] == pytest.approx(ref["stat"], rel=1e-10, abs=1e-12)
