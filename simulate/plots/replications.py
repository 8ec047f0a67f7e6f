"""Replication-level figures: sampling distributions (violins) and zip plots of the intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .base import Z95, PlotError, _mediators
from .labels import OKABE_ITO, _est_label, _order_estimators, _style


def _ok_rows(rows: pd.DataFrame, cell: int) -> pd.DataFrame:
    if rows is None or len(rows) == 0:
        raise PlotError("no rows")
    r = rows[rows["cell"] == cell]
    if r.empty:
        raise PlotError(f"cell {cell}: no rows (cells: {', '.join(map(str, sorted(set(rows['cell']))))})")
    ok = (r["status"] == "ok") & np.isfinite(r["estimate"].to_numpy(float))
    return r[ok]


def _target_of(truth, mediator: str, rows: pd.DataFrame | None = None) -> tuple[float, str]:
    """A target value and its legend name, from a number, a mapping, a Truth, or the rows."""
    if truth is None:
        if rows is not None and "sample_ate" in rows and len(rows):
            v = rows.loc[rows["mediator"] == mediator, "sample_ate"].to_numpy(float)
            v = v[np.isfinite(v)]
            if v.size:
                return float(v.mean()), "mean sample ATE"
        return math.nan, ""
    if isinstance(truth, Mapping):
        v = truth.get(mediator, math.nan)
        return float(v if v is not None else math.nan), "target"
    if hasattr(truth, "ate") and hasattr(truth, "mediators"):
        if mediator in truth.mediators:
            return float(truth.ate[list(truth.mediators).index(mediator)]), "population ATE"
        return math.nan, ""
    return float(truth), "target"


def _violins(ax, data, positions):
    import matplotlib

    kw = dict(positions=positions, showextrema=False, widths=0.85)
    major, minor = (int(v) for v in matplotlib.__version__.split(".")[:2])
    if (major, minor) >= (3, 10):  # ``vert`` is deprecated from 3.10 on
        return ax.violinplot(data, orientation="horizontal", **kw)
    return ax.violinplot(data, vert=False, **kw)


def sampling_distribution_plot(rows: pd.DataFrame, *, cell: int = 0, mediator=None, truth=None,
                               estimators: Sequence[str] | None = None, where: str = "") -> Figure:
    """The distribution of the estimates of each estimator in one cell (violins), target marked.

    Each violin is a kernel density of the successful estimates, with the median (white
    dot) and the quartiles (thick bar).  IV estimators without moments produce extreme
    estimates: the x-axis shows the central 99% of all estimates (padded), and each
    estimator's label says how many estimates fall off the scale.

    Parameters
    ----------
    rows : pandas.DataFrame
        Tidy rows (:func:`simulate.store.read_rows`).
    cell : int
        The grid cell.
    mediator : str or list of str, optional
        Default every mediator (one panel each).
    truth : float, mapping or simulate.truth.Truth, optional
        The target: one number, ``{mediator: value}``, or a Truth (its ATE).  Default: the
        mean over replications of the sample ATE, said so in the legend.
    estimators : list of str, optional
    where : str, optional
        The cell's grid values, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ok = _ok_rows(rows, cell)
    mediators = _mediators(ok if len(ok) else rows[rows["cell"] == cell], mediator)
    names = _order_estimators(ok["estimator"]) if estimators is None else list(estimators)
    fig = Figure(figsize=(7.8 * len(mediators), 0.5 * len(names) + 2.8), layout="constrained")
    handles: list = []
    axes = fig.subplots(1, len(mediators), squeeze=False).ravel()
    for a, med in zip(axes, mediators):
        part = ok[ok["mediator"] == med]
        used = [e for e in names if (part["estimator"] == e).sum() >= 2]
        data = [part.loc[part["estimator"] == e, "estimate"].to_numpy(float) for e in used]
        if not data:
            a.text(0.5, 0.5, "fewer than two successful estimates", transform=a.transAxes, ha="center")
            a.set_title(f"mediator {med}", fontsize="medium")
            continue
        _violin_panel(a, part, med, used, data, names, truth, handles)
    handles += [Line2D([], [], marker="o", color="white", markeredgecolor="#222222", linestyle="none",
                       label="median"),
                Line2D([], [], color="#222222", linewidth=3, label="interquartile range"),
                Line2D([], [], marker="s", color="#888888", markeredgecolor="#222222", linestyle="none",
                       label="mean (estimator's marker)")]
    fig.legend(handles=handles, fontsize="small", loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle(f"Sampling distributions of the estimates, cell {cell}" + (f" ({where})" if where else ""),
                 fontsize="large")
    return fig


def _violin_panel(a, part: pd.DataFrame, med: str, used: list[str], data: list[np.ndarray], names: list[str], truth,
                  handles: list) -> None:
    """One mediator's violins on a scale that wild estimates cannot squash; the target line joins ``handles``."""
    allv = np.concatenate(data)
    # the scale: each estimator's quartiles +- 3 IQR, so that a few wild estimates of an
    # estimator without moments do not squash every other violin into a line
    q = np.array([np.quantile(d, [0.25, 0.75]) for d in data])
    iqr = q[:, 1] - q[:, 0]
    lo = max(allv.min(), float(np.min(q[:, 0] - 3 * iqr)))
    hi = min(allv.max(), float(np.max(q[:, 1] + 3 * iqr)))
    value, label = _target_of(truth, med, part)
    if np.isfinite(value):
        lo, hi = min(lo, value), max(hi, value)
    pad = 0.08 * (hi - lo if hi > lo else max(abs(hi), 1.0))
    lo, hi = lo - pad, hi + pad
    pos = np.arange(len(used))[::-1]
    clipped = [np.clip(d, lo, hi) for d in data]
    parts = _violins(a, clipped, pos)
    for body, est in zip(parts["bodies"], used):
        colour = _style(est, names)[0]
        body.set_facecolor(colour)
        body.set_edgecolor("#333333")
        body.set_alpha(0.55)
    for p_, d, est in zip(pos, data, used):
        q1, q2, q3 = np.quantile(d, [0.25, 0.5, 0.75])
        a.plot([q1, q3], [p_, p_], color="#222222", linewidth=3, solid_capstyle="butt")
        a.plot([q2], [p_], marker="o", color="white", markeredgecolor="#222222", markersize=5)
        a.plot([d.mean()], [p_], marker=_style(est, names)[1], color=_style(est, names)[0],
               markeredgecolor="#222222", markersize=7, linestyle="none")
    off = [int(((d < lo) | (d > hi)).sum()) for d in data]
    a.set_yticks(pos, [_est_label(e) + (f"  ({k} off scale)" if k else "") for e, k in zip(used, off)])
    a.set_xlim(lo, hi)
    if np.isfinite(value):
        a.axvline(value, color=OKABE_ITO["vermillion"], linewidth=1.6, linestyle="--")
    a.set_xlabel(f"estimate of the effect of {med}")
    a.set_ylabel("estimator")
    a.grid(True, axis="x", color="#dddddd", linewidth=0.6)
    n = int(part.groupby("estimator").size().max())
    a.set_title(f"mediator {med}: {n} replications" + (f"; {label} = {value:.4g}" if np.isfinite(value) else ""),
                fontsize="medium")
    if np.isfinite(value) and not any(h.get_label() == label for h in handles):
        handles.insert(0, Line2D([], [], color=OKABE_ITO["vermillion"], linestyle="--", label=label))


def zip_plot(rows: pd.DataFrame, *, cell: int = 0, estimator: str = "2sls", mediator=None, target_value,
             level: float = 0.95) -> Figure:
    r"""Zip plot of the confidence intervals (Morris, White & Crowther 2019, Fig. 4).

    Each replication's interval :math:`[L_i, U_i]` is drawn at the height of the fractional
    centile of :math:`|z_i|`, :math:`z_i = (\hat\theta_i - \theta)/\widehat{SE}_i`, so the
    intervals furthest from the target are at the top; intervals that cover :math:`\theta`
    and those that miss it have different colours.  The horizontal line at the nominal
    centile (95) and the band of the estimated coverage :math:`\hat C \pm 1.96\sqrt{\hat C(1-\hat C)/n}`
    show whether the non-covering intervals are too many.

    Parameters
    ----------
    rows : pandas.DataFrame
        Tidy rows (:func:`simulate.store.read_rows`).
    cell : int
    estimator : str
    mediator : str, optional
        Default: the first mediator.
    target_value : float or mapping
        The target :math:`\theta` (a number, or ``{mediator: value}``).
    level : float
        Nominal coverage of the intervals (default 0.95).

    Returns
    -------
    matplotlib.figure.Figure
    """
    ok = _ok_rows(rows, cell)
    part = ok[ok["estimator"] == estimator]
    if part.empty:
        raise PlotError(f"estimator {estimator!r}: no successful rows in cell {cell}")
    med = _mediators(part, mediator)[0]
    part = part[part["mediator"] == med]
    theta = float(target_value.get(med, math.nan) if isinstance(target_value, Mapping) else target_value)
    if not math.isfinite(theta):
        raise PlotError(f"zip plot: no finite target value for mediator {med!r}")
    est = part["estimate"].to_numpy(float)
    se = part["std_error"].to_numpy(float)
    lo = part["conf_low"].to_numpy(float)
    hi = part["conf_high"].to_numpy(float)
    keep = np.isfinite(se) & (se > 0) & np.isfinite(lo) & np.isfinite(hi)
    est, se, lo, hi = est[keep], se[keep], lo[keep], hi[keep]
    n = est.size
    if n < 2:
        raise PlotError(f"zip plot: fewer than two intervals for {estimator} in cell {cell}")
    z = np.abs(est - theta) / se
    from scipy.stats import rankdata

    centile = 100.0 * rankdata(z, method="average") / n
    covers = (lo <= theta) & (theta <= hi)
    C = covers.mean()
    mc = math.sqrt(C * (1 - C) / n)
    c_lo, c_hi = max(0.0, C - Z95 * mc), min(1.0, C + Z95 * mc)  # a coverage lies in [0, 1]
    fig = Figure(figsize=(7.6, 6.8), layout="constrained")
    a = fig.subplots()
    xx = _zip_intervals(a, lo, hi, centile, covers, theta)
    a.fill_between(xx, 100 * c_lo, 100 * c_hi, color=OKABE_ITO["orange"], alpha=0.3,
                   linewidth=0, label="MC 95% CI of the coverage", zorder=1)
    a.axhline(100 * level, color="#222222", linestyle="--", linewidth=1.2, label=f"nominal {100 * level:g}%",
              zorder=4)
    a.axvline(theta, color="#222222", linewidth=1.0, label=f"target θ = {theta:.4g}", zorder=4)
    a.set_xlim(*xx)
    a.set_ylim(0, 100)
    a.set_xlabel(f"{level:.0%} confidence interval for the effect of {med}")
    a.set_ylabel("fractional centile of |z| = |estimate − θ| / SE")
    a.set_title(f"Zip plot: {_est_label(estimator)}, mediator {med}, cell {cell}\n"
                f"coverage {100 * C:.1f}% (MC 95% CI {100 * c_lo:.1f}–{100 * c_hi:.1f}%), "
                f"{n} intervals", fontsize="medium")
    fig.legend(loc="outside lower center", ncols=3, fontsize="small", frameon=False)
    return fig


def _zip_intervals(a, lo: np.ndarray, hi: np.ndarray, centile: np.ndarray, covers: np.ndarray, theta: float):
    """The intervals at the heights of their centiles, covering and missing in two colours; returns the x range."""
    from matplotlib.collections import LineCollection

    lw = float(np.clip(300.0 / lo.size, 0.4, 2.0))
    for mask, colour, label in ((covers, OKABE_ITO["blue"], f"covers θ ({covers.sum()})"),
                                (~covers, OKABE_ITO["vermillion"], f"misses θ ({(~covers).sum()})")):
        segs = np.stack([np.column_stack([lo[mask], centile[mask]]), np.column_stack([hi[mask], centile[mask]])],
                        axis=1)
        a.add_collection(LineCollection(segs, colors=colour, linewidths=lw, label=label, zorder=2))
    span = np.quantile(np.concatenate([lo, hi]), [0.005, 0.995])
    xl, xh = min(span[0], theta), max(span[1], theta)
    pad = 0.05 * (xh - xl if xh > xl else 1.0)
    return np.array([xl - pad, xh + pad])
