"""Names and styles shared by every figure: estimator labels and styles, axis names of dials, measures and targets.

``ESTIMATOR_LABELS`` and ``ESTIMATOR_STYLES`` are the registry's (:mod:`simulate.estimators.registry`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from ..assumptions import axis_labels
from ..estimators import registry as _registry

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
    "grey": "#999999",
}
"""Okabe & Ito (2008) colours (grey added, as is usual, for a ninth)."""

_O = OKABE_ITO
# legend names and (colour, marker, line style) of each estimator: one entry per estimator in
# the registry (simulate.estimators.registry), read here
ESTIMATOR_LABELS = _registry.ESTIMATOR_LABELS
ESTIMATOR_STYLES = _registry.ESTIMATOR_STYLES

_SPARE_STYLES = [(c, m, ls) for c, m, ls in zip(
    [_O["blue"], _O["vermillion"], _O["bluish_green"], _O["orange"], _O["reddish_purple"], _O["sky_blue"]],
    ["<", ">", "p", "8", "H", "1"], ["-", "--", "-.", ":", "-", "--"])]

DIAL_LABELS = axis_labels()
"""Axis names of the dials, by dotted grid path without list indices (see :func:`dial_label`): read from the
assumption catalogue (:attr:`simulate.assumptions.Assumption.axes`) and its table of design parameters
(:data:`simulate.assumptions.DESIGN_LABELS`); keys with ``*`` are patterns."""

MEASURE_LABELS = {
    "bias": "bias (mean estimate − target)",
    "relative_bias": "relative bias (%)",
    "median_bias": "median bias",
    "empirical_se": "empirical SE",
    "model_se": "model SE (root mean squared)",
    "relative_error_model_se": "relative error of the model SE (%)",
    "rmse": "RMSE",
    "coverage": "coverage of the confidence interval",
    "bias_eliminated_coverage": "bias-eliminated coverage",
    "power": "power (rejecting zero)",
    "mad": "MAD (scaled, ≈ SD)",
    "failure_share": "share of failed replications",
    "mean_estimate": "mean estimate",
    "identification_bias": "identification bias (limit − target)",
    "finite_sample_bias": "finite-sample bias (mean estimate − limit)",
    "first_stage_f_q05": "first-stage F, 5th centile",
    "first_stage_f_q50": "first-stage F, median",
    "first_stage_f_q95": "first-stage F, 95th centile",
    "target_value": "target value",
}
"""Axis names of the performance measures of :mod:`simulate.measures`."""

TARGET_LABELS = {
    "ate": "population ATE",
    "late": "population LATE",
    "compliance_weighted": "compliance-weighted estimand",
    "limit": "estimator's large-sample limit",
    "sample": "sample ATE",
    "sample_late": "sample LATE",
    "none": "",
}
"""Names of the targets of :mod:`simulate.measures`."""

_ZERO_LINE = {"bias", "relative_bias", "median_bias", "identification_bias", "finite_sample_bias",
              "relative_error_model_se"}
_COVERAGE = {"coverage", "bias_eliminated_coverage"}
_TARGET_FREE = {"n_reps", "n_failed", "failure_share", "mean_estimate", "empirical_se", "model_se",
                "relative_error_model_se", "bias_eliminated_coverage", "power", "mad",
                "first_stage_f_q05", "first_stage_f_q50", "first_stage_f_q95"}



def dial_label(path: str) -> str:
    """The axis name of a dial, from its dotted grid path.

    List indices are read as the mediator (``site.compliance_mean[2]`` -> "..., mediator 2"),
    the path (``paths[1].mean`` -> "..., path 1") or the interaction
    (``interactions[1].coefficient`` -> "..., interaction 1"); a pattern of the catalogue
    (``site.correlations.path_*:effect_*``) labels every path it matches; other named
    correlations (``site.correlations.compliance_1:effect_2``) become ``corr(compliance_1, effect_2)``.
    An unknown path is its own label.

    Parameters
    ----------
    path : str
        A dotted grid path, as in ``[grid]``.

    Returns
    -------
    str
        The axis label.

    Examples
    --------
    >>> dial_label("person.within_site_correlation")
    'within-site correlation corr(Γ, Δ) [assumption vii.a]'
    """
    if path in DIAL_LABELS:
        return DIAL_LABELS[path]
    indices = [int(i) for i in re.findall(r"\[(\d+)\]", path)]
    base = re.sub(r"\[\d+\]", "", path)
    if base in DIAL_LABELS and indices:
        label = DIAL_LABELS[base]
        what = {"paths": "path", "interactions": "interaction"}.get(base.partition(".")[0], "mediator")
        head, sep, tail = label.partition(" [")
        return f"{head}, {what} {indices[0]}{sep}{tail}"
    for pattern, label in DIAL_LABELS.items():
        if "*" in pattern and fnmatch.fnmatchcase(path, pattern):
            return label.replace("{term}", path.rpartition(".")[2].replace(":", ", "))
    m = re.fullmatch(r"(site|person)\.correlations\.([A-Za-z0-9_]+):([A-Za-z0-9_]+)", path)
    if m:
        level = "between sites" if m.group(1) == "site" else "within sites"
        return f"corr({m.group(2)}, {m.group(3)}) {level}"
    return path


def _measure_label(measure: str, target: str) -> str:
    label = MEASURE_LABELS.get(measure, measure)
    t = TARGET_LABELS.get(target, target)
    if measure in _TARGET_FREE or not t:
        return label
    if measure in ("identification_bias", "finite_sample_bias"):
        return f"{label}, target {t}" if measure == "identification_bias" else label
    return f"{label} vs {t}"


def _style(estimator: str, order: Sequence[str] = ()) -> tuple[str, str, str]:
    if estimator in ESTIMATOR_STYLES:
        return ESTIMATOR_STYLES[estimator]
    extra = [e for e in order if e not in ESTIMATOR_STYLES]
    i = extra.index(estimator) if estimator in extra else 0
    return _SPARE_STYLES[i % len(_SPARE_STYLES)]


def _est_label(estimator: str) -> str:
    return ESTIMATOR_LABELS.get(estimator, estimator)


def _line_kwargs(estimator: str, order=()) -> dict:
    colour, marker, ls = _style(estimator, order)
    # the yellow of the palette is faint on white: a dark marker edge keeps it visible
    edge = "#444444" if colour == OKABE_ITO["yellow"] else colour
    return dict(color=colour, marker=marker, linestyle=ls, markeredgecolor=edge, markersize=6, linewidth=1.6,
                label=_est_label(estimator))


def _order_estimators(names: Iterable[str]) -> list[str]:
    from ..estimators import ESTIMATORS

    names = list(dict.fromkeys(names))
    known = [e for e in ESTIMATORS if e in names]
    return known + sorted(e for e in names if e not in known)
