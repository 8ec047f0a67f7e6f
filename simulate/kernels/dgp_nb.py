"""Numba kernels of the data-generating process.

No validation, no pandas: arrays in, arrays out.  The model and the canonical draw
order are documented in :mod:`simulate.dgp`; ``tests/naive_dgp.py`` follows them with
plain numpy calls and must give bit-identical data.

The scenario's constants travel as one named tuple ``plan``, a
:class:`simulate.dgp.KernelPlan` (built by ``simulate.dgp.plan``), read by field name.
The blocks of the site vector (compliance_1..P, effect_1..P, direct_effect) and of the
person vector (compliance_1..P, effect_1..P, mediator_1..P, outcome) start at the
plan's ``*_at`` offsets, which come from :class:`simulate.layout.Layout`.

One replication is drawn in three steps that both the person-level path
(:func:`draw_trial`) and the fused replication kernel (``replicate_nb``) share:
:func:`draw_sizes` (stream 0), :func:`draw_sites` (streams 1 and 5, and 0 for site curvatures), and
:func:`site_block` per site (streams 2-5, and 0 for person curvatures).
"""

import math

import numpy as np
from numba import njit

from .rng_nb import fill_double, fill_normal, next_double, standard_gamma, standard_normal


@njit(cache=True)
def arm_counts_nb(n, shares):
    """Largest-remainder rounding of n * shares (ties to the lower arm); as ``scenario.arm_counts``."""
    A = shares.shape[0]
    raw = np.empty(A)
    base = np.empty(A, np.int64)
    rem = np.empty(A)
    total = 0
    for t in range(A):
        raw[t] = n * shares[t]
        base[t] = int(math.floor(raw[t] + 1e-9))
        rem[t] = raw[t] - base[t]
        total += base[t]
    left = n - total
    used = np.zeros(A, np.bool_)
    for _ in range(left):
        best = -1
        for t in range(A):
            if not used[t] and (best < 0 or rem[t] > rem[best]):
                best = t
        used[best] = True
        base[best] += 1
    return base


@njit(cache=True)
def draw_sizes(states, plan):
    """n_s and the exact arm counts of every site (stream 0 when sizes are a range)."""
    shares, size_lo, size_hi, fixed = plan.shares, plan.size_lo, plan.size_hi, plan.fixed_sizes
    K = shares.shape[0]
    A = shares.shape[1]
    sizes = np.empty(K, np.int64)
    if size_hi > 0:
        span = size_hi - size_lo + 1
        for s in range(K):
            sizes[s] = size_lo + int(next_double(states[0]) * span)
    else:
        for s in range(K):
            sizes[s] = fixed[s]
    counts = np.empty((K, A), np.int64)
    for s in range(K):
        counts[s] = arm_counts_nb(sizes[s], shares[s])
    return sizes, counts


@njit(inline="always")
def skewed(z, b, a):
    """The skewed family's variate a z + b (z^2 - 1) / sqrt 2 of a standard normal z (a = sqrt(1 - b^2))."""
    return a * z + b * (z * z - 1.0) / math.sqrt(2.0)


@njit(cache=True)
def draw_path_coefficients(rng_path, K, z_site, t_scale, plan):
    """The site path coefficients (K, R): beta_rs = mean_r + sd_r (C_r z_site + D_r z_path), z_path on stream 5.

    C = 0 and D = I unless a path is correlated with the site vector (then every sum adds
    exact zeros otherwise, so the coefficients are the ones drawn before paths could correlate).
    With a skewed site distribution the path normals are skewed as the site vector's are; with
    heavy tails the standardized coefficient is scaled by the site's ``t_scale``.
    """
    C, D = plan.F_path_site, plan.F_path
    path_mean, path_site_sd = plan.path_mean, plan.path_site_sd
    nu, skew = plan.site_df, plan.site_skew
    skew_a = math.sqrt(1.0 - skew * skew)
    Ds = C.shape[1]
    R = path_mean.shape[0]
    path_site = np.empty((K, R))
    zp = np.empty(R)
    for s in range(K):
        for r in range(R):
            zp[r] = standard_normal(rng_path)
            if skew != 0.0:
                zp[r] = skewed(zp[r], skew, skew_a)
        for r in range(R):
            acc = 0.0
            for j in range(Ds):
                acc += C[r, j] * z_site[s, j]
            for j in range(R):
                acc += D[r, j] * zp[j]
            if nu > 0.0:
                acc *= t_scale[s]
            path_site[s, r] = path_mean[r] + path_site_sd[r] * acc
    return path_site


