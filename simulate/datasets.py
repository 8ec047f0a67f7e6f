"""Reference data shipped with the package.

``ak80()``: the Angrist & Krueger (1991, Quarterly Journal of Economics 106(4)) extract of the
1980 US Census 5% sample, men born 1930-1939, 329,509 rows (columns age, education, lwage,
married, qob, sob, black, smsa, yob, division; see ``simulate/data/README.md``).  As an MSMM-IV
design: ``yob`` is the site (10 sites), ``qob`` a 4-arm treatment, ``education`` the mediator,
``lwage`` the outcome.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["ak80", "ak80_path", "scenario_dir"]


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
