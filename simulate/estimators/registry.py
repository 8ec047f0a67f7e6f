"""The estimators of MSMM-IV, one :class:`EstimatorSpec` each: the single list every stage reads.

:data:`REGISTRY` holds one frozen spec per estimator, in the row order of the kernel
outputs.  Everything else that names estimators is derived from it:

* :data:`ESTIMATORS` (the names), :data:`PRIMARY_SE` (the standard error behind each
  interval and p-value) and :func:`primary_df` (the degrees of freedom of its t reference);
* :func:`estimators_for` (those that apply with P mediators);
* :data:`ESTIMATOR_LABELS` and :data:`ESTIMATOR_STYLES` (legend names; colour, marker and
  line style of the figures);
* :data:`LIMIT_OF` (the attribute of :class:`simulate.truth.Truth` holding each
  estimator's large-sample limit).

Adding an estimator
-------------------
1. The kernel: in ``simulate/kernels/codes_nb.py`` a row constant ``E_NEW`` (the next
   free index) and ``N_ESTIMATORS`` raised by one; the formula in a family module
   (``kclass_nb.py``, ``jive_nb.py``, ...) and its call in ``fit_nb.py``'s
   ``fit_from_statistics`` (and ``fit_persons`` for person-level standard errors)
   filling ``estimate[E_NEW]``, ``se[E_NEW]`` and ``status[E_NEW]``.
2. Here: one :class:`EstimatorSpec` appended to :data:`REGISTRY` with
   ``kernel_row=codes.E_NEW``: its label, primary standard error and why, degrees-of-freedom
   rule (:data:`DF_RULES`), large-sample limit (a ``Truth`` attribute, or None), plot
   style, and whether it needs a single mediator.

No other list of estimators exists: analysis tables and simulation rows
(:mod:`.rows`), intervals and p-values (:mod:`.inference`), the truths' targets
(``LIMIT_OF``) and the figures' legends and styles read this module (an import-time
check and a test make sure the kernel rows are 0..N-1 in registry order).  Two files of
code, then; besides them, the stored reference rows (``tests/reference_rows``) are
regenerated in their own commit, since every replication gains rows, and a test of the
new formula against an independent implementation belongs in ``tests/test_estimators.py``.
Roles that name one estimator stay where they are used: ``ols`` is the confounded
reference of the stress verdicts and reports, ``2sls`` the default of the heat map and
zip plot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..kernels import codes_nb as codes

__all__ = ["EstimatorSpec", "REGISTRY", "SPECS", "SE_TYPES", "NOT_PRIMARY", "STATUS_NAMES", "DF_RULES", "DIRECT_EFFECT",
           "ESTIMATORS", "PRIMARY_SE", "ESTIMATOR_LABELS", "ESTIMATOR_STYLES", "LIMIT_OF", "RENAMED_ESTIMATORS",
           "primary_df", "estimators_for", "spec", "unknown_estimator_message"]

SE_TYPES: tuple[str, ...] = (
    "conventional",
    "hc0",
    "hc1",
    "cluster",
    "many_instrument",
    "heterogeneity",
    "heterogeneity_jive",
    "many_instrument_complete",
    "effect_sd",
)
"""Standard-error kinds, in the column order of ``EstimateArrays.se`` (the kernels' ``SE_*``).

The last slot, ``effect_sd``, is not a standard error: the random-coefficient IV rows carry
their estimated cross-site SD of the effect there, so that every path (analysis, the fused
simulation kernel) carries it without a new kernel output; it is never a primary SE
(:data:`NOT_PRIMARY`)."""

NOT_PRIMARY: tuple[str, ...] = ("effect_sd",)
"""Slots of :data:`SE_TYPES` that no estimator may name as its primary standard error."""

STATUS_NAMES: dict[int, str] = {
    codes.STATUS_OK: "ok",
    codes.STATUS_SINGULAR: "singular",
    codes.STATUS_EMPTY_CELL: "empty_cell",
    codes.STATUS_TOO_FEW_SITES: "too_few_sites",
    codes.STATUS_NOT_APPLICABLE: "not_applicable",
    codes.STATUS_SINGLETON_CELL: "singleton_cell",
    codes.STATUS_NUMERICAL: "numerical",
    codes.STATUS_SITE_UNDERIDENTIFIED: "site_underidentified",
    codes.STATUS_WEAK_SITE_COMPLIANCE: "weak_site_compliance",
}
"""Status code -> name. Any status other than ``ok`` comes with NaN estimates."""

DIRECT_EFFECT = "direct_effect"
"""Mediator name of the between-site intercept row (the mean direct effect of one unit of T)."""

DF_RULES: dict[str, tuple[str, Callable[[int, int], float]]] = {
    "sites": ("K - 1: site-clustered standard error, one cluster per site", lambda K, P: K - 1),
    "sites_less_slopes": ("K - P: between-site regression through the origin, P slopes", lambda K, P: K - P),
    "sites_less_slopes_and_intercept": ("K - P - 1: between-site regression with an intercept",
                                        lambda K, P: K - P - 1),
    "normal": ("infinite: the normal reference", lambda K, P: np.inf),
}
"""Degrees-of-freedom rule name -> (meaning, function of (K sites, P mediators)).

A rule giving zero or fewer degrees of freedom gives NaN (no interval)."""

_CLUSTER_REASON = (
    "site-clustered: the effects vary between sites (delta_s, kappa_s), which makes the errors of persons in a "
    "site dependent; person-level HC0, Bekker or KCFGI standard errors then understate the sampling variance "
    "(they are still reported as columns). That holds for the heterogeneity-robust SEs too (Kolesar 2013: "
    "se_heterogeneity, and se_heterogeneity_jive for UJIVE) and for the complete KCFGI (2015) SE of "
    "bias-corrected 2SLS (se_many_instrument_complete): they allow heterogeneous effects and many instruments "
    "but treat persons as independent, so none of them replaces the site-clustered SE"
)
_RCIV_REASON = (
    "the sandwich over sites of the pooled mean (each site one observation, its weight fixed): it stays valid when "
    "the weights 1 / (v_s + tau^2) are wrong, unlike the model-based (sum w)^(-1/2) reported as se_conventional, "
    "which ignores the estimation of tau^2 and of v_s and under-covers with few sites; t with K - 1 df"
)
_RCIV_BIVARIATE_REASON = (
    "the delta method on the sample covariance over sites of the site ITT effects on Y and on M: the only SE, it "
    "includes the sampling and the effect variation alike (site-clustered by construction); t with K - 1 df"
)
_BETWEEN_REASON = (
    "site-level sandwich (HC0 over sites): the regression has one observation per site contrast, with "
    "heteroskedastic sampling and effect variation across sites"
)

# Okabe & Ito (2008) colours, as in simulate.plots.OKABE_ITO
_BLACK, _ORANGE, _SKY_BLUE, _BLUISH_GREEN = "#000000", "#E69F00", "#56B4E9", "#009E73"
_YELLOW, _BLUE, _VERMILLION, _REDDISH_PURPLE, _GREY = "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999"


@dataclass(frozen=True)
class EstimatorSpec:
    """Everything the stages need to know about one estimator.

    Attributes
    ----------
    name : str
        The estimator's name in rows, tables and scenario files.
    label : str
        Its readable name (figure legends).
    kernel_row : int
        Its row in the kernels' outputs (the ``E_*`` constant of ``kernels/codes_nb.py``).
    primary_se : str
        The standard error (one of :data:`SE_TYPES`) behind its confidence interval and p-value.
    primary_se_reason : str
        Why that standard error is the primary one.
    df_rule : str
        The degrees of freedom of the t reference of its interval and p-value (a key of
        :data:`DF_RULES`).
    limit : str or None
        The attribute of :class:`simulate.truth.Truth` holding its large-sample limit
        (None: not computed).
    style : tuple of str
        (colour, marker, line style) in every figure.
    description : str
        What it computes, in one or two sentences.
    single_mediator : bool
        Applies only with one mediator (its kernel row then has status ``not_applicable``).
    direct_effect_row : bool
        Its rows are followed by one more, mediator :data:`DIRECT_EFFECT`: the intercept
        (the mean direct effect), site sandwich standard error, the same degrees of freedom.
    """

    name: str
    label: str
    kernel_row: int
    primary_se: str
    primary_se_reason: str
    df_rule: str
    limit: str | None
    style: tuple[str, str, str]
    description: str
    single_mediator: bool = False
    direct_effect_row: bool = False

    def __post_init__(self):
        if self.primary_se not in SE_TYPES or self.primary_se in NOT_PRIMARY:
            raise ValueError(f"{self.name}: primary_se {self.primary_se!r} is not one of {SE_TYPES}")
        if self.df_rule not in DF_RULES:
            raise ValueError(f"{self.name}: df_rule {self.df_rule!r} is not one of {tuple(DF_RULES)}")

    def applies(self, n_mediators: int) -> bool:
        """Whether the estimator applies with ``n_mediators`` mediators.

        Parameters
        ----------
        n_mediators : int

        Returns
        -------
        bool
        """
        return not (self.single_mediator and n_mediators > 1)

    def df(self, n_sites: int, n_mediators: int) -> float:
        """Degrees of freedom of the t reference with K sites and P mediators (NaN when not positive).

        Parameters
        ----------
        n_sites, n_mediators : int

        Returns
        -------
        float
        """
        d = float(DF_RULES[self.df_rule][1](n_sites, n_mediators))
        return d if d > 0 else np.nan


REGISTRY: tuple[EstimatorSpec, ...] = (
    EstimatorSpec(
        name="ols", label="OLS (site FE, confounded)", kernel_row=codes.E_OLS,
        primary_se="cluster", primary_se_reason=_CLUSTER_REASON, df_rule="sites", limit=None,
        style=(_BLACK, "o", ":"),
        description="OLS of Y on the mediators with site fixed effects (the confounded baseline).",
    ),
    EstimatorSpec(
        name="2sls", label="2SLS", kernel_row=codes.E_TSLS,
        primary_se="cluster", primary_se_reason=_CLUSTER_REASON, df_rule="sites", limit="limit_2sls",
        style=(_BLUE, "s", "-"),
        description="Two-stage least squares with site fixed effects, instruments 1{site = s} 1{T = t}, t = 1..L.",
    ),
    EstimatorSpec(
        name="liml", label="LIML", kernel_row=codes.E_LIML,
        primary_se="cluster", primary_se_reason=_CLUSTER_REASON, df_rule="sites", limit="limit_liml",
        style=(_VERMILLION, "^", "-"),
        description="Limited-information maximum likelihood (k-class with kappa_LIML), the 2SLS instruments.",
    ),
    EstimatorSpec(
        name="fuller", label="Fuller(1)", kernel_row=codes.E_FULLER,
        primary_se="cluster", primary_se_reason=_CLUSTER_REASON, df_rule="sites", limit="limit_liml",
        style=(_REDDISH_PURPLE, "v", "--"),
        description="Fuller's k-class, kappa_LIML - alpha / (n - K A), alpha = 1 by default.",
    ),
    EstimatorSpec(
        name="ujive", label="UJIVE", kernel_row=codes.E_UJIVE,
        primary_se="cluster", primary_se_reason=_CLUSTER_REASON, df_rule="sites",
        limit="limit_2sls",  # the jackknife correction vanishes as n_s grows
        style=(_BLUISH_GREEN, "D", "-"),
        description="Kolesar (2013) unbiased jackknife IV.",
    ),
    EstimatorSpec(
        name="mbtsls", label="MBTSLS (KCFGI)", kernel_row=codes.E_MBTSLS,
        primary_se="cluster", primary_se_reason=_CLUSTER_REASON, df_rule="sites",
        limit="limit_2sls",  # kappa = 1 + KL/(n - KA) -> 1 as n_s grows
        style=(_ORANGE, "P", "--"),
        description="Kolesar, Chetty, Friedman, Glaeser & Imbens (2015) modified bias-corrected 2SLS (MBTSLS), "
                    "k-class with kappa = 1 + K L / (n - K A); not the Reardon, Unlu, Zhu & Bloom (2014) "
                    "compliance-effect bias correction.",
    ),
    EstimatorSpec(
        name="between_ols", label="between-site OLS", kernel_row=codes.E_BETWEEN_OLS,
        primary_se="hc0", primary_se_reason=_BETWEEN_REASON, df_rule="sites_less_slopes",
        limit="limit_between_ols", style=(_SKY_BLUE, "X", "-."),
        description="Unweighted regression through the origin of the site ITT contrasts on Y (ybar_st - ybar_s0) "
                    "on the site compliance contrasts (xbar_st - xbar_s0).",
    ),
    EstimatorSpec(
        name="between_precision", label="between-site, precision-weighted", kernel_row=codes.E_BETWEEN_PRECISION,
        primary_se="hc0", primary_se_reason=_BETWEEN_REASON, df_rule="sites_less_slopes", limit=None,
        style=(_GREY, "h", ":"),
        description="The between-site regression through the origin weighted by the inverse of the estimated "
                    "sampling covariance of each site's ITT contrasts on Y (cell variances).",
    ),
    EstimatorSpec(
        name="between_intercept", label="between-site with intercept", kernel_row=codes.E_BETWEEN_INTERCEPT,
        primary_se="hc0", primary_se_reason=_BETWEEN_REASON, df_rule="sites_less_slopes_and_intercept",
        limit="limit_between_intercept", style=(_YELLOW, "*", "-."), direct_effect_row=True,
        description="The unweighted between-site regression with the arm value t as an extra regressor, whose "
                    "coefficient estimates the mean direct effect (the row of mediator direct_effect).",
    ),
    EstimatorSpec(
        name="wald", label="pooled Wald", kernel_row=codes.E_WALD,
        primary_se="cluster", primary_se_reason=_CLUSTER_REASON, df_rule="sites", limit="limit_wald",
        style=(_BLACK, "d", "--"), single_mediator=True,
        description="Pooled Wald (P = 1 only): T's value as the single instrument, site fixed effects.",
    ),
    EstimatorSpec(
        name="rciv_meta", label="RCIV, site IV pooled (DL)", kernel_row=codes.E_RCIV_META,
        primary_se="cluster", primary_se_reason=_RCIV_REASON, df_rule="sites",
        limit=None,  # a weighted mean of the site ratios, the weights 1 / (v_s + tau^2) depending on n_s
        style=(_SKY_BLUE, "p", "-"),
        description="Raudenbush, Reardon & Nomi (2012) random-coefficient IV: each site's own IV estimate (2SLS "
                    "within the site, the Wald ratio for a binary treatment; needs at least P + 1 arms) with its "
                    "delta-method variance, pooled per mediator by DerSimonian-Laird into the cross-site mean and "
                    "the cross-site SD of the effect (column effect_sd). Fails (weak_site_compliance) when a "
                    "site's own first-stage F is below 3.84.",
    ),
    EstimatorSpec(
        name="rciv_bivariate", label="RCIV, ratio of mean ITTs", kernel_row=codes.E_RCIV_BIVARIATE,
        primary_se="cluster", primary_se_reason=_RCIV_BIVARIATE_REASON, df_rule="sites",
        limit=None,  # E[pi_Y] / E[pi_M] over sites; no Truth attribute holds it
        style=(_VERMILLION, "8", ":"), single_mediator=True,
        description="Raudenbush, Reardon & Nomi (2012) bivariate random-effects alternative (P = 1): the mean "
                    "over sites of the ITT effect on Y over that on M, and, assuming site compliance independent "
                    "of the site effect, the cross-site SD of the effect from the moments' between-site "
                    "covariance (column effect_sd).",
    ),
)
"""Every estimator, in the row order of the kernel outputs."""

if [s.kernel_row for s in REGISTRY] != list(range(codes.N_ESTIMATORS)):
    raise RuntimeError("simulate.estimators.registry: REGISTRY must list kernel rows 0..N_ESTIMATORS-1 in order")

SPECS: dict[str, EstimatorSpec] = {s.name: s for s in REGISTRY}
"""Estimator name -> its spec."""

ESTIMATORS: tuple[str, ...] = tuple(s.name for s in REGISTRY)
"""Estimator names, in the row order of the kernel outputs."""

PRIMARY_SE: dict[str, str] = {s.name: s.primary_se for s in REGISTRY}
"""The standard error behind each estimator's confidence interval and p-value.

Site-clustered for the person-level estimators, the site-level sandwich (HC0 over
sites) for the between-site regressions: in a multisite trial the effects vary
between sites (delta_s, kappa_s), which makes the errors of persons in a site
dependent; person-level HC0, Bekker or KCFGI standard errors then understate the
sampling variance (they are still reported as columns).  Critical values and
p-values use Student's t with K - 1 degrees of freedom (clustered) or K - p (between
sites, p coefficients), which keeps the intervals honest with few sites
(:attr:`EstimatorSpec.df_rule`)."""

ESTIMATOR_LABELS: dict[str, str] = {s.name: s.label for s in REGISTRY}
"""Legend names of the estimators of :data:`ESTIMATORS`."""

ESTIMATOR_STYLES: dict[str, tuple[str, str, str]] = {s.name: s.style for s in REGISTRY}
"""Colour, marker and line style of each estimator (the same in every figure)."""

LIMIT_OF: dict[str, str | None] = {s.name: s.limit for s in REGISTRY}
"""Which large-sample limit (a :class:`simulate.truth.Truth` attribute) each estimator tends to (None: not
computed)."""


RENAMED_ESTIMATORS: dict[str, str] = {"bias_corrected_2sls": "mbtsls"}
"""Old estimator name -> its name today.  An old name is refused wherever a user can type one
(:func:`unknown_estimator_message` names the new one): ``bias_corrected_2sls`` read as the Reardon, Unlu,
Zhu & Bloom (2014) compliance-effect correction, which it is not; it is KCFGI's MBTSLS."""


