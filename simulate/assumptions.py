"""The founding paper's assumptions, one entry each: the catalogue the stress test sweeps.

Reardon & Raudenbush (2013, Sociological Methods & Research 42(2)) identify each mediator's
average effect from site-by-treatment instruments under nine assumptions.  Each is a dial
of a scenario (zero: it holds).  An :class:`Assumption` says, once, everything the rest of
the program needs to know of it: its key and the paper's numeral, a title and what a
failure means in a study, the dial's unit, the default severe value, whether the dial moves
the identification (the large-sample truth) or only the finite-sample behaviour, and the
recipe that turns a planned design into a sweep of the dial from 0 to the severe value.

A recipe returns a :class:`SweepPlan` (the grid paths that move, each from a start to an end
value, linearly in the dial's fraction t in [0, 1]; the changes the sweep makes to the design;
the design table it runs on) or a string saying why the dial does not apply to the design.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from .layout import Layout
from .scenario import Scenario, from_dict

__all__ = ["Assumption", "SweepPlan", "Design", "ASSUMPTIONS", "BY_KEY", "DESIGN_LABELS", "axis_labels"]


@dataclass
class SweepPlan:
    """The grid paths a dial moves, each linearly from ``start`` to ``end`` as t goes 0 -> 1.

    The first path is the dial's axis (its value is what the report calls the dial value).
    """

    paths: list[str]
    start: list[float]
    end: list[float]
    raw: dict
    changes: list[str] = field(default_factory=list)

    def values_at(self, t: float) -> list[float]:
        """The paths' values at fraction t, ``start + t (end - start)`` each (rounded to 10 decimals)."""
        return [round(a + t * (b - a), 10) for a, b in zip(self.start, self.end)]

    def axis_at(self, t: float) -> float:
        """The dial value at fraction t: the first path's value."""
        return self.values_at(t)[0]


@dataclass
class Design:
    """What a recipe reads of the planned design (and of the ``[stress]`` options)."""

    raw: dict
    scenario: Scenario
    options: dict

    @property
    def P(self) -> int:
        """The number of mediators P."""
        return self.scenario.n_mediators

    @property
    def binary(self) -> list[bool]:
        """Per mediator, whether it is binary."""
        return list(self.scenario.is_binary)

    @property
    def continuous(self) -> list[int]:
        """The indices (0-based) of the continuous mediators."""
        return [p for p in range(self.P) if not self.binary[p]]

    @property
    def compliance(self) -> list[float]:
        """Per mediator, the mean compliance gamma_p: complier minus defier share if binary, else the site mean."""
        sc = self.scenario
        at = Layout(self.P).site_compliance
        return [(sc.complier_share[p] - sc.defier_share[p]) if self.binary[p] else sc.site_mean[at(p)]
                for p in range(self.P)]

    def effect(self, p: int) -> float:
        """The site mean of mediator p's effect delta_p."""
        return self.scenario.site_mean[Layout(self.P).site_effect(p)]

    @property
    def itt(self) -> float:
        """|ITT on Y of the top arm against control|, sum_p g_p(L) gamma_p delta_p (1 if zero)."""
        sc = self.scenario
        v = sum((1.0 if self.binary[p] else sc.dose(p)[-1]) * self.compliance[p] * self.effect(p)
                for p in range(self.P))
        return abs(v) or 1.0

    def plan(self, paths, ends, starts=None, changes=(), extra: Callable[[dict], None] | None = None) -> SweepPlan:
        """A :class:`SweepPlan` on a copy of the design table (edited by ``extra``); starts default to 0."""
        raw = copy.deepcopy(self.raw)
        if extra is not None:
            extra(raw)
        starts = list(starts) if starts is not None else [0.0] * len(paths)
        return SweepPlan(list(paths), starts, list(ends), raw, list(changes))


