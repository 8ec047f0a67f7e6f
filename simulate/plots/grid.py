"""The grid of a run: which cells form a line along one dial, and the dial axis."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import PlotError
from .labels import dial_label


def _cells_of(summary, cells: Mapping | None = None) -> dict[int, list[tuple[str, Any]]]:
    """The grid values of each cell: ``cells`` when given, else the summary's (a :class:`Summary`)."""
    cells = cells if cells is not None else (summary.cells or None)
    if cells is None:
        raise PlotError("the summary has no grid values (Summary.cells); use simulate.plots.load_summary "
                        "or simulate.run_summary.summarize_run")
    return {int(c): [(str(p), v) for p, v in vals] for c, vals in cells.items()}


def _value_key(v) -> Any:
    return json.dumps(v, sort_keys=True, default=str)


def _determines(cells: Mapping, a: str, b: str) -> bool:
    """True when the value of path ``a`` fixes that of path ``b`` in every cell (zipped paths)."""
    seen: dict = {}
    for vals in cells.values():
        d = dict(vals)
        if a not in d or b not in d:
            return False
        ka, kb = _value_key(d[a]), _value_key(d[b])
        if seen.setdefault(ka, kb) != kb:
            return False
    return True


def grid_paths(cells: Mapping) -> list[str]:
    """The grid paths that take more than one value, in first-seen order."""
    paths: dict[str, set] = {}
    for vals in cells.values():
        for p, v in vals:
            paths.setdefault(p, set()).add(_value_key(v))
    return [p for p, s in paths.items() if len(s) > 1]


def grid_dimensions(cells: Mapping) -> list[list[str]]:
    """The independent directions of a grid: groups of paths that move together (``zip``)."""
    dims: list[list[str]] = []
    for p in grid_paths(cells):
        for d in dims:
            if _determines(cells, d[0], p) and _determines(cells, p, d[0]):
                d.append(p)
                break
        else:
            dims.append([p])
    return dims


def _line_cells(cells: Mapping, path: str, where: Mapping | None = None, also: Sequence[str] = ()):
    """Cells along ``path`` with every other free path fixed.

    Returns ``(cells_in_order, x_values, fixed, companions)``: the cells sorted by the value of
    ``path``, those values, the values the other free paths are held at, and the paths that
    move with ``path`` (zipped with it).  ``also`` names paths that stay free (the second
    axis of a heat map).
    """
    if not any(path == p for vals in cells.values() for p, _ in vals):
        known = grid_paths(cells)
        raise PlotError(f"{path}: not a grid path of this run (grid paths: {', '.join(known) or 'none'})")
    others = [p for p in grid_paths(cells) if p != path and p not in also]
    companions = [p for p in others if _determines(cells, path, p)]
    free = [p for p in others if p not in companions]
    where = dict(where or {})
    groups: dict[tuple, list[int]] = {}
    for c in sorted(cells):
        d = dict(cells[c])
        if any(_value_key(d.get(p)) != _value_key(v) for p, v in where.items()):
            continue
        groups.setdefault(tuple(_value_key(d.get(p)) for p in free), []).append(c)
    if not groups:
        raise PlotError(f"no cell of the grid has {', '.join(f'{p} = {v}' for p, v in where.items())}")
    chosen = groups[next(iter(groups))]
    first = dict(cells[chosen[0]])
    fixed = {p: first.get(p) for p in free}
    xs = [dict(cells[c]).get(path) for c in chosen]
    order = sorted(range(len(chosen)), key=lambda i: _sort_key(xs[i]))
    return [chosen[i] for i in order], [xs[i] for i in order], fixed, companions


def _sort_key(v):
    return (0, float(v), "") if _is_number(v) else (1, 0.0, _value_key(v))


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _x_positions(xs: Sequence) -> tuple[np.ndarray, list[str] | None]:
    if all(_is_number(v) for v in xs):
        return np.asarray(xs, float), None
    return np.arange(len(xs), dtype=float), [str(v) for v in xs]


def _dial_axis(ax, x: np.ndarray, ticks: list[str] | None) -> None:
    """Ticks at the grid's values; a log scale for sizes spread over a decade or more (K, n_s)."""
    if ticks is not None:
        ax.set_xticks(x, ticks)
        return
    if x.size >= 3 and np.all(x > 0) and x.max() / x.min() >= 8:
        ax.set_xscale("log")
        ax.set_xticks(x, [_fmt_value(v) for v in x])
        ax.minorticks_off()


def _fmt_value(v) -> str:
    if _is_number(v):
        return f"{v:g}"
    return str(v)


def _fixed_note(fixed: Mapping, companions: Sequence[str]) -> str:
    bits = []
    def short(p: str) -> str:
        return dial_label(p).split(" [")[0]

    if companions:
        bits.append("moving with it: " + ", ".join(short(p) for p in companions))
    if fixed:
        bits.append("held at " + ", ".join(f"{short(p)} = {_fmt_value(v)}" for p, v in fixed.items()))
    return "; ".join(bits)
