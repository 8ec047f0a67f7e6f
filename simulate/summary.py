"""Performance measures of a simulation run, each with its Monte Carlo standard error: the summary stage.

This module is the stage's front door; the work is done in four modules, each of one concern:

* :mod:`simulate.measures`: the measures as pure functions returning a
  :class:`~simulate.measures.Measure` (value, MCSE, n), their formulas (Morris, White &
  Crowther 2019, Stat Med 38:2074, Table 6) and the :class:`~simulate.measures.Summary`
  dataclass (the long table plus the grid values, alpha and level it was computed with);
* :mod:`simulate.accumulator`: :class:`SummaryAccumulator`, which streams the tidy rows in
  (cell, rep) order and is bit-identical whatever the batches, and :func:`summarize`;
* :mod:`simulate.run_summary`: a run directory's summary (:func:`summarize_run`,
  :func:`summarize_directory`, :func:`write_summary`), reading the store through
  :mod:`simulate.rundir`;
* :mod:`simulate.tables`: CSV, JSON, Markdown (``DataFrame.to_markdown``) and LaTeX
  (``Styler.to_latex``, booktabs) renderings;

and ``simulate summarize`` lives in :mod:`simulate.cli.runs`.  Every name below is
importable from here as before.
"""

from __future__ import annotations

from .accumulator import NEEDED_COLUMNS as _NEEDED  # noqa: F401 - kept for code that read it here
from .accumulator import SummaryAccumulator, TargetsArg, summarize  # noqa: F401
from .kernels.summary_nb import neumaier_add as _neumaier_add  # noqa: F401
from .measures import (  # noqa: F401
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    F_QUANTILES,
    FIXED_TARGETS,
    LONG_COLUMNS,
    MAD_SCALE,
    MEASURES,
    QUANTILE_MCSE,
    ROW_TARGETS,
    TARGET_FREE_MEASURES,
    TARGET_MEASURES,
    TARGETS,
    Measure,
    Summary,
    SummaryError,
)
from .run_summary import cell_targets, summarize_directory, summarize_run, truth_from_dict, write_summary
from .rundir import part_files
from .tables import _fmt_number, render, to_csv, to_json, to_latex, to_markdown, wide  # noqa: F401

__all__ = [
    "ALPHA", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "MAD_SCALE", "TARGETS", "TARGET_FREE_MEASURES",
    "TARGET_MEASURES", "LONG_COLUMNS", "SummaryError", "SummaryAccumulator", "summarize", "wide",
    "render", "to_csv", "to_markdown", "to_latex", "to_json", "truth_from_dict", "cell_targets",
    "part_files", "summarize_directory", "write_summary",
    "Summary", "Measure", "summarize_run",
]
