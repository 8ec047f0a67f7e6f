r"""Tables of a summary: CSV and JSON of the long frame; Markdown and LaTeX tables, one per target.

Every function takes a :class:`simulate.measures.Summary` or the long frame (with the
metadata in ``frame.attrs``, as :func:`simulate.run_summary.summarize_directory` returns it).
Markdown is :meth:`pandas.DataFrame.to_markdown` (tabulate's pipe tables); LaTeX is
:meth:`pandas.io.formats.style.Styler.to_latex`, one booktabs ``table`` environment per
target with a caption and a label (the document needs ``\usepackage{booktabs}``).  Printed
cells read ``value (mcse)``: four significant digits, two for the MCSE.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from .measures import MEASURES, TARGETS, Summary, SummaryError

__all__ = ["wide", "to_csv", "to_json", "to_markdown", "to_latex", "render", "FORMATS", "TITLES"]

FORMATS = ("csv", "markdown", "latex", "json")
"""The formats of :func:`render`."""

TITLES = {"none": "measures without a target", "ate": "target: population ATE", "late": "target: population LATE",
          "compliance_weighted": "target: compliance-weighted estimand", "limit": "target: the estimator's "
          "large-sample limit", "sample": "target: each replication's sample ATE",
          "sample_late": "target: each replication's sample LATE"}
"""The heading of each target's table."""

_KEYS = ["cell", "estimator", "mediator", "target"]


def _table(summary) -> pd.DataFrame:
    return summary.table if isinstance(summary, Summary) else summary


def wide(frame) -> pd.DataFrame:
    """One row per cell x estimator x mediator x target; columns ``<measure>`` and ``<measure>_mcse``.

    Measures absent for a target are NaN; columns in :data:`simulate.measures.MEASURES`
    order; rows in the order of the long frame.

    Parameters
    ----------
    frame : Summary or pandas.DataFrame
        The summary, or its long frame.

    Returns
    -------
    pandas.DataFrame
    """
    frame = _table(frame)
    if frame.empty:
        return pd.DataFrame(columns=_KEYS)
    order = frame[_KEYS].drop_duplicates()
    val = frame.pivot(index=_KEYS, columns="measure", values="value")
    err = frame.pivot(index=_KEYS, columns="measure", values="mcse")
    present = [m for m in MEASURES if m in val.columns]
    out = pd.DataFrame(index=val.index)
    for m in present:
        out[m] = val[m]
        out[f"{m}_mcse"] = err[m]
    out = out.reset_index()
    out = order.merge(out, on=_KEYS, how="left")
    for c in ("n_reps", "n_failed"):
        if c in out:
            out[c] = out[c].astype("Int64")
    return out.reset_index(drop=True)


def _fmt_number(v: float, digits: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return ""
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-3 <= a < 1e5:
        decimals = max(0, digits - 1 - int(math.floor(math.log10(a))))
        return f"{v:.{decimals}f}"
    return f"{v:.{digits - 1}e}"


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _fmt_cell(value: float, mcse: float, measure: str) -> str:
    if measure in ("n_reps", "n_failed"):
        return "" if not math.isfinite(value) else str(int(value))
    s = _fmt_number(value)
    if s and mcse is not None and math.isfinite(mcse) and mcse > 0:
        s += f" ({_fmt_number(mcse, 2)})"
    return s


def _sections(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(target, printed table) pairs: rows cell x estimator x mediator, columns the measures present, as text."""
    w = wide(frame)
    for t in TARGETS:
        part = w[w["target"] == t]
        if part.empty:
            continue
        measures = [m for m in MEASURES if m in part.columns and part[m].notna().any()]
        text = {"cell": part["cell"].astype(str), "estimator": part["estimator"], "mediator": part["mediator"]}
        for m in measures:
            err = part[f"{m}_mcse"] if f"{m}_mcse" in part else pd.Series(math.nan, index=part.index)
            text[m] = [_fmt_cell(_float(v), _float(s), m) for v, s in zip(part[m], err)]
        yield t, pd.DataFrame(text).reset_index(drop=True)


def _cells_legend(summary: Summary) -> list[str]:
    return [f"cell {c}: " + ", ".join(f"{p} = {v}" for p, v in values)
            for c, values in sorted(summary.cells.items()) if values]


def _note(summary: Summary) -> str:
    return ("Relative bias and relative error of the model SE in percent; power rejects zero at "
            f"alpha = {summary.alpha}.")


def to_markdown(summary) -> str:
    """Pipe tables, one per target, cells as ``value (mcse)`` (:meth:`pandas.DataFrame.to_markdown`).

    Parameters
    ----------
    summary : Summary or pandas.DataFrame
        The summary, or its long frame (grid values and alpha read from ``attrs``).

    Returns
    -------
    str
    """
    s = Summary.from_frame(summary)
    out = [f"Performance measures: value (Monte Carlo SE). {_note(s)}"]
    legend = _cells_legend(s)
    if legend:
        out += [""] + [f"- {line}" for line in legend]
    for t, table in _sections(s.table):
        escaped = table.apply(lambda col: col.str.replace("|", "\\|", regex=False))
        align = ["left"] * 3 + ["right"] * (table.shape[1] - 3)
        out += ["", f"### {TITLES.get(t, t)}", "",
                escaped.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True)]
    return "\n".join(out) + "\n"


def to_latex(summary) -> str:
    r"""Booktabs tables, one ``table`` environment per target with caption and label (Styler.to_latex).

    Names and cells are escaped for LaTeX; labels read ``tab:summary-<target>``.  The
    document needs ``\usepackage{booktabs}``.

    Parameters
    ----------
    summary : Summary or pandas.DataFrame
        The summary, or its long frame.

    Returns
    -------
    str
    """
    s = Summary.from_frame(summary)
    out = [f"% Performance measures: value (Monte Carlo SE). {_note(s)}"]
    out += [f"% {line}" for line in _cells_legend(s)]
    for t, table in _sections(s.table):
        styler = table.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
        caption = f"Performance measures, {TITLES.get(t, t)}: value (Monte Carlo SE). {_note(s)}"
        out += ["", styler.to_latex(column_format="lll" + "r" * (table.shape[1] - 3), hrules=True,
                                    environment="table", position_float="centering",
                                    caption=caption.replace("%", r"\%"), label=f"tab:summary-{t}").rstrip("\n")]
    return "\n".join(out) + "\n"


def to_csv(summary) -> str:
    """The long frame as CSV (full precision; NaN as an empty field).

    Parameters
    ----------
    summary : Summary or pandas.DataFrame

    Returns
    -------
    str
    """
    buf = io.StringIO()
    _table(summary).to_csv(buf, index=False, float_format="%.17g")
    return buf.getvalue()


def to_json(summary) -> str:
    """The long frame as strict JSON records (NaN as null; floats to full precision).

    Parameters
    ----------
    summary : Summary or pandas.DataFrame

    Returns
    -------
    str
    """
    recs = []
    for rec in _table(summary).to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            clean[k] = v
        recs.append(clean)
    return json.dumps(recs, indent=1, allow_nan=False)


def render(summary, fmt: str) -> str:
    """The summary in ``fmt``: one of csv, markdown, latex, json.

    Parameters
    ----------
    summary : Summary or pandas.DataFrame
    fmt : str

    Raises
    ------
    SummaryError
        For another format.
    """
    try:
        writer = {"csv": to_csv, "markdown": to_markdown, "latex": to_latex, "json": to_json}[fmt]
    except KeyError:
        raise SummaryError(f"unknown format {fmt!r}: choose csv, markdown, latex or json") from None
    return writer(summary)

