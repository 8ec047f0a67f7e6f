"""Closed forms: the population estimands that need no simulated sites.

Per mediator p: the ATE, the LATE of a binary mediator and, where no path feeds the
mediator, the compliance-weighted estimand (the formulas are listed in
:mod:`simulate.truth`).  Every correlation is read at the components' indices from
:class:`simulate.layout.Layout`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ..layout import Layout
from ..scenario import Scenario
from .moments import _Phi, _phi


def closed_forms(sc: Scenario, pl, binary: tuple) -> tuple[list, list, list]:
    """ATE, LATE and the closed-form compliance-weighted estimand of every mediator.

    Parameters
    ----------
    sc : Scenario
    pl : simulate.dgp.KernelPlan
        The scenario's plan.
    binary : tuple
        ``(tau, q, dfrac)`` of :func:`simulate.dgp.binary_constants` (per mediator).

    Returns
    -------
    (ate, late, cw_closed) : lists of length P
        ``late`` is NaN for a continuous mediator; ``cw_closed`` is NaN where the
        mediator's mean compliance is 0 (the paths are not accounted for here).
    """
    L = Layout.of(sc)
    tau, q, dfrac = binary
    Rs = np.array(sc.site_correlation)
    Rp = np.array(sc.person_correlation)
    ate, late, cw_closed = [], [], []
    for p in range(L.P):
        sg, sd = L.site_compliance(p), L.site_effect(p)  # site gamma_p, delta_p
        ug, ud, um = L.person_compliance(p), L.person_effect(p), L.person_mediator(p)
        mean_delta = pl.site_mean[sd]
        if sc.is_binary[p]:
            pc, pa, pn, pd = sc.complier_share[p], sc.always_share[p], sc.never_share[p], sc.defier_share[p]
            shift = pl.effect_shift[p]
            ate.append(mean_delta + pa * shift[1] + pn * shift[2] + pd * shift[3])
            s = math.sqrt(1 + tau[p] ** 2)
            b = special.ndtri(pc)
            r = Rs[sg, sd]
            rho = Rp[ug, ud]
            sd_d = pl.site_sd[sd]
            # E[(u_a u_b - R_ab) Phi(a + tau u_g)] = R_ga R_gb E[(u_g^2 - 1) Phi(...)]: a cross-mediator term
            # enters like nonlinear dependence, scaled by its factors' correlations with u_g
            nl = pl.nonlinear[p] + sum(c * Rs[sg, a] * Rs[sg, b] for e, a, b, c in
                                       zip(pl.cross_effect, pl.cross_a, pl.cross_b, pl.cross_coef) if e == sd)
            ph = float(_phi(b))
            curve = nl * (tau[p] ** 2 / s ** 2) * b * ph if np.isfinite(b) else 0.0  # b phi(b) -> 0 as pi_c -> 1
            dc = mean_delta * pc + sd_d * r * (tau[p] / s) * ph - curve  # E[delta Phi(c)]
            e_c = dc + pl.eff_sd[p] * rho * ph / s  # E[Delta 1{complier}]
            late.append(e_c / pc)
            top = 1.0 - _Phi(q[p])
            phq = float(_phi(q[p])) if np.isfinite(q[p]) else 0.0
            rM = Rp[ud, um]
            e_d = (dfrac[p] * top * (mean_delta - dc) + pd * shift[3]
                   + pl.eff_sd[p] * dfrac[p] * (-rho * top * ph / s + rM * (1 - pc) * phq))  # E[Delta 1{defier}]
            cw_closed.append((e_c - e_d) / (pc - pd))
        else:
            ate.append(mean_delta)
            late.append(math.nan)
        if not sc.is_binary[p]:
            cov = Rs[sg, sd] * pl.site_sd[sg] * pl.site_sd[sd] + Rp[ug, ud] * pl.comp_sd[p] * pl.eff_sd[p]
            cw_closed.append(mean_delta + cov / pl.site_mean[sg] if pl.site_mean[sg] != 0 else math.nan)
    return ate, late, cw_closed
