"""The site-level picture of one replication: site ITT on the outcome against site ITT on the mediators."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .base import _wrap
from .labels import OKABE_ITO


def site_itt(trial, arms: int):
    r"""Per site: the estimated ITT effects on Y and on each mediator, and the 2SLS weight.

    The ITT of site s is the difference of means between arm L (the top arm, ``arms - 1``)
    and control; the weight is :math:`w_s = n_s p_s(1-p_s)` with n_s the persons of site s in
    those two arms and p_s the share of them in arm L.  Sites without persons in both arms
    are left out.

    Parameters
    ----------
    trial : simulate.dgp.Trial
        One replication (:func:`simulate.draw`).
    arms : int
        Number of arms, L + 1.

    Returns
    -------
    itt_y : ndarray, shape (K,)
    itt_m : ndarray, shape (K, P)
    weight : ndarray, shape (K,)
    """
    K = len(trial.n_per_site)
    top = arms - 1
    P = trial.mediators.shape[1]
    itt_y = np.full(K, np.nan)
    itt_m = np.full((K, P), np.nan)
    w = np.zeros(K)
    for s in range(K):
        in_s = trial.site == s
        t1 = in_s & (trial.treatment == top)
        t0 = in_s & (trial.treatment == 0)
        n1, n0 = int(t1.sum()), int(t0.sum())
        if n1 == 0 or n0 == 0:
            continue
        itt_y[s] = trial.outcome[t1].mean() - trial.outcome[t0].mean()
        itt_m[s] = trial.mediators[t1].mean(axis=0) - trial.mediators[t0].mean(axis=0)
        n = n1 + n0
        p = n1 / n
        w[s] = n * p * (1 - p)
    keep = np.isfinite(itt_y)
    return itt_y[keep], itt_m[keep], w[keep]


def _quadratic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least squares of y on (1, x, x^2): the curved fit of the site-level picture."""
    X = np.column_stack([np.ones_like(x), x, x * x])
    return np.linalg.lstsq(np.sqrt(w)[:, None] * X, np.sqrt(w) * y, rcond=None)[0]


