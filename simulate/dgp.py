"""The data-generating process: one replication's persons for any scenario.

Model (notation of Reardon & Raudenbush 2013; SPEC.md)
------------------------------------------------------
Sites s = 1..K are drawn afresh in each replication.  A standard normal vector
z_s of the site components (compliance_1..P, effect_1..P, direct_effect) is
correlated by the site correlation matrix R_site = F F' (u_s = F z_s), then

    gamma_ps = E[gamma_p] + sd(gamma_p) u_ps                          (continuous M_p)
    delta_ps = E[delta_p] + sd(delta_p) u_(P+p)s
               + lambda_p sd(delta_p) (u_ps^2 - 1) / sqrt(2)           (nonlinear dependence)
               + sum_terms lambda sd(delta_p) (u_qs u_rs - R_qr) / sqrt(1 + R_qr^2)
                                           (cross-mediator dependence, [site.cross_dependence])
    kappa_s  = E[kappa] + sd(kappa) u_(2P+1)s

Persons i in site s carry a standard normal vector u_i of (compliance_1..P,
effect_1..P, mediator_1..P, outcome) with the within-site correlation R_person:

    Gamma_pi = gamma_ps + sd(Gamma_p) u^Gamma_pi,   Delta_pi = delta_ps + sd(Delta_p) u^Delta_pi
    M_pi(0)  = E[M_p(0)] + b_ps + sd(M_p) u^M_pi,   Y_i(0) = E[Y(0)] + b_s + sd(Y) u^Y_i
    M_pi     = M_pi(0) + g_p(T_i) Gamma_pi + sum_{paths r -> p} B_ri (M_ri(T_i) - M_ri(0))
               [+ spillover_p * share treated in site, for controls; treated_spillover_p * share, treated]
    Y_i      = Y_i(0) + sum_p Delta_pi h_p(M_pi) + sum_{p<q} theta_pq M_pi M_qi + kappa_s T_i
               [+ spillover * share treated, controls; treated_spillover * share, treated]

Paths may chain (1 -> 2 -> 3): M_ri(T_i) - M_ri(0) is the source's whole change, its own
paths included.  A path's site coefficient beta_rs is a component of the site vector
(``path_<from>_<to>``), so it may correlate with compliances, effects or the direct effect.

with g_p(t) = t + c_p t (t - 1) and h_p(m) = m + phi_p m^2.

Dose curves that vary by site and person (assumption iii, continuous mediators, 3+ arms):
person i's curvature is c_pi = c_p + c_ps + c_pi', with the site part
c_ps = sd_s (rho_s u_(P+p)s + sqrt(1 - rho_s^2) z^c_ps) (u_(P+p)s the site's standardized
effect delta_p, as loaded) and the person part c_pi' = sd_i (rho_i u^Delta_pi + sqrt(1 - rho_i^2)
v^c_pi), and g_pi(t) = g_p(t) + t (t - 1) (c_pi - c_p) replaces g_p(t) in M_pi.  The compliance
reported per person stays per unit of the mean dose g_p(L).  A curvature independent of
everything else changes no estimand (E[g_pi(L) Gamma Delta] = g_p(L) E[Gamma Delta]) and, when
the site effects are independent of the compliances, no limit: only its correlation with
Delta_p (rho_i) or delta_p (rho_s) moves them.

Binary mediators (the LATE case): the site's complier share is Phi(c_ps) with
c_ps = a_p + tau_p u_ps, a_p = Phi^-1(pi_c) sqrt(1 + tau_p^2) (so E[share] = pi_c).
Person i is a complier when u^Gamma_pi > -c_ps; a non-complier with u^M_pi > q_p
(q_p = Phi^-1(1 - (pi_a + pi_d) / (1 - pi_c))) is a defier with probability
pi_d / (pi_a + pi_d) (an independent uniform v), otherwise an always-taker; the rest
are never-takers.  Under arm t a complier takes the mediator when
g_p(t) / g_p(L) >= w_i, a defier when g_p(t) / g_p(L) < w_i (w_i uniform, drawn only
with 3+ arms).  Delta_pi = delta_ps + sd(Delta_p) u^Delta_pi + shift(type).

Assignment: key_i = xi * u^sel_i + e_i, e_i ~ N(0, 1), where u^sel is Y(0)'s
standardized error or Gamma_p's (selection, assumption vi; xi = 0 is pure
randomization).  Complete randomization treats the persons with the largest keys,
so each site gets its exact arm counts (largest-remainder rounding of n_s times
the arm shares); Bernoulli assignment compares the key with the normal quantiles
of the cumulative arm shares, scaled by sqrt(1 + xi^2).

Canonical draw order
--------------------
Replication seed -> ``SeedSequence`` -> 24 words -> six xoshiro256++ streams (ziggurat
normals and 53-bit uniforms inside the kernel, :mod:`simulate.kernels.rng_nb`), each
used in one fixed order, so that adding a feature never moves another feature's numbers:

0. sizes: per site ``min + floor(u (max - min + 1))`` when site sizes are a range; then the
   site curvature normals z^c (site by site, the mediators with a site curvature SD), then, per
   site after its path normals, the person curvature normals v^c (person by person, the
   mediators with a person curvature SD); none while the dose curves do not vary;
1. site: per site, 2P+1 correlated normals then P+1 baseline normals;
2. person: per person (sites in order), 3P+1 normals;
3. assignment: per person, one normal e_i;
4. binary: per person, per binary mediator, v (and w with 3+ arms);
5. paths: K x R site normals, then per person per path (paths ordered by target).
   A path coefficient correlated with the site vector (``[site.correlations]`` naming
   ``path_<from>_<to>``) is C z_site + D z_path (:func:`path_factor`): the same draws,
   combined; without such a correlation the path normal is used as drawn.

Site distributions beyond the normal (``site.skew`` b, ``site.heavy_tails`` 1/nu; both 0 by
default, and then nothing below is drawn or computed): each of a site's 2P+1 site-vector
normals and R path normals z becomes sqrt(1 - b^2) z + b (z^2 - 1) / sqrt 2 (skewed, mean 0,
variance 1) before the loadings; with heavy tails the loaded site vector and path coefficients
are multiplied by sqrt((nu - 2) / W), W = 2 Gamma(nu / 2) drawn on stream 1 after the site's
normals (a multivariate t with the same covariance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import special

from .kernels.dgp_nb import draw_trial
from .layout import Layout
from .scenario import Scenario, arm_counts

__all__ = ["Trial", "draw", "streams", "KernelPlan", "Plan", "plan", "cell_counts"]

N_STREAMS = 6


@dataclass(frozen=True)
class Trial:
    """One replication's data.

    Person-level arrays are sorted by site.  ``effect`` is Delta_pi and
    ``compliance`` the person's effect of the top arm on M_p per unit dose,
    (M_pi(L) - M_pi(0)) / g_p(L) (with paths: the total effect).
    """

    site: np.ndarray  # (n,) int64, 0..K-1
    treatment: np.ndarray  # (n,) int64, arm 0..L
    mediators: np.ndarray  # (n, P)
    outcome: np.ndarray  # (n,)
    effect: np.ndarray  # (n, P) Delta_pi
    compliance: np.ndarray  # (n, P)
    complier_type: np.ndarray  # (n, P) 0 complier 1 always 2 never 3 defier, -1 continuous
    n_per_site: np.ndarray  # (K,)
    arm_counts: np.ndarray  # (K, arms)
    site_compliance: np.ndarray  # (K, P) gamma_ps
    site_effect: np.ndarray  # (K, P) delta_ps (the Gaussian part; type shifts excluded)
    site_direct_effect: np.ndarray  # (K,) kappa_s
    share_treated: np.ndarray  # (K,) realised share in a non-control arm

    @property
    def n_sites(self) -> int:
        """The number of sites K."""
        return len(self.n_per_site)

    def sample_estimands(self) -> dict[str, np.ndarray]:
        """This replication's estimands, per mediator.

        ``ate``: mean of Delta_p over the persons drawn; ``compliance_weighted``:
        sum_i Gamma_pi Delta_pi / sum_i Gamma_pi; ``late``: mean Delta_p over the
        compliers drawn (NaN for continuous mediators).
        """
        ate = self.effect.mean(axis=0)
        cw = (self.compliance * self.effect).sum(axis=0) / self.compliance.sum(axis=0)
        late = np.full(self.effect.shape[1], np.nan)
        for p in range(self.effect.shape[1]):
            c = self.complier_type[:, p] == 0
            if c.any() and (self.complier_type[:, p] >= 0).all():
                late[p] = self.effect[c, p].mean()
        return {"ate": ate, "compliance_weighted": cw, "late": late}


def streams(seed) -> np.ndarray:
    """The (6, 4) uint64 xoshiro256++ states of a replication's six streams.

    ``seed`` is an int or a ``SeedSequence``; the 24 words come from one
    ``generate_state`` call, so the states are a pure function of the seed.
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return _states_from_words(ss.generate_state(4 * N_STREAMS, np.uint64))


