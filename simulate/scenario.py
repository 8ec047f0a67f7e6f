"""Scenario files: read, validate, sweep.

A scenario is a small TOML file that describes one multisite, multi-mediator IV
design and how far each of the founding paper's assumptions fails (Reardon &
Raudenbush 2013).  Every dial defaults to zero, where its assumption holds.

Reading a file goes through three steps, all before any simulation starts:

1. ``tomllib`` parses the text;
2. :func:`validate_raw` checks every key against :data:`SCHEMA` (unknown keys are
   rejected with the nearest valid name), every type and range, and the
   cross-field constraints (shares sum to one, correlation matrices are positive
   semi-definite, enough persons per arm, ...).  The first failure is raised as a
   :class:`ScenarioError` whose message is one line naming the file, the field and
   the constraint;
3. :func:`build` turns the checked table into a frozen :class:`Scenario` with every
   per-mediator value broadcast to a tuple of length P.

A ``[grid]`` table sweeps any number by its dotted path (``site.effect_sd``,
``site.compliance_mean[2]`` for mediator 2, ``paths[1].mean``, or a pair such as
``person.correlations.compliance_1:effect_1``).  Listed paths form a cartesian
product; paths named together in ``zip = [["a", "b"]]`` move together.  Each grid
cell is a full scenario with a stable content hash.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SimulateError

__all__ = [
    "ScenarioError",
    "Scenario",
    "GridCell",
    "load",
    "loads",
    "from_dict",
    "expand_grid",
    "validate_file",
]


class ScenarioError(SimulateError):
    """An invalid scenario.  ``str(error)`` is one line: ``file: field: constraint``."""

    def __init__(self, message: str):
        # one line whatever a key, a path or a file name holds: control characters are escaped
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message)))


# ---------------------------------------------------------------------------
# The schema: every key a scenario file may hold, with its type and range.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One scalar (or per-mediator) entry of the schema."""

    kind: str  # "int", "float", "str", "choice", "bool"
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    per_mediator: bool = False  # scalar, or a list with one value per mediator
    per_site: bool = False  # scalar, or a list with one value per site
    doc: str = ""


MAX_MAGNITUDE = 1e6
"""The largest size of any real-valued parameter (means, SDs, curvatures, shifts, spillovers)."""
MAX_PERSONS = 50_000_000
"""The most persons one replication may hold (n_sites x n_per_site)."""
MAX_GRID_CELLS = 10_000
"""The most cells a [grid] may expand to."""
MAX_DEPTH = 6
"""The deepest nesting of tables and lists a scenario file may hold."""
MAX_DESCRIPTION = 10_000
MAX_NAME = 1_000


def _f(default=0.0, low=None, high=None, *, lo_open=False, hi_open=False, pm=False, ps=False, doc=""):
    if low is None or high is None:  # a sane range for every real-valued parameter (no overflow downstream)
        low = -MAX_MAGNITUDE if low is None else low
        high = MAX_MAGNITUDE if high is None else high
        doc = f"{doc}; at most 1e6 in size" if doc else "at most 1e6 in size"
    return Field("float", default, low, high, lo_open, hi_open, per_mediator=pm, per_site=ps, doc=doc)


_CORR = dict(low=-1.0, high=1.0)

SCHEMA: dict[str, Any] = {
    "name": Field("str", "scenario", high=MAX_NAME, doc="a short name (at most 1,000 characters)"),
    "description": Field("str", "", high=MAX_DESCRIPTION, doc="what the scenario shows (at most 10,000 characters)"),
    "n_sites": Field("int", 50, low=1, high=1_000_000, doc="K, the number of sites"),
    "n_per_site": "n_per_site",  # special: int, list of ints, or {min, max}
    "treatment": {
        "arms": Field("int", 2, low=2, high=20, doc="number of arms including control (L + 1)"),
        "share": _f(0.5, 0.0, 1.0, lo_open=True, hi_open=True, ps=True,
                    doc="share treated per site (binary treatment); scalar or one per site"),
        "arm_shares": "arm_shares",  # special: list of `arms` shares summing to one
        "assignment": Field("choice", "complete", choices=("complete", "bernoulli"),
                            doc="complete: an exact share per site; bernoulli: independent draws"),
    },
    "mediators": {
        "count": Field("int", None, low=1, high=20, doc="P, the number of mediators"),
        "names": "names",  # special: list of P strings
        "kind": Field("choice", "continuous", choices=("continuous", "binary"), per_mediator=True),
        "curvature": _f(0.0, pm=True, doc="c_p in g_p(t) = t + c_p t (t - 1) (assumption iii)"),
        "outcome_curvature": _f(0.0, pm=True, doc="phi_p in h_p(m) = m + phi_p m^2 (assumption iv)"),
    },
    "site": {
        "compliance_mean": _f(1.0, pm=True, doc="E[gamma_p], mean site compliance"),
        "compliance_sd": _f(0.3, 0.0, pm=True, doc="SD of gamma_p between sites"),
        "effect_mean": _f(0.5, pm=True, doc="E[delta_p], mean site effect of M_p on Y"),
        "effect_sd": _f(0.0, 0.0, pm=True, doc="SD of delta_p between sites"),
        "direct_effect_mean": _f(0.0, doc="E[kappa], mean direct effect of T on Y (assumption ii)"),
        "direct_effect_sd": _f(0.0, 0.0, doc="SD of kappa between sites (assumption ii)"),
        "compliance_effect_correlation": _f(0.0, **_CORR, pm=True,
                                            doc="corr(gamma_p, delta_p) between sites (assumption ix)"),
        "compliance_correlation": _f(0.0, **_CORR, doc="corr(gamma_p, gamma_q), p != q (assumption viii)"),
        "direct_effect_compliance_correlation": _f(0.0, **_CORR, pm=True, doc="corr(kappa, gamma_p)"),
        "nonlinear_dependence": _f(0.0, pm=True,
                                   doc="lambda_p: delta_p += lambda_p sd(delta_p) (z_p^2 - 1) / sqrt(2), "
                                       "z_p standardized gamma_p (assumption ix, zero correlation)"),
        "mediator_baseline_sd": _f(0.0, 0.0, pm=True, doc="SD of site means of M_p(0)"),
        "outcome_baseline_sd": _f(0.0, 0.0, doc="SD of site means of Y(0)"),
        "correlations": "site_pairs",
    },
    "person": {
        "mediator_mean": _f(0.0, pm=True, doc="E[M_p(0)] (continuous mediators)"),
        "mediator_sd": _f(1.0, 0.0, pm=True, doc="SD of M_p(0) within site (continuous mediators)"),
        "outcome_mean": _f(0.0, doc="E[Y(0)]"),
        "outcome_sd": _f(1.0, 0.0, doc="SD of Y(0) within site"),
        "compliance_sd": _f(0.0, 0.0, pm=True, doc="SD of Gamma_p within site (continuous mediators)"),
        "effect_sd": _f(0.0, 0.0, pm=True, doc="SD of Delta_p within site"),
        "within_site_correlation": _f(0.0, **_CORR, pm=True,
                                      doc="corr(Gamma_p, Delta_p) within site (assumption vii.a)"),
        "confounding": _f(0.0, **_CORR, pm=True, doc="corr(M_p(0), Y(0)) within site"),
        "correlations": "person_pairs",
    },
    "binary": {
        "complier_share": _f(0.6, 0.0, 1.0, lo_open=True, pm=True, doc="mean share of compliers"),
        "always_share": _f(0.2, 0.0, 1.0, pm=True, doc="share of always-takers"),
        "never_share": _f(0.2, 0.0, 1.0, pm=True, doc="share of never-takers"),
        "defier_share": _f(0.0, 0.0, 1.0, pm=True, doc="share of defiers (assumption vii.b)"),
        "complier_share_site_sd": _f(0.0, 0.0, pm=True,
                                     doc="between-site SD of the complier share on the probit scale"),
        "always_effect_shift": _f(0.0, pm=True, doc="Delta_p of always-takers minus that of compliers"),
        "never_effect_shift": _f(0.0, pm=True, doc="Delta_p of never-takers minus that of compliers"),
        "defier_effect_shift": _f(0.0, pm=True, doc="Delta_p of defiers minus that of compliers"),
    },
    "paths": [  # array of tables: non-parallel mediators (assumption v)
        {
            "from": Field("int", None, low=1, doc="the earlier mediator p (1-based)"),
            "to": Field("int", None, low=1, doc="the later mediator q (1-based)"),
            "mean": _f(0.0, doc="mean path coefficient"),
            "site_sd": _f(0.0, 0.0, doc="SD of the path coefficient between sites"),
            "person_sd": _f(0.0, 0.0, doc="SD of the path coefficient within site"),
            "effect_correlation": _f(0.0, **_CORR, doc="corr(path coefficient, Delta_q) within site"),
        }
    ],
    "selection": {
        "strength": _f(0.0, -10.0, 10.0, doc="xi: probit index of selection into treatment (assumption vi)"),
        "on": Field("choice", "outcome", choices=("outcome", "compliance")),
        "mediator": Field("int", 1, low=1, doc="which mediator's compliance (with on = 'compliance')"),
    },
    "spillover": {
        "outcome": _f(0.0, doc="shift of controls' Y per unit share treated in their site (assumption i)"),
        "mediator": _f(0.0, pm=True, doc="shift of controls' M_p per unit share treated (assumption i)"),
    },
    "grid": "grid",
}