@njit(cache=True)
def draw_site_curvatures(rng, K, u_effect, plan):
    """The site deviations of the dose curves (K, P): c_ps - c_p = sd_p (rho_p u_delta_ps + sqrt(1 - rho_p^2) z_ps).

    z_ps from ``rng`` (stream 0, after the sizes), site by site and, within a site, for the
    mediators whose ``plan.curv_site_sd`` is above 0 only (none drawn otherwise); ``u_effect``
    holds the sites' standardized effects u_delta (as loaded, heavy-tail scale included).
    """
    sd, rho = plan.curv_site_sd, plan.curv_site_rho
    P = sd.shape[0]
    out = np.zeros((K, P))
    for s in range(K):
        for p in range(P):
            if sd[p] > 0.0:
                z = standard_normal(rng)
                out[s, p] = sd[p] * (rho[p] * u_effect[s, p] + math.sqrt(1.0 - rho[p] * rho[p]) * z)
    return out


@njit(cache=True)
def draw_sites(states, K, plan):
    """Site parameters (K, 2P+1), mediator and outcome baselines, path coefficients, site curvatures.

    A site's ``plan.site_draws`` normals (stream 1): the site vector's, then the P mediator
    baselines from ``plan.baseline_at`` on, then the outcome's at ``plan.baseline_outcome_at``.
    The path coefficients' R normals per site come from stream 5 and load on the site vector's
    normals through ``plan.F_path_site`` (``simulate.dgp.path_factor``); the site deviations of
    the dose curves (:func:`draw_site_curvatures`, zeros when they do not vary) from stream 0.
    Returns (site_params, base_m, base_y, path_site, curv_site).
    """
    F_site, site_mean, site_sd, nonlinear = plan.F_site, plan.site_mean, plan.site_sd, plan.nonlinear
    binary, bin_a, bin_tau = plan.binary, plan.bin_a, plan.bin_tau
    cross_effect, cross_a, cross_b = plan.cross_effect, plan.cross_a, plan.cross_b
    cross_coef, cross_centre = plan.cross_coef, plan.cross_centre
    med_base_sd, out_base_sd = plan.med_base_sd, plan.out_base_sd
    E = plan.site_effect_at
    kap = plan.site_direct_at
    B, BY = plan.baseline_at, plan.baseline_outcome_at
    rng_site = states[1]
    P = binary.shape[0]
    Ds = F_site.shape[0]
    n_draws = plan.site_draws
    site_params = np.empty((K, Ds))
    base_m = np.empty((K, P))
    base_y = np.empty(K)
    z = np.empty(n_draws)
    u = np.empty(Ds)
    z_site = np.empty((K, Ds))  # the site vector's normals, which correlated path coefficients load on
    nu, skew = plan.site_df, plan.site_skew
    skew_a = math.sqrt(1.0 - skew * skew)
    t_scale = np.ones(K)  # sqrt((nu - 2) / W) per site (heavy tails), else 1 (never applied)
    u_effect = np.empty((K, P))  # the standardized site effects u_delta, which site curvatures may load on
    for s in range(K):
        for j in range(n_draws):
            z[j] = standard_normal(rng_site)
        if skew != 0.0:
            for j in range(Ds):
                z[j] = skewed(z[j], skew, skew_a)
        if nu > 0.0:
            t_scale[s] = math.sqrt((nu - 2.0) / (2.0 * standard_gamma(rng_site, 0.5 * nu)))
        for j in range(Ds):
            z_site[s, j] = z[j]
        for i in range(Ds):
            acc = 0.0
            for j in range(Ds):
                acc += F_site[i, j] * z[j]
            u[i] = acc
        if nu > 0.0:
            for i in range(Ds):
                u[i] *= t_scale[s]
        for p in range(P):
            if binary[p]:
                site_params[s, p] = bin_a[p] + bin_tau[p] * u[p]  # latent complier threshold c_ps
            else:
                site_params[s, p] = site_mean[p] + site_sd[p] * u[p]
            e = E + p
            site_params[s, e] = site_mean[e] + site_sd[e] * u[e] + nonlinear[p] * (u[p] * u[p] - 1.0)
            u_effect[s, p] = u[e]
            base_m[s, p] = med_base_sd[p] * z[B + p]
        for k in range(cross_coef.shape[0]):  # cross-mediator dependence: no random number drawn
            e = cross_effect[k]
            site_params[s, e] = site_params[s, e] + cross_coef[k] * (u[cross_a[k]] * u[cross_b[k]] - cross_centre[k])
        site_params[s, kap] = site_mean[kap] + site_sd[kap] * u[kap]
        base_y[s] = out_base_sd * z[BY]
    path_site = draw_path_coefficients(states[5], K, z_site, t_scale, plan)
    curv_site = draw_site_curvatures(states[0], K, u_effect, plan)
    return site_params, base_m, base_y, path_site, curv_site


