"""The public API of the truth: :class:`Truth`, :func:`truth`, :func:`targets`.

:func:`truth` combines the closed forms (:mod:`simulate.truth.closed`) with the
simulated limits (:mod:`simulate.truth.limits`); the formulas are listed in
:mod:`simulate.truth`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..dgp import plan
from ..estimators import registry as _registry
from ..layout import Layout
from ..scenario import Scenario
from .closed import closed_forms
from .limits import _Model, limits, site_moments
from .paths import total_effects

__all__ = ["Truth", "truth", "targets", "LIMIT_OF", "TRUTH_SEED", "TRUTH_SITES"]

TRUTH_SEED = 20130401  # the founding paper's year and month; any fixed value would do
TRUTH_SITES = 1_000_000


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
    total_effect: tuple[float, ...] = field(default=())  # E[Delta_p + sum_{p -> q} B T_q] (the ATE without paths)

    def to_records(self) -> list[dict]:
        """One row per mediator: its estimands and large-sample limits."""
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
                "total_effect": self.total_effect[p] if self.total_effect else self.ate[p],
            })
        return rows

    def to_dict(self) -> dict:
        """JSON-ready: the per-mediator rows, the between-intercept constant, the heterogeneity, sites and notes."""
        return {"mediators": self.to_records(),
                "limit_between_intercept_constant": self.limit_between_intercept_constant,
                "between_site_heterogeneity": self.between_site_heterogeneity,
                "n_sites_simulated": self.n_sites_simulated, "notes": list(self.notes)}



def truth(sc: Scenario, n_sites: int = TRUTH_SITES, seed: int = TRUTH_SEED) -> Truth:
    """The truth of a scenario: population estimands and large-sample limits.

    Parameters
    ----------
    sc : Scenario
    n_sites : int
        Number of simulated sites for the site-level moments (default 1,000,000).
    seed : int
        Seed of the site simulation (fixed, so the truth is a pure function of the scenario).

    Returns
    -------
    Truth
    """
    pl = plan(sc)
    model = _Model(sc, pl)
    ate, late, cw_closed = closed_forms(sc, pl, (model.tau, model.q, model.dfrac))
    moments = site_moments(model, n_sites, seed)
    lim = limits(model, moments, n_sites)
    cw = _compliance_weighted(sc, pl, model, cw_closed, moments.cw_num, moments.cw_den, n_sites)
    return Truth(
        mediators=sc.mediator_names,
        ate=tuple(float(x) for x in ate),
        late=tuple(float(x) for x in late),
        compliance_weighted=cw,
        limit_2sls=tuple(float(x) for x in lim.tsls),
        limit_between_ols=tuple(float(x) for x in lim.between_ols),
        limit_between_intercept=tuple(float(x) for x in lim.between_intercept[1:]),
        limit_between_intercept_constant=float(lim.between_intercept[0]),
        limit_wald=tuple(float(x) for x in lim.wald),
        limit_liml=tuple(float(x) for x in lim.liml),
        between_site_heterogeneity=lim.heterogeneity,
        n_sites_simulated=n_sites,
        notes=tuple(model.notes),
        total_effect=total_effects(sc, pl, ate),
    )


def _compliance_weighted(sc, pl, model, cw_closed, cw_num, cw_den, n_sites) -> tuple[float, ...]:
    """The compliance-weighted estimand: the closed form where no path feeds the mediator, else the site moments."""
    L = Layout.of(sc)
    cw = []
    for p in range(sc.n_mediators):
        fed = any(r.target == p for r in sc.paths)
        if not fed and not sc.is_binary[p] and pl.site_mean[L.site_compliance(p)] == 0:
            value = math.nan  # E[Gamma_p] = 0: no person's mediator moves on average
        elif not math.isnan(cw_closed[p]) and not fed:
            value = float(cw_closed[p])
        elif abs(cw_den[p]) > 1e-12 * n_sites:
            value = float(cw_num[p] / cw_den[p])
        else:
            value = math.nan
        if math.isnan(value):
            model.notes.append(f"compliance-weighted estimand of {sc.mediator_names[p]}: undefined, since the mean "
                               "effect of treatment on the mediator (its denominator) is zero")
        cw.append(value)
    return tuple(cw)


LIMIT_OF = _registry.LIMIT_OF
"""Which large-sample limit each estimator tends to (None: not computed): the registry's
(:mod:`simulate.estimators.registry`, one ``EstimatorSpec.limit`` per estimator)."""


def targets(tr: Truth, sc: Scenario) -> dict[tuple[str, str], dict[str, float]]:
    """Per (estimator, mediator): the population targets and the estimator's limit.

    Keys of each value: ``ate``, ``late`` (NaN for continuous mediators), ``compliance_weighted``,
    ``limit`` and ``total_effect`` (the mediator's effect directly and through the mediators its
    paths move; the ATE without paths).  The between-site intercept row (mediator ``direct_effect``) targets
    E[kappa], the mean direct effect of one unit of T.
    """
    out = {}
    P = sc.n_mediators
    for spec in _registry.REGISTRY:
        est, lim = spec.name, spec.limit
        if not spec.applies(P):
            continue
        for p, name in enumerate(sc.mediator_names):
            out[(est, name)] = {
                "ate": tr.ate[p],
                "late": tr.late[p],
                "compliance_weighted": tr.compliance_weighted[p],
                "limit": getattr(tr, lim)[p] if lim else math.nan,
                "total_effect": tr.total_effect[p] if tr.total_effect else tr.ate[p],
            }
    out[("between_intercept", "direct_effect")] = {
        "ate": float(sc.site_mean[Layout.of(sc).site_direct]), "late": math.nan, "compliance_weighted": math.nan,
        "limit": tr.limit_between_intercept_constant}
    return out
