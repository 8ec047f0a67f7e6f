"""Sweep curves: a performance measure against one dial, one line per estimator with its Monte Carlo band."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .base import (
    Z95,
    PlotError,
    _as_summary,
    _band_alpha,
    _finish_legend,
    _mediators,
    _nominal,
    _nominal_band,
    _panel_grid,
    _select,
    _wrap,
)
from .grid import _cells_of, _dial_axis, _fixed_note, _line_cells, _x_positions
from .labels import (
    _COVERAGE,
    _TARGET_FREE,
    _ZERO_LINE,
    MEASURE_LABELS,
    TARGET_LABELS,
    _line_kwargs,
    _measure_label,
    _order_estimators,
    dial_label,
)


def dial_plot(summary: pd.DataFrame, path: str, measure: str, *, target: str | Mapping = "ate", mediator=None,
              estimators: Sequence[str] | None = None, nominal: float | None = None, ax=None,
              title: str | None = None, where: Mapping | None = None, cells: Mapping | None = None) -> Figure:
    r"""A performance measure against one dial, one line per estimator with its Monte Carlo band.

    x is the value of the grid path ``path`` in each cell of a line of the grid (cells that
    differ only in ``path`` and the paths zipped with it; other grid paths are held at their
    first value unless ``where`` says otherwise); y is ``measure`` against ``target``, with
    the band :math:`\hat v \pm 1.96\,\mathrm{MCSE}`.  For ``coverage`` (and
    ``bias_eliminated_coverage``) the nominal level :math:`1-\alpha` is drawn with its
    band :math:`1-\alpha \pm 1.96\sqrt{\alpha(1-\alpha)/n}` (n replications); for a bias
    the zero line.

    Parameters
    ----------
    summary : pandas.DataFrame
        The long summary (:func:`simulate.run_summary.summarize_directory` or :func:`load_summary`),
        with ``attrs["cells"]`` (or pass ``cells``).
    path : str
        A grid path, e.g. ``"person.within_site_correlation"``.
    measure : str
        A measure of :mod:`simulate.measures` (``bias``, ``coverage``, ``rmse``, ...).  Measures
        without a target (``empirical_se``, ``power``, ...) are read under target ``none``.
    target : str or mapping
        ``ate`` (default), ``late``, ``compliance_weighted``, ``limit``, ``sample``, ``sample_late``;
        or ``{mediator: target}`` for a target per panel (e.g. the LATE for binary mediators
        and the ATE for continuous ones; a mediator not in the mapping gets ``ate``).
    mediator : str or list of str, optional
        Default: every mediator (the between-site intercept's ``direct_effect`` row only
        when asked for), one panel each.
    estimators : list of str, optional
        Default: every estimator with a value.
    nominal : float, optional
        Nominal coverage (default ``summary.attrs["level"]``, else 0.95).
    ax : matplotlib Axes, optional
        Draw into this axes (one mediator only: the first when several) and return its figure.
    title : str, optional
    where : mapping, optional
        Values of the other grid paths that select the line, ``{path: value}``.
    cells : mapping, optional
        Grid values per cell, when the summary has no ``attrs["cells"]``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    run = _as_summary(summary)
    summary = run.table
    grid = _cells_of(run, cells)
    line, xs, fixed, companions = _line_cells(grid, path, where)
    x, ticks = _x_positions(xs)
    per_panel = isinstance(target, Mapping)
    targets = dict(target) if per_panel else {}
    sel = _select_targets(summary, measure, target)
    sel = sel[sel["cell"].isin(line)]
    mediators = _mediators(sel, mediator)
    own_ax = ax is not None
    mediators = mediators[:1] if own_ax else mediators
    fig, axes = (ax.figure, [ax]) if own_ax else _panel_grid(len(mediators))
    estimators = _chosen_estimators(summary, sel, estimators)
    position = {c: i for i, c in enumerate(line)}
    nominal = _nominal(nominal, run)
    band_alpha = _band_alpha(len(estimators))
    for a, med in zip(axes, mediators):
        part = sel[sel["mediator"] == med]
        drawn = _draw_lines(a, part, estimators, x, position, band_alpha)
        panel_target = targets.get(med, "ate") if per_panel else target
        _decorate(a, part, measure, panel_target, path, x, ticks, nominal)
        if not drawn:
            a.text(0.5, 0.5, "no estimator has this measure", transform=a.transAxes, ha="center")
        a.set_title(f"mediator {med}", fontsize="medium")
    note = _fixed_note(fixed, companions)
    shown = {targets.get(m, "ate") for m in mediators} if per_panel else {target}
    head = title or _dial_title(measure, shown.pop() if len(shown) == 1 else "", path)  # one target: the title's
    if own_ax:
        axes[0].set_title(head + f", mediator {mediators[0]}", fontsize="medium")
    else:
        fig.suptitle(_wrap(fig, head + (f"\n({note})" if note else "")), fontsize="large")
    _finish_legend(fig, axes, own_ax)
    return fig