@njit(cache=True)
def kth_smallest(work, n, k):
    """The k-th smallest (0-based) of work[:n], by quickselect in place (work is scrambled).

    The same value as ``np.partition(work[:n], k)[k]``, without its allocation.  The
    partition is Lomuto's without a branch on the data (every element is swapped, the
    store index advances by the comparison's outcome): random keys make a data-dependent
    branch mispredict half the time, which cost three times the selection itself.
    The pivot is the median of the first, middle and last elements.
    """
    lo = 0
    hi = n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        a = work[lo]
        b = work[mid]
        c = work[hi]
        if a < b:
            m = mid if b < c else (hi if a < c else lo)
        else:
            m = lo if a < c else (hi if b < c else mid)
        pivot = work[m]
        work[m] = work[hi]
        work[hi] = pivot
        store = lo
        for i in range(lo, hi):
            v = work[i]
            work[i] = work[store]
            work[store] = v
            store += 1 if v < pivot else 0
        work[hi] = work[store]
        work[store] = pivot
        if k == store:
            return pivot
        if k < store:
            hi = store - 1
        else:
            lo = store + 1
    return work[k]


@njit(cache=True)
def sparse_rows(F):
    """(nnz per row, column indices) of the nonzero loadings of F, ascending.

    Skipping exact zeros leaves every sum bit-identical (x + 0*z == x) and saves most
    of the work when the components are uncorrelated.
    """
    D = F.shape[0]
    nnz = np.zeros(D, np.int64)
    cols = np.zeros((D, D), np.int64)
    for k in range(D):
        for j in range(D):
            if F[k, j] != 0.0:
                cols[k, nnz[k]] = j
                nnz[k] += 1
    return nnz, cols


@njit(cache=True)
def block_buffers(plan, nmax):
    """The work arrays of :func:`site_block` for sites of at most ``nmax`` persons, reused across sites.

    Returns (nnz, cols, Z, U, key, work, change, change_top, uniforms, path_normals, n_uniform,
    n_path, path_slot, curv_normals, n_curv, curv_slot): the sparse rows of F_person, the person
    normals z (n * Dp, person-major) and their loadings u (Dp, n, component-major), the
    assignment keys and a scratch copy, each mediator's change from arm 0 to the person's arm
    and to the top arm (P, n), a site's binary uniforms and path normals (person-major,
    n_uniform and n_path per person), each path's place among a person's path normals, and the
    person curvature normals (person-major, n_curv per person: one per mediator whose
    ``plan.curv_person_sd`` is above 0) with each mediator's place among them.
    """
    binary, dose, path_dst = plan.binary, plan.dose, plan.path_dst
    P = binary.shape[0]
    Dp = plan.F_person.shape[0]
    arms = dose.shape[1]
    R = path_dst.shape[0]
    nnz, cols = sparse_rows(plan.F_person)
    n_uniform = 0
    for p in range(P):
        if binary[p]:
            n_uniform += 2 if arms > 2 else 1
    # a person's path normals are drawn mediator by mediator, each mediator's paths in order
    path_slot = np.empty(R, np.int64)
    n_path = 0
    for p in range(P):
        for r in range(R):
            if path_dst[r] == p:
                path_slot[r] = n_path
                n_path += 1
    curv_slot = np.zeros(P, np.int64)
    n_curv = 0
    for p in range(P):
        if plan.curv_person_sd[p] > 0.0:
            curv_slot[p] = n_curv
            n_curv += 1
    return (nnz, cols, np.empty(nmax * Dp), np.empty((Dp, nmax)), np.empty(nmax), np.empty(nmax),
            np.empty((P, nmax)), np.empty((P, nmax)), np.empty(nmax * n_uniform), np.empty(nmax * n_path),
            n_uniform, n_path, path_slot, np.empty(nmax * n_curv), n_curv, curv_slot)


