"""Simulated limits: the large-sample limits of the estimators from simulated sites.

The population cell means mu_M(s, t) = E[M | site s, arm t] and mu_Y(s, t) are exact
functions of a site's parameters (Gaussian moment identities, truncated-normal moments
for selection, half-space moments for compliance types: :class:`_Model`); the limits
integrate them over the sites by tensor Gauss-Hermite quadrature (:func:`quadrature_moments`)
or average them over many simulated sites (:func:`site_moments`, moment-matched normals
with a fixed seed, in batches for a standard error) and solve the population normal
equations (:func:`limits`).  The
formulas are listed in :mod:`simulate.truth`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from ..dgp import binary_constants
from ..layout import Layout
from ..scenario import Scenario
from .moments import _band_moments, _expect, _Phi, _phi, _xphi

_CHUNK = 250_000
"""Sites simulated at a time (the within-cell moments of LIML use the first chunk)."""


def _site_normals(rng, K, d):
    """K rows of d standard normals, moment-matched: antithetic pairs (z, -z) of a whitened half.

    The sample mean is exactly zero, the sample covariance exactly the identity and
    every odd sample moment exactly zero, so a limit that is a polynomial of degree
    three or less in the site draws (every Gaussian scenario where the assumptions
    hold, for instance) carries no simulation error; higher moments keep theirs.
    """
    half = rng.standard_normal(((K + 1) // 2, d))
    if d:
        half -= half.mean(axis=0)
        try:
            L = np.linalg.cholesky(half.T @ half / half.shape[0])
        except np.linalg.LinAlgError:  # fewer draws than dimensions (a small last chunk): centred only
            L = None
        if L is not None:
            half = np.linalg.solve(L, half.T).T
    return np.concatenate([half, -half])[:K]


def _non_normal(Z, pl, rng, site_cols, path_cols):
    """The generator's skewed and heavy-tailed transforms of the site and path normals (``simulate.dgp``).

    Skew b: z -> sqrt(1 - b^2) z + b (z^2 - 1) / sqrt 2 for the site vector's and the paths'
    normals; heavy tails 1/nu: the loaded values are scaled by sqrt((nu - 2) / chi2_nu), returned
    (None without).  The moment matching of :func:`_site_normals` is then no longer exact, so these
    limits carry simulation error at every order.
    """
    Z = Z.copy()
    b = pl.site_skew
    if b != 0.0:
        a = math.sqrt(1.0 - b * b)
        for cols in (site_cols, path_cols):
            z = Z[:, cols]
            Z[:, cols] = a * z + b * (z * z - 1.0) / math.sqrt(2.0)
    t_scale = None
    if pl.site_df > 0.0:
        t_scale = np.sqrt((pl.site_df - 2.0) / rng.chisquare(pl.site_df, Z.shape[0]))
    return Z, t_scale


def _sites(sc: Scenario, pl, rng, K):
    """Site parameters for K simulated sites (same transformation as the generator)."""
    L = Layout.of(sc)
    site_cols, path_cols, base_cols = L.truth_site_columns
    Z = _site_normals(rng, K, L.truth_site_draws)
    t_scale = None
    if pl.site_skew != 0.0 or pl.site_df > 0.0:  # a site distribution beyond the normal (as the generator's)
        Z, t_scale = _non_normal(Z, pl, rng, site_cols, path_cols)
    U = Z[:, site_cols] @ pl.F_site.T
    if t_scale is not None:
        U = U * t_scale[:, None]
    return _site_params(sc, pl, U, Z[:, path_cols], Z[:, base_cols], Zsite=Z[:, site_cols], t_scale=t_scale,
                        Zcurv=Z[:, L.truth_curvature_columns])


def _site_params(sc: Scenario, pl, U, Zpath, Zbase, Zsite=None, t_scale=None, Zcurv=None):
    """Site parameters from the standardized site vector U (K, 2P + 1) and the path and baseline normals.

    Parameters
    ----------
    sc : Scenario
    pl : simulate.dgp.KernelPlan
    U : ndarray, shape (K, 2P + 1)
        The standardized site components (correlation ``sc.site_correlation``).
    Zpath, Zbase : ndarray, shapes (K, R) and (K, P)
        Independent standard normals of the path coefficients and the mediator baselines.
    Zsite : ndarray, shape (K, 2P + 1), optional
        The site vector's own normals (before its factor), needed when path coefficients are
        correlated with the site components (``KernelPlan.F_path_site``).
    t_scale : ndarray, shape (K,), optional
        The heavy-tailed sites' scale factors (None: normal sites).
    Zcurv : ndarray, shape (K, P), optional
        The site curvature normals z^c (None or no columns: the dose curves do not vary by site).

    Returns
    -------
    (gamma, delta, kappa, beta, base_m, curv)
        ``gamma`` holds the latent complier index ``a + tau u`` of a binary mediator; ``curv`` the
        site deviations of the dose curves, c_ps - c_p = sd_s (rho_s u_delta + sqrt(1 - rho_s^2) z^c)
        (zeros while they do not vary by site).
    """
    L = Layout.of(sc)
    K = U.shape[0]
    gamma = np.empty((K, L.P))
    for p in range(L.P):
        g = L.site_compliance(p)
        if sc.is_binary[p]:
            gamma[:, p] = pl.bin_a[p] + pl.bin_tau[p] * U[:, g]
        else:
            gamma[:, p] = pl.site_mean[g] + pl.site_sd[g] * U[:, g]
    eff, comp = L.site_effects, L.site_compliances
    delta = pl.site_mean[eff] + pl.site_sd[eff] * U[:, eff] + pl.nonlinear * (U[:, comp] ** 2 - 1.0)
    for e, a, b, coef, centre in zip(pl.cross_effect, pl.cross_a, pl.cross_b, pl.cross_coef, pl.cross_centre):
        delta[:, e - L.site_effect(0)] += coef * (U[:, a] * U[:, b] - centre)  # cross-mediator dependence
    kap = L.site_direct
    kappa = pl.site_mean[kap] + pl.site_sd[kap] * U[:, kap]
    C, D = pl.F_path_site, pl.F_path
    if C.any() or not np.array_equal(D, np.eye(D.shape[0])):  # path coefficients correlated with the site vector
        if Zsite is None:
            raise ValueError("path coefficients correlated with the site components need the site normals")
        beta = pl.path_mean + pl.path_site_sd * (Zsite @ C.T + Zpath @ D.T)
    else:
        beta = pl.path_mean + pl.path_site_sd * Zpath
    if t_scale is not None:
        beta = pl.path_mean + (beta - pl.path_mean) * t_scale[:, None]
    base_m = pl.med_base_sd * Zbase
    curv = np.zeros((K, L.P))
    if Zcurv is not None and Zcurv.shape[1] and np.any(pl.curv_site_sd > 0):
        rho = pl.curv_site_rho
        curv = pl.curv_site_sd * (rho * U[:, eff] + np.sqrt(1.0 - rho * rho) * Zcurv)
    return gamma, delta, kappa, beta, base_m, curv


class _Model:
    """Exact cell means of one site chunk."""

    def __init__(self, sc: Scenario, pl):
        self.sc, self.pl = sc, pl
        self.L = L = Layout.of(sc)
        self.P = L.P
        self.Dp = L.person_size
        self.R = L.n_paths
        self.D = L.extended_size
        self.Rp = np.array(sc.person_correlation)
        self.a_bin, self.tau, self.q, self.dfrac = binary_constants(sc)
        self.notes: list[str] = []

    def unit(self, j):
        e = np.zeros(self.D)
        e[j] = 1.0
        return e

    # -- the conditional Gaussian of (u, z) given the selection index ------------
    def selection(self, band):
        sc, pl = self.sc, self.pl
        xi = sc.selection_strength
        a = np.zeros(self.D)
        person, paths = self.L.person_part, self.L.path_part
        if xi != 0.0:
            a[person] = xi * self.Rp[:, pl.sel_index] / math.sqrt(1.0 + xi * xi)
        S = np.zeros((self.D, self.D))
        S[person, person] = self.Rp - np.outer(a[person], a[person])
        S[paths, paths] = np.eye(self.R)
        S[self.L.curvature_part, self.L.curvature_part] = np.eye(self.L.n_curvature_normals)
        mom = _band_moments(*band) if xi != 0.0 else np.array([1.0, 0, 0, 0, 0, 0, 0])
        return a, S, mom

    def unselected(self) -> np.ndarray:
        """The covariance of the extended person vector without selection."""
        S = np.zeros((self.D, self.D))
        S[self.L.person_part, self.L.person_part] = self.Rp
        S[self.L.path_part, self.L.path_part] = np.eye(self.R)
        S[self.L.curvature_part, self.L.curvature_part] = np.eye(self.L.n_curvature_normals)
        return S

    def u(self, j, a):
        """The standardized person component j as a form: x_j + a_j k."""
        return (0.0, self.unit(j), a[j])

    def cell(self, t, band, share, gamma, delta, kappa, beta, base_m, curv=None):
        """(E[M | s, t] (K, P), E[Y | s, t] (K,)) for arm t (``curv``: the site curvature deviations, or None)."""
        sc, pl, P, L = self.sc, self.pl, self.P, self.L
        K = gamma.shape[0]
        a, S, mom = self.selection(band)
        E = lambda *forms: _expect(list(forms), S, mom)  # noqa: E731
        control = t == 0
        binary = sc.is_binary
        mean_m = np.zeros((K, P))
        mean_y = np.full(K, pl.out_mean) + pl.out_sd * E(self.u(L.person_outcome, a)) + kappa * t
        if control:
            mean_y = mean_y + pl.spill_out * share
        elif pl.spill_out_treated != 0.0:
            mean_y = mean_y + pl.spill_out_treated * share
        mediator_monos = {}  # continuous p: M_p's monomials (for the interactions)
        for p in range(P):
            g = pl.dose[p]
            spill = self._spill(p, control, share)
            Dl = self._effect_form(p, delta, a)
            if binary[p]:
                if sc.selection_strength != 0.0:
                    self._nan("binary mediators with selection into treatment")
                    return np.full((K, P), np.nan), np.full(K, np.nan)
                frac = g[t] / g[-1]
                pc, pa, pn, pd, eC, eA, eN, eD = self._types(p, gamma[:, p], delta[:, p])
                m = frac * pc + pa + (1.0 - frac) * pd
                mean_m[:, p] = m + spill
                mean_y = (mean_y + frac * eC + eA + (1.0 - frac) * eD
                          + spill * self._mean_delta(p, delta[:, p], gamma[:, p]))
                continue
            # continuous: M = L0 + sum_r B_r change_r
            L0 = self._mediator0_form(p, t, spill, gamma, base_m, a)
            ext = []  # the paths' monomials B_r x (source's change), from continuous sources (chains expanded)
            binary_sources = []
            for r, path in enumerate(sc.paths):
                if path.target != p:
                    continue
                B = self._path_form(r, path, beta, a)
                q = path.source
                if binary[q]:
                    binary_sources.append((B, q))
                else:
                    sub = self._change_monos(q, t, gamma, beta, a, curv)
                    if sub is None:
                        self._nan("a chain of paths that starts at a binary mediator")
                        return np.full((K, P), np.nan), np.full(K, np.nan)
                    ext += [[B] + m for m in sub]
            ext += self._curved_monos(p, t, gamma, curv, a)
            mediator_monos[p] = [[L0]] + ext
            em = E(L0) + sum(E(*m) for m in ext)
            ey = E(Dl, L0) + sum(E(Dl, *m) for m in ext)
            phi = pl.phi[p]
            if phi != 0.0:
                terms = [[L0, L0]] + [[L0] + m for m in ext] * 2 + [m1 + m2 for m1 in ext for m2 in ext]
                ey = ey + phi * sum(E(Dl, *tm) for tm in terms)
            if binary_sources:
                if sc.selection_strength != 0.0 or phi != 0.0:
                    self._nan("a path from a binary mediator combined with selection or outcome curvature")
                    return np.full((K, P), np.nan), np.full(K, np.nan)
                for B, q in binary_sources:
                    frac = pl.dose[q][t] / pl.dose[q][-1]
                    c = gamma[:, q]
                    em = em + frac * (self._half(q, c, B, None, "C") - self._half(q, c, B, None, "D"))
                    ey = ey + frac * (self._half(q, c, B, Dl, "C") - self._half(q, c, B, Dl, "D"))
            mean_m[:, p] = em
            mean_y = mean_y + ey
        for p, q, theta in sc.interactions:  # Y += theta M_p M_q: E[M_p M_q | s, t] over the monomials
            if p not in mediator_monos or q not in mediator_monos or binary_sources_of(sc, p, q):
                self._nan("a mediator interaction with a binary mediator (or one fed by a binary mediator's path)")
                return np.full((K, P), np.nan), np.full(K, np.nan)
            mean_y = mean_y + theta * sum(E(*m1, *m2) for m1 in mediator_monos[p] for m2 in mediator_monos[q])
        return mean_m, mean_y

    def _spill(self, p, control, share):
        """The spillover onto mediator p in an arm: the controls' or the treated's, times the share treated."""
        pl = self.pl
        if control:
            return pl.spill_med[p] * share
        return pl.spill_med_treated[p] * share if pl.spill_med_treated[p] != 0.0 else 0.0

    def _change_monos(self, q, t, gamma, beta, a, curv=None):
        """Continuous mediator q's change from arm 0 to arm t as monomials (lists of forms), its paths included.

        g_q(t) Gamma_q (with a varying dose curve, g_qi(t) Gamma_q) + sum over the paths r into q
        of B_r times the source's change (chains expand recursively).  None when a path from a
        binary mediator feeds q (not expanded).
        """
        sc, pl = self.sc, self.pl
        monos = [[self._compliance_form(q, pl.dose[q][t], gamma, a)]] + self._curved_monos(q, t, gamma, curv, a)
        for r, path in enumerate(sc.paths):
            if path.target != q:
                continue
            if sc.is_binary[path.source]:
                return None
            sub = self._change_monos(path.source, t, gamma, beta, a, curv)
            if sub is None:
                return None
            B = self._path_form(r, path, beta, a)
            monos += [[B] + m for m in sub]
        return monos

    def second(self, t, band, share, gamma, delta, kappa, beta, base_m, curv=None):
        """E[Z Z' | s, t] for Z = (Y, M_1..M_P), shape (K, 1+P, 1+P); None where not available.

        Available for continuous mediators when every product in Y has at most three
        Gaussian factors (so Z Z' has at most six; Isserlis over the pairings).
        """
        sc, pl, P, L = self.sc, self.pl, self.P, self.L
        if any(sc.is_binary):
            self._nan("LIML/Fuller (within-cell moments) with binary mediators")
            return None
        a, S, mom = self.selection(band)
        control = t == 0
        spill_y = pl.spill_out * share if control else pl.spill_out_treated * share
        y0 = (pl.out_mean + kappa * t + spill_y, pl.out_sd * self.unit(L.person_outcome),
              pl.out_sd * a[L.person_outcome])
        m_monos = []
        y_monos = [[y0]]
        for p in range(P):
            spill = self._spill(p, control, share)
            L0 = self._mediator0_form(p, t, spill, gamma, base_m, a)
            monos = [[L0]] + self._curved_monos(p, t, gamma, curv, a)
            for r, path in enumerate(sc.paths):
                if path.target != p:
                    continue
                B = self._path_form(r, path, beta, a)
                monos += [[B] + m for m in self._change_monos(path.source, t, gamma, beta, a, curv)]
            m_monos.append(monos)
            Dl = self._effect_form(p, delta, a)
            y_monos += [[Dl] + m for m in monos]
            phi = pl.phi[p]
            if phi != 0.0:
                Dphi = (phi * Dl[0], phi * Dl[1], phi * Dl[2])
                y_monos += [[Dphi] + m1 + m2 for m1 in monos for m2 in monos]
        for p, q, theta in sc.interactions:
            y_monos += [[_scaled(m1[0], theta)] + m1[1:] + m2 for m1 in m_monos[p] for m2 in m_monos[q]]
        if max(len(m) for m in y_monos) > 3:
            self._nan("LIML/Fuller (within-cell moments) with outcome curvature, a mediator interaction or a chain "
                      "of paths on a mediator that a path feeds")
            return None
        Z = [y_monos] + m_monos
        K = gamma.shape[0]
        out = np.empty((K, 1 + P, 1 + P))
        for i in range(1 + P):
            for j in range(i, 1 + P):
                acc = sum(_expect(m1 + m2, S, mom) for m1 in Z[i] for m2 in Z[j])
                out[:, i, j] = out[:, j, i] = acc
        return out

    # -- the linear forms of the person components ---------------------------------
    def _effect_form(self, p, delta, a):
        """Delta_p = delta_p + sd(Delta_p) u^Delta_p."""
        pl, j = self.pl, self.L.person_effect(p)
        return (delta[:, p], pl.eff_sd[p] * self.unit(j), pl.eff_sd[p] * a[j])

    def _mediator0_form(self, p, t, spill, gamma, base_m, a):
        """M_p(0) + g_p(t) Gamma_p (+ spillover) of a continuous mediator, before the paths."""
        pl, L = self.pl, self.L
        g = pl.dose[p]
        jm, jg = L.person_mediator(p), L.person_compliance(p)
        return (pl.med_mean[p] + base_m[:, p] + g[t] * gamma[:, p] + spill,
                pl.med_sd[p] * self.unit(jm) + g[t] * pl.comp_sd[p] * self.unit(jg),
                pl.med_sd[p] * a[jm] + g[t] * pl.comp_sd[p] * a[jg])

    def _compliance_form(self, q, gq, gamma, a):
        """g_q(t) Gamma_q, the dose times continuous mediator q's person compliance."""
        pl, j = self.pl, self.L.person_compliance(q)
        return (gq * gamma[:, q], gq * pl.comp_sd[q] * self.unit(j), gq * pl.comp_sd[q] * a[j])

    def _curved_monos(self, p, t, gamma, curv, a):
        """The varying dose curve's term of mediator p's change at arm t: [[t (t - 1) e, Gamma_p]], or [].

        e = c_pi - c_p is the site deviation ``curv[:, p]`` plus the person part
        sd_i (rho_i u^Delta_p + sqrt(1 - rho_i^2) v^c_p), v^c_p the person curvature normal of the
        extended vector; nothing while mediator p's dose curve does not vary, or for arms 0 and 1
        (t (t - 1) = 0).
        """
        pl, L = self.pl, self.L
        if t < 2 or not (pl.curv_site_sd[p] > 0 or pl.curv_person_sd[p] > 0):
            return []
        w = float(t * (t - 1))
        K = gamma.shape[0]
        site = curv[:, p] if curv is not None else np.zeros(K)
        sd, rho = pl.curv_person_sd[p], pl.curv_person_rho[p]
        x = np.zeros(self.D)
        alpha = 0.0
        if sd > 0:
            jd = L.person_effect(p)
            x = w * sd * (rho * self.unit(jd) + math.sqrt(1.0 - rho * rho) * self.unit(L.curvature_normal(p)))
            alpha = w * sd * rho * a[jd]
        return [[(w * site, x, alpha), self._compliance_form(p, 1.0, gamma, a)]]

    def _path_form(self, r, path, beta, a):
        """B_r = beta_rs + sd_r (rho_r u^Delta_target + sqrt(1 - rho_r^2) v_r), path r's person coefficient."""
        rho = path.effect_correlation
        jd = self.L.person_effect(path.target)
        x = path.person_sd * (rho * self.unit(jd) + math.sqrt(1 - rho * rho) * self.unit(self.L.path_normal(r)))
        return (beta[:, r], x, path.person_sd * rho * a[jd])

    def _nan(self, why):
        note = f"large-sample limits not available for {why}"
        if note not in self.notes:
            self.notes.append(note)

    # -- binary mediators ------------------------------------------------------
    def _type_probs(self, p, c):
        """P(complier), P(always), P(never), P(defier) given the site latent c (K,)."""
        pc = _Phi(c)
        top = 1.0 - _Phi(self.q[p])
        pa = (1 - pc) * top * (1 - self.dfrac[p])
        pd = (1 - pc) * top * self.dfrac[p]
        pn = (1 - pc) * (1 - top)
        return pc, pa, pn, pd

    def _types(self, p, c, delta):
        """Type probabilities and E[Delta 1{type}] per type (no selection)."""
        pl, L = self.pl, self.L
        pc, pa, pn, pd = self._type_probs(p, c)
        rG = self.Rp[L.person_effect(p), L.person_compliance(p)]  # corr(u_Delta, u_Gamma)
        rM = self.Rp[L.person_effect(p), L.person_mediator(p)]  # corr(u_Delta, u_M)
        q = self.q[p]
        top = 1.0 - _Phi(q)
        phq = 0.0 if not np.isfinite(q) else float(_phi(q))
        sd = pl.eff_sd[p]
        shift = pl.effect_shift[p]
        eu_C = rG * _phi(c)  # E[u_Delta 1{u_G > -c}]
        eu_N = (1 - pc) * 0 + rG * (-_phi(c)) * (1 - top) + rM * (1 - pc) * (-phq)
        eu_up = rG * (-_phi(c)) * top + rM * (1 - pc) * phq  # E[u_Delta 1{non-complier, u_M > q}]
        eC = (delta + shift[0]) * pc + sd * eu_C
        eA = (delta + shift[1]) * pa + sd * eu_up * (1 - self.dfrac[p])
        eN = (delta + shift[2]) * pn + sd * eu_N
        eD = (delta + shift[3]) * pd + sd * eu_up * self.dfrac[p]
        return pc, pa, pn, pd, eC, eA, eN, eD

    def _mean_delta(self, p, delta, c):
        pc, pa, pn, pd, eC, eA, eN, eD = self._types(p, c, delta)
        return eC + eA + eN + eD

    def _half(self, q, c, B, X, which):
        """E[B X 1{type}] (or E[B 1{type}] with X None) for type C (complier) or D (defier) of binary q."""
        S = self.unselected()
        zG, zM = self.unit(self.L.person_compliance(q)), self.unit(self.L.person_mediator(q))
        forms = [B] if X is None else [B, X]
        # regress each form's x part on Z1 = u_Gamma_q and Z2 = u_M_q (independent unit normals)
        betas = [(f[1] @ S @ zG, f[1] @ S @ zM) for f in forms]
        if which == "C":
            P1 = _Phi(c)
            m1 = _phi(c)  # E[Z1 1{Z1 > -c}]
            m11 = P1 - _xphi(c)  # E[Z1^2 1{Z1 > -c}]
            P2, m2, m22 = 1.0, 0.0, 1.0
            w = 1.0
        else:
            qq = self.q[q]
            P1 = 1 - _Phi(c)
            m1 = -_phi(c)  # E[Z1 1{Z1 <= -c}]
            m11 = P1 - _xphi(c)  # E[Z1^2 1{Z1 <= -c}] = Phi(-c) + (-c) phi(-c)
            P2 = 1 - _Phi(qq)
            m2 = 0.0 if not np.isfinite(qq) else float(_phi(qq))
            m22 = P2 + (0.0 if not np.isfinite(qq) else qq * float(_phi(qq)))
            w = self.dfrac[q]
        if X is None:
            c1, (b1, b2) = B[0], betas[0]
            return w * (c1 * P1 * P2 + b1 * m1 * P2 + b2 * P1 * m2)
        (c1, l1, _), (c2, l2, _) = forms
        (b11, b12), (b21, b22) = betas
        resid = l1 @ S @ l2 - b11 * b21 - b12 * b22
        val = (c1 * c2 * P1 * P2 + c1 * (b21 * m1 * P2 + b22 * P1 * m2) + c2 * (b11 * m1 * P2 + b12 * P1 * m2)
               + b11 * b21 * m11 * P2 + (b11 * b22 + b12 * b21) * m1 * m2 + b12 * b22 * P1 * m22 + resid * P1 * P2)
        return w * val

def _scaled(form, c):
    """The linear form c x (c0 + l'x + alpha k)."""
    return (c * form[0], c * form[1], c * form[2])


def binary_sources_of(sc: Scenario, *mediators) -> bool:
    """Whether a path from a binary mediator feeds any of ``mediators`` (directly)."""
    return any(r.target in mediators and sc.is_binary[r.source] for r in sc.paths)


def _liml_limit(c2: float, b2: np.ndarray, A2: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, str]:
    """LIML's limit: argmin_b (1, -b) G (1, -b)' / (1, -b) W (1, -b)', and why it has none ('' if it has).

    G = [[c2, b2'], [b2, A2]] holds the between-site (instrument-projected) second moments of
    (Y, M) and W the within-cell ones, both per person.  With lambda the smallest generalized
    eigenvalue of (G, W), b = (A2 - lambda W_MM)^-1 (b2 - lambda W_MY).  With K and n_s large
    the instrument noise (K L / N) vanishes, so this is the limit of LIML and Fuller.

    The ratio tends to b'A2 b / b'W_MM b as |b| grows, so its infimum over finite b is at most
    mu, the smallest generalized eigenvalue of (A2, W_MM); by interlacing lambda <= mu.  When
    lambda < mu the minimum is attained, A2 - lambda W_MM is positive definite and b is the
    unique minimizer.  When lambda = mu (to rounding) the eigenvector of lambda has no Y
    component: the infimum lies at infinity along the eigenvector of (A2, W_MM), so LIML
    drifts off (it has no limit) and A2 - lambda W_MM is singular.  This happens, for example,
    when the site effects vary enough that the mediators' own weakest between-site direction
    fits better than any coefficient: with delta_s independent of gamma_s,
    E[(y - b'x)^2] = (b - delta)' A2 (b - delta) + sum_p Var(delta_p) E[x_p^2] and the
    pencil is block diagonal in (1, b - delta), so lambda = min(mu, that ratio at b = delta).
    A W that is not positive definite (no within-cell variation in some direction) leaves
    the ratio undefined.
    """
    from scipy import linalg

    P = len(b2)
    G = np.block([[np.array([[c2]]), b2[None, :]], [b2[:, None], A2]])
    try:
        lam = linalg.eigh(G, W, eigvals_only=True)[0]
        mu = linalg.eigh(A2, W[1:, 1:], eigvals_only=True)[0]
    except (linalg.LinAlgError, ValueError):
        return np.full(P, np.nan), ("the within-cell covariance of the outcome and the mediators is singular, "
                                    "so the LIML ratio is undefined")
    scale = max(abs(mu), abs(lam), np.finfo(float).tiny)
    if mu - lam <= 1e-9 * scale:
        return np.full(P, np.nan), ("the LIML objective has its infimum at an infinite coefficient (the "
                                    "smallest generalized eigenvalue of the between- and within-site moments "
                                    "belongs to the mediators alone)")
    return np.linalg.solve(A2 - lam * W[1:, 1:], b2 - lam * W[1:, 0]), ""


def _compliance_weighted_moments(model: _Model, gamma, delta, beta, curv=None):
    """Per site: E[Gamma_eff Delta | s] and E[Gamma_eff | s], Gamma_eff the top arm's effect per unit (mean) dose.

    With a varying dose curve Gamma_eff = g_pi(L) Gamma_p / g_p(L) (+ the paths), as the generator
    reports a person's compliance.
    """
    sc, pl, P = model.sc, model.pl, model.P
    K = gamma.shape[0]
    num = np.zeros((K, P))
    den = np.zeros((K, P))
    S = model.unselected()
    zero = np.zeros(model.D)  # no selection: every form's k part is 0
    mom = np.array([1.0, 0, 0, 0, 0, 0, 0])
    E = lambda *forms: _expect(list(forms), S, mom)  # noqa: E731
    for p in range(P):
        Dl = model._effect_form(p, delta, zero)
        if sc.is_binary[p]:
            pc, pa, pn, pd, eC, eA, eN, eD = model._types(p, gamma[:, p], delta[:, p])
            g = pl.dose[p][-1]
            num[:, p] = (eC - eD) / g
            den[:, p] = (pc - pd) / g
            continue
        G = model._compliance_form(p, 1.0, gamma, zero)
        n_ = E(Dl, G)
        d_ = E(G)
        gL = pl.dose[p][-1]
        for m in model._curved_monos(p, sc.arms - 1, gamma, curv, zero):
            n_ = n_ + E(Dl, *m) / gL
            d_ = d_ + E(*m) / gL
        for r, path in enumerate(sc.paths):
            if path.target != p:
                continue
            B = model._path_form(r, path, beta, zero)
            qs = path.source
            ratio = pl.dose[qs][-1] / gL
            if sc.is_binary[qs]:
                c = gamma[:, qs]
                n_ = n_ + ratio * (model._half(qs, c, B, Dl, "C") - model._half(qs, c, B, Dl, "D"))
                d_ = d_ + ratio * (model._half(qs, c, B, None, "C") - model._half(qs, c, B, None, "D"))
            elif any(r2.target == qs for r2 in sc.paths) or sc.curvature_varies[qs]:
                # a chain or a varying dose curve: the source's whole change at the top arm
                sub = model._change_monos(qs, sc.arms - 1, gamma, beta, zero, curv)
                if sub is None:
                    return np.full((K, P), np.nan), np.full((K, P), np.nan)
                n_ = n_ + sum(E(Dl, B, *m) for m in sub) / gL
                d_ = d_ + sum(E(B, *m) for m in sub) / gL
            else:
                Gq = model._compliance_form(qs, 1.0, gamma, zero)
                n_ = n_ + ratio * E(Dl, B, Gq)
                d_ = d_ + ratio * E(B, Gq)
        num[:, p] = n_
        den[:, p] = d_
    return num, den


@dataclass
class SiteMoments:
    """The population moments accumulated over sites (each weighted by n_s and by its site weight).

    ``A2, b2, c2``: E[n sum_t p_t x x'], E[n sum_t p_t x y], E[n sum_t p_t y^2] (2SLS);
    ``W``: the within-cell covariance of (Y, M), a weighted sum over sites (``w_ok`` False
    where not available; divide by ``w_weight``); ``Ab, bb``: the between-site moments
    through the origin; ``Ai, bi``: with an intercept; ``wald_num, wald_den``: the pooled
    Wald ratio's (P = 1); ``cw_num, cw_den``: the compliance-weighted estimand's numerator
    and denominator.  Every moment is a sum over sites of a site weight times the site's
    value: the weight is 1 for a simulated site (so ``weight`` is the number of sites) and
    the Gauss-Hermite weight of a quadrature node (so ``weight`` is 1).
    """

    P: int
    c2: float = 0.0
    w_ok: bool = True
    wald_num: float = 0.0
    wald_den: float = 0.0
    weight: float = 0.0
    w_weight: float = 0.0
    A2: np.ndarray = field(init=False)
    b2: np.ndarray = field(init=False)
    W: np.ndarray = field(init=False)
    Ab: np.ndarray = field(init=False)
    bb: np.ndarray = field(init=False)
    Ai: np.ndarray = field(init=False)
    bi: np.ndarray = field(init=False)
    cw_num: np.ndarray = field(init=False)
    cw_den: np.ndarray = field(init=False)

    def __post_init__(self):
        P = self.P
        self.A2, self.b2 = np.zeros((P, P)), np.zeros(P)
        self.W = np.zeros((1 + P, 1 + P))
        self.Ab, self.bb = np.zeros((P, P)), np.zeros(P)
        self.Ai, self.bi = np.zeros((P + 1, P + 1)), np.zeros(P + 1)  # the intercept, then the P slopes
        self.cw_num, self.cw_den = np.zeros(P), np.zeros(P)

    def __add__(self, other: SiteMoments) -> SiteMoments:
        out = SiteMoments(self.P)
        for name in ("c2", "wald_num", "wald_den", "weight", "w_weight", "A2", "b2", "W", "Ab", "bb", "Ai", "bi",
                     "cw_num", "cw_den"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.w_ok = self.w_ok and other.w_ok
        return out

    @property
    def W_mean(self) -> np.ndarray:
        """The within-cell covariance of (Y, M) per person (the weighted mean over sites)."""
        return self.W / self.w_weight if self.w_weight > 0 else np.full_like(self.W, np.nan)


def _patterns(sc: Scenario):
    """Per pattern of arm shares: its share of persons and of sites, and the mean site size."""
    shares_by_pattern: dict[tuple, float] = {}
    sites_by_pattern: dict[tuple, float] = {}
    sizes = sc.n_per_site if sc.n_per_site is not None else (
        (sc.n_per_site_range[0] + sc.n_per_site_range[1]) / 2.0,) * sc.n_sites
    for n, row in zip(sizes, sc.arm_shares):
        shares_by_pattern[row] = shares_by_pattern.get(row, 0.0) + n / sc.n_sites
        sites_by_pattern[row] = sites_by_pattern.get(row, 0.0) + 1.0 / sc.n_sites
    return shares_by_pattern, sites_by_pattern, float(np.mean(sizes))


def accumulate(model: _Model, site: tuple, wt: np.ndarray, m: SiteMoments | None = None,
               with_w: bool = True) -> SiteMoments:
    """Add the moments of a set of weighted sites to ``m`` (a new :class:`SiteMoments` when None).

    Parameters
    ----------
    model : _Model
        The scenario's exact cell means.
    site : tuple
        ``(gamma, delta, kappa, beta, base_m, curv)`` of :func:`_site_params`, K sites.
    wt : ndarray, shape (K,)
        The sites' weights (1 for simulated sites, the quadrature weights of nodes).
    m : SiteMoments, optional
    with_w : bool
        Whether to add these sites to the within-cell covariance of LIML.

    Returns
    -------
    SiteMoments
    """
    sc, P = model.sc, model.P
    if m is None:
        m = SiteMoments(P)
    shares_by_pattern, sites_by_pattern, mean_size = _patterns(sc)
    gamma, delta, kappa, beta, base_m, curv = site
    # compliance-weighted estimand from site moments (potential outcomes, no selection)
    cwn, cwd = _compliance_weighted_moments(model, gamma, delta, beta, curv)
    m.cw_num += wt @ cwn
    m.cw_den += wt @ cwd
    for row, weight in shares_by_pattern.items():
        _add_pattern(m, model, row, weight / mean_size, sites_by_pattern[row], with_w, site, wt)
    m.weight += float(wt.sum())
    if with_w:
        m.w_weight += float(wt.sum())
    return m


SE_BATCHES = 16
"""Independent batches of simulated sites whose spread gives a simulated limit's standard error."""


def site_moments(model: _Model, n_sites: int, seed: int, batches: int = 1) -> SiteMoments | list[SiteMoments]:
    """Accumulate the population moments over ``n_sites`` simulated sites.

    Parameters
    ----------
    model : _Model
        The scenario's exact cell means.
    n_sites : int
        Number of simulated sites, drawn in ``batches`` moment-matched batches (each at most
        ``_CHUNK`` sites at a time).
    seed : int
        Seed of the site simulation.
    batches : int
        With 1 (the default), the pooled moments; with more, one :class:`SiteMoments` per
        batch (their sum is the pooled moments), for a standard error from their spread.

    Returns
    -------
    SiteMoments or list of SiteMoments
    """
    sc, pl, P = model.sc, model.pl, model.P
    rng = np.random.Generator(np.random.PCG64(seed))
    sizes = [n_sites // batches + (1 if b < n_sites % batches else 0) for b in range(batches)]
    out = []
    for size in sizes:
        m = SiteMoments(P)
        done = 0
        while done < size:
            K = min(_CHUNK, size - done)
            site = _sites(sc, pl, rng, K)
            accumulate(model, site, np.ones(K), m, with_w=done == 0)
            done += K
        out.append(m)
    return out[0] if batches == 1 else out


# -- Gauss-Hermite quadrature over the site distribution ---------------------------------

QUADRATURE_MAX_NODES = 300_000
"""The largest tensor grid the truth integrates by quadrature; beyond it the sites are simulated."""

BINARY_ORDERS = (48, 80, 128)
"""Gauss-Hermite orders tried along the latent complier index of a binary mediator (not a polynomial)."""

QUADRATURE_TOLERANCE = 1e-10
"""The largest change of any limit between two binary orders for the quadrature to be accepted."""


def _gh(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the standard normal (weights sum to 1): exact to degree 2n - 1.

    Computed once per order and handed out as read-only arrays (a stress test asks for the same
    few orders hundreds of times; the eigen-solve was about a quarter of each exact point).
    """
    return _gh_cached(int(n))


@functools.lru_cache(maxsize=64)
def _gh_cached(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


def _rank_cholesky(R: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Lower-trapezoidal F (m, r) with F F' = R, r the rank of R: a Cholesky factor that drops dependent rows.

    Row i of F has non-zeros only in the columns opened by rows up to i, so the first
    components (the binary mediators' latent indices, which are not polynomials) depend only
    on the first normals.
    """
    m = R.shape[0]
    F = np.zeros((m, m))
    cols: list[int] = []
    for i in range(m):
        for c, k in enumerate(cols):
            F[i, c] = (R[i, k] - F[i, :c] @ F[k, :c]) / F[k, c]
        v = R[i, i] - F[i, :len(cols)] @ F[i, :len(cols)]
        if v > tol:
            F[i, len(cols)] = math.sqrt(v)
            cols.append(i)
    return F[:, :len(cols)]


@dataclass(frozen=True)
class QuadratureDesign:
    """Which normals the site parameters depend on, and the polynomial degree of the limits' integrands.

    ``components``: the site-vector indices that vary (binary latent indices first);
    ``factor``: (len(components), r), the rank factor of their correlation; ``n_binary``:
    the normals that the binary latent indices load on (the first ones); ``paths``, ``bases``:
    the path coefficients and mediator baselines that vary; ``degree``: a bound on the total
    degree, in the normals, of every integrand (cell means and their products), so a tensor
    Gauss-Hermite rule of order ``degree // 2 + 1`` along each polynomial normal is exact.
    """

    components: tuple[int, ...]
    factor: np.ndarray
    n_binary: int
    paths: tuple[int, ...]
    bases: tuple[int, ...]
    degree: int
    curvatures: tuple[int, ...] = ()  # the mediators whose dose curve varies by site (their z^c normals)

    @property
    def poly_order(self) -> int:
        """The Gauss-Hermite order along a normal on which the integrands are polynomials."""
        return self.degree // 2 + 1

    def n_nodes(self, binary_order: int) -> int:
        """Nodes of the tensor grid with ``binary_order`` along the binary normals."""
        n_poly = self.factor.shape[1] - self.n_binary + len(self.paths) + len(self.bases) + len(self.curvatures)
        return binary_order ** self.n_binary * self.poly_order ** n_poly


def quadrature_design(sc: Scenario, pl) -> QuadratureDesign:
    """The normals the limits integrate over and the degree of their integrands.

    Parameters
    ----------
    sc : Scenario
    pl : simulate.dgp.KernelPlan

    Returns
    -------
    QuadratureDesign
    """
    L = Layout.of(sc)
    binary, other = [], []
    for p in range(L.P):
        g = L.site_compliance(p)
        if sc.is_binary[p]:
            if pl.bin_tau[p] > 0:
                binary.append(g)
            elif pl.nonlinear[p] != 0:
                other.append(g)
        elif pl.site_sd[g] > 0 or pl.nonlinear[p] != 0:
            other.append(g)
    other += [L.site_effect(p) for p in range(L.P) if pl.site_sd[L.site_effect(p)] > 0]
    other += [L.site_direct] if pl.site_sd[L.site_direct] > 0 else []
    comps = binary + other
    R = np.array(sc.site_correlation, float)[np.ix_(comps, comps)]
    F = _rank_cholesky(R)
    n_bin = int(np.count_nonzero(np.any(F[:len(binary)] != 0, axis=0))) if binary else 0
    d_delta = 2 if np.any(pl.nonlinear != 0) or np.any(pl.cross_coef != 0) else 1
    # M's degree: Gamma (1), times a site path coefficient (+1), times a site curvature deviation (+1)
    d_m = 1 + (1 if np.any(pl.path_site_sd > 0) else 0) + (1 if np.any(pl.curv_site_sd > 0) else 0)
    d_y = d_delta + (2 * d_m if np.any(pl.phi != 0) or len(pl.inter_theta) else d_m)  # M^2 or M_p M_q in Y
    return QuadratureDesign(tuple(comps), F, n_bin,
                            tuple(int(r) for r in np.flatnonzero(pl.path_site_sd > 0)),
                            tuple(int(p) for p in np.flatnonzero(pl.med_base_sd > 0)), 2 * d_y,
                            tuple(int(p) for p in np.flatnonzero(pl.curv_site_sd > 0)))


def quadrature_nodes(sc: Scenario, pl, design: QuadratureDesign, binary_order: int):
    """The tensor Gauss-Hermite grid as site parameters and weights.

    Parameters
    ----------
    sc : Scenario
    pl : simulate.dgp.KernelPlan
    design : QuadratureDesign
    binary_order : int
        The order along the normals of the binary latent indices.

    Returns
    -------
    (site, weights)
        ``site`` as :func:`_site_params` returns it, one row per node; ``weights`` sum to 1.
    """
    L = Layout.of(sc)
    r = design.factor.shape[1]
    orders = [binary_order] * design.n_binary + [design.poly_order] * (r - design.n_binary + len(design.paths)
                                                                      + len(design.bases) + len(design.curvatures))
    rules = [_gh(n) for n in orders]
    if rules:
        X = np.stack([g.ravel() for g in np.meshgrid(*[x for x, _ in rules], indexing="ij")], axis=1)
        wt = np.ones(X.shape[0])
        for g in np.meshgrid(*[w for _, w in rules], indexing="ij"):
            wt = wt * g.ravel()
    else:
        X, wt = np.zeros((1, 0)), np.ones(1)
    K = X.shape[0]
    U = np.zeros((K, L.site_size))
    U[:, list(design.components)] = X[:, :r] @ design.factor.T
    Zpath = np.zeros((K, L.n_paths))
    Zpath[:, list(design.paths)] = X[:, r:r + len(design.paths)]
    Zbase = np.zeros((K, L.P))
    at = r + len(design.paths)
    Zbase[:, list(design.bases)] = X[:, at:at + len(design.bases)]
    Zcurv = np.zeros((K, L.P))
    Zcurv[:, list(design.curvatures)] = X[:, at + len(design.bases):]
    return _site_params(sc, pl, U, Zpath, Zbase, Zcurv=Zcurv), wt


def quadrature_moments(model: _Model, design: QuadratureDesign, binary_order: int) -> SiteMoments:
    """The population moments integrated over the site distribution by tensor Gauss-Hermite quadrature.

    Parameters
    ----------
    model : _Model
    design : QuadratureDesign
    binary_order : int

    Returns
    -------
    SiteMoments
        With ``weight`` 1 (the weights sum to 1).
    """
    site, wt = quadrature_nodes(model.sc, model.pl, design, binary_order)
    m = SiteMoments(model.P)
    for lo in range(0, len(wt), _CHUNK):
        chunk = tuple(a[lo:lo + _CHUNK] for a in site)
        accumulate(model, chunk, wt[lo:lo + _CHUNK], m)
    return m


def _add_pattern(m: SiteMoments, model: _Model, row, w, frac, with_w, site, wt):
    """Add one pattern of arm shares' sites (person weight ``w`` = n_s, site share ``frac``, site weights ``wt``)."""
    P, arms = model.P, model.sc.arms
    gamma = site[0]
    K = gamma.shape[0]
    p_arm = np.array(row)
    cum = np.concatenate([[0.0], np.cumsum(p_arm)])
    bands = [(special.ndtri(cum[t]) if t > 0 else -np.inf, special.ndtri(cum[t + 1]) if t < arms - 1 else np.inf)
             for t in range(arms)]
    share = 1.0 - p_arm[0]
    mM = np.empty((K, arms, P))
    mY = np.empty((K, arms))
    for t in range(arms):
        mM[:, t], mY[:, t] = model.cell(t, bands[t], share, *site)
    xbar = np.einsum("t,ktp->kp", p_arm, mM)
    ybar = mY @ p_arm
    x = mM - xbar[:, None, :]
    y = mY - ybar[:, None]
    m.A2 += w * np.einsum("k,t,ktp,ktq->pq", wt, p_arm, x, x)
    m.b2 += w * np.einsum("k,t,ktp,kt->p", wt, p_arm, x, y)
    m.c2 += w * np.einsum("k,t,kt,kt->", wt, p_arm, y, y)
    if with_w and m.w_ok:  # within-cell covariance of (Y, M) for LIML
        for t in range(arms):
            second = model.second(t, bands[t], share, *site)
            if second is None:
                m.w_ok = False
                break
            mu = np.concatenate([mY[:, t, None], mM[:, t]], axis=1)
            m.W += w * p_arm[t] * np.einsum("k,kij->ij", wt, second - mu[:, :, None] * mu[:, None, :])
    itt_m = (mM[:, 1:] - mM[:, :1]).reshape(-1, P)
    itt_y = (mY[:, 1:] - mY[:, :1]).reshape(-1)
    wr = frac * np.repeat(wt, arms - 1)
    m.Ab += (itt_m * wr[:, None]).T @ itt_m
    m.bb += (itt_m * wr[:, None]).T @ itt_y
    Xi = np.column_stack([np.tile(np.arange(1, arms, dtype=float), K), itt_m])  # T's value: kappa_s t
    m.Ai += (Xi * wr[:, None]).T @ Xi
    m.bi += (Xi * wr[:, None]).T @ itt_y
    if P == 1:
        tv = np.arange(arms, dtype=float)
        tc = tv - p_arm @ tv
        m.wald_num += w * wt @ (mY @ (p_arm * tc))
        m.wald_den += w * wt @ (mM[:, :, 0] @ (p_arm * tc))


@dataclass(frozen=True)
class Limits:
    """The estimators' large-sample limits (arrays of length P; ``between_intercept`` has the intercept first)."""

    tsls: np.ndarray
    heterogeneity: float
    liml: np.ndarray
    between_ols: np.ndarray
    between_intercept: np.ndarray
    wald: tuple


def limits(model: _Model, m: SiteMoments, n_sites: int | None = None) -> Limits:
    """Solve the population normal equations; a singular system gives NaN and a note in ``model.notes``.

    Parameters
    ----------
    model : _Model
    m : SiteMoments
        From :func:`site_moments`.
    n_sites : int, optional
        Unused (the moments carry their total site weight); kept for old callers.

    Returns
    -------
    Limits
    """
    P = model.P

    def solve(A, b, what):
        if not np.all(np.isfinite(A)) or not np.all(np.isfinite(b)):
            return np.full(len(b), np.nan)
        if np.linalg.cond(A) > 1e10:  # rank failure (assumption viii): no limit exists
            model.notes.append(f"{what}: the population moment matrix is singular (assumption viii, rank); "
                               "the estimator has no large-sample limit")
            return np.full(len(b), np.nan)
        return np.linalg.solve(A, b)

    A2, b2, c2 = m.A2, m.b2, m.c2
    lim2 = solve(A2, b2, "2SLS")
    # E[n sum_t p_t (y - x'b)^2] at the 2SLS limit, relative to E[n sum_t p_t y^2]: zero when the
    # between-site relation is exact, and then every k-class estimator (LIML, Fuller) shares the limit
    hetero = float((c2 - 2 * lim2 @ b2 + lim2 @ A2 @ lim2) / c2) if c2 > 0 else math.nan
    if np.isfinite(hetero) and abs(hetero) < 1e-9:
        lim_liml = lim2
    elif m.w_ok and np.all(np.isfinite(lim2)) and np.all(np.isfinite(m.W_mean)):
        lim_liml, why = _liml_limit(c2 / m.weight, b2 / m.weight, A2 / m.weight, m.W_mean)
        if why:
            model.notes.append(f"LIML/Fuller: {why}; the estimator has no large-sample limit")
    else:
        lim_liml = np.full(P, np.nan)
    limb = solve(m.Ab, m.bb, "between-site OLS")
    limi = solve(m.Ai, m.bi, "between-site regression with intercept")
    wald = (m.wald_num / m.wald_den,) if P == 1 and m.wald_den != 0 else (math.nan,) * P
    return Limits(lim2, hetero, lim_liml, limb, limi, wald)