@dataclass(frozen=True)
class Assumption:
    """One assumption of the founding paper and its dial.

    Attributes
    ----------
    key : str
        The dial's name in ``[stress.dials]``, tables and file names.
    numeral : str
        The paper's numbering (i .. ix; vii.a, vii.b).
    name : str
        The paper's short name of the assumption.
    title : str
        What the dial does, in a heading.
    meaning : str
        What a failure means in a study, in plain words.
    unit : str
        The dial's unit (what its value measures).
    severe : callable
        ``severe(design) -> float``: the default severe value.
    identification : bool
        True if the dial moves the large-sample truth (a flat truth along it means the dial
        cannot matter in the design: ``not_applicable``); False for the rank dial, which
        leaves the limits alone and acts through the finite sample (weak instruments).
    recipe : callable
        ``recipe(design, severe) -> SweepPlan | str`` (a string: why it does not apply).
    axes : tuple of (str, str)
        The scenario paths the dial moves (every path its recipe sweeps, and the other keys of
        the same assumption), each with its axis label: ``(path, label)``.  A path is a dotted
        grid path without list indices (``paths.mean`` stands for ``paths[2].mean``); a ``*``
        matches any name (``site.correlations.path_*:effect_*``), and ``{term}`` in its label is
        replaced by the path's last component.  A label ends with ``[assumption NUMERAL...]``.
    """

    key: str
    numeral: str
    name: str
    title: str
    meaning: str
    unit: str
    severe: Callable[[Design], float]
    identification: bool
    recipe: Callable[[Design, float], SweepPlan | str]
    axes: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """The numeral and the short name, e.g. ``"i (SUTVA)"``."""
        return f"{self.numeral} ({self.name})"


# ---------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------


def _spillover(d: Design, v: float):
    return d.plan(["spillover.outcome"], [v])


def _direct_effect(d: Design, v: float):
    return d.plan(["site.direct_effect_mean"], [v])


def _mediator_curvature(d: Design, v: float):
    if d.scenario.arms == 2:
        return "has no effect with a binary treatment (needs 3+ arms)"
    return d.plan(["mediators.curvature"], [v])


def _outcome_curvature(d: Design, v: float):
    if not d.continuous:
        return "applies to continuous mediators only"
    paths = [f"mediators.outcome_curvature[{p + 1}]" for p in d.continuous]
    return d.plan(paths, [v] * len(paths))


def _mediator_paths(d: Design, v: float):
    if d.P < 2 or not [p for p in d.continuous if p >= 1]:
        return "needs a second, continuous mediator"
    # the first pair (earlier -> later continuous mediator, 1-based) that can take a new path: not
    # already joined, and no chain (a path's source receives none, its target sends none)
    have = d.raw.get("paths", [])
    joined = {(pa.get("from"), pa.get("to")) for pa in have}
    receive = {pa.get("to") for pa in have}
    send = {pa.get("from") for pa in have}
    free = [(a, b + 1) for b in d.continuous for a in range(1, b + 1)
            if (a, b + 1) not in joined and a not in receive and b + 1 not in send]
    if not free:
        listed = ", ".join(f"{a} -> {b}" for a, b in sorted(joined))
        return (f"the design's own paths ({listed}) leave no pair of mediators that can take another "
                "(the dial adds a path that forms no chain, so that a design's numbers stay comparable)")
    a, b = free[0]

    def extra(r):
        r.setdefault("paths", []).append({"from": a, "to": b, "mean": 0.0, "person_sd": 0.0,
                                          "effect_correlation": 0.5})
    k = len(have) + 1
    return d.plan([f"paths[{k}].mean", f"paths[{k}].person_sd"], [v, v],
                  changes=[f"a path from mediator {a} to mediator {b} whose mean and person SD grow with the "
                           "dial, correlation 0.5 with the later mediator's effect"], extra=extra)


def _path_site_correlation(d: Design, v: float):
    if d.P < 2 or not [p for p in d.continuous if p >= 1]:
        return "needs a second, continuous mediator"
    have = d.raw.get("paths", [])
    fed = [(k, pa) for k, pa in enumerate(have) if isinstance(pa, dict) and pa.get("to", 0) - 1 in d.continuous]
    changes: list[str] = []
    if fed:  # the design's own first path into a continuous mediator, given a site SD if it has none
        k, pa = fed[0]
        a, b = pa["from"], pa["to"]
        site_sd = pa.get("site_sd", 0.0) or 0.3
        if not pa.get("site_sd"):
            changes.append(f"the design's path {a} -> {b} given a between-site SD of {site_sd:g} (zero in the design)")
    else:
        b = next(p + 1 for p in d.continuous if p >= 1)
        a, k, site_sd = 1, len(have), 0.3
        changes.append(f"a path from mediator {a} to mediator {b} with mean 0.5 and between-site SD 0.3")
    effect_changes, effect_extra = _site_effect_sd(d)
    changes += effect_changes
    changes.append(f"the sites' path coefficient {a} -> {b} correlates with their effect of mediator {b}")

    def extra(r):
        effect_extra(r)
        paths = r.setdefault("paths", [])
        if k == len(paths):
            paths.append({"from": a, "to": b, "mean": 0.5, "site_sd": site_sd})
        else:
            paths[k] = dict(paths[k], site_sd=site_sd)
    return d.plan([f"site.correlations.path_{a}_{b}:effect_{b}"], [v], changes=changes, extra=extra)


