"""The fused replication kernel: draw, sufficient statistics, every estimator, for a batch.

One call handles a whole batch of replications, so that the Python overhead is paid
once per batch.  Person-level arrays of one replication live in buffers reused
across the batch (never the persons of a whole batch); each site's persons are drawn
into a block (:func:`simulate.kernels.dgp_nb.site_block`, the same code as the
person-level path) and the sample estimands are accumulated from the block.
"""

import numpy as np
from numba import njit

from .dgp_nb import block_buffers, draw_sites, draw_sizes, site_block
from .estimators_nb import N_DIAGNOSTICS, N_ESTIMATORS, N_SE, fit_with_statistics, site_cell_statistics


@njit(cache=True)
def replicate_batch(states_batch, plan, fuller_alpha):
    """Every replication of ``states_batch`` (R, 6, 4) uint64, for the :class:`simulate.dgp.KernelPlan` ``plan``.

    About 100 lines: one loop over the replications whose body keeps the person buffers,
    the running sums of the sample estimands and the cell statistics in registers and
    cache; splitting it would pass a dozen buffers between kernels for no reader's gain.

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
    d_sum = np.empty(P)
    gd_sum = np.empty(P)
    g_sum = np.empty(P)
    c_sum = np.empty(P)
    c_n = np.empty(P)
    Q = P + 1
    count = np.empty((K, A), np.int64)
    mean = np.empty((K, A, Q))
    cross = np.empty((K, A, Q, Q))
    cell_w = np.empty((Q, nmax + 1))
    for r in range(Rn):
        states = states_batch[r]
        sizes, counts = draw_sizes(states, plan)
        site_params, base_m, base_y, path_site = draw_sites(states, K, plan)
        d_sum[:] = 0.0
        gd_sum[:] = 0.0
        g_sum[:] = 0.0
        c_sum[:] = 0.0
        c_n[:] = 0.0
        start = 0
        for s in range(K):
            n = sizes[s]
            stop = start + n
            site_block(s, n, states, counts[s], thresholds[s], site_params, base_m, base_y, path_site, plan, buffers,
                       arm[start:stop], M[start:stop], Y[start:stop], eff, comp, ty)
            for i in range(n):
                site[start + i] = s
            for p in range(P):
                # running sums in registers over the site (a sum through memory would wait on
                # its own store every person); the same additions in the same order
                ds, gds, gs, cs, cn = d_sum[p], gd_sum[p], g_sum[p], c_sum[p], c_n[p]
                for i in range(n):
                    d = eff[i, p]
                    ds += d
                    gds += comp[i, p] * d
                    gs += comp[i, p]
                    if ty[i, p] == 0:
                        cs += d
                        cn += 1.0
                d_sum[p], gd_sum[p], g_sum[p], c_sum[p], c_n[p] = ds, gds, gs, cs, cn
            # the site's cell statistics while its persons are in cache: the same sums, in the same
            # order, as kernels.estimators_nb.cell_statistics over all persons
            site_cell_statistics(s, arm, M, Y, start, stop, count, mean, cross, cell_w)
            start = stop
        N = start
        for p in range(P):
            # numba raises on a float division by zero: a mediator that no one moves has no
            # compliance-weighted estimand
            sample[r, 0, p] = d_sum[p] / N
            sample[r, 1, p] = gd_sum[p] / g_sum[p] if g_sum[p] != 0.0 else np.nan
            sample[r, 2, p] = c_sum[p] / c_n[p] if (binary[p] and c_n[p] > 0) else np.nan
        e, s_, st, dg, f1, f2 = fit_with_statistics(site[:N], arm[:N], M[:N], Y[:N], count, mean, cross, K,
                                                    fuller_alpha)
        est[r] = e
        se[r] = s_
        status[r] = st
        diag[r] = dg
        fs[r] = f1
        sw[r] = f2
    return est, se, status, diag, fs, sw, sample