_TABLE_DOC = {
    "treatment": "treatment arms and assignment",
    "mediators": "the P mediators",
    "site": "between-site distribution of compliance, effects and direct effects",
    "person": "within-site distribution",
    "binary": "compliance types of binary mediators",
    "selection": "selection into treatment",
    "spillover": "spillovers onto controls",
}


# ---------------------------------------------------------------------------
# The frozen scenario
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Path_:
    """A path from an earlier mediator to a later one (assumption v)."""

    source: int  # 0-based
    target: int  # 0-based
    mean: float
    site_sd: float
    person_sd: float
    effect_correlation: float


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

    @property
    def n_mediators(self) -> int:
        return len(self.mediator_names)

    @property
    def binary_treatment(self) -> bool:
        return self.arms == 2

    @property
    def is_binary(self) -> tuple[bool, ...]:
        return tuple(k == "binary" for k in self.mediator_kind)

    @property
    def hash(self) -> str:
        """A stable content hash: sha256 of the canonical normalised table (16 hex digits)."""
        return hashlib.sha256(self.spec.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        """The normalised table (every default filled in), suitable for ``tomli_w``/JSON."""
        return json.loads(self.spec)

    def dose(self, p: int) -> np.ndarray:
        """g_p(t) = t + c_p t (t - 1) for t = 0..L (assumption iii)."""
        t = np.arange(self.arms, dtype=float)
        return t + self.curvature[p] * t * (t - 1.0)


@dataclass(frozen=True)
class GridCell:
    """One cell of a grid: the values it sets and the full scenario."""

    index: int
    values: tuple[tuple[str, Any], ...]
    scenario: Scenario

    @property
    def hash(self) -> str:
        return self.scenario.hash


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file (without its grid: the base scenario).

    Raises
    ------
    ScenarioError
        One line: ``file: field: constraint``.
    """
    raw = _read(path)
    raw.pop("grid", None)
    return from_dict(raw, source=str(path))


def loads(text: str, source: str = "<string>") -> Scenario:
    """Validate a scenario given as TOML text (its grid is ignored; see :func:`expand_grid`)."""
    raw = _parse(text, source)
    raw.pop("grid", None)
    return from_dict(raw, source=source)


def _read(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    return _parse(text, str(path))


def _parse(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ScenarioError(f"{source}: not valid TOML (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer beyond Python's 4,300-digit conversion limit
        first = str(exc).splitlines()[0] if str(exc) else "a value out of range"
        raise ScenarioError(f"{source}: not valid TOML ({first})") from None


def validate_file(path: str | Path) -> list[GridCell]:
    """Validate a file and every cell of its grid; returns the cells (one if no grid)."""
    raw = _read(path)
    return expand_grid(raw, source=str(path))


def from_dict(raw: dict, source: str = "<dict>") -> Scenario:
    """Validate a scenario table and build the frozen :class:`Scenario`.

    A ``[stress]`` table (a stress-test design's settings) is accepted and left alone.
    """
    if isinstance(raw, dict) and "grid" in raw:
        raise ScenarioError(f"{source}: grid: use expand_grid() for a file with a [grid] table")
    table = _normalise(raw, source)
    return _build(table, source)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _err(source: str, field: str, msg: str) -> ScenarioError:
    return ScenarioError(f"{source}: {field}: {msg}")


def _clean(key) -> str:
    """A key as it may appear in a one-line message."""
    key = str(key)
    return key if key.isprintable() else repr(key)


def _unknown(source: str, prefix: str, key: str, valid) -> ScenarioError:
    key = _clean(key)
    full = f"{prefix}{key}"
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; valid keys here: {', '.join(sorted(valid))}"
    return ScenarioError(f"{source}: {full}: unknown key{hint}")


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_scalar(source, name, f: Field, v):
    if f.kind == "str":
        if not isinstance(v, str):
            raise _err(source, name, f"must be a string, got {_show(v)}")
        if f.high is not None and len(v) > f.high:
            raise _err(source, name, f"must be at most {int(f.high):,} characters, got {len(v):,}")
        return v
    if f.kind == "choice":
        if v not in f.choices:
            raise _err(source, name, f"must be one of {', '.join(repr(c) for c in f.choices)}, got {_show(v)}")
        return v
    if f.kind == "int":
        if isinstance(v, float) and v.is_integer():
            if f.high is not None and v > f.high:  # before int(): 1e30 is shown as 1e+30
                raise _err(source, name, f"must be <= {_num(f.high)}, got {_num(v)}")
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            raise _err(source, name, f"must be an integer, got {_show(v)}")
    elif f.kind == "float":
        if not _is_num(v):
            raise _err(source, name, f"must be a number, got {_show(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise _err(source, name, f"must be finite, got {v}")
    if f.low is not None and (v < f.low or (f.low_open and v == f.low)):
        raise _err(source, name, f"must be {'>' if f.low_open else '>='} {_num(f.low)}, got {_num(v)}")
    if f.high is not None and (v > f.high or (f.high_open and v == f.high)):
        raise _err(source, name, f"must be {'<' if f.high_open else '<='} {_num(f.high)}, got {_num(v)}")
    return v


def _num(x):
    """A number as a message shows it: an integer as such, a huge one in scientific notation."""
    if isinstance(x, int) and not isinstance(x, bool):
        return x if abs(x) < 10**15 else _big(x)
    if math.isfinite(x) and x.is_integer():
        return int(x) if abs(x) < 1e15 else f"{x:.6g}"
    return x


def _big(v: int) -> str:
    """A huge integer without printing its digits (Python refuses str() beyond 4,300 of them)."""
    digits = int(math.log10(abs(v))) + 1
    return f"{float(v):.6g}" if digits <= 300 else f"a {digits:,}-digit integer"


def _show(v) -> str:
    if isinstance(v, str):
        return repr(v) if len(v) <= 60 else repr(v[:60]) + f"... ({len(v):,} characters)"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**15:
        return _big(v)
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def _check_vector(source, name, f: Field, v, length: int, what: str):
    """A scalar (broadcast) or a list of `length` scalars."""
    if isinstance(v, list):
        if len(v) != length:
            raise _err(source, name, f"must be a single value or a list of {length} (one per {what}), got {len(v)}")
        return [_check_scalar(source, f"{name}[{i + 1}]", f, x) for i, x in enumerate(v)]
    return [_check_scalar(source, name, f, v)] * length


def _scan(source: str, node, where: str = "", depth: int = 0) -> None:
    """Before any other check: no nesting deeper than MAX_DEPTH, no integer beyond 2^63 in size.

    A [stress] table is the stress test's (it checks its own); the scenario leaves it alone.
    """
    if isinstance(node, dict):
        items = [(f"{where}.{_clean(k)}" if where else _clean(k), v) for k, v in node.items()
                 if not (depth == 0 and k == "stress")]
    elif isinstance(node, list):
        items = [(f"{where}[{i + 1}]", v) for i, v in enumerate(node)]
    else:
        if isinstance(node, int) and not isinstance(node, bool) and abs(node) >= 2**63:
            raise _err(source, where, f"must be a number below 2^63 in size, got {_big(node)}")
        return
    if depth >= MAX_DEPTH:
        raise _err(source, where, f"nested too deeply (at most {MAX_DEPTH} levels of tables and lists)")
    for name, value in items:
        _scan(source, value, name, depth + 1)


def _normalise(raw: dict, source: str) -> dict:
    """Check every key and type; return a table with every default filled in and vectors expanded."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: the scenario must be a table")
    _scan(source, raw)
    for key in raw:
        if key == "stress":  # a stress-test design's own table: the stress module reads it
            continue
        if key not in SCHEMA or key == "grid":
            raise _unknown(source, "", key, [k for k in SCHEMA if k != "grid"])

    out: dict[str, Any] = {}
    out["name"] = _check_scalar(source, "name", SCHEMA["name"], raw.get("name", "scenario"))
    out["description"] = _check_scalar(source, "description", SCHEMA["description"], raw.get("description", ""))
    n_sites = _check_scalar(source, "n_sites", SCHEMA["n_sites"], raw.get("n_sites", 50))
    out["n_sites"] = n_sites

    # sizes
    sizes = raw.get("n_per_site", 200)
    size_field = Field("int", None, low=2, high=MAX_PERSONS)
    if isinstance(sizes, dict):
        for k in sizes:
            if k not in ("min", "max"):
                raise _unknown(source, "n_per_site.", k, ["min", "max"])
        if "min" not in sizes or "max" not in sizes:
            raise _err(source, "n_per_site", "a range needs both min and max, e.g. {min = 100, max = 300}")
        lo = _check_scalar(source, "n_per_site.min", size_field, sizes["min"])
        hi = _check_scalar(source, "n_per_site.max", size_field, sizes["max"])
        if hi < lo:
            raise _err(source, "n_per_site", f"max ({hi}) must be >= min ({lo})")
        out["n_per_site"] = {"min": lo, "max": hi}
        smallest = lo
    elif isinstance(sizes, list):
        if len(sizes) != n_sites:
            raise _err(source, "n_per_site", f"a list must have one size per site ({n_sites}), got {len(sizes)}")
        out["n_per_site"] = [_check_scalar(source, f"n_per_site[{i + 1}]", size_field, x) for i, x in enumerate(sizes)]
        smallest = min(out["n_per_site"])
        if len(set(out["n_per_site"])) == 1:  # the same design as the single-number form, so the same hash
            out["n_per_site"] = out["n_per_site"][0]
    else:
        out["n_per_site"] = _check_scalar(source, "n_per_site", size_field, sizes)
        smallest = out["n_per_site"]
    _check_size(source, n_sites, out["n_per_site"], raw)

    # mediators first: P is needed by every per-mediator field
    med_raw = _table(raw, "mediators", source)
    names = med_raw.get("names")
    count = med_raw.get("count")
    if count is not None:
        count = _check_scalar(source, "mediators.count", SCHEMA["mediators"]["count"], count)
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
            raise _err(source, "mediators.names", "must be a non-empty list of strings")
        if len(set(names)) != len(names):
            raise _err(source, "mediators.names", "names must be distinct")
        for n in names:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n):
                raise _err(source, "mediators.names", f"{n!r} must start with a letter and hold only letters, digits, _")
        if count is not None and count != len(names):
            raise _err(source, "mediators.count", f"is {count} but mediators.names lists {len(names)}")
        count = len(names)
    if count is None:
        count = 1
    P = count
    if names is None:
        names = [f"M{p + 1}" for p in range(P)]
    out["mediators"] = {"count": P, "names": names}
    for key, f in SCHEMA["mediators"].items():
        if isinstance(f, Field) and f.per_mediator:
            out["mediators"][key] = _check_vector(source, f"mediators.{key}", f, med_raw.get(key, f.default), P, "mediator")
    for key in med_raw:
        if key not in SCHEMA["mediators"]:
            raise _unknown(source, "mediators.", key, SCHEMA["mediators"])

    # treatment
    tr = _table(raw, "treatment", source)
    for key in tr:
        if key not in SCHEMA["treatment"]:
            raise _unknown(source, "treatment.", key, SCHEMA["treatment"])
    arms = _check_scalar(source, "treatment.arms", SCHEMA["treatment"]["arms"], tr.get("arms", 2))
    assignment = _check_scalar(source, "treatment.assignment", SCHEMA["treatment"]["assignment"],
                               tr.get("assignment", "complete"))
    if "share" in tr and "arm_shares" in tr:
        raise _err(source, "treatment.share", "give either share (binary) or arm_shares, not both")
    if "arm_shares" in tr:
        a = tr["arm_shares"]
        if not isinstance(a, list) or len(a) != arms:
            raise _err(source, "treatment.arm_shares", f"must be a list of {arms} shares (one per arm, control first)")
        shr = Field("float", None, 0.0, 1.0, True, True)
        a = [_check_scalar(source, f"treatment.arm_shares[{i + 1}]", shr, x) for i, x in enumerate(a)]
        if abs(sum(a) - 1.0) > 1e-9:
            raise _err(source, "treatment.arm_shares", f"must sum to 1, got {sum(a):.6g}")
        arm_shares = [a] * n_sites
    else:
        if arms > 2 and "share" in tr:
            raise _err(source, "treatment.share", f"is for a binary treatment; with arms = {arms} give arm_shares")
        if arms > 2:
            arm_shares = [[1.0 / arms] * arms] * n_sites
        else:
            share = tr.get("share", 0.5)
            s = _check_vector(source, "treatment.share", SCHEMA["treatment"]["share"], share, n_sites, "site")
            # one row object for every site unless the shares differ (cheap checks for many sites)
            arm_shares = [[1.0 - s[0], s[0]]] * n_sites if not isinstance(share, list) else [[1.0 - x, x] for x in s]
    out["treatment"] = {"arms": arms, "arm_shares": arm_shares, "assignment": assignment}

    # simple per-mediator / scalar tables
    for table in ("site", "person", "binary", "selection", "spillover"):
        t_raw = _table(raw, table, source)
        t_out: dict[str, Any] = {}
        for key in t_raw:
            if key not in SCHEMA[table]:
                raise _unknown(source, f"{table}.", key, SCHEMA[table])
        for key, f in SCHEMA[table].items():
            if not isinstance(f, Field):
                continue
            name = f"{table}.{key}"
            v = t_raw.get(key, f.default)
            t_out[key] = _check_vector(source, name, f, v, P, "mediator") if f.per_mediator else _check_scalar(source, name, f, v)
        if table in ("site", "person"):
            t_out["correlations"] = _pairs(source, table, t_raw.get("correlations", {}), P)
        out[table] = t_out
    out["_given"] = {t: sorted(_table(raw, t, source).keys()) for t in ("binary", "person", "site")}
    out["_lists"] = {f"{t}.{k}" for t in ("mediators", "site", "person", "binary", "spillover")
                     for k, v in _table(raw, t, source).items() if isinstance(v, list)}

    # paths
    p_raw = raw.get("paths", [])
    if not isinstance(p_raw, list) or not all(isinstance(x, dict) for x in p_raw):
        raise _err(source, "paths", "must be an array of tables: [[paths]] with from, to, mean, ...")
    paths = []
    spec = SCHEMA["paths"][0]
    for i, pr in enumerate(p_raw):
        pre = f"paths[{i + 1}]"
        for key in pr:
            if key not in spec:
                raise _unknown(source, f"{pre}.", key, spec)
        for req in ("from", "to"):
            if req not in pr:
                raise _err(source, f"{pre}.{req}", "is required (a mediator number, 1..P)")
        po = {key: _check_scalar(source, f"{pre}.{key}", f, pr.get(key, f.default)) for key, f in spec.items()}
        paths.append(po)
    out["paths"] = paths

    _cross_checks(out, source, smallest)
    return out


