"""Scenario files: read, validate, sweep.

A scenario is a small TOML file that describes one multisite, multi-mediator IV
design and how far each of the founding paper's assumptions fails (Reardon &
Raudenbush 2013).  Every dial defaults to zero, where its assumption holds.

The package is split by concern:

- :mod:`~simulate.scenario.schema`: every key a file may hold (:data:`SCHEMA`, :class:`Field`),
  the limits, and :class:`ScenarioError`;
- :mod:`~simulate.scenario.validation`: parsing and checking (:func:`load`, :func:`loads`,
  :func:`from_dict`), every error message;
- :mod:`~simulate.scenario.model`: the frozen :class:`Scenario` with its nested read-only
  views mirroring the TOML (``sc.person.within_site_correlation``, ``sc.site.mean``);
- :mod:`~simulate.scenario.grid`: ``[grid]`` expansion (:func:`expand_grid`, :class:`GridCell`,
  :func:`validate_file`).

Reading a file goes through three steps, all before any simulation starts: ``tomllib``
parses the text; :func:`~simulate.scenario.validation.normalise` checks every key, type,
range and cross-field constraint (the first failure is a one-line :class:`ScenarioError`
naming the file, the field and the constraint); :func:`~simulate.scenario.model.build`
turns the checked table into a frozen :class:`Scenario` with every per-mediator value
broadcast to a tuple of length P.
"""

from __future__ import annotations

from .grid import GridCell, expand_grid, set_path, validate_file
from .model import (
    BinarySpec,
    MediatorsSpec,
    Pairs,
    Path_,
    PersonSpec,
    Scenario,
    SelectionSpec,
    SiteSpec,
    SpilloverSpec,
    TreatmentSpec,
    arm_counts,
    build,
    correlation_matrix,
)
from .schema import (
    MAX_DEPTH,
    MAX_DESCRIPTION,
    MAX_GRID_CELLS,
    MAX_MAGNITUDE,
    MAX_NAME,
    MAX_PERSONS,
    SCHEMA,
    Field,
    ScenarioError,
)
from .validation import from_dict, load, loads, normalise, physical_memory, replication_bytes

__all__ = [
    "ScenarioError",
    "Scenario",
    "GridCell",
    "load",
    "loads",
    "from_dict",
    "expand_grid",
    "validate_file",
    "set_path",
    "arm_counts",
    "correlation_matrix",
    "replication_bytes",
    "physical_memory",
    "normalise",
    "build",
    "SCHEMA",
    "Field",
    "Path_",
    "Pairs",
    "TreatmentSpec",
    "MediatorsSpec",
    "SiteSpec",
    "PersonSpec",
    "BinarySpec",
    "SelectionSpec",
    "SpilloverSpec",
    "MAX_MAGNITUDE",
    "MAX_PERSONS",
    "MAX_GRID_CELLS",
    "MAX_DEPTH",
    "MAX_DESCRIPTION",
    "MAX_NAME",
]