def site_level_plot(scenario, seed=0, *, ax=None, truth=None, truth_sites: int = 100_000) -> Figure:
    r"""The site-level picture of one replication: site ITT on Y against site ITT on the mediators.

    Draws one replication (:func:`simulate.draw`), estimates in each site the ITT effect on
    Y and on each mediator as the mean difference between the top arm L and control (with
    more than two arms the middle arms are left out, and the axis labels say so), and fits
    the plane through the origin weighted by :math:`w_s = n_s p_s(1-p_s)` (n_s persons in the
    two arms, p_s the share in arm L): with a binary treatment its slope is the 2SLS
    estimate (site fixed effects, site-by-treatment instruments).

    P = 1: ITT_Y against ITT_M, markers sized by w_s, the fitted line through the origin
    and, when the scenario's ``nonlinear_dependence`` is nonzero, a weighted quadratic fit.
    P >= 2: ITT_Y against the fitted plane's prediction with the 45-degree line; without
    ``ax``, one more panel per mediator of the partial residual
    :math:`\mathrm{ITT}_Y - \sum_{q\ne p}\hat\beta_q \mathrm{ITT}_{M_q}` against ITT_{M_p}.

    Parameters
    ----------
    scenario : simulate.scenario.Scenario or GridCell
    seed : int or numpy.random.SeedSequence
        The replication's seed (``simulate.replicate.replication_seed(seed, cell_key, rep)``
        replays a replication of a run).
    ax : matplotlib Axes, optional
        Draw the main panel into it.
    truth : simulate.truth.Truth, optional
        Default: computed with ``truth_sites`` simulated sites (for the title's ATE).
    truth_sites : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..dgp import draw

    sc = getattr(scenario, "scenario", scenario)
    trial = draw(sc, seed)
    y, M, w = site_itt(trial, sc.arms)
    P = M.shape[1]
    names = list(sc.mediator_names)
    if truth is None:
        from ..truth import truth as truth_of

        truth = truth_of(sc, n_sites=truth_sites)
    ate = ", ".join(f"{n} {v:.3g}" for n, v in zip(names, truth.ate)) if P > 1 else f"{truth.ate[0]:.3g}"
    WM = M * w[:, None]
    try:
        beta = np.linalg.solve(M.T @ WM, WM.T @ y)
    except np.linalg.LinAlgError:
        beta = np.linalg.lstsq(np.sqrt(w)[:, None] * M, np.sqrt(w) * y, rcond=None)[0]
    arm_note = "" if sc.arms == 2 else f" (arm {sc.arms - 1} vs control)"
    size = 12 + 60 * w / w.max() if w.size and w.max() > 0 else 20
    slope_txt = ", ".join(f"{n} {b:.3g}" for n, b in zip(names, beta)) if P > 1 else f"{beta[0]:.3g}"
    what = "(= 2SLS)" if sc.arms == 2 else f"(arm {sc.arms - 1} vs control only; 2SLS uses every arm)"
    head = (f"Site-level picture, one replication of {sc.name} ({len(y)} sites)\n"
            f"weighted slope through the origin {what} {slope_txt}; ATE {ate}")
    own_ax = ax is not None
    point_kw = dict(s=size, color=OKABE_ITO["sky_blue"], edgecolor="#1f3f5f", alpha=0.8, linewidths=0.6,
                    label="site (area ∝ n_s p_s(1−p_s))", zorder=3)
    fit = _SiteFit(sc, y, M, w, beta, truth, names, arm_note, point_kw)
    fig, axes = _one_mediator(fit, ax) if P == 1 else _several_mediators(fit, ax)
    for a in axes[:1]:
        a.grid(True, color="#eeeeee", linewidth=0.6)
        a.legend(fontsize="small", loc="best", framealpha=0.85)
    if own_ax or P == 1:
        axes[0].set_title(head, fontsize="medium")
    else:
        fig.suptitle(_wrap(fig, head, 10.0), fontsize="medium")
    return fig


@dataclass
class _SiteFit:
    """What the panels of :func:`site_level_plot` draw: the site ITTs, their weights and the fitted plane."""

    sc: Any
    y: np.ndarray
    M: np.ndarray
    w: np.ndarray
    beta: np.ndarray
    truth: Any
    names: list
    arm_note: str
    point_kw: dict


def _one_mediator(fit: _SiteFit, ax):
    """P = 1: ITT_Y against ITT_M, the fit through the origin, the ATE slope and a quadratic fit if curved."""
    sc, y, M, w, beta, truth = fit.sc, fit.y, fit.M, fit.w, fit.beta, fit.truth
    if ax is not None:
        fig, axes = ax.figure, [ax]
    else:
        fig = Figure(figsize=(7.4, 6.0), layout="constrained")
        axes = [fig.subplots()]
    a = axes[0]
    x = M[:, 0]
    a.scatter(x, y, **fit.point_kw)
    xx = np.linspace(min(0.0, x.min()), max(0.0, x.max()), 200)
    a.plot(xx, beta[0] * xx, color=OKABE_ITO["blue"], linewidth=2,
           label=f"fit through the origin, slope {beta[0]:.3g}")
    a.plot(xx, truth.ate[0] * xx, color="#222222", linewidth=1.2, linestyle=":",
           label=f"slope = ATE {truth.ate[0]:.3g}")
    if sc.nonlinear_dependence[0] != 0:
        c = _quadratic(x, y, w)
        a.plot(xx, c[0] + c[1] * xx + c[2] * xx * xx, color=OKABE_ITO["vermillion"], linewidth=2,
               linestyle="--", label=f"weighted quadratic fit (curvature {c[2]:.3g})")
    a.axhline(0, color="#bbbbbb", linewidth=0.8, zorder=0)
    a.axvline(0, color="#bbbbbb", linewidth=0.8, zorder=0)
    a.set_xlabel(f"estimated site ITT on {fit.names[0]} (site compliance){fit.arm_note}")
    a.set_ylabel(f"estimated site ITT on Y{fit.arm_note}")
    return fig, axes


def _several_mediators(fit: _SiteFit, ax):
    """P >= 2: ITT_Y against the fitted plane; without ``ax``, one partial-residual panel per mediator."""
    y, M, beta, arm_note = fit.y, fit.M, fit.beta, fit.arm_note
    P = M.shape[1]
    own_ax = ax is not None
    n_panels = 1 if own_ax else 1 + P
    if own_ax:
        fig, axes = ax.figure, [ax]
    else:
        cols = min(n_panels, 3)
        rows_ = math.ceil(n_panels / cols)
        fig = Figure(figsize=(5.2 * cols, 4.8 * rows_ + 0.6), layout="constrained")
        axes = list(fig.subplots(rows_, cols, squeeze=False).ravel())
        for a in axes[n_panels:]:
            a.set_visible(False)
    a = axes[0]
    pred = M @ beta
    a.scatter(pred, y, **fit.point_kw)
    lo, hi = min(pred.min(), y.min()), max(pred.max(), y.max())
    a.plot([lo, hi], [lo, hi], color=OKABE_ITO["blue"], linewidth=2, label="45° line (fitted plane)")
    a.set_xlabel("ITT on Y predicted by the fitted plane, Σ_p β_p ITT_Mp" + arm_note)
    a.set_ylabel(f"estimated site ITT on Y{arm_note}")
    a.set_title("ITT on Y against the fitted plane", fontsize="medium")
    if not own_ax:
        for p in range(P):
            _partial_panel(fit, axes[1 + p], p)
        a.plot([], [], color="#222222", linewidth=1.2, linestyle=":", label="slope = ATE (right panels)")
    return fig, axes


def _partial_panel(fit: _SiteFit, b, p: int) -> None:
    """The partial residual of ITT_Y for mediator p against ITT_Mp, with the fitted and the ATE slopes."""
    y, M, w, beta, truth, names = fit.y, fit.M, fit.w, fit.beta, fit.truth, fit.names
    partial = y - M @ beta + beta[p] * M[:, p]
    b.scatter(M[:, p], partial, **{**fit.point_kw, "label": None})
    xx = np.linspace(min(0.0, M[:, p].min()), max(0.0, M[:, p].max()), 100)
    b.plot(xx, beta[p] * xx, color=OKABE_ITO["blue"], linewidth=2)
    b.plot(xx, truth.ate[p] * xx, color="#222222", linewidth=1.2, linestyle=":")
    if fit.sc.nonlinear_dependence[p] != 0:
        c = _quadratic(M[:, p], partial, w)
        b.plot(xx, c[0] + c[1] * xx + c[2] * xx * xx, color=OKABE_ITO["vermillion"], linewidth=2,
               linestyle="--", label=f"weighted quadratic fit (curvature {c[2]:.3g})")
        b.legend(fontsize="small", loc="best", framealpha=0.85)
    b.set_xlabel(f"estimated site ITT on {names[p]}{fit.arm_note}")
    b.set_ylabel(f"partial residual of ITT on Y for {names[p]}")
    b.set_title(f"{names[p]}: slope {beta[p]:.3g}, ATE {truth.ate[p]:.3g}", fontsize="medium")
    b.grid(True, color="#eeeeee", linewidth=0.6)
