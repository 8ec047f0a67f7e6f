r"""Performance measures of a simulation run, each with its Monte Carlo standard error.

The summary stage reads the tidy rows (one per replication x estimator x mediator, the
columns of :data:`simulate.replicate.ROW_COLUMNS`) and reduces them, per grid cell x
estimator x mediator ("group") x target, to the performance measures of Morris, White &
Crowther (2019), "Using simulation studies to evaluate statistical methods", Statistics in
Medicine 38:2074-2102 (their Table 6 gives the Monte Carlo standard errors, MCSE).

Notation: in a group, :math:`\hat\theta_i` is the estimate of replication i, i = 1..n over
the *successful* replications (status ``"ok"`` and a finite estimate; every other row is a
failure, counted in the failure share and left out of every estimate-based measure),
:math:`\bar\theta = n^{-1}\sum_i \hat\theta_i`, :math:`\widehat{SE}_i` the model standard
error (column ``std_error``, the one behind the interval and the p-value),
:math:`[L_i, U_i]` the interval, :math:`p_i` the p-value and :math:`\theta` the target.

Targets
-------
``ate``, ``late``, ``compliance_weighted``
    The population estimands of :func:`simulate.truth.targets` (skipped where NaN, e.g.
    ``late`` for a continuous mediator).
``limit``
    The estimator's large-sample limit (skipped where NaN).
``sample``, ``sample_late``
    Per-replication targets: the replication's own ``sample_ate`` (``sample_late``), so
    that :math:`\theta_i` varies with i and the bias is the mean of
    :math:`d_i = \hat\theta_i - \theta_i` over the replications where :math:`\theta_i` is
    finite (none for the direct-effect row, which then has no sample target).
``none``
    The measures that do not depend on a target: counts, failure share, mean estimate,
    empirical and model SE, relative error of the model SE, bias-eliminated coverage,
    power (rejecting zero), MAD and the first-stage F quantiles.  They are reported once,
    under target ``none``.

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
    For the population targets (ate, late, compliance_weighted): limit - target, an exact
    number (MCSE 0): the bias an infinite study would still have because an assumption fails.
``finite_sample_bias``
    :math:`\bar\theta - \mathrm{limit}`; :math:`s/\sqrt n`: the part due to too few sites
    or persons.  ``bias = identification_bias + finite_sample_bias`` up to rounding.

MCSE of the median bias, the MAD and the F quantiles.  By default from order statistics
(distribution-free, no resampling): the Maritz-Jarrett estimator, the SD of the sorted values
weighted by the beta weights W_i = I_{i/n}(m-1, n-m) - I_{(i-1)/n}(m-1, n-m), m = floor(qn + 0.5)
(Maritz & Jarrett 1978; Wilcox 2017, sec. 3.5.3).  The MAD's MCSE is 1.4826 times that of the
median of |x_i - median| (the median's own estimation error is negligible to first order for a
symmetric distribution).  With ``quantile_mcse="bootstrap"`` (the earlier default):
the SD (divisor B - 1) of the statistic over
B = 200 resamples of the n stored values, resample b taking the indices
``rng.integers(0, n, size=n)`` with ``rng = numpy.random.default_rng(20190101)`` (one
generator per statistic, resamples drawn one after the other): deterministic, so the
summary is a pure function of the rows.

The ``n_reps`` column of the long frame is the number of replications behind each value
(n, m, n_c or n_p above; all replications for the counts and the failure share).

Streaming and exactness
-----------------------
:class:`SummaryAccumulator` takes batches in increasing (cell, rep) order.  For each group
it stores, over the successful replications, the estimate and the interval ends (24 bytes
per replication: the median, MAD and bootstrap need the estimates, and the
bias-eliminated coverage needs every interval against a mean that is known only at the
end), and the :math:`d_i` of each per-replication target that exists (8 bytes per
replication); per cell and mediator it stores the first-stage F (8 bytes per replication).
Everything else streams: counts as integers, and the sums behind the model SE and the
per-replication target's mean, :math:`\sum(v_i - v_1)` and :math:`\sum(v_i - v_1)^2` (shifted
by the first value, which keeps the variance well conditioned), by Neumaier's compensated
summation in replication order, the running sum and compensation carried across batches.
A cell's stored values are reduced to its measures, and freed, as soon as a row of a later
cell arrives, so memory is bounded by one cell.  Sums over stored values use
:func:`math.fsum` (correctly rounded).  So the summary is bit-identical however the rows
are split into batches.

Groups whose every row has status ``not_applicable`` (the Wald estimator with several
mediators) are left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import io
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from .errors import SimulateError
from .runner import part_files

__all__ = [
    "ALPHA", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "MAD_SCALE", "TARGETS", "TARGET_FREE_MEASURES",
    "TARGET_MEASURES", "LONG_COLUMNS", "SummaryError", "SummaryAccumulator", "summarize", "wide",
    "render", "to_csv", "to_markdown", "to_latex", "to_json", "truth_from_dict", "cell_targets",
    "part_files", "summarize_directory", "write_summary", "add_subcommand", "run",
]

ALPHA = 0.05
"""Default significance level of the power (share of p-values below it)."""
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 20190101  # Morris, White & Crowther's year; any fixed value would do
MAD_SCALE = 1.4826  # 1 / Phi^{-1}(3/4): the MAD estimates the SD under normality
F_QUANTILES = (0.05, 0.50, 0.95)
QUANTILE_MCSE = ("order", "bootstrap")
"""How the MCSE of the median bias, MAD and F quantiles is computed (see the module docstring)."""
Z95 = 1.959963984540054

FIXED_TARGETS = ("ate", "late", "compliance_weighted", "limit")
ROW_TARGETS = {"sample": "sample_ate", "sample_late": "sample_late"}  # target -> row column
TARGETS = ("none", *FIXED_TARGETS, *ROW_TARGETS)
"""Target names, in output order (``none``: the target-free measures)."""
_POPULATION = ("ate", "late", "compliance_weighted")

TARGET_FREE_MEASURES = ("n_reps", "n_failed", "failure_share", "mean_estimate", "empirical_se", "model_se",
                        "relative_error_model_se", "bias_eliminated_coverage", "power", "mad",
                        "first_stage_f_q05", "first_stage_f_q50", "first_stage_f_q95")
TARGET_MEASURES = ("target_value", "bias", "relative_bias", "rmse", "coverage", "median_bias",
                   "identification_bias", "finite_sample_bias")
MEASURES = TARGET_FREE_MEASURES + TARGET_MEASURES
LONG_COLUMNS = ("cell", "estimator", "mediator", "target", "measure", "value", "mcse", "n_reps")
"""Columns of the long (tidy) summary frame."""

_NEEDED = ("cell", "rep", "estimator", "mediator", "estimate", "std_error", "conf_low", "conf_high", "p_value",
           "status", "first_stage_f", "sample_ate", "sample_late")


class SummaryError(SimulateError):
    """Invalid input to the summary (rows out of order, a bad run directory); one line."""


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@njit(cache=True)
def _neumaier_add(values, state):  # pragma: no cover - compiled
    """Add ``values`` in order to the compensated sum ``state = [sum, compensation]`` (in place)."""
    s = state[0]
    c = state[1]
    for v in values:
        t = s + v
        if abs(s) >= abs(v):
            c += (s - t) + v
        else:
            c += (v - t) + s
        s = t
    state[0] = s
    state[1] = c


class _Buffer:
    """An append-only float64 array stored in fixed chunks of 4096 values.

    Memory is the values plus at most one partly filled chunk (no doubling slack), and
    appending never copies what is stored.
    """

    __slots__ = ("chunks", "current", "fill")
    CHUNK = 4096

    def __init__(self):
        self.chunks: list[np.ndarray] = []
        self.current = np.empty(0)
        self.fill = 0

    def __len__(self) -> int:
        return len(self.chunks) * self.CHUNK + self.fill

    def extend(self, values: np.ndarray) -> None:
        pos = 0
        k = len(values)
        while pos < k:
            if self.fill == len(self.current):
                if len(self.current):
                    self.chunks.append(self.current)
                self.current = np.empty(self.CHUNK)
                self.fill = 0
            take = min(k - pos, self.CHUNK - self.fill)
            self.current[self.fill:self.fill + take] = values[pos:pos + take]
            self.fill += take
            pos += take

    def values(self) -> np.ndarray:
        return np.concatenate([*self.chunks, self.current[:self.fill]])


class _Moments:
    """Streaming count, mean and variance of a sequence, exact to rounding and independent of batching.

    Keeps ``sum(v - v0)`` and ``sum((v - v0)^2)`` (v0 the first value: the shift keeps the
    variance well conditioned) as Neumaier compensated sums in sequence order.
    """

    __slots__ = ("n", "shift", "s1", "s2")

    def __init__(self):
        self.n = 0
        self.shift = math.nan
        self.s1 = np.zeros(2)  # [sum, compensation]
        self.s2 = np.zeros(2)

    def add(self, v: np.ndarray) -> None:
        if len(v) == 0:
            return
        if self.n == 0:
            self.shift = float(v[0])
        self.n += len(v)
        w = v - self.shift
        _neumaier_add(w, self.s1)
        _neumaier_add(w * w, self.s2)

    def mean_var(self) -> tuple[float, float]:
        """Mean, and variance with divisor n - 1 (NaN when n < 2)."""
        n = self.n
        if n == 0:
            return math.nan, math.nan
        s1 = self.s1[0] + self.s1[1]
        s2 = self.s2[0] + self.s2[1]
        var = max(s2 - s1 * s1 / n, 0.0) / (n - 1) if n > 1 else math.nan
        return self.shift + s1 / n, var


class _Group:
    """Running state of one cell x estimator x mediator."""

    __slots__ = ("estimator", "mediator", "last_rep", "n_rows", "n_failed", "n_not_applicable", "estimate",
                 "conf_low", "conf_high", "deviation", "row_cover", "row_target", "model_variance", "p_n", "p_reject")

    def __init__(self, estimator: str, mediator: str):
        self.estimator, self.mediator = estimator, mediator
        self.last_rep = -1
        self.n_rows = 0
        self.n_failed = 0
        self.n_not_applicable = 0
        self.estimate, self.conf_low, self.conf_high = _Buffer(), _Buffer(), _Buffer()
        self.deviation = {t: _Buffer() for t in ROW_TARGETS}  # d_i = estimate - theta_i
        self.row_cover = {t: [0, 0] for t in ROW_TARGETS}  # [n_c, covered]
        self.row_target = {t: _Moments() for t in ROW_TARGETS}  # the theta_i behind the d_i
        self.model_variance = _Moments()  # of SE_i^2
        self.p_n = 0
        self.p_reject = 0


class _Cell:
    __slots__ = ("index", "groups", "f_values", "f_last_rep")

    def __init__(self, index: int):
        self.index = index
        self.groups: dict[tuple[str, str], _Group] = {}
        self.f_values: dict[str, _Buffer] = {}
        self.f_last_rep: dict[str, int] = {}


# ---------------------------------------------------------------------------
# Streaming accumulator
# ---------------------------------------------------------------------------


TargetsArg = Mapping[int, Mapping] | Callable[[int], Mapping] | None


class SummaryAccumulator:
    """Performance measures from batches of tidy rows, streamed in (cell, rep) order.

    Parameters
    ----------
    targets : mapping or callable, optional
        ``targets[cell]`` (or ``targets(cell)``) is the dict of
        :func:`simulate.truth.targets`: ``(estimator, mediator) -> {"ate", "late",
        "compliance_weighted", "limit"}``.  Called once per cell, when the cell is complete.
        Without it (or for a group it lacks) only the target-free and per-replication
        targets are reported.
    alpha : float
        Significance level of the power.
    resamples : int
        Bootstrap resamples for the MCSE of the median bias, MAD and F quantiles
        (``quantile_mcse="bootstrap"``).
    seed : int
        Seed of the bootstrap.
    quantile_mcse : {"order", "bootstrap"}
        How the MCSE of the median bias, MAD and F quantiles is computed: from order
        statistics (default; see the module docstring) or by the bootstrap.

    Notes
    -----
    Call :meth:`add` with each batch (a dict of numpy columns or a DataFrame with at least
    the columns cell, rep, estimator, mediator, estimate, std_error, conf_low, conf_high,
    p_value, status, first_stage_f, sample_ate, sample_late), then :meth:`result`.  Rows of
    a group must come in strictly increasing ``rep`` and cells in increasing order; a
    repeated or out-of-order replication raises :class:`SummaryError`.  Groups keep their
    order of first appearance.  See the module docstring for the measures and the memory.
    """

    def __init__(self, targets: TargetsArg = None, *, alpha: float = ALPHA,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, quantile_mcse: str = "order"):
        if not 0 < alpha < 1:
            raise SummaryError(f"alpha must be in (0, 1), got {alpha}")
        if quantile_mcse not in QUANTILE_MCSE:
            raise SummaryError(f"quantile_mcse must be one of {', '.join(QUANTILE_MCSE)}, got {quantile_mcse!r}")
        self.quantile_mcse = quantile_mcse
        if resamples < 2:
            raise SummaryError(f"resamples must be at least 2, got {resamples}")
        self._targets = targets
        self.alpha = float(alpha)
        self.resamples = int(resamples)
        self.seed = int(seed)
        self._cell: _Cell | None = None
        self._last_cell = -1
        self._records: list[dict] = []

    # -- input ---------------------------------------------------------------
    def add(self, batch) -> None:
        """Add a batch of rows (dict of numpy columns, or a DataFrame)."""
        cols = _columns(batch)
        n = len(cols["cell"])
        if n == 0:
            return
        cell = cols["cell"].astype(np.int64)
        if np.any(np.diff(cell) < 0):
            raise SummaryError("rows out of order: cell indices must not decrease within a batch")
        cuts = np.flatnonzero(np.diff(cell)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n]):
            self._add_cell_rows(int(cell[lo]), {k: v[lo:hi] for k, v in cols.items()})

    def _add_cell_rows(self, c: int, cols: dict) -> None:
        if self._cell is None or c != self._cell.index:
            if c <= self._last_cell:
                raise SummaryError(f"rows out of order: cell {c} after cell {self._last_cell}")
            self._close_cell()
            self._cell = _Cell(c)
            self._last_cell = c
        cell = self._cell
        rep = cols["rep"].astype(np.int64)
        est = cols["estimator"].astype(str)
        med = cols["mediator"].astype(str)
        estimate = cols["estimate"].astype(np.float64)
        status = cols["status"].astype(str)
        ok = (status == "ok") & np.isfinite(estimate)
        low = cols["conf_low"].astype(np.float64)
        high = cols["conf_high"].astype(np.float64)
        se = cols["std_error"].astype(np.float64)
        pv = cols["p_value"].astype(np.float64)
        fstat = cols["first_stage_f"].astype(np.float64)
        row_target = {t: cols[col].astype(np.float64) for t, col in ROW_TARGETS.items()}

        codes, uniques = pd.factorize(pd.Series(np.char.add(np.char.add(est, "\x1f"), med)), sort=False)
        # first-stage F: once per (rep, mediator), from the first row of that rep
        for m in pd.unique(med):
            idx = np.flatnonzero(med == m)
            r = rep[idx]
            _, first = np.unique(r, return_index=True)
            first = np.sort(first)
            last = cell.f_last_rep.get(m, -1)
            keep = idx[first][r[first] > last]
            if len(keep):
                if np.any(np.diff(rep[keep]) <= 0):
                    raise SummaryError(f"rows out of order: cell {c}, mediator {m}: replications must increase")
                buf = cell.f_values.setdefault(m, _Buffer())
                f = fstat[keep]
                buf.extend(f[np.isfinite(f)])
                cell.f_last_rep[m] = int(rep[keep[-1]])
        for k, key in enumerate(uniques):
            e, m = key.split("\x1f", 1)
            g = cell.groups.get((e, m))
            if g is None:
                g = cell.groups[(e, m)] = _Group(e, m)
            idx = np.flatnonzero(codes == k)
            r = rep[idx]
            if r[0] <= g.last_rep or np.any(np.diff(r) <= 0):
                raise SummaryError(f"rows out of order or repeated: cell {c}, estimator {e}, mediator {m}: "
                                   f"replications must strictly increase")
            g.last_rep = int(r[-1])
            g.n_rows += len(idx)
            okk = idx[ok[idx]]
            g.n_failed += len(idx) - len(okk)
            g.n_not_applicable += int((status[idx] == "not_applicable").sum())
            x, lo, hi = estimate[okk], low[okk], high[okk]
            g.estimate.extend(x)
            g.conf_low.extend(lo)
            g.conf_high.extend(hi)
            finite_ci = np.isfinite(lo) & np.isfinite(hi)
            for t in ROW_TARGETS:
                th = row_target[t][okk]
                fin = np.isfinite(th)
                g.deviation[t].extend(x[fin] - th[fin])
                g.row_target[t].add(th[fin])
                use = fin & finite_ci
                g.row_cover[t][0] += int(use.sum())
                g.row_cover[t][1] += int(((lo[use] <= th[use]) & (th[use] <= hi[use])).sum())
            v = np.square(se[okk])
            g.model_variance.add(v[np.isfinite(v)])
            p = pv[okk]
            p = p[np.isfinite(p)]
            g.p_n += len(p)
            g.p_reject += int((p < self.alpha).sum())

    # -- output --------------------------------------------------------------
    def _cell_targets(self, c: int) -> Mapping:
        t = self._targets
        if t is None:
            return {}
        if callable(t):
            return t(c) or {}
        return t.get(c, {}) if hasattr(t, "get") else {}

    def _close_cell(self) -> None:
        cell = self._cell
        if cell is None:
            return
        self._cell = None
        targets = self._cell_targets(cell.index)
        f_stats = {m: self._f_quantiles(buf.values()) for m, buf in cell.f_values.items()}
        for (e, m), g in cell.groups.items():
            if g.n_not_applicable == g.n_rows:  # e.g. the Wald estimator with P > 1: no estimator to judge
                continue
            self._records.extend(self._group_records(cell.index, g, targets.get((e, m)), f_stats.get(m)))

    def result(self) -> pd.DataFrame:
        """The long summary frame (columns :data:`LONG_COLUMNS`); closes the current cell."""
        self._close_cell()
        frame = pd.DataFrame.from_records(self._records, columns=list(LONG_COLUMNS))
        frame["cell"] = frame["cell"].astype(np.int64)
        frame["n_reps"] = frame["n_reps"].astype(np.int64)
        frame["value"] = frame["value"].astype(np.float64)
        frame["mcse"] = frame["mcse"].astype(np.float64)
        return frame

    # -- measures ------------------------------------------------------------
    def _bootstrap(self, values: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """SD over the resamples of ``statistic`` (which returns a 1-d array); NaN when n < 2."""
        n = len(values)
        probe = np.atleast_1d(statistic(values)) if n else np.array([math.nan])
        if n < 2:
            return np.full(len(probe), math.nan)
        rng = np.random.default_rng(self.seed)
        out = np.empty((self.resamples, len(probe)))
        for b in range(self.resamples):
            out[b] = statistic(values[rng.integers(0, n, size=n)])
        return out.std(axis=0, ddof=1)

    def _f_quantiles(self, f: np.ndarray):
        if len(f) == 0:
            return None
        q = np.quantile(f, F_QUANTILES)
        if self.quantile_mcse == "order":
            srt = np.sort(f)
            return q, np.array([_order_mcse(srt, p) for p in F_QUANTILES]), len(f)
        return q, self._bootstrap(f, lambda v: np.quantile(v, F_QUANTILES)), len(f)

    def _group_records(self, c: int, g: _Group, tg: Mapping | None, f_stats) -> list[dict]:
        recs: list[dict] = []

        def put(target, measure, value, mcse, n):
            recs.append({"cell": c, "estimator": g.estimator, "mediator": g.mediator, "target": target,
                         "measure": measure, "value": float(value), "mcse": float(mcse), "n_reps": int(n)})

        x = g.estimate.values()
        n = len(x)
        mean, sd = _mean_sd(x)
        se_mean = sd / math.sqrt(n) if n > 1 else math.nan

        put("none", "n_reps", g.n_rows, math.nan, g.n_rows)
        put("none", "n_failed", g.n_failed, math.nan, g.n_rows)
        fs = g.n_failed / g.n_rows if g.n_rows else math.nan
        put("none", "failure_share", fs, _binomial_mcse(fs, g.n_rows), g.n_rows)
        put("none", "mean_estimate", mean, se_mean, n)
        put("none", "empirical_se", sd, sd / math.sqrt(2 * (n - 1)) if n > 1 else math.nan, n)

        m = g.model_variance.n
        if m:
            mean_v, var_v = g.model_variance.mean_var()
            modse = math.sqrt(mean_v)
            put("none", "model_se", modse, math.sqrt(var_v / (4 * m * mean_v)) if mean_v > 0 else math.nan, m)
            if n > 1 and sd > 0 and mean_v > 0:
                ratio = modse / sd
                put("none", "relative_error_model_se", 100 * (ratio - 1),
                    100 * ratio * math.sqrt(var_v / (4 * m * mean_v * mean_v) + 1 / (2 * (n - 1))), min(m, n))
            else:
                put("none", "relative_error_model_se", math.nan, math.nan, min(m, n))
        else:
            put("none", "model_se", math.nan, math.nan, 0)
            put("none", "relative_error_model_se", math.nan, math.nan, 0)

        lo, hi = g.conf_low.values(), g.conf_high.values()
        fin = np.isfinite(lo) & np.isfinite(hi)
        n_c = int(fin.sum())
        lo_f, hi_f = lo[fin], hi[fin]
        bec = float(((lo_f <= mean) & (mean <= hi_f)).sum()) / n_c if n_c else math.nan
        put("none", "bias_eliminated_coverage", bec, _binomial_mcse(bec, n_c), n_c)
        pw = g.p_reject / g.p_n if g.p_n else math.nan
        put("none", "power", pw, _binomial_mcse(pw, g.p_n), g.p_n)

        if n:
            med_x = float(np.median(x))
            mad = MAD_SCALE * float(np.median(np.abs(x - med_x)))
            if self.quantile_mcse == "order":
                boot = np.array([_order_mcse(np.sort(x), 0.5),
                                 MAD_SCALE * _order_mcse(np.sort(np.abs(x - med_x)), 0.5)])
            else:
                boot = self._bootstrap(x, _median_and_mad)
            put("none", "mad", mad, boot[1], n)
        else:
            med_x = math.nan
            boot = np.array([math.nan, math.nan])
            put("none", "mad", math.nan, math.nan, 0)
        if f_stats is not None:
            q, q_se, n_f = f_stats
            for name, v, s in zip(("first_stage_f_q05", "first_stage_f_q50", "first_stage_f_q95"), q, q_se):
                put("none", name, v, s, n_f)

        tg = tg or {}
        limit = float(tg.get("limit", math.nan))
        for t in FIXED_TARGETS:
            theta = float(tg.get(t, math.nan))
            if not math.isfinite(theta):
                continue
            put(t, "target_value", theta, 0.0, n)
            put(t, "bias", mean - theta, se_mean, n)
            if theta != 0:
                put(t, "relative_bias", 100 * (mean - theta) / theta, 100 * se_mean / abs(theta), n)
            self._mse_records(put, t, x - theta, n)
            cov = float(((lo_f <= theta) & (theta <= hi_f)).sum()) / n_c if n_c else math.nan
            put(t, "coverage", cov, _binomial_mcse(cov, n_c), n_c)
            put(t, "median_bias", med_x - theta, boot[0], n)
            if t in _POPULATION and math.isfinite(limit):
                put(t, "identification_bias", limit - theta, 0.0, n)
                put(t, "finite_sample_bias", mean - limit, se_mean, n)
        for t in ROW_TARGETS:
            d = g.deviation[t].values()
            n_d = len(d)
            if n_d == 0:
                continue
            th_mean, th_var = g.row_target[t].mean_var()
            put(t, "target_value", th_mean, math.sqrt(th_var / n_d) if n_d > 1 else math.nan, n_d)
            d_mean, d_sd = _mean_sd(d)
            d_se = d_sd / math.sqrt(n_d) if n_d > 1 else math.nan
            put(t, "bias", d_mean, d_se, n_d)
            self._mse_records(put, t, d, n_d)
            n_rc, covered = g.row_cover[t]
            cov = covered / n_rc if n_rc else math.nan
            put(t, "coverage", cov, _binomial_mcse(cov, n_rc), n_rc)
            d_mcse = (_order_mcse(np.sort(d), 0.5) if self.quantile_mcse == "order"
                      else self._bootstrap(d, _median)[0])
            put(t, "median_bias", float(np.median(d)), d_mcse, n_d)
        return recs

    @staticmethod
    def _mse_records(put, t, e: np.ndarray, n: int) -> None:
        if n == 0:
            put(t, "rmse", math.nan, math.nan, 0)
            return
        e2 = e * e
        mse = math.fsum(e2) / n
        rmse = math.sqrt(mse)
        if n > 1 and rmse > 0:
            mcse_mse = math.sqrt(math.fsum(np.square(e2 - mse)) / (n * (n - 1)))
            put(t, "rmse", rmse, mcse_mse / (2 * rmse), n)
        else:
            put(t, "rmse", rmse, math.nan, n)


def _order_mcse(srt: np.ndarray, q: float) -> float:
    """MCSE of the q-quantile of sorted values ``srt``: the Maritz-Jarrett estimator.

    The quantile is estimated by the order statistic of rank m = floor(q n + 0.5) (clipped
    to 2..n-1); its standard error is the SD of the order statistics weighted by
    W_i = I_{i/n}(m - 1, n - m) - I_{(i-1)/n}(m - 1, n - m), I the regularized incomplete beta
    function (Maritz & Jarrett 1978, J. Am. Stat. Assoc. 73:194; Wilcox 2017, *Introduction to
    Robust Estimation*, sec. 3.5.3): distribution-free, smooth in the data, and no resampling.
    """
    from scipy import special

    n = len(srt)
    if n < 3:
        return math.nan
    m = min(max(int(math.floor(q * n + 0.5)), 2), n - 1)
    grid = np.arange(n + 1) / n
    w = np.diff(special.betainc(m - 1, n - m, grid))
    c1 = float(np.dot(w, srt))
    return math.sqrt(max(float(np.dot(w, np.square(srt - c1))), 0.0))


def _median(v: np.ndarray) -> np.ndarray:
    return np.array([np.median(v)])


def _median_and_mad(v: np.ndarray) -> np.ndarray:
    m = np.median(v)
    return np.array([m, MAD_SCALE * np.median(np.abs(v - m))])


def _mean_sd(x: np.ndarray) -> tuple[float, float]:
    """Mean and SD (divisor n - 1) by two passes of correctly rounded sums."""
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(x) / n
    if n == 1:
        return mean, math.nan
    return mean, math.sqrt(math.fsum(np.square(x - mean)) / (n - 1))


def _binomial_mcse(p: float, n: int) -> float:
    """sqrt(p (1 - p) / n), the MCSE of a share (coverage, power, failure share)."""
    if not n or not math.isfinite(p):
        return math.nan
    return math.sqrt(p * (1 - p) / n)


def _columns(batch) -> dict[str, np.ndarray]:
    if isinstance(batch, pd.DataFrame):
        missing = [c for c in _NEEDED if c not in batch.columns]
        get = lambda c: batch[c].to_numpy()  # noqa: E731
    elif isinstance(batch, Mapping):
        missing = [c for c in _NEEDED if c not in batch]
        get = lambda c: np.asarray(batch[c])  # noqa: E731
    else:
        raise SummaryError(f"a batch must be a dict of columns or a DataFrame, got {type(batch).__name__}")
    if missing:
        raise SummaryError(f"batch lacks the column(s) {', '.join(missing)}")
    cols = {c: get(c) for c in _NEEDED}
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise SummaryError("batch columns have different lengths")
    return cols


def summarize(rows, targets: TargetsArg = None, *, alpha: float = ALPHA, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = BOOTSTRAP_SEED, quantile_mcse: str = "order") -> pd.DataFrame:
    """The long summary of rows (one batch, or an iterable of batches in (cell, rep) order).

    See :class:`SummaryAccumulator` for the arguments and the module docstring for the
    measures.
    """
    acc = SummaryAccumulator(targets, alpha=alpha, resamples=resamples, seed=seed, quantile_mcse=quantile_mcse)
    if isinstance(rows, (pd.DataFrame, Mapping)):
        acc.add(rows)
    else:
        for batch in rows:
            acc.add(batch)
    return acc.result()


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell x estimator x mediator x target; columns ``<measure>`` and ``<measure>_mcse``.

    Measures absent for a target are NaN; columns in :data:`MEASURES` order; rows in the
    order of the long frame.
    """
    keys = ["cell", "estimator", "mediator", "target"]
    if frame.empty:
        return pd.DataFrame(columns=keys)
    order = frame[keys].drop_duplicates()
    val = frame.pivot(index=keys, columns="measure", values="value")
    err = frame.pivot(index=keys, columns="measure", values="mcse")
    present = [m for m in MEASURES if m in val.columns]
    out = pd.DataFrame(index=val.index)
    for m in present:
        out[m] = val[m]
        out[f"{m}_mcse"] = err[m]
    out = out.reset_index()
    out = order.merge(out, on=keys, how="left")
    for c in ("n_reps", "n_failed"):
        if c in out:
            out[c] = out[c].astype("Int64")
    return out.reset_index(drop=True)


