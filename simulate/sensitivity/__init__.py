"""Sensitivity analysis of a finished multisite study (``simulate sensitivity``); see :mod:`.core`."""

from .core import (
    BREAKDOWN_COLUMNS,
    RANGES,
    DialRange,
    SensitivityError,
    SensitivityResult,
    breakdown_values,
    crossing,
    sensitivity,
)

__all__ = ["sensitivity", "SensitivityResult", "SensitivityError", "DialRange", "RANGES", "crossing",
           "breakdown_values", "BREAKDOWN_COLUMNS"]
