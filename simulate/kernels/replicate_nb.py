"""The fused replication kernel: draw, sufficient statistics, every estimator, for a batch.

One call handles a whole batch of replications, so that the Python overhead is paid
once per batch.  Person-level arrays of one replication live in buffers reused
across the batch (never the persons of a whole batch); each site's persons are drawn
into a block (:func:`simulate.kernels.dgp_nb.site_block`, the same code as the
person-level path) and the sample estimands are accumulated from the block.
"""

import numpy as np
from numba import njit

from .codes_nb import N_DIAGNOSTICS, N_ESTIMATORS, N_SE
from .dgp_nb import block_buffers, draw_sites, draw_sizes, site_block
from .fit_nb import fit_with_statistics
from .moments_nb import site_cell_statistics


@njit(cache=True)
def add_sample_sums(n, eff, comp, ty, sums):
    """Add a site's n persons to the running sums of the sample estimands, per mediator (columns).

    Rows of ``sums``: sum Delta, sum Gamma Delta, sum Gamma, sum Delta over the compliers,
    the number of compliers.
    """
    P = sums.shape[1]
    for p in range(P):
        # running sums in registers over the site (a sum through memory would wait on
        # its own store every person); the same additions in the same order
        ds, gds, gs, cs, cn = sums[0, p], sums[1, p], sums[2, p], sums[3, p], sums[4, p]
        for i in range(n):
            d = eff[i, p]
            ds += d
            gds += comp[i, p] * d
            gs += comp[i, p]
            if ty[i, p] == 0:
                cs += d
                cn += 1.0
        sums[0, p], sums[1, p], sums[2, p], sums[3, p], sums[4, p] = ds, gds, gs, cs, cn


@njit(cache=True)
def sample_estimands(sums, N, binary, out):
    """The replication's sample estimands (3, P) from :func:`add_sample_sums`' sums over its N persons."""
    for p in range(sums.shape[1]):
        # numba raises on a float division by zero: a mediator that no one moves has no
        # compliance-weighted estimand
        out[0, p] = sums[0, p] / N
        out[1, p] = sums[1, p] / sums[2, p] if sums[2, p] != 0.0 else np.nan
        out[2, p] = sums[3, p] / sums[4, p] if (binary[p] and sums[4, p] > 0) else np.nan


@njit(cache=True)
def replicate_batch(states_batch, plan, fuller_alpha):
    """Every replication of ``states_batch`` (R, 6, 4) uint64, for the :class:`simulate.dgp.KernelPlan` ``plan``.

    Returns
    -------
    est : (R, E, P); se : (R, E, N_SE, P); status : (R, E); diag : (R, N_DIAGNOSTICS);
    first_stage_f, conditional_f : (R, P);
    sample : (R, 3, P): the mean of Delta_p over the persons drawn, sum Gamma Delta / sum Gamma,
    and the mean of Delta_p over the compliers drawn (NaN for a continuous mediator).
    """
    Rn = states_batch.shape[0]
    shares, size_hi, fixed = plan.shares, plan.size_hi, plan.fixed_sizes
    thresholds = plan.thresholds
    binary = plan.binary
    K = shares.shape[0]
    A = shares.shape[1]
    P = binary.shape[0]
    nmax = size_hi
    for s in range(K):
        nmax = max(nmax, fixed[s])
    Nmax = K * nmax
    site = np.empty(Nmax, np.int64)
    arm = np.empty(Nmax, np.int64)
    M = np.empty((Nmax, P))
    Y = np.empty(Nmax)
    eff = np.empty((nmax, P))
    comp = np.empty((nmax, P))
    ty = np.empty((nmax, P), np.int64)
    buffers = block_buffers(plan, nmax)

    est = np.empty((Rn, N_ESTIMATORS, P))
    se = np.empty((Rn, N_ESTIMATORS, N_SE, P))
    status = np.empty((Rn, N_ESTIMATORS), np.int64)
    diag = np.empty((Rn, N_DIAGNOSTICS))
    fs = np.empty((Rn, P))
    sw = np.empty((Rn, P))
    sample = np.empty((Rn, 3, P))
    sums = np.empty((5, P))
    Q = P + 1
    count = np.empty((K, A), np.int64)
    mean = np.empty((K, A, Q))
    cross = np.empty((K, A, Q, Q))
    cell_w = np.empty((Q, nmax + 1))
    for r in range(Rn):
        states = states_batch[r]
        sizes, counts = draw_sizes(states, plan)
        sites = draw_sites(states, K, plan)
        sums[:] = 0.0
        start = 0
        for s in range(K):
            n = sizes[s]
            stop = start + n
            site_block(s, n, states, counts[s], thresholds[s], sites, plan, buffers,
                       (arm[start:stop], M[start:stop], Y[start:stop], eff, comp, ty))
            for i in range(n):
                site[start + i] = s
            add_sample_sums(n, eff, comp, ty, sums)
            # the site's cell statistics while its persons are in cache: the same sums, in the same
            # order, as moments_nb.cell_statistics over all persons
            site_cell_statistics(s, arm, M, Y, start, stop, count, mean, cross, cell_w)
            start = stop
        N = start
        sample_estimands(sums, N, binary, sample[r])
        e, s_, st, dg, f1, f2 = fit_with_statistics(site[:N], arm[:N], M[:N], Y[:N], count, mean, cross, K,
                                                    fuller_alpha)
        est[r] = e
        se[r] = s_
        status[r] = st
        diag[r] = dg
        fs[r] = f1
        sw[r] = f2
    return est, se, status, diag, fs, sw, sample
