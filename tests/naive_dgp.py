"""Plain-numpy reference of the data-generating process.

Vectorised numpy, written from the model in ``simulate/dgp.py``'s docstring and
its canonical draw order, independently of the Numba kernel: it draws each
stream's numbers with one array call and then computes every variable for all
persons at once.  The kernel must give bit-identical data from the same seed.
"""

import numpy as np
from naive_rng import Xoshiro

from simulate.dgp import _trial, cell_counts, plan, streams


def _lin(F, Z):
    """u = F z for each row of Z, summed over j in ascending order (as the kernel does)."""
    out = np.empty((Z.shape[0], F.shape[0]))
    for k in range(F.shape[0]):
        acc = np.zeros(Z.shape[0])
        for j in range(F.shape[1]):
            acc = acc + F[k, j] * Z[:, j]
        out[:, k] = acc
    return out


class _Stream:
    """numpy-style array draws from the pure-Python xoshiro256++ reference, in C order."""

    def __init__(self, state):
        self.x = Xoshiro(state)

    def standard_normal(self, shape):
        shape = (shape,) if isinstance(shape, int) else shape
        return np.array(self.x.normals(int(np.prod(shape))), dtype=float).reshape(shape)

    def random(self, shape):
        return np.array(self.x.doubles(int(np.prod(shape))), dtype=float).reshape(shape)


