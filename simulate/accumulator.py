r"""The streaming summary: performance measures from batches of tidy rows, bit-identical whatever the batches.

The summary stage reads the tidy rows (one per replication x estimator x mediator, the
columns of :data:`simulate.replicate.ROW_COLUMNS`) and reduces them, per grid cell x
estimator x mediator ("group") x target, to the measures of :mod:`simulate.measures`.

Successful replications: status ``"ok"`` and a finite estimate; every other row is a
failure, counted in the failure share and left out of every estimate-based measure.

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

The ``n_reps`` column of the long frame is the number of replications behind each value
(n, m, n_c or n_p of :mod:`simulate.measures`; all replications for the counts and the
failure share).

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
summation in replication order (:func:`simulate.kernels.summary_nb.neumaier_add`), the running
sum and compensation carried across batches.  A cell's stored values are reduced to its
measures, and freed, as soon as a row of a later cell arrives, so memory is bounded by one
cell.  Sums over stored values use :func:`math.fsum` (correctly rounded).  So the summary is
bit-identical however the rows are split into batches.

Groups whose every row has status ``not_applicable`` (the Wald estimator with several
mediators) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from . import measures as M
from .estimators.registry import DIRECT_EFFECT
from .kernels.summary_nb import neumaier_add
from .measures import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    FIXED_TARGETS,
    LONG_COLUMNS,
    POPULATION_TARGETS,
    QUANTILE_MCSE,
    ROW_TARGETS,
    Measure,
    Summary,
    SummaryError,
)

__all__ = ["SummaryAccumulator", "summarize", "TargetsArg", "NEEDED_COLUMNS", "JAR_COLUMNS", "SE_COVERAGE_COLUMNS"]

NEEDED_COLUMNS = ("cell", "rep", "estimator", "mediator", "estimate", "std_error", "conf_low", "conf_high",
                  "p_value", "status", "first_stage_f", "sample_ate", "sample_late")
"""The row columns the summary reads."""

AR_COLUMNS = ("ar_low", "ar_high", "ar_set_kind", "ar_cluster_low", "ar_cluster_high", "ar_cluster_set_kind",
              "ar_true_p", "ar_cluster_true_p", "balanced_design")
"""Optional row columns (issue 15): read when a batch has all of them, for the AR and balanced-design measures."""
_AR_SETS = ("ar", "ar_cluster")

JAR_COLUMNS = ("jar_low", "jar_high", "jar_set_kind", "jar_true_p")
"""Optional row columns (issue 15, the jackknife AR): read when a batch has all of them."""

SE_COVERAGE_COLUMNS = {"se_conventional": "coverage_conventional", "se_robust": "coverage_robust",
                       "se_hc1": "coverage_hc1", "se_cluster": "coverage_cluster",
                       "se_many_instrument": "coverage_many_instrument", "se_heterogeneity": "coverage_heterogeneity",
                       "se_heterogeneity_jive": "coverage_heterogeneity_jive",
                       "se_many_instrument_complete": "coverage_many_instrument_complete"}
"""Optional row columns (issue 15): every standard error, each read when a batch has it, and the measure of the
coverage of ``estimate -+ q se`` with q the primary interval's own quantile, ``(conf_high - conf_low) / (2
std_error)`` (the estimator's t reference), so that only the standard error differs from ``coverage``."""

CHECK_COLUMNS = {"nonlinearity_p": "nonlinearity_rejection", "quadratic_p": "quadratic_rejection",
                 "falsification_p": "falsification_rejection", "intercept_p": "intercept_rejection",
                 "overid_p": "overid_rejection"}
"""Optional row columns (issue 14): the design's own tests, each read when a batch has it, and the measure
(target ``none``) of its rejection rate at alpha, over the group's successful replications (as every measure)."""

TargetsArg = Mapping[int, Mapping] | Callable[[int], Mapping] | None


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
        neumaier_add(w, self.s1)
        neumaier_add(w * w, self.s2)

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
                 "conf_low", "conf_high", "deviation", "row_cover", "row_target", "model_variance", "p_n", "p_reject",
                 "ar_sets", "ar_reject", "balanced", "check_reject", "jar_sets", "jar_reject", "se_cover")

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
        self.ar_sets = {k: (_Buffer(), _Buffer(), _Buffer()) for k in _AR_SETS}  # low, high, kind index
        self.ar_reject = {k: [0, 0] for k in _AR_SETS}  # [finite p-values, rejections] at the true value
        self.balanced = [0, 0]  # [finite flags, balanced]
        self.check_reject = {c: [0, 0] for c in CHECK_COLUMNS}  # [finite p-values, rejections] of each check
        self.jar_sets = (_Buffer(), _Buffer(), _Buffer())  # jackknife AR set: low, high, kind index
        self.jar_reject = [0, 0]  # [finite p-values, rejections] of the jackknife AR at the true value
        self.se_cover: dict[str, tuple[_Buffer, _Buffer]] = {}  # SE column -> (estimate, half-width) of each interval


