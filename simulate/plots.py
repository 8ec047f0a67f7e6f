r"""Figures of a simulation run: performance against the dials, distributions, zip plots, site picture.

Every function reads the stages upstream and nothing else: the long summary of
:func:`simulate.summary.summarize_directory` (columns ``cell, estimator, mediator, target,
measure, value, mcse, n_reps``; ``frame.attrs["cells"]`` maps each cell to its grid values),
the tidy rows of :func:`simulate.runner.read_rows`, or one replication drawn with
:func:`simulate.draw` for the site-level picture.

Conventions, the same in every figure:

* colours from the Okabe-Ito palette (distinguishable with the common colour-vision
  deficiencies), and each estimator also has its own marker and line style, so that a
  figure printed in grey still tells them apart (:data:`ESTIMATOR_STYLES`);
* a title, axis labels in the founding paper's words (:data:`DIAL_LABELS`,
  :data:`MEASURE_LABELS`), and a legend (a colour bar on heat maps);
* Monte Carlo error bands: every estimated point carries a shaded band
  :math:`\hat v \pm 1.96\,\mathrm{MCSE}(\hat v)` (Morris, White & Crowther 2019, Stat Med
  38:2074); the nominal coverage :math:`1-\alpha` is drawn with the band a correct
  interval would show in :math:`n` replications,
  :math:`1-\alpha \pm 1.96\sqrt{\alpha(1-\alpha)/n}`.

Figures are made with :class:`matplotlib.figure.Figure` directly (no ``pyplot``): no
global state, no interactive backend, and the caller owns the figure.  :func:`save`
writes PNG (150 dpi) and PDF.

``simulate plot DIR`` (:func:`add_subcommand`, :func:`run`) writes every figure that
applies to a run directory under ``DIR/figures/`` (:func:`plot_directory`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .errors import SimulateError

__all__ = [
    "DIAL_LABELS", "MEASURE_LABELS", "TARGET_LABELS", "ESTIMATOR_LABELS", "ESTIMATOR_STYLES", "OKABE_ITO",
    "PlotError", "dial_label", "dial_plot", "bias_plot", "coverage_plot", "rmse_plot", "bias_decomposition_plot",
    "sampling_distribution_plot", "zip_plot", "heatmap", "site_level_plot", "site_itt", "plot_directory",
    "load_summary",
    "grid_paths", "grid_dimensions",
    "save", "add_subcommand", "run",
]

DPI = 150
Z95 = 1.959963984540054  # Phi^{-1}(0.975)
DIRECT_EFFECT = "direct_effect"  # the mediator name of the between-site intercept row

# ---------------------------------------------------------------------------
# Names and styles
# ---------------------------------------------------------------------------

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
    "grey": "#999999",
}
"""Okabe & Ito (2008) colours (grey added, as is usual, for a ninth)."""

ESTIMATOR_LABELS = {
    "ols": "OLS (site FE, confounded)",
    "2sls": "2SLS",
    "liml": "LIML",
    "fuller": "Fuller(1)",
    "ujive": "UJIVE",
    "bias_corrected_2sls": "bias-corrected 2SLS",
    "between_ols": "between-site OLS",
    "between_precision": "between-site, precision-weighted",
    "between_intercept": "between-site with intercept",
    "wald": "pooled Wald",
}
"""Legend names of the estimators of :data:`simulate.estimators.ESTIMATORS`."""

_O = OKABE_ITO
ESTIMATOR_STYLES = {
    # name: (colour, marker, line style); no two share both colour and marker or line style
    "ols": (_O["black"], "o", ":"),
    "2sls": (_O["blue"], "s", "-"),
    "liml": (_O["vermillion"], "^", "-"),
    "fuller": (_O["reddish_purple"], "v", "--"),
    "ujive": (_O["bluish_green"], "D", "-"),
    "bias_corrected_2sls": (_O["orange"], "P", "--"),
    "between_ols": (_O["sky_blue"], "X", "-."),
    "between_precision": (_O["grey"], "h", ":"),
    "between_intercept": (_O["yellow"], "*", "-."),
    "wald": (_O["black"], "d", "--"),
}
"""Colour, marker and line style of each estimator (the same in every figure)."""

_SPARE_STYLES = [(c, m, ls) for c, m, ls in zip(
    [_O["blue"], _O["vermillion"], _O["bluish_green"], _O["orange"], _O["reddish_purple"], _O["sky_blue"]],
    ["<", ">", "p", "8", "H", "1"], ["-", "--", "-.", ":", "-", "--"])]

DIAL_LABELS = {
    "n_sites": "number of sites K [finite sample; assumption viii when K < P]",
    "n_per_site": "persons per site n_s [finite sample]",
    "treatment.share": "share treated p_s",
    "treatment.arms": "treatment arms L + 1",
    "spillover.outcome": "outcome spillover on controls [assumption i, SUTVA]",
    "spillover.mediator": "mediator spillover on controls [assumption i, SUTVA]",
    "site.direct_effect_mean": "mean direct effect E[κ] [assumption ii, exclusion]",
    "site.direct_effect_sd": "between-site SD of the direct effect sd(κ) [assumption ii, exclusion]",
    "site.direct_effect_compliance_correlation": "corr(κ, γ) between sites [assumption ii, exclusion]",
    "mediators.curvature": "mediator curvature c in g(t) = t + c t(t−1) [assumption iii]",
    "mediators.outcome_curvature": "outcome curvature φ in h(m) = m + φ m² [assumption iv]",
    "paths.mean": "mean mediator-path coefficient [assumption v, parallel mediators]",
    "paths.site_sd": "between-site SD of the mediator path [assumption v, parallel mediators]",
    "paths.person_sd": "within-site SD of the mediator path [assumption v, parallel mediators]",
    "paths.effect_correlation": "corr(path coefficient, Δ_q) [assumption v, parallel mediators]",
    "selection.strength": "selection into treatment ξ (probit index) [assumption vi]",
    "person.within_site_correlation": "within-site correlation corr(Γ, Δ) [assumption vii.a]",
    "binary.defier_share": "share of defiers [assumption vii.b]",
    "site.compliance_sd": "between-site SD of compliance sd(γ) [assumption viii, rank]",
    "site.compliance_correlation": "corr(γ_p, γ_q) between sites [assumption viii, rank]",
    "site.compliance_effect_correlation": "between-site correlation corr(γ, δ) [assumption ix]",
    "site.nonlinear_dependence": "nonlinear dependence λ of δ on γ [assumption ix]",
    "site.compliance_mean": "mean compliance E[γ] [instrument strength]",
    "site.effect_mean": "mean effect E[δ] (the ATE)",
    "site.effect_sd": "between-site SD of the effect sd(δ)",
    "person.compliance_sd": "within-site SD of compliance sd(Γ)",
    "person.effect_sd": "within-site SD of the effect sd(Δ)",
    "person.confounding": "confounding corr(M(0), Y(0))",
    "binary.complier_share": "share of compliers",
    "binary.never_share": "share of never-takers",
    "binary.always_share": "share of always-takers",
    "binary.complier_share_site_sd": "between-site SD of the complier share",
    "binary.defier_effect_shift": "effect shift of defiers (Δ defier − Δ complier)",
    "binary.always_effect_shift": "effect shift of always-takers",
    "binary.never_effect_shift": "effect shift of never-takers",
}
"""Axis names of the dials, by dotted grid path without list indices (see :func:`dial_label`)."""

MEASURE_LABELS = {
    "bias": "bias (mean estimate − target)",
    "relative_bias": "relative bias (%)",
    "median_bias": "median bias",
    "empirical_se": "empirical SE",
    "model_se": "model SE (root mean squared)",
    "relative_error_model_se": "relative error of the model SE (%)",
    "rmse": "RMSE",
    "coverage": "coverage of the confidence interval",
    "bias_eliminated_coverage": "bias-eliminated coverage",
    "power": "power (rejecting zero)",
    "mad": "MAD (scaled, ≈ SD)",
    "failure_share": "share of failed replications",
    "mean_estimate": "mean estimate",
    "identification_bias": "identification bias (limit − target)",
    "finite_sample_bias": "finite-sample bias (mean estimate − limit)",
    "first_stage_f_q05": "first-stage F, 5th centile",
    "first_stage_f_q50": "first-stage F, median",
    "first_stage_f_q95": "first-stage F, 95th centile",
    "target_value": "target value",
}
"""Axis names of the performance measures of :mod:`simulate.summary`."""

TARGET_LABELS = {
    "ate": "population ATE",
    "late": "population LATE",
    "compliance_weighted": "compliance-weighted estimand",
    "limit": "estimator's large-sample limit",
    "sample": "sample ATE",
    "sample_late": "sample LATE",
    "none": "",
}
"""Names of the targets of :mod:`simulate.summary`."""

_ZERO_LINE = {"bias", "relative_bias", "median_bias", "identification_bias", "finite_sample_bias",
              "relative_error_model_se"}
_COVERAGE = {"coverage", "bias_eliminated_coverage"}
_TARGET_FREE = {"n_reps", "n_failed", "failure_share", "mean_estimate", "empirical_se", "model_se",
                "relative_error_model_se", "bias_eliminated_coverage", "power", "mad",
                "first_stage_f_q05", "first_stage_f_q50", "first_stage_f_q95"}


class PlotError(SimulateError):
    """A figure that cannot be made from what it was given; the message is one line."""


def dial_label(path: str) -> str:
    """The axis name of a dial, from its dotted grid path.

    List indices are read as the mediator (``site.compliance_mean[2]`` -> "..., mediator 2")
    or the path (``paths[1].mean`` -> "..., path 1"); named correlations
    (``site.correlations.compliance_1:effect_2``) become ``corr(compliance_1, effect_2)``.
    An unknown path is its own label.

    Examples
    --------
    >>> dial_label("person.within_site_correlation")
    'within-site correlation corr(Γ, Δ) [assumption vii.a]'
    """
    if path in DIAL_LABELS:
        return DIAL_LABELS[path]
    m = re.fullmatch(r"(site|person)\.correlations\.([A-Za-z0-9_]+):([A-Za-z0-9_]+)", path)
    if m:
        level = "between sites" if m.group(1) == "site" else "within sites"
        return f"corr({m.group(2)}, {m.group(3)}) {level}"
    indices = [int(i) for i in re.findall(r"\[(\d+)\]", path)]
    base = re.sub(r"\[\d+\]", "", path)
    if base in DIAL_LABELS and indices:
        label = DIAL_LABELS[base]
        what = "path" if base.startswith("paths.") else "mediator"
        head, sep, tail = label.partition(" [")
        return f"{head}, {what} {indices[0]}{sep}{tail}"
    return path


def _measure_label(measure: str, target: str) -> str:
    label = MEASURE_LABELS.get(measure, measure)
    t = TARGET_LABELS.get(target, target)
    if measure in _TARGET_FREE or not t:
        return label
    if measure in ("identification_bias", "finite_sample_bias"):
        return f"{label}, target {t}" if measure == "identification_bias" else label
    return f"{label} vs {t}"


def _style(estimator: str, order: Sequence[str] = ()) -> tuple[str, str, str]:
    if estimator in ESTIMATOR_STYLES:
        return ESTIMATOR_STYLES[estimator]
    extra = [e for e in order if e not in ESTIMATOR_STYLES]
    i = extra.index(estimator) if estimator in extra else 0
    return _SPARE_STYLES[i % len(_SPARE_STYLES)]


def _est_label(estimator: str) -> str:
    return ESTIMATOR_LABELS.get(estimator, estimator)


def _line_kwargs(estimator: str, order=()) -> dict:
    colour, marker, ls = _style(estimator, order)
    # the yellow of the palette is faint on white: a dark marker edge keeps it visible
    edge = "#444444" if colour == OKABE_ITO["yellow"] else colour
    return dict(color=colour, marker=marker, linestyle=ls, markeredgecolor=edge, markersize=6, linewidth=1.6,
                label=_est_label(estimator))


def _order_estimators(names: Iterable[str]) -> list[str]:
    from .estimators import ESTIMATORS

    names = list(dict.fromkeys(names))
    known = [e for e in ESTIMATORS if e in names]
    return known + sorted(e for e in names if e not in known)


def save(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format (PNG at 150 dpi); returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(path, dpi=DPI, format=fmt)
        out.append(path)
    return out


# ---------------------------------------------------------------------------
# The grid: which cells form a line along one dial
# ---------------------------------------------------------------------------


def _cells_of(summary: pd.DataFrame, cells: Mapping | None = None) -> dict[int, list[tuple[str, Any]]]:
    cells = cells if cells is not None else summary.attrs.get("cells")
    if cells is None:
        raise PlotError("the summary has no grid values (frame.attrs['cells']); use simulate.plots.load_summary "
                        "or simulate.summary.summarize_directory")
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


# ---------------------------------------------------------------------------
# Performance against a dial
# ---------------------------------------------------------------------------


def _mediators(frame: pd.DataFrame, mediator) -> list[str]:
    present = list(dict.fromkeys(frame["mediator"]))
    if mediator is None:
        real = [m for m in present if m != DIRECT_EFFECT]
        return real or present
    wanted = [mediator] if isinstance(mediator, str) else list(mediator)
    missing = [m for m in wanted if m not in present]
    if missing:
        raise PlotError(f"mediator {missing[0]!r} not in the summary (mediators: {', '.join(present)})")
    return wanted


def _select(summary: pd.DataFrame, measure: str, target: str) -> pd.DataFrame:
    tgt = "none" if measure in _TARGET_FREE else target
    sel = summary[(summary["measure"] == measure) & (summary["target"] == tgt)]
    if sel.empty:
        have = sorted(set(summary.loc[summary["measure"] == measure, "target"]))
        if not have:
            raise PlotError(f"measure {measure!r} not in the summary")
        raise PlotError(f"measure {measure!r} has no target {tgt!r} in the summary (targets: {', '.join(have)})")
    return sel


def _nominal_band(ax, x: np.ndarray, nominal: float, n: int, label: str = "nominal level") -> None:
    half = Z95 * math.sqrt(nominal * (1 - nominal) / max(n, 1))
    lo, hi = (x.min(), x.max()) if x.size else (0.0, 1.0)
    pad = 0.04 * (hi - lo if hi > lo else 1.0)
    xx = np.array([lo - pad, hi + pad])
    # a thick light line and a hatched band: unlike any estimator's line or band
    ax.fill_between(xx, nominal - half, nominal + half, facecolor="none", edgecolor="#888888", hatch="///",
                    linewidth=0, zorder=0)
    ax.plot(xx, [nominal, nominal], color="#888888", linewidth=3, alpha=0.8, zorder=1,
            label=f"{label} {nominal:g} (hatched: its MC band, n = {n})")


def _wrap(fig: Figure, text: str, size: float = 12.0) -> str:
    """Break a title into lines that fit the figure's width (about 0.55 em per character)."""
    import textwrap

    chars = max(30, int(fig.get_figwidth() * 72 / (0.55 * size)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def _band_alpha(n_lines: int) -> float:
    # overlapping bands of many estimators darken each other: fainter bands when there are many
    return 0.16 if n_lines <= 4 else 0.09


def _panel_grid(n_panels: int, *, width: float = 7.6, height: float = 4.6, legend_rows: int = 4):
    cols = min(n_panels, 2)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.8 + 0.22 * legend_rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


def _finish_legend(fig: Figure, axes, own_ax: bool, band_label: str = "Monte Carlo 95% band (± 1.96 MCSE)"):
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    handles.append(Patch(facecolor="#777777", alpha=0.3, linewidth=0))
    labels.append(band_label)
    if own_ax:
        axes[0].legend(handles, labels, fontsize="small", loc="best", framealpha=0.85)
    else:
        # below the panels: a legend at the right would climb into the title
        width = fig.get_figwidth()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(2 if width < 10 else 3, len(labels)),
                   fontsize="small", frameon=False)


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
        The long summary (:func:`simulate.summary.summarize_directory` or :func:`load_summary`),
        with ``attrs["cells"]`` (or pass ``cells``).
    path : str
        A grid path, e.g. ``"person.within_site_correlation"``.
    measure : str
        A measure of :mod:`simulate.summary` (``bias``, ``coverage``, ``rmse``, ...).  Measures
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
    grid = _cells_of(summary, cells)
    line, xs, fixed, companions = _line_cells(grid, path, where)
    x, ticks = _x_positions(xs)
    per_panel = isinstance(target, Mapping)
    if per_panel:
        targets = dict(target)
        med_col = summary["mediator"]
        sel = pd.concat([_select(summary[med_col.map(lambda m, t=t: targets.get(m, "ate") == t)], measure, t)
                         for t in sorted(set(targets.get(m, "ate") for m in med_col.unique()))])
    else:
        sel = _select(summary, measure, target)
    sel = sel[sel["cell"].isin(line)]
    mediators = _mediators(sel, mediator)
    own_ax = ax is not None
    if own_ax:
        mediators = mediators[:1]
        fig, axes = ax.figure, [ax]
    else:
        fig, axes = _panel_grid(len(mediators))
    if estimators is None:
        estimators = _order_estimators(sel["estimator"])
    else:
        unknown = [e for e in estimators if e not in set(summary["estimator"])]
        if unknown:
            raise PlotError(f"estimator {unknown[0]!r} not in the summary")
    position = {c: i for i, c in enumerate(line)}
    nominal = float(nominal if nominal is not None else summary.attrs.get("level", 0.95))
    band_alpha = _band_alpha(len(estimators))
    for a, med in zip(axes, mediators):
        part = sel[sel["mediator"] == med]
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
        if measure in _COVERAGE:
            n = int(np.nanmax(part["n_reps"].to_numpy(float))) if len(part) else 0
            _nominal_band(a, x, nominal, n)
            lo = min(a.get_ylim()[0], nominal - 0.1)
            a.set_ylim(max(lo, -0.02), 1.02)
        elif measure in _ZERO_LINE:
            a.axhline(0.0, color="#333333", linewidth=0.9, zorder=1)
        panel_target = targets.get(med, "ate") if per_panel else target
        a.set_xlabel(dial_label(path))
        a.set_ylabel(_measure_label(measure, panel_target))
        _dial_axis(a, x, ticks)
        a.grid(True, color="#dddddd", linewidth=0.6)
        if not drawn:
            a.text(0.5, 0.5, "no estimator has this measure", transform=a.transAxes, ha="center")
        a.set_title(f"mediator {med}", fontsize="medium")
    note = _fixed_note(fixed, companions)
    shown = {targets.get(m, "ate") for m in mediators} if per_panel else {target}
    # one target for every panel goes in the title; several are each on their panel's y label
    head = title or _dial_title(measure, shown.pop() if len(shown) == 1 else "", path)
    if own_ax:
        a.set_title(head + f", mediator {mediators[0]}", fontsize="medium")
    else:
        fig.suptitle(_wrap(fig, head + (f"\n({note})" if note else "")), fontsize="large")
    _finish_legend(fig, axes, own_ax)
    return fig


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
    grid = _cells_of(summary, cells)
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
    grid = _cells_of(summary, cells)
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
    nominal = float(nominal if nominal is not None else summary.attrs.get("level", 0.95))
    from matplotlib.colors import TwoSlopeNorm

    for a, med in zip(axes, mediators):
        V = np.full((len(ys), len(xs)), np.nan)
        S = np.full_like(V, np.nan)
        for rec in sel[sel["mediator"] == med].itertuples():
            d = dict(grid[int(rec.cell)])
            V[yi[_value_key(d[path_y])], xi[_value_key(d[path_x])]] = rec.value
            S[yi[_value_key(d[path_y])], xi[_value_key(d[path_x])]] = rec.mcse
        finite = V[np.isfinite(V)]
        if measure in _ZERO_LINE or measure in _COVERAGE:
            centre = 0.0 if measure in _ZERO_LINE else nominal
            span = max(np.max(np.abs(finite - centre)) if finite.size else 1.0, 1e-12)
            norm = TwoSlopeNorm(vcenter=centre, vmin=centre - span, vmax=centre + span)
            cmap = "PuOr_r"
        else:
            norm, cmap = None, "cividis"
        im = a.imshow(V, origin="lower", aspect="auto", cmap=cmap, norm=norm)
        for i in range(len(ys)):
            for j in range(len(xs)):
                if not np.isfinite(V[i, j]):
                    continue
                rgba = im.cmap(im.norm(V[i, j]))
                lum = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
                txt = f"{V[i, j]:.3g}" + (f"\n±{Z95 * S[i, j]:.2g}" if np.isfinite(S[i, j]) and S[i, j] > 0 else "")
                a.text(j, i, txt, ha="center", va="center", fontsize="small",
                       color="black" if lum > 0.5 else "white")
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


# ---------------------------------------------------------------------------
# Replication-level figures
# ---------------------------------------------------------------------------


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
        Tidy rows (:func:`simulate.runner.read_rows`).
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
    handles += [Line2D([], [], marker="o", color="white", markeredgecolor="#222222", linestyle="none",
                       label="median"),
                Line2D([], [], color="#222222", linewidth=3, label="interquartile range"),
                Line2D([], [], marker="s", color="#888888", markeredgecolor="#222222", linestyle="none",
                       label="mean (estimator's marker)")]
    fig.legend(handles=handles, fontsize="small", loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle(f"Sampling distributions of the estimates, cell {cell}" + (f" ({where})" if where else ""),
                 fontsize="large")
    return fig


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
        Tidy rows (:func:`simulate.runner.read_rows`).
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
    from matplotlib.collections import LineCollection

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
    lw = float(np.clip(300.0 / n, 0.4, 2.0))
    for mask, colour, label in ((covers, OKABE_ITO["blue"], f"covers θ ({covers.sum()})"),
                                (~covers, OKABE_ITO["vermillion"], f"misses θ ({(~covers).sum()})")):
        segs = np.stack([np.column_stack([lo[mask], centile[mask]]), np.column_stack([hi[mask], centile[mask]])],
                        axis=1)
        a.add_collection(LineCollection(segs, colors=colour, linewidths=lw, label=label, zorder=2))
    span = np.quantile(np.concatenate([lo, hi]), [0.005, 0.995])
    xl, xh = min(span[0], theta), max(span[1], theta)
    pad = 0.05 * (xh - xl if xh > xl else 1.0)
    xx = np.array([xl - pad, xh + pad])
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
    from .dgp import draw

    sc = getattr(scenario, "scenario", scenario)
    trial = draw(sc, seed)
    y, M, w = site_itt(trial, sc.arms)
    P = M.shape[1]
    names = list(sc.mediator_names)
    if truth is None:
        from .truth import truth as truth_of

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
    if P == 1:
        if own_ax:
            fig, axes = ax.figure, [ax]
        else:
            fig = Figure(figsize=(7.4, 6.0), layout="constrained")
            axes = [fig.subplots()]
        a = axes[0]
        x = M[:, 0]
        a.scatter(x, y, **point_kw)
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
        a.set_xlabel(f"estimated site ITT on {names[0]} (site compliance){arm_note}")
        a.set_ylabel(f"estimated site ITT on Y{arm_note}")
    else:
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
        a.scatter(pred, y, **point_kw)
        lo, hi = min(pred.min(), y.min()), max(pred.max(), y.max())
        a.plot([lo, hi], [lo, hi], color=OKABE_ITO["blue"], linewidth=2, label="45° line (fitted plane)")
        a.set_xlabel("ITT on Y predicted by the fitted plane, Σ_p β_p ITT_Mp" + arm_note)
        a.set_ylabel(f"estimated site ITT on Y{arm_note}")
        a.set_title("ITT on Y against the fitted plane", fontsize="medium")
        if not own_ax:
            for p in range(P):
                b = axes[1 + p]
                partial = y - M @ beta + beta[p] * M[:, p]
                b.scatter(M[:, p], partial, **{**point_kw, "label": None})
                xx = np.linspace(min(0.0, M[:, p].min()), max(0.0, M[:, p].max()), 100)
                b.plot(xx, beta[p] * xx, color=OKABE_ITO["blue"], linewidth=2)
                b.plot(xx, truth.ate[p] * xx, color="#222222", linewidth=1.2, linestyle=":")
                if sc.nonlinear_dependence[p] != 0:
                    c = _quadratic(M[:, p], partial, w)
                    b.plot(xx, c[0] + c[1] * xx + c[2] * xx * xx, color=OKABE_ITO["vermillion"], linewidth=2,
                           linestyle="--", label=f"weighted quadratic fit (curvature {c[2]:.3g})")
                    b.legend(fontsize="small", loc="best", framealpha=0.85)
                b.set_xlabel(f"estimated site ITT on {names[p]}{arm_note}")
                b.set_ylabel(f"partial residual of ITT on Y for {names[p]}")
                b.set_title(f"{names[p]}: slope {beta[p]:.3g}, ATE {truth.ate[p]:.3g}", fontsize="medium")
                b.grid(True, color="#eeeeee", linewidth=0.6)
            a.plot([], [], color="#222222", linewidth=1.2, linestyle=":", label="slope = ATE (right panels)")
    for a in axes[:1]:
        a.grid(True, color="#eeeeee", linewidth=0.6)
        a.legend(fontsize="small", loc="best", framealpha=0.85)
    if own_ax or P == 1:
        axes[0].set_title(head, fontsize="medium")
    else:
        fig.suptitle(_wrap(fig, head, 10.0), fontsize="medium")
    return fig


# ---------------------------------------------------------------------------
# A run directory
# ---------------------------------------------------------------------------


def _manifest(directory: Path) -> dict:
    if not directory.is_dir():
        raise PlotError(f"{directory}: no such directory")
    path = directory / "manifest.json"
    if not path.is_file():
        raise PlotError(f"{directory}: no manifest.json (not a run directory)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlotError(f"{path}: unreadable manifest: {str(exc).splitlines()[0]}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cells"), list):
        raise PlotError(f"{path}: manifest has no list of cells")
    if not manifest.get("complete"):
        raise PlotError(f"{directory}: the run is incomplete (no summary yet); finish it with "
                        f"simulate run FILE --reps N --out {directory} --resume")
    return manifest


def load_summary(directory: str | Path) -> pd.DataFrame:
    """The long summary of a complete run directory, with ``attrs["cells"]`` and ``attrs["level"]``.

    Reads ``DIR/summary.csv`` when present (the runner writes it at the end of a run),
    else computes it (:func:`simulate.summary.summarize_directory`).

    Raises
    ------
    PlotError
        One line: no such directory, no manifest, an incomplete run.
    """
    directory = Path(directory)
    manifest = _manifest(directory)
    path = directory / "summary.csv"
    if path.is_file():
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])  # "none" is a target
    else:
        from .summary import summarize_directory

        frame = summarize_directory(directory)
    entries = {int(e.get("index", i)): e for i, e in enumerate(manifest["cells"])}
    frame.attrs["cells"] = {c: [tuple(v) for v in (e.get("values") or [])] for c, e in entries.items()}
    frame.attrs["level"] = float(manifest.get("level", 0.95))
    return frame


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_").lower()


_DIAL_MEASURES = ("bias", "coverage", "rmse")


def plot_directory(directory: str | Path, *, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Every figure that applies to a run, under ``DIR/figures/``; returns the files written.

    File names (stable; ``{path}`` is the grid path with every run of non-alphanumerics as ``_``):

    * ``dial_{measure}_{target}_{path}`` for bias, coverage and RMSE (target ``ate``; also
      ``late`` with binary mediators) along each grid direction (zipped paths count as one,
      named by the first); other directions held at their first value;
    * ``bias_decomposition_{path}``: identification against finite-sample bias;
    * ``heatmap_{measure}_2sls_{path_x}__{path_y}`` for each pair of directions (bias,
      coverage, RMSE of 2SLS);
    * ``sampling_distribution_cell{c:05d}`` and ``zip_2sls_{mediator}_cell{c:05d}`` for the
      first and the last cell (target: the cell's population ATE);
    * ``site_level_cell00000_rep0``: replication 0 of the first cell, as the run drew it.

    Parameters
    ----------
    directory : path
        A complete run directory (``simulate run``).
    formats : sequence of str
        Any of matplotlib's formats (default PNG at 150 dpi and PDF).

    Raises
    ------
    PlotError
        One line: no such directory, not a run directory, an incomplete run.
    """
    from .replicate import replication_seed
    from .runner import read_rows
    from .scenario import from_dict
    from .summary import truth_from_dict

    directory = Path(directory)
    manifest = _manifest(directory)
    summary = load_summary(directory)
    out = directory / "figures"
    written: list[Path] = []

    def put(fig: Figure, name: str) -> None:
        written.extend(save(fig, out / name, formats))

    cells = summary.attrs["cells"]
    dims = grid_dimensions(cells)
    targets = ["ate"] + (["late"] if "late" in set(summary["target"]) else [])
    for dim in dims:
        path = dim[0]
        slug = _slug(path)
        for target in targets:
            for measure in _DIAL_MEASURES:
                put(dial_plot(summary, path, measure, target=target), f"dial_{measure}_{target}_{slug}")
        if "identification_bias" in set(summary["measure"]):
            put(bias_decomposition_plot(summary, path), f"bias_decomposition_{slug}")
    if len(dims) >= 2 and "2sls" in set(summary["estimator"]):
        for i in range(len(dims)):
            for j in range(i + 1, len(dims)):
                px, py = dims[i][0], dims[j][0]
                for measure in _DIAL_MEASURES:
                    put(heatmap(summary, px, py, measure), f"heatmap_{measure}_2sls_{_slug(px)}__{_slug(py)}")

    entries = sorted(manifest["cells"], key=lambda e: int(e.get("index", 0)))
    picked = [entries[0]] + ([entries[-1]] if len(entries) > 1 else [])
    wanted = ["cell", "rep", "estimator", "mediator", "estimate", "std_error", "conf_low", "conf_high", "status",
              "sample_ate"]
    rows = read_rows(directory, columns=wanted)
    for entry in picked:
        c = int(entry.get("index", 0))
        tr = truth_from_dict(entry["truth"]) if entry.get("truth") else None
        values = ", ".join(f"{p} = {_fmt_value(v)}" for p, v in (entry.get("values") or []))
        put(sampling_distribution_plot(rows, cell=c, truth=tr, where=values), f"sampling_distribution_cell{c:05d}")
        if tr is not None and "2sls" in set(rows["estimator"]):
            for med, ate in zip(tr.mediators, tr.ate):
                if math.isfinite(ate):
                    try:
                        fig = zip_plot(rows, cell=c, estimator="2sls", mediator=med, target_value=ate,
                                       level=float(manifest.get("level", 0.95)))
                    except PlotError:
                        continue  # no usable intervals in this cell: nothing to draw
                    put(fig, f"zip_2sls_{_slug(med)}_cell{c:05d}")
    first = entries[0]
    sc = from_dict(dict(first["scenario"]), source="manifest cell 0")
    seed = replication_seed(int(manifest.get("seed", 0)), int(first.get("cell_key", 0)), 0)
    tr = truth_from_dict(first["truth"]) if first.get("truth") else None
    put(site_level_plot(sc, seed, truth=tr), f"site_level_cell{int(first.get('index', 0)):05d}_rep0")
    return written


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Register ``plot`` on an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "plot", help="write every figure of a run directory under DIR/figures/",
        description="Figures of a run: bias, coverage and RMSE against each dial with Monte Carlo bands, "
                    "identification vs finite-sample bias, heat maps of two-dimensional grids, sampling "
                    "distributions, zip plots of the intervals, and the site-level picture of one replication.")
    p.add_argument("directory", metavar="DIR", help="a complete run directory (simulate run ... --out DIR)")
    p.add_argument("--format", action="append", choices=("png", "pdf", "svg"), metavar="FORMAT",
                   help="png, pdf or svg (repeatable; default png and pdf)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``simulate plot``; returns the exit code (2 with one line on stderr for a user error)."""
    try:
        files = plot_directory(args.directory, formats=tuple(args.format or ("png", "pdf")))
    except PlotError as exc:
        print(f"simulate plot: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback on the command line
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"simulate plot: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} files under {Path(args.directory) / 'figures'}")
    return 0
