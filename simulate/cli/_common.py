"""What the command modules share: the usage error, bounds of options, bundled scenario names."""

from __future__ import annotations

from pathlib import Path

from ..datasets import scenario_dir
from ..errors import SimulateError

SCENARIO_DIR = scenario_dir()  # package data (the top-level scenarios/ links here)
MAX_SEED = 2**63
MIN_TRUTH_SITES = 1000
MAX_TRUTH_SITES = 10**8
MAX_MESSAGE = 2000  # characters of an error message at most


class UsageError(SimulateError):
    """A user error with a one-line message (exit code 2)."""


def number(x) -> str:
    """An option's value as a message shows it: a huge integer by its digit count."""
    text = str(x)
    return f"a {len(text.lstrip('-'))}-digit integer" if len(text) > 24 else text


def check_range(option: str, value, lo: int, hi: int, what: str) -> None:
    """One-line UsageError unless ``lo <= value < hi`` (``what`` says so in words).

    Parameters
    ----------
    option
        The option's name, e.g. ``--seed``.
    value
        Its value (``None``: not given, nothing to check).
    lo, hi
        The half-open range ``[lo, hi)``.
    what
        The range in words, for the message.
    """
    if value is not None and not lo <= value < hi:
        raise UsageError(f"{option}: must be {what}, got {number(value)}")


def check_truth_sites(option: str, value) -> None:
    """``--sites`` / ``--truth-sites``: between MIN_TRUTH_SITES and MAX_TRUTH_SITES (``None``: the default).

    Parameters
    ----------
    option
        The option's name, for the message.
    value
        Its value.
    """
    if value is not None and value < MIN_TRUTH_SITES:
        raise UsageError(f"{option}: must be at least 1000, got {number(value)}")
    check_range(option, value, MIN_TRUTH_SITES, MAX_TRUTH_SITES + 1, f"at most {MAX_TRUTH_SITES:,}")


def resolve(name: str) -> Path:
    """A scenario file, or the file of a bundled scenario (or stress-test design) of that name.

    Parameters
    ----------
    name
        A path, or a name that ``simulate list`` shows (or a design under ``designs/``).

    Returns
    -------
    Path
        The file.
    """
    path = Path(name)
    if path.exists():
        return path
    for bundled in (SCENARIO_DIR / f"{name}.toml", SCENARIO_DIR / "designs" / f"{name}.toml"):
        if bundled.exists():
            return bundled
    raise UsageError(f"{name}: no such file or bundled scenario (simulate list names them)")
