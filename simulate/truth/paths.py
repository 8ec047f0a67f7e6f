"""Total effects: an upstream mediator's effect on Y directly and through the mediators its paths move.

With paths (assumption v), a unit change of mediator p moves Y by its own effect Delta_p and
moves each mediator q that a path p -> q feeds by B_pq, which moves Y in turn.  Person i's
total effect of mediator p is therefore

    T_pi = Delta_pi + sum_{paths r: p -> q} B_ri T_qi,

a recursion along the chains of paths (1 -> 2 -> 3 gives T_1 = Delta_1 + B_12 (Delta_2 +
B_23 Delta_3) + B_13 Delta_3).  The reported target is its population mean E[T_p] over sites
and persons; it equals the ATE of p when no path leaves p.

Every factor is Gaussian (or a square of one): Delta_q = delta_q + sd(Delta_q) u^Delta_q with
delta_q = E[delta_q] + sd(delta_q) u_(P+q) + lambda_q sd(delta_q) (u_q^2 - 1) / sqrt 2, and
B_r = beta_rs + sd_r (rho_r u^Delta_target + sqrt(1 - rho_r^2) v_r) with beta_rs = mean_r +
site_sd_r u_path_r, the site vector extended by the path coefficients (:mod:`simulate.layout`,
correlated by ``[site.correlations]``).  The mean of each product is exact by Isserlis' theorem
over the joint normal vector (site vector with paths, person vector, path normals)
(:func:`simulate.truth.moments._expect`), so the total effect carries no simulation error.  A
binary upstream mediator's own part is its ATE (type shifts included), since no path coefficient
depends on its compliance type.
"""

from __future__ import annotations

import math

import numpy as np

from ..layout import Layout
from ..scenario import Scenario
from .moments import _expect

__all__ = ["total_effects"]


def _joint(sc: Scenario) -> tuple[Layout, np.ndarray, int, int]:
    """The layout, the joint covariance of (extended site vector, person vector, path normals) and the offsets."""
    L = Layout.of(sc)
    Ds = L.site_extended_size
    Dp = L.person_size
    R = L.n_paths
    S = np.zeros((Ds + Dp + R, Ds + Dp + R))
    if sc.site_path_correlation:
        S[:Ds, :Ds] = np.array(sc.site_path_correlation)
    else:
        S[:Ds, :Ds] = np.array(sc.site_correlation)
    S[Ds:Ds + Dp, Ds:Ds + Dp] = np.array(sc.person_correlation)
    S[Ds + Dp:, Ds + Dp:] = np.eye(R)
    return L, S, Ds, Ds + Dp


def total_effects(sc: Scenario, pl, ate) -> tuple[float, ...]:
    """E[T_p] for every mediator p: its ATE plus what its paths carry to the mediators downstream.

    Parameters
    ----------
    sc : Scenario
    pl : simulate.dgp.KernelPlan
        The scenario's plan (site means and SDs, the nonlinear-dependence scale).
    ate : sequence of float
        The mediators' ATEs (:func:`simulate.truth.closed.closed_forms`).

    Returns
    -------
    tuple of float
        One per mediator; equal to ``ate`` where no path leaves the mediator.
    """
    if not sc.paths:
        return tuple(float(x) for x in ate)
    L, S, person_at, normal_at = _joint(sc)
    D = S.shape[0]
    mom = np.array([1.0, 0, 0, 0, 0, 0, 0])  # no selection index: every form's k part is 0

    def unit(j, c=1.0):
        e = np.zeros(D)
        e[j] = c
        return e

    def delta_monos(q):
        """Delta_q as (coefficient, forms) monomials."""
        lin = (float(pl.site_mean[L.site_effect(q)]),
               unit(L.site_effect(q), pl.site_sd[L.site_effect(q)]) + unit(person_at + L.person_effect(q),
                                                                              pl.eff_sd[q]), 0.0)
        out = [(1.0, [lin])]
        nl = float(pl.nonlinear[q])
        if nl != 0.0:
            u = (0.0, unit(L.site_compliance(q)), 0.0)
            out += [(nl, [u, u]), (-nl, [])]
        return out

    def path_form(r):
        path = sc.paths[r]
        rho = path.effect_correlation
        x = (unit(L.site_path(r), path.site_sd)
             + unit(person_at + L.person_effect(path.target), path.person_sd * rho)
             + unit(normal_at + r, path.person_sd * math.sqrt(1.0 - rho * rho)))
        return (float(path.mean), x, 0.0)

    def downstream(p):
        """sum_{r: p -> q} B_r T_q as monomials."""
        out = []
        for r, path in enumerate(sc.paths):
            if path.source != p:
                continue
            B = path_form(r)
            out += [(c, [B] + f) for c, f in delta_monos(path.target) + downstream(path.target)]
        return out

    totals = []
    for p in range(L.P):
        extra = sum(c * (_expect(f, S, mom) if f else 1.0) for c, f in downstream(p))
        totals.append(float(ate[p] + extra))
    return tuple(totals)