def _states_from_words(words: np.ndarray) -> np.ndarray:
    st = words.reshape(N_STREAMS, 4).copy()
    for i in range(N_STREAMS):
        if not st[i].any():  # the all-zero state is a fixed point of xoshiro
            st[i, 0] = np.uint64(1)
    return st


def psd_factor(R: np.ndarray) -> np.ndarray:
    """F with F F' = R: Cholesky, or a symmetric square root when R is singular."""
    try:
        return np.linalg.cholesky(R)
    except np.linalg.LinAlgError:
        lam, V = np.linalg.eigh(R)
        return V * np.sqrt(np.clip(lam, 0.0, None))


class KernelPlan(NamedTuple):
    """The scenario's constants in kernel form (everything that does not depend on the seed).

    One named tuple, passed whole to the Numba kernels (``simulate.kernels.dgp_nb``,
    ``simulate.kernels.replicate_nb``), which read ``plan.field``.  The ``*_at`` fields are
    the offsets of the blocks of the site and person vectors, from :class:`simulate.layout.Layout`,
    so that the kernels do not re-derive the ordering.  Built by :func:`plan`.
    """

    F_site: np.ndarray  # (2P+1, 2P+1) factor of the site correlation
    site_mean: np.ndarray  # (2P+1,) means of the site components
    site_sd: np.ndarray  # (2P+1,)
    nonlinear: np.ndarray  # (P,) lambda_p sd(delta_p) / sqrt(2)
    cross_effect: np.ndarray  # (T,) int64: the site-effect index each cross-mediator term adds to
    cross_a: np.ndarray  # (T,) int64: the site-compliance indices of the term's two factors
    cross_b: np.ndarray  # (T,) int64
    cross_coef: np.ndarray  # (T,) lambda sd(delta_p) / sqrt(1 + r^2)
    cross_centre: np.ndarray  # (T,) r = corr(z_a, z_b), the product's mean
    binary: np.ndarray  # (P,) bool
    bin_a: np.ndarray  # (P,) a_p, the mean latent complier threshold
    bin_tau: np.ndarray  # (P,) tau_p, its between-site sd
    bin_q: np.ndarray  # (P,) q_p, the M(0) = 1 cut of the non-compliers
    bin_defier: np.ndarray  # (P,) defier fraction of the M(0) = 1 non-compliers
    med_base_sd: np.ndarray  # (P,)
    out_base_sd: float
    F_person: np.ndarray  # (3P+1, 3P+1) factor of the within-site correlation
    med_mean: np.ndarray  # (P,)
    med_sd: np.ndarray  # (P,)
    out_mean: float
    out_sd: float
    comp_sd: np.ndarray  # (P,) sd(Gamma_p)
    eff_sd: np.ndarray  # (P,) sd(Delta_p)
    effect_shift: np.ndarray  # (P, 4) effect shift per complier type
    dose: np.ndarray  # (P, arms)
    phi: np.ndarray  # (P,) outcome curvature
    sel_strength: float
    sel_index: int  # the person component that selection acts on
    path_src: np.ndarray  # (R,) int64
    path_dst: np.ndarray  # (R,) int64
    path_mean: np.ndarray  # (R,)
    path_site_sd: np.ndarray  # (R,)
    path_person_sd: np.ndarray  # (R,)
    path_rho: np.ndarray  # (R,)
    F_path_site: np.ndarray  # (R, 2P+1) loadings of the path coefficients on the site vector's normals
    F_path: np.ndarray  # (R, R) loadings of the path coefficients on their own normals (identity if uncorrelated)
    site_df: float  # nu of the multivariate t site distribution (0: normal)
    site_skew: float  # b of the skewed site distribution (0: normal)
    spill_out: float
    spill_med: np.ndarray  # (P,)
    spill_out_treated: float  # spillover onto the treated's Y per unit share treated
    spill_med_treated: np.ndarray  # (P,) onto the treated's M_p
    inter_first: np.ndarray  # (I,) int64, mediator interactions in Y: Y += theta M_first M_second
    inter_second: np.ndarray  # (I,) int64
    inter_theta: np.ndarray  # (I,)
    curv_site_sd: np.ndarray  # (P,) SD of the site curvature c_ps (assumption iii; 0: one dose curve)
    curv_site_rho: np.ndarray  # (P,) its loading on the standardized site effect u_delta
    curv_person_sd: np.ndarray  # (P,) SD of the person curvature within site
    curv_person_rho: np.ndarray  # (P,) its loading on u^Delta
    shares: np.ndarray  # (K, arms)
    complete: bool
    thresholds: np.ndarray  # (K, arms - 1), Bernoulli only
    size_lo: int  # a range of site sizes (size_hi > 0), or fixed sizes
    size_hi: int
    fixed_sizes: np.ndarray  # (K,) int64
    site_effect_at: int  # Layout.site_effect(0)
    site_direct_at: int  # Layout.site_direct
    person_effect_at: int  # Layout.person_effect(0)
    person_mediator_at: int  # Layout.person_mediator(0)
    person_outcome_at: int  # Layout.person_outcome
    baseline_at: int  # Layout.site_baseline_mediator(0): the first baseline among a site's draws
    baseline_outcome_at: int  # Layout.site_baseline_outcome
    site_draws: int  # Layout.site_draws: normals per site on stream 1

    def kernel(self) -> KernelPlan:
        """The plan as the kernels take it (itself; kept for callers of the former ``Plan.kernel()``)."""
        return self


