r"""Truth: what each replication is compared with.

For a scenario, per mediator p:

``ate``
    The population average effect of M_p on Y, E[Delta_p], persons weighted
    equally.  Closed form: E[delta_p] + sum_type pi_type shift_type (the nonlinear
    dependence term has mean zero).
``late`` (binary mediators)
    E[Delta_p | complier].  With c_s = a + tau u_s (u_s the standardized site
    compliance), s = sqrt(1 + tau^2), b = a / s (so Phi(b) = pi_c)::

        LATE = delta + [sd(delta) r (tau/s) phi(b) - lambda sd(delta)/sqrt(2) (tau^2/s^2) b phi(b)
                        + sd(Delta) rho phi(b) / s] / pi_c

    with r = corr(gamma, delta) between sites and rho = corr(Gamma, Delta) within,
    from E[Phi(a + tau u)] = Phi(b), E[u Phi(a + tau u)] = (tau/s) phi(b),
    E[u^2 Phi(a + tau u)] = Phi(b) - (tau^2/s^2) b phi(b), E[phi(a + tau u)] = phi(b)/s.
``compliance_weighted``
    E[Gamma_p Delta_p] / E[Gamma_p] (the single-site IV estimand delta + Cov(Gamma,
    Delta) / gamma, pooled over sites).  Continuous mediator without paths::

        delta + [r sd(gamma) sd(delta) + rho sd(Gamma) sd(Delta)] / gamma

    Binary: (E[Delta 1{complier}] - E[Delta 1{defier}]) / (pi_c - pi_d).  With paths,
    Gamma is the total effect of the top arm per unit dose; computed from site moments.
``limit_*``
    Large-sample limits (K and n_s both large) of the estimators, computed from the
    population cell means mu_M(s, t) = E[M | site s, arm t] and mu_Y(s, t), which
    are exact functions of the site parameters (Gaussian moment identities,
    truncated-normal moments for selection, half-space moments for compliance
    types), averaged over ``n_sites`` simulated sites (1,000,000 by default, drawn
    without persons, fixed seed).  With shares p_st and site size n_s, let
    x_st = mu_M(s,t) - sum_t' p_st' mu_M(s,t') and y_st likewise; then

    - 2SLS with site fixed effects and site-by-arm instruments:
      (E[n sum_t p_t x x'])^-1 E[n sum_t p_t x y];
    - between-site regression through the origin (unweighted) of the site ITT on Y
      on the site ITT on M (each arm against control): (E[pi pi'])^-1 E[pi rho];
    - the same with an intercept (slopes; ``limit_between_intercept_constant`` is the
      intercept, the mean direct effect; with several arms the regressor is T's value t,
      since the direct effect enters as kappa_s t);
    - the pooled Wald estimator (P = 1): E[n Cov_s(T, Y)] / E[n Cov_s(T, M)];
    - LIML and Fuller: argmin_b (1,-b) G (1,-b)' / (1,-b) W (1,-b)', G the between-site
      moments above and W the within-cell covariance of (Y, M) (exact Gaussian moments,
      first 250,000 sites); it equals the 2SLS limit when the between-site relation is
      exact and differs under heterogeneity.  UJIVE and the bias-corrected 2SLS share the
      2SLS limit (their corrections vanish as n_s grows).

    Identification bias is limit minus the target; the estimator's finite-sample
    bias is its Monte Carlo mean minus the limit.  Where no exact cell mean is
    implemented (binary mediators with selection; outcome curvature on a mediator
    that a binary mediator's path feeds) the limits are NaN and ``notes`` says why.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from .dgp import binary_constants, plan
from .scenario import Scenario

__all__ = ["Truth", "truth", "TRUTH_SEED", "TRUTH_SITES"]

TRUTH_SEED = 20130401  # the founding paper's year and month; any fixed value would do
TRUTH_SITES = 1_000_000
_CHUNK = 250_000

_phi = lambda x: np.exp(-0.5 * np.square(x)) / math.sqrt(2 * math.pi)  # noqa: E731
_Phi = special.ndtr


def _xphi(x):
    """x phi(x), which is 0 at x = +-inf (a complier share of 1 puts the cut at infinity)."""
    x = np.asarray(x, float)
    out = np.zeros_like(x)
    f = np.isfinite(x)
    out[f] = x[f] * _phi(x[f])
    return out if out.ndim else float(out)


@dataclass(frozen=True)
class Truth:
    """The truth of a scenario, per mediator (tuples of length P)."""

    mediators: tuple[str, ...]
    ate: tuple[float, ...]
    late: tuple[float, ...]
    compliance_weighted: tuple[float, ...]
    limit_2sls: tuple[float, ...]
    limit_between_ols: tuple[float, ...]
    limit_between_intercept: tuple[float, ...]
    limit_between_intercept_constant: float
    limit_wald: tuple[float, ...]
    limit_liml: tuple[float, ...]
    between_site_heterogeneity: float
    n_sites_simulated: int
    notes: tuple[str, ...] = field(default=())

    def to_records(self) -> list[dict]:
        rows = []
        for p, name in enumerate(self.mediators):
            rows.append({
                "mediator": name,
                "ate": self.ate[p],
                "late": self.late[p],
                "compliance_weighted": self.compliance_weighted[p],
                "limit_2sls": self.limit_2sls[p],
                "limit_between_ols": self.limit_between_ols[p],
                "limit_between_intercept": self.limit_between_intercept[p],
                "limit_wald": self.limit_wald[p],
                "limit_liml": self.limit_liml[p],
            })
        return rows

    def to_dict(self) -> dict:
        return {"mediators": self.to_records(),
                "limit_between_intercept_constant": self.limit_between_intercept_constant,
                "between_site_heterogeneity": self.between_site_heterogeneity,
                "n_sites_simulated": self.n_sites_simulated, "notes": list(self.notes)}


# ---------------------------------------------------------------------------
# Gaussian moment engine
# ---------------------------------------------------------------------------
# A linear form is (c, l, alpha): c + l'x + alpha k, where x ~ N(0, S) and k (the
# standardized selection index, restricted to an arm's band) is independent of x
# with raw moments mom[j].  E[prod_i form_i] expands over the choice, for each
# factor, of its constant, its x part or its k part; x parts pair up (Isserlis).


def _hafnian(C: np.ndarray, idx: list[int]) -> float:
    if not idx:
        return 1.0
    if len(idx) % 2:
        return 0.0
    first, rest = idx[0], idx[1:]
    total = 0.0
    for j, other in enumerate(rest):
        c = C[first, other]
        if c != 0.0:
            total += c * _hafnian(C, rest[:j] + rest[j + 1:])
    return total


def _expect(forms, S: np.ndarray, mom: np.ndarray):
    n = len(forms)
    L = np.array([f[1] for f in forms])
    C = L @ S @ L.T
    total = 0.0
    for assign in itertools.product((0, 1, 2), repeat=n):
        xs = [i for i in range(n) if assign[i] == 1]
        if len(xs) % 2:
            continue
        ks = [i for i in range(n) if assign[i] == 2]
        coef = mom[len(ks)]
        for i in ks:
            coef *= forms[i][2]
        if coef == 0.0:
            continue
        h = _hafnian(C, xs)
        if h == 0.0:
            continue
        term = coef * h
        for i in range(n):
            if assign[i] == 0:
                term = term * forms[i][0]
        total = total + term
    return total


def _band_moments(lo: float, hi: float, order: int = 6) -> np.ndarray:
    """E[k^j | lo < k < hi] for a standard normal k, j = 0..order (recursion on truncated moments)."""
    P = _Phi(hi) - _Phi(lo)
    f = lambda x: 0.0 if not np.isfinite(x) else float(_phi(x))  # noqa: E731
    pw = lambda x, j: 0.0 if not np.isfinite(x) else x ** j  # noqa: E731
    m = np.zeros(order + 1)
    m[0] = P
    if order >= 1:
        m[1] = f(lo) - f(hi)
    for j in range(2, order + 1):
        m[j] = (j - 1) * m[j - 2] + pw(lo, j - 1) * f(lo) - pw(hi, j - 1) * f(hi)
    return m / P


# ---------------------------------------------------------------------------
# Site simulation
# ---------------------------------------------------------------------------


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


def _sites(sc: Scenario, pl, rng, K):
    """Site parameters for K simulated sites (same transformation as the generator)."""
    P = sc.n_mediators
    Ds = 2 * P + 1
    R = len(sc.paths)
    Z = _site_normals(rng, K, Ds + R + P)
    U = Z[:, :Ds] @ pl.F_site.T
    gamma = np.empty((K, P))
    for p in range(P):
        if sc.is_binary[p]:
            gamma[:, p] = pl.bin_a[p] + pl.bin_tau[p] * U[:, p]
        else:
            gamma[:, p] = pl.site_mean[p] + pl.site_sd[p] * U[:, p]
    delta = pl.site_mean[P:2 * P] + pl.site_sd[P:2 * P] * U[:, P:2 * P] + pl.nonlinear * (U[:, :P] ** 2 - 1.0)
    kappa = pl.site_mean[2 * P] + pl.site_sd[2 * P] * U[:, 2 * P]
    beta = pl.path_mean + pl.path_site_sd * Z[:, Ds:Ds + R]
    base_m = pl.med_base_sd * Z[:, Ds + R:]
    return gamma, delta, kappa, beta, base_m


class _Model:
    """Exact cell means of one site chunk."""

    def __init__(self, sc: Scenario, pl):
        self.sc, self.pl = sc, pl
        P = sc.n_mediators
        self.P = P
        self.Dp = 3 * P + 1
        self.R = len(sc.paths)
        self.D = self.Dp + self.R
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
        if xi != 0.0:
            a[: self.Dp] = xi * self.Rp[:, pl.sel_index] / math.sqrt(1.0 + xi * xi)
        S = np.zeros((self.D, self.D))
        S[: self.Dp, : self.Dp] = self.Rp - np.outer(a[: self.Dp], a[: self.Dp])
        S[self.Dp:, self.Dp:] = np.eye(self.R)
        mom = _band_moments(*band) if xi != 0.0 else np.array([1.0, 0, 0, 0, 0, 0, 0])
        return a, S, mom

    def u(self, j, a):
        """The standardized person component j as a form: x_j + a_j k."""
        return (0.0, self.unit(j), a[j])

    def cell(self, t, band, share, gamma, delta, kappa, beta, base_m):
        """(E[M | s, t] (K, P), E[Y | s, t] (K,)) for arm t."""
        sc, pl, P = self.sc, self.pl, self.P
        K = gamma.shape[0]
        a, S, mom = self.selection(band)
        E = lambda *forms: _expect(list(forms), S, mom)  # noqa: E731
        control = t == 0
        binary = sc.is_binary
        mean_m = np.zeros((K, P))
        mean_y = np.full(K, pl.out_mean) + pl.out_sd * E(self.u(3 * P, a)) + kappa * t
        if control:
            mean_y = mean_y + pl.spill_out * share
        for p in range(P):
            g = pl.dose[p]
            spill = pl.spill_med[p] * share if control else 0.0
            Dl = (delta[:, p], pl.eff_sd[p] * self.unit(P + p), pl.eff_sd[p] * a[P + p])
            if binary[p]:
                if sc.selection_strength != 0.0:
                    self._nan("binary mediators with selection into treatment")
                    return np.full((K, P), np.nan), np.full(K, np.nan)
                frac = g[t] / g[-1]
                pc, pa, pn, pd, eC, eA, eN, eD = self._types(p, gamma[:, p], delta[:, p])
                m = frac * pc + pa + (1.0 - frac) * pd
                mean_m[:, p] = m + spill
                mean_y = mean_y + frac * eC + eA + (1.0 - frac) * eD + spill * self._mean_delta(p, delta[:, p], gamma[:, p])
                continue
            # continuous: M = L0 + sum_r B_r change_r
            L0 = (pl.med_mean[p] + base_m[:, p] + g[t] * gamma[:, p] + spill,
                  pl.med_sd[p] * self.unit(2 * P + p) + g[t] * pl.comp_sd[p] * self.unit(p),
                  pl.med_sd[p] * a[2 * P + p] + g[t] * pl.comp_sd[p] * a[p])
            products = []  # (B form, change form) pairs from continuous sources
            binary_sources = []
            for r, path in enumerate(sc.paths):
                if path.target != p:
                    continue
                rho = path.effect_correlation
                B = (beta[:, r], path.person_sd * (rho * self.unit(P + p) + math.sqrt(1 - rho * rho) * self.unit(self.Dp + r)),
                     path.person_sd * rho * a[P + p])
                q = path.source
                if binary[q]:
                    binary_sources.append((B, q))
                else:
                    gq = pl.dose[q][t]
                    G = (gq * gamma[:, q], gq * pl.comp_sd[q] * self.unit(q), gq * pl.comp_sd[q] * a[q])
                    products.append((B, G))
            em = E(L0) + sum(E(B, G) for B, G in products)
            ey = E(Dl, L0) + sum(E(Dl, B, G) for B, G in products)
            phi = pl.phi[p]
            if phi != 0.0:
                terms = [[L0, L0]] + [[L0, B, G] for B, G in products] * 2 + \
                        [[B1, G1, B2, G2] for B1, G1 in products for B2, G2 in products]
                ey = ey + phi * sum(E(Dl, *tm) for tm in terms)
            if binary_sources:
                if sc.selection_strength != 0.0 or phi != 0.0:
                    self._nan("a path from a binary mediator combined with selection or outcome curvature")
                    return np.full((K, P), np.nan), np.full(K, np.nan)
                for B, q in binary_sources:
                    frac = pl.dose[q][t] / pl.dose[q][-1]
                    em = em + frac * (self._half(q, gamma[:, q], B, None, "C") - self._half(q, gamma[:, q], B, None, "D"))
                    ey = ey + frac * (self._half(q, gamma[:, q], B, Dl, "C") - self._half(q, gamma[:, q], B, Dl, "D"))
            mean_m[:, p] = em
            mean_y = mean_y + ey
        return mean_m, mean_y

    def second(self, t, band, share, gamma, delta, kappa, beta, base_m):
        """E[Z Z' | s, t] for Z = (Y, M_1..M_P), shape (K, 1+P, 1+P); None where not available.

        Available for continuous mediators when every product in Y has at most three
        Gaussian factors (so Z Z' has at most six; Isserlis over the pairings).
        """
        sc, pl, P = self.sc, self.pl, self.P
        if any(sc.is_binary):
            self._nan("LIML/Fuller (within-cell moments) with binary mediators")
            return None
        a, S, mom = self.selection(band)
        control = t == 0
        y0 = (pl.out_mean + kappa * t + (pl.spill_out * share if control else 0.0),
              pl.out_sd * self.unit(3 * P), pl.out_sd * a[3 * P])
        m_monos = []
        y_monos = [[y0]]
        for p in range(P):
            g = pl.dose[p]
            spill = pl.spill_med[p] * share if control else 0.0
            L0 = (pl.med_mean[p] + base_m[:, p] + g[t] * gamma[:, p] + spill,
                  pl.med_sd[p] * self.unit(2 * P + p) + g[t] * pl.comp_sd[p] * self.unit(p),
                  pl.med_sd[p] * a[2 * P + p] + g[t] * pl.comp_sd[p] * a[p])
            monos = [[L0]]
            for r, path in enumerate(sc.paths):
                if path.target != p:
                    continue
                rho = path.effect_correlation
                B = (beta[:, r], path.person_sd * (rho * self.unit(P + p) + math.sqrt(1 - rho * rho)
                                                   * self.unit(self.Dp + r)), path.person_sd * rho * a[P + p])
                gq = pl.dose[path.source][t]
                q = path.source
                monos.append([B, (gq * gamma[:, q], gq * pl.comp_sd[q] * self.unit(q), gq * pl.comp_sd[q] * a[q])])
            m_monos.append(monos)
            Dl = (delta[:, p], pl.eff_sd[p] * self.unit(P + p), pl.eff_sd[p] * a[P + p])
            y_monos += [[Dl] + m for m in monos]
            phi = pl.phi[p]
            if phi != 0.0:
                Dphi = (phi * Dl[0], phi * Dl[1], phi * Dl[2])
                y_monos += [[Dphi] + m1 + m2 for m1 in monos for m2 in monos]
        if max(len(m) for m in y_monos) > 3:
            self._nan("LIML/Fuller (within-cell moments) with outcome curvature on a mediator that a path feeds")
            return None
        Z = [y_monos] + m_monos
        K = gamma.shape[0]
        out = np.empty((K, 1 + P, 1 + P))
        for i in range(1 + P):
            for j in range(i, 1 + P):
                acc = sum(_expect(m1 + m2, S, mom) for m1 in Z[i] for m2 in Z[j])
                out[:, i, j] = out[:, j, i] = acc
        return out

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
        pl, P = self.pl, self.P
        pc, pa, pn, pd = self._type_probs(p, c)
        rG = self.Rp[P + p, p]  # corr(u_Delta, u_Gamma)
        rM = self.Rp[P + p, 2 * P + p]  # corr(u_Delta, u_M)
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
        P = self.P
        S = np.zeros((self.D, self.D))
        S[: self.Dp, : self.Dp] = self.Rp
        S[self.Dp:, self.Dp:] = np.eye(self.R)
        zG, zM = self.unit(q), self.unit(2 * P + q)
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


def truth(sc: Scenario, n_sites: int = TRUTH_SITES, seed: int = TRUTH_SEED) -> Truth:
    """The truth of a scenario: population estimands and large-sample limits.

    Parameters
    ----------
    sc : Scenario
    n_sites : int
        Number of simulated sites for the site-level moments (default 1,000,000).
    seed : int
        Seed of the site simulation (fixed, so the truth is a pure function of the scenario).
    """
    pl = plan(sc)
    P = sc.n_mediators
    model = _Model(sc, pl)
    tau, q, dfrac = model.tau, model.q, model.dfrac
    Rs = np.array(sc.site_correlation)
    Rp = model.Rp

    # closed forms
    ate, late, cw_closed = [], [], []
    for p in range(P):
        mean_delta = pl.site_mean[P + p]
        if sc.is_binary[p]:
            pc, pa, pn, pd = sc.complier_share[p], sc.always_share[p], sc.never_share[p], sc.defier_share[p]
            shift = pl.effect_shift[p]
            ate.append(mean_delta + pa * shift[1] + pn * shift[2] + pd * shift[3])
            s = math.sqrt(1 + tau[p] ** 2)
            b = special.ndtri(pc)
            r = Rs[p, P + p]
            rho = Rp[p, P + p]
            sd_d = pl.site_sd[P + p]
            nl = pl.nonlinear[p]
            ph = float(_phi(b))
            curve = nl * (tau[p] ** 2 / s ** 2) * b * ph if np.isfinite(b) else 0.0  # b phi(b) -> 0 as pi_c -> 1
            dc = mean_delta * pc + sd_d * r * (tau[p] / s) * ph - curve  # E[delta Phi(c)]
            e_c = dc + pl.eff_sd[p] * rho * ph / s  # E[Delta 1{complier}]
            late.append(e_c / pc)
            top = 1.0 - _Phi(q[p])
            phq = float(_phi(q[p])) if np.isfinite(q[p]) else 0.0
            rM = Rp[P + p, 2 * P + p]
            e_d = (dfrac[p] * top * (mean_delta - dc) + pd * shift[3]
                   + pl.eff_sd[p] * dfrac[p] * (-rho * top * ph / s + rM * (1 - pc) * phq))  # E[Delta 1{defier}]
            cw_closed.append((e_c - e_d) / (pc - pd))
        else:
            ate.append(mean_delta)
            late.append(math.nan)
        if not sc.is_binary[p]:
            cov = Rs[p, P + p] * pl.site_sd[p] * pl.site_sd[P + p] + Rp[p, P + p] * pl.comp_sd[p] * pl.eff_sd[p]
            cw_closed.append(mean_delta + cov / pl.site_mean[p] if pl.site_mean[p] != 0 else math.nan)

    # site-level moments
    shares_by_pattern: dict[tuple, float] = {}
    sites_by_pattern: dict[tuple, float] = {}
    sizes = sc.n_per_site if sc.n_per_site is not None else (
        (sc.n_per_site_range[0] + sc.n_per_site_range[1]) / 2.0,) * sc.n_sites
    for n, row in zip(sizes, sc.arm_shares):
        shares_by_pattern[row] = shares_by_pattern.get(row, 0.0) + n / sc.n_sites
        sites_by_pattern[row] = sites_by_pattern.get(row, 0.0) + 1.0 / sc.n_sites
    mean_size = float(np.mean(sizes))
    arms = sc.arms
    rng = np.random.Generator(np.random.PCG64(seed))
    A2 = np.zeros((P, P)); b2 = np.zeros(P); c2 = 0.0
    W = np.zeros((1 + P, 1 + P)); w_ok = True  # within-cell moments, first chunk
    Ab = np.zeros((P, P)); bb = np.zeros(P)
    Ai = np.zeros((P + 1, P + 1)); bi = np.zeros(P + 1)
    wald_num = wald_den = 0.0
    cw_num = np.zeros(P); cw_den = np.zeros(P)
    done = 0
    while done < n_sites:
        K = min(_CHUNK, n_sites - done)
        gamma, delta, kappa, beta, base_m = _sites(sc, pl, rng, K)
        # compliance-weighted estimand from site moments (potential outcomes, no selection)
        cwn, cwd = _compliance_weighted_moments(model, gamma, delta, beta)
        cw_num += cwn.sum(axis=0); cw_den += cwd.sum(axis=0)
        for row, weight in shares_by_pattern.items():
            p_arm = np.array(row)
            cum = np.concatenate([[0.0], np.cumsum(p_arm)])
            bands = [(special.ndtri(cum[t]) if t > 0 else -np.inf, special.ndtri(cum[t + 1]) if t < arms - 1 else np.inf)
                     for t in range(arms)]
            share = 1.0 - p_arm[0]
            mM = np.empty((K, arms, P)); mY = np.empty((K, arms))
            for t in range(arms):
                mM[:, t], mY[:, t] = model.cell(t, bands[t], share, gamma, delta, kappa, beta, base_m)
            xbar = np.einsum("t,ktp->kp", p_arm, mM)
            ybar = mY @ p_arm
            x = mM - xbar[:, None, :]
            y = mY - ybar[:, None]
            w = weight / mean_size  # relative weight n_s of this pattern
            A2 += w * np.einsum("t,ktp,ktq->pq", p_arm, x, x)
            b2 += w * np.einsum("t,ktp,kt->p", p_arm, x, y)
            c2 += w * np.einsum("t,kt,kt->", p_arm, y, y)
            if done == 0 and w_ok:  # within-cell covariance of (Y, M) for LIML: the first chunk of sites
                for t in range(arms):
                    second = model.second(t, bands[t], share, gamma, delta, kappa, beta, base_m)
                    if second is None:
                        w_ok = False
                        break
                    mu = np.concatenate([mY[:, t, None], mM[:, t]], axis=1)
                    W += w * p_arm[t] * (second - mu[:, :, None] * mu[:, None, :]).mean(axis=0)
            itt_m = (mM[:, 1:] - mM[:, :1]).reshape(-1, P)
            itt_y = (mY[:, 1:] - mY[:, :1]).reshape(-1)
            frac = sites_by_pattern[row]
            Ab += frac * itt_m.T @ itt_m
            bb += frac * itt_m.T @ itt_y
            Xi = np.column_stack([np.tile(np.arange(1, arms, dtype=float), K), itt_m])  # T's value: kappa_s t
            Ai += frac * Xi.T @ Xi
            bi += frac * Xi.T @ itt_y
            if P == 1:
                tv = np.arange(arms, dtype=float)
                tc = tv - p_arm @ tv
                wald_num += w * np.sum((p_arm * tc) @ mY.T)
                wald_den += w * np.sum((p_arm * tc) @ mM[:, :, 0].T)
        done += K

    def solve(A, b, what):
        if not np.all(np.isfinite(A)) or not np.all(np.isfinite(b)):
            return np.full(len(b), np.nan)
        if np.linalg.cond(A) > 1e10:  # rank failure (assumption viii): no limit exists
            model.notes.append(f"{what}: the population moment matrix is singular (assumption viii, rank); "
                               "the estimator has no large-sample limit")
            return np.full(len(b), np.nan)
        return np.linalg.solve(A, b)

    lim2 = solve(A2, b2, "2SLS")
    # E[n sum_t p_t (y - x'b)^2] at the 2SLS limit, relative to E[n sum_t p_t y^2]: zero when the
    # between-site relation is exact, and then every k-class estimator (LIML, Fuller) shares the limit
    hetero = float((c2 - 2 * lim2 @ b2 + lim2 @ A2 @ lim2) / c2) if c2 > 0 else math.nan
    if np.isfinite(hetero) and abs(hetero) < 1e-9:
        lim_liml = lim2
    elif w_ok and np.all(np.isfinite(lim2)) and np.all(np.isfinite(W)):
        lim_liml, why = _liml_limit(c2 / n_sites, b2 / n_sites, A2 / n_sites, W)
        if why:
            model.notes.append(f"LIML/Fuller: {why}; the estimator has no large-sample limit")
    else:
        lim_liml = np.full(P, np.nan)
    limb = solve(Ab, bb, "between-site OLS")
    limi = solve(Ai, bi, "between-site regression with intercept")
    wald = (wald_num / wald_den,) if P == 1 and wald_den != 0 else (math.nan,) * P
    cw = []
    for p in range(P):
        if not any(r.target == p for r in sc.paths) and not sc.is_binary[p] and pl.site_mean[p] == 0:
            value = math.nan  # E[Gamma_p] = 0: no person's mediator moves on average
        elif not math.isnan(cw_closed[p]) and not any(r.target == p for r in sc.paths):
            value = float(cw_closed[p])
        elif abs(cw_den[p]) > 1e-12 * n_sites:
            value = float(cw_num[p] / cw_den[p])
        else:
            value = math.nan
        if math.isnan(value):
            model.notes.append(f"compliance-weighted estimand of {sc.mediator_names[p]}: undefined, since the mean "
                               "effect of treatment on the mediator (its denominator) is zero")
        cw.append(value)
    cw = tuple(cw)
    return Truth(
        mediators=sc.mediator_names,
        ate=tuple(float(x) for x in ate),
        late=tuple(float(x) for x in late),
        compliance_weighted=cw,
        limit_2sls=tuple(float(x) for x in lim2),
        limit_between_ols=tuple(float(x) for x in limb),
        limit_between_intercept=tuple(float(x) for x in limi[1:]),
        limit_between_intercept_constant=float(limi[0]),
        limit_wald=tuple(float(x) for x in wald),
        limit_liml=tuple(float(x) for x in lim_liml),
        between_site_heterogeneity=hetero,
        n_sites_simulated=n_sites,
        notes=tuple(model.notes),
    )


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


def _compliance_weighted_moments(model: _Model, gamma, delta, beta):
    """Per site: E[Gamma_eff Delta | s] and E[Gamma_eff | s], Gamma_eff the top arm's effect per unit dose."""
    sc, pl, P = model.sc, model.pl, model.P
    K = gamma.shape[0]
    num = np.zeros((K, P)); den = np.zeros((K, P))
    S = np.zeros((model.D, model.D))
    S[: model.Dp, : model.Dp] = model.Rp
    S[model.Dp:, model.Dp:] = np.eye(model.R)
    mom = np.array([1.0, 0, 0, 0, 0, 0, 0])
    E = lambda *forms: _expect(list(forms), S, mom)  # noqa: E731
    for p in range(P):
        Dl = (delta[:, p], pl.eff_sd[p] * model.unit(P + p), 0.0)
        if sc.is_binary[p]:
            pc, pa, pn, pd, eC, eA, eN, eD = model._types(p, gamma[:, p], delta[:, p])
            g = pl.dose[p][-1]
            num[:, p] = (eC - eD) / g
            den[:, p] = (pc - pd) / g
            continue
        G = (gamma[:, p], pl.comp_sd[p] * model.unit(p), 0.0)
        n_ = E(Dl, G)
        d_ = E(G)
        gL = pl.dose[p][-1]
        for r, path in enumerate(sc.paths):
            if path.target != p:
                continue
            rho = path.effect_correlation
            B = (beta[:, r], path.person_sd * (rho * model.unit(P + p) + math.sqrt(1 - rho * rho) * model.unit(model.Dp + r)), 0.0)
            qs = path.source
            ratio = pl.dose[qs][-1] / gL
            if sc.is_binary[qs]:
                n_ = n_ + ratio * (model._half(qs, gamma[:, qs], B, Dl, "C") - model._half(qs, gamma[:, qs], B, Dl, "D"))
                d_ = d_ + ratio * (model._half(qs, gamma[:, qs], B, None, "C") - model._half(qs, gamma[:, qs], B, None, "D"))
            else:
                Gq = (gamma[:, qs], pl.comp_sd[qs] * model.unit(qs), 0.0)
                n_ = n_ + ratio * E(Dl, B, Gq)
                d_ = d_ + ratio * E(B, Gq)
        num[:, p] = n_
        den[:, p] = d_
    return num, den


LIMIT_OF: dict[str, str | None] = {
    "ols": None,
    "2sls": "limit_2sls",
    "liml": "limit_liml",
    "fuller": "limit_liml",
    "ujive": "limit_2sls",  # the jackknife correction vanishes as n_s grows
    "bias_corrected_2sls": "limit_2sls",  # kappa = 1 + KL/(n - KA) -> 1 as n_s grows
    "between_ols": "limit_between_ols",
    "between_precision": None,
    "between_intercept": "limit_between_intercept",
    "wald": "limit_wald",
}
"""Which large-sample limit each estimator tends to (None: not computed)."""


def targets(tr: Truth, sc: Scenario) -> dict[tuple[str, str], dict[str, float]]:
    """Per (estimator, mediator): the population targets and the estimator's limit.

    Keys of each value: ``ate``, ``late`` (NaN for continuous mediators), ``compliance_weighted``
    and ``limit``.  The between-site intercept row (mediator ``direct_effect``) targets
    E[kappa], the mean direct effect of one unit of T.
    """
    out = {}
    P = sc.n_mediators
    for est, lim in LIMIT_OF.items():
        if est == "wald" and P != 1:
            continue
        for p, name in enumerate(sc.mediator_names):
            out[(est, name)] = {
                "ate": tr.ate[p],
                "late": tr.late[p],
                "compliance_weighted": tr.compliance_weighted[p],
                "limit": getattr(tr, lim)[p] if lim else math.nan,
            }
    out[("between_intercept", "direct_effect")] = {
        "ate": float(sc.site_mean[2 * P]), "late": math.nan, "compliance_weighted": math.nan,
        "limit": tr.limit_between_intercept_constant}
    return out
