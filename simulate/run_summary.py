"""The summary of a run directory: targets from the manifest's cached truth, rows streamed part by part.

:func:`summarize_run` reads ``DIR/manifest.json`` and the part files one at a time in (cell,
start) order, so memory is bounded by one cell (see :mod:`simulate.accumulator`), and returns
a :class:`simulate.measures.Summary`; :func:`write_summary` writes ``DIR/summary.csv``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .accumulator import AR_COLUMNS, CHECK_COLUMNS, JAR_COLUMNS, NEEDED_COLUMNS, SE_COVERAGE_COLUMNS, SummaryAccumulator
from .measures import ALPHA, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, Summary, SummaryError
from .rundir import part_files, read_manifest
from .tables import to_csv

__all__ = ["truth_from_dict", "cell_targets", "summarize_run", "summarize_directory", "write_summary"]


def truth_from_dict(d: Mapping):
    """A :class:`simulate.truth.Truth` from its ``to_dict()`` form (null read as NaN).

    Parameters
    ----------
    d : mapping
        ``Truth.to_dict()``, as the manifest caches it.

    Returns
    -------
    simulate.truth.Truth
    """
    from .truth import Truth

    def num(v):
        return math.nan if v is None else float(v)

    recs = list(d["mediators"])
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Truth):
        if f.name == "mediators":
            kwargs[f.name] = tuple(r["mediator"] for r in recs)
        elif recs and f.name in recs[0]:
            kwargs[f.name] = tuple(num(r.get(f.name)) for r in recs)
        elif f.name == "notes":
            kwargs[f.name] = tuple(d.get("notes") or ())
        elif f.name == "n_sites_simulated":
            kwargs[f.name] = int(d.get(f.name) or 0)
        elif f.name in d:
            kwargs[f.name] = num(d[f.name])
    return Truth(**kwargs)


def cell_targets(entry: Mapping, truth_sites: int | None = None) -> dict:
    """Targets of one manifest cell entry: from its cached ``truth``, else computed.

    Parameters
    ----------
    entry : mapping
        ``{"index", "scenario": <normalised table>, "truth": <Truth.to_dict()>, ...}``.
    truth_sites : int, optional
        Simulated sites when the truth must be computed (default
        :data:`simulate.truth.TRUTH_SITES`).

    Returns
    -------
    dict
        :func:`simulate.truth.targets` of the cell.
    """
    from .scenario import from_dict
    from .truth import TRUTH_SITES, targets
    from .truth import truth as compute_truth

    sc = from_dict(dict(entry["scenario"]), source=f"manifest cell {entry.get('index', '?')}")
    if entry.get("truth"):
        tr = truth_from_dict(entry["truth"])
    else:
        tr = compute_truth(sc, n_sites=truth_sites or TRUTH_SITES)
    return targets(tr, sc)


def summarize_run(directory: str | Path, *, alpha: float = ALPHA, truth_sites: int | None = None,
                  resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                  quantile_mcse: str = "order") -> Summary:
    """The :class:`simulate.measures.Summary` of a run directory.

    Reads ``DIR/manifest.json`` and the part files ``DIR/parts/cell{c:05d}_rep{a:09d}-{b:09d}.parquet``
    one at a time in (cell, start) order.  The targets of each cell come from the manifest's
    cached truth, or are computed.  ``summary.cells`` maps each cell to its grid values and
    ``summary.level`` is the manifest's confidence level (None when it has none).

    Parameters
    ----------
    directory : path
        A run directory.
    alpha, resamples, seed, quantile_mcse
        As in :class:`simulate.accumulator.SummaryAccumulator`.
    truth_sites : int, optional
        Simulated sites for a cell whose truth the manifest lacks.

    Returns
    -------
    Summary

    Raises
    ------
    SummaryError
        One line: no such directory, no manifest, no part files, rows out of order.
    """
    import pyarrow.parquet as pq

    directory = Path(directory)
    manifest = read_manifest(directory, SummaryError)
    parts = part_files(directory)
    if not parts:
        raise SummaryError(f"{directory}: no part files under {directory / 'parts'}")
    entries = {int(e.get("index", i)): e for i, e in enumerate(manifest["cells"])}
    missing = sorted({c for c, *_ in parts} - set(entries))
    if missing:
        raise SummaryError(f"{directory}: part files of cell {missing[0]}, which the manifest does not list")

    def targets(c: int):
        return cell_targets(entries[c], truth_sites)

    acc = SummaryAccumulator(targets, alpha=alpha, resamples=resamples, seed=seed, quantile_mcse=quantile_mcse)
    for _, _, _, path in parts:
        try:
            names = set(pq.read_schema(path).names)
            wanted = list(NEEDED_COLUMNS) + ([c for c in AR_COLUMNS] if set(AR_COLUMNS) <= names else [])
            wanted += [c for c in CHECK_COLUMNS if c in names]
            wanted += [c for c in JAR_COLUMNS if c in names] if set(JAR_COLUMNS) <= names else []
            wanted += [c for c in SE_COVERAGE_COLUMNS if c in names]
            table = pq.read_table(path, columns=wanted)
        except Exception as exc:  # a damaged or foreign file: one line
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SummaryError(f"{path}: unreadable part file: {why}") from None
        acc.add({k: table.column(k).to_numpy(zero_copy_only=False) for k in wanted})
        del table
    cells = {int(c): [tuple(v) for v in (entries[c].get("values") or [])] for c in entries}
    level = manifest.get("level")
    return dataclasses.replace(acc.summary(cells), level=None if level is None else float(level))


def summarize_directory(directory: str | Path, **kwargs) -> pd.DataFrame:
    """The long summary frame of a run directory, metadata in ``frame.attrs`` (``cells``, ``alpha``).

    The frame of :func:`summarize_run` (same arguments), kept for code that reads ``attrs``.

    Parameters
    ----------
    directory : path
    **kwargs
        ``alpha``, ``truth_sites``, ``resamples``, ``seed``, ``quantile_mcse``.

    Returns
    -------
    pandas.DataFrame
    """
    summary = summarize_run(directory, **kwargs)
    return dataclasses.replace(summary, level=None).frame()  # attrs as before: cells and alpha


def write_summary(directory: str | Path, frame: Summary | pd.DataFrame | None = None, **kwargs) -> Path:
    """Write ``DIR/summary.csv`` (the long frame, atomically); returns its path.

    Parameters
    ----------
    directory : path
    frame : Summary or pandas.DataFrame, optional
        Default :func:`summarize_run` ``(directory, **kwargs)``.
    **kwargs
        Passed on to :func:`summarize_run`.

    Returns
    -------
    pathlib.Path
    """
    directory = Path(directory)
    if frame is None:
        frame = summarize_run(directory, **kwargs)
    final = directory / "summary.csv"
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    tmp.write_text(to_csv(frame), encoding="utf-8")
    os.replace(tmp, final)
    return final
