"""Issue 15: the jackknife AR and every SE type's coverage in summaries, against plain numpy over the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from simulate import scenario as sm
from simulate.accumulator import summarize
from simulate.estimators.inference import jackknife_ar
from simulate.estimators.registry import PRIMARY_SE, SPECS
from simulate.measures import MEASURES, SE_COVERAGE_MEASURES
from simulate.replicate import run_replications

SCENARIO = """
name = "jar"
n_sites = 12
n_per_site = 24
[treatment]
share = 0.5
[mediators]
names = ["income"]
[site]
compliance_mean = 0.2
compliance_sd = 0.1
effect_mean = 0.5
[person]
confounding = 0.5
"""
THETA = 0.5
SE_SUFFIX = {"conventional": "conventional", "hc0": "robust", "hc1": "hc1", "cluster": "cluster"}


@pytest.fixture(scope="module")
def rows():
    sc = sm.loads(SCENARIO)
    return pd.DataFrame(run_replications(sc, 0, 0, 5, range(120)))


@pytest.fixture(scope="module")
def frame(rows):
    targets = {0: {(e, m): {"ate": THETA, "late": np.nan, "compliance_weighted": THETA, "limit": THETA}
                   for e, m in set(zip(rows.estimator, rows.mediator))}}
    return summarize(rows, targets)


def _get(frame, est, target, measure):
    r = frame[(frame.estimator == est) & (frame.mediator == "income") & (frame.target == target)
              & (frame.measure == measure)]
    assert len(r) == 1, (est, target, measure)
    return r.iloc[0]


def test_the_rows_jackknife_ar_at_the_truth_equals_the_person_level_one():
    """The fused replication kernel's forms give the analysis implementation's statistic on the same data."""
    from simulate import dgp
    from simulate.replicate import replication_seed

    sc = sm.loads(SCENARIO)
    rows = pd.DataFrame(run_replications(sc, 0, 0, 5, range(3)))
    for rep in range(3):
        d = dgp.draw(sc, replication_seed(5, 0, rep))
        ref = jackknife_ar(d.site, d.treatment, d.mediators, d.outcome, [THETA])["stat"]
        got = rows[(rows.rep == rep) & (rows.estimator == "2sls")]["jar_true_stat"].iloc[0]
        assert got == pytest.approx(ref, rel=1e-10)


def test_jackknife_ar_measures_match_the_rows(rows, frame):
    one = rows[(rows.estimator == "2sls") & (rows.mediator == "income")]
    want = (one["jar_true_p"] < 0.05).mean()
    got = _get(frame, "2sls", "none", "jar_true_rejection")
    assert got["value"] == pytest.approx(want, abs=1e-15) and got["n_reps"] == 120
    kinds = set(one["jar_set_kind"])
    assert kinds <= {"interval", "two_rays", "whole_line", "empty"}, kinds
    lo, hi, kind = one["jar_low"].to_numpy(), one["jar_high"].to_numpy(), one["jar_set_kind"].to_numpy()
    cov = np.where(kind == "interval", (lo <= THETA) & (THETA <= hi),
                   np.where(kind == "two_rays", (THETA <= lo) | (THETA >= hi), kind == "whole_line"))
    got = _get(frame, "2sls", "ate", "jar_coverage")
    assert got["value"] == pytest.approx(cov.mean(), abs=1e-15)
    # the set and the test agree: the truth is in the set exactly when the test at the truth does not reject
    np.testing.assert_array_equal(cov, one["jar_true_p"].to_numpy() >= 0.05)


@pytest.mark.parametrize("est", ["2sls", "liml", "ujive", "mbtsls", "between_ols", "ols"])
def test_every_se_types_coverage_against_numpy(rows, frame, est):
    one = rows[(rows.estimator == est) & (rows.mediator == "income") & (rows.status == "ok")]
    df = SPECS[est].df(12, 1)  # the estimator's t reference (K - 1 clustered, K - P site-level sandwich)
    q = stats.t.ppf(0.975, df)
    have = 0
    for col in [c for c in rows.columns if c.startswith("se_") and c != "se_type"]:
        se = one[col].to_numpy(float)
        name = "coverage_" + col[3:]
        sel = frame[(frame.estimator == est) & (frame.target == "ate") & (frame.measure == name)]
        if not np.isfinite(se).any():
            assert sel.empty, (est, name)
            continue
        have += 1
        x = one["estimate"].to_numpy()[np.isfinite(se)]
        s = se[np.isfinite(se)]
        want = np.mean((x - q * s <= THETA) & (THETA <= x + q * s))
        assert sel["value"].iloc[0] == pytest.approx(want, abs=1e-12), (est, name)
        assert sel["mcse"].iloc[0] == pytest.approx(np.sqrt(want * (1 - want) / len(x)))
    assert have >= 2
    # the primary SE's coverage is `coverage`
    prim = _get(frame, est, "ate", "coverage_" + SE_SUFFIX[PRIMARY_SE[est]])
    assert prim["value"] == _get(frame, est, "ate", "coverage")["value"]


def test_se_coverage_is_long_format_only(frame):
    assert not set(SE_COVERAGE_MEASURES) & set(MEASURES)
    assert set(SE_COVERAGE_MEASURES) >= set(frame.measure[frame.measure.str.startswith("coverage_")])


def test_rows_without_the_new_columns_still_summarize(rows):
    old = rows.drop(columns=[c for c in rows.columns if c.startswith(("jar_", "se_")) and c != "se_type"])
    frame = summarize(old, None)
    assert not frame.measure.str.startswith(("jar_", "coverage_")).any()


def test_batch_invariance(rows, frame):
    targets = {0: {(e, m): {"ate": THETA, "late": np.nan, "compliance_weighted": THETA, "limit": THETA}
                   for e, m in set(zip(rows.estimator, rows.mediator))}}
    parts = [rows.iloc[i:i + 97] for i in range(0, len(rows), 97)]
    pd.testing.assert_frame_equal(frame, summarize(parts, targets))
