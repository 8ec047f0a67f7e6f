"""Random multisite datasets for the estimator tests (unequal sites, shuffled rows)."""

import numpy as np


def make_data(seed, n_sites, n_arms, n_mediators, min_cell=2, max_cell=12,
              compliance_sd=1.0, heteroskedastic=True, curvature=0.0):
    """Person-level arrays (site, arm, mediators, outcome) with confounding.

    Cell sizes are drawn between ``min_cell`` and ``max_cell`` (unequal sites and
    shares); rows are shuffled so that sites are not sorted. ``curvature`` adds a
    site direct effect equal to curvature * (site compliance)^2 * t, a nonlinear
    between-site relation.
    """
    rng = np.random.default_rng(seed)
    K, A, P = n_sites, n_arms, n_mediators
    sizes = rng.integers(min_cell, max_cell + 1, size=(K, A))
    site = np.repeat(np.arange(K), sizes.sum(1))
    arm = np.concatenate([np.repeat(np.arange(A), sizes[s]) for s in range(K)])
    order = rng.permutation(site.shape[0])
    site, arm = site[order], arm[order]
    n = site.shape[0]
    gamma = rng.normal(0.5, compliance_sd, (K, A, P))
    gamma[:, 0] = 0.0
    site_level = rng.normal(0.0, 2.0, (K, P)) + 3.0
    V = rng.normal(size=(n, P))
    U = rng.normal(size=n) + 0.6 * V.sum(1)
    if heteroskedastic:
        U = U * (1.0 + 0.5 * arm)
    M = site_level[site] + gamma[site, arm] + V
    beta = rng.normal(0.0, 1.0, P)
    direct = curvature * (gamma[site, 1, 0] ** 2) * arm
    Y = M @ beta + U + rng.normal(0.0, 1.0, K)[site] + 5.0 + direct
    return site.astype(np.int64), arm.astype(np.int64), M, Y


def ak80_path() -> str:
    """The AK80 extract shipped inside the package (simulate/data/ak80.csv.gz)."""
    from simulate.datasets import ak80_path as bundled

    return str(bundled())