def _spillover_treated(d: Design, v: float):
    return d.plan(["spillover.treated_outcome"], [v])


def _mediator_interaction(d: Design, v: float):
    if len(d.continuous) < 2:
        return "needs two continuous mediators"
    a, b = d.continuous[0] + 1, d.continuous[1] + 1
    have = d.raw.get("interactions", [])
    k = len(have) + 1

    def extra(r):
        r.setdefault("interactions", []).append({"first": a, "second": b, "coefficient": 0.0})
    return d.plan([f"interactions[{k}].coefficient"], [v],
                  changes=[f"an interaction of mediators {a} and {b} in the outcome (Y += theta M_{a} M_{b})"],
                  extra=extra)


def _selection(d: Design, v: float):
    return d.plan(["selection.strength"], [v])


def _within_site_correlation(d: Design, v: float):
    sc, P = d.scenario, d.P
    changes: list[str] = []
    person: dict = {}
    for key, fallback, label in (("effect_sd", [0.5 * abs(d.effect(p)) or 0.2 for p in range(P)],
                                  "person-level effect SD"),
                                 ("compliance_sd", [0.5 * abs(d.compliance[p]) or 0.2 for p in range(P)],
                                  "person-level compliance SD")):
        if key == "compliance_sd" and not d.continuous:
            continue
        cur = list(getattr(sc, key))
        if any(x == 0 and (key == "effect_sd" or not d.binary[p]) for p, x in enumerate(cur)):
            # a correlation needs both SDs: a mediator whose SD is zero gets one (the others keep theirs)
            vals = [fallback[p] if (x == 0 and (key == "effect_sd" or not d.binary[p])) else x
                    for p, x in enumerate(cur)]
            person[key] = vals
            changes.append(f"{label} set to {', '.join(f'{x:g}' for x in vals)} (zero in the design for some "
                           "mediator)")

    def extra(r):
        r.setdefault("person", {}).update(person)
    return d.plan(["person.within_site_correlation"], [v], changes=changes, extra=extra)


def _defiers(d: Design, v: float):
    sc, P = d.scenario, d.P
    b = [p for p in range(P) if d.binary[p]]
    if not b:
        return "applies to binary mediators only"
    paths, starts, ends, changes = [], [], [], ["the defier share is taken from the never-takers (or compliers)"]
    shift_opt = d.options.get("defier_effect_shift")
    shifts: dict[int, float] = {}
    for p in b:
        if v >= sc.complier_share[p] - 0.05:
            return f"the severe defier share {v:g} must stay below the complier share {sc.complier_share[p]:g}"
        donor = "never_share" if sc.never_share[p] >= v else "complier_share"
        base = getattr(sc, donor)[p]
        paths += [f"binary.defier_share[{p + 1}]", f"binary.{donor}[{p + 1}]"]
        starts += [0.0, base]
        ends += [v, base - v]
        if sc.effect_shift[p][3] == 0 and shift_opt != 0:
            # defiers who gain what compliers gain leave every estimand where it is (the LATE, and the
            # 2SLS limit (pi_c delta - pi_d delta) / (pi_c - pi_d) = delta): give them an effect of their own
            shifts[p] = float(shift_opt) if shift_opt is not None else -d.effect(p)
    for p, s in shifts.items():
        changes.append(f"defiers' effect of {sc.mediator_names[p]} set to the compliers' {s:+g} "
                       f"({d.effect(p) + s:g} against {d.effect(p):g}; zero in the design, where defiers "
                       "could not move any estimand); [stress] defier_effect_shift sets it")

    def extra(r):
        if shifts:
            bt = r.setdefault("binary", {})
            cur = bt.get("defier_effect_shift", 0.0)
            vec = list(cur) if isinstance(cur, list) else [float(cur)] * P
            for p, s in shifts.items():
                vec[p] = s
            bt["defier_effect_shift"] = vec
    return d.plan(paths, ends, starts, changes, extra)


