"""Heat maps: a measure over a two-dimensional grid, each cell annotated with value and MCSE."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .base import Z95, PlotError, _as_summary, _mediators, _nominal, _select, _wrap
from .grid import _cells_of, _fixed_note, _fmt_value, _line_cells, _sort_key, _value_key
from .labels import _COVERAGE, _ZERO_LINE, _est_label, _measure_label, dial_label


def heatmap(summary: pd.DataFrame, path_x: str, path_y: str, measure: str, *, estimator: str = "2sls",
            target: str = "ate", mediator=None, where: Mapping | None = None, cells: Mapping | None = None,
            nominal: float | None = None) -> Figure:
    """A measure over a two-dimensional grid, cells annotated with value and MCSE.

    Colours: a diverging map (purple-orange, safe for colour-vision deficiencies) centred at
    zero for biases and at the nominal level for coverage; ``cividis`` otherwise.  The
    colour bar is the key.  Paths other than ``path_x`` and ``path_y`` are held at their
    first value unless ``where`` fixes them.

    Parameters
    ----------
    summary : pandas.DataFrame
    path_x, path_y : str
        The two grid paths (columns, rows).
    measure, target, mediator, where, cells, nominal
        As in :func:`dial_plot`.
    estimator : str
        The estimator shown (default 2SLS).

    Returns
    -------
    matplotlib.figure.Figure
    """
    run = _as_summary(summary)
    summary = run.table
    grid = _cells_of(run, cells)
    line_cells, _, fixed, companions = _line_cells(grid, path_x, where, also=[path_y])
    # every cell with the other paths at the chosen values, whatever path_x and path_y are
    chosen = [c for c in sorted(grid)
              if all(_value_key(dict(grid[c]).get(p)) == _value_key(v) for p, v in fixed.items())]
    xs = sorted({_value_key(dict(grid[c]).get(path_x)): dict(grid[c]).get(path_x) for c in chosen}.values(),
                key=_sort_key)
    ys = sorted({_value_key(dict(grid[c]).get(path_y)): dict(grid[c]).get(path_y) for c in chosen}.values(),
                key=_sort_key)
    if len(xs) < 2 or len(ys) < 2:
        raise PlotError(f"{path_x} x {path_y}: not a two-dimensional grid (values {len(xs)} x {len(ys)})")
    xi = {_value_key(v): i for i, v in enumerate(xs)}
    yi = {_value_key(v): i for i, v in enumerate(ys)}
    sel = _select(summary, measure, target)
    sel = sel[(sel["cell"].isin(chosen)) & (sel["estimator"] == estimator)]
    if sel.empty:
        raise PlotError(f"estimator {estimator!r} has no {measure!r} in the summary")
    mediators = _mediators(sel, mediator)
    fig = Figure(figsize=(5.8 * len(mediators) + 1.2, 4.8 + 0.25 * max(len(ys) - 4, 0)), layout="constrained")
    axes = fig.subplots(1, len(mediators), squeeze=False).ravel()
    nominal = _nominal(nominal, run)
    for a, med in zip(axes, mediators):
        V = np.full((len(ys), len(xs)), np.nan)
        S = np.full_like(V, np.nan)
        for rec in sel[sel["mediator"] == med].itertuples():
            d = dict(grid[int(rec.cell)])
            V[yi[_value_key(d[path_y])], xi[_value_key(d[path_x])]] = rec.value
            S[yi[_value_key(d[path_y])], xi[_value_key(d[path_x])]] = rec.mcse
        im = _annotated_image(a, V, S, measure, nominal)
        a.set_xticks(range(len(xs)), [_fmt_value(v) for v in xs])
        a.set_yticks(range(len(ys)), [_fmt_value(v) for v in ys])
        a.set_xlabel(dial_label(path_x))
        a.set_ylabel(dial_label(path_y))
        a.set_title(f"mediator {med}", fontsize="medium")
        cb = fig.colorbar(im, ax=a)
        cb.set_label(_measure_label(measure, target))
    note = _fixed_note(fixed, companions)
    fig.suptitle(_wrap(fig, f"{_est_label(estimator)}: {_measure_label(measure, target)} (± 1.96 MCSE in each "
                            f"cell)" + (f"\n({note})" if note else "")), fontsize="large")
    return fig


def _annotated_image(a, V: np.ndarray, S: np.ndarray, measure: str, nominal: float):
    """The matrix V as an image (diverging colours about zero or the nominal level), each cell with value +- 1.96 S."""
    from matplotlib.colors import TwoSlopeNorm

    finite = V[np.isfinite(V)]
    if measure in _ZERO_LINE or measure in _COVERAGE:
        centre = 0.0 if measure in _ZERO_LINE else nominal
        span = max(np.max(np.abs(finite - centre)) if finite.size else 1.0, 1e-12)
        norm = TwoSlopeNorm(vcenter=centre, vmin=centre - span, vmax=centre + span)
        cmap = "PuOr_r"
    else:
        norm, cmap = None, "cividis"
    im = a.imshow(V, origin="lower", aspect="auto", cmap=cmap, norm=norm)
    for i in range(V.shape[0]):
        for j in range(V.shape[1]):
            if not np.isfinite(V[i, j]):
                continue
            rgba = im.cmap(im.norm(V[i, j]))
            lum = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
            txt = f"{V[i, j]:.3g}" + (f"\n±{Z95 * S[i, j]:.2g}" if np.isfinite(S[i, j]) and S[i, j] > 0 else "")
            a.text(j, i, txt, ha="center", va="center", fontsize="small",
                   color="black" if lum > 0.5 else "white")
    return im