class _Cell:
    __slots__ = ("index", "groups", "f_values", "f_last_rep")

    def __init__(self, index: int):
        self.index = index
        self.groups: dict[tuple[str, str], _Group] = {}
        self.f_values: dict[str, _Buffer] = {}
        self.f_last_rep: dict[str, int] = {}


class _SortedRows:
    """A batch's columns permuted so that each group's rows are one slice, and per-row flags for the counts.

    ``flags`` has one row per count (not applicable, successful, and per per-replication target
    the usable and the covering intervals, then finite and rejecting p-values), summed per group
    by one ``numpy.add.reduceat``; a failed row's values enter no flag but the failure itself.
    """

    __slots__ = ("rep", "ok", "estimate", "conf_low", "conf_high", "row_target", "variance", "flags", "ar", "checks",
                 "jar", "halfwidth")

    def __init__(self, cols: dict, order: np.ndarray, rep: np.ndarray, alpha: float):
        def col(name):
            return cols[name].astype(np.float64)[order]

        self.rep = rep[order]
        status = _strings(cols["status"])[order]
        self.estimate = col("estimate")
        self.ok = (status == "ok") & np.isfinite(self.estimate)
        self.conf_low, self.conf_high = col("conf_low"), col("conf_high")
        self.row_target = [col(c) for c in ROW_TARGETS.values()]
        self.variance = np.square(col("std_error"))
        p = col("p_value")
        lo, hi, ok = self.conf_low, self.conf_high, self.ok
        finite_ci = np.isfinite(lo) & np.isfinite(hi)
        use = [ok & np.isfinite(th) & finite_ci for th in self.row_target]
        cover = [u & (lo <= th) & (th <= hi) for u, th in zip(use, self.row_target)]
        p_ok = ok & np.isfinite(p)
        self.flags = np.array([status == "not_applicable", ok, *use, *cover, p_ok, p_ok & (p < alpha)], dtype=np.int64)
        self.ar = _ar_arrays(cols, order, alpha) if all(c in cols for c in AR_COLUMNS) else None
        self.jar = _jar_arrays(cols, order, alpha) if all(c in cols for c in JAR_COLUMNS) else None
        with np.errstate(invalid="ignore", divide="ignore"):
            q = (self.conf_high - self.conf_low) / (2.0 * np.sqrt(self.variance))
        self.halfwidth = {c: q * col(c) for c in SE_COVERAGE_COLUMNS if c in cols}
        self.checks = {}
        for c in CHECK_COLUMNS:
            if c in cols:
                p = cols[c].astype(np.float64)[order]
                self.checks[c] = (np.isfinite(p), np.isfinite(p) & (p < alpha))


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
        statistics (default; see :mod:`simulate.measures`) or by the bootstrap.

    Notes
    -----
    Call :meth:`add` with each batch (a dict of numpy columns or a DataFrame with at least
    the columns cell, rep, estimator, mediator, estimate, std_error, conf_low, conf_high,
    p_value, status, first_stage_f, sample_ate, sample_late), then :meth:`result` (the long
    frame) or :meth:`summary` (a :class:`simulate.measures.Summary`).  Rows of a group must
    come in strictly increasing ``rep`` and cells in increasing order; a repeated or
    out-of-order replication raises :class:`SummaryError`.  Groups keep their order of first
    appearance.  See the module docstring for the memory.
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
        self._records: list[tuple] = []

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

    def _open_cell(self, c: int) -> _Cell:
        if self._cell is None or c != self._cell.index:
            if c <= self._last_cell:
                raise SummaryError(f"rows out of order: cell {c} after cell {self._last_cell}")
            self._close_cell()
            self._cell = _Cell(c)
            self._last_cell = c
        return self._cell

    def _add_cell_rows(self, c: int, cols: dict) -> None:
        cell = self._open_cell(c)
        rep = cols["rep"].astype(np.int64)
        e_codes, e_names = _factorize(cols["estimator"])
        m_codes, m_names = _factorize(cols["mediator"])
        self._add_first_stage(cell, rep, m_codes, m_names, cols["first_stage_f"].astype(np.float64))
        # groups in order of first appearance; one stable sort makes each group's rows a slice, in row order
        codes, keys = pd.factorize(e_codes * len(m_names) + m_codes, sort=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(keys)))]
        rows = _SortedRows(cols, order, rep, self.alpha)
        counts = np.add.reduceat(rows.flags, bounds[:-1], axis=1)  # every count of every group at once
        for k, key in enumerate(keys):
            e, m = e_names[key // len(m_names)], m_names[key % len(m_names)]
            g = cell.groups.get((e, m))
            if g is None:
                g = cell.groups[(e, m)] = _Group(e, m)
            lo, hi = bounds[k], bounds[k + 1]
            r = rows.rep[lo:hi]
            if r[0] <= g.last_rep or np.any(np.diff(r) <= 0):
                raise SummaryError(f"rows out of order or repeated: cell {c}, estimator {e}, mediator {m}: "
                                   f"replications must strictly increase")
            g.last_rep = int(r[-1])
            self._add_group_rows(g, rows, lo, hi, counts[:, k])

    @staticmethod
    def _add_first_stage(cell: _Cell, rep: np.ndarray, m_codes: np.ndarray, m_names: list[str],
                         fstat: np.ndarray) -> None:
        """First-stage F: once per (rep, mediator), from the first row of that rep."""
        for j, m in enumerate(m_names):
            idx = np.flatnonzero(m_codes == j)
            r = rep[idx]
            _, first = np.unique(r, return_index=True)
            first = np.sort(first)
            last = cell.f_last_rep.get(m, -1)
            keep = idx[first][r[first] > last]
            if len(keep):
                if np.any(np.diff(rep[keep]) <= 0):
                    raise SummaryError(f"rows out of order: cell {cell.index}, mediator {m}: replications must "
                                       "increase")
                buf = cell.f_values.setdefault(m, _Buffer())
                v = fstat[keep]
                buf.extend(v[np.isfinite(v)])
                cell.f_last_rep[m] = int(rep[keep[-1]])

    @staticmethod
    def _add_group_rows(g: _Group, rows: _SortedRows, lo: int, hi: int, counts: np.ndarray) -> None:
        """Rows ``lo:hi`` of the sorted batch, all of group ``g``: counts from ``counts``, values appended."""
        T = len(ROW_TARGETS)
        n_na, n_ok, cover, covered = counts[0], counts[1], counts[2:2 + T], counts[2 + T:2 + 2 * T]
        p_n, p_reject = counts[2 + 2 * T], counts[3 + 2 * T]
        g.n_rows += hi - lo
        g.n_not_applicable += int(n_na)
        g.n_failed += hi - lo - int(n_ok)
        ok = rows.ok[lo:hi]
        x = rows.estimate[lo:hi][ok]
        g.estimate.extend(x)
        g.conf_low.extend(rows.conf_low[lo:hi][ok])
        g.conf_high.extend(rows.conf_high[lo:hi][ok])
        for j, t in enumerate(ROW_TARGETS):
            th = rows.row_target[j][lo:hi][ok]
            fin = np.isfinite(th)
            g.deviation[t].extend(x[fin] - th[fin])
            g.row_target[t].add(th[fin])
            g.row_cover[t][0] += int(cover[j])
            g.row_cover[t][1] += int(covered[j])
        v = rows.variance[lo:hi][ok]
        g.model_variance.add(v[np.isfinite(v)])
        g.p_n += int(p_n)
        g.p_reject += int(p_reject)
        if rows.ar is not None and g.mediator != DIRECT_EFFECT:
            _add_ar_rows(g, rows.ar, lo, hi, rows.ok[lo:hi])
        if rows.jar is not None and g.mediator != DIRECT_EFFECT:
            _add_jar_rows(g, rows.jar, lo, hi, ok)
        for c, hw in rows.halfwidth.items():
            h = hw[lo:hi][ok]
            fin = np.isfinite(h)
            if fin.any():
                bx, bh = g.se_cover.setdefault(c, (_Buffer(), _Buffer()))
                bx.extend(x[fin])
                bh.extend(h[fin])
        for c, (fin, rej) in rows.checks.items():  # over the successful replications, like every measure
            g.check_reject[c][0] += int(fin[lo:hi][ok].sum())
            g.check_reject[c][1] += int(rej[lo:hi][ok].sum())

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
            head = (cell.index, g.estimator, g.mediator)
            self._records.extend((*head, t, name, float(v), float(s), int(n))
                                 for t, name, (v, s, n) in self._group_measures(g, targets.get((e, m)), f_stats.get(m)))

    def result(self) -> pd.DataFrame:
        """The long summary frame (columns :data:`simulate.measures.LONG_COLUMNS`); closes the current cell."""
        self._close_cell()
        frame = pd.DataFrame.from_records(self._records, columns=list(LONG_COLUMNS))
        frame["cell"] = frame["cell"].astype(np.int64)
        frame["n_reps"] = frame["n_reps"].astype(np.int64)
        frame["value"] = frame["value"].astype(np.float64)
        frame["mcse"] = frame["mcse"].astype(np.float64)
        return frame

    def summary(self, cells: Mapping | None = None) -> Summary:
        """The :class:`simulate.measures.Summary` (closes the current cell); ``cells`` the grid values per cell."""
        return Summary(self.result(), dict(cells or {}), self.alpha)

    # -- measures ------------------------------------------------------------
    def _f_quantiles(self, f: np.ndarray) -> list[Measure] | None:
        if len(f) == 0:
            return None
        return M.quantiles(f, self.quantile_mcse, resamples=self.resamples, seed=self.seed)

    def _group_measures(self, g: _Group, tg: Mapping | None, f_stats) -> list[tuple[str, str, Measure]]:
        """The (target, measure name, Measure) triples of one group, in output order."""
        opts = dict(resamples=self.resamples, seed=self.seed)
        x = g.estimate.values()
        mom = M.moments(x)
        n = mom.n
        out = [("none", "n_reps", M.count(g.n_rows, g.n_rows)), ("none", "n_failed", M.count(g.n_failed, g.n_rows)),
               ("none", "failure_share", M.share(g.n_failed, g.n_rows)),
               ("none", "mean_estimate", M.mean_estimate(mom)), ("none", "empirical_se", M.empirical_se(mom))]
        mean_v, var_v = g.model_variance.mean_var()
        m = g.model_variance.n
        out += [("none", "model_se", M.model_se(mean_v, var_v, m)),
                ("none", "relative_error_model_se", M.relative_error_model_se(mean_v, var_v, m, mom))]
        lo, hi = g.conf_low.values(), g.conf_high.values()
        fin = np.isfinite(lo) & np.isfinite(hi)
        lo_f, hi_f = lo[fin], hi[fin]
        out += [("none", "bias_eliminated_coverage", M.coverage(lo_f, hi_f, mom.mean)),
                ("none", "power", M.share(g.p_reject, g.p_n))]
        if n:
            med_x, mad, med_se = M.location_and_scale(x, self.quantile_mcse, **opts)
        else:
            med_x, mad, med_se = math.nan, Measure(math.nan, math.nan, 0), math.nan
        out.append(("none", "mad", mad))
        if f_stats is not None:
            out += [("none", name, q) for name, q in zip(("first_stage_f_q05", "first_stage_f_q50",
                                                          "first_stage_f_q95"), f_stats)]
        out += _ar_free_measures(g)
        out += [("none", CHECK_COLUMNS[c], M.share(r, n)) for c, (n, r) in g.check_reject.items() if n]
        out += self._fixed_target_measures(tg or {}, x, mom, lo_f, hi_f, med_x, med_se)
        out += _ar_target_measures(g, tg or {})
        out += _jar_target_measures(g, tg or {})
        out += _se_coverage_measures(g, tg or {})
        out += self._row_target_measures(g)
        return out

    @staticmethod
    def _fixed_target_measures(tg: Mapping, x, mom, lo_f, hi_f, med_x, med_se) -> list[tuple[str, str, Measure]]:
        out = []
        n = mom.n
        limit = float(tg.get("limit", math.nan))
        for t in FIXED_TARGETS:
            theta = float(tg.get(t, math.nan))
            if not math.isfinite(theta):
                continue
            out += [(t, "target_value", M.target_value(theta, n)), (t, "bias", M.bias(mom, theta))]
            if theta != 0:
                out.append((t, "relative_bias", M.relative_bias(mom, theta)))
            out += [(t, "rmse", M.rmse(x - theta)), (t, "coverage", M.coverage(lo_f, hi_f, theta)),
                    (t, "median_bias", Measure(med_x - theta, med_se, n))]
            if t in POPULATION_TARGETS and math.isfinite(limit):
                limit_se = _target_error(tg, "limit_se")  # the limit's simulation SE (0 when exact)
                ident_se = math.hypot(limit_se, _target_error(tg, f"{t}_se"))  # a target from site moments
                out += [(t, "identification_bias", M.identification_bias(limit, theta, n, ident_se)),
                        (t, "finite_sample_bias", M.finite_sample_bias(mom, limit, limit_se))]
        return out

    def _row_target_measures(self, g: _Group) -> list[tuple[str, str, Measure]]:
        out = []
        for t in ROW_TARGETS:
            d = g.deviation[t].values()
            n_d = len(d)
            if n_d == 0:
                continue
            th_mean, th_var = g.row_target[t].mean_var()
            n_rc, covered = g.row_cover[t]
            out += [(t, "target_value", Measure(th_mean, math.sqrt(th_var / n_d) if n_d > 1 else math.nan, n_d)),
                    (t, "bias", M.bias(M.moments(d), 0.0)), (t, "rmse", M.rmse(d)),
                    (t, "coverage", M.share(covered, n_rc)),
                    (t, "median_bias", Measure(float(np.median(d)), M.median_mcse(d, self.quantile_mcse,
                                                                                  resamples=self.resamples,
                                                                                  seed=self.seed), n_d))]
        return out


def _ar_arrays(cols: dict, order: np.ndarray, alpha: float) -> dict:
    """The AR columns of a sorted batch: per set (low, high, kind index or -1), rejections at the true value."""
    from .estimators.inference import AR_SET_KINDS

    code = {k: i for i, k in enumerate(AR_SET_KINDS)}
    out = {}
    for k in _AR_SETS:
        kinds = _strings(cols[f"{k}_set_kind"])[order]
        out[k] = (cols[f"{k}_low"].astype(np.float64)[order], cols[f"{k}_high"].astype(np.float64)[order],
                  np.array([code.get(str(v), -1) for v in kinds], np.float64))
        p = cols[f"{k}_true_p"].astype(np.float64)[order]
        out[f"{k}_p"] = (np.isfinite(p), np.isfinite(p) & (p < alpha))
    b = cols["balanced_design"].astype(np.float64)[order]
    out["balanced"] = (np.isfinite(b), b == 1.0)
    return out


def _add_ar_rows(g: _Group, ar: dict, lo: int, hi: int, ok: np.ndarray) -> None:
    """Rows ``lo:hi`` of one group, its successful ones (``ok``): AR sets (where computed), rejections, balance.

    Like every measure but the counts, over the replications where the group's estimator succeeded, so
    that the AR sets' coverage is read over the replications of the Wald intervals beside them.
    """
    for k in _AR_SETS:
        low, high, kind = (a[lo:hi][ok] for a in ar[k])
        keep = kind >= 0
        for buf, a in zip(g.ar_sets[k], (low, high, kind)):
            buf.extend(a[keep])
        fin, rej = ar[f"{k}_p"]
        g.ar_reject[k][0] += int(fin[lo:hi][ok].sum())
        g.ar_reject[k][1] += int(rej[lo:hi][ok].sum())
    fin, bal = ar["balanced"]
    g.balanced[0] += int(fin[lo:hi][ok].sum())
    g.balanced[1] += int(bal[lo:hi][ok].sum())


def _ar_free_measures(g: _Group) -> list[tuple[str, str, Measure]]:
    """The target-free AR measures of a group (none when the rows had no AR columns)."""
    out = []
    for k, name in zip(_AR_SETS, ("ar_true_rejection", "ar_cluster_true_rejection")):
        n, r = g.ar_reject[k]
        if n:
            out.append(("none", name, M.share(r, n)))
    if g.jar_reject[0]:
        out.append(("none", "jar_true_rejection", M.share(g.jar_reject[1], g.jar_reject[0])))
    if g.balanced[0]:
        out.append(("none", "balanced_design_share", M.share(g.balanced[1], g.balanced[0])))
    return out


def _ar_target_measures(g: _Group, tg: Mapping) -> list[tuple[str, str, Measure]]:
    """Coverage of the AR sets (P = 1) of each population target of the group."""
    out = []
    for t in POPULATION_TARGETS:
        theta = float(tg.get(t, math.nan))
        if not math.isfinite(theta):
            continue
        for k, name in zip(_AR_SETS, ("ar_coverage", "ar_cluster_coverage")):
            low, high, kind = (b.values() for b in g.ar_sets[k])
            if len(low):
                out.append((t, name, M.ar_set_coverage(low, high, kind, theta)))
    return out


def _jar_arrays(cols: dict, order: np.ndarray, alpha: float) -> dict:
    """The jackknife AR columns of a sorted batch: its set (low, high, kind index or -1), rejections at the truth."""
    from .estimators.inference import JAR_SET_KINDS

    code = {k: i for i, k in enumerate(JAR_SET_KINDS)}
    kinds = _strings(cols["jar_set_kind"])[order]
    p = cols["jar_true_p"].astype(np.float64)[order]
    return {"set": (cols["jar_low"].astype(np.float64)[order], cols["jar_high"].astype(np.float64)[order],
                    np.array([code.get(str(v), -1) for v in kinds], np.float64)),
            "p": (np.isfinite(p), np.isfinite(p) & (p < alpha))}


def _add_jar_rows(g: _Group, jar: dict, lo: int, hi: int, ok: np.ndarray) -> None:
    """Rows ``lo:hi`` of one group, its successful ones: the jackknife AR sets (where computed) and rejections."""
    low, high, kind = (a[lo:hi][ok] for a in jar["set"])
    keep = kind >= 0
    for buf, a in zip(g.jar_sets, (low, high, kind)):
        buf.extend(a[keep])
    fin, rej = jar["p"]
    g.jar_reject[0] += int(fin[lo:hi][ok].sum())
    g.jar_reject[1] += int(rej[lo:hi][ok].sum())


def _jar_target_measures(g: _Group, tg: Mapping) -> list[tuple[str, str, Measure]]:
    """Coverage of the jackknife AR sets (P = 1) of each population target.

    Not reported for a group where some set is ``several_pieces`` (a union of intervals the rows do not
    describe exactly); ``jar_true_rejection`` is then the measure to read (1 - coverage of the mean effect).
    """
    from .estimators.inference import JAR_SET_KINDS

    low, high, kind = (b.values() for b in g.jar_sets)
    if not len(low) or np.any(kind == JAR_SET_KINDS.index("several_pieces")):
        return []
    out = []
    for t in POPULATION_TARGETS:
        theta = float(tg.get(t, math.nan))
        if math.isfinite(theta):
            out.append((t, "jar_coverage", M.ar_set_coverage(low, high, kind, theta)))
    return out


def _se_coverage_measures(g: _Group, tg: Mapping) -> list[tuple[str, str, Measure]]:
    """``coverage_<se>`` of every standard error the group has, per fixed target (:data:`SE_COVERAGE_COLUMNS`)."""
    out = []
    for t in FIXED_TARGETS:
        theta = float(tg.get(t, math.nan))
        if not math.isfinite(theta):
            continue
        for c, name in SE_COVERAGE_COLUMNS.items():
            if c not in g.se_cover:
                continue
            x, h = (b.values() for b in g.se_cover[c])
            out.append((t, name, M.share(int(((x - h <= theta) & (theta <= x + h)).sum()), len(x))))
    return out


def _strings(values: np.ndarray) -> np.ndarray:
    """A column of names as an array whose elements compare equal to Python strings (object or unicode)."""
    return values if values.dtype.kind in "OU" else values.astype(str)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes (int64, in order of first appearance) and the names, as ``str``, of a column of names."""
    codes, uniques = pd.factorize(_strings(values), sort=False)
    if len(codes) and codes.min() < 0:  # a missing name: read it as its text, as astype(str) does
        codes, uniques = pd.factorize(values.astype(str), sort=False)
    return codes.astype(np.int64), [str(u) for u in uniques]


def _columns(batch) -> dict[str, np.ndarray]:
    if isinstance(batch, pd.DataFrame):
        missing = [c for c in NEEDED_COLUMNS if c not in batch.columns]
        get = lambda c: batch[c].to_numpy()  # noqa: E731
    elif isinstance(batch, Mapping):
        missing = [c for c in NEEDED_COLUMNS if c not in batch]
        get = lambda c: np.asarray(batch[c])  # noqa: E731
    else:
        raise SummaryError(f"a batch must be a dict of columns or a DataFrame, got {type(batch).__name__}")
    if missing:
        raise SummaryError(f"batch lacks the column(s) {', '.join(missing)}")
    cols = {c: get(c) for c in NEEDED_COLUMNS}
    have = batch.columns if isinstance(batch, pd.DataFrame) else batch
    if all(c in have for c in AR_COLUMNS):
        cols.update({c: get(c) for c in AR_COLUMNS})
    if all(c in have for c in JAR_COLUMNS):
        cols.update({c: get(c) for c in JAR_COLUMNS})
    cols.update({c: get(c) for c in SE_COVERAGE_COLUMNS if c in have})
    cols.update({c: get(c) for c in CHECK_COLUMNS if c in have})
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise SummaryError("batch columns have different lengths")
    return cols


def summarize(rows, targets: TargetsArg = None, *, alpha: float = ALPHA, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = BOOTSTRAP_SEED, quantile_mcse: str = "order") -> pd.DataFrame:
    """The long summary frame of rows (one batch, or an iterable of batches in (cell, rep) order).

    Parameters
    ----------
    rows : dict of arrays, pandas.DataFrame, or an iterable of them
        The tidy rows.
    targets, alpha, resamples, seed, quantile_mcse
        As in :class:`SummaryAccumulator`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`simulate.measures.LONG_COLUMNS` (no ``attrs``; see
        :meth:`SummaryAccumulator.summary` for a :class:`simulate.measures.Summary`).
    """
    acc = SummaryAccumulator(targets, alpha=alpha, resamples=resamples, seed=seed, quantile_mcse=quantile_mcse)
    if isinstance(rows, (pd.DataFrame, Mapping)):
        acc.add(rows)
    else:
        for batch in rows:
            acc.add(batch)
    return acc.result()


def _target_error(tg: Mapping, key: str) -> float:
    """A numerical error from a targets dict: 0 when absent (a truth stored before the errors were)."""
    v = tg.get(key, 0.0)
    return math.nan if v is None else float(v)
