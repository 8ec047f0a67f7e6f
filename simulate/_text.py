"""Numbers and figures as the reports print them (the stress test's and the sensitivity analysis's)."""

from __future__ import annotations

import base64
import math
from pathlib import Path

__all__ = ["number", "png_data_uri"]


def number(v, digits: int = 3) -> str:
    """A number in ``digits`` significant digits ("–" for NaN, scientific below 1e-3 or from 1e5).

    Parameters
    ----------
    v : float-like
        The value; anything that is not a number is returned as its text ("" for None).
    digits : int
        Significant digits.

    Returns
    -------
    str
    """
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v)
    if not math.isfinite(v):
        return "–"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{max(1, digits - 1)}e}"
    return f"{v:.{digits}g}"


def png_data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:`` URI, so that a report page holds its figures itself.

    Parameters
    ----------
    path : path of the PNG file

    Returns
    -------
    str
    """
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