def _rank(d: Design, v: float):
    sc = d.scenario
    if d.P >= 2:
        return d.plan(["site.compliance_correlation"], [min(v, 0.99)])
    binary = d.binary[0]
    sd0 = sc.complier_share_site_sd[0] if binary else sc.site_sd[0]
    path = "binary.complier_share_site_sd" if binary else "site.compliance_sd"
    if sd0 == 0:
        return "the design's compliance does not vary between sites: the instruments are already weak"
    return d.plan([path], [round(sd0 * (1 - min(v, 0.95)), 10)], [sd0],
                  ["with one mediator the rank dial shrinks the between-site SD of compliance (the instruments' "
                   "strength)"])


def _site_effect_sd(d: Design):
    sc, P = d.scenario, d.P
    changes: list[str] = []
    vals = None
    if all(sc.site_sd[Layout(P).site_effect(p)] == 0 for p in range(P)):
        vals = [0.5 * abs(d.effect(p)) or 0.1 for p in range(P)]
        changes.append(f"between-site effect SD set to {', '.join(f'{x:g}' for x in vals)} (zero in the design)")

    def extra(r):
        if vals is not None:
            r.setdefault("site", {})["effect_sd"] = vals
    return changes, extra


def _varies(d: Design) -> bool:
    sc = d.scenario
    return all((sc.complier_share_site_sd[p] if d.binary[p] else sc.site_sd[p]) > 0 for p in range(d.P))


def _between_site_correlation(d: Design, v: float):
    if not _varies(d):
        return "needs compliance that varies between sites"
    changes, extra = _site_effect_sd(d)
    return d.plan(["site.compliance_effect_correlation"], [v], changes=changes, extra=extra)


def _nonlinear_dependence(d: Design, v: float):
    if not _varies(d):
        return "needs compliance that varies between sites"
    changes, extra = _site_effect_sd(d)
    return d.plan(["site.nonlinear_dependence"], [v], changes=changes, extra=extra)


CROSS_TERM = "site.cross_dependence.effect_2:compliance_1:compliance_2"
"""The term the cross-mediator dial sweeps: delta_2 += lambda sd(delta_2) (z_1 z_2 - r) / sqrt(1 + r^2)."""


def _cross_dependence(d: Design, v: float):
    if d.P < 2:
        return "needs two or more mediators (one mediator's effect depends on another's compliance)"
    if not _varies(d):
        return "needs compliance that varies between sites"
    changes, extra = _site_effect_sd(d)
    if not changes and d.scenario.site_sd[Layout(d.P).site_effect(1)] == 0:  # the term scales sd(delta_2)
        sd2 = 0.5 * abs(d.effect(1)) or 0.1
        changes = [f"between-site SD of the second mediator's effect set to {sd2:g} (zero in the design)"]

        def extra(r):
            site = r.setdefault("site", {})
            cur = site.get("effect_sd", 0.0)
            vals = list(cur) if isinstance(cur, list) else [cur] * d.P
            vals[1] = sd2
            site["effect_sd"] = vals
    return d.plan([CROSS_TERM], [v], changes=changes, extra=extra)


def _site_distribution(key):
    def recipe(d: Design, v: float):
        if any(d.binary):
            return "applies to continuous mediators only (binary complier shares are calibrated to normal sites)"
        if not _varies(d):
            return "needs compliance that varies between sites"
        changes, extra = _site_effect_sd(d)
        return d.plan([f"site.{key}"], [v], changes=changes, extra=extra)
    return recipe


def _set_entry(r: dict, table: str, key: str, p: int, value: float, P: int) -> None:
    """Set mediator p's entry of a per-mediator key of a raw table (a scalar becomes a list of P)."""
    t = r.setdefault(table, {})
    cur = t.get(key, 0.0)
    vals = list(cur) if isinstance(cur, list) else [cur] * P
    vals[p] = value
    t[key] = vals


