"""Reading and checking a scenario table: parsing, every key and range, cross-field constraints.

1. ``tomllib`` parses the text (:func:`loads`, :func:`load`);
2. :func:`normalise` checks every key against :data:`~simulate.scenario.schema.SCHEMA`
   (unknown keys are rejected with the nearest valid name), every type and range, and the
   cross-field constraints (shares sum to one, correlation matrices are positive
   semi-definite, enough persons per arm, no setting that cannot move anything, ...).
   The first failure is raised as a :class:`ScenarioError` whose message is one line
   naming the file, the field and the constraint;
3. :func:`~simulate.scenario.model.build` turns the checked table into the frozen
   :class:`~simulate.scenario.model.Scenario` (:func:`from_dict` does 2 and 3).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from ..layout import path_name
from .model import Scenario, _distinct, arm_counts, build, correlation_matrix
from .schema import MAX_DEPTH, MAX_MAGNITUDE, MAX_PERSONS, SCHEMA, Field, ScenarioError, _component_names

__all__ = ["load", "loads", "from_dict", "normalise", "replication_bytes", "physical_memory"]


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


def from_dict(raw: dict, source: str = "<dict>") -> Scenario:
    """Validate a scenario table and build the frozen :class:`Scenario`.

    A ``[stress]`` table (a stress-test design's settings) is accepted and left alone.
    """
    if isinstance(raw, dict) and "grid" in raw:
        raise ScenarioError(f"{source}: grid: use expand_grid() for a file with a [grid] table")
    table = normalise(raw, source)
    return build(table, source)


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


def normalise(raw: dict, source: str) -> dict:
    """Check every key and type; return a table with every default filled in and vectors expanded.

    The checks run in the order of the file's layout: the top-level keys and sizes, the
    mediators (P is needed by every per-mediator field), the treatment, the simple tables,
    the paths, then the cross-field constraints; the first failure is raised.
    """
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
    out["n_per_site"], smallest = _normalise_sizes(raw, source, n_sites)
    _check_size(source, n_sites, out["n_per_site"], raw)
    out["mediators"] = _normalise_mediators(raw, source)
    P = out["mediators"]["count"]
    out["treatment"] = _normalise_treatment(raw, source, n_sites)
    for table in ("site", "person", "binary", "selection", "spillover"):
        out[table] = _normalise_table(raw, source, table, P, _raw_path_names(raw) if table == "site" else ())
    out["_given"] = {t: sorted(_table(raw, t, source).keys()) for t in ("binary", "person", "site")}
    out["_lists"] = {f"{t}.{k}" for t in ("mediators", "site", "person", "binary", "spillover")
                     for k, v in _table(raw, t, source).items() if isinstance(v, list)}
    out["paths"] = _normalise_paths(raw, source)
    out["interactions"] = _normalise_interactions(raw, source)
    _cross_checks(out, source, smallest)
    return out


def _normalise_sizes(raw: dict, source: str, n_sites: int):
    """``n_per_site``: one size, one per site, or a ``{min, max}`` range; and the smallest site."""
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
        n_per_site = {"min": lo, "max": hi}
        smallest = lo
    elif isinstance(sizes, list):
        if len(sizes) != n_sites:
            raise _err(source, "n_per_site", f"a list must have one size per site ({n_sites}), got {len(sizes)}")
        n_per_site = [_check_scalar(source, f"n_per_site[{i + 1}]", size_field, x) for i, x in enumerate(sizes)]
        smallest = min(n_per_site)
        if len(set(n_per_site)) == 1:  # the same design as the single-number form, so the same hash
            n_per_site = n_per_site[0]
    else:
        n_per_site = _check_scalar(source, "n_per_site", size_field, sizes)
        smallest = n_per_site
    return n_per_site, smallest


def _normalise_mediators(raw: dict, source: str) -> dict:
    """``[mediators]``: the count and names (P), and every per-mediator field broadcast to P values."""
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
                raise _err(source, "mediators.names",
                           f"{n!r} must start with a letter and hold only letters, digits, _")
        if count is not None and count != len(names):
            raise _err(source, "mediators.count", f"is {count} but mediators.names lists {len(names)}")
        count = len(names)
    if count is None:
        count = 1
    P = count
    if names is None:
        names = [f"M{p + 1}" for p in range(P)]
    mediators = {"count": P, "names": names}
    for key, f in SCHEMA["mediators"].items():
        if isinstance(f, Field) and f.per_mediator:
            mediators[key] = _check_vector(source, f"mediators.{key}", f, med_raw.get(key, f.default), P,
                                                  "mediator")
    for key in med_raw:
        if key not in SCHEMA["mediators"]:
            raise _unknown(source, "mediators.", key, SCHEMA["mediators"])
    return mediators


def _normalise_treatment(raw: dict, source: str, n_sites: int) -> dict:
    """``[treatment]``: arms, assignment, and one row of arm shares per site."""
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
    return {"arms": arms, "arm_shares": arm_shares, "assignment": assignment}


def _raw_path_names(raw: dict) -> tuple[str, ...]:
    """The site component names of the file's paths (``path_1_2``), read before the paths are checked."""
    paths = raw.get("paths", [])
    if not isinstance(paths, list):
        return ()
    return tuple(path_name(pa["from"] - 1, pa["to"] - 1) for pa in paths
                 if isinstance(pa, dict) and type(pa.get("from")) is int and type(pa.get("to")) is int)


def _normalise_table(raw: dict, source: str, table: str, P: int, path_names=()) -> dict:
    """A table of scalar and per-mediator fields (``[site]``, ``[person]``, ...), with its named pairs.

    ``path_names`` are the extra site components of the file's paths (``path_1_2``), which
    ``[site.correlations]`` may name.
    """
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
        if f.per_mediator:
            t_out[key] = _check_vector(source, name, f, v, P, "mediator")
        else:
            t_out[key] = _check_scalar(source, name, f, v)
    if table in ("site", "person"):
        t_out["correlations"] = _pairs(source, table, t_raw.get("correlations", {}), P, path_names)
    if table == "site":
        t_out["cross_dependence"] = _cross_terms(source, t_raw.get("cross_dependence", {}), P)
    return t_out


def _cross_terms(source: str, table, P: int) -> dict:
    """``[site.cross_dependence]``: terms ``"effect_p:compliance_q:compliance_r" = lambda`` (assumption ix).

    The two compliances are put in mediator order, so each term has one name.
    """
    if not isinstance(table, dict):
        raise _err(source, "site.cross_dependence", "must be a table of terms such as "
                                                    "\"effect_2:compliance_1:compliance_2\" = 0.5")
    effects = [f"effect_{p + 1}" for p in range(P)]
    comps = [f"compliance_{p + 1}" for p in range(P)]
    out: dict[str, float] = {}
    for key, v in table.items():
        field = f"site.cross_dependence.{_clean(key)}"
        parts = key.split(":")
        if len(parts) != 3:
            raise _err(source, field, "a term is written \"effect_p:compliance_q:compliance_r\", e.g. "
                                      "\"effect_2:compliance_1:compliance_2\" (q = r for a square)")
        for part, names, what in ((parts[0], effects, "an effect"), (parts[1], comps, "a compliance"),
                                  (parts[2], comps, "a compliance")):
            if part not in names:
                near = difflib.get_close_matches(part, names, n=1, cutoff=0.5)
                hint = f"; did you mean '{near[0]}'?" if near else f"; they are {', '.join(names)}"
                raise _err(source, field, f"'{_clean(part)}' is not {what} of the {P} mediator(s){hint}")
        q, r = sorted((comps.index(parts[1]), comps.index(parts[2])))
        name = f"{parts[0]}:{comps[q]}:{comps[r]}"
        if name in out:
            raise _err(source, field, f"names the same term as \"{name}\" (the compliances' order does not matter)")
        p = effects.index(parts[0])
        if q == r == p:
            raise _err(source, field, "is the mediator's dependence on its own compliance; set "
                                      f"site.nonlinear_dependence{f'[{p + 1}]' if P > 1 else ''} instead")
        out[name] = _check_scalar(source, field, Field("float", None, -MAX_MAGNITUDE, MAX_MAGNITUDE), v)
    return out


def _check_cross_dependence(t: dict, source: str, binary: list) -> None:
    """A cross-mediator term needs a site effect SD to scale and compliances that vary between sites."""
    site = t["site"]
    for name, v in site["cross_dependence"].items():
        if v == 0.0:
            continue
        eff, *comps = name.split(":")
        p = int(eff.split("_")[1]) - 1
        field = f"site.cross_dependence.{name}"
        if site["effect_sd"][p] == 0.0:
            raise _err(source, field, f"has no effect while site.effect_sd is 0 for mediator {p + 1} (it scales "
                                      "sd(delta)); set it above 0")
        for c in comps:
            q = int(c.split("_")[1]) - 1
            spread = t["binary"]["complier_share_site_sd"][q] if binary[q] else site["compliance_sd"][q]
            if spread == 0.0:
                raise _err(source, field, f"needs mediator {q + 1}'s compliance to vary between sites "
                                          "(site.compliance_sd > 0, or binary.complier_share_site_sd > 0 for a "
                                          "binary mediator)")


def _normalise_interactions(raw: dict, source: str) -> list:
    """``[[interactions]]``: each interaction's fields, ``first`` and ``second`` required."""
    i_raw = raw.get("interactions", [])
    if not isinstance(i_raw, list) or not all(isinstance(x, dict) for x in i_raw):
        raise _err(source, "interactions", "must be an array of tables: [[interactions]] with first, second, "
                                           "coefficient")
    out = []
    spec = SCHEMA["interactions"][0]
    for i, ir in enumerate(i_raw):
        pre = f"interactions[{i + 1}]"
        for key in ir:
            if key not in spec:
                raise _unknown(source, f"{pre}.", key, spec)
        for req in ("first", "second"):
            if req not in ir:
                raise _err(source, f"{pre}.{req}", "is required (a mediator number, 1..P)")
        out.append({key: _check_scalar(source, f"{pre}.{key}", f, ir.get(key, f.default)) for key, f in spec.items()})
    return out


def _check_interactions(t: dict, source: str) -> None:
    """Interactions join two different mediators 1..P, first < second, each pair once."""
    P = t["mediators"]["count"]
    seen = set()
    for i, ia in enumerate(t["interactions"]):
        pre = f"interactions[{i + 1}]"
        if ia["first"] > P or ia["second"] > P:
            raise _err(source, pre, f"first and second must name mediators 1..{P}")
        if ia["first"] >= ia["second"]:
            raise _err(source, pre, "must name two different mediators with first < second")
        if (ia["first"], ia["second"]) in seen:
            raise _err(source, pre, f"a second interaction of mediators {ia['first']} and {ia['second']}")
        seen.add((ia["first"], ia["second"]))


def _normalise_paths(raw: dict, source: str) -> list:
    """``[[paths]]``: each path's fields, ``from`` and ``to`` required."""
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
    return paths



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


def _pairs(source: str, level: str, table, P: int, extra_names=()) -> dict:
    """A table of named correlation pairs, e.g. ``"compliance_1:effect_2" = 0.2`` (``extra_names``: path components)."""
    if not isinstance(table, dict):
        raise _err(source, f"{level}.correlations", "must be a table of pairs such as \"compliance_1:effect_1\" = 0.3")
    names = _component_names(level, P) + list(extra_names)
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


def _psd(source, field, R, names):
    lam = np.linalg.eigvalsh(R)
    if lam[0] < -1e-10:
        raise _err(source, field, f"the correlation matrix of ({', '.join(names)}) is not positive semi-definite "
                                  f"(smallest eigenvalue {lam[0]:.3g})")


def _cross_checks(t: dict, source: str, smallest: int) -> None:
    """The constraints between fields, in order; the first failure is raised.  Sets ``t["_warnings"]``."""
    P = t["mediators"]["count"]
    K = t["n_sites"]
    arms = t["treatment"]["arms"]
    binary = [k == "binary" for k in t["mediators"]["kind"]]
    _check_arm_sizes(t, source, smallest)
    _check_curvature(t, source, binary)
    _check_curvature_spread(t, source, binary)
    _check_binary(t, source, binary)
    Rs, Rp = _check_correlations(t, source, binary)
    _check_paths(t, source, binary)
    _check_interactions(t, source)
    for p in range(P):
        if t["site"]["nonlinear_dependence"][p] != 0.0:
            spread = t["binary"]["complier_share_site_sd"][p] if binary[p] else t["site"]["compliance_sd"][p]
            if spread == 0.0:
                raise _err(source, f"site.nonlinear_dependence[{p + 1}]", "needs compliance that varies between sites "
                           "(site.compliance_sd > 0, or binary.complier_share_site_sd > 0 for a binary mediator)")
    _check_cross_dependence(t, source, binary)
    for key in ("heavy_tails", "skew"):
        if t["site"][key] != 0.0 and any(binary):
            raise _err(source, f"site.{key}", "applies to continuous mediators only (a binary mediator's complier "
                                              "shares are calibrated to normal site draws); set it to 0")
    sel = t["selection"]
    if sel["mediator"] > P:
        raise _err(source, "selection.mediator", f"must name a mediator 1..{P}, got {sel['mediator']}")

    _no_effect_checks(t, source, Rs, Rp)

    # identification (assumption viii): not an error, since it is one of the dials
    warnings: list[str] = []
    n_instruments = K * (arms - 1)
    if n_instruments < P:
        warnings.append(f"n_sites: {K} sites x {arms - 1} contrast(s) give {n_instruments} instrument(s) for {P} "
                        "mediators; the effects are not identified (assumption viii) and IV estimators will fail")
    from ..estimators.falsification import design_warnings  # the inference's own warnings (K = P, K = 1)

    warnings += design_warnings(K, P, arms)
    t["_warnings"] = warnings


def _check_arm_sizes(t: dict, source: str, smallest: int) -> None:
    """Enough persons per arm in every site (2 under complete randomization, 5 expected under Bernoulli)."""
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


def _check_curvature(t: dict, source: str, binary: list) -> None:
    """The dose profile: curvature needs 3+ arms and must keep g(L) positive (within [0, g(L)] if binary)."""
    P = t["mediators"]["count"]
    arms = t["treatment"]["arms"]
    if arms == 2 and any(c != 0.0 for c in t["mediators"]["curvature"]):
        raise _err(source, "mediators.curvature", "has no effect with a binary treatment (arms = 2): g(0) = 0 and "
                                                  "g(1) = 1 whatever c; set treatment.arms >= 3 or curvature = 0")
    for p in range(P):
        c = t["mediators"]["curvature"][p]
        L = arms - 1
        if arms > 2 and L + c * L * (L - 1) <= 0:
            raise _err(source, f"mediators.curvature[{p + 1}]",
                       f"must be > {-1 / (L - 1):.4g}: g(L) = L + c L (L-1) has to stay positive so the top arm "
                       "moves the mediator")
        if binary[p] and arms > 2:
            g = np.arange(arms) + t["mediators"]["curvature"][p] * np.arange(arms) * (np.arange(arms) - 1)
            if g[-1] <= 0 or np.any(g < 0) or np.any(g > g[-1]):
                raise _err(source, f"mediators.curvature[{p + 1}]", "for a binary mediator g(t) = t + c t(t-1) "
                                                                    "must stay within [0, g(L)] over the arms")
        if binary[p] and t["mediators"]["outcome_curvature"][p] != 0.0:
            raise _err(source, f"mediators.outcome_curvature[{p + 1}]", "has no effect on a binary mediator "
                                                                        "(m^2 = m); set it to 0")


def _check_curvature_spread(t: dict, source: str, binary: list) -> None:
    """Dose curves varying by site and person: 3+ arms, continuous mediators, correlations with something that varies.

    Each check names the first mediator it fails for (``mediators.curvature_site_sd[2]`` when P > 1).
    """
    P = t["mediators"]["count"]
    med = t["mediators"]
    arms = t["treatment"]["arms"]

    def name(key, p):
        return f"mediators.{key}[{p + 1}]" if P > 1 else f"mediators.{key}"

    for p in range(P):
        for key in ("curvature_site_sd", "curvature_person_sd"):
            if med[key][p] == 0.0:
                continue
            if arms == 2:
                raise _err(source, name(key, p), "has no effect with a binary treatment (arms = 2): g(0) = 0 and "
                                                 "g(1) = 1 whatever the curvature; set treatment.arms >= 3 or this "
                                                 "to 0")
            if binary[p]:
                raise _err(source, name(key, p), "applies to continuous mediators only (a binary mediator's dose "
                                                 "g(t) / g(L) must stay within [0, 1] for every person); set it to 0")
        for key, sd_key, effect_sd, what in (
                ("curvature_site_effect_correlation", "curvature_site_sd", t["site"]["effect_sd"][p], "site"),
                ("curvature_effect_correlation", "curvature_person_sd", t["person"]["effect_sd"][p], "person")):
            if med[key][p] == 0.0:
                continue
            if med[sd_key][p] == 0.0:
                raise _err(source, name(key, p), f"has no effect while {name(sd_key, p)} is 0; set it above 0, or "
                                                 "this to 0")
            if effect_sd == 0.0:
                raise _err(source, name(key, p), f"has no effect while {what}.effect_sd is 0"
                                                 f"{f' for mediator {p + 1}' if P > 1 else ''} (the curvature "
                                                 "correlates with the mediator's effect); set it above 0, or this to 0")


def _check_binary(t: dict, source: str, binary: list) -> None:
    """Binary mediators: the type shares sum to one, and no continuous-only key is set when all are binary."""
    P = t["mediators"]["count"]
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


def _check_correlations(t: dict, source: str, binary: list):
    """Both correlation matrices positive semi-definite; returns them (site, person)."""
    P = t["mediators"]["count"]
    Rs = correlation_matrix("site", t["site"], P)
    _psd(source, "site.correlations", Rs, _component_names("site", P))
    Rp = correlation_matrix("person", t["person"], P)
    _psd(source, "person.correlations", Rp, _component_names("person", P))
    ends = [(pa["from"] - 1, pa["to"] - 1) for pa in sorted(t["paths"], key=lambda x: (x["to"], x["from"]))]
    if ends and any(":" in k and "path_" in k for k in t["site"]["correlations"]):
        if any(not (0 <= a < P and 0 <= b < P) for a, b in ends):
            raise _err(source, "paths", f"from and to must name mediators 1..{P}")
        names = _component_names("site", P) + [path_name(a, b) for a, b in ends]
        _psd(source, "site.correlations", correlation_matrix("site", t["site"], P, ends), names)
    for p in range(P):
        if binary[p] and Rp[p, 2 * P + p] != 0.0:
            raise _err(source, f"person.correlations.compliance_{p + 1}:mediator_{p + 1}",
                       "must be 0 for a binary mediator (its latent compliance and baseline fix the type shares)")
    return Rs, Rp


def _check_paths(t: dict, source: str, binary: list) -> None:
    """Paths run from an earlier to a later continuous mediator, once; chains (1 -> 2 -> 3) are allowed.

    A path may start at a binary mediator (its change is the take-up's, 0 or +-1) but not end at
    one: a binary mediator's take-up follows compliance types drawn from two independent latent
    normals (the complier index, and the baseline that splits the non-compliers into always- and
    never-takers), which are not ordered along one index that an upstream change could shift.
    """
    P = t["mediators"]["count"]
    seen = set()
    for i, pa in enumerate(t["paths"]):
        pre = f"paths[{i + 1}]"
        if pa["from"] > P or pa["to"] > P:
            raise _err(source, pre, f"from and to must name mediators 1..{P}")
        if pa["from"] >= pa["to"]:
            raise _err(source, pre, "must run from an earlier to a later mediator (from < to)")
        if binary[pa["to"] - 1]:
            raise _err(source, f"{pre}.to", f"a path cannot end at a binary mediator (mediator {pa['to']}): its "
                                            "take-up follows fixed compliance types ([binary]), not one index that an "
                                            "upstream change could shift; end it at a continuous mediator, or start a "
                                            "path at the binary one")
        if (pa["from"], pa["to"]) in seen:
            raise _err(source, pre, f"a second path from {pa['from']} to {pa['to']}")
        seen.add((pa["from"], pa["to"]))


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
    compliances vary (a compliance SD shrunk to 0, a design cut to one mediator), a path's
    ``effect_correlation`` while its ``person_sd`` is 0 (the stress test's path dial), and the type
    effect shifts of binary mediators while the type's share is 0 (the stress test's defier dial).
    """
    x = _Inertia(t, source)
    _person_no_effect(x)
    _site_no_effect(x)
    _selection_no_effect(x, Rp)


class _Inertia:
    """What keeps each component of a scenario from mattering: the zero settings, by name."""

    def __init__(self, t: dict, source: str):
        self.t, self.source = t, source
        P = self.P = t["mediators"]["count"]
        binary = self.binary = [k == "binary" for k in t["mediators"]["kind"]]
        self.site, self.person, self.b, self.sel = t["site"], t["person"], t["binary"], t["selection"]
        sel, b = self.sel, self.b
        self.strength = sel["strength"]
        self.sel_on_comp = [self.strength != 0.0 and sel["on"] == "compliance" and sel["mediator"] == p + 1
                            for p in range(P)]
        self.sel_on_outcome = self.strength != 0.0 and sel["on"] == "outcome"
        self.spread = [b["complier_share_site_sd"][p] if binary[p] else self.site["compliance_sd"][p]
                       for p in range(P)]
        self.spread_name = ["binary.complier_share_site_sd" if binary[p] else "site.compliance_sd" for p in range(P)]

    def person_inert(self, j: int):
        """The zero settings that keep person component j from mattering (None when it matters)."""
        P, binary, person, b = self.P, self.binary, self.person, self.b
        kind, p = divmod(j, P) if j < 3 * P else (3, 0)
        if kind == 0:  # compliance_p
            if binary[p] or self.sel_on_comp[p] or person["compliance_sd"][p] != 0.0:
                return None
            return ["person.compliance_sd"]
        if kind == 1:  # effect_p (a path's person-level coefficient may load on it)
            if person["effect_sd"][p] != 0.0 or any(
                    pa["to"] == p + 1 and pa["person_sd"] != 0.0 and pa["effect_correlation"] != 0.0
                    for pa in self.t["paths"]):
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
        return None if self.sel_on_outcome or person["outcome_sd"] != 0.0 else ["person.outcome_sd"]

    def site_inert(self, j: int):
        """The zero settings that keep site component j from mattering (None when it matters)."""
        P, site = self.P, self.site
        kind, p = divmod(j, P) if j < 2 * P else (2, 0)
        if kind == 0:
            return None if self.spread[p] != 0.0 else [self.spread_name[p]]
        if kind == 1:
            return None if site["effect_sd"][p] != 0.0 else ["site.effect_sd"]
        return None if site["direct_effect_sd"] != 0.0 else ["site.direct_effect_sd"]

    @staticmethod
    def pair(inert_of, i, j):
        causes = [c for k in (i, j) for c in (inert_of(k) or [])]
        return causes or None

    def why(self, causes, p=None) -> str:
        where = f" for mediator {p + 1}" if p is not None and self.P > 1 else ""
        if len(causes) == 1:
            return f"has no effect while {causes[0]} is 0{where}; set it above 0, or this to 0"
        return f"has no effect while {' and '.join(causes)} are 0{where}; set them above 0, or this to 0"

    def per_mediator(self, table: str, key: str, causes_of, text=None):
        """A per-mediator setting: an error where a list entry, or the one value for all, has no effect."""
        text = text or self.why
        P = self.P
        values = self.t[table][key]
        set_ = [p for p in range(P) if values[p] != 0.0]
        bad = [p for p in set_ if causes_of(p) is not None]
        if not bad:
            return
        if f"{table}.{key}" in self.t["_lists"]:
            p = bad[0]
            raise _err(self.source, f"{table}.{key}[{p + 1}]" if P > 1 else f"{table}.{key}", text(causes_of(p), p))
        if len(bad) == len(set_):  # one value for every mediator, with an effect on none
            raise _err(self.source, f"{table}.{key}", text(causes_of(bad[0]), bad[0]))


def _person_no_effect(x: _Inertia) -> None:
    """Person level: the within-site correlation (vii.a), confounding, named pairs."""
    P, binary, pair, inert = x.P, x.binary, x.pair, x.person_inert
    x.per_mediator("person", "within_site_correlation", lambda p: None if binary[p] else pair(inert, p, P + p))
    x.per_mediator("person", "confounding", lambda p: pair(inert, 2 * P + p, 3 * P))
    idx = {n: k for k, n in enumerate(_component_names("person", P))}
    for key, v in x.person["correlations"].items():
        a, c = (idx[n] for n in key.split(":"))
        if v != 0.0 and not any(binary[p] and {a, c} == {p, P + p} for p in range(P)):
            causes = pair(inert, a, c)
            if causes:
                raise _err(x.source, f"person.correlations.{key}", x.why(causes))


def _site_no_effect(x: _Inertia) -> None:
    """Site level: compliance-effect correlation and nonlinear dependence (ix), named pairs, baselines."""
    P, binary, pair, inert, site = x.P, x.binary, x.pair, x.site_inert, x.site
    x.per_mediator("site", "compliance_effect_correlation", lambda p: pair(inert, p, P + p))
    x.per_mediator("site", "nonlinear_dependence",
                   lambda p: None if site["effect_sd"][p] != 0.0 else ["site.effect_sd"],
                   lambda c, p: x.why(c, p).replace("; set", " (it scales sd(delta)); set", 1))
    sidx = {n: k for k, n in enumerate(_component_names("site", P))}
    path_sd = {path_name(pa["from"] - 1, pa["to"] - 1): pa["site_sd"] for pa in x.t["paths"]}
    for key, v in site["correlations"].items():
        names = key.split(":")
        if any(n in path_sd for n in names):
            # a path's site coefficient matters when it varies between sites; its partner as below
            causes = [f"paths[{_path_number(x.t, n)}].site_sd" for n in names if n in path_sd and path_sd[n] == 0.0]
            causes += [c for n in names if n not in path_sd and sidx[n] != 2 * P for c in (inert(sidx[n]) or [])]
            if v != 0.0 and causes:
                raise _err(x.source, f"site.correlations.{key}", x.why(causes))
            continue
        a, c = (sidx[n] for n in names)
        if v != 0.0 and 2 * P not in (a, c):
            causes = pair(inert, a, c)
            if causes:
                raise _err(x.source, f"site.correlations.{key}", x.why(causes))
    x.per_mediator("site", "mediator_baseline_sd", lambda p: ["mediators.kind"] if binary[p] else None,
                   lambda c, p: f"has no effect on a binary mediator{f' (mediator {p + 1})' if P > 1 else ''}, "
                                "whose baseline follows [binary]; set it to 0")


def _path_number(t: dict, name: str) -> int:
    """The 1-based place in the file of the path named ``name`` (``path_1_2``)."""
    return next(i + 1 for i, pa in enumerate(t["paths"]) if path_name(pa["from"] - 1, pa["to"] - 1) == name)


def _selection_no_effect(x: _Inertia, Rp: np.ndarray) -> None:
    """Selection (vi): an index that varies with nothing selects no one in particular."""
    P, sel, person = x.P, x.sel, x.person
    if x.strength != 0.0:
        on_outcome = sel["on"] == "outcome"
        j = 3 * P if on_outcome else sel["mediator"] - 1
        if on_outcome or not x.binary[j]:
            sd_name, sd = (("person.outcome_sd", person["outcome_sd"]) if on_outcome
                           else ("person.compliance_sd", person["compliance_sd"][j]))
            if sd == 0.0 and not any(Rp[j, k] != 0.0 for k in range(3 * P + 1) if k != j):
                where = "" if on_outcome or P == 1 else f" for mediator {j + 1}"
                raise _err(x.source, "selection.strength", f"has no effect while {sd_name} is 0{where} and the "
                                                           "selection index correlates with nothing; set it above 0")


def _count(raw: dict) -> int:
    med = raw.get("mediators", {})
    if isinstance(med, dict):
        if isinstance(med.get("names"), list):
            return len(med["names"])
        if isinstance(med.get("count"), int):
            return med["count"]
    return 1