Plan = KernelPlan
"""The former name of :class:`KernelPlan` (a dataclass whose ``kernel()`` built a positional tuple)."""


def binary_constants(sc: Scenario):
    """a_p, tau_p, q_p and the defier fraction of M(0) = 1 non-compliers, per mediator."""
    P = sc.n_mediators
    a = np.zeros(P)
    tau = np.array(sc.complier_share_site_sd, float)
    q = np.zeros(P)
    d = np.zeros(P)
    for p in range(P):
        if not sc.is_binary[p]:
            continue
        pc, pa, pd = sc.complier_share[p], sc.always_share[p], sc.defier_share[p]
        a[p] = special.ndtri(pc) * np.sqrt(1.0 + tau[p] ** 2) if pc < 1 else np.inf
        rest = 1.0 - pc
        top = (pa + pd) / rest if rest > 0 else 0.0
        q[p] = special.ndtri(1.0 - top) if 0 < top < 1 else (np.inf if top <= 0 else -np.inf)
        d[p] = pd / (pa + pd) if pa + pd > 0 else 0.0
    return a, tau, q, d


def cross_dependence_plan(sc: Scenario) -> dict:
    """The ``cross_*`` fields of the plan: one entry per cross-mediator term (assumption ix).

    A term (p, q, r, lambda) of ``sc.cross_dependence`` adds
    lambda sd(delta_p) (u_q u_r - R_qr) / sqrt(1 + R_qr^2) to delta_p, u the standardized site
    compliances and R_qr their correlation (1 when q = r: (u_q^2 - 1) / sqrt(2)); the term has
    mean 0 and SD lambda sd(delta_p) and draws no random number.

    Parameters
    ----------
    sc : Scenario

    Returns
    -------
    dict
        ``cross_effect``, ``cross_a``, ``cross_b`` (int64) and ``cross_coef``, ``cross_centre``.
    """
    L = Layout.of(sc)
    terms = getattr(sc, "cross_dependence", ())
    R = np.array(sc.site_correlation, float)
    sd = np.array(sc.site_sd, float)
    a = np.array([L.site_compliance(q) for _, q, _, _ in terms], np.int64)
    b = np.array([L.site_compliance(r) for _, _, r, _ in terms], np.int64)
    centre = np.array([R[i, j] for i, j in zip(a, b)], float)
    coef = np.array([lam * sd[L.site_effect(p)] for p, _, _, lam in terms], float) / np.sqrt(1.0 + centre ** 2)
    return {"cross_effect": np.array([L.site_effect(p) for p, _, _, _ in terms], np.int64), "cross_a": a,
            "cross_b": b, "cross_coef": coef, "cross_centre": centre}


