"""Numba kernel of the data-generating process: one replication's persons.

No validation, no pandas: arrays in, arrays out.  The canonical draw order is
documented in :mod:`simulate.dgp`; ``tests/naive_dgp.py`` follows it with plain
numpy calls and must give bit-identical data.
"""

import numpy as np
from numba import njit

from .rng_nb import next_double, standard_normal


@njit(cache=True)
def draw_trial(states,
               sizes, counts, thresholds, complete,
               F_site, site_mean, site_sd, nonlinear, binary, bin_a, bin_tau, bin_q, bin_defier,
               med_base_sd, out_base_sd,
               F_person, med_mean, med_sd, out_mean, out_sd, comp_sd, eff_sd, effect_shift,
               dose, phi, sel_strength, sel_index,
               path_src, path_dst, path_mean, path_site_sd, path_person_sd, path_rho,
               spill_out, spill_med):
    """Draw one replication from the stream states (6, 4) uint64.  Returns (site, arm, M, Y, effect, compliance, type, site_params, share_treated).

    Person loop order inside a site: mediators 0..P-1 (so a path's source precedes its target).
    Binary mediator types: 0 complier, 1 always-taker, 2 never-taker, 3 defier (-1 for continuous).
    Streams: states[1] site, [2] person, [3] assignment, [4] binary, [5] paths (0: sizes, drawn outside).
    """
    rng_site = states[1]
    rng_person = states[2]
    rng_assign = states[3]
    rng_binary = states[4]
    rng_path = states[5]
    K = sizes.shape[0]
    P = binary.shape[0]
    Ds = F_site.shape[0]
    Dp = F_person.shape[0]
    R = path_src.shape[0]
    arms = dose.shape[1]
    N = 0
    for s in range(K):
        N += sizes[s]
    n_bin = 0
    for p in range(P):
        if binary[p]:
            n_bin += 1

    # ---- site level: site stream, per site (Ds correlated + P + 1 baseline normals) ----
    site_params = np.empty((K, Ds))
    base_m = np.empty((K, P))
    base_y = np.empty(K)
    z = np.empty(Ds + P + 1)
    u = np.empty(Ds)
    for s in range(K):
        for j in range(Ds + P + 1):
            z[j] = standard_normal(rng_site)
        for i in range(Ds):
            acc = 0.0
            for j in range(Ds):
                acc += F_site[i, j] * z[j]
            u[i] = acc
        for p in range(P):
            if binary[p]:
                site_params[s, p] = bin_a[p] + bin_tau[p] * u[p]  # latent complier threshold c_ps
            else:
                site_params[s, p] = site_mean[p] + site_sd[p] * u[p]
            site_params[s, P + p] = site_mean[P + p] + site_sd[P + p] * u[P + p] + nonlinear[p] * (u[p] * u[p] - 1.0)
            base_m[s, p] = med_base_sd[p] * z[Ds + p]
        site_params[s, 2 * P] = site_mean[2 * P] + site_sd[2 * P] * u[2 * P]
        base_y[s] = out_base_sd * z[Ds + P]
    # path coefficients' site means: path stream, K x R first
    path_site = np.empty((K, R))
    for s in range(K):
        for r in range(R):
            path_site[s, r] = path_mean[r] + path_site_sd[r] * standard_normal(rng_path)

    site = np.empty(N, np.int64)
    arm = np.empty(N, np.int64)
    M = np.empty((N, P))
    Y = np.empty(N)
    effect = np.empty((N, P))
    compliance = np.empty((N, P))
    ptype = np.full((N, P), -1, np.int64)
    share_treated = np.empty(K)

    up = np.empty(Dp)
    zp = np.empty(Dp)
    change = np.empty(P)
    change_top = np.empty(P)
    # the nonzero loadings of each row of F_person, in ascending column order: skipping exact
    # zeros leaves every sum bit-identical (x + 0*z == x) and saves most of the work when the
    # person-level components are uncorrelated
    nnz = np.zeros(Dp, np.int64)
    cols = np.zeros((Dp, Dp), np.int64)
    for k in range(Dp):
        for j in range(Dp):
            if F_person[k, j] != 0.0:
                cols[k, nnz[k]] = j
                nnz[k] += 1
    start = 0
    for s in range(K):
        n = sizes[s]
        # person normals of the whole site first (person stream), then keys (assignment stream)
        U = np.empty((n, Dp))
        for i in range(n):
            for j in range(Dp):
                zp[j] = standard_normal(rng_person)
            for k in range(Dp):
                acc = 0.0
                for c in range(nnz[k]):
                    j = cols[k, c]
                    acc += F_person[k, j] * zp[j]
                U[i, k] = acc
        key = np.empty(n)
        for i in range(n):
            key[i] = sel_strength * U[i, sel_index] + standard_normal(rng_assign)
        a = np.empty(n, np.int64)
        if complete:
            # arm t takes the persons whose key ranks in [m_0 + .. + m_(t-1), m_0 + .. + m_t): with
            # distinct keys that is key >= the cut's order statistic (found by partition, O(n))
            for i in range(n):
                a[i] = 0
            cut = 0
            for t in range(1, arms):
                cut += counts[s, t - 1]
                if cut >= n:
                    break
                th = np.partition(key, cut)[cut]
                for i in range(n):
                    if key[i] >= th:
                        a[i] = t
        else:
            for i in range(n):
                t = 0
                for l in range(arms - 1):
                    if key[i] > thresholds[s, l]:
                        t = l + 1
                a[i] = t
        n_treated = 0
        for i in range(n):
            if a[i] > 0:
                n_treated += 1
        share = n_treated / n
        share_treated[s] = share

        for i in range(n):
            g = start + i
            t = a[i]
            site[g] = s
            arm[g] = t
            # binary stream: per binary mediator v (and w with 3+ arms)
            y = out_mean + base_y[s] + out_sd * U[i, Dp - 1]
            for p in range(P):
                d_eff = site_params[s, P + p] + eff_sd[p] * U[i, P + p]
                if binary[p]:
                    v = next_double(rng_binary)
                    w = 0.5
                    if arms > 2:
                        w = next_double(rng_binary)
                    if U[i, p] > -site_params[s, p]:
                        ty = 0
                    elif U[i, 2 * P + p] > bin_q[p]:
                        ty = 3 if v < bin_defier[p] else 1
                    else:
                        ty = 2
                    ptype[g, p] = ty
                    d_eff += effect_shift[p, ty]
                    frac = dose[p, t] / dose[p, arms - 1]
                    m0 = 1.0 if (ty == 1 or ty == 3) else 0.0
                    if ty == 0:
                        mt = 1.0 if frac >= w else 0.0
                    elif ty == 3:
                        mt = 1.0 if frac < w else 0.0
                    else:
                        mt = m0
                    change[p] = mt - m0
                    change_top[p] = (1.0 if ty == 0 else 0.0) - (1.0 if ty == 3 else 0.0)
                    m = mt
                else:
                    gam = site_params[s, p] + comp_sd[p] * U[i, p]
                    m0 = med_mean[p] + base_m[s, p] + med_sd[p] * U[i, 2 * P + p]
                    change[p] = dose[p, t] * gam
                    change_top[p] = dose[p, arms - 1] * gam
                    for r in range(R):
                        if path_dst[r] == p:
                            q = path_src[r]
                            b = path_site[s, r] + path_person_sd[r] * (
                                path_rho[r] * U[i, P + p] + np.sqrt(1.0 - path_rho[r] * path_rho[r]) * standard_normal(rng_path))
                            change[p] += b * change[q]
                            change_top[p] += b * change_top[q]
                    m = m0 + change[p]
                if t == 0:
                    m += spill_med[p] * share
                M[g, p] = m
                effect[g, p] = d_eff
                compliance[g, p] = change_top[p] / dose[p, arms - 1]
                y += d_eff * (m + phi[p] * m * m)
            y += site_params[s, 2 * P] * t
            if t == 0:
                y += spill_out * share
            Y[g] = y
        start += n
    return site, arm, M, Y, effect, compliance, ptype, site_params, share_treated
