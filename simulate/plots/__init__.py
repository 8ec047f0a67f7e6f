r"""Figures of a simulation run: performance against the dials, distributions, zip plots, site picture.

Every function reads the stages upstream and nothing else: the summary of
:func:`simulate.run_summary.summarize_run` or :func:`load_summary` (a :class:`simulate.measures.Summary`:
its ``table`` has columns ``cell, estimator, mediator, target, measure, value, mcse, n_reps``,
its ``cells`` map each cell to its grid values; the long frame of older code, with the same
metadata in ``frame.attrs``, is read into one),
the tidy rows of :func:`simulate.store.read_rows`, or one replication drawn with
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

One module per figure family: :mod:`~simulate.plots.labels` (names and styles),
:mod:`~simulate.plots.base` (saving, panels, legends, bands), :mod:`~simulate.plots.grid`
(which cells form a line along a dial), :mod:`~simulate.plots.curves` (a measure against a
dial), :mod:`~simulate.plots.decomposition` (identification against finite-sample bias),
:mod:`~simulate.plots.heatmaps`, :mod:`~simulate.plots.replications` (sampling
distributions, zip plots), :mod:`~simulate.plots.sites` (the site-level picture),
:mod:`~simulate.plots.stress` (the stress test's per-dial figures) and
:mod:`~simulate.plots.directory` (every figure of a run directory).

``simulate plot DIR`` (wired in :mod:`simulate.cli.runs`)
writes every figure that applies to a run directory under ``DIR/figures/`` (:func:`plot_directory`).
"""

from __future__ import annotations

from .base import DIRECT_EFFECT, DPI, Z95, PlotError, save
from .curves import bias_plot, coverage_plot, dial_plot, rmse_plot
from .decomposition import bias_decomposition_plot
from .directory import load_summary, plot_directory
from .grid import grid_dimensions, grid_paths
from .heatmaps import heatmap
from .labels import (
    DIAL_LABELS,
    ESTIMATOR_LABELS,
    ESTIMATOR_STYLES,
    MEASURE_LABELS,
    OKABE_ITO,
    TARGET_LABELS,
    dial_label,
)
from .replications import sampling_distribution_plot, zip_plot
from .sites import site_itt, site_level_plot

__all__ = [
    "DIAL_LABELS", "MEASURE_LABELS", "TARGET_LABELS", "ESTIMATOR_LABELS", "ESTIMATOR_STYLES", "OKABE_ITO",
    "PlotError", "dial_label", "dial_plot", "bias_plot", "coverage_plot", "rmse_plot", "bias_decomposition_plot",
    "sampling_distribution_plot", "zip_plot", "heatmap", "site_level_plot", "site_itt", "plot_directory",
    "load_summary",
    "grid_paths", "grid_dimensions",
    "save",
    "DPI", "Z95", "DIRECT_EFFECT",
]