def _curvature_heterogeneity(d: Design, v: float):
    """Dose curves varying by site and person, their curvature going with the mediator's effect (iii)."""
    if d.scenario.arms == 2:
        return "has no effect with a binary treatment (needs 3+ arms)"
    if not d.continuous:
        return "applies to continuous mediators only"
    sc, P = d.scenario, d.P
    p = d.continuous[0]
    name = sc.mediator_names[p]
    L = Layout(P)
    site_sd = (sc.curvature_site_sd or (0.0,) * P)[p] or 0.3
    person_sd = (sc.curvature_person_sd or (0.0,) * P)[p] or 0.5
    effect_sd = sc.site_sd[L.site_effect(p)] or (0.5 * abs(d.effect(p)) or 0.1)
    person_effect_sd = sc.effect_sd[p] or (0.5 * abs(d.effect(p)) or 0.2)
    changes = [f"the curvature of {name}'s dose curve varies between sites (SD {site_sd:g}) and persons "
               f"(SD {person_sd:g}); the dial is its correlation with {name}'s effect, at both levels"]
    for what, old, new in (("between-site effect SD", sc.site_sd[L.site_effect(p)], effect_sd),
                           ("person-level effect SD", sc.effect_sd[p], person_effect_sd)):
        if old == 0:
            changes.append(f"{what} of {name} set to {new:g} (zero in the design)")

    def extra(r):
        _set_entry(r, "mediators", "curvature_site_sd", p, site_sd, P)
        _set_entry(r, "mediators", "curvature_person_sd", p, person_sd, P)
        _set_entry(r, "site", "effect_sd", p, effect_sd, P)
        _set_entry(r, "person", "effect_sd", p, person_effect_sd, P)
    paths = [f"mediators.curvature_effect_correlation[{p + 1}]",
             f"mediators.curvature_site_effect_correlation[{p + 1}]"]
    return d.plan(paths, [v, v], changes=changes, extra=extra)


