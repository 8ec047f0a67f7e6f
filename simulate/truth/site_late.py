r"""The two LATE targets of a binary mediator: the population complier average and the mean of the site LATEs.

A binary mediator (take-up) has two average effects among compliers, which agree when the
assumptions hold and differ when between-site independence (assumption ix) fails:

``late`` (:attr:`simulate.truth.Truth.late`): the population complier average
    :math:`E[\Delta_p \mid \text{complier}]`, every complier of the population counted once, so
    a site weighs by its number of compliers :math:`n_s \pi_s`.  It is what the pooled Wald
    estimator tends to, and what ``simulate truth`` has always called the LATE.
``late_site_mean`` (:func:`late_site_mean`): the mean over sites of each site's LATE,
    :math:`\delta_{cp} = E_s[\delta_{cs}]` with :math:`\delta_{cs} = E[\Delta_p \mid
    \text{complier}, s]`, every site counted once: the paper's average complier effect
    (Reardon & Raudenbush 2013, the mean of the site-specific complier average effects).

With the model of :mod:`simulate.dgp` (a person of site s is a complier when
:math:`u^\Gamma > -c_s`, :math:`c_s = a + \tau u_s`, and
:math:`\Delta = \delta_s + sd(\Delta)\, u^\Delta`, :math:`\rho = corr(u^\Gamma, u^\Delta)`
within sites), a site's LATE is

.. math::  \delta_{cs} = \delta_s + sd(\Delta)\,\rho\,\lambda(c_s), \qquad \lambda(x) = \varphi(x)/\Phi(x),

(the inverse Mills ratio: compliers are selected on their latent compliance, which is
correlated with their gain), so, with :math:`E[\delta_s] = E[\delta]` (the nonlinear-dependence
term has mean zero),

.. math::  \delta_{cp} = E[\delta] + sd(\Delta)\,\rho\,E_u[\lambda(a + \tau u)], \qquad u \sim N(0, 1),

computed by Gauss-Hermite quadrature (:data:`QUADRATURE_NODES` nodes; the tests check it against
adaptive quadrature to 1e-10).  The population complier average is
:math:`E[\Phi(c_s)\delta_{cs}] / E[\Phi(c_s)]` (its closed form is in :mod:`simulate.truth`).

**The model breaks (ix) by itself** when compliers are selected on gains (:math:`\rho \ne 0`)
and complier shares vary across sites (:math:`\tau > 0`): the site LATE then depends on the
site's complier share through :math:`\lambda(c_s)` (sites where few take the offer up have
compliers who gain more when :math:`\rho > 0`), even with every between-site correlation zero.
The two targets then differ (the mean of the site LATEs is the larger when :math:`\rho > 0`);
with :math:`\tau = 0` or :math:`\rho = 0` (and no between-site correlation of the complier share
with the effect, and no nonlinear dependence) they are equal.

Neither target depends on the assignment (selection, assumption vi) or on the arms: a type is
defined by the top arm, as in :func:`simulate.dgp.draw`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ..dgp import binary_constants, plan
from ..layout import Layout
from ..scenario import Scenario

__all__ = ["QUADRATURE_NODES", "inverse_mills", "late_site_mean"]

QUADRATURE_NODES = 160
"""Nodes of the (probabilists') Gauss-Hermite rule behind :func:`late_site_mean`."""


def inverse_mills(x):
    r"""The inverse Mills ratio :math:`\varphi(x)/\Phi(x)`, stable far into either tail; 0 at :math:`+\infty`.

    Parameters
    ----------
    x : array_like

    Returns
    -------
    numpy.ndarray or float
    """
    x = np.asarray(x, float)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.exp(-0.5 * x * x - 0.5 * math.log(2 * math.pi) - special.log_ndtr(x))
    out = np.where(np.isposinf(x), 0.0, out)
    return out if out.ndim else float(out)


def _expected_mills(a: float, tau: float) -> float:
    """E[lambda(a + tau u)] over u ~ N(0, 1), by Gauss-Hermite quadrature (0 when a = +inf)."""
    if np.isposinf(a):
        return 0.0
    if tau == 0.0:
        return float(inverse_mills(a))
    x, w = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
    return float(np.dot(w, inverse_mills(a + tau * x)) / math.sqrt(2 * math.pi))


def late_site_mean(sc: Scenario) -> tuple[float, ...]:
    r"""The mean of the site LATEs, :math:`\delta_{cp}`, of every mediator (NaN for a continuous one).

    Parameters
    ----------
    sc : Scenario

    Returns
    -------
    tuple of float
        Length P; see the module docstring for the formula.
    """
    L = Layout.of(sc)
    pl = plan(sc)
    a, tau, _, _ = binary_constants(sc)
    Rp = np.array(sc.person_correlation)
    out = []
    for p in range(L.P):
        if not sc.is_binary[p]:
            out.append(math.nan)
            continue
        rho = Rp[L.person_compliance(p), L.person_effect(p)]
        mean_delta = float(pl.site_mean[L.site_effect(p)])
        gain = pl.eff_sd[p] * rho * _expected_mills(float(a[p]), float(tau[p])) if rho != 0.0 else 0.0
        out.append(mean_delta + float(gain))
    return tuple(out)