def unknown_estimator_message(names) -> str | None:
    """One line refusing the names of ``names`` that are not estimators (None when all are).

    A renamed estimator's old name (:data:`RENAMED_ESTIMATORS`) is refused with its new name.

    Parameters
    ----------
    names : iterable of str

    Returns
    -------
    str or None
    """
    names = list(names)
    renamed = [n for n in names if n in RENAMED_ESTIMATORS]
    if renamed:
        return "; ".join(f"estimator {n!r} was renamed {RENAMED_ESTIMATORS[n]!r}: use {RENAMED_ESTIMATORS[n]!r}"
                         for n in renamed)
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        return f"unknown estimator(s) {unknown}; choose from {list(ESTIMATORS)}"
    return None


def spec(name: str) -> EstimatorSpec:
    """The spec of estimator ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    EstimatorSpec

    Raises
    ------
    KeyError
        For an unknown name, listing the known ones.
    """
    try:
        return SPECS[name]
    except KeyError:
        if name in RENAMED_ESTIMATORS:
            raise KeyError(unknown_estimator_message([name])) from None
        raise KeyError(f"unknown estimator {name!r}; choose from {list(ESTIMATORS)}") from None


def primary_df(n_sites: int, n_mediators: int) -> np.ndarray:
    """Degrees of freedom of each estimator's t reference (:data:`ESTIMATORS` order).

    Parameters
    ----------
    n_sites, n_mediators : int
        K and P.

    Returns
    -------
    numpy.ndarray
        (E,) float64; NaN where a rule gives zero or fewer degrees of freedom.
    """
    K, P = n_sites, n_mediators
    out = np.empty(len(REGISTRY))
    for e, s in enumerate(REGISTRY):
        out[e] = DF_RULES[s.df_rule][1](K, P)
    return np.where(out > 0, out, np.nan)


def estimators_for(P: int) -> tuple[str, ...]:
    """The estimators that apply with P mediators (the pooled Wald estimator needs P = 1).

    Parameters
    ----------
    P : int
        Number of mediators.

    Returns
    -------
    tuple of str
        In :data:`ESTIMATORS` order.
    """
    return tuple(s.name for s in REGISTRY if s.applies(P))
