r"""Performance measures as pure functions: each returns a :class:`Measure` (value, MCSE, n).

The measures are those of Morris, White & Crowther (2019), "Using simulation studies to
evaluate statistical methods", Statistics in Medicine 38:2074-2102 (their Table 6 gives the
Monte Carlo standard errors, MCSE).  :mod:`simulate.accumulator` applies them to the rows of
a run, group by group; they are equally usable on any array of estimates.

Notation: :math:`\hat\theta_i` is the estimate of replication i, i = 1..n over the
*successful* replications, :math:`\bar\theta = n^{-1}\sum_i \hat\theta_i`,
:math:`\widehat{SE}_i` the model standard error, :math:`[L_i, U_i]` the interval,
:math:`p_i` the p-value and :math:`\theta` the target.

Measures (value; MCSE)
----------------------
``n_reps``, ``n_failed``
    Replications in the group, and those that failed; MCSE NaN (counts, not estimates).
``failure_share``
    :math:`f = n_{failed}/n_{reps}`; :math:`\sqrt{f(1-f)/n_{reps}}`.
``mean_estimate``
    :math:`\bar\theta`; :math:`s/\sqrt n` with :math:`s^2 = (n-1)^{-1}\sum(\hat\theta_i-\bar\theta)^2`.
``empirical_se``
    :math:`\mathrm{EmpSE} = s`; :math:`\mathrm{EmpSE}/\sqrt{2(n-1)}`.
``model_se``
    :math:`\mathrm{ModSE} = \sqrt{m^{-1}\sum_i \widehat{SE}_i^2}` over the m successful
    replications with a finite SE; :math:`\sqrt{\widehat{Var}(\widehat{SE}^2)/(4 m\,\mathrm{ModSE}^2)}`
    with :math:`\widehat{Var}` the sample variance (divisor m - 1) of the :math:`\widehat{SE}_i^2`.
``relative_error_model_se``
    In percent, :math:`100(\mathrm{ModSE}/\mathrm{EmpSE} - 1)`;
    :math:`100(\mathrm{ModSE}/\mathrm{EmpSE})\sqrt{\widehat{Var}(\widehat{SE}^2)/(4 m\,\mathrm{ModSE}^4) + 1/(2(n-1))}`
    (Morris et al. Table 6; rsimsum writes 1/(2n - 1) in the last term, a negligible
    difference; 1/(2(n-1)) is the delta method applied to EmpSE's own MCSE).
``bias_eliminated_coverage``
    :math:`n_c^{-1}\sum_i 1\{L_i \le \bar\theta \le U_i\}` over the :math:`n_c` successful
    replications with a finite interval; :math:`\sqrt{c(1-c)/n_c}`.
``power``
    :math:`n_p^{-1}\sum_i 1\{p_i < \alpha\}` (alpha = 0.05 unless told) over the
    successful replications with a finite p-value; :math:`\sqrt{P(1-P)/n_p}`.  The test is
    of zero, whatever the target, hence target ``none``.
``mad``
    :math:`1.4826\,\mathrm{median}_i|\hat\theta_i - \mathrm{median}_j\hat\theta_j|`, which
    estimates the SD under normality and exists when moments do not (IV estimators with
    few instruments); MCSE from order statistics (below).
``first_stage_f_q05``, ``first_stage_f_q50``, ``first_stage_f_q95``
    Quantiles (numpy's default linear interpolation) of ``first_stage_f`` over every
    replication of the cell (failed or not: the F is a property of the data) with a
    finite F; MCSE from order statistics (below).  Absent for the direct-effect row (no F).
``target_value``
    :math:`\theta` (MCSE 0); for a per-replication target the mean of the
    :math:`\theta_i`, MCSE :math:`sd(\theta_i)/\sqrt n`.
``bias``
    :math:`\bar\theta - \theta`; :math:`s/\sqrt n`.  Per-replication target:
    :math:`\bar d`; :math:`sd(d)/\sqrt n`.
``relative_bias``
    In percent, :math:`100(\bar\theta-\theta)/\theta` for a fixed target with
    :math:`\theta \ne 0`; MCSE :math:`100\,s/(\sqrt n|\theta|)`.  Not reported for
    per-replication targets.
``rmse``
    :math:`\sqrt{\mathrm{MSE}}`, :math:`\mathrm{MSE} = n^{-1}\sum_i e_i^2` with
    :math:`e_i = \hat\theta_i - \theta` (or :math:`d_i`);
    :math:`\mathrm{MCSE}(\mathrm{MSE}) = \sqrt{\sum_i(e_i^2-\mathrm{MSE})^2/(n(n-1))}` and
    by the delta method :math:`\mathrm{MCSE}(\mathrm{RMSE}) = \mathrm{MCSE}(\mathrm{MSE})/(2\,\mathrm{RMSE})`.
``coverage``
    :math:`n_c^{-1}\sum_i 1\{L_i \le \theta \le U_i\}` (:math:`\theta_i` for a
    per-replication target); :math:`\sqrt{C(1-C)/n_c}`.
``median_bias``
    :math:`\mathrm{median}_i\hat\theta_i - \theta` (or :math:`\mathrm{median}_i d_i`); MCSE by
    order statistics (below; the same for every fixed target).
``identification_bias``
    For the population targets (ate, late, late_site_mean, compliance_weighted): limit - target, the bias an
    infinite study would still have because an assumption fails.  Its MCSE is the limit's own
    numerical error (``limit_se`` of the truth: 0 for a closed form or Gauss-Hermite
    quadrature, the simulation SE where the truth had to simulate sites; with the target's
    own error in quadrature for a compliance-weighted estimand computed from site moments).
``finite_sample_bias``
    :math:`\bar\theta - \mathrm{limit}`; :math:`\sqrt{s^2/n + \mathrm{limit\_se}^2}`: the part
    due to too few sites or persons.  ``bias = identification_bias + finite_sample_bias`` up to
    rounding.
``ar_coverage``, ``ar_cluster_coverage``
    Share of the replications' Anderson-Rubin confidence sets (P = 1; conventional and
    site-clustered, row columns ``ar_low``, ``ar_high``, ``ar_set_kind`` and their
    ``ar_cluster_`` kin) containing :math:`\theta` (:func:`ar_set_coverage`), over the
    replications where the set was computed; binomial MCSE.
``ar_true_rejection``, ``ar_cluster_true_rejection`` (target ``none``)
    Share of replications whose joint AR test of H0: beta = the scenario's mean effects
    rejects at alpha (row columns ``ar_true_p``, ``ar_cluster_true_p``; any P): the size
    where the AR's null holds (homogeneous effects, no direct effect).
``jar_true_rejection`` (target ``none``), ``jar_coverage``
    The jackknife AR (Mikusheva & Sun 2022; row columns ``jar_true_p``, ``jar_low``, ``jar_high``,
    ``jar_set_kind``): the share of replications whose one-sided 5% test of H0: beta = the scenario's mean
    effects rejects (any P; its size where its null holds), and the share of its P = 1 sets containing each
    population target.  ``jar_coverage`` is not reported for a group where some set has several pieces
    (``several_pieces``: a union the rows describe only by its hull); read ``1 - jar_true_rejection`` there.
``coverage_conventional``, ``coverage_robust``, ``coverage_hc1``, ``coverage_cluster``,
``coverage_many_instrument``, ``coverage_heterogeneity``, ``coverage_heterogeneity_jive``,
``coverage_many_instrument_complete`` (:data:`SE_COVERAGE_MEASURES`; fixed targets)
    Coverage of ``estimate -+ q se_<type>`` for every standard error the estimator has (row columns
    ``se_<type>``; a measure is absent where the estimator has no such SE), with q the quantile of the
    estimator's primary interval, ``(conf_high - conf_low) / (2 std_error)`` (its t reference), so that
    only the SE differs from ``coverage`` (which stays the primary SE's: ``coverage_<primary>`` equals
    it); binomial MCSE.  Long-format rows only: not in :data:`MEASURES`, so the wide and printed tables
    stay as they were; select them from :attr:`Summary.table` by name.
``nonlinearity_rejection``, ``quadratic_rejection``, ``falsification_rejection``, ``intercept_rejection``,
``overid_rejection`` (target ``none``)
    Share of replications whose test rejects at alpha (row columns ``nonlinearity_p``,
    ``quadratic_p``, ``falsification_p``, ``intercept_p``, ``overid_p``), over the group's
    successful replications where its p-value is finite; binomial MCSE: the size of the design's own checks where the
    assumptions hold, their power where one fails.
``balanced_design_share`` (target ``none``)
    Share of replications whose every site x arm cell has the same size: where it is 1,
    UJIVE and MBTSLS are the same k-class estimator and their rows equal by construction.

MCSE of the median bias, the MAD and the F quantiles.  By default from order statistics
(distribution-free, no resampling): the Maritz-Jarrett estimator, the SD of the sorted values
weighted by the beta weights W_i = I_{i/n}(m-1, n-m) - I_{(i-1)/n}(m-1, n-m), m = floor(qn + 0.5)
(Maritz & Jarrett 1978; Wilcox 2017, sec. 3.5.3).  The MAD's MCSE is 1.4826 times that of the
median of |x_i - median| (the median's own estimation error is negligible to first order for a
symmetric distribution).  With ``quantile_mcse="bootstrap"`` (the earlier default): the
standard error of :func:`scipy.stats.bootstrap` (the SD, divisor B - 1, of the statistic over
B = 200 resamples of the n stored values; :func:`bootstrap_mcse`), with ``rng = numpy.random.default_rng(20190101)``
(one generator per statistic): scipy draws resample b as row b of
``rng.integers(0, n, size=(B, n))``, the same indices as B draws of ``size=n`` one after the
other.  Deterministic, so the summary is a pure function of the rows.

Sums over values use :func:`math.fsum` (correctly rounded), so a measure does not depend on
how its values were gathered.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .errors import SimulateError

__all__ = [
    "ALPHA", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "MAD_SCALE", "F_QUANTILES", "QUANTILE_MCSE", "TARGETS",
    "FIXED_TARGETS", "ROW_TARGETS", "POPULATION_TARGETS", "TARGET_FREE_MEASURES", "TARGET_MEASURES", "MEASURES",
    "LONG_COLUMNS", "SummaryError", "Summary", "Measure", "Moments", "moments", "binomial_mcse", "count", "share",
    "mean_estimate",
    "empirical_se", "model_se", "relative_error_model_se", "bias", "relative_bias", "finite_sample_bias",
    "identification_bias", "target_value", "rmse", "coverage", "order_mcse", "bootstrap_mcse", "median_and_mad",
    "median_mcse", "location_and_scale", "quantiles", "AR_TARGET_FREE_MEASURES", "AR_TARGET_MEASURES",
    "ar_set_coverage", "rejection_rate", "CHECK_MEASURES", "SE_COVERAGE_MEASURES",
]

ALPHA = 0.05
"""Default significance level of the power (share of p-values below it)."""
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 20190101  # Morris, White & Crowther's year; any fixed value would do
MAD_SCALE = 1.4826  # 1 / Phi^{-1}(3/4): the MAD estimates the SD under normality
F_QUANTILES = (0.05, 0.50, 0.95)
QUANTILE_MCSE = ("order", "bootstrap")
"""How the MCSE of the median bias, MAD and F quantiles is computed (see the module docstring)."""

FIXED_TARGETS = ("ate", "late", "late_site_mean", "compliance_weighted", "limit")
ROW_TARGETS = {"sample": "sample_ate", "sample_late": "sample_late"}  # target -> row column
TARGETS = ("none", *FIXED_TARGETS, *ROW_TARGETS)
"""Target names, in output order (``none``: the target-free measures)."""
POPULATION_TARGETS = ("ate", "late", "late_site_mean", "compliance_weighted")

TARGET_FREE_MEASURES = ("n_reps", "n_failed", "failure_share", "mean_estimate", "empirical_se", "model_se",
                        "relative_error_model_se", "bias_eliminated_coverage", "power", "mad",
                        "first_stage_f_q05", "first_stage_f_q50", "first_stage_f_q95")
TARGET_MEASURES = ("target_value", "bias", "relative_bias", "rmse", "coverage", "median_bias",
                   "identification_bias", "finite_sample_bias")
# issue 15: the weak-instrument-robust tests beside the Wald intervals (see ar_set_coverage); dataset-level, the
# same under every estimator of a replication
AR_TARGET_FREE_MEASURES = ("ar_true_rejection", "ar_cluster_true_rejection", "jar_true_rejection",
                           "balanced_design_share")
AR_TARGET_MEASURES = ("ar_coverage", "ar_cluster_coverage", "jar_coverage")
SE_COVERAGE_MEASURES = ("coverage_conventional", "coverage_robust", "coverage_hc1", "coverage_cluster",
                        "coverage_many_instrument", "coverage_heterogeneity", "coverage_heterogeneity_jive",
                        "coverage_many_instrument_complete")
"""The coverage of every SE type (long-format rows, not in :data:`MEASURES`; see the module docstring)."""
# issue 14: how often the design's own tests reject at alpha (row columns nonlinearity_p, quadratic_p,
# falsification_p, intercept_p, overid_p; dataset-level, the same under every estimator of a replication)
CHECK_MEASURES = ("nonlinearity_rejection", "quadratic_rejection", "falsification_rejection", "intercept_rejection",
                  "overid_rejection")
TARGET_FREE_MEASURES = TARGET_FREE_MEASURES + AR_TARGET_FREE_MEASURES + CHECK_MEASURES
TARGET_MEASURES = TARGET_MEASURES + AR_TARGET_MEASURES
MEASURES = TARGET_FREE_MEASURES + TARGET_MEASURES


class SummaryError(SimulateError):
    """Invalid input to the summary (rows out of order, a bad run directory); one line."""


class Measure(NamedTuple):
    """One performance measure: its value, its Monte Carlo SE and the replications behind it."""

    value: float
    mcse: float
    n: int


class Moments(NamedTuple):
    """Count, mean and SD (divisor n - 1) of a sample (:func:`moments`)."""

    n: int
    mean: float
    sd: float


_NAN = math.nan


def moments(x: np.ndarray) -> Moments:
    """Mean and SD (divisor n - 1) by two passes of correctly rounded sums.

    Parameters
    ----------
    x : ndarray
        The values.

    Returns
    -------
    Moments
        NaN mean for n = 0, NaN SD for n < 2.
    """
    n = len(x)
    if n == 0:
        return Moments(0, _NAN, _NAN)
    mean = math.fsum(x.tolist()) / n  # tolist: the same floats, without a numpy scalar per element
    if n == 1:
        return Moments(1, mean, _NAN)
    return Moments(n, mean, math.sqrt(math.fsum(np.square(x - mean).tolist()) / (n - 1)))


def _se_mean(m: Moments) -> float:
    return m.sd / math.sqrt(m.n) if m.n > 1 else _NAN


def binomial_mcse(p: float, n: int) -> float:
    """sqrt(p (1 - p) / n), the MCSE of a share (coverage, power, failure share); NaN without data."""
    if not n or not math.isfinite(p):
        return _NAN
    return math.sqrt(p * (1 - p) / n)


def count(k: int, n: int) -> Measure:
    """A count (``n_reps``, ``n_failed``): no MCSE."""
    return Measure(k, _NAN, n)


def share(k: int, n: int) -> Measure:
    """The share k / n (failure share, coverage, power) with its binomial MCSE."""
    p = k / n if n else _NAN
    return Measure(p, binomial_mcse(p, n), n)


def rejection_rate(p_values, alpha: float = ALPHA) -> Measure:
    """Share of finite p-values below ``alpha`` (a test's size or power) with its binomial MCSE.

    Parameters
    ----------
    p_values : array_like
        One p-value per replication (NaN: the test could not be computed; left out).
    alpha : float
        The level.

    Returns
    -------
    Measure
        value = k / n over the n finite p-values, MCSE sqrt(value (1 - value) / n).
    """
    p = np.asarray(p_values, float)
    p = p[np.isfinite(p)]
    return share(int(np.count_nonzero(p < alpha)), len(p))


def mean_estimate(m: Moments) -> Measure:
    """The mean estimate; MCSE s / sqrt(n)."""
    return Measure(m.mean, _se_mean(m), m.n)


def empirical_se(m: Moments) -> Measure:
    """EmpSE = s; MCSE s / sqrt(2(n - 1))."""
    return Measure(m.sd, m.sd / math.sqrt(2 * (m.n - 1)) if m.n > 1 else _NAN, m.n)


def model_se(mean_v: float, var_v: float, m: int) -> Measure:
    r"""ModSE from the mean and variance of the m squared model SEs (NaN when m = 0).

    Parameters
    ----------
    mean_v, var_v : float
        Mean and variance (divisor m - 1) of the :math:`\widehat{SE}_i^2`.
    m : int
        How many.
    """
    if not m:
        return Measure(_NAN, _NAN, 0)
    return Measure(math.sqrt(mean_v), math.sqrt(var_v / (4 * m * mean_v)) if mean_v > 0 else _NAN, m)


def relative_error_model_se(mean_v: float, var_v: float, m: int, emp: Moments) -> Measure:
    """100 (ModSE / EmpSE - 1) with its delta-method MCSE.

    Parameters
    ----------
    mean_v, var_v, m
        As in :func:`model_se`.
    emp : Moments
        Of the estimates (EmpSE is ``emp.sd``).
    """
    if not m:
        return Measure(_NAN, _NAN, 0)
    n, sd = emp.n, emp.sd
    if n > 1 and sd > 0 and mean_v > 0:
        ratio = math.sqrt(mean_v) / sd
        mcse = 100 * ratio * math.sqrt(var_v / (4 * m * mean_v * mean_v) + 1 / (2 * (n - 1)))
        return Measure(100 * (ratio - 1), mcse, min(m, n))
    return Measure(_NAN, _NAN, min(m, n))


def target_value(theta: float, n: int) -> Measure:
    """A fixed target: exact (MCSE 0)."""
    return Measure(theta, 0.0, n)


def bias(m: Moments, theta: float) -> Measure:
    """Mean estimate - theta; MCSE s / sqrt(n).  With ``theta = 0`` and the deviations' moments, the mean deviation."""
    return Measure(m.mean - theta, _se_mean(m), m.n)


def relative_bias(m: Moments, theta: float) -> Measure:
    """100 (mean - theta) / theta; MCSE 100 s / (sqrt(n) |theta|).  theta must not be 0."""
    return Measure(100 * (m.mean - theta) / theta, 100 * _se_mean(m) / abs(theta), m.n)


def finite_sample_bias(m: Moments, limit: float, limit_se: float = 0.0) -> Measure:
    """Mean estimate - the estimator's large-sample limit; MCSE sqrt(s^2 / n + limit_se^2).

    Parameters
    ----------
    m : Moments
        The estimates' moments.
    limit : float
        The estimator's large-sample limit.
    limit_se : float
        The limit's own numerical error (its simulation SE where the truth simulated sites;
        0 for a closed form or quadrature), added in quadrature to the Monte Carlo SE.

    Returns
    -------
    Measure
    """
    return Measure(m.mean - limit, math.hypot(_se_mean(m), _limit_se(limit_se)), m.n)


def identification_bias(limit: float, theta: float, n: int, limit_se: float = 0.0) -> Measure:
    """Limit - target; MCSE the limit's numerical error (0 for a closed form or quadrature).

    Parameters
    ----------
    limit : float
        The estimator's large-sample limit.
    theta : float
        The target.
    n : int
        Replications (reported with the measure).
    limit_se : float
        The limit's simulation SE where the truth simulated sites, else 0; an unknown
        error (NaN) gives an MCSE of NaN.

    Returns
    -------
    Measure
    """
    return Measure(limit - theta, _limit_se(limit_se), n)


def _limit_se(se: float) -> float:
    """A limit's numerical error as a float (None, as JSON writes an unknown value, is NaN)."""
    return math.nan if se is None else abs(float(se))


def rmse(e: np.ndarray) -> Measure:
    """RMSE of the errors ``e`` (estimate - target) with the delta-method MCSE of Morris et al."""
    n = len(e)
    if n == 0:
        return Measure(_NAN, _NAN, 0)
    e2 = e * e
    mse = math.fsum(e2.tolist()) / n
    r = math.sqrt(mse)
    if n > 1 and r > 0:
        mcse_mse = math.sqrt(math.fsum(np.square(e2 - mse).tolist()) / (n * (n - 1)))
        return Measure(r, mcse_mse / (2 * r), n)
    return Measure(r, _NAN, n)


def coverage(low: np.ndarray, high: np.ndarray, theta) -> Measure:
    """Share of the finite intervals ``[low, high]`` that contain ``theta`` (closed; a number or an array)."""
    n_c = len(low)
    return share(int(((low <= theta) & (theta <= high)).sum()), n_c) if n_c else Measure(_NAN, _NAN, 0)


def ar_set_coverage(low: np.ndarray, high: np.ndarray, kind: np.ndarray, theta: float) -> Measure:
    """Share of Anderson-Rubin sets (P = 1) that contain ``theta``, binomial MCSE.

    A set is an interval, two rays, the whole line or empty (``kind``, an index into
    :data:`simulate.estimators.inference.AR_SET_KINDS`); the whole line always covers and an
    empty set never does, so an unbounded set is counted as it is, not dropped.

    Parameters
    ----------
    low, high : numpy.ndarray
        The sets' ends (:func:`simulate.estimators.inference.ar_sets`).
    kind : numpy.ndarray
        Their kinds, as indices into ``AR_SET_KINDS``.
    theta : float
        The target.

    Returns
    -------
    Measure
    """
    from .estimators.inference import AR_SET_KINDS, in_ar_set

    n = len(low)
    if not n:
        return Measure(_NAN, _NAN, 0)
    names = np.array(AR_SET_KINDS, dtype=object)[np.asarray(kind, np.int64)]
    return share(int(in_ar_set(theta, low, high, names).sum()), n)


def order_mcse(srt: np.ndarray, q: float) -> float:
    """MCSE of the q-quantile of sorted values ``srt``: the Maritz-Jarrett estimator.

    The quantile is estimated by the order statistic of rank m = floor(q n + 0.5) (clipped
    to 2..n-1); its standard error is the SD of the order statistics weighted by
    W_i = I_{i/n}(m - 1, n - m) - I_{(i-1)/n}(m - 1, n - m), I the regularized incomplete beta
    function (Maritz & Jarrett 1978, J. Am. Stat. Assoc. 73:194; Wilcox 2017, *Introduction to
    Robust Estimation*, sec. 3.5.3): distribution-free, smooth in the data, and no resampling.

    Parameters
    ----------
    srt : ndarray
        The values, sorted.
    q : float
        The quantile's level.

    Returns
    -------
    float
        NaN for fewer than three values.
    """
    n = len(srt)
    if n < 3:
        return _NAN
    m = min(max(int(math.floor(q * n + 0.5)), 2), n - 1)
    w = _maritz_jarrett_weights(n, m)
    c1 = float(np.dot(w, srt))
    return math.sqrt(max(float(np.dot(w, np.square(srt - c1))), 0.0))


@functools.lru_cache(maxsize=256)
def _maritz_jarrett_weights(n: int, m: int) -> np.ndarray:
    """W_i = I_{i/n}(m - 1, n - m) - I_{(i-1)/n}(m - 1, n - m), i = 1..n (read-only; the same for every group of n)."""
    from scipy import special

    grid = np.arange(n + 1) / n
    w = np.diff(special.betainc(m - 1, n - m, grid))
    w.flags.writeable = False
    return w


_RNG_KEYWORD = None


def _rng_keyword() -> str:
    """``rng`` (scipy >= 1.15) or ``random_state`` (earlier): how scipy.stats.bootstrap takes the generator."""
    global _RNG_KEYWORD
    if _RNG_KEYWORD is None:
        from scipy import stats

        _RNG_KEYWORD = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return _RNG_KEYWORD


def bootstrap_mcse(values: np.ndarray, statistic: Callable[..., np.ndarray], *,
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Bootstrap SE of a (vector-valued) statistic: :func:`scipy.stats.bootstrap`'s ``standard_error``.

    Parameters
    ----------
    values : ndarray
        The n values resampled.
    statistic : callable
        ``statistic(v, axis=-1)``, vectorised: returns shape ``(k, ...)`` for k outputs.
    resamples : int
        B, the resamples.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    ndarray, shape (k,)
        The SD (divisor B - 1) of each output over the resamples (scipy's ``standard_error``,
        summed one resample after the other); NaN when n < 2.
    """
    from scipy import stats

    n = len(values)
    k = len(np.atleast_1d(statistic(values, axis=-1))) if n else 1
    if n < 2:
        return np.full(k, _NAN)
    with warnings.catch_warnings():  # a degenerate resample distribution is no error here
        warnings.simplefilter("ignore")
        res = stats.bootstrap((values,), statistic, n_resamples=resamples, vectorized=True, axis=-1,
                              method="percentile", **{_rng_keyword(): np.random.default_rng(seed)})
    # scipy's standard_error is this SD summed along the other axis: equal to rounding (a few 1e-16
    # relative); one resample per row, as the hand-written bootstrap summed it, keeps every bit
    dist = np.ascontiguousarray(np.reshape(res.bootstrap_distribution, (-1, resamples)).T)
    return dist.std(axis=0, ddof=1)


def median_and_mad(v: np.ndarray, axis: int = -1) -> np.ndarray:
    """The median and the scaled MAD along ``axis`` (shape ``(2, ...)``): the bootstrap's statistic."""
    m = np.median(v, axis=axis, keepdims=True)
    return np.stack([np.squeeze(m, axis), MAD_SCALE * np.median(np.abs(v - m), axis=axis)])


def _median(v: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(v, axis=axis)[None]


def _f_quantiles(v: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.quantile(v, F_QUANTILES, axis=axis)


def median_mcse(x: np.ndarray, method: str = "order", *, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = BOOTSTRAP_SEED) -> float:
    """MCSE of the median of ``x`` (order statistics or the bootstrap, see the module docstring)."""
    if method == "order":
        return order_mcse(np.sort(x), 0.5)
    return float(bootstrap_mcse(x, _median, resamples=resamples, seed=seed)[0])


def location_and_scale(x: np.ndarray, method: str = "order", *, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, Measure, float]:
    """The median of ``x``, its scaled MAD (a :class:`Measure`) and the median's MCSE.

    Parameters
    ----------
    x : ndarray
        The estimates (at least one).
    method : {"order", "bootstrap"}
        How the two MCSEs are computed.
    resamples, seed
        Of the bootstrap.

    Returns
    -------
    median : float
    mad : Measure
    median_mcse : float
    """
    n = len(x)
    med = float(np.median(x))
    mad = MAD_SCALE * float(np.median(np.abs(x - med)))
    if method == "order":
        se = (order_mcse(np.sort(x), 0.5), MAD_SCALE * order_mcse(np.sort(np.abs(x - med)), 0.5))
    else:
        se = bootstrap_mcse(x, median_and_mad, resamples=resamples, seed=seed)
    return med, Measure(mad, float(se[1]), n), float(se[0])


def quantiles(f: np.ndarray, method: str = "order", *, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> list[Measure]:
    """The 5%, 50% and 95% quantiles of ``f`` (numpy's linear interpolation) with their MCSEs.

    Parameters
    ----------
    f : ndarray
        The values (at least one).
    method : {"order", "bootstrap"}
    resamples, seed
        Of the bootstrap.
    """
    q = np.quantile(f, F_QUANTILES)
    if method == "order":
        srt = np.sort(f)
        se = [order_mcse(srt, p) for p in F_QUANTILES]
    else:
        se = bootstrap_mcse(f, _f_quantiles, resamples=resamples, seed=seed)
    return [Measure(float(v), float(s), len(f)) for v, s in zip(q, se)]


LONG_COLUMNS = ("cell", "estimator", "mediator", "target", "measure", "value", "mcse", "n_reps")
"""Columns of the long (tidy) summary frame."""


@dataclass
class Summary:
    """The summary of a run: the long table of measures and what it was computed with.

    Attributes
    ----------
    table : pandas.DataFrame
        The long frame, columns :data:`LONG_COLUMNS`, one row per cell x estimator x
        mediator x target x measure.
    cells : dict
        ``{cell: [(grid path, value), ...]}``, the grid values of each cell (empty when unknown).
    alpha : float
        Significance level of the power.
    level : float or None
        Nominal confidence level of the run's intervals, when known (the manifest's ``level``).
    """

    table: pd.DataFrame
    cells: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)
    alpha: float = ALPHA
    level: float | None = None

    def frame(self) -> pd.DataFrame:
        """The long frame, the metadata in ``frame.attrs`` (``cells``, ``alpha``, ``level``) as older code reads it."""
        frame = self.table.copy()
        frame.attrs["cells"] = {int(c): list(v) for c, v in self.cells.items()}
        frame.attrs["alpha"] = self.alpha
        if self.level is not None:
            frame.attrs["level"] = self.level
        return frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Summary:
        """A Summary from a long frame and its ``attrs`` (what :meth:`frame` writes; missing keys get defaults)."""
        if isinstance(frame, Summary):
            return frame
        attrs = frame.attrs
        level = attrs.get("level")
        return cls(frame, {int(c): list(v) for c, v in (attrs.get("cells") or {}).items()},
                   float(attrs.get("alpha", ALPHA)), None if level is None else float(level))

    def select(self, targets) -> Summary:
        """Only the rows of these targets (an iterable of names); the metadata is kept."""
        table = self.table[self.table["target"].isin(list(targets))].reset_index(drop=True)
        return dataclasses.replace(self, table=table)