def draw_reference(sc, seed):
    pl = plan(sc)
    states = streams(seed)
    r_size, r_site, r_person, r_assign, r_binary, r_path = (_Stream(states[i]) for i in range(6))
    if sc.n_per_site_range is not None:
        lo, hi = sc.n_per_site_range
        sizes = lo + np.floor(r_size.random(sc.n_sites) * (hi - lo + 1)).astype(np.int64)
    else:
        sizes = np.array(sc.n_per_site, np.int64)
    counts = cell_counts(sizes, pl.shares)
    K, P, arms = sc.n_sites, sc.n_mediators, sc.arms
    Ds = 2 * P + 1
    Dp = 3 * P + 1
    N = int(sizes.sum())
    R = len(sc.paths)
    binary = np.array(sc.is_binary)

    # site level
    Zs = r_site.standard_normal((K, Ds + P + 1))
    Us = _lin(pl.F_site, Zs[:, :Ds])
    site_params = np.empty((K, Ds))
    for p in range(P):
        if binary[p]:
            site_params[:, p] = pl.bin_a[p] + pl.bin_tau[p] * Us[:, p]
        else:
            site_params[:, p] = pl.site_mean[p] + pl.site_sd[p] * Us[:, p]
        site_params[:, P + p] = (pl.site_mean[P + p] + pl.site_sd[P + p] * Us[:, P + p]
                                 + pl.nonlinear[p] * (Us[:, p] * Us[:, p] - 1.0))
    site_params[:, 2 * P] = pl.site_mean[2 * P] + pl.site_sd[2 * P] * Us[:, 2 * P]
    base_m = pl.med_base_sd * Zs[:, Ds:Ds + P]
    base_y = pl.out_base_sd * Zs[:, Ds + P]
    path_site = pl.path_mean + pl.path_site_sd * r_path.standard_normal((K, R))
    # dose curves varying by site (stream 0 after the sizes): c_ps - c_p = sd (rho u_delta + sqrt(1 - rho^2) z)
    c_site_med = np.flatnonzero(pl.curv_site_sd > 0)
    Zc = r_size.standard_normal((K, len(c_site_med)))
    curv_site = np.zeros((K, P))
    for k, p in enumerate(c_site_med):
        rho = pl.curv_site_rho[p]
        curv_site[:, p] = pl.curv_site_sd[p] * (rho * Us[:, P + p] + np.sqrt(1.0 - rho * rho) * Zc[:, k])

    # person level
    site = np.repeat(np.arange(K), sizes)
    U = _lin(pl.F_person, r_person.standard_normal((N, Dp)))
    e = r_assign.standard_normal(N)
    key = pl.sel_strength * U[:, pl.sel_index] + e
    arm = np.empty(N, np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    share = np.empty(K)
    for s in range(K):
        block = slice(starts[s], starts[s + 1])
        if pl.complete:
            order = np.argsort(key[block])
            labels = np.repeat(np.arange(arms), counts[s])
            a = np.empty(sizes[s], np.int64)
            a[order] = labels
        else:
            a = (key[block][:, None] > pl.thresholds[s][None, :]).sum(axis=1)
        arm[block] = a
        share[s] = np.count_nonzero(a > 0) / sizes[s]
    n_bin = int(binary.sum())
    per = 2 if arms > 2 else 1
    B = r_binary.random((N, n_bin * per))
    Zpath = r_path.standard_normal((N, R))
    c_person_med = list(np.flatnonzero(pl.curv_person_sd > 0))
    Vc = r_size.standard_normal((N, len(c_person_med)))  # per site after its path normals: one block per site

    M = np.empty((N, P))
    effect = np.empty((N, P))
    compliance = np.empty((N, P))
    ptype = np.full((N, P), -1, np.int64)
    change = np.empty((N, P))
    change_top = np.empty((N, P))
    control = arm == 0
    sh = share[site]
    y = pl.out_mean + base_y[site] + pl.out_sd * U[:, Dp - 1]
    b_col = 0
    path_col = 0
    for p in range(P):
        d_eff = site_params[site, P + p] + pl.eff_sd[p] * U[:, P + p]
        g = pl.dose[p]
        if binary[p]:
            v = B[:, b_col]
            w = B[:, b_col + 1] if arms > 2 else np.full(N, 0.5)
            b_col += per
            complier = U[:, p] > -site_params[site, p]
            upper = U[:, 2 * P + p] > pl.bin_q[p]
            ty = np.where(complier, 0, np.where(upper, np.where(v < pl.bin_defier[p], 3, 1), 2))
            ptype[:, p] = ty
            d_eff = d_eff + pl.effect_shift[p][ty]
            frac = g[arm] / g[-1]
            m0 = ((ty == 1) | (ty == 3)).astype(float)
            mt = np.where(ty == 0, (frac >= w).astype(float), np.where(ty == 3, (frac < w).astype(float), m0))
            change[:, p] = mt - m0
            change_top[:, p] = (ty == 0).astype(float) - (ty == 3).astype(float)
            m = mt
        else:
            gam = site_params[site, p] + pl.comp_sd[p] * U[:, p]
            m0 = pl.med_mean[p] + base_m[site, p] + pl.med_sd[p] * U[:, 2 * P + p]
            if pl.curv_site_sd[p] > 0 or pl.curv_person_sd[p] > 0:  # g_pi(t) = g_p(t) + t (t - 1) (c_pi - c_p)
                e = curv_site[site, p]
                if pl.curv_person_sd[p] > 0:
                    rho = pl.curv_person_rho[p]
                    v = Vc[:, c_person_med.index(p)]
                    e = e + pl.curv_person_sd[p] * (rho * U[:, P + p] + np.sqrt(1.0 - rho * rho) * v)
                change[:, p] = (g[arm] + arm * (arm - 1) * e) * gam
                change_top[:, p] = (g[-1] + (arms - 1) * (arms - 2) * e) * gam
            else:
                change[:, p] = g[arm] * gam
                change_top[:, p] = g[-1] * gam
            for r in range(R):
                if pl.path_dst[r] == p:
                    q = pl.path_src[r]
                    b = path_site[site, r] + pl.path_person_sd[r] * (
                        pl.path_rho[r] * U[:, P + p]
                        + np.sqrt(1.0 - pl.path_rho[r] * pl.path_rho[r]) * Zpath[:, path_col])
                    path_col += 1
                    change[:, p] = change[:, p] + b * change[:, q]
                    change_top[:, p] = change_top[:, p] + b * change_top[:, q]
            m = m0 + change[:, p]
        m = np.where(control, m + pl.spill_med[p] * sh, m)
        M[:, p] = m
        effect[:, p] = d_eff
        compliance[:, p] = change_top[:, p] / g[-1]
        y = y + d_eff * (m + pl.phi[p] * m * m)
    y = y + site_params[site, 2 * P] * arm
    y = np.where(control, y + pl.spill_out * sh, y)
    return _trial(sc, pl, sizes, site, arm, M, y, effect, compliance, ptype, site_params, share)