@njit(cache=True)
def person_loadings(n, states, plan, buffers):
    """The site's person normals z (stream 2, person by person) and their loadings u = F_person z.

    u_k = sum_j F_kj z_j is summed component by component over the block (each sum in
    ascending j, skipping the zero loadings), into ``buffers``' U (Dp, n).
    """
    F_person = plan.F_person
    nnz, cols, Z, U = buffers[0], buffers[1], buffers[2], buffers[3]
    Dp = F_person.shape[0]
    fill_normal(states[2], Z[:n * Dp])
    for k in range(Dp):
        Uk = U[k]
        for i in range(n):
            Uk[i] = 0.0
        for cc in range(nnz[k]):
            j = cols[k, cc]
            f = F_person[k, j]
            for i in range(n):
                Uk[i] += f * Z[i * Dp + j]


@njit(cache=True)
def assign_arms(n, states, counts_s, thresholds_s, plan, buffers, a):
    """Each person's arm from the assignment key xi u^sel + e (e from stream 3); returns the share treated.

    Complete randomization gives each arm its exact count ``counts_s`` (the largest keys
    take the top arms); Bernoulli assignment compares the key with ``thresholds_s``.
    """
    U, key, work = buffers[3], buffers[4], buffers[5]
    sel_strength, sel_index = plan.sel_strength, plan.sel_index
    arms = plan.dose.shape[1]
    fill_normal(states[3], key[:n])
    for i in range(n):
        key[i] = sel_strength * U[sel_index, i] + key[i]
    if plan.complete:
        # arm t takes the persons whose key ranks in [m_0 + .. + m_(t-1), m_0 + .. + m_t): with
        # distinct keys that is key >= the cut's order statistic (found by selection, O(n))
        for i in range(n):
            a[i] = 0
        cut = 0
        for t in range(1, arms):
            cut += counts_s[t - 1]
            if cut >= n:
                break
            for i in range(n):
                work[i] = key[i]
            th = kth_smallest(work, n, cut)
            for i in range(n):
                a[i] = t if key[i] >= th else a[i]
    else:
        for i in range(n):
            t = 0
            for l in range(arms - 1):
                if key[i] > thresholds_s[l]:
                    t = l + 1
            a[i] = t
    n_treated = 0
    for i in range(n):
        if a[i] > 0:
            n_treated += 1
    return n_treated / n


@njit(cache=True)
def binary_mediator(p, s, n, slot, share, plan, sites, buffers, out):
    """Binary mediator p of site s's n persons: type, M_p, Delta_p, compliance, and its term of Y.

    ``slot`` is the mediator's first uniform among a person's; types: 0 complier,
    1 always-taker, 2 never-taker, 3 defier.
    """
    site_params = sites[0]
    U, change, change_top, uniforms, per_uniform = buffers[3], buffers[6], buffers[7], buffers[8], buffers[10]
    a, M, Y, effect, compliance, ptype = out
    dose, bin_q, bin_defier = plan.dose, plan.bin_q, plan.bin_defier
    UD, UM = plan.person_effect_at, plan.person_mediator_at
    arms = dose.shape[1]
    eff_site = site_params[s, plan.site_effect_at + p]
    d_top = dose[p, arms - 1]
    spill = plan.spill_med[p] * share
    spill_t = plan.spill_med_treated[p] * share
    eff_sd, effect_shift, phi = plan.eff_sd[p], plan.effect_shift, plan.phi[p]
    for i in range(n):
        t = a[i]
        v = uniforms[i * per_uniform + slot]
        w = uniforms[i * per_uniform + slot + 1] if arms > 2 else 0.5
        if U[p, i] > -site_params[s, p]:
            ty = 0
        elif U[UM + p, i] > bin_q[p]:
            ty = 3 if v < bin_defier[p] else 1
        else:
            ty = 2
        frac = dose[p, t] / d_top
        m0 = 1.0 if (ty == 1 or ty == 3) else 0.0
        if ty == 0:
            mt = 1.0 if frac >= w else 0.0
        elif ty == 3:
            mt = 1.0 if frac < w else 0.0
        else:
            mt = m0
        change[p, i] = mt - m0
        change_top[p, i] = (1.0 if ty == 0 else 0.0) - (1.0 if ty == 3 else 0.0)
        m = mt
        if t == 0:
            m += spill
        elif spill_t != 0.0:
            m += spill_t
        d_eff = eff_site + eff_sd * U[UD + p, i] + effect_shift[p, ty]
        ptype[i, p] = ty
        M[i, p] = m
        effect[i, p] = d_eff
        compliance[i, p] = change_top[p, i] / d_top
        Y[i] += d_eff * (m + phi * m * m)