def path_factor(sc: Scenario, F_site: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows (C, D) of the extended site factor that give the path coefficients' normals.

    The extended site vector (site components, then the R path coefficients, :mod:`simulate.layout`)
    has the correlation [[R_ss, R_sp'], [R_sp, R_pp]] (``sc.site_path_correlation``).  With
    F_site F_site' = R_ss, the block factor [[F_site, 0], [C, D]] has C = R_sp (F_site')^+ and
    D D' = R_pp - C C' (the Schur complement), so the site components keep their loadings and
    path r's standardized coefficient is C_r z_site + D_r z_path.  Without a path correlation
    C = 0 and D = I exactly, and the path normals are used as they are drawn.

    Parameters
    ----------
    sc : Scenario
    F_site : numpy.ndarray
        The factor of the site correlation, (2P+1, 2P+1).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        C (R, 2P+1) and D (R, R).
    """
    R = len(sc.paths)
    Ds = F_site.shape[0]
    C = np.zeros((R, Ds))
    D = np.eye(R)
    if R == 0 or not sc.site_path_correlation:
        return C, D
    Rx = np.array(sc.site_path_correlation, float)
    Rsp, Rpp = Rx[Ds:, :Ds], Rx[Ds:, Ds:]
    if not Rsp.any() and np.array_equal(Rpp, np.eye(R)):
        return C, D
    C = Rsp @ np.linalg.pinv(F_site).T
    return C, psd_factor(Rpp - C @ C.T)


def plan(sc: Scenario) -> KernelPlan:
    """Kernel constants of a scenario.

    Parameters
    ----------
    sc : Scenario

    Returns
    -------
    KernelPlan
    """
    P = sc.n_mediators
    L = Layout.of(sc)
    site_mean = np.array(sc.site_mean, float)
    site_sd = np.array(sc.site_sd, float)
    lam = np.array(sc.nonlinear_dependence, float)
    a, tau, q, d = binary_constants(sc)
    dose = np.array([sc.dose(p) for p in range(P)])
    if sc.selection_on == "outcome":
        sel_index = L.person_outcome
    else:
        sel_index = L.person_compliance(sc.selection_mediator)
    paths = sc.paths
    shares = np.array(sc.arm_shares, float)
    xi = sc.selection_strength
    cum = np.cumsum(shares, axis=1)[:, :-1]
    thresholds = special.ndtri(np.clip(cum, 0, 1)) * np.sqrt(1.0 + xi * xi)
    F_site = psd_factor(np.array(sc.site_correlation, float))
    F_path_site, F_path = path_factor(sc, F_site)
    return KernelPlan(
        F_site=F_site,
        site_mean=site_mean, site_sd=site_sd,
        nonlinear=lam * site_sd[L.site_effects] / np.sqrt(2.0),
        **cross_dependence_plan(sc),
        binary=np.array(sc.is_binary, np.bool_), bin_a=a, bin_tau=tau, bin_q=q, bin_defier=d,
        med_base_sd=np.array(sc.mediator_baseline_sd, float), out_base_sd=float(sc.outcome_baseline_sd),
        F_person=psd_factor(np.array(sc.person_correlation, float)),
        med_mean=np.array(sc.mediator_mean, float), med_sd=np.array(sc.mediator_sd, float),
        out_mean=float(sc.outcome_mean), out_sd=float(sc.outcome_sd),
        comp_sd=np.array(sc.compliance_sd, float), eff_sd=np.array(sc.effect_sd, float),
        effect_shift=np.array(sc.effect_shift, float), dose=dose,
        phi=np.array(sc.outcome_curvature, float),
        sel_strength=float(xi), sel_index=int(sel_index),
        path_src=np.array([r.source for r in paths], np.int64),
        path_dst=np.array([r.target for r in paths], np.int64),
        path_mean=np.array([r.mean for r in paths], float),
        path_site_sd=np.array([r.site_sd for r in paths], float),
        path_person_sd=np.array([r.person_sd for r in paths], float),
        path_rho=np.array([r.effect_correlation for r in paths], float),
        F_path_site=F_path_site, F_path=F_path,
        site_df=1.0 / sc.site_heavy_tails if sc.site_heavy_tails > 0 else 0.0, site_skew=float(sc.site_skew),
        spill_out=float(sc.spillover_outcome), spill_med=np.array(sc.spillover_mediator, float),
        spill_out_treated=float(sc.spillover_treated_outcome),
        spill_med_treated=np.array(sc.spillover_treated_mediator or (0.0,) * P, float),
        inter_first=np.array([ia[0] for ia in sc.interactions], np.int64),
        inter_second=np.array([ia[1] for ia in sc.interactions], np.int64),
        inter_theta=np.array([ia[2] for ia in sc.interactions], float),
        **_curvature_plan(sc),
        shares=shares, complete=sc.assignment == "complete", thresholds=thresholds,
        size_lo=int(sc.n_per_site_range[0]) if sc.n_per_site_range else 0,
        size_hi=int(sc.n_per_site_range[1]) if sc.n_per_site_range else 0,
        fixed_sizes=np.array(sc.n_per_site if sc.n_per_site else [0] * sc.n_sites, np.int64),
        site_effect_at=L.site_effect(0), site_direct_at=L.site_direct, person_effect_at=L.person_effect(0),
        person_mediator_at=L.person_mediator(0), person_outcome_at=L.person_outcome,
        baseline_at=L.site_baseline_mediator(0), baseline_outcome_at=L.site_baseline_outcome,
        site_draws=L.site_draws,
    )


def _curvature_plan(sc: Scenario) -> dict:
    """The ``curv_*`` fields of the plan: zeros while the dose curves do not vary (assumption iii)."""
    P = sc.n_mediators
    zero = (0.0,) * P
    return {"curv_site_sd": np.array(sc.curvature_site_sd or zero, float),
            "curv_site_rho": np.array(sc.curvature_site_effect_correlation or zero, float),
            "curv_person_sd": np.array(sc.curvature_person_sd or zero, float),
            "curv_person_rho": np.array(sc.curvature_effect_correlation or zero, float)}


def cell_counts(sizes: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Exact arm counts per site (complete randomization)."""
    return np.array([arm_counts(int(n), row) for n, row in zip(sizes, shares)], np.int64)


def draw(sc: Scenario, seed, pl: KernelPlan | None = None) -> Trial:
    """Draw one replication of a scenario.

    Parameters
    ----------
    sc : Scenario
    seed : int or numpy.random.SeedSequence
        The replication's seed; the data are a pure function of (scenario, seed).
    pl : KernelPlan, optional
        Precomputed :func:`plan` (saves work when drawing many replications).

    Returns
    -------
    Trial
    """
    pl = plan(sc) if pl is None else pl
    sizes, counts, *out = draw_trial(streams(seed), pl)
    return _trial(sc, pl, sizes, *out)


def _trial(sc, pl, sizes, site, arm, M, Y, effect, compliance, ptype, site_params, share_treated) -> Trial:
    L = Layout.of(sc)
    K = sc.n_sites
    realised = np.zeros((K, sc.arms), np.int64)
    np.add.at(realised, (site, arm), 1)
    gamma = site_params[:, L.site_compliances].copy()
    for p in range(L.P):
        if sc.is_binary[p]:
            pc = special.ndtr(site_params[:, L.site_compliance(p)])
            pd = (1.0 - pc) * sc.defier_share[p] / (1.0 - sc.complier_share[p]) if sc.complier_share[p] < 1 else 0.0
            gamma[:, p] = (pc - pd) / pl.dose[p, -1]
    return Trial(site=site, treatment=arm, mediators=M, outcome=Y, effect=effect, compliance=compliance,
                 complier_type=ptype, n_per_site=sizes, arm_counts=realised, site_compliance=gamma,
                 site_effect=site_params[:, L.site_effects].copy(),
                 site_direct_effect=site_params[:, L.site_direct].copy(),
                 share_treated=share_treated)
