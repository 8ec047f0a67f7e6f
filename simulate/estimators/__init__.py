r"""Estimators, inference and diagnostics for MSMM-IV.

* :mod:`.registry`: one :class:`EstimatorSpec` per estimator (:data:`REGISTRY`), and
  everything derived from it (:data:`ESTIMATORS`, :data:`PRIMARY_SE`, :func:`primary_df`,
  :data:`ESTIMATOR_LABELS`, :data:`ESTIMATOR_STYLES`, :data:`LIMIT_OF`,
  :func:`estimators_for`); its docstring says how to add an estimator;
* :mod:`.inference`: confidence intervals and p-values, vectorised, for analysis and
  simulation alike;
* :mod:`.rows`: the one row schema (:data:`COLUMNS`) and the function that fills it;
* :mod:`.api`: the validated entry points (:func:`estimate`, :func:`estimate_arrays`,
  :func:`anderson_rubin_test`, :func:`cell_statistics`).

The algebra lives in :mod:`simulate.kernels` (Numba, cell-level sufficient statistics,
:mod:`simulate.kernels.fit_nb` for every estimator).  All estimators use site fixed effects, and site-by-arm
instruments where instruments are used; :attr:`EstimatorSpec.description` says what
each computes.  The confidence interval and p-value of each row use the standard error
named in :data:`PRIMARY_SE` (Student's t with :func:`primary_df` degrees of freedom).
"""

from .api import (
    EstimateArrays,
    EstimationError,
    anderson_rubin_test,
    cell_statistics,
    diagnostic_values,
    direct_effect_inference,
    estimate,
    estimate_arrays,
    estimate_statistics,
    primary_inference,
    tidy,
)
from .inference import (
    diagnostic_columns,
    direct_effect_inference_arrays,
    nonlinearity_p,
    primary_standard_error,
    t_inference,
)
from .registry import (
    DF_RULES,
    DIRECT_EFFECT,
    ESTIMATOR_LABELS,
    ESTIMATOR_STYLES,
    ESTIMATORS,
    LIMIT_OF,
    PRIMARY_SE,
    REGISTRY,
    RENAMED_ESTIMATORS,
    SE_TYPES,
    SPECS,
    STATUS_NAMES,
    EstimatorSpec,
    estimators_for,
    primary_df,
    spec,
    unknown_estimator_message,
)
from .rows import ANALYSIS_COLUMNS, COLUMNS, SIMULATION_COLUMNS, Column, RowPlan, estimate_columns, row_plan

__all__ = [
    "EstimatorSpec", "REGISTRY", "SPECS", "spec", "ESTIMATORS", "PRIMARY_SE", "primary_df", "estimators_for",
    "ESTIMATOR_LABELS", "ESTIMATOR_STYLES", "LIMIT_OF", "RENAMED_ESTIMATORS", "unknown_estimator_message",
    "SE_TYPES", "STATUS_NAMES", "DF_RULES", "DIRECT_EFFECT",
    "t_inference", "primary_standard_error", "direct_effect_inference_arrays", "diagnostic_columns",
    "nonlinearity_p",
    "Column", "COLUMNS", "ANALYSIS_COLUMNS", "SIMULATION_COLUMNS", "RowPlan", "row_plan", "estimate_columns",
    "EstimateArrays", "EstimationError", "estimate_arrays", "estimate_statistics", "estimate", "tidy",
    "primary_inference", "direct_effect_inference", "diagnostic_values", "anderson_rubin_test", "cell_statistics",
]
