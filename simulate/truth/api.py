"""The public API of the truth: :class:`Truth`, :func:`truth`, :func:`targets`.

:func:`truth` combines the closed forms (:mod:`simulate.truth.closed`) with the
simulated limits (:mod:`simulate.truth.limits`); the formulas are listed in
:mod:`simulate.truth`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..dgp import plan
from ..estimators import registry as _registry
from ..layout import Layout
from ..scenario import Scenario
from .closed import closed_forms
from .limits import (
    BINARY_ORDERS,
    QUADRATURE_MAX_NODES,
    QUADRATURE_TOLERANCE,
    SE_BATCHES,
    Limits,
    SiteMoments,
    _Model,
    limits,
    quadrature_design,
    quadrature_moments,
    site_moments,
)
from .paths import total_effects
from .site_late import late_site_mean

__all__ = ["Truth", "truth", "targets", "LIMIT_OF", "TRUTH_SEED", "TRUTH_SITES"]

TRUTH_SEED = 20130401  # the founding paper's year and month; any fixed value would do
TRUTH_SITES = 1_000_000
METHODS = ("auto", "quadrature", "simulate")
"""How :func:`truth` integrates over the sites: quadrature where the grid is small enough, else
simulation (``auto``); quadrature or an error; simulation with standard errors."""

LIMIT_FIELDS = ("limit_2sls", "limit_between_ols", "limit_between_intercept", "limit_wald", "limit_liml")
"""The per-mediator large-sample limits of :class:`Truth`; each has a ``<name>_se`` beside it."""


@dataclass(frozen=True)
class Truth:
    """The truth of a scenario, per mediator (tuples of length P).

    Each limit ``limit_X`` has its numerical error ``limit_X_se`` beside it: 0 where the
    site integral is exact (Gauss-Hermite quadrature of a polynomial integrand, a closed
    form) or accurate to ``quadrature_error`` (at most 1e-10; binary mediators), and the
    simulation standard error where the sites had to be simulated (``n_sites_simulated``
    > 0), from the spread of 16 independent batches.  ``compliance_weighted_se`` likewise
    (0 where the closed form applies).  ``limit_method`` names which.
    """

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
    limit_2sls_se: tuple[float, ...] = field(default=())
    limit_between_ols_se: tuple[float, ...] = field(default=())
    limit_between_intercept_se: tuple[float, ...] = field(default=())
    limit_wald_se: tuple[float, ...] = field(default=())
    limit_liml_se: tuple[float, ...] = field(default=())
    compliance_weighted_se: tuple[float, ...] = field(default=())
    limit_between_intercept_constant_se: float = 0.0
    quadrature_nodes: int = 0
    quadrature_error: float = 0.0

    @property
    def limit_method(self) -> str:
        """``closed form`` (exact quadrature of polynomial integrands), ``quadrature`` or ``simulation``."""
        if self.n_sites_simulated:
            return "simulation"
        return "quadrature" if self.quadrature_error > 0 else "closed form"

    def se_of(self, name: str) -> tuple[float, ...]:
        """The numerical error of a per-mediator quantity (a limit or ``compliance_weighted``), 0 when not stored.

        Parameters
        ----------
        name : str
            ``limit_2sls``, ..., ``limit_liml`` or ``compliance_weighted``.

        Returns
        -------
        tuple of float
            Length P; an old truth without stored errors gives NaN if it was simulated, else 0.
        """
        se = getattr(self, f"{name}_se", ())
        if len(se) == len(self.mediators):
            return tuple(float(x) for x in se)
        return (math.nan if self.n_sites_simulated else 0.0,) * len(self.mediators)

    def error_text(self, name: str, p: int) -> str:
        """How exact one quantity is, as ``simulate truth`` prints it: ``0 (closed form)``, ``quadrature`` or the SE.

        Parameters
        ----------
        name : str
            As for :meth:`se_of`.
        p : int
            The mediator's index.

        Returns
        -------
        str
        """
        value = getattr(self, name)[p]
        if isinstance(value, float) and math.isnan(value):
            return "."
        if name == "compliance_weighted" and self.se_of(name)[p] == 0.0:
            return "0 (closed form)"
        method = self.limit_method
        if method == "simulation":
            return f"SE {self.se_of(name)[p]:.1e}"
        return "0 (closed form)" if method == "closed form" else f"quadrature ({self.quadrature_error:.0e})"
    total_effect: tuple[float, ...] = field(default=())  # E[Delta_p + sum_{p -> q} B T_q] (the ATE without paths)
    late_site_mean: tuple[float, ...] = field(default=())  # mean of the site LATEs (NaN: continuous mediator)

    def to_records(self) -> list[dict]:
        """One row per mediator: its estimands and large-sample limits, each limit with its ``_se``."""
        rows = []
        for p, name in enumerate(self.mediators):
            row = {
                "mediator": name,
                "ate": self.ate[p],
                "late": self.late[p],
                "compliance_weighted": self.compliance_weighted[p],
                "late_site_mean": self.late_site_mean[p] if self.late_site_mean else math.nan,
                "total_effect": self.total_effect[p] if self.total_effect else self.ate[p],
                "compliance_weighted_se": self.se_of("compliance_weighted")[p],
            }
            for lim in LIMIT_FIELDS:
                row[lim] = getattr(self, lim)[p]
                row[f"{lim}_se"] = self.se_of(lim)[p]
            rows.append(row)
        return rows

    def to_dict(self) -> dict:
        """JSON-ready: the per-mediator rows, the between-intercept constant, the heterogeneity, sites and notes."""
        return {"mediators": self.to_records(),
                "limit_between_intercept_constant": self.limit_between_intercept_constant,
                "limit_between_intercept_constant_se": self.limit_between_intercept_constant_se,
                "between_site_heterogeneity": self.between_site_heterogeneity,
                "n_sites_simulated": self.n_sites_simulated, "quadrature_nodes": self.quadrature_nodes,
                "quadrature_error": self.quadrature_error, "limit_method": self.limit_method,
                "notes": list(self.notes)}


def _by_simulation(model, n_mediators: int, n_sites: int, seed: int):
    """The limits from ``n_sites`` simulated sites: the pooled moments, the limits, and each limit's SE.

    The sites are drawn in :data:`SE_BATCHES` batches; the spread of the limits computed batch by
    batch gives each limit's standard error (and the compliance-weighted estimand's).
    """
    batches = site_moments(model, n_sites, seed, batches=min(SE_BATCHES, n_sites))
    moments = sum(batches[1:], batches[0])
    lim = _limits_noted(model, moments)
    runs = [_limits_quiet(model, b) for b in batches]
    se = {name: _batch_se([getattr(r, name) for r in runs]) for name in ("tsls", "between_ols",
                                                                        "between_intercept", "liml")}
    se["wald"] = _batch_se([np.array(r.wald, float) for r in runs])
    cw_se = _batch_se([b.cw_num / b.cw_den if np.all(b.cw_den != 0) else np.full(n_mediators, np.nan)
                       for b in batches])
    return moments, lim, se, cw_se


def truth(sc: Scenario, n_sites: int = TRUTH_SITES, seed: int = TRUTH_SEED, method: str = "auto") -> Truth:
    """The truth of a scenario: population estimands and large-sample limits.

    The limits are integrals over the site distribution.  By default (``method="auto"``)
    they are computed by tensor Gauss-Hermite quadrature: exact (to rounding) where the
    integrands are polynomials in the site normals (every continuous Gaussian scenario,
    nonlinear dependence and LIML included), and to ``QUADRATURE_TOLERANCE`` along the
    latent complier index of a binary mediator.  Where the grid would exceed
    ``QUADRATURE_MAX_NODES`` nodes (or a binary order does not converge) the sites are
    simulated instead, in 16 batches whose spread gives each limit's standard error.

    Parameters
    ----------
    sc : Scenario
    n_sites : int
        Number of simulated sites where the sites are simulated (default 1,000,000).
    seed : int
        Seed of the site simulation (fixed, so the truth is a pure function of the scenario).
    method : {"auto", "quadrature", "simulate"}
        ``quadrature`` raises ValueError where quadrature is not possible; ``simulate``
        always simulates (with standard errors).

    Returns
    -------
    Truth
    """
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, not {method!r}")
    pl = plan(sc)
    model = _Model(sc, pl)
    ate, late, cw_closed = closed_forms(sc, pl, (model.tau, model.q, model.dfrac))
    found = None if method == "simulate" else _by_quadrature(model)
    if found is None and method == "quadrature":
        raise ValueError("method: quadrature is not possible for this scenario (too many nodes, or a binary "
                         "order did not converge)")
    if found is not None:
        moments, nodes, error = found
        lim = _limits_noted(model, moments)
        se = {name: np.zeros(sc.n_mediators) for name in ("tsls", "between_ols", "between_intercept", "wald",
                                                           "liml")}
        se["between_intercept"] = np.zeros(sc.n_mediators + 1)
        cw_se = np.zeros(sc.n_mediators)
        simulated = 0
    else:
        moments, lim, se, cw_se = _by_simulation(model, sc.n_mediators, n_sites, seed)
        nodes, error, simulated = 0, 0.0, n_sites
    cw, cw_from_moments = _compliance_weighted(sc, pl, model, cw_closed, moments.cw_num, moments.cw_den,
                                               moments.weight)
    cw_se = tuple(float(s) if from_m else 0.0 for s, from_m in zip(cw_se, cw_from_moments))
    f = lambda a: tuple(float(x) for x in a)  # noqa: E731
    return Truth(
        mediators=sc.mediator_names,
        ate=f(ate),
        late=f(late),
        compliance_weighted=cw,
        limit_2sls=f(lim.tsls),
        limit_between_ols=f(lim.between_ols),
        limit_between_intercept=f(lim.between_intercept[1:]),
        limit_between_intercept_constant=float(lim.between_intercept[0]),
        limit_wald=f(lim.wald),
        limit_liml=f(lim.liml),
        between_site_heterogeneity=lim.heterogeneity,
        n_sites_simulated=simulated,
        notes=tuple(model.notes),
        limit_2sls_se=f(se["tsls"]),
        limit_between_ols_se=f(se["between_ols"]),
        limit_between_intercept_se=f(se["between_intercept"][1:]),
        limit_wald_se=f(se["wald"]),
        limit_liml_se=f(se["liml"]),
        compliance_weighted_se=cw_se,
        limit_between_intercept_constant_se=float(se["between_intercept"][0]),
        quadrature_nodes=nodes,
        quadrature_error=error,
        total_effect=total_effects(sc, pl, ate),
        late_site_mean=late_site_mean(sc),
    )


def _limits_quiet(model: _Model, m: SiteMoments) -> Limits:
    """The limits of one set of moments, without adding notes to the model."""
    kept = model.notes
    model.notes = []
    try:
        return limits(model, m)
    finally:
        model.notes = kept


def _limits_noted(model: _Model, m: SiteMoments) -> Limits:
    """The limits, their notes added to the model once."""
    kept = list(model.notes)
    model.notes = []
    lim = limits(model, m)
    new = [n for n in model.notes if n not in kept]
    model.notes = kept + new
    return lim


def _batch_se(values: list) -> np.ndarray:
    """The standard error of the pooled value from independent batches: sd / sqrt(B) per element."""
    a = np.array([np.asarray(v, float) for v in values])
    if len(a) < 2:
        return np.full(a.shape[1:], np.nan)
    return a.std(axis=0, ddof=1) / math.sqrt(len(a))


def _flat(lim: Limits, cw: np.ndarray) -> np.ndarray:
    return np.concatenate([lim.tsls, lim.between_ols, lim.between_intercept, np.asarray(lim.wald, float), lim.liml,
                           cw])


def _beyond_quadrature(model: _Model) -> bool:
    """Cases the quadrature's degree bookkeeping does not cover: they are simulated, with standard errors.

    Site distributions beyond the normal (Gauss-Hermite integrates against the normal), path
    coefficients correlated with the site components (the rule treats them as independent),
    and chains of paths whose coefficients vary between sites (each link raises the degree).
    """
    pl, ends = model.pl, model.L.path_ends
    chained = {to for _, to in ends} & {fr for fr, _ in ends}
    return bool(pl.site_skew != 0.0 or pl.site_df > 0.0 or pl.F_path_site.any()
                or not np.array_equal(pl.F_path, np.eye(pl.F_path.shape[0]))
                or (chained and np.any(pl.path_site_sd > 0)))


def _by_quadrature(model: _Model):
    """(moments, nodes, error) by tensor Gauss-Hermite quadrature, or None where it is not possible.

    Without binary mediators the integrands are polynomials of a known degree and one rule
    is exact (error 0).  Along a binary mediator's latent index the orders of
    ``BINARY_ORDERS`` are tried until two successive ones agree to ``QUADRATURE_TOLERANCE``
    (relative to the limit's size where it exceeds 1); the error is their largest difference.
    """
    if _beyond_quadrature(model):
        return None
    design = quadrature_design(model.sc, model.pl)
    if not design.n_binary:
        if design.n_nodes(1) > QUADRATURE_MAX_NODES:
            return None
        return quadrature_moments(model, design, 1), design.n_nodes(1), 0.0
    previous = None
    for order in BINARY_ORDERS:
        if design.n_nodes(order) > QUADRATURE_MAX_NODES:
            return None
        m = quadrature_moments(model, design, order)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = _flat(_limits_quiet(model, m), m.cw_num / m.cw_den)
        if previous is not None:
            both = np.isfinite(values) & np.isfinite(previous)
            if not np.array_equal(np.isfinite(values), np.isfinite(previous)):
                previous = values
                continue
            diff = np.abs(values - previous)[both] / np.maximum(1.0, np.abs(values[both]))
            err = float(diff.max()) if diff.size else 0.0
            if err <= QUADRATURE_TOLERANCE:
                return m, design.n_nodes(order), max(err, np.finfo(float).eps)
        previous = values
    return None


def _compliance_weighted(sc, pl, model, cw_closed, cw_num, cw_den, weight):
    """The compliance-weighted estimand: the closed form where it applies, else the site moments.

    The closed form applies where no path feeds the mediator and its dose curve is one for everyone.

    Returns the values and, per mediator, whether it came from the site moments (so carries their error).
    """
    L = Layout.of(sc)
    cw, from_moments = [], []
    for p in range(sc.n_mediators):
        fed = any(r.target == p for r in sc.paths) or sc.curvature_varies[p]  # not the closed form's model
        moment = False
        if not fed and not sc.is_binary[p] and pl.site_mean[L.site_compliance(p)] == 0:
            value = math.nan  # E[Gamma_p] = 0: no person's mediator moves on average
        elif not math.isnan(cw_closed[p]) and not fed:
            value = float(cw_closed[p])
        elif abs(cw_den[p]) > 1e-12 * weight:
            value = float(cw_num[p] / cw_den[p])
            moment = True
        else:
            value = math.nan
        if math.isnan(value):
            model.notes.append(f"compliance-weighted estimand of {sc.mediator_names[p]}: undefined, since the mean "
                               "effect of treatment on the mediator (its denominator) is zero")
        cw.append(value)
        from_moments.append(moment)
    return tuple(cw), from_moments


LIMIT_OF = _registry.LIMIT_OF
"""Which large-sample limit each estimator tends to (None: not computed): the registry's
(:mod:`simulate.estimators.registry`, one ``EstimatorSpec.limit`` per estimator)."""


def targets(tr: Truth, sc: Scenario) -> dict[tuple[str, str], dict[str, float]]:
    """Per (estimator, mediator): the population targets and the estimator's limit.

    Keys of each value: ``ate``, ``late`` and ``late_site_mean`` (the mean of the site LATEs,
    :func:`simulate.truth.site_late.late_site_mean`; both NaN for continuous mediators), ``compliance_weighted``,
    ``limit``, the numerical errors ``limit_se`` and ``compliance_weighted_se`` (0 where exact), and
    ``total_effect`` (the mediator's effect directly and through the mediators its paths move; the
    ATE without paths).  The between-site intercept row (mediator ``direct_effect``) targets
    E[kappa], the mean direct effect of one unit of T.
    """
    out = {}
    P = sc.n_mediators
    site_mean = tr.late_site_mean if tr.late_site_mean else late_site_mean(sc)  # an old stored truth lacks it
    for spec in _registry.REGISTRY:
        est, lim = spec.name, spec.limit
        if not spec.applies(P):
            continue
        for p, name in enumerate(sc.mediator_names):
            out[(est, name)] = {
                "ate": tr.ate[p],
                "late": tr.late[p],
                "late_site_mean": site_mean[p],
                "compliance_weighted": tr.compliance_weighted[p],
                "limit": getattr(tr, lim)[p] if lim else math.nan,
                "limit_se": tr.se_of(lim)[p] if lim else math.nan,
                "compliance_weighted_se": tr.se_of("compliance_weighted")[p],
                "total_effect": tr.total_effect[p] if tr.total_effect else tr.ate[p],
            }
    out[("between_intercept", "direct_effect")] = {
        "ate": float(sc.site_mean[Layout.of(sc).site_direct]), "late": math.nan, "late_site_mean": math.nan,
        "compliance_weighted": math.nan, "limit": tr.limit_between_intercept_constant,
        "limit_se": _constant_se(tr), "compliance_weighted_se": math.nan}
    return out


def _constant_se(tr: Truth) -> float:
    """The between-intercept constant's numerical error (NaN for an old simulated truth without one)."""
    if tr.n_sites_simulated and not tr.limit_between_intercept_se:
        return math.nan
    return float(tr.limit_between_intercept_constant_se)
