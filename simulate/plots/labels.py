"""Names and styles shared by every figure: estimator labels and styles, axis names of dials, measures and targets.

``ESTIMATOR_LABELS`` and ``ESTIMATOR_STYLES`` are the registry's (:mod:`simulate.estimators.registry`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

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

DIAL_LABELS = {
    "n_sites": "number of sites K [finite sample; assumption viii when K < P]",
    "n_per_site": "persons per site n_s [finite sample]",
    "treatment.share": "share treated p_s",
    "treatment.arms": "treatment arms L + 1",
    "spillover.outcome": "outcome spillover on controls [assumption i, SUTVA]",
    "spillover.mediator": "mediator spillover on controls [assumption i, SUTVA]",
    "site.direct_effect_mean": "mean direct effect E[κ] [assumption ii, exclusion]",
    "site.direct_effect_sd": "between-site SD of the direct effect sd(κ) [assumption ii, exclusion]",
    "site.direct_effect_compliance_correlation": "corr(κ, γ) between sites [assumption ii, exclusion]",
    "mediators.curvature": "mediator curvature c in g(t) = t + c t(t−1) [assumption iii]",
    "mediators.outcome_curvature": "outcome curvature φ in h(m) = m + φ m² [assumption iv]",
    "paths.mean": "mean mediator-path coefficient [assumption v, parallel mediators]",
    "paths.site_sd": "between-site SD of the mediator path [assumption v, parallel mediators]",
    "paths.person_sd": "within-site SD of the mediator path [assumption v, parallel mediators]",
    "paths.effect_correlation": "corr(path coefficient, Δ_q) [assumption v, parallel mediators]",
    "selection.strength": "selection into treatment ξ (probit index) [assumption vi]",
    "person.within_site_correlation": "within-site correlation corr(Γ, Δ) [assumption vii.a]",
    "binary.defier_share": "share of defiers [assumption vii.b]",
    "site.compliance_sd": "between-site SD of compliance sd(γ) [assumption viii, rank]",
    "site.compliance_correlation": "corr(γ_p, γ_q) between sites [assumption viii, rank]",
    "site.compliance_effect_correlation": "between-site correlation corr(γ, δ) [assumption ix]",
    "site.nonlinear_dependence": "nonlinear dependence λ of δ on γ [assumption ix]",
    "site.compliance_mean": "mean compliance E[γ] [instrument strength]",
    "site.effect_mean": "mean effect E[δ] (the ATE)",
    "site.effect_sd": "between-site SD of the effect sd(δ)",
    "person.compliance_sd": "within-site SD of compliance sd(Γ)",
    "person.effect_sd": "within-site SD of the effect sd(Δ)",
    "person.confounding": "confounding corr(M(0), Y(0))",
    "binary.complier_share": "share of compliers",
    "binary.never_share": "share of never-takers",
    "binary.always_share": "share of always-takers",
    "binary.complier_share_site_sd": "between-site SD of the complier share",
    "binary.defier_effect_shift": "effect shift of defiers (Δ defier − Δ complier)",
    "binary.always_effect_shift": "effect shift of always-takers",
    "binary.never_effect_shift": "effect shift of never-takers",
}
"""Axis names of the dials, by dotted grid path without list indices (see :func:`dial_label`)."""

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
"""Axis names of the performance measures of :mod:`simulate.summary`."""

TARGET_LABELS = {
    "ate": "population ATE",
    "late": "population LATE",
    "compliance_weighted": "compliance-weighted estimand",
    "limit": "estimator's large-sample limit",
    "sample": "sample ATE",
    "sample_late": "sample LATE",
    "none": "",
}
"""Names of the targets of :mod:`simulate.summary`."""

_ZERO_LINE = {"bias", "relative_bias", "median_bias", "identification_bias", "finite_sample_bias",
              "relative_error_model_se"}
_COVERAGE = {"coverage", "bias_eliminated_coverage"}
_TARGET_FREE = {"n_reps", "n_failed", "failure_share", "mean_estimate", "empirical_se", "model_se",
                "relative_error_model_se", "bias_eliminated_coverage", "power", "mad",
                "first_stage_f_q05", "first_stage_f_q50", "first_stage_f_q95"}



def dial_label(path: str) -> str:
    """The axis name of a dial, from its dotted grid path.

    List indices are read as the mediator (``site.compliance_mean[2]`` -> "..., mediator 2")
    or the path (``paths[1].mean`` -> "..., path 1"); named correlations
    (``site.correlations.compliance_1:effect_2``) become ``corr(compliance_1, effect_2)``.
    An unknown path is its own label.

    Examples
    --------
    >>> dial_label("person.within_site_correlation")
    'within-site correlation corr(Γ, Δ) [assumption vii.a]'
    """
    if path in DIAL_LABELS:
        return DIAL_LABELS[path]
    m = re.fullmatch(r"(site|person)\.correlations\.([A-Za-z0-9_]+):([A-Za-z0-9_]+)", path)
    if m:
        level = "between sites" if m.group(1) == "site" else "within sites"
        return f"corr({m.group(2)}, {m.group(3)}) {level}"
    indices = [int(i) for i in re.findall(r"\[(\d+)\]", path)]
    base = re.sub(r"\[\d+\]", "", path)
    if base in DIAL_LABELS and indices:
        label = DIAL_LABELS[base]
        what = "path" if base.startswith("paths.") else "mediator"
        head, sep, tail = label.partition(" [")
        return f"{head}, {what} {indices[0]}{sep}{tail}"
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
