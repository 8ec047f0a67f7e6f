r"""Numba kernels: cell-level sufficient statistics of v = (Y, M_1, ..., M_P).

Persons i in sites s = 0..K-1 and arms t = 0..A-1; a cell c = (s, t).  Everything the
estimators need is a function of the cells' counts n_c, means vbar_c and centred
cross-products W_c (see :mod:`simulate.kernels.fit_nb` for the notation).
"""

import numpy as np
from numba import njit


@njit(cache=True)
def sum4(x, n):
    """sum(x[:n]) in four interleaved partial sums (j mod 4), combined in a fixed order.

    Four independent chains instead of one: the additions no longer wait on each other.
    """
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    m = n - n % 4
    for j in range(0, m, 4):
        s0 += x[j]
        s1 += x[j + 1]
        s2 += x[j + 2]
        s3 += x[j + 3]
    for j in range(m, n):
        s0 += x[j]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def dot4(x, y, n):
    """sum_j x[j] y[j] over j < n, in the partial sums of :func:`sum4`."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    m = n - n % 4
    for j in range(0, m, 4):
        s0 += x[j] * y[j]
        s1 += x[j + 1] * y[j + 1]
        s2 += x[j + 2] * y[j + 2]
        s3 += x[j + 3] * y[j + 3]
    for j in range(m, n):
        s0 += x[j] * y[j]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def cell_moments(w, nc, mean_c, cross_c):
    """One cell's mean and centred cross-product from its persons' v = (Y, M) in w[:, :nc].

    w is (Q, >= nc), one column per person in person order; it is centred in place.  Two
    passes (the mean, then centred products) so that the sums of squares do not lose digits
    to large means.  An empty cell gets zeros.
    """
    Q = w.shape[0]
    for q in range(Q):
        mean_c[q] = sum4(w[q], nc) / nc if nc > 0 else 0.0
        for j in range(nc):
            w[q, j] -= mean_c[q]
    for a in range(Q):
        for b in range(a, Q):
            cross_c[a, b] = dot4(w[a], w[b], nc)
            cross_c[b, a] = cross_c[a, b]


@njit(cache=True, inline="always")
def site_cell_statistics(s, arm, mediators, outcome, start, stop, count, mean, cross, w):
    """Fill site s's cells of (count, mean, cross) from persons start..stop-1, all of site s.

    ``w`` is a work array (Q, >= stop - start + 1).  Each arm's persons are gathered in
    person order (a branch-free compaction: every person is written, the next slot advances
    only for the arm's own) and passed to :func:`cell_moments`, exactly as
    :func:`cell_statistics` does, so the fused replication kernel (which calls this per
    site while the site's persons are in cache) gives bit-identical statistics.  Inlined into
    that kernel when Numba builds its IR: no compilation of its own, and none per literal type
    of ``start``.
    """
    A = count.shape[1]
    P = mediators.shape[1]
    for t in range(A):
        k = np.int64(0)
        for i in range(start, stop):
            w[0, k] = outcome[i]
            for p in range(P):
                w[p + 1, k] = mediators[i, p]
            k += 1 if arm[i] == t else 0
        count[s, t] = k
        cell_moments(w, k, mean[s, t], cross[s, t])


@njit(cache=True)
def cell_statistics(site, arm, mediators, outcome, n_sites, n_arms):
    r"""Per-cell counts, means and centred cross-products of v = (Y, M).

    Each cell's persons, in person order, go through :func:`cell_moments` (two passes:
    means, then centred products, so that the within-cell sums of squares do not lose
    digits to large means; sums in four interleaved partial sums).

    Parameters
    ----------
    site, arm : int64 arrays (n,)
        Site codes 0..K-1 and arm codes 0..L; need not be sorted.
    mediators : float64 array (n, P)
    outcome : float64 array (n,)
    n_sites, n_arms : int
        K and A = L + 1.

    Returns
    -------
    count : int64 (K, A)
        n_c.
    mean : float64 (K, A, Q)
        vbar_c = n_c^{-1} sum_{i in c} v_i (0 for an empty cell).
    cross : float64 (K, A, Q, Q)
        W_c = sum_{i in c} (v_i - vbar_c)(v_i - vbar_c)'.
    """
    n = outcome.shape[0]
    P = mediators.shape[1]
    Q = P + 1
    A = n_arms
    count = np.zeros((n_sites, n_arms), np.int64)
    for i in range(n):
        count[site[i], arm[i]] += 1
    # each cell's persons in person order (a stable counting sort by cell)
    first = np.zeros(n_sites * A + 1, np.int64)
    for s in range(n_sites):
        for t in range(A):
            first[s * A + t + 1] = first[s * A + t] + count[s, t]
    order = np.empty(n, np.int64)
    fill = first[:-1].copy()
    for i in range(n):
        c = site[i] * A + arm[i]
        order[fill[c]] = i
        fill[c] += 1
    mean = np.zeros((n_sites, n_arms, Q))
    cross = np.zeros((n_sites, n_arms, Q, Q))
    nmax = 0
    for s in range(n_sites):
        for t in range(A):
            nmax = max(nmax, count[s, t])
    w = np.empty((Q, nmax + 1))
    for s in range(n_sites):
        for t in range(A):
            c = s * A + t
            nc = count[s, t]
            for j in range(nc):
                i = order[first[c] + j]
                w[0, j] = outcome[i]
                for p in range(P):
                    w[p + 1, j] = mediators[i, p]
            cell_moments(w, nc, mean[s, t], cross[s, t])
    return count, mean, cross


@njit(cache=True)
def site_moments(count, mean):
    """Site sizes n_s, site means vbar_s and arm means tbar_s (arm codes as values)."""
    K, A, Q = mean.shape
    n_site = np.zeros(K, np.int64)
    site_mean = np.zeros((K, Q))
    arm_mean = np.zeros(K)
    for s in range(K):
        for t in range(A):
            n_site[s] += count[s, t]
            arm_mean[s] += count[s, t] * t
            for q in range(Q):
                site_mean[s, q] += count[s, t] * mean[s, t, q]
        if n_site[s] > 0:
            arm_mean[s] /= n_site[s]
            for q in range(Q):
                site_mean[s, q] /= n_site[s]
    return n_site, site_mean, arm_mean


@njit(cache=True)
def cell_deviations(mean, site_mean):
    """Within-site deviations of the cell means, vbar_c - vbar_s: (K, A, Q)."""
    K, A, Q = mean.shape
    dev = np.empty((K, A, Q))
    for s in range(K):
        for t in range(A):
            for q in range(Q):
                dev[s, t, q] = mean[s, t, q] - site_mean[s, q]
    return dev


@njit(cache=True)
def between_within(count, mean, cross):
    r"""B = V'P_{Z~}V (between cells within sites) and Wc = V'M_{[Z,W]}V (within cells)."""
    _, site_mean, _ = site_moments(count, mean)
    return between_within_from_deviations(count, cell_deviations(mean, site_mean), cross)


@njit(cache=True)
def between_within_from_deviations(count, dev, cross):
    """:func:`between_within` given the cell deviations ``dev`` = vbar_c - vbar_s."""
    K, A, Q = dev.shape
    B = np.zeros((Q, Q))
    Wc = np.zeros((Q, Q))
    for s in range(K):
        for t in range(A):
            nc = count[s, t]
            if nc == 0:
                continue
            for a in range(Q):
                da = dev[s, t, a]
                for b in range(Q):
                    B[a, b] += nc * da * dev[s, t, b]
                    Wc[a, b] += cross[s, t, a, b]
    return B, Wc