# ---------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------

ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption("spillover", "i", "SUTVA", "Spillovers onto controls",
               "controls' outcomes move with the share treated in their site (displacement or contamination), "
               "so the site ITT on the outcome no longer comes only through the mediators",
               "outcome units per unit share treated in the site", lambda d: round(d.itt, 4), True, _spillover,
               axes=(("spillover.outcome", "outcome spillover on controls [assumption i, SUTVA]"),
                     ("spillover.mediator", "mediator spillover on controls [assumption i, SUTVA]"))),
    Assumption("spillover_treated", "i", "SUTVA", "Spillovers onto the treated",
               "the treated's outcomes move with the share treated in their site (crowding or peer effects among "
               "the treated), which the site ITT on the outcome credits to the mediators",
               "outcome units per unit share treated in the site", lambda d: round(d.itt, 4), True,
               _spillover_treated,
               axes=(("spillover.treated_outcome", "outcome spillover on the treated [assumption i, SUTVA]"),
                     ("spillover.treated_mediator", "mediator spillover on the treated [assumption i, SUTVA]"))),
    Assumption("direct_effect", "ii", "exclusion", "A direct effect of treatment on the outcome",
               "the offer changes the outcome by a route other than the mediators, and 2SLS through the origin "
               "credits that route to the mediators",
               "outcome units per unit of treatment dose", lambda d: round(0.5 * d.itt / (d.scenario.arms - 1), 4),
               True, _direct_effect,
               axes=(("site.direct_effect_mean", "mean direct effect E[κ] [assumption ii, exclusion]"),
                     ("site.direct_effect_sd", "between-site SD of the direct effect sd(κ) [assumption ii, exclusion]"),
                     ("site.direct_effect_compliance_correlation",
                      "corr(κ, γ) between sites [assumption ii, exclusion]"))),
    Assumption("mediator_curvature", "iii", "M linear in T", "Mediators not linear in the treatment dose",
               "the higher arms move the mediators more (or less) than in proportion",
               "curvature c of g(t) = t + c t(t-1)", lambda d: 0.5, True, _mediator_curvature,
               axes=(("mediators.curvature", "mediator curvature c in g(t) = t + c t(t−1) [assumption iii]"),)),
    Assumption("outcome_curvature", "iv", "Y linear in M", "An outcome not linear in the mediators",
               "the outcome responds to the square of a mediator, so the effect of a unit depends on the level",
               "curvature phi of h(m) = m + phi m^2", lambda d: 0.2, True, _outcome_curvature,
               axes=(("mediators.outcome_curvature", "outcome curvature φ in h(m) = m + φ m² [assumption iv]"),)),
    Assumption("mediator_interaction", "iv", "Y linear in M, no interactions", "Mediators interacting in the outcome",
               "the effect of one mediator depends on the level of another (Y has an M_p x M_q term)",
               "coefficient theta of Y += theta M_p M_q", lambda d: 0.2, True, _mediator_interaction,
               axes=(("interactions.coefficient", "interaction θ in Y += θ M_p M_q [assumption iv]"),)),
    Assumption("mediator_paths", "v", "parallel mediators", "One mediator moving another",
               "part of the treatment's effect on a later mediator runs through an earlier one, with person-level "
               "path coefficients that go with the later mediator's effect",
               "path coefficient (mean and person SD), downstream mediator units per upstream unit",
               lambda d: 1.0, True, _mediator_paths,
               axes=(("paths.mean", "mean mediator-path coefficient [assumption v, parallel mediators]"),
                     ("paths.person_sd", "within-site SD of the mediator path [assumption v, parallel mediators]"),
                     ("paths.effect_correlation", "corr(path coefficient, Δ_q) [assumption v, parallel mediators]"))),
    Assumption("path_site_correlation", "v", "parallel mediators, between sites",
               "A site's path coefficient going with the downstream effect",
               "sites where one mediator moves another more are also sites where the other matters more, so the "
               "upstream mediator's instruments carry part of the downstream effect",
               "correlation corr(beta, delta) between sites of the path coefficient and the downstream effect",
               lambda d: 0.6, True, _path_site_correlation,
               axes=(("paths.site_sd", "between-site SD of the mediator path [assumption v, parallel mediators]"),
                     ("site.correlations.path_*:effect_*",
                      "between-site corr({term}) of a path coefficient and the downstream effect "
                       "[assumption v, parallel mediators]"))),
    Assumption("selection", "vi", "ignorable assignment", "Selection into treatment",
               "within sites, persons with higher untreated outcomes are more likely to be treated",
               "probit index strength xi on the standardized Y(0)", lambda d: 1.0, True, _selection,
               axes=(("selection.strength", "selection into treatment ξ (probit index) [assumption vi]"),)),
    Assumption("within_site_correlation", "vii.a", "no within-site compliance-effect covariance",
               "Within-site correlation of compliance and effect",
               "persons who respond more to the offer also gain more from the mediator, so each site's IV ratio "
               "tends to delta + cov(Gamma, Delta) / gamma instead of delta",
               "correlation corr(Gamma, Delta) within sites", lambda d: 0.6, True, _within_site_correlation,
               axes=(("person.within_site_correlation", "within-site correlation corr(Γ, Δ) [assumption vii.a]"),)),
    Assumption("defiers", "vii.b", "no defiers", "Defiers",
               "some persons take up the mediator only when not offered, entering the estimand with a negative "
               "weight", "share of persons who are defiers", lambda d: 0.15, True, _defiers,
               axes=(("binary.defier_share", "share of defiers [assumption vii.b]"),)),
    Assumption("rank", "viii", "rank of the compliance matrix", "A weak or collinear compliance matrix",
               "the sites' compliances carry less independent variation, so the mediators' effects are barely "
               "separable (weak instruments)",
               "between-site correlation of the compliances (one mediator: the compliance SD, shrunk)",
               lambda d: 0.9, False, _rank,
               axes=(("site.compliance_sd", "between-site SD of compliance sd(γ) [assumption viii, rank]"),
                     ("site.compliance_correlation", "corr(γ_p, γ_q) between sites [assumption viii, rank]"))),
    Assumption("between_site_correlation", "ix", "between-site independence",
               "Between-site correlation of compliance and effect",
               "sites where the offer moves the mediator more are also sites where the mediator matters more",
               "correlation corr(gamma, delta) between sites", lambda d: 0.6, True, _between_site_correlation,
               axes=(("site.compliance_effect_correlation", "between-site correlation corr(γ, δ) [assumption ix]"),)),
    Assumption("site_skew", "ix", "between-site distribution, skewed", "Skewed site distribution",
               "the sites' compliances and effects are skewed (same means and covariance), so the third moments "
               "E[gamma gamma delta] that the 2SLS limit reads differ from the normal's",
               "b of z -> sqrt(1 - b^2) z + b (z^2 - 1)/sqrt 2", lambda d: 0.6, True, _site_distribution("skew"),
               axes=(("site.skew", "skewness b of the site distribution [assumption ix]"),)),
    Assumption("site_heavy_tails", "ix", "between-site distribution, heavy-tailed", "Heavy-tailed site distribution",
               "a few sites have extreme compliances or effects (multivariate t, same covariance): the limits that "
               "read fourth moments move, and the estimators' finite-sample behaviour with them",
               "1/nu of the multivariate t", lambda d: 0.2, True, _site_distribution("heavy_tails"),
               axes=(("site.heavy_tails",
                      "heavy tails 1/ν of the site distribution (multivariate t) [assumption ix]"),)),
    Assumption("nonlinear_dependence", "ix", "between-site independence, nonlinear",
               "Nonlinear between-site dependence",
               "the mediator's effect depends on the site's compliance nonlinearly, with zero correlation, which "
               "a correlation check cannot see",
               "lambda of delta = ... + lambda sd(delta) (u^2 - 1)/sqrt 2", lambda d: 1.0, True,
               _nonlinear_dependence,
               axes=(("site.nonlinear_dependence", "nonlinear dependence λ of δ on γ [assumption ix]"),)),
    Assumption("cross_dependence", "ix", "between-site independence, across mediators",
               "Nonlinear between-site dependence across mediators",
               "the second mediator's effect depends on the product of the sites' compliances of the first and "
               "second mediators, which neither a correlation check nor a test of the squared compliances sees",
               "lambda of delta_2 = ... + lambda sd(delta_2) (u_1 u_2 - r)/sqrt(1 + r^2)", lambda d: 1.0, True,
               _cross_dependence,
               axes=(("site.cross_dependence.*",
                      "nonlinear dependence λ across mediators ({term}) [assumption ix]"),)),
    Assumption("curvature_heterogeneity", "iii", "M linear in T, one dose curve",
               "Dose curves that vary by site and person",
               "the top arm moves the mediator more than in proportion for some sites and persons than for others, "
               "and more for those whom the mediator helps more, so the top arm's first stage carries larger effects",
               "correlation corr(c, Delta) of the curvature with the mediator's effect, within and between sites",
               lambda d: 0.6, True, _curvature_heterogeneity,
               axes=(("mediators.curvature_effect_correlation",
                      "corr(c_i, Δ_i) of the person curvature and effect [assumption iii]"),
                     ("mediators.curvature_site_effect_correlation",
                      "corr(c_s, δ_s) of the site curvature and effect [assumption iii]"),
                     ("mediators.curvature_site_sd", "between-site SD of the mediator curvature [assumption iii]"),
                     ("mediators.curvature_person_sd", "within-site SD of the mediator curvature [assumption iii]"))),
)
"""Every assumption the stress test sweeps, in the paper's order."""

