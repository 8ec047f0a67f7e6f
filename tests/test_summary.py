"""Performance measures and their Monte Carlo SEs (measures, accumulator, run_summary, tables).

Every measure is checked against the literal formula of Morris, White & Crowther (2019,
Stat Med 38:2074, Table 6) written here in plain numpy; the streaming accumulator must be
bit-identical whatever the batch boundaries; known answers for a correct normal model.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulate
from simulate import accumulator, cli, measures, run_summary, tables
from simulate.kernels import summary_nb
from simulate.replicate import ROW_COLUMNS, run_replications

truth_mod = importlib.import_module("simulate.truth")

THETA = 0.5
LIMIT = 0.56
GROUPS = [("2sls", "income"), ("liml", "income"), ("2sls", "hours")]


def make_rows(n_reps: int, seed: int = 1, *, fail_every: int = 0, cells=(0,), se_scale: float = 1.0,
              groups=GROUPS, theta: float = THETA) -> dict:
    """Synthetic tidy rows: estimates N(theta + 0.05, 1), SEs near 1, 95% Wald intervals.

    ``fail_every`` > 0 makes every such replication of the first group a failure (NaN estimate,
    status "singular"), and gives its other columns garbage that must not leak into measures.
    """
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ROW_COLUMNS}
    G = len(groups)
    for c in cells:
        n = n_reps * G
        est = rng.normal(theta + 0.05, 1.0, n)
        se = se_scale * rng.uniform(0.8, 1.2, n)
        sample = theta + rng.normal(0, 0.1, n)
        status = np.full(n, "ok", dtype=object)
        f = rng.gamma(4.0, 5.0, n_reps).repeat(G)  # one F per replication (same for every group here)
        p = rng.uniform(0, 1, n)
        if fail_every:
            bad = np.arange(0, n, G)[::fail_every]
            status[bad] = "singular"
            est[bad] = np.nan
            p[bad] = 0.0  # garbage: a failed row must not count as a rejection
        z = 1.959963984540054
        cols = {
            "cell": np.full(n, c, np.int32), "rep": np.repeat(np.arange(n_reps), G),
            "estimator": np.tile(np.array([g[0] for g in groups], dtype=object), n_reps),
            "mediator": np.tile(np.array([g[1] for g in groups], dtype=object), n_reps),
            "estimate": est, "std_error": se, "conf_low": est - z * se, "conf_high": est + z * se, "p_value": p,
            "status": status, "first_stage_f": f, "sample_ate": sample, "sample_late": np.full(n, np.nan),
        }
        for k in ROW_COLUMNS:
            out[k].append(cols.get(k, np.zeros(n)))
    return {k: np.concatenate(v) for k, v in out.items()}


def targets_for(groups=GROUPS, theta=THETA, limit=LIMIT):
    return {g: {"ate": theta, "late": math.nan, "compliance_weighted": theta + 0.01, "limit": limit} for g in groups}


def get(frame, estimator, mediator, target, measure, cell=0):
    r = frame[(frame.cell == cell) & (frame.estimator == estimator) & (frame.mediator == mediator)
              & (frame.target == target) & (frame.measure == measure)]
    assert len(r) == 1, (estimator, mediator, target, measure, len(r))
    r = r.iloc[0]
    return r["value"], r["mcse"], r["n_reps"]


def batches(rows: dict, size: int):
    n = len(rows["cell"])
    for a in range(0, n, size):
        yield {k: v[a:a + size] for k, v in rows.items()}


def boot_sd(values, stat, B=200, seed=20190101):
    """The documented bootstrap, literally: one generator, resamples one after the other."""
    rng = np.random.default_rng(seed)
    n = len(values)
    reps = [stat(values[rng.integers(0, n, size=n)]) for _ in range(B)]
    return np.std(np.array(reps), axis=0, ddof=1)


# ---------------------------------------------------------------------------
# every measure against its formula
# ---------------------------------------------------------------------------


def test_every_measure_and_mcse_matches_the_formula():
    rows = make_rows(300, seed=3, fail_every=7)
    rows["std_error"][5 * 3] = np.nan  # an ok row without an SE: out of the model SE only
    frame = accumulator.summarize(rows, {0: targets_for()}, quantile_mcse="bootstrap")
    sel = (rows["estimator"] == "2sls") & (rows["mediator"] == "income")
    ok = sel & (rows["status"] == "ok")
    x = rows["estimate"][ok]
    n = len(x)
    n_all = int(sel.sum())
    assert n_all == 300 and n == 300 - len(range(0, 300, 7))

    # counts and failure share
    assert get(frame, "2sls", "income", "none", "n_reps")[:1] == (300,)
    assert get(frame, "2sls", "income", "none", "n_failed")[0] == n_all - n
    f = (n_all - n) / n_all
    v, m, k = get(frame, "2sls", "income", "none", "failure_share")
    assert v == pytest.approx(f, rel=1e-15) and m == pytest.approx(np.sqrt(f * (1 - f) / n_all), rel=1e-12) and k == 300

    # mean, bias, empirical SE
    xbar = x.mean()
    s = np.sqrt(np.sum((x - xbar) ** 2) / (n - 1))
    v, m, k = get(frame, "2sls", "income", "none", "mean_estimate")
    assert v == pytest.approx(xbar, rel=1e-13) and m == pytest.approx(s / np.sqrt(n), rel=1e-12) and k == n
    v, m, _ = get(frame, "2sls", "income", "ate", "bias")
    assert v == pytest.approx(xbar - THETA, rel=1e-12)
    assert m == pytest.approx(np.sqrt(np.sum((x - xbar) ** 2) / (n * (n - 1))), rel=1e-12)
    v, m, _ = get(frame, "2sls", "income", "none", "empirical_se")
    assert v == pytest.approx(s, rel=1e-12) and m == pytest.approx(s / np.sqrt(2 * (n - 1)), rel=1e-12)
    v, m, _ = get(frame, "2sls", "income", "ate", "relative_bias")
    assert v == pytest.approx(100 * (xbar - THETA) / THETA, rel=1e-12)
    assert m == pytest.approx(100 * s / np.sqrt(n) / THETA, rel=1e-12)

    # model SE and its relative error (rows with a finite SE)
    se = rows["std_error"][ok]
    var_hat = se[np.isfinite(se)] ** 2
    mm = len(var_hat)
    assert mm == n - 1
    modse = np.sqrt(var_hat.mean())
    var_var = np.var(var_hat, ddof=1)
    v, m, k = get(frame, "2sls", "income", "none", "model_se")
    assert k == mm
    assert v == pytest.approx(modse, rel=1e-12)
    assert m == pytest.approx(np.sqrt(var_var / (4 * mm * modse ** 2)), rel=1e-9)
    v, m, _ = get(frame, "2sls", "income", "none", "relative_error_model_se")
    assert v == pytest.approx(100 * (modse / s - 1), rel=1e-11)
    mcse_relerr = 100 * (modse / s) * np.sqrt(var_var / (4 * mm * modse ** 4) + 1 / (2 * (n - 1)))
    assert m == pytest.approx(mcse_relerr, rel=1e-9)

    # MSE / RMSE
    mse = np.mean((x - THETA) ** 2)
    mcse_mse = np.sqrt(np.sum(((x - THETA) ** 2 - mse) ** 2) / (n * (n - 1)))
    v, m, _ = get(frame, "2sls", "income", "ate", "rmse")
    assert v == pytest.approx(np.sqrt(mse), rel=1e-12)
    assert m == pytest.approx(mcse_mse / (2 * np.sqrt(mse)), rel=1e-10)

    # coverage, bias-eliminated coverage, power
    lo, hi = rows["conf_low"][ok], rows["conf_high"][ok]
    cov = np.mean((lo <= THETA) & (THETA <= hi))
    v, m, _ = get(frame, "2sls", "income", "ate", "coverage")
    assert v == pytest.approx(cov, rel=1e-15) and m == pytest.approx(np.sqrt(cov * (1 - cov) / n), rel=1e-12)
    bec = np.mean((lo <= xbar) & (xbar <= hi))
    v, m, _ = get(frame, "2sls", "income", "none", "bias_eliminated_coverage")
    assert v == pytest.approx(bec, rel=1e-15) and m == pytest.approx(np.sqrt(bec * (1 - bec) / n), rel=1e-12)
    pw = np.mean(rows["p_value"][ok] < 0.05)
    v, m, k = get(frame, "2sls", "income", "none", "power")
    assert k == n  # the failed rows' p = 0 did not count
    assert v == pytest.approx(pw, rel=1e-15) and m == pytest.approx(np.sqrt(pw * (1 - pw) / n), rel=1e-12)

    # median bias and MAD with the documented bootstrap
    v, m, _ = get(frame, "2sls", "income", "ate", "median_bias")
    assert v == pytest.approx(np.median(x) - THETA, rel=1e-12)
    assert m == pytest.approx(boot_sd(x, np.median), rel=1e-12)
    v, m, _ = get(frame, "2sls", "income", "none", "mad")
    assert v == pytest.approx(1.4826 * np.median(np.abs(x - np.median(x))), rel=1e-12)
    assert m == pytest.approx(boot_sd(x, lambda y: 1.4826 * np.median(np.abs(y - np.median(y)))), rel=1e-12)

    # first-stage F quantiles over every replication (failed or not)
    fF = rows["first_stage_f"][sel]
    q = np.quantile(fF, [0.05, 0.5, 0.95])
    qs = boot_sd(fF, lambda y: np.quantile(y, [0.05, 0.5, 0.95]))
    for j, name in enumerate(("first_stage_f_q05", "first_stage_f_q50", "first_stage_f_q95")):
        v, m, k = get(frame, "2sls", "income", "none", name)
        assert (v, k) == (pytest.approx(q[j], rel=1e-14), 300)
        assert m == pytest.approx(qs[j], rel=1e-12)

    # identification and finite-sample bias
    v, m, _ = get(frame, "2sls", "income", "ate", "identification_bias")
    assert (v, m) == (pytest.approx(LIMIT - THETA, rel=1e-15), 0.0)
    v, m, _ = get(frame, "2sls", "income", "ate", "finite_sample_bias")
    assert v == pytest.approx(xbar - LIMIT, rel=1e-12) and m == pytest.approx(s / np.sqrt(n), rel=1e-12)
    assert get(frame, "2sls", "income", "limit", "bias")[0] == pytest.approx(xbar - LIMIT, rel=1e-12)

    # the per-replication target: d_i = estimate_i - sample_ate_i
    th = rows["sample_ate"][ok]
    d = x - th
    v, m, k = get(frame, "2sls", "income", "sample", "bias")
    assert k == n and v == pytest.approx(d.mean(), rel=1e-12)
    assert m == pytest.approx(d.std(ddof=1) / np.sqrt(n), rel=1e-12)
    v, m, _ = get(frame, "2sls", "income", "sample", "target_value")
    assert v == pytest.approx(th.mean(), rel=1e-13) and m == pytest.approx(th.std(ddof=1) / np.sqrt(n), rel=1e-9)
    msed = np.mean(d ** 2)
    v, m, _ = get(frame, "2sls", "income", "sample", "rmse")
    assert v == pytest.approx(np.sqrt(msed), rel=1e-12)
    assert m == pytest.approx(np.sqrt(np.sum((d ** 2 - msed) ** 2) / (n * (n - 1))) / (2 * np.sqrt(msed)), rel=1e-10)
    covd = np.mean((lo <= th) & (th <= hi))
    assert get(frame, "2sls", "income", "sample", "coverage")[0] == pytest.approx(covd, rel=1e-15)
    v, m, _ = get(frame, "2sls", "income", "sample", "median_bias")
    assert v == pytest.approx(np.median(d), rel=1e-12) and m == pytest.approx(boot_sd(d, np.median), rel=1e-12)


def test_targets_that_do_not_exist_are_skipped():
    rows = make_rows(50, seed=2)
    tg = targets_for()
    tg[("2sls", "hours")] = {"ate": 0.0, "late": math.nan, "compliance_weighted": math.nan, "limit": math.nan}
    frame = accumulator.summarize(rows, {0: tg})
    hours = frame[(frame.estimator == "2sls") & (frame.mediator == "hours")]
    assert set(hours.target) == {"none", "ate", "sample"}  # no late, no cw, no limit, no sample_late (all NaN)
    assert "relative_bias" not in set(hours[hours.target == "ate"].measure)  # theta = 0
    assert "identification_bias" not in set(hours.measure)  # no limit
    # without targets: only target-free and per-replication measures
    bare = accumulator.summarize(rows)
    assert set(bare.target) == {"none", "sample"}
    assert set(frame.target) == {"none", "ate", "compliance_weighted", "limit", "sample"}


# ---------------------------------------------------------------------------
# exactness under batching, order
# ---------------------------------------------------------------------------


def test_bit_identical_for_batch_sizes_1_7_and_all():
    rows = make_rows(120, seed=5, fail_every=5, cells=(0, 1, 3))
    tg = {c: targets_for() for c in (0, 1, 3)}
    whole = accumulator.summarize(rows, tg)
    assert set(whole.cell) == {0, 1, 3}
    for size in (1, 7):
        part = accumulator.summarize(batches(rows, size), tg)
        pd.testing.assert_frame_equal(whole, part, check_exact=True)
    # and as DataFrames
    df = pd.DataFrame(rows)
    pd.testing.assert_frame_equal(whole, accumulator.summarize((df.iloc[a:a + 13] for a in range(0, len(df), 13)), tg),
                                  check_exact=True)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=12), st.integers(0, 2**31 - 1))
def test_any_split_gives_the_same_summary(cuts, seed):
    rows = make_rows(60, seed=seed % 1000, fail_every=4, cells=(0, 2))
    n = len(rows["cell"])
    edges = sorted({0, n, *(min(c, n) for c in np.cumsum(cuts))})
    parts = [{k: v[a:b] for k, v in rows.items()} for a, b in zip(edges[:-1], edges[1:])]
    tg = {0: targets_for(), 2: targets_for()}
    a = accumulator.summarize(rows, tg, resamples=20)
    b = accumulator.summarize(parts, tg, resamples=20)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # shares are shares, MCSEs are not negative
    shares = a[a.measure.isin(["coverage", "bias_eliminated_coverage", "power", "failure_share"])]
    assert ((shares.value >= 0) & (shares.value <= 1)).all()
    assert (a.mcse.dropna() >= 0).all()


@pytest.mark.parametrize("values", [[1e16, 1.0, -1e16], [1.0, 1e16, -1e16], [3.0, 1e100, 1.0, -1e100]])
def test_neumaier_state_carries_across_batches(values):
    # naive float addition loses the small terms; Neumaier's (unlike Kahan's) keeps them in
    # either order, and the running state carries them from one piece to the next
    assert sum(values) != math.fsum(values)
    state = np.zeros(2)
    for v in values:
        summary_nb.neumaier_add(np.array([v]), state)
    assert state[0] + state[1] == math.fsum(values)


def test_intervals_are_closed_and_power_is_strict():
    # estimates 0 and 2 (mean 1); intervals [1, 3] and [-1, 1] both touch the mean and the target 1
    rows = make_rows(4, groups=[("2sls", "income")])
    rows.update(estimate=np.array([0.0, 2.0, 0.0, 2.0]), conf_low=np.array([-1.0, 1.0, -1.0, 1.0]),
                conf_high=np.array([1.0, 3.0, 1.0, 3.0]), p_value=np.array([0.01, 0.05, 0.2, 0.0499]))
    frame = accumulator.summarize(rows, {0: targets_for([("2sls", "income")], theta=1.0)})
    assert get(frame, "2sls", "income", "ate", "coverage")[0] == 1.0
    assert get(frame, "2sls", "income", "none", "bias_eliminated_coverage")[0] == 1.0
    assert get(frame, "2sls", "income", "none", "power")[0] == 0.5  # p = alpha is not a rejection


def test_rows_out_of_order_or_repeated_are_refused():
    rows = make_rows(10)
    acc = accumulator.SummaryAccumulator()
    acc.add({k: v[9:] for k, v in rows.items()})
    with pytest.raises(measures.SummaryError, match="out of order or repeated"):
        acc.add({k: v[:9] for k, v in rows.items()})
    acc = accumulator.SummaryAccumulator()
    acc.add(make_rows(5, cells=(2,)))
    with pytest.raises(measures.SummaryError, match="cell 1 after cell 2"):
        acc.add(make_rows(5, cells=(1,)))
    with pytest.raises(measures.SummaryError, match="lacks the column"):
        accumulator.summarize({"cell": np.zeros(1)})


# ---------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------


def test_failures_are_counted_and_excluded():
    rows = make_rows(200, seed=9, fail_every=4)
    # an ok status with a NaN estimate is a failure too
    rows["estimate"][3 * 1] = np.nan
    rows["conf_low"][3 * 1] = rows["conf_high"][3 * 1] = np.nan
    frame = accumulator.summarize(rows, {0: targets_for()})
    assert get(frame, "2sls", "income", "none", "n_failed")[0] == 50 + 1
    assert get(frame, "2sls", "income", "none", "failure_share")[0] == pytest.approx(51 / 200)
    assert get(frame, "liml", "income", "none", "n_failed")[0] == 0
    # the failed rows' garbage does not matter: measures equal those of the successful rows alone
    sel = np.ones(len(rows["cell"]), bool)
    drop = ((rows["estimator"] == "2sls") & (rows["mediator"] == "income")
            & ((rows["status"] != "ok") | ~np.isfinite(rows["estimate"])))
    sel[drop] = False
    clean = accumulator.summarize({k: v[sel] for k, v in rows.items()}, {0: targets_for()})
    a = frame[(frame.estimator == "2sls") & (frame.mediator == "income") & ~frame.measure.str.startswith("first_stage")
              & ~frame.measure.isin(["n_reps", "n_failed", "failure_share"])].reset_index(drop=True)
    b = clean[(clean.estimator == "2sls") & (clean.mediator == "income") & ~clean.measure.str.startswith("first_stage")
              & ~clean.measure.isin(["n_reps", "n_failed", "failure_share"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_all_failed_group_reports_nan_and_a_share_of_one():
    rows = make_rows(20, groups=[("ujive", "income")])
    rows["status"][:] = "singular"
    rows["estimate"][:] = np.nan
    frame = accumulator.summarize(rows, {0: targets_for([("ujive", "income")])})
    assert get(frame, "ujive", "income", "none", "failure_share")[:2] == (1.0, 0.0)
    assert math.isnan(get(frame, "ujive", "income", "ate", "bias")[0])
    assert get(frame, "ujive", "income", "ate", "bias")[2] == 0


def test_not_applicable_groups_are_left_out():
    rows = make_rows(10, groups=[("2sls", "income"), ("wald", "income")])
    wald = rows["estimator"] == "wald"
    rows["status"][wald] = "not_applicable"
    rows["estimate"][wald] = np.nan
    frame = accumulator.summarize(rows)
    assert set(frame.estimator) == {"2sls"}


# ---------------------------------------------------------------------------
# known answers
# ---------------------------------------------------------------------------


def test_correct_normal_model_covers_at_the_nominal_rate():
    n = 4000
    rows = make_rows(n, seed=11, groups=[("2sls", "income")], theta=THETA)
    # a correct model: estimate ~ N(theta, se_i^2) with the SE the model reports
    rng = np.random.default_rng(12)
    se = rng.uniform(0.5, 1.5, n)
    x = THETA + se * rng.standard_normal(n)
    z = 1.959963984540054
    rows.update(estimate=x, std_error=se, conf_low=x - z * se, conf_high=x + z * se,
                p_value=2 * (1 - _ndtr(np.abs(x / se))))
    frame = accumulator.summarize(rows, {0: targets_for([("2sls", "income")], limit=THETA)})
    v, m, _ = get(frame, "2sls", "income", "ate", "coverage")
    assert abs(v - 0.95) < 4 * m
    v, m, _ = get(frame, "2sls", "income", "none", "relative_error_model_se")
    assert abs(v) < 4 * m and m < 3  # percent
    v, m, _ = get(frame, "2sls", "income", "ate", "bias")
    assert abs(v) < 4 * m
    # the model SE targets sqrt(E[se^2]) = sqrt(13/12) for se ~ U(0.5, 1.5)
    v, m, _ = get(frame, "2sls", "income", "none", "model_se")
    assert abs(v - math.sqrt(13 / 12)) < 4 * m
    # power against zero: E[Phi(theta/se - z) + Phi(-theta/se - z)] over se ~ U(0.5, 1.5)
    g = np.linspace(0.5, 1.5, 20001)
    power = np.mean(_ndtr(THETA / g - z) + _ndtr(-THETA / g - z))
    v, m, _ = get(frame, "2sls", "income", "none", "power")
    assert abs(v - power) < 4 * m


def test_model_se_half_too_small_shows_minus_fifty_percent():
    n = 3000
    rows = make_rows(n, seed=13, groups=[("2sls", "income")])
    rng = np.random.default_rng(14)
    x = THETA + rng.standard_normal(n)
    rows.update(estimate=x, std_error=np.full(n, 0.5))
    frame = accumulator.summarize(rows)
    v, m, _ = get(frame, "2sls", "income", "none", "relative_error_model_se")
    assert abs(v + 50) < 4 * m
    assert get(frame, "2sls", "income", "none", "model_se")[:2] == (0.5, 0.0)


@pytest.mark.parametrize("method", ["order", "bootstrap"])
def test_mcse_of_median_and_mad_match_asymptotics(method):
    n = 3000
    rows = make_rows(n, seed=15, groups=[("2sls", "income")])
    rows["estimate"] = np.random.default_rng(16).standard_normal(n)
    frame = accumulator.summarize(rows, {0: targets_for([("2sls", "income")], theta=0.0)}, quantile_mcse=method)
    _, m, _ = get(frame, "2sls", "income", "ate", "median_bias")
    assert m == pytest.approx(math.sqrt(math.pi / 2) / math.sqrt(n), rel=0.2)  # 1 / (2 phi(0) sqrt n)
    v, m, _ = get(frame, "2sls", "income", "none", "mad")
    assert v == pytest.approx(1.0, abs=0.08)
    assert m == pytest.approx(1.1664 / math.sqrt(n), rel=0.2)  # sd of the scaled MAD: 37% efficiency
    # a heavy-tailed estimator (Cauchy): the MAD and median stay finite where the SD explodes
    rows["estimate"] = np.random.default_rng(17).standard_cauchy(n)
    frame = accumulator.summarize(rows, {0: targets_for([("2sls", "income")], theta=0.0)})
    assert get(frame, "2sls", "income", "none", "mad")[0] == pytest.approx(1.4826, rel=0.1)
    assert abs(get(frame, "2sls", "income", "ate", "median_bias")[0]) < 0.1


def test_order_statistic_mcse_is_the_maritz_jarrett_estimator():
    n = 401
    rows = make_rows(n, seed=31, groups=[("2sls", "income")])
    x = np.random.default_rng(32).exponential(size=n)
    rows["estimate"] = x
    frame = accumulator.summarize(rows, {0: targets_for([("2sls", "income")], theta=0.0)})
    from scipy import stats

    def maritz_jarrett(v):  # from the published formula, with scipy's beta distribution
        v = np.sort(v)
        m = int(math.floor(0.5 * n + 0.5))
        w = stats.beta.cdf(np.arange(1, n + 1) / n, m - 1, n - m) - stats.beta.cdf(np.arange(n) / n, m - 1, n - m)
        c1, c2 = np.sum(w * v), np.sum(w * v * v)
        return math.sqrt(c2 - c1 * c1)

    assert get(frame, "2sls", "income", "ate", "median_bias")[1] == pytest.approx(maritz_jarrett(x), rel=1e-9)
    want_mad = 1.4826 * maritz_jarrett(np.abs(x - np.median(x)))
    assert get(frame, "2sls", "income", "none", "mad")[1] == pytest.approx(want_mad, rel=1e-9)
    with pytest.raises(measures.SummaryError, match="quantile_mcse must be one of order, bootstrap"):
        accumulator.summarize(rows, quantile_mcse="jackknife")


def test_identification_plus_finite_sample_bias_is_total_bias():
    rows = make_rows(100, seed=21)
    frame = accumulator.summarize(rows, {0: targets_for(limit=0.7)})
    for est, med in GROUPS:
        for t in ("ate", "compliance_weighted"):
            ident = get(frame, est, med, t, "identification_bias")[0]
            fin = get(frame, est, med, t, "finite_sample_bias")[0]
            total = get(frame, est, med, t, "bias")[0]
            assert ident == pytest.approx(0.7 - (THETA if t == "ate" else THETA + 0.01), rel=1e-15)
            assert ident + fin == pytest.approx(total, abs=1e-15)
            assert get(frame, est, med, "limit", "bias")[0] == fin


# ---------------------------------------------------------------------------
# tables and renderers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_frame():
    rows = make_rows(40, seed=31, fail_every=6, groups=GROUPS + [("between_precision", "income")])
    frame = accumulator.summarize(rows, {0: targets_for(GROUPS + [("between_precision", "income")])})
    frame.attrs["cells"] = {0: [("site.effect_sd", 0.1)]}
    return frame


def test_wide_has_one_row_per_group_and_target(small_frame):
    w = tables.wide(small_frame)
    keys = small_frame[["cell", "estimator", "mediator", "target"]].drop_duplicates()
    assert len(w) == len(keys)
    r = w[(w.estimator == "2sls") & (w.mediator == "income") & (w.target == "ate")].iloc[0]
    v, m, _ = get(small_frame, "2sls", "income", "ate", "bias")
    assert (r["bias"], r["bias_mcse"]) == (v, m)
    assert math.isnan(r["power"])  # power lives on target "none"
    assert w[w.target == "none"]["n_reps"].tolist() == [40] * 4


def test_json_is_strict_with_nulls(small_frame):
    text = tables.to_json(small_frame)
    assert "NaN" not in text
    recs = json.loads(text)
    assert len(recs) == len(small_frame)
    n_reps = [r for r in recs if r["measure"] == "n_reps"][0]
    assert n_reps["mcse"] is None and n_reps["value"] == 40


def test_csv_reads_back_exactly(small_frame):
    back = pd.read_csv(io.StringIO(tables.to_csv(small_frame)))
    assert list(back.columns) == list(measures.LONG_COLUMNS)
    np.testing.assert_array_equal(back["value"].to_numpy(), small_frame["value"].to_numpy())
    np.testing.assert_array_equal(back["mcse"].to_numpy(), small_frame["mcse"].to_numpy())


def test_markdown_has_header_rows_and_value_mcse_cells(small_frame):
    md = tables.to_markdown(small_frame)
    lines = md.splitlines()
    headers = [i for i, line in enumerate(lines) if re.match(r"\| cell +\| estimator +\| mediator +\|", line)]
    assert len(headers) == len(set(small_frame.target))
    for i in headers:
        assert set(lines[i + 1].replace("|", "").replace("-", "").replace(":", "")) == set()
        ncol = lines[i].count("|")
        assert lines[i + 2].count("|") == ncol
    bias = get(small_frame, "2sls", "income", "ate", "bias")
    assert f"{tables._fmt_number(bias[0])} ({tables._fmt_number(bias[1], 2)})" in md
    assert "cell 0: site.effect_sd = 0.1" in md


def test_latex_is_one_booktabs_table_per_target_with_caption_and_label(small_frame):
    tex = tables.to_latex(small_frame)
    n = len(set(small_frame.target))
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == n
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == n
    assert tex.count(r"\caption{") == n and r"\label{tab:summary-ate}" in tex
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"between\_precision" in tex and "between_precision" not in tex
    body = [line for line in tex.splitlines() if line.endswith(r"\\")]
    header = body[0]
    assert all(line.count(" & ") == header.count(" & ") for line in body[:5])


def test_render_refuses_an_unknown_format(small_frame):
    with pytest.raises(measures.SummaryError, match="unknown format 'html'"):
        tables.render(small_frame, "html")


# ---------------------------------------------------------------------------
# real rows and run directories
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as the runner writes it: manifest (with cached truth) and two part files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sc = simulate.load("scenarios/baseline.toml")
    tr = truth_mod.truth(sc, n_sites=20_000)
    out = tmp_path_factory.mktemp("run")
    (out / "parts").mkdir()
    rows = []
    for a, b in ((0, 4), (4, 10)):
        cols = run_replications(sc, 0, 0, 7, range(a, b))
        pq.write_table(pa.table(cols), out / "parts" / f"cell00000_rep{a:09d}-{b:09d}.parquet")
        rows.append(cols)
    truth_json = json.loads(json.dumps(_nan_to_none(tr.to_dict()), allow_nan=False))
    manifest = {"seed": 7, "cells": [{"index": 0, "hash": sc.hash, "values": [], "scenario": sc.to_dict(),
                                      "truth": truth_json}]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out, sc, tr, rows


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def test_truth_round_trips_through_the_manifest(run_dir):
    out, sc, tr, _ = run_dir
    back = run_summary.truth_from_dict(json.loads((out / "manifest.json").read_text())["cells"][0]["truth"])
    assert back.mediators == tr.mediators
    for f in ("ate", "late", "compliance_weighted", "limit_2sls", "limit_liml"):
        np.testing.assert_array_equal(np.array(getattr(back, f)), np.array(getattr(tr, f)))
    assert back.limit_between_intercept_constant == tr.limit_between_intercept_constant
    assert run_summary.cell_targets(json.loads((out / "manifest.json").read_text())["cells"][0]).keys() == \
        truth_mod.targets(tr, sc).keys()


def test_directory_summary_equals_the_in_memory_one(run_dir):
    out, sc, tr, rows = run_dir
    frame = run_summary.summarize_directory(out)
    direct = accumulator.summarize(rows, {0: truth_mod.targets(tr, sc)})
    pd.testing.assert_frame_equal(frame, direct, check_exact=True)
    # baseline: two mediators, no Wald (not applicable), a direct-effect row with no sample target or F
    assert "wald" not in set(frame.estimator)
    de = frame[frame.mediator == "direct_effect"]
    assert set(de.target) == {"none", "ate", "limit"}
    assert not de.measure.str.startswith("first_stage").any()
    assert get(frame, "2sls", "income", "none", "n_reps")[0] == 10
    # the 2SLS limit is the ATE here: identification bias is the truth module's limit minus the ATE
    assert get(frame, "2sls", "income", "ate", "identification_bias")[0] == tr.limit_2sls[0] - tr.ate[0]
    path = run_summary.write_summary(out, frame)
    assert path == out / "summary.csv"
    assert len(pd.read_csv(path)) == len(frame)


@pytest.mark.parametrize("fmt", ["csv", "markdown", "latex", "json"])
def test_cli_prints_every_format(run_dir, fmt, capsys):
    out = run_dir[0]
    assert cli.main(["summarize", str(out), "--format", fmt, "--target", "ate", "--target", "none"]) == 0
    text = capsys.readouterr().out
    if fmt == "json":
        assert {r["target"] for r in json.loads(text)} == {"ate", "none"}
    elif fmt == "csv":
        assert set(pd.read_csv(io.StringIO(text)).target) == {"ate", "none"}
    elif fmt == "latex":
        assert text.count(r"\begin{tabular}") == text.count(r"\begin{table}") == 2
    else:
        assert "### target: population ATE" in text and re.search(r"\| cell +\| estimator +\| mediator +\|", text)


def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys):
    assert cli.main(["summarize", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err
    assert cli.main(["summarize", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no manifest.json" in err
    (tmp_path / "manifest.json").write_text(json.dumps({"cells": [], "seed": 1}))
    assert cli.main(["summarize", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no part files" in err
    (tmp_path / "manifest.json").write_text("{not json")
    assert cli.main(["summarize", str(tmp_path)]) == 2
    assert "unreadable manifest" in capsys.readouterr().err


def _ndtr(x):
    from scipy.special import ndtr
    return ndtr(x)


# ---------------------------------------------------------------------------
# the split: measures as pure functions, the Summary dataclass, no cycle
# ---------------------------------------------------------------------------


def test_scipy_bootstrap_gives_the_hand_written_numbers_for_the_same_resamples():
    from simulate import measures as M

    for seed in range(12):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(int(rng.integers(2, 600))) * 3.0
        # scipy draws the (B, n) indices in one call: the same as B draws of n, one after the other
        def median_mad(v):
            return np.array([np.median(v), 1.4826 * np.median(np.abs(v - np.median(v)))])

        assert np.array_equal(M.bootstrap_mcse(x, M.median_and_mad), boot_sd(x, median_mad))
        assert np.array_equal(M.bootstrap_mcse(x, M._f_quantiles),
                              boot_sd(x, lambda v: np.quantile(v, [0.05, 0.5, 0.95])))
        assert np.array_equal(M.bootstrap_mcse(x, M._median, resamples=37, seed=5),
                              boot_sd(x, lambda v: np.array([np.median(v)]), B=37, seed=5))
    assert np.isnan(M.bootstrap_mcse(np.array([1.0]), M.median_and_mad)).all()


def test_measures_are_pure_functions_returning_value_mcse_and_n():
    from simulate import measures as M

    x = np.random.default_rng(3).normal(0.5, 2.0, 500)
    mom = M.moments(x)
    assert isinstance(mom, M.Moments) and mom.n == 500
    b = M.bias(mom, 0.4)
    assert isinstance(b, M.Measure) and b.n == 500
    assert b.value == pytest.approx(x.mean() - 0.4, rel=1e-12) and b.mcse == pytest.approx(x.std(ddof=1) / np.sqrt(500))
    r = M.rmse(x - 0.4)
    assert r.value == pytest.approx(np.sqrt(np.mean((x - 0.4) ** 2)), rel=1e-12)
    c = M.coverage(x - 1.0, x + 1.0, 0.5)
    assert c == M.share(int(np.sum(np.abs(x - 0.5) <= 1.0)), 500)
    assert M.share(0, 0).n == 0 and math.isnan(M.share(0, 0).value)
    q = M.quantiles(x)
    assert [m.value for m in q] == list(np.quantile(x, [0.05, 0.5, 0.95]))


def test_summary_dataclass_carries_the_metadata(run_dir):
    out = run_dir[0]
    s = run_summary.summarize_run(out)
    assert isinstance(s, measures.Summary) and list(s.table.columns) == list(measures.LONG_COLUMNS)
    assert s.cells == {0: []} and s.alpha == 0.05 and s.level is None
    frame = run_summary.summarize_directory(out)
    pd.testing.assert_frame_equal(frame, s.table, check_exact=True)
    assert frame.attrs == {"cells": {0: []}, "alpha": 0.05}
    back = measures.Summary.from_frame(frame)
    assert back.cells == s.cells and back.alpha == s.alpha
    only = s.select(["ate"])
    assert set(only.table.target) == {"ate"} and only.cells == s.cells
    assert tables.render(s, "markdown") == tables.render(frame, "markdown")
    assert tables.to_csv(s) == tables.to_csv(frame)


def test_summary_modules_import_the_run_store_in_one_place_and_no_importlib():
    from pathlib import Path

    root = Path(simulate.__file__).parent
    mods = ["measures", "accumulator", "run_summary", "tables"]
    for m in mods:
        text = (root / f"{m}.py").read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import) \S*runner", text, re.M), m
        assert not re.search(r"^\s*(from|import) importlib", text, re.M), m
    assert "from .store import" in (root / "rundir.py").read_text(encoding="utf-8")
