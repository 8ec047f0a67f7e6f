"""Every figure of a run directory, written under ``DIR/figures/``."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..measures import Summary
from ..rundir import read_manifest
from .base import PlotError, save
from .curves import dial_plot
from .decomposition import bias_decomposition_plot
from .grid import _fmt_value, grid_dimensions
from .heatmaps import heatmap
from .replications import sampling_distribution_plot, zip_plot
from .sites import site_level_plot


def _manifest(directory: Path) -> dict:
    manifest = read_manifest(directory, PlotError)
    if not manifest.get("complete"):
        raise PlotError(f"{directory}: the run is incomplete (no summary yet); finish it with "
                        f"simulate run FILE --reps N --out {directory} --resume")
    return manifest


def load_summary(directory: str | Path) -> Summary:
    """The summary of a complete run directory: its long table, grid values per cell and confidence level.

    Reads ``DIR/summary.csv`` when present (the runner writes it at the end of a run),
    else computes it (:func:`simulate.run_summary.summarize_run`).

    Returns
    -------
    Summary
        ``table`` (the long frame), ``cells`` (from the manifest), ``level``.

    Raises
    ------
    PlotError
        One line: no such directory, no manifest, an incomplete run.
    """
    directory = Path(directory)
    manifest = _manifest(directory)
    path = directory / "summary.csv"
    if path.is_file():
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])  # "none" is a target
    else:
        from ..run_summary import summarize_run

        table = summarize_run(directory).table
    entries = {int(e.get("index", i)): e for i, e in enumerate(manifest["cells"])}
    cells = {c: [tuple(v) for v in (e.get("values") or [])] for c, e in entries.items()}
    return Summary(table, cells, level=float(manifest.get("level", 0.95)))


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
    from ..replicate import replication_seed
    from ..run_summary import truth_from_dict
    from ..scenario import from_dict

    directory = Path(directory)
    manifest = _manifest(directory)
    summary = load_summary(directory)
    out = directory / "figures"
    written: list[Path] = []

    def put(fig: Figure, name: str) -> None:
        written.extend(save(fig, out / name, formats))

    _summary_figures(summary, put)
    entries = sorted(manifest["cells"], key=lambda e: int(e.get("index", 0)))
    _replication_figures(directory, manifest, entries, put)
    first = entries[0]
    sc = from_dict(dict(first["scenario"]), source="manifest cell 0")
    seed = replication_seed(int(manifest.get("seed", 0)), int(first.get("cell_key", 0)), 0)
    tr = truth_from_dict(first["truth"]) if first.get("truth") else None
    put(site_level_plot(sc, seed, truth=tr), f"site_level_cell{int(first.get('index', 0)):05d}_rep0")
    return written


def _summary_figures(run: Summary, put) -> None:
    """Dial curves and bias decompositions along each grid direction, heat maps over each pair of them."""
    cells, summary = run.cells, run.table
    dims = grid_dimensions(cells)
    targets = ["ate"] + (["late"] if "late" in set(summary["target"]) else [])
    for dim in dims:
        path = dim[0]
        slug = _slug(path)
        for target in targets:
            for measure in _DIAL_MEASURES:
                put(dial_plot(run, path, measure, target=target), f"dial_{measure}_{target}_{slug}")
        if "identification_bias" in set(summary["measure"]):
            put(bias_decomposition_plot(run, path), f"bias_decomposition_{slug}")
    if len(dims) >= 2 and "2sls" in set(summary["estimator"]):
        for i in range(len(dims)):
            for j in range(i + 1, len(dims)):
                px, py = dims[i][0], dims[j][0]
                for measure in _DIAL_MEASURES:
                    put(heatmap(run, px, py, measure), f"heatmap_{measure}_2sls_{_slug(px)}__{_slug(py)}")


def _replication_figures(directory: Path, manifest: dict, entries: list, put) -> None:
    """Sampling distributions and zip plots of the first and the last cell (target: the cell's population ATE)."""
    from ..run_summary import truth_from_dict
    from ..rundir import read_rows

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