@njit(cache=True)
def continuous_mediator(p, s, n, share, plan, sites, buffers, out):
    """Continuous mediator p of site s's n persons: M_p with its paths, Delta_p, compliance, and Y's term.

    A dose curve that varies (``plan.curv_site_sd`` or ``plan.curv_person_sd`` above 0) gives
    person i the dose g_pi(t) = g_p(t) + t (t - 1) (c_pi - c_p); otherwise g_p(t), as before.
    """
    site_params, base_m, path_site = sites[0], sites[1], sites[3]
    U, change, change_top, path_normals, per_path, path_slot = (
        buffers[3], buffers[6], buffers[7], buffers[9], buffers[11], buffers[12])
    a, M, Y, effect, compliance, ptype = out
    dose, comp_sd, med_sd = plan.dose, plan.comp_sd[p], plan.med_sd[p]
    path_src, path_dst, path_person_sd, path_rho = plan.path_src, plan.path_dst, plan.path_person_sd, plan.path_rho
    UD, UM = plan.person_effect_at, plan.person_mediator_at
    R = path_src.shape[0]
    arms = dose.shape[1]
    eff_site = site_params[s, plan.site_effect_at + p]
    d_top = dose[p, arms - 1]
    spill = plan.spill_med[p] * share
    spill_t = plan.spill_med_treated[p] * share
    eff_sd, phi = plan.eff_sd[p], plan.phi[p]
    gam_site = site_params[s, p]
    m_site = plan.med_mean[p] + base_m[s, p]
    c_person_sd = plan.curv_person_sd[p]
    curved = plan.curv_site_sd[p] > 0.0 or c_person_sd > 0.0
    c_site = sites[4][s, p]
    c_rho = plan.curv_person_rho[p]
    c_rest = math.sqrt(1.0 - c_rho * c_rho)
    curv_normals, per_curv, c_at = buffers[13], buffers[14], buffers[15][p]
    top2 = (arms - 1) * (arms - 2)
    for i in range(n):
        t = a[i]
        gam = gam_site + comp_sd * U[p, i]
        m0 = m_site + med_sd * U[UM + p, i]
        if curved:  # the person's dose curve: g_p(t) + t (t - 1) e_i, e_i = c_pi - c_p
            e = c_site
            if c_person_sd > 0.0:
                e += c_person_sd * (c_rho * U[UD + p, i] + c_rest * curv_normals[i * per_curv + c_at])
            ch = (dose[p, t] + t * (t - 1) * e) * gam
            ch_top = (d_top + top2 * e) * gam
        else:
            ch = dose[p, t] * gam
            ch_top = d_top * gam
        for r in range(R):
            if path_dst[r] == p:
                q = path_src[r]
                b = path_site[s, r] + path_person_sd[r] * (
                    path_rho[r] * U[UD + p, i] + np.sqrt(1.0 - path_rho[r] * path_rho[r])
                    * path_normals[i * per_path + path_slot[r]])
                ch += b * change[q, i]
                ch_top += b * change_top[q, i]
        change[p, i] = ch
        change_top[p, i] = ch_top
        m = m0 + ch
        if t == 0:
            m += spill
        elif spill_t != 0.0:
            m += spill_t
        d_eff = eff_site + eff_sd * U[UD + p, i]
        ptype[i, p] = -1
        M[i, p] = m
        effect[i, p] = d_eff
        compliance[i, p] = ch_top / d_top
        Y[i] += d_eff * (m + phi * m * m)


