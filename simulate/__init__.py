"""simulate: a Monte Carlo laboratory for multisite, multi-mediator instrumental variables (MSMM-IV)."""

from importlib import metadata as _metadata

from .analyze import analyze
from .dgp import Trial, draw
from .estimators import ESTIMATORS, estimate
from .scenario import GridCell, Scenario, ScenarioError, expand_grid, load, loads
from .truth import Truth, truth


def _version() -> str:
    """The installed distribution's version; "0+unknown" in a source tree without package metadata."""
    try:
        return _metadata.version("simulate")
    except _metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

__all__ = ["analyze", "estimate", "ESTIMATORS", "Scenario", "ScenarioError", "GridCell", "load", "loads",
           "expand_grid", "Trial", "draw", "Truth", "truth", "__version__"]
