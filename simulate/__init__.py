"""simulate: a Monte Carlo laboratory for multisite, multi-mediator instrumental variables (MSMM-IV)."""

from .dgp import Trial, draw
from .scenario import GridCell, Scenario, ScenarioError, expand_grid, load, loads

__version__ = "0.1.0"

__all__ = ["Scenario", "ScenarioError", "GridCell", "load", "loads", "expand_grid", "Trial", "draw", "__version__"]