def _chosen_estimators(summary: pd.DataFrame, sel: pd.DataFrame, estimators) -> list[str]:
    """The estimators asked for (each must be in the summary), or every one with a value, in registry order."""
    if estimators is None:
        return _order_estimators(sel["estimator"])
    from ..estimators import RENAMED_ESTIMATORS

    unknown = [e for e in estimators if e not in set(summary["estimator"])]
    if unknown and unknown[0] in RENAMED_ESTIMATORS:
        raise PlotError(f"estimator {unknown[0]!r} was renamed {RENAMED_ESTIMATORS[unknown[0]]!r}: use "
                        f"{RENAMED_ESTIMATORS[unknown[0]]!r}")
    if unknown:
        raise PlotError(f"estimator {unknown[0]!r} not in the summary")
    return estimators


def _select_targets(summary: pd.DataFrame, measure: str, target) -> pd.DataFrame:
    """The rows of ``measure`` against ``target``, or, for a mapping, each mediator's own target."""
    if not isinstance(target, Mapping):
        return _select(summary, measure, target)
    targets = dict(target)
    med_col = summary["mediator"]
    return pd.concat([_select(summary[med_col.map(lambda m, t=t: targets.get(m, "ate") == t)], measure, t)
                      for t in sorted(set(targets.get(m, "ate") for m in med_col.unique()))])


def _draw_lines(a, part: pd.DataFrame, estimators: Sequence[str], x: np.ndarray, position: dict,
                band_alpha: float) -> int:
    """One line per estimator with its band value +- 1.96 MCSE; returns how many were drawn."""
    drawn = 0
    for est in estimators:
        e = part[part["estimator"] == est]
        if e.empty or not np.isfinite(e["value"].to_numpy(float)).any():
            continue
        idx = np.array([position[c] for c in e["cell"]])
        order = np.argsort(idx)
        xv = x[idx[order]]
        v = e["value"].to_numpy(float)[order]
        s = np.nan_to_num(e["mcse"].to_numpy(float)[order], nan=0.0)
        kw = _line_kwargs(est, estimators)
        a.fill_between(xv, v - Z95 * s, v + Z95 * s, color=kw["color"], alpha=band_alpha, linewidth=0)
        a.plot(xv, v, **kw)
        drawn += 1
    return drawn


def _decorate(a, part: pd.DataFrame, measure: str, target: str, path: str, x: np.ndarray, ticks, nominal: float):
    """The nominal level and its band (coverage) or the zero line (biases), axis labels, ticks and grid."""
    if measure in _COVERAGE:
        n = int(np.nanmax(part["n_reps"].to_numpy(float))) if len(part) else 0
        _nominal_band(a, x, nominal, n)
        lo = min(a.get_ylim()[0], nominal - 0.1)
        a.set_ylim(max(lo, -0.02), 1.02)
    elif measure in _ZERO_LINE:
        a.axhline(0.0, color="#333333", linewidth=0.9, zorder=1)
    a.set_xlabel(dial_label(path))
    a.set_ylabel(_measure_label(measure, target))
    _dial_axis(a, x, ticks)
    a.grid(True, color="#dddddd", linewidth=0.6)


def _dial_title(measure: str, target: str, path: str) -> str:
    m = MEASURE_LABELS.get(measure, measure).split(" (")[0]
    m = m[0].upper() + m[1:]
    short = dial_label(path).split(" [")[0]
    t = TARGET_LABELS.get("none" if measure in _TARGET_FREE else target, target)
    return f"{m} against {short}" + (f" (target: {t})" if t else "")


def bias_plot(summary: pd.DataFrame, path: str, **kwargs) -> Figure:
    """Bias against a dial: :func:`dial_plot` with ``measure="bias"`` (zero line, MC bands)."""
    return dial_plot(summary, path, "bias", **kwargs)


def coverage_plot(summary: pd.DataFrame, path: str, **kwargs) -> Figure:
    """Coverage against a dial: :func:`dial_plot` with ``measure="coverage"`` (nominal level and its band)."""
    return dial_plot(summary, path, "coverage", **kwargs)


def rmse_plot(summary: pd.DataFrame, path: str, **kwargs) -> Figure:
    """RMSE against a dial: :func:`dial_plot` with ``measure="rmse"``."""
    return dial_plot(summary, path, "rmse", **kwargs)
