"""The bias decomposition: identification bias against finite-sample bias along one dial."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .base import Z95, _as_summary, _band_alpha, _finish_legend, _mediators, _select, _wrap
from .grid import _cells_of, _dial_axis, _fixed_note, _line_cells, _x_positions
from .labels import TARGET_LABELS, _line_kwargs, _order_estimators, dial_label


def bias_decomposition_plot(summary: pd.DataFrame, path: str, *, target: str = "ate", mediator=None,
                            estimators: Sequence[str] | None = None, where: Mapping | None = None,
                            cells: Mapping | None = None) -> Figure:
    r"""Identification bias against finite-sample bias, per estimator, along one dial.

    Total bias splits as ``bias = identification_bias + finite_sample_bias`` with
    identification bias = limit - target (what an infinitely large study would still get
    wrong because an assumption fails; exact, no Monte Carlo error) and finite-sample bias
    = mean estimate - limit (too few sites or persons; drawn with its band
    :math:`\pm 1.96\,\mathrm{MCSE}`).  Left panel: identification bias; right panel:
    finite-sample bias; one row per mediator; estimators without a known limit are left out.

    Parameters
    ----------
    summary, path, target, mediator, estimators, where, cells
        As in :func:`dial_plot`; ``target`` is one of the population targets
        (``ate``, ``late``, ``compliance_weighted``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    run = _as_summary(summary)
    summary = run.table
    grid = _cells_of(run, cells)
    line, xs, fixed, companions = _line_cells(grid, path, where)
    x, ticks = _x_positions(xs)
    ident = _select(summary, "identification_bias", target)
    fsb = _select(summary, "finite_sample_bias", target)
    ident, fsb = ident[ident["cell"].isin(line)], fsb[fsb["cell"].isin(line)]
    mediators = _mediators(ident, mediator)
    if estimators is None:
        estimators = _order_estimators(ident["estimator"])
    position = {c: i for i, c in enumerate(line)}
    rows = len(mediators)
    fig = Figure(figsize=(13.0, 4.4 * rows + 1.6), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    for r, med in enumerate(mediators):
        for col, (frame, banded) in enumerate(((ident, False), (fsb, True))):
            a = axes[r, col]
            part = frame[frame["mediator"] == med]
            for est in estimators:
                e = part[part["estimator"] == est]
                if e.empty or not np.isfinite(e["value"].to_numpy(float)).any():
                    continue
                idx = np.array([position[c] for c in e["cell"]])
                order = np.argsort(idx)
                xv, v = x[idx[order]], e["value"].to_numpy(float)[order]
                kw = _line_kwargs(est, estimators)
                if banded:
                    s = np.nan_to_num(e["mcse"].to_numpy(float)[order], nan=0.0)
                    a.fill_between(xv, v - Z95 * s, v + Z95 * s, color=kw["color"], alpha=_band_alpha(len(estimators)),
                                   linewidth=0)
                a.plot(xv, v, **kw)
            a.axhline(0.0, color="#333333", linewidth=0.9, zorder=1)
            a.grid(True, color="#dddddd", linewidth=0.6)
            a.set_xlabel(dial_label(path))
            _dial_axis(a, x, ticks)
            what = "identification bias (limit − target)" if col == 0 else "finite-sample bias (mean − limit)"
            a.set_ylabel(what)
            a.set_title(f"{what.split(' (')[0]}" + (f", mediator {med}" if rows > 1 or med != "M1" else ""),
                        fontsize="medium")
        lo = min(axes[r, 0].get_ylim()[0], axes[r, 1].get_ylim()[0])
        hi = max(axes[r, 0].get_ylim()[1], axes[r, 1].get_ylim()[1])
        for a in axes[r]:
            a.set_ylim(lo, hi)  # the same scale, so the two parts compare at a glance
    note = _fixed_note(fixed, companions)
    short = dial_label(path).split(" [")[0]
    fig.suptitle(_wrap(fig, f"Bias against the {TARGET_LABELS.get(target, target)} split into identification "
                            f"and finite-sample parts, along {short}" + (f"\n({note})" if note else "")),
                 fontsize="large")
    _finish_legend(fig, list(axes.ravel()), False, band_label="Monte Carlo 95% band (finite-sample part)")
    return fig
