"""The frozen scenario: :class:`Scenario`, its nested read-only views, and how it is built.

:func:`build` turns a checked, normalised table (see :mod:`simulate.scenario.validation`)
into a :class:`Scenario`: flat per-mediator tuples of length P (the names the engine
reads: ``site_mean``, ``person_correlation``, ...), the canonical JSON ``spec`` of the
table (the source of :attr:`Scenario.hash`), and views that mirror the TOML tables
(``sc.person.within_site_correlation``, ``sc.site.correlations``, ``sc.site.mean``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..layout import path_name
from .schema import SCHEMA, Field, _component_names

CURVATURE_KEYS = ("curvature_site_sd", "curvature_person_sd", "curvature_site_effect_correlation",
                  "curvature_effect_correlation")
"""The ``[mediators]`` keys of dose curves varying by site and person (left out of the spec while all 0)."""

__all__ = ["CURVATURE_KEYS", "Path_", "Scenario", "Pairs", "TreatmentSpec",
           "MediatorsSpec", "SiteSpec", "PersonSpec", "BinarySpec",
           "SelectionSpec", "SpilloverSpec", "correlation_matrix", "arm_counts", "build"]


@dataclass(frozen=True)
class Path_:
    """A path from an earlier mediator to a later one (assumption v)."""

    source: int  # 0-based
    target: int  # 0-based
    mean: float
    site_sd: float
    person_sd: float
    effect_correlation: float


# ---------------------------------------------------------------------------
# Nested read-only views: one per TOML table, built from the normalised spec
# ---------------------------------------------------------------------------


class Pairs(Mapping):
    """A read-only mapping of named correlation pairs, ``{"compliance_1:effect_1": 0.3, ...}``.

    Immutable, hashable and picklable (a tuple of ``(pair, value)`` items inside).

    Parameters
    ----------
    items
        ``(pair, value)`` items, or a mapping of them.
    """

    __slots__ = ("_items",)

    def __init__(self, items=()):
        pairs = items.items() if isinstance(items, Mapping) else items
        object.__setattr__(self, "_items", tuple((str(k), float(v)) for k, v in pairs))

    def __getitem__(self, key: str) -> float:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other) -> bool:
        return dict(self) == dict(other) if isinstance(other, Mapping) else NotImplemented

    def __setattr__(self, name, value):
        raise AttributeError("Pairs is read-only")

    def __reduce__(self):
        return (Pairs, (self._items,))

    def __repr__(self) -> str:
        return f"Pairs({dict(self._items)!r})"


@dataclass(frozen=True)
class TreatmentSpec:
    """``[treatment]``: the arms and their assignment."""

    arms: int
    arm_shares: tuple[tuple[float, ...], ...]  # per site, shares of arms 0..L
    assignment: str


@dataclass(frozen=True)
class MediatorsSpec:
    """``[mediators]``: the P mediators (per-mediator values are tuples of length P)."""

    count: int
    names: tuple[str, ...]
    kind: tuple[str, ...]
    curvature: tuple[float, ...]
    outcome_curvature: tuple[float, ...]
    curvature_site_sd: tuple[float, ...] = ()  # () or P values: the dose curve varying by site (iii)
    curvature_person_sd: tuple[float, ...] = ()
    curvature_site_effect_correlation: tuple[float, ...] = ()
    curvature_effect_correlation: tuple[float, ...] = ()


@dataclass(frozen=True)
class SiteSpec:
    """``[site]``: the between-site distribution, as the file's keys, plus the assembled moments.

    ``correlations`` holds the named pairs of the file (``site.correlations``); ``names``,
    ``mean``, ``sd`` and ``correlation`` are the assembled vectors and matrix over the
    components compliance_1..P, effect_1..P, direct_effect (the flat ``site_mean``,
    ``site_sd`` and ``site_correlation``).
    """

    compliance_mean: tuple[float, ...]
    compliance_sd: tuple[float, ...]
    effect_mean: tuple[float, ...]
    effect_sd: tuple[float, ...]
    direct_effect_mean: float
    direct_effect_sd: float
    compliance_effect_correlation: tuple[float, ...]
    compliance_correlation: float
    direct_effect_compliance_correlation: tuple[float, ...]
    nonlinear_dependence: tuple[float, ...]
    mediator_baseline_sd: tuple[float, ...]
    outcome_baseline_sd: float
    correlations: Pairs
    names: tuple[str, ...]
    mean: tuple[float, ...]
    sd: tuple[float, ...]
    correlation: tuple[tuple[float, ...], ...]
    cross_dependence: Pairs = Pairs()  # [site.cross_dependence]: "effect_p:compliance_q:compliance_r" = lambda
    heavy_tails: float = 0.0
    skew: float = 0.0


@dataclass(frozen=True)
class PersonSpec:
    """``[person]``: the within-site distribution, as the file's keys, plus the assembled matrix.

    ``correlations`` holds the named pairs of the file (``person.correlations``); ``names``
    and ``correlation`` are the components compliance_1..P, effect_1..P, mediator_1..P,
    outcome and their correlation matrix (the flat ``person_correlation``).
    """

    mediator_mean: tuple[float, ...]
    mediator_sd: tuple[float, ...]
    outcome_mean: float
    outcome_sd: float
    compliance_sd: tuple[float, ...]
    effect_sd: tuple[float, ...]
    within_site_correlation: tuple[float, ...]
    confounding: tuple[float, ...]
    correlations: Pairs
    names: tuple[str, ...]
    correlation: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class BinarySpec:
    """``[binary]``: the compliance types of binary mediators (defaults where no mediator is binary)."""

    complier_share: tuple[float, ...]
    always_share: tuple[float, ...]
    never_share: tuple[float, ...]
    defier_share: tuple[float, ...]
    complier_share_site_sd: tuple[float, ...]
    always_effect_shift: tuple[float, ...]
    never_effect_shift: tuple[float, ...]
    defier_effect_shift: tuple[float, ...]


@dataclass(frozen=True)
class SelectionSpec:
    """``[selection]``: selection into treatment (``mediator`` counts from 1, as in the file)."""

    strength: float
    on: str
    mediator: int


@dataclass(frozen=True)
class SpilloverSpec:
    """``[spillover]``: spillovers onto controls (``outcome``, ``mediator``) and onto the treated."""

    outcome: float
    mediator: tuple[float, ...]
    treated_outcome: float = 0.0
    treated_mediator: tuple[float, ...] = ()


def _frozen(value):
    """Lists as tuples, all the way down (the spec's JSON values as a view holds them)."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _table_view(cls, spec: dict, table: str, P: int, **extra):
    """A view of one TOML table: its values in the spec, else the schema's default (broadcast to P).

    The spec leaves out the keys that do not apply (``[binary]`` without a binary mediator, the
    continuous-only keys when every mediator is binary); their values are the defaults the
    flat fields were built from.
    """
    given = spec.get(table, {})
    values = {}
    for key, f in SCHEMA[table].items():
        if not isinstance(f, Field):
            continue
        if key in given:
            values[key] = _frozen(given[key])
        else:
            values[key] = (f.default,) * P if f.per_mediator else f.default
    return cls(**values, **extra)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario.  Per-mediator values are tuples of length ``n_mediators``.

    The public fields use the paper's terms; :attr:`spec` keeps the normalised
    table the scenario was built from (the source of :attr:`hash`).
    """

    name: str
    description: str
    n_sites: int
    n_per_site: tuple[int, ...] | None  # fixed sizes (one per site), or None for a range
    n_per_site_range: tuple[int, int] | None  # (min, max), drawn uniformly per site and replication
    arms: int
    arm_shares: tuple[tuple[float, ...], ...]  # per site, shares of arms 0..L
    assignment: str
    mediator_names: tuple[str, ...]
    mediator_kind: tuple[str, ...]
    curvature: tuple[float, ...]
    outcome_curvature: tuple[float, ...]
    site_mean: tuple[float, ...]  # (compliance_1..P, effect_1..P, direct_effect)
    site_sd: tuple[float, ...]
    site_correlation: tuple[tuple[float, ...], ...]
    nonlinear_dependence: tuple[float, ...]
    mediator_baseline_sd: tuple[float, ...]
    outcome_baseline_sd: float
    mediator_mean: tuple[float, ...]
    mediator_sd: tuple[float, ...]
    outcome_mean: float
    outcome_sd: float
    compliance_sd: tuple[float, ...]  # person level
    effect_sd: tuple[float, ...]  # person level
    person_correlation: tuple[tuple[float, ...], ...]  # (compliance_p, effect_p, mediator_p, outcome)
    complier_share: tuple[float, ...]
    always_share: tuple[float, ...]
    never_share: tuple[float, ...]
    defier_share: tuple[float, ...]
    complier_share_site_sd: tuple[float, ...]
    effect_shift: tuple[tuple[float, float, float, float], ...]  # per mediator: complier, always, never, defier
    paths: tuple[Path_, ...]
    selection_strength: float
    selection_on: str
    selection_mediator: int  # 0-based
    spillover_outcome: float
    spillover_mediator: tuple[float, ...]
    spec: str  # canonical JSON of the normalised table
    warnings: tuple[str, ...] = ()
    # cross-mediator nonlinear dependence (assumption ix): (p, q, r, lambda) adds
    # lambda sd(delta_p) (z_q z_r - corr(z_q, z_r)) / sqrt(1 + corr^2) to delta_p (0-based, q <= r)
    cross_dependence: tuple[tuple[int, int, int, float], ...] = ()
    site_path_correlation: tuple[tuple[float, ...], ...] = ()  # the extended site vector's (2P+1+R); () if R = 0
    site_heavy_tails: float = 0.0  # 1/nu of the multivariate t site distribution (0: normal)
    site_skew: float = 0.0  # b of the skewed site distribution (0: normal)
    spillover_treated_outcome: float = 0.0
    spillover_treated_mediator: tuple[float, ...] = ()  # () or P values
    interactions: tuple[tuple[int, int, float], ...] = ()  # (p, q, theta_pq), 0-based p < q: Y += theta M_p M_q
    # dose curves varying by site and person (assumption iii): c_pi = c_p + c_site_ps + c_person_pi with
    # c_site_ps = sd_s (rho_s u_delta_ps + sqrt(1 - rho_s^2) z_ps), c_person_pi = sd_i (rho_i u_Delta_pi + ...)
    curvature_site_sd: tuple[float, ...] = ()  # () (off) or P values
    curvature_person_sd: tuple[float, ...] = ()
    curvature_site_effect_correlation: tuple[float, ...] = ()
    curvature_effect_correlation: tuple[float, ...] = ()

    @property
    def n_mediators(self) -> int:
        """The number of mediators P."""
        return len(self.mediator_names)

    @property
    def curvature_varies(self) -> tuple[bool, ...]:
        """Per mediator, whether its dose curve varies between sites or persons (assumption iii)."""
        P = self.n_mediators
        site = self.curvature_site_sd or (0.0,) * P
        person = self.curvature_person_sd or (0.0,) * P
        return tuple(a > 0.0 or b > 0.0 for a, b in zip(site, person))

    @property
    def binary_treatment(self) -> bool:
        """Whether the treatment has two arms (control and one treated arm)."""
        return self.arms == 2

    @property
    def is_binary(self) -> tuple[bool, ...]:
        """Per mediator, whether its kind is ``binary``."""
        return tuple(k == "binary" for k in self.mediator_kind)

    @property
    def hash(self) -> str:
        """A stable content hash: sha256 of the canonical normalised table (16 hex digits)."""
        return hashlib.sha256(self.spec.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        """The normalised table (every default filled in), suitable for ``tomli_w``/JSON.

        The newer dials that :func:`build` leaves out of ``spec`` while they are off (so that a
        scenario without them keeps its hash) are filled in with their defaults here.
        """
        d = json.loads(self.spec)
        P = self.n_mediators
        spill = d.setdefault("spillover", {})
        spill.setdefault("treated_outcome", 0.0)
        spill.setdefault("treated_mediator", [0.0] * P)
        site = d.setdefault("site", {})
        site.setdefault("heavy_tails", 0.0)
        site.setdefault("skew", 0.0)
        d.setdefault("interactions", [])
        med = d.setdefault("mediators", {})
        for key in CURVATURE_KEYS:
            med.setdefault(key, [0.0] * P)
        return d

    def dose(self, p: int) -> np.ndarray:
        """g_p(t) = t + c_p t (t - 1) for t = 0..L (assumption iii)."""
        t = np.arange(self.arms, dtype=float)
        return t + self.curvature[p] * t * (t - 1.0)

    # nested read-only views mirroring the TOML tables (built once, from the spec: the hash's source)

    @cached_property
    def _spec_table(self) -> dict:
        return json.loads(self.spec)

    @cached_property
    def treatment(self) -> TreatmentSpec:
        """``[treatment]``: ``arms``, ``arm_shares`` (per site), ``assignment``."""
        return TreatmentSpec(arms=self.arms, arm_shares=self.arm_shares, assignment=self.assignment)

    @cached_property
    def mediators(self) -> MediatorsSpec:
        """``[mediators]``: ``count``, ``names``, ``kind``, ``curvature``, ``outcome_curvature``."""
        P = self.n_mediators
        return MediatorsSpec(count=P, names=self.mediator_names, kind=self.mediator_kind,
                             curvature=self.curvature, outcome_curvature=self.outcome_curvature,
                             **{key: getattr(self, key) or (0.0,) * P for key in CURVATURE_KEYS})

    @cached_property
    def site(self) -> SiteSpec:
        """``[site]``: every key of the table, the named ``correlations``, and ``mean``, ``sd``, ``correlation``."""
        spec = self._spec_table
        values = _table_view(dict, spec, "site", self.n_mediators)
        P = self.n_mediators
        # the compliance keys are left out of the spec when every mediator is binary: the flat fields hold them
        values["compliance_mean"] = self.site_mean[:P]
        values["compliance_sd"] = self.site_sd[:P]
        return SiteSpec(**values, correlations=Pairs(spec.get("site", {}).get("correlations", {})),
                        cross_dependence=Pairs(spec.get("site", {}).get("cross_dependence", {})),
                        names=tuple(_component_names("site", P)), mean=self.site_mean, sd=self.site_sd,
                        correlation=self.site_correlation)

    @cached_property
    def person(self) -> PersonSpec:
        """``[person]``: every key of the table, the named ``correlations``, and ``correlation``."""
        spec = self._spec_table
        values = _table_view(dict, spec, "person", self.n_mediators)
        values.update(mediator_mean=self.mediator_mean, mediator_sd=self.mediator_sd,
                      compliance_sd=self.compliance_sd)  # left out of the spec when every mediator is binary
        return PersonSpec(**values, correlations=Pairs(spec.get("person", {}).get("correlations", {})),
                          names=tuple(_component_names("person", self.n_mediators)),
                          correlation=self.person_correlation)

    @cached_property
    def binary(self) -> BinarySpec:
        """``[binary]``: the type shares and effect shifts (the defaults where no mediator is binary)."""
        return _table_view(BinarySpec, self._spec_table, "binary", self.n_mediators)

    @cached_property
    def selection(self) -> SelectionSpec:
        """``[selection]``: ``strength``, ``on``, ``mediator`` (from 1, as in the file)."""
        return SelectionSpec(strength=self.selection_strength, on=self.selection_on,
                             mediator=self.selection_mediator + 1)

    @cached_property
    def spillover(self) -> SpilloverSpec:
        """``[spillover]``: ``outcome``, ``mediator``, ``treated_outcome``, ``treated_mediator``."""
        return SpilloverSpec(outcome=self.spillover_outcome, mediator=self.spillover_mediator,
                             treated_outcome=self.spillover_treated_outcome,
                             treated_mediator=self.spillover_treated_mediator)


def correlation_matrix(level: str, table: dict, P: int, paths=None) -> np.ndarray:
    """Assemble the site- or person-level correlation matrix from convenience fields and pairs.

    Site order: compliance_1..P, effect_1..P, direct_effect.
    Person order: compliance_1..P, effect_1..P, mediator_1..P, outcome.
    Named pairs in ``correlations`` override the convenience fields.  ``paths`` (site level
    only: the (source, target) mediators of the paths, 0-based, in the scenario's order)
    extends the site matrix by the path coefficients ``path_<from>_<to>`` (:mod:`simulate.layout`);
    without it the pairs that name a path are left out.
    """
    names = _component_names(level, P)
    if level == "site" and paths:
        names = names + [path_name(a, b) for a, b in paths]
    idx = {n: i for i, n in enumerate(names)}
    R = np.eye(len(names))

    def put(a, b, v):
        R[idx[a], idx[b]] = R[idx[b], idx[a]] = v

    if level == "site":
        for p in range(P):
            put(f"compliance_{p + 1}", f"effect_{p + 1}", table["compliance_effect_correlation"][p])
            put("direct_effect", f"compliance_{p + 1}", table["direct_effect_compliance_correlation"][p])
            for q in range(p + 1, P):
                put(f"compliance_{p + 1}", f"compliance_{q + 1}", table["compliance_correlation"])
    else:
        for p in range(P):
            put(f"compliance_{p + 1}", f"effect_{p + 1}", table["within_site_correlation"][p])
            put(f"mediator_{p + 1}", "outcome", table["confounding"][p])
    for key, v in table["correlations"].items():
        a, b = key.split(":")
        if a in idx and b in idx:
            put(a, b, v)
    return R


def arm_counts(n: int, shares) -> list[int]:
    """Exact arm sizes for complete randomization: largest-remainder rounding of n * share.

    Ties in the remainders go to the lower arm, so the rule is deterministic.
    """
    raw = [n * s for s in shares]
    base = [int(math.floor(x + 1e-9)) for x in raw]
    left = n - sum(base)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    return base


def build(t: dict, source: str) -> Scenario:
    """The frozen :class:`Scenario` of a checked, normalised table (see :mod:`simulate.scenario.validation`).

    The bookkeeping keys ``_warnings`` (kept as the scenario's warnings), ``_given`` and ``_lists``
    are popped from ``t``; ``source`` (the input's name, for messages) is not used.  The steps:
    the canonical spec (:func:`_spec`, the hash's source), then the flat fields by table
    (:func:`_design_fields`, :func:`_site_fields`, :func:`_person_fields`, :func:`_binary_fields`,
    :func:`_dial_fields`).
    """
    warnings = tuple(t.pop("_warnings", ()))
    for key in ("_given", "_lists"):
        t.pop(key, None)
    spec = _spec(t)
    return Scenario(**_design_fields(t), **_site_fields(t), **_person_fields(t), **_binary_fields(t),
                    **_dial_fields(t), spec=spec, warnings=warnings)


def _curving(mediators: dict) -> bool:
    """Whether any dose-curve key of ``[mediators]`` (:data:`CURVATURE_KEYS`) is set."""
    return any(x != 0.0 for key in CURVATURE_KEYS for x in mediators.get(key, ()))


def _spec(t: dict) -> str:
    """The canonical JSON of the normalised table, in the input format (``from_dict`` reads it back).

    Keys that do not apply are left out (``[binary]`` without a binary mediator, the continuous-only
    keys when every mediator is binary), and so are the newer dials while they are off, so that a
    scenario without them keeps its hash.  Only the tables edited here are copied (one level),
    since ``json.dumps`` reads the rest and nothing else writes to it.
    """
    shares = t["treatment"]["arm_shares"]
    spec_table = {k: (dict(v) if isinstance(v, dict) else v) for k, v in t.items()}
    spec_table["treatment"] = dict(t["treatment"])
    if len(_distinct(shares)) == 1:
        spec_table["treatment"]["arm_shares"] = shares[0]
    else:
        del spec_table["treatment"]["arm_shares"]
        spec_table["treatment"]["share"] = [row[1] for row in shares]
    if not t["site"].get("cross_dependence"):  # off: left out, so the hashes of scenarios without it stay
        spec_table["site"] = {k: v for k, v in spec_table["site"].items() if k != "cross_dependence"}
    kinds = spec_table["mediators"]["kind"]
    if "binary" not in kinds:
        del spec_table["binary"]
    if "continuous" not in kinds:
        for key in ("compliance_sd", "mediator_mean", "mediator_sd"):
            del spec_table["person"][key]
        for key in ("compliance_mean", "compliance_sd"):
            del spec_table["site"][key]
    spill = spec_table["spillover"] = dict(spec_table["spillover"])
    for key in ("treated_outcome", "treated_mediator"):
        v = spill.get(key, 0.0)
        if not any(x != 0.0 for x in (v if isinstance(v, list) else [v])):
            spill.pop(key, None)
    if not spec_table.get("interactions"):
        spec_table.pop("interactions", None)
    if not _curving(spec_table["mediators"]):
        for key in CURVATURE_KEYS:
            spec_table["mediators"].pop(key, None)
    site_spec = spec_table["site"] = dict(spec_table["site"])
    for key in ("heavy_tails", "skew"):
        if site_spec.get(key, 0.0) == 0.0:
            site_spec.pop(key, None)
    return json.dumps(spec_table, sort_keys=True, separators=(",", ":"))


def _matrix(R) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in R)


def _path_rows(t: dict) -> list[dict]:
    """The paths in the scenario's order: by target, then source."""
    return sorted(t["paths"], key=lambda x: (x["to"], x["from"]))


def _design_fields(t: dict) -> dict:
    """Name, sizes, arms and their shares, the mediators' names, kinds and dose curves."""
    K = t["n_sites"]
    sizes = t["n_per_site"]
    med = t["mediators"]
    return dict(
        name=t["name"],
        description=t["description"],
        n_sites=K,
        n_per_site=(tuple(sizes) if isinstance(sizes, list) else (sizes,) * K) if not isinstance(sizes, dict) else None,
        n_per_site_range=(sizes["min"], sizes["max"]) if isinstance(sizes, dict) else None,
        arms=t["treatment"]["arms"],
        arm_shares=_share_rows(t["treatment"]["arm_shares"]),
        assignment=t["treatment"]["assignment"],
        mediator_names=tuple(med["names"]),
        mediator_kind=tuple(med["kind"]),
        curvature=tuple(med["curvature"]),
        outcome_curvature=tuple(med["outcome_curvature"]),
        **{key: tuple(med[key]) if _curving(med) else () for key in CURVATURE_KEYS},
    )


def _site_fields(t: dict) -> dict:
    """``[site]``: the site vector's means, SDs and correlation (extended by the paths), and its other dials."""
    P = t["mediators"]["count"]
    site = t["site"]
    ends = [(pa["from"] - 1, pa["to"] - 1) for pa in _path_rows(t)]
    R_ext = correlation_matrix("site", site, P, ends) if ends else np.zeros((0, 0))
    return dict(
        site_mean=tuple(site["compliance_mean"]) + tuple(site["effect_mean"]) + (site["direct_effect_mean"],),
        site_sd=tuple(site["compliance_sd"]) + tuple(site["effect_sd"]) + (site["direct_effect_sd"],),
        site_correlation=_matrix(correlation_matrix("site", site, P)),
        nonlinear_dependence=tuple(site["nonlinear_dependence"]),
        mediator_baseline_sd=tuple(site["mediator_baseline_sd"]),
        outcome_baseline_sd=site["outcome_baseline_sd"],
        cross_dependence=_cross_terms(site.get("cross_dependence", {})),
        site_path_correlation=_matrix(R_ext),
        site_heavy_tails=site["heavy_tails"], site_skew=site["skew"],
    )


def _person_fields(t: dict) -> dict:
    """``[person]``: the within-site means and SDs and the person correlation matrix."""
    P = t["mediators"]["count"]
    person = t["person"]
    return dict(
        mediator_mean=tuple(person["mediator_mean"]),
        mediator_sd=tuple(person["mediator_sd"]),
        outcome_mean=person["outcome_mean"],
        outcome_sd=person["outcome_sd"],
        compliance_sd=tuple(person["compliance_sd"]),
        effect_sd=tuple(person["effect_sd"]),
        person_correlation=_matrix(correlation_matrix("person", person, P)),
    )


def _binary_fields(t: dict) -> dict:
    """``[binary]``: the type shares and the effect shifts per type (complier, always, never, defier)."""
    P = t["mediators"]["count"]
    b = t["binary"]
    return dict(
        complier_share=tuple(b["complier_share"]),
        always_share=tuple(b["always_share"]),
        never_share=tuple(b["never_share"]),
        defier_share=tuple(b["defier_share"]),
        complier_share_site_sd=tuple(b["complier_share_site_sd"]),
        effect_shift=tuple((0.0, b["always_effect_shift"][p], b["never_effect_shift"][p], b["defier_effect_shift"][p])
                           for p in range(P)),
    )


def _dial_fields(t: dict) -> dict:
    """The paths, selection, spillovers and interactions (0-based mediators)."""
    sel, spill = t["selection"], t["spillover"]
    return dict(
        paths=tuple(Path_(pa["from"] - 1, pa["to"] - 1, pa["mean"], pa["site_sd"], pa["person_sd"],
                          pa["effect_correlation"]) for pa in _path_rows(t)),
        selection_strength=sel["strength"],
        selection_on=sel["on"],
        selection_mediator=sel["mediator"] - 1,
        spillover_outcome=spill["outcome"],
        spillover_mediator=tuple(spill["mediator"]),
        spillover_treated_outcome=spill["treated_outcome"],
        spillover_treated_mediator=tuple(spill["treated_mediator"]),
        interactions=tuple((ia["first"] - 1, ia["second"] - 1, ia["coefficient"]) for ia in t.get("interactions", [])),
    )


def _cross_terms(table: dict) -> tuple[tuple[int, int, int, float], ...]:
    """The non-zero ``[site.cross_dependence]`` terms as (p, q, r, lambda), 0-based, in name order."""
    out = []
    for name in sorted(table):
        if table[name] != 0.0:
            p, q, r = (int(part.split("_")[1]) - 1 for part in name.split(":"))
            out.append((p, q, r, float(table[name])))
    return tuple(out)


def _distinct(rows) -> set[tuple]:
    """The distinct per-site share rows (rows repeated as one object are looked at once)."""
    return {tuple(r) for r in {id(r): r for r in rows}.values()}


def _share_rows(rows) -> tuple[tuple[float, ...], ...]:
    """Per-site share rows as tuples, a row object repeated over sites giving one tuple."""
    seen: dict[int, tuple] = {}
    return tuple(seen.get(id(r)) or seen.setdefault(id(r), tuple(r)) for r in rows)