def _fmt_number(v: float, digits: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return ""
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-3 <= a < 1e5:
        decimals = max(0, digits - 1 - int(math.floor(math.log10(a))))
        return f"{v:.{decimals}f}"
    return f"{v:.{digits - 1}e}"


def _fmt_cell(value: float, mcse: float, measure: str) -> str:
    if measure in ("n_reps", "n_failed"):
        return "" if not math.isfinite(value) else str(int(value))
    s = _fmt_number(value)
    if s and mcse is not None and math.isfinite(mcse) and mcse > 0:
        s += f" ({_fmt_number(mcse, 2)})"
    return s


def _sections(frame: pd.DataFrame):
    """(target, table) pairs for printing: rows cell x estimator x mediator, columns the measures present."""
    w = wide(frame)
    for t in TARGETS:
        part = w[w["target"] == t]
        if part.empty:
            continue
        measures = [m for m in MEASURES if m in part.columns and part[m].notna().any()]
        rows = []
        for _, r in part.iterrows():
            rows.append([str(r["cell"]), r["estimator"], r["mediator"]]
                        + [_fmt_cell(_float(r[m]), _float(r.get(f"{m}_mcse")), m) for m in measures])
        yield t, ["cell", "estimator", "mediator", *measures], rows


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


_TITLES = {"none": "measures without a target", "ate": "target: population ATE", "late": "target: population LATE",
           "compliance_weighted": "target: compliance-weighted estimand", "limit": "target: the estimator's "
           "large-sample limit", "sample": "target: each replication's sample ATE",
           "sample_late": "target: each replication's sample LATE"}


def _cells_legend(frame: pd.DataFrame) -> list[str]:
    cells = frame.attrs.get("cells") or {}
    lines = []
    for c, values in sorted(cells.items()):
        if values:
            lines.append(f"cell {c}: " + ", ".join(f"{p} = {v}" for p, v in values))
    return lines


def to_markdown(frame: pd.DataFrame) -> str:
    """Pipe tables, one per target, cells as ``value (mcse)``."""
    out = [f"Performance measures: value (Monte Carlo SE). {_note(frame)}"]
    legend = _cells_legend(frame)
    if legend:
        out += [""] + [f"- {line}" for line in legend]
    for t, header, rows in _sections(frame):
        out += ["", f"### {_TITLES.get(t, t)}", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
        for r in rows:
            out.append("| " + " | ".join(s.replace("|", "\\|") for s in r) + " |")
    return "\n".join(out) + "\n"


def _note(frame: pd.DataFrame) -> str:
    return ("Relative bias and relative error of the model SE in percent; power rejects zero at "
            f"alpha = {frame.attrs.get('alpha', ALPHA)}.")


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(s: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(s))


def to_latex(frame: pd.DataFrame) -> str:
    """Booktabs tabulars, one per target (needs ``\\usepackage{booktabs}``); names escaped."""
    out = [f"% Performance measures: value (Monte Carlo SE). {_note(frame)}"]
    for line in _cells_legend(frame):
        out.append(f"% {line}")
    for t, header, rows in _sections(frame):
        out += ["", f"% {_TITLES.get(t, t)}", r"\begin{tabular}{lll" + "r" * (len(header) - 3) + "}", r"\toprule"]
        out.append(" & ".join(_latex_escape(h) for h in header) + r" \\")
        out.append(r"\midrule")
        for r in rows:
            out.append(" & ".join(_latex_escape(s) for s in r) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def to_csv(frame: pd.DataFrame) -> str:
    """The long frame as CSV (full precision; NaN as an empty field)."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.17g")
    return buf.getvalue()


def to_json(frame: pd.DataFrame) -> str:
    """The long frame as strict JSON records (NaN as null)."""
    recs = []
    for rec in frame.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            clean[k] = v
        recs.append(clean)
    return json.dumps(recs, indent=1, allow_nan=False)


def render(frame: pd.DataFrame, fmt: str) -> str:
    """``fmt`` in csv, markdown, latex, json."""
    try:
        return {"csv": to_csv, "markdown": to_markdown, "latex": to_latex, "json": to_json}[fmt](frame)
    except KeyError:
        raise SummaryError(f"unknown format {fmt!r}: choose csv, markdown, latex or json") from None


# ---------------------------------------------------------------------------
# Run directories
# ---------------------------------------------------------------------------


def truth_from_dict(d: Mapping):
    """A :class:`simulate.truth.Truth` from its ``to_dict()`` form (null read as NaN)."""
    truth_mod = importlib.import_module("simulate.truth")
    Truth = truth_mod.Truth

    def num(v):
        return math.nan if v is None else float(v)

    recs = list(d["mediators"])
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Truth):
        if f.name == "mediators":
            kwargs[f.name] = tuple(r["mediator"] for r in recs)
        elif recs and f.name in recs[0]:
            kwargs[f.name] = tuple(num(r.get(f.name)) for r in recs)
        elif f.name == "notes":
            kwargs[f.name] = tuple(d.get("notes") or ())
        elif f.name == "n_sites_simulated":
            kwargs[f.name] = int(d.get(f.name) or 0)
        elif f.name in d:
            kwargs[f.name] = num(d[f.name])
    return Truth(**kwargs)


def cell_targets(entry: Mapping, truth_sites: int | None = None) -> dict:
    """Targets of one manifest cell entry: from its cached ``truth``, else computed.

    Parameters
    ----------
    entry : mapping
        ``{"index", "scenario": <normalised table>, "truth": <Truth.to_dict()>, ...}``.
    truth_sites : int, optional
        Simulated sites when the truth must be computed (default
        :data:`simulate.truth.TRUTH_SITES`).
    """
    from .scenario import from_dict

    truth_mod = importlib.import_module("simulate.truth")
    sc = from_dict(dict(entry["scenario"]), source=f"manifest cell {entry.get('index', '?')}")
    if entry.get("truth"):
        tr = truth_from_dict(entry["truth"])
    else:
        tr = truth_mod.truth(sc, n_sites=truth_sites or truth_mod.TRUTH_SITES)
    return truth_mod.targets(tr, sc)


def _read_manifest(directory: Path) -> dict:
    if not directory.is_dir():
        raise SummaryError(f"{directory}: no such directory")
    path = directory / "manifest.json"
    if not path.is_file():
        raise SummaryError(f"{directory}: no manifest.json (not a run directory)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SummaryError(f"{path}: unreadable manifest: {str(exc).splitlines()[0]}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cells"), list):
        raise SummaryError(f"{path}: manifest has no list of cells")
    return manifest


def summarize_directory(directory: str | Path, *, alpha: float = ALPHA, truth_sites: int | None = None,
                        resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                        quantile_mcse: str = "order") -> pd.DataFrame:
    """The long summary of a run directory.

    Reads ``DIR/manifest.json`` and the part files ``DIR/parts/cell{c:05d}_rep{a:09d}-{b:09d}.parquet``
    one at a time in (cell, start) order (memory bounded by one cell, see the module
    docstring).  The targets of each cell come from the manifest's cached truth, or are
    computed.  ``frame.attrs["cells"]`` maps each cell to its grid values.

    Raises
    ------
    SummaryError
        One line: no such directory, no manifest, no part files, rows out of order.
    """
    import pyarrow.parquet as pq

    directory = Path(directory)
    manifest = _read_manifest(directory)
    parts = part_files(directory)
    if not parts:
        raise SummaryError(f"{directory}: no part files under {directory / 'parts'}")
    entries = {int(e.get("index", i)): e for i, e in enumerate(manifest["cells"])}
    missing = sorted({c for c, *_ in parts} - set(entries))
    if missing:
        raise SummaryError(f"{directory}: part files of cell {missing[0]}, which the manifest does not list")

    def targets(c: int):
        return cell_targets(entries[c], truth_sites)

    acc = SummaryAccumulator(targets, alpha=alpha, resamples=resamples, seed=seed, quantile_mcse=quantile_mcse)
    for _, _, _, path in parts:
        try:
            table = pq.read_table(path, columns=list(_NEEDED))
        except Exception as exc:  # a damaged or foreign file: one line
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SummaryError(f"{path}: unreadable part file: {why}") from None
        acc.add({k: table.column(k).to_numpy(zero_copy_only=False) for k in _NEEDED})
        del table
    frame = acc.result()
    frame.attrs["cells"] = {int(c): [tuple(v) for v in (entries[c].get("values") or [])] for c in entries}
    frame.attrs["alpha"] = alpha
    return frame


def write_summary(directory: str | Path, frame: pd.DataFrame | None = None, **kwargs) -> Path:
    """Write ``DIR/summary.csv`` (the long frame, atomically); returns its path.

    ``frame`` defaults to :func:`summarize_directory` ``(directory, **kwargs)``.
    """
    directory = Path(directory)
    if frame is None:
        frame = summarize_directory(directory, **kwargs)
    final = directory / "summary.csv"
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    tmp.write_text(to_csv(frame), encoding="utf-8")
    os.replace(tmp, final)
    return final


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Register ``summarize`` on an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "summarize", help="performance measures of a run directory, with Monte Carlo SEs",
        description="Performance measures (bias, empirical and model SE, RMSE, coverage, power, median bias, "
                    "MAD, failure share, first-stage F) per grid cell x estimator x mediator x target, each with "
                    "its Monte Carlo SE (Morris, White & Crowther 2019).")
    p.add_argument("directory", metavar="DIR", help="a run directory (with manifest.json and parts/)")
    p.add_argument("--format", choices=("csv", "markdown", "latex", "json"), default="markdown",
                   help="output format (default markdown; csv and json give the long tidy frame)")
    p.add_argument("--target", action="append", choices=TARGETS, metavar="TARGET",
                   help=f"keep only this target (repeatable; one of {', '.join(TARGETS)})")
    p.add_argument("--alpha", type=float, default=ALPHA, help="significance level of the power (default 0.05)")
    p.add_argument("--out", default="-", help="write to this file instead of standard output")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``simulate summarize``; returns the exit code (2 with one line on stderr for a user error)."""
    try:
        if not 0 < args.alpha < 1:
            raise SummaryError(f"--alpha must be in (0, 1), got {args.alpha}")
        frame = summarize_directory(args.directory, alpha=args.alpha)
        if args.target:
            attrs = dict(frame.attrs)
            frame = frame[frame["target"].isin(args.target)].reset_index(drop=True)
            frame.attrs.update(attrs)
        text = render(frame, args.format)
    except SummaryError as exc:
        print(f"simulate summarize: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback on the command line
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"simulate summarize: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 2
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0