@njit(cache=True)
def site_block(s, n, states, counts_s, thresholds_s, sites, plan, buffers, out):
    """Draw site s's n persons into the first n rows of ``out`` = (a, M, Y, effect, compliance, ptype).

    Returns the share treated.  ``sites`` is :func:`draw_sites`' (site_params, base_m,
    base_y, path_site, curv_site) and ``buffers`` :func:`block_buffers`'.  Order: the site's
    person normals (stream 2, person by person, component by component), its assignment keys
    (stream 3), its binary uniforms (stream 4), path normals (stream 5) and person curvature
    normals (stream 0; none unless a dose curve varies by person), each person by person and
    within a person mediator by mediator; each stream is drawn as one block.
    The variables are then computed mediator by mediator over the block (every person's
    arithmetic is the same, in the same order, as one person at a time).  Binary types:
    0 complier, 1 always-taker, 2 never-taker, 3 defier (-1 for continuous mediators).
    """
    site_params, base_y = sites[0], sites[2]
    uniforms, path_normals, per_uniform, per_path = buffers[8], buffers[9], buffers[10], buffers[11]
    U = buffers[3]
    Y = out[2]
    binary = plan.binary
    P = binary.shape[0]
    arms = plan.dose.shape[1]
    person_loadings(n, states, plan, buffers)
    share = assign_arms(n, states, counts_s, thresholds_s, plan, buffers, out[0])
    fill_double(states[4], uniforms[:n * per_uniform])
    fill_normal(states[5], path_normals[:n * per_path])
    per_curv = buffers[14]
    if per_curv > 0:  # person curvature normals (stream 0, after the sizes and site curvatures)
        fill_normal(states[0], buffers[13][:n * per_curv])
    out_mean, out_sd, UY = plan.out_mean, plan.out_sd, plan.person_outcome_at
    for i in range(n):
        Y[i] = out_mean + base_y[s] + out_sd * U[UY, i]
    slot = 0  # this mediator's first uniform
    for p in range(P):
        if binary[p]:
            binary_mediator(p, s, n, slot, share, plan, sites, buffers, out)
            slot += 2 if arms > 2 else 1
        else:
            continuous_mediator(p, s, n, share, plan, sites, buffers, out)
    M = out[1]
    inter_first, inter_second, inter_theta = plan.inter_first, plan.inter_second, plan.inter_theta
    for k in range(inter_theta.shape[0]):  # mediator interactions in Y (none: nothing is added)
        ip, iq, th = inter_first[k], inter_second[k], inter_theta[k]
        for i in range(n):
            Y[i] += th * M[i, ip] * M[i, iq]
    a = out[0]
    kap, spill_out, spill_out_t = plan.site_direct_at, plan.spill_out, plan.spill_out_treated
    for i in range(n):
        t = a[i]
        y = Y[i] + site_params[s, kap] * t
        if t == 0:
            y += spill_out * share
        elif spill_out_t != 0.0:
            y += spill_out_t * share
        Y[i] = y
    return share


@njit(cache=True)
def draw_trial(states, plan):
    """Draw one replication from the stream states (6, 4) uint64.

    Returns (sizes, counts, site, arm, M, Y, effect, compliance, type, site_params, share_treated).
    """
    sizes, counts = draw_sizes(states, plan)
    thresholds = plan.thresholds
    K = sizes.shape[0]
    P = plan.binary.shape[0]
    sites = draw_sites(states, K, plan)
    site_params = sites[0]
    N = 0
    nmax = 0
    for s in range(K):
        N += sizes[s]
        nmax = max(nmax, sizes[s])
    site = np.empty(N, np.int64)
    arm = np.empty(N, np.int64)
    M = np.empty((N, P))
    Y = np.empty(N)
    effect = np.empty((N, P))
    compliance = np.empty((N, P))
    ptype = np.empty((N, P), np.int64)
    share_treated = np.empty(K)
    buffers = block_buffers(plan, nmax)
    start = 0
    for s in range(K):
        n = sizes[s]
        stop = start + n
        out = (arm[start:stop], M[start:stop], Y[start:stop], effect[start:stop], compliance[start:stop],
               ptype[start:stop])
        share_treated[s] = site_block(s, n, states, counts[s], thresholds[s], sites, plan, buffers, out)
        site[start:stop] = s
        start = stop
    return sizes, counts, site, arm, M, Y, effect, compliance, ptype, site_params, share_treated
