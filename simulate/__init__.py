"""simulate: a Monte Carlo laboratory for multisite, multi-mediator instrumental variables (MSMM-IV)."""

from .analyze import analyze
from .dgp import Trial, draw
from .estimators import ESTIMATORS, estimate
from .scenario import GridCell, Scenario, ScenarioError, expand_grid, load, loads
from .truth import Truth, truth

__version__ = "0.1.0"

__all__ = ["analyze", "estimate", "ESTIMATORS", "Scenario", "ScenarioError", "GridCell", "load", "loads",
           "expand_grid", "Trial", "draw", "Truth", "truth", "__version__"]
