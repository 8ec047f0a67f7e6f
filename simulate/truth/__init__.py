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
``late_site_mean`` (binary mediators; :mod:`simulate.truth.site_late`)
    The mean of the site LATEs E_s[E[Delta_p | complier, s]], every site counted once
    (the paper's delta_cp), while ``late`` counts every complier once.  They differ when
    assumption ix fails, and the model breaks ix by itself when compliers are selected on
    gains (rho != 0) and complier shares vary across sites (tau > 0).
``compliance_weighted``
    E[Gamma_p Delta_p] / E[Gamma_p] (the single-site IV estimand delta + Cov(Gamma,
    Delta) / gamma, pooled over sites).  Continuous mediator without paths::

        delta + [r sd(gamma) sd(delta) + rho sd(Gamma) sd(Delta)] / gamma

    Binary: (E[Delta 1{complier}] - E[Delta 1{defier}]) / (pi_c - pi_d).  With paths,
    Gamma is the total effect of the top arm per unit dose; computed from site moments.
    With a dose curve that varies by site and person (c_i = c + c_s + c_i', assumption iii),
    Gamma is g_i(L) Gamma_i / g(L), the top arm's effect per unit of the mean dose, also from
    the site moments: E[g_i(L) Gamma Delta] / E[g_i(L) Gamma], which equals the one-curve value
    unless the curvature correlates with Delta (or delta) or with Gamma (or gamma).  An
    independent curvature therefore changes no estimand, and no limit while the site effects are
    independent of the compliances; the cell means carry it as one more monomial,
    t (t - 1) (c_i - c) Gamma_i, integrated like the paths' (exact by quadrature).
``limit_*``
    Large-sample limits (K and n_s both large) of the estimators, computed from the
    population cell means mu_M(s, t) = E[M | site s, arm t] and mu_Y(s, t), which
    are exact functions of the site parameters (Gaussian moment identities,
    truncated-normal moments for selection, half-space moments for compliance
    types), integrated over the site distribution by tensor Gauss-Hermite quadrature
    (exact where the integrands are polynomials in the site normals, every continuous
    Gaussian scenario; to 1e-10 along a binary mediator's latent complier index), or,
    where the grid would be too large, averaged over ``n_sites`` simulated sites
    (1,000,000 by default, fixed seed) with each limit's simulation SE stored beside it
    (``limit_*_se``; 0 for quadrature).  With shares p_st and site size n_s, let
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
      integrated like the rest); it equals the 2SLS limit when the between-site relation is
      exact and differs under heterogeneity.  UJIVE and MBTSLS share the
      2SLS limit (their corrections vanish as n_s grows).

    Identification bias is limit minus the target (MCSE: the limit's SE); the
    estimator's finite-sample bias is its Monte Carlo mean minus the limit (MCSE:
    s / sqrt(n) and the limit's SE in quadrature).  Where no exact cell mean is
    implemented (binary mediators with selection; outcome curvature on a mediator
    that a binary mediator's path feeds) the limits are NaN and ``notes`` says why.
"""

from .api import LIMIT_OF, TRUTH_SEED, TRUTH_SITES, Truth, targets, truth

# the private names of the former single-module simulate/truth.py, still importable from here
from .limits import _CHUNK as _CHUNK
from .limits import _compliance_weighted_moments as _compliance_weighted_moments
from .limits import _liml_limit as _liml_limit
from .limits import _Model as _Model
from .limits import _site_normals as _site_normals
from .limits import _sites as _sites
from .moments import _band_moments as _band_moments
from .moments import _expect as _expect
from .moments import _hafnian as _hafnian
from .moments import _Phi as _Phi
from .moments import _phi as _phi
from .moments import _xphi as _xphi
from .site_effects import site_effect_sd, site_effect_sd_applies
from .site_late import late_site_mean

__all__ = ["Truth", "truth", "targets", "late_site_mean", "LIMIT_OF", "TRUTH_SEED", "TRUTH_SITES", "site_effect_sd",
           "site_effect_sd_applies"]