BY_KEY: dict[str, Assumption] = {a.key: a for a in ASSUMPTIONS}

DESIGN_LABELS: dict[str, str] = {
    "n_sites": "number of sites K [finite sample; assumption viii when K < P]",
    "n_per_site": "persons per site n_s [finite sample]",
    "treatment.share": "share treated p_s",
    "treatment.arms": "treatment arms L + 1",
    "site.compliance_mean": "mean compliance E[γ] [instrument strength]",
    "site.effect_mean": "mean effect E[δ] (the ATE)",
    "site.effect_sd": "between-site SD of the effect sd(δ)",
    "person.compliance_sd": "within-site SD of compliance sd(Γ)",
    "person.effect_sd": "within-site SD of the effect sd(Δ)",
    "person.confounding": "confounding corr(M(0), Y(0))",
    "binary.complier_share": "share of compliers",
    "binary.never_share": "share of never-takers",
    "binary.always_share": "share of always-takers",
    "binary.complier_share_site_sd": "between-site SD of the complier share",
    "binary.defier_effect_shift": "effect shift of defiers (Δ defier − Δ complier)",
    "binary.always_effect_shift": "effect shift of always-takers",
    "binary.never_effect_shift": "effect shift of never-takers",
}
"""Axis labels of the design parameters that are no assumption's dial (sizes, means, SDs, shares), by
dotted grid path without list indices; the dials' own labels are their :attr:`Assumption.axes`."""


def axis_labels() -> dict[str, str]:
    """Every axis label by scenario path: each assumption's :attr:`~Assumption.axes`, then :data:`DESIGN_LABELS`.

    Returns
    -------
    dict of str to str
        Path (dotted, without list indices; ``*`` patterns kept as such) -> label.  A path two
        assumptions both claim keeps the first one's label (the catalogue's order).
    """
    out: dict[str, str] = {}
    for a in ASSUMPTIONS:
        for path, label in a.axes:
            out.setdefault(path, label)
    for path, label in DESIGN_LABELS.items():
        out.setdefault(path, label)
    return out


def design(raw: dict, source: str, options: dict | None = None) -> Design:
    """The :class:`Design` of a raw scenario table (validated)."""
    return Design(raw, from_dict(copy.deepcopy(raw), source), dict(options or {}))