def _check_size(source: str, n_sites: int, sizes, raw: dict) -> None:
    """Persons per replication within MAX_PERSONS, and one replication's buffers within memory."""
    if isinstance(sizes, dict):
        total, largest, what = n_sites * sizes["max"], sizes["max"], f"{n_sites:,} sites x up to {sizes['max']:,}"
    elif isinstance(sizes, list):
        total, largest, what = sum(sizes), max(sizes), f"{n_sites:,} sites of {sum(sizes) / n_sites:,.0f} on average"
    else:
        total, largest, what = n_sites * sizes, sizes, f"{n_sites:,} sites x {sizes:,}"
    if total > MAX_PERSONS:
        raise _err(source, "n_per_site", f"{what} persons is {total:,} persons per replication; at most "
                                         f"{MAX_PERSONS:,} are supported")
    P = _count(raw)
    need = replication_bytes(n_sites, total, largest, P if 1 <= P <= 20 else 1, _arms(raw), _n_paths(raw))
    have = physical_memory()
    if have and need > have / 2:
        raise _err(source, "n_per_site", f"one replication of {what} persons needs about {need / 2**30:.1f} GiB "
                                         f"of working buffers, more than half of this machine's "
                                         f"{have / 2**30:.1f} GiB; use fewer sites or persons")


