"""Grids: a ``[grid]`` table sweeps any number of a scenario by its dotted path.

Paths such as ``site.effect_sd``, ``site.compliance_mean[2]`` (mediator 2),
``paths[1].mean``, a pair ``person.correlations.compliance_1:effect_1`` or a term
``site.cross_dependence.effect_2:compliance_1:compliance_2``.  Listed
paths form a cartesian product; paths named together in ``zip = [["a", "b"]]`` move
together.  Each grid cell (:class:`GridCell`) is a full scenario with a stable
content hash.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import Scenario
from .schema import MAX_GRID_CELLS, SCHEMA, Field, ScenarioError
from .validation import _clean, _count, _err, _read, _scan, _show, from_dict

__all__ = ["GridCell", "set_path", "expand_grid", "validate_file"]


@dataclass(frozen=True)
class GridCell:
    """One cell of a grid: the values it sets and the full scenario."""

    index: int
    values: tuple[tuple[str, Any], ...]
    scenario: Scenario

    @property
    def hash(self) -> str:
        """The cell scenario's content hash (:attr:`Scenario.hash`)."""
        return self.scenario.hash


def validate_file(path: str | Path) -> list[GridCell]:
    """Validate a file and every cell of its grid; returns the cells (one if no grid)."""
    raw = _read(path)
    return expand_grid(raw, source=str(path))


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

    Parameters
    ----------
    raw : dict
        The scenario table as read from TOML.
    path : str
        The dotted path (``site.effect_sd``, ``site.compliance_mean[2]``, ``paths[1].mean``,
        ``person.correlations.compliance_1:effect_1``).
    value
        The number to put there.
    source : str
        Where the path came from, for the error message.

    Returns
    -------
    dict
        The copy with the value set.
    """
    shown = _clean(path)

    def fail(msg: str) -> ScenarioError:
        return _err(source, f"grid.{shown}", msg)

    try:
        steps = _split_path(path)
    except ValueError:
        raise fail("is not a dotted path such as site.effect_sd or site.compliance_mean[2]") from None
    out = dict(raw)
    node: Any = out
    schema: Any = SCHEMA
    for depth, (key, index) in enumerate(steps):
        last = depth == len(steps) - 1
        where = ".".join(k + (f"[{i}]" if i else "") for k, i in steps[: depth + 1])
        sub_schema = _sub_schema(schema, key, where, fail)
        if sub_schema in ("site_pairs", "person_pairs", "site_terms"):
            if last or len(steps) != depth + 2:
                raise fail(_pair_hint(sub_schema))
            table = node.get(key, {})
            node[key] = dict(table) if isinstance(table, dict) else {}
            node[key][steps[depth + 1][0]] = value
            return out
        if last:
            _set_leaf(node, key, index, value, sub_schema, raw, where, fail)
            return out
        node, schema = _descend(node, key, index, sub_schema, where, fail)
    return out


def _sub_schema(schema, key: str, where: str, fail):
    """The schema entry of ``key`` (None below a list of tables' fields); a near-miss hint if there is none."""
    if isinstance(schema, dict) and key not in schema:
        valid = [k for k in schema if k != "grid"]
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise fail(f"'{where}' names no field of the scenario{hint}")
    return schema.get(key) if isinstance(schema, dict) else None


def _pair_hint(kind: str) -> str:
    """The message for a pair or term table addressed without its one pair or term name."""
    example = ("site.cross_dependence.effect_2:compliance_1:compliance_2" if kind == "site_terms"
               else "site.correlations.compliance_1:effect_1")
    return f"name a {'term' if kind == 'site_terms' else 'pair'}, e.g. {example}"


def _set_leaf(node: dict, key: str, index: int | None, value, sub_schema, raw: dict, where: str, fail) -> None:
    """Set the number ``node[key]`` (or its ``index``-th entry, expanding a scalar to a list first)."""
    if isinstance(sub_schema, dict) or isinstance(sub_schema, list):
        raise fail(f"'{where}' is a table, not a number")
    if index is None:
        node[key] = value
        return
    field = sub_schema if isinstance(sub_schema, Field) else None
    cur = node.get(key, field.default if field is not None else None)
    length = _count(raw) if (field is not None and field.per_mediator) else (
        len(cur) if isinstance(cur, list) else None)
    if field is not None and field.per_site:
        length = raw.get("n_sites", 50)
    if length is None:
        raise fail(f"'{key}' is not a list")
    if not isinstance(cur, list):
        if not isinstance(length, int) or not 1 <= length <= 1_000_000:
            raise fail(f"'{key}' is not a list")
        cur = [cur] * length
    if not 1 <= index <= len(cur):
        raise fail(f"index {index} is outside 1..{len(cur)}")
    cur = list(cur)
    cur[index - 1] = value
    node[key] = cur


def _descend(node: dict, key: str, index: int | None, sub_schema, where: str, fail) -> tuple[dict, Any]:
    """One step down the path: copy the table (or the picked entry of a list of tables) and return it."""
    if isinstance(sub_schema, list):  # array of tables (paths)
        arr = node.get(key)
        if index is None or not isinstance(arr, list) or not 1 <= index <= len(arr) or \
                not isinstance(arr[index - 1], dict):
            raise fail(f"'{key}' needs an index of an existing entry, e.g. {key}[1].mean")
        arr = list(arr)
        arr[index - 1] = dict(arr[index - 1])
        node[key] = arr
        return arr[index - 1], sub_schema[0]
    if not isinstance(sub_schema, dict):
        raise fail(f"'{where}' is a number, not a table")
    table = node.get(key, {})
    if not isinstance(table, dict):
        raise fail(f"'{where}' must be a table ([{key}]), got {_show(table)}")
    node[key] = dict(table)
    return node[key], sub_schema


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
        raise _err(source, "grid.zip",
                   "must be a list of lists of paths, e.g. zip = [[\"site.effect_sd\", \"n_sites\"]]")
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
