"""The HTZ degrees of freedom of the rewritten kernel against the O(K^2) double sum written in plain numpy."""

import numpy as np
import pytest
from test_falsification import htz_nu

from simulate.kernels.falsify_nb import htz_df


@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("idx", [[0], [3, 4, 5], [0, 3, 4, 5]])
def test_htz_df_matches_the_double_sum(L, idx):
    rng = np.random.default_rng(7 + L)
    K, k = 23, 6
    G = rng.normal(size=(K * L, k)) * rng.uniform(0.3, 3.0, size=(K * L, 1))
    site = np.repeat(np.arange(K), L)
    idx = np.array(idx, np.int64)
    got = htz_df(G, np.linalg.inv(G.T @ G), idx, K, L)
    want = htz_nu(G, idx, site, K)
    assert np.isfinite(want) and want > 0
    assert got == pytest.approx(want, rel=1e-10)