def replication_bytes(n_sites: int, persons: int, largest: int, P: int, arms: int, paths: int) -> int:
    """An estimate of one replication's working buffers, in bytes.

    The persons of a drawn replication (``simulate draw``: site, arm, outcome and, per mediator,
    the mediator, effect, compliance and type; 8 bytes each), the per-site block of the largest
    site (its 3P+1 normals twice, uniforms, path normals and running values) and the per-site
    parameters and cell statistics.
    """
    per_person = 3 + 4 * P
    block = largest * (2 * (3 * P + 1) + 6 + 4 * P + 2 * paths)
    per_site = (2 * P + 1) + (P + 1) + paths + arms * (2 + (P + 1) * (P + 2))
    return 8 * (persons * per_person + block + n_sites * per_site)


def physical_memory() -> int:
    """The machine's physical memory in bytes (0 where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 0


def _arms(raw: dict) -> int:
    tr = raw.get("treatment", {})
    arms = tr.get("arms", 2) if isinstance(tr, dict) else 2
    return arms if isinstance(arms, int) and 2 <= arms <= 20 else 2


def _n_paths(raw: dict) -> int:
    paths = raw.get("paths", [])
    return len(paths) if isinstance(paths, list) else 0


def _table(raw: dict, name: str, source: str) -> dict:
    t = raw.get(name, {})
    if not isinstance(t, dict):
        raise _err(source, name, f"must be a table ([{name}]), got {_show(t)}")
    return t


_SITE_NAMES = ("compliance", "effect")
_PERSON_NAMES = ("compliance", "effect", "mediator")


def _component_names(level: str, P: int) -> list[str]:
    if level == "site":
        return [f"{n}_{p + 1}" for n in _SITE_NAMES for p in range(P)] + ["direct_effect"]
    return [f"{n}_{p + 1}" for n in _PERSON_NAMES for p in range(P)] + ["outcome"]


def _pairs(source: str, level: str, table, P: int) -> dict:
    """A table of named correlation pairs, e.g. ``"compliance_1:effect_2" = 0.2``."""
    if not isinstance(table, dict):
        raise _err(source, f"{level}.correlations", "must be a table of pairs such as \"compliance_1:effect_1\" = 0.3")
    names = _component_names(level, P)
    out = {}
    for key, v in table.items():
        field = f"{level}.correlations.{_clean(key)}"
        parts = key.split(":")
        if len(parts) != 2:
            raise _err(source, field, "a pair is written \"a:b\", e.g. \"compliance_1:effect_1\"")
        for part in parts:
            if part not in names:
                near = difflib.get_close_matches(part, names, n=1, cutoff=0.5)
                hint = f"; did you mean '{near[0]}'?" if near else f"; components are {', '.join(names)}"
                raise _err(source, field, f"unknown component '{_clean(part)}'{hint}")
        if parts[0] == parts[1]:
            raise _err(source, field, "a component's correlation with itself is 1")
        out[":".join(parts)] = _check_scalar(source, field, Field("float", None, -1.0, 1.0), v)
    return out


def correlation_matrix(level: str, table: dict, P: int) -> np.ndarray:
    """Assemble the site- or person-level correlation matrix from convenience fields and pairs.

    Site order: compliance_1..P, effect_1..P, direct_effect.
    Person order: compliance_1..P, effect_1..P, mediator_1..P, outcome.
    Named pairs in ``correlations`` override the convenience fields.
    """
    names = _component_names(level, P)
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
        put(a, b, v)
    return R


def _psd(source, field, R, names):
    lam = np.linalg.eigvalsh(R)
    if lam[0] < -1e-10:
        raise _err(source, field, f"the correlation matrix of ({', '.join(names)}) is not positive semi-definite "
                                  f"(smallest eigenvalue {lam[0]:.3g})")


def _cross_checks(t: dict, source: str, smallest: int) -> None:
    P = t["mediators"]["count"]
    K = t["n_sites"]
    arms = t["treatment"]["arms"]
    kinds = t["mediators"]["kind"]
    binary = [k == "binary" for k in kinds]
    warnings: list[str] = []

    # enough persons per arm in every site
    rows = _distinct(t["treatment"]["arm_shares"])
    least = min(min(r) for r in rows)
    if t["treatment"]["assignment"] == "complete":
        counts = [arm_counts(smallest, row) for row in rows]
        low = min(min(c) for c in counts)
        if low < 2:
            raise _err(source, "n_per_site", f"the smallest site ({smallest} persons) gives an arm with {low} "
                                             f"person(s) under the arm shares; each arm needs at least 2")
    elif smallest * least < 5:
        raise _err(source, "n_per_site", f"with Bernoulli assignment the smallest site ({smallest} persons) expects "
                                         f"{smallest * least:.3g} persons in its smallest arm; at least 5 are needed")

    # curvature of M in T needs 3+ arms
    if arms == 2 and any(c != 0.0 for c in t["mediators"]["curvature"]):
        raise _err(source, "mediators.curvature", "has no effect with a binary treatment (arms = 2): g(0) = 0 and "
                                                  "g(1) = 1 whatever c; set treatment.arms >= 3 or curvature = 0")
    for p in range(P):
        c = t["mediators"]["curvature"][p]
        L = arms - 1
        if arms > 2 and L + c * L * (L - 1) <= 0:
            raise _err(source, f"mediators.curvature[{p + 1}]", f"must be > {-1 / (L - 1):.4g}: g(L) = L + c L (L-1) "
                                                                "has to stay positive so the top arm moves the mediator")
        if binary[p] and arms > 2:
            g = np.arange(arms) + t["mediators"]["curvature"][p] * np.arange(arms) * (np.arange(arms) - 1)
            if g[-1] <= 0 or np.any(g < 0) or np.any(g > g[-1]):
                raise _err(source, f"mediators.curvature[{p + 1}]", "for a binary mediator g(t) = t + c t(t-1) "
                                                                    "must stay within [0, g(L)] over the arms")
        if binary[p] and t["mediators"]["outcome_curvature"][p] != 0.0:
            raise _err(source, f"mediators.outcome_curvature[{p + 1}]", "has no effect on a binary mediator "
                                                                        "(m^2 = m); set it to 0")

    # binary mediators: the type shares
    b = t["binary"]
    given_binary = t["_given"]["binary"]
    if given_binary and not any(binary):
        raise _err(source, f"binary.{given_binary[0]}", "no mediator is binary (set mediators.kind = \"binary\")")
    for p in range(P):
        if not binary[p]:
            continue
        total = b["complier_share"][p] + b["always_share"][p] + b["never_share"][p] + b["defier_share"][p]
        if abs(total - 1.0) > 1e-9:
            raise _err(source, "binary", f"the complier, always-taker, never-taker and defier shares of mediator "
                                         f"{p + 1} must sum to 1, got {total:.6g}")
        if b["defier_share"][p] >= b["complier_share"][p]:
            raise _err(source, f"binary.defier_share[{p + 1}]", "must be smaller than complier_share (otherwise "
                                                                "the mean compliance is not positive)")
    if all(binary):
        for key in ("compliance_sd", "mediator_mean", "mediator_sd"):
            if key in t["_given"]["person"]:
                raise _err(source, f"person.{key}", "has no effect when every mediator is binary; "
                                                    "binary mediators follow [binary]")
        for key in ("compliance_mean", "compliance_sd"):
            if key in t["_given"]["site"]:
                raise _err(source, f"site.{key}", "has no effect when every mediator is binary; use "
                                                  "binary.complier_share and binary.complier_share_site_sd")

    # correlation matrices
    Rs = correlation_matrix("site", t["site"], P)
    _psd(source, "site.correlations", Rs, _component_names("site", P))
    Rp = correlation_matrix("person", t["person"], P)
    _psd(source, "person.correlations", Rp, _component_names("person", P))
    for p in range(P):
        if binary[p] and Rp[p, 2 * P + p] != 0.0:
            raise _err(source, f"person.correlations.compliance_{p + 1}:mediator_{p + 1}",
                       "must be 0 for a binary mediator (its latent compliance and baseline fix the type shares)")

    # paths
    seen = set()
    targets = {pa["to"] for pa in t["paths"]}
    for i, pa in enumerate(t["paths"]):
        pre = f"paths[{i + 1}]"
        if pa["from"] > P or pa["to"] > P:
            raise _err(source, pre, f"from and to must name mediators 1..{P}")
        if pa["from"] >= pa["to"]:
            raise _err(source, pre, "must run from an earlier to a later mediator (from < to)")
        if binary[pa["to"] - 1]:
            raise _err(source, f"{pre}.to", "a path cannot end at a binary mediator")
        if pa["from"] in targets:
            raise _err(source, f"{pre}.from", f"mediator {pa['from']} receives a path itself; chains of paths are "
                                              "not supported")
        if (pa["from"], pa["to"]) in seen:
            raise _err(source, pre, f"a second path from {pa['from']} to {pa['to']}")
        seen.add((pa["from"], pa["to"]))

    for p in range(P):
        if t["site"]["nonlinear_dependence"][p] != 0.0:
            spread = b["complier_share_site_sd"][p] if binary[p] else t["site"]["compliance_sd"][p]
            if spread == 0.0:
                raise _err(source, f"site.nonlinear_dependence[{p + 1}]", "needs compliance that varies between sites "
                           "(site.compliance_sd > 0, or binary.complier_share_site_sd > 0 for a binary mediator)")
    sel = t["selection"]
    if sel["mediator"] > P:
        raise _err(source, "selection.mediator", f"must name a mediator 1..{P}, got {sel['mediator']}")

    _no_effect_checks(t, source, Rs, Rp)

    # identification (assumption viii): not an error, since it is one of the dials
    n_instruments = K * (arms - 1)
    if n_instruments < P:
        warnings.append(f"n_sites: {K} sites x {arms - 1} contrast(s) give {n_instruments} instrument(s) for {P} "
                        "mediators; the effects are not identified (assumption viii) and IV estimators will fail")
    t["_warnings"] = warnings


def _no_effect_checks(t: dict, source: str, Rs: np.ndarray, Rp: np.ndarray) -> None:
    """A nonzero setting that cannot move anything in the scenario is an error (a silent no-op).

    A correlation needs both of its components to vary, or to matter otherwise (the selection
    index drives assignment; a binary mediator's latent compliance sets its type, and its
    within-site compliance-effect correlation is left alone).  A setting given as one value
    for every mediator is an error only when it has no effect for any of them; a list entry
    is checked on its own.  A zero is never an error.

    Not checked, because a sweep of another dial from zero keeps them set: the correlation of
    the direct effect with compliance while ``site.direct_effect_sd`` is 0 (a grid that grows
    the direct effect's SD from 0), ``site.compliance_correlation`` while fewer than two mediators'
    compliances vary (a compliance SD shrunk to 0, a design cut to one mediator), a path's ``effect_correlation`` while its
    ``person_sd`` is 0 (the stress test's path dial), and the type effect shifts of binary
    mediators while the type's share is 0 (the stress test's defier dial).
    """
    P = t["mediators"]["count"]
    binary = [k == "binary" for k in t["mediators"]["kind"]]
    site, person, b, sel = t["site"], t["person"], t["binary"], t["selection"]
    lists = t["_lists"]
    strength = sel["strength"]
    sel_on_comp = [strength != 0.0 and sel["on"] == "compliance" and sel["mediator"] == p + 1 for p in range(P)]
    sel_on_outcome = strength != 0.0 and sel["on"] == "outcome"
    spread = [b["complier_share_site_sd"][p] if binary[p] else site["compliance_sd"][p] for p in range(P)]
    spread_name = ["binary.complier_share_site_sd" if binary[p] else "site.compliance_sd" for p in range(P)]

    def person_inert(j: int):
        """The zero settings that keep person component j from mattering (None when it matters)."""
        kind, p = divmod(j, P) if j < 3 * P else (3, 0)
        if kind == 0:  # compliance_p
            if binary[p] or sel_on_comp[p] or person["compliance_sd"][p] != 0.0:
                return None
            return ["person.compliance_sd"]
        if kind == 1:  # effect_p (a path's person-level coefficient may load on it)
            if person["effect_sd"][p] != 0.0 or any(
                    pa["to"] == p + 1 and pa["person_sd"] != 0.0 and pa["effect_correlation"] != 0.0
                    for pa in t["paths"]):
                return None
            return ["person.effect_sd"]
        if kind == 2:  # mediator_p
            if binary[p]:  # its baseline splits non-compliers into always-takers (and defiers) and never-takers
                if b["never_share"][p] == 0.0:
                    return ["binary.never_share"]
                if b["always_share"][p] + b["defier_share"][p] == 0.0:
                    return ["binary.always_share", "binary.defier_share"]
                return None
            return None if person["mediator_sd"][p] != 0.0 else ["person.mediator_sd"]
        return None if sel_on_outcome or person["outcome_sd"] != 0.0 else ["person.outcome_sd"]

    def site_inert(j: int):
        kind, p = divmod(j, P) if j < 2 * P else (2, 0)
        if kind == 0:
            return None if spread[p] != 0.0 else [spread_name[p]]
        if kind == 1:
            return None if site["effect_sd"][p] != 0.0 else ["site.effect_sd"]
        return None if site["direct_effect_sd"] != 0.0 else ["site.direct_effect_sd"]

    def pair(inert_of, i, j):
        causes = [c for k in (i, j) for c in (inert_of(k) or [])]
        return causes or None

    def why(causes, p=None) -> str:
        where = f" for mediator {p + 1}" if p is not None and P > 1 else ""
        if len(causes) == 1:
            return f"has no effect while {causes[0]} is 0{where}; set it above 0, or this to 0"
        return f"has no effect while {' and '.join(causes)} are 0{where}; set them above 0, or this to 0"

    def per_mediator(table: str, key: str, causes_of, text=why):
        values = t[table][key]
        set_ = [p for p in range(P) if values[p] != 0.0]
        bad = [p for p in set_ if causes_of(p) is not None]
        if not bad:
            return
        if f"{table}.{key}" in lists:
            p = bad[0]
            raise _err(source, f"{table}.{key}[{p + 1}]" if P > 1 else f"{table}.{key}", text(causes_of(p), p))
        if len(bad) == len(set_):  # one value for every mediator, with an effect on none
            raise _err(source, f"{table}.{key}", text(causes_of(bad[0]), bad[0]))

    # person level: the within-site correlation (vii.a), confounding, named pairs
    per_mediator("person", "within_site_correlation",
                 lambda p: None if binary[p] else pair(person_inert, p, P + p))
    per_mediator("person", "confounding", lambda p: pair(person_inert, 2 * P + p, 3 * P))
    idx = {n: k for k, n in enumerate(_component_names("person", P))}
    for key, v in person["correlations"].items():
        a, c = (idx[x] for x in key.split(":"))
        if v != 0.0 and not any(binary[p] and {a, c} == {p, P + p} for p in range(P)):
            causes = pair(person_inert, a, c)
            if causes:
                raise _err(source, f"person.correlations.{key}", why(causes))

    # site level: compliance-effect correlation and nonlinear dependence (ix), compliance correlation (viii)
    per_mediator("site", "compliance_effect_correlation", lambda p: pair(site_inert, p, P + p))
    per_mediator("site", "nonlinear_dependence",
                 lambda p: None if site["effect_sd"][p] != 0.0 else ["site.effect_sd"],
                 lambda c, p: why(c, p).replace("; set", " (it scales sd(delta)); set", 1))
    sidx = {n: k for k, n in enumerate(_component_names("site", P))}
    for key, v in site["correlations"].items():
        a, c = (sidx[x] for x in key.split(":"))
        if v != 0.0 and 2 * P not in (a, c):
            causes = pair(site_inert, a, c)
            if causes:
                raise _err(source, f"site.correlations.{key}", why(causes))
    per_mediator("site", "mediator_baseline_sd", lambda p: ["mediators.kind"] if binary[p] else None,
                 lambda c, p: f"has no effect on a binary mediator{f' (mediator {p + 1})' if P > 1 else ''}, "
                              "whose baseline follows [binary]; set it to 0")

    # selection (vi): an index that varies with nothing selects no one in particular
    if strength != 0.0:
        on_outcome = sel["on"] == "outcome"
        j = 3 * P if on_outcome else sel["mediator"] - 1
        if on_outcome or not binary[j]:
            sd_name, sd = (("person.outcome_sd", person["outcome_sd"]) if on_outcome
                           else ("person.compliance_sd", person["compliance_sd"][j]))
            if sd == 0.0 and not any(Rp[j, k] != 0.0 for k in range(3 * P + 1) if k != j):
                where = "" if on_outcome or P == 1 else f" for mediator {j + 1}"
                raise _err(source, "selection.strength", f"has no effect while {sd_name} is 0{where} and the "
                                                         "selection index correlates with nothing; set it above 0")


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


# ---------------------------------------------------------------------------
# Build the frozen scenario
# ---------------------------------------------------------------------------


def _build(t: dict, source: str) -> Scenario:
    P = t["mediators"]["count"]
    K = t["n_sites"]
    site, person, b = t["site"], t["person"], t["binary"]
    sizes = t["n_per_site"]
    warnings = tuple(t.pop("_warnings", ()))
    for key in ("_given", "_lists"):
        t.pop(key, None)
    shares = t["treatment"]["arm_shares"]
    # the normalised table, in the input format (from_dict reads it back); only the tables edited
    # below are copied (one level), since json.dumps reads the rest and nothing else writes to it
    spec_table = {k: (dict(v) if isinstance(v, dict) else v) for k, v in t.items()}
    spec_table["treatment"] = dict(t["treatment"])
    if len(_distinct(shares)) == 1:
        spec_table["treatment"]["arm_shares"] = shares[0]
    else:
        del spec_table["treatment"]["arm_shares"]
        spec_table["treatment"]["share"] = [row[1] for row in shares]
    kinds = spec_table["mediators"]["kind"]
    if "binary" not in kinds:  # keys that do not apply are left out, so from_dict reads the table back
        del spec_table["binary"]
    if "continuous" not in kinds:
        for key in ("compliance_sd", "mediator_mean", "mediator_sd"):
            del spec_table["person"][key]
        for key in ("compliance_mean", "compliance_sd"):
            del spec_table["site"][key]
    spec = json.dumps(spec_table, sort_keys=True, separators=(",", ":"))
    R_site = correlation_matrix("site", site, P)
    R_person = correlation_matrix("person", person, P)
    return Scenario(
        name=t["name"],
        description=t["description"],
        n_sites=K,
        n_per_site=(tuple(sizes) if isinstance(sizes, list) else (sizes,) * K) if not isinstance(sizes, dict) else None,
        n_per_site_range=(sizes["min"], sizes["max"]) if isinstance(sizes, dict) else None,
        arms=t["treatment"]["arms"],
        arm_shares=_share_rows(t["treatment"]["arm_shares"]),
        assignment=t["treatment"]["assignment"],
        mediator_names=tuple(t["mediators"]["names"]),
        mediator_kind=tuple(t["mediators"]["kind"]),
        curvature=tuple(t["mediators"]["curvature"]),
        outcome_curvature=tuple(t["mediators"]["outcome_curvature"]),
        site_mean=tuple(site["compliance_mean"]) + tuple(site["effect_mean"]) + (site["direct_effect_mean"],),
        site_sd=tuple(site["compliance_sd"]) + tuple(site["effect_sd"]) + (site["direct_effect_sd"],),
        site_correlation=tuple(tuple(float(x) for x in row) for row in R_site),
        nonlinear_dependence=tuple(site["nonlinear_dependence"]),
        mediator_baseline_sd=tuple(site["mediator_baseline_sd"]),
        outcome_baseline_sd=site["outcome_baseline_sd"],
        mediator_mean=tuple(person["mediator_mean"]),
        mediator_sd=tuple(person["mediator_sd"]),
        outcome_mean=person["outcome_mean"],
        outcome_sd=person["outcome_sd"],
        compliance_sd=tuple(person["compliance_sd"]),
        effect_sd=tuple(person["effect_sd"]),
        person_correlation=tuple(tuple(float(x) for x in row) for row in R_person),
        complier_share=tuple(b["complier_share"]),
        always_share=tuple(b["always_share"]),
        never_share=tuple(b["never_share"]),
        defier_share=tuple(b["defier_share"]),
        complier_share_site_sd=tuple(b["complier_share_site_sd"]),
        effect_shift=tuple((0.0, b["always_effect_shift"][p], b["never_effect_shift"][p], b["defier_effect_shift"][p])
                           for p in range(P)),
        paths=tuple(Path_(pa["from"] - 1, pa["to"] - 1, pa["mean"], pa["site_sd"], pa["person_sd"],
                          pa["effect_correlation"]) for pa in sorted(t["paths"], key=lambda x: (x["to"], x["from"]))),
        selection_strength=t["selection"]["strength"],
        selection_on=t["selection"]["on"],
        selection_mediator=t["selection"]["mediator"] - 1,
        spillover_outcome=t["spillover"]["outcome"],
        spillover_mediator=tuple(t["spillover"]["mediator"]),
        spec=spec,
        warnings=warnings,
    )


def _distinct(rows) -> set[tuple]:
    """The distinct per-site share rows (rows repeated as one object are looked at once)."""
    return {tuple(r) for r in {id(r): r for r in rows}.values()}


def _share_rows(rows) -> tuple[tuple[float, ...], ...]:
    """Per-site share rows as tuples, a row object repeated over sites giving one tuple."""
    seen: dict[int, tuple] = {}
    return tuple(seen.get(id(r)) or seen.setdefault(id(r), tuple(r)) for r in rows)


# ---------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------

_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_:]*)(?:\[(\d+)\])?$")


def _split_path(path: str) -> list[tuple[str, int | None]]:
    steps = []
    for part in path.split("."):
        m = _STEP.match(part)
        if not m:
            raise ValueError(part)
        steps.append((m.group(1), int(m.group(2)) if m.group(2) else None))
    return steps


def set_path(raw: dict, path: str, value, source: str = "<grid>") -> dict:
    """Return a copy of the raw scenario table with the number at ``path`` set to ``value``.

    ``path`` is dotted; ``name[k]`` picks the k-th entry of a list (from 1).  A
    per-mediator scalar addressed with ``[k]`` is first expanded to one value per
    mediator.  The tables and lists along the path are copied, the rest of the copy
    shares the input's objects (the input is never changed).
    """
    shown = _clean(path)
    try:
        steps = _split_path(path)
    except ValueError:
        raise _err(source, f"grid.{shown}", "is not a dotted path such as site.effect_sd or "
                                            "site.compliance_mean[2]") from None
    out = dict(raw)
    node: Any = out
    schema: Any = SCHEMA
    P = _count(raw)
    for depth, (key, index) in enumerate(steps):
        last = depth == len(steps) - 1
        where = ".".join(k + (f"[{i}]" if i else "") for k, i in steps[: depth + 1])
        if isinstance(schema, dict) and key not in schema:
            valid = [k for k in schema if k != "grid"]
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise _err(source, f"grid.{shown}", f"'{where}' names no field of the scenario{hint}")
        sub_schema = schema.get(key) if isinstance(schema, dict) else None
        if sub_schema in ("site_pairs", "person_pairs"):
            if last or len(steps) != depth + 2:
                raise _err(source, f"grid.{shown}", "name a pair, e.g. site.correlations.compliance_1:effect_1")
            pair = steps[depth + 1][0]
            table = node.get(key, {})
            node[key] = dict(table) if isinstance(table, dict) else {}
            node[key][pair] = value
            return out
        if last:
            if isinstance(sub_schema, dict) or isinstance(sub_schema, list):
                raise _err(source, f"grid.{shown}", f"'{where}' is a table, not a number")
            if index is None:
                node[key] = value
            else:
                cur = node.get(key, sub_schema.default if isinstance(sub_schema, Field) else None)
                length = P if (isinstance(sub_schema, Field) and sub_schema.per_mediator) else (
                    len(cur) if isinstance(cur, list) else None)
                if isinstance(sub_schema, Field) and sub_schema.per_site:
                    length = raw.get("n_sites", 50)
                if length is None:
                    raise _err(source, f"grid.{shown}", f"'{key}' is not a list")
                if not isinstance(cur, list):
                    if not isinstance(length, int) or not 1 <= length <= 1_000_000:
                        raise _err(source, f"grid.{shown}", f"'{key}' is not a list")
                    cur = [cur] * length
                if not 1 <= index <= len(cur):
                    raise _err(source, f"grid.{shown}", f"index {index} is outside 1..{len(cur)}")
                cur = list(cur)
                cur[index - 1] = value
                node[key] = cur
            return out
        if isinstance(sub_schema, list):  # array of tables (paths)
            arr = node.get(key)
            if index is None or not isinstance(arr, list) or not 1 <= index <= len(arr) or \
                    not isinstance(arr[index - 1], dict):
                raise _err(source, f"grid.{shown}", f"'{key}' needs an index of an existing entry, e.g. {key}[1].mean")
            arr = list(arr)
            arr[index - 1] = dict(arr[index - 1])
            node[key] = arr
            node = arr[index - 1]
            schema = sub_schema[0]
            continue
        if not isinstance(sub_schema, dict):
            raise _err(source, f"grid.{shown}", f"'{where}' is a number, not a table")
        table = node.get(key, {})
        if not isinstance(table, dict):
            raise _err(source, f"grid.{shown}", f"'{where}' must be a table ([{key}]), got {_show(table)}")
        node[key] = dict(table)
        node = node[key]
        schema = sub_schema
    return out


def _count(raw: dict) -> int:
    med = raw.get("mediators", {})
    if isinstance(med, dict):
        if isinstance(med.get("names"), list):
            return len(med["names"])
        if isinstance(med.get("count"), int):
            return med["count"]
    return 1


def expand_grid(raw: dict, source: str = "<dict>") -> list[GridCell]:
    """Expand a raw scenario table with an optional ``[grid]`` into validated cells.

    The grid's keys are dotted paths with lists of values; their cartesian
    product gives the cells (the first path varies slowest).  ``zip = [["a",
    "b"], ...]`` ties paths together: their lists must have equal lengths and
    move in step.  The base scenario is validated first, then every cell; a grid
    of more than :data:`MAX_GRID_CELLS` cells is refused before any cell is built.
    A ``[stress]`` table is left alone.
    """
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: the scenario must be a table")
    _scan(source, raw)
    raw = dict(raw)
    grid = raw.pop("grid", None)
    raw.pop("stress", None)
    raw = copy.deepcopy(raw)
    base = from_dict(raw, source)  # the base must be valid on its own
    if grid is None:
        return [GridCell(0, (), base)]
    if not isinstance(grid, dict) or not grid:
        raise _err(source, "grid", "must be a table of dotted paths with lists of values")
    grid = dict(grid)
    zips = grid.pop("zip", [])
    if not isinstance(zips, list) or not all(isinstance(z, list) and all(isinstance(p, str) for p in z) for z in zips):
        raise _err(source, "grid.zip", "must be a list of lists of paths, e.g. zip = [[\"site.effect_sd\", \"n_sites\"]]")
    for path, values in grid.items():
        if isinstance(values, dict):
            raise _err(source, f"grid.{_clean(path)}", "a dotted path must be quoted in [grid], e.g. "
                                                       "\"site.effect_sd\" = [0.1, 0.2]")
        if not isinstance(values, list) or not values:
            raise _err(source, f"grid.{_clean(path)}", "must be a non-empty list of values")
    used: set[str] = set()
    for z in zips:
        for p in z:
            if p not in grid:
                raise _err(source, "grid.zip", f"'{_clean(p)}' is not a path of the grid")
            if p in used:
                raise _err(source, "grid.zip", f"'{_clean(p)}' appears in two zip groups")
            used.add(p)
        lengths = {len(grid[p]) for p in z}
        if len(lengths) != 1:
            raise _err(source, "grid.zip", f"zipped paths {', '.join(_clean(p) for p in z)} must have lists of "
                                           "equal length")
    axes: list[list[str]] = []
    for path in grid:
        group = next((z for z in zips if path in z), [path])
        if group not in axes:
            axes.append(list(group))
    sizes = [len(grid[a[0]]) for a in axes]
    total = math.prod(sizes)
    if total > MAX_GRID_CELLS:
        raise _err(source, "grid", f"{' x '.join(str(n) for n in sizes)} = {total:,} cells; at most "
                                   f"{MAX_GRID_CELLS:,} are supported (split the grid, or zip paths that move "
                                   "together)")
    for path in grid:  # every path is checked once, on the base, before any cell is built
        set_path(raw, path, grid[path][0], source)
    cells = []
    for index, combo in enumerate(itertools.product(*[range(n) for n in sizes])):
        cell_raw = raw
        values = []
        for axis, j in zip(axes, combo):
            for path in axis:
                cell_raw = set_path(cell_raw, path, grid[path][j], source)
                values.append((path, grid[path][j]))
        label = ", ".join(f"{_clean(p)} = {_show(v) if isinstance(v, (str, dict, list)) else v}" for p, v in values)
        scen = from_dict(cell_raw, f"{source} [grid cell {index + 1}: {label}]")
        cells.append(GridCell(index, tuple(values), scen))
    return cells

