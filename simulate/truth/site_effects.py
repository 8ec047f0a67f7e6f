r"""The cross-site SD of the mediator effects: the truth of the RCIV rows' ``effect_sd``.

The site-mean effect of mediator p is ``delta_p,s = E[delta_p] + sd(delta_p) x_s + lambda_p
sd(delta_p) (z_s^2 - 1) / sqrt(2)`` (SPEC.md; ``x_s`` and ``z_s`` standard normals, ``z_s`` the
standardized site compliance, ``lambda_p`` the scenario's ``nonlinear_dependence``).  The
quadratic term has variance 1 and is uncorrelated with every Gaussian component (its odd
moments vanish), so

``sd(delta_p,s) = sd(delta_p) sqrt(1 + lambda_p^2)``.

This is what the random-coefficient IV estimators of Raudenbush, Reardon & Nomi (2012)
estimate when each site's own IV estimand equals its mean effect: a continuous mediator
with no within-site correlation of compliance and effect (``person.within_site_correlation =
0``), no direct effect of T (``site.direct_effect_mean = site.direct_effect_sd = 0``), no
mediator-to-mediator paths and no curvature.  Otherwise a site's ratio estimand is
``delta_s + Cov_s(Gamma, Delta) / gamma_s + kappa_s / gamma_s`` and its spread differs;
:func:`site_effect_sd_applies` says whether the identity holds.
"""

from __future__ import annotations

import math

from ..layout import Layout
from ..scenario import Scenario

__all__ = ["site_effect_sd", "site_effect_sd_applies"]


def site_effect_sd(sc: Scenario) -> tuple[float, ...]:
    """The SD between sites of each mediator's site-mean effect ``delta_p,s``.

    Parameters
    ----------
    sc : Scenario

    Returns
    -------
    tuple of float
        One value per mediator: ``sd(delta_p) sqrt(1 + lambda_p^2)``.
    """
    L = Layout.of(sc)
    return tuple(float(sc.site_sd[L.site_effect(p)]) * math.sqrt(1.0 + float(sc.nonlinear_dependence[p]) ** 2)
                 for p in range(sc.n_mediators))


def site_effect_sd_applies(sc: Scenario) -> bool:
    """Whether each site's own IV estimand is its mean effect, so that :func:`site_effect_sd` is the RCIV target.

    Parameters
    ----------
    sc : Scenario

    Returns
    -------
    bool
        True for continuous mediators without within-site compliance-effect correlation,
        direct effect, paths, curvature (one curve or varying ones), selection or spillover.
    """
    L = Layout.of(sc)
    P = sc.n_mediators
    corr = sc.person_correlation
    within = any(corr[L.person_compliance(p)][L.person_effect(p)] != 0.0 for p in range(P))
    direct = sc.site_mean[L.site_direct] != 0.0 or sc.site_sd[L.site_direct] != 0.0
    return not (within or direct or sc.paths or any(sc.is_binary) or any(c != 0.0 for c in sc.curvature)
                or any(sc.curvature_varies)
                or any(c != 0.0 for c in sc.outcome_curvature) or sc.selection_strength != 0.0
                or sc.spillover_outcome != 0.0 or any(s != 0.0 for s in sc.spillover_mediator))
