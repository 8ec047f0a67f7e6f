"""Issue 15: the AR sets' coverage, the AR tests' rejection at the true value and the balanced-design share in
summaries, against plain numpy over the same rows; batch invariance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulate import scenario as sm
from simulate.accumulator import summarize
from simulate.replicate import run_replications

SCENARIO = """
name = "ar"
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


@pytest.fixture(scope="module")
def rows():
    sc = sm.loads(SCENARIO)
    return pd.DataFrame(run_replications(sc, 0, 0, 5, range(120)))


def _covers(lo, hi, kind, theta):
    """Plain membership of theta in each set, written out case by case."""
    out = []
    for a, b, k in zip(lo, hi, kind):
        if k == "interval":
            out.append(a <= theta <= b)
        elif k == "two_rays":
            out.append(theta <= a or theta >= b)
        elif k == "whole_line":
            out.append(True)
        elif k == "empty":
            out.append(False)
    return np.array(out, bool)


def _get(frame, est, target, measure):
    r = frame[(frame.estimator == est) & (frame.mediator == "income") & (frame.target == target)
              & (frame.measure == measure)]
    assert len(r) == 1, (est, target, measure)
    return r.iloc[0]


def test_ar_measures_match_the_rows(rows):
    theta = 0.5
    targets = {0: {(e, m): {"ate": theta, "late": np.nan, "compliance_weighted": theta, "limit": theta}
                   for e, m in set(zip(rows.estimator, rows.mediator))}}
    frame = summarize(rows, targets)
    one = rows[(rows.estimator == "2sls") & (rows.mediator == "income")]
    for prefix, measure in (("ar", "ar_coverage"), ("ar_cluster", "ar_cluster_coverage")):
        cov = _covers(one[f"{prefix}_low"], one[f"{prefix}_high"], one[f"{prefix}_set_kind"], theta)
        got = _get(frame, "2sls", "ate", measure)
        assert got["value"] == pytest.approx(cov.mean(), abs=1e-15) and got["n_reps"] == len(cov) == 120
        assert got["mcse"] == pytest.approx(np.sqrt(cov.mean() * (1 - cov.mean()) / len(cov)))
        # the same under every estimator: the sets are dataset-level
        assert _get(frame, "liml", "ate", measure)["value"] == got["value"]
    for col, measure in (("ar_true_p", "ar_true_rejection"), ("ar_cluster_true_p", "ar_cluster_true_rejection")):
        want = (one[col] < 0.05).mean()
        assert _get(frame, "2sls", "none", measure)["value"] == pytest.approx(want, abs=1e-15)
    assert _get(frame, "ujive", "none", "balanced_design_share")["value"] == 1.0  # 12 sites of 12 + 12
    # batch invariance
    parts = [rows.iloc[i:i + 97] for i in range(0, len(rows), 97)]
    again = summarize(parts, targets)
    pd.testing.assert_frame_equal(frame, again)


def test_rows_without_the_ar_columns_still_summarize(rows):
    old = rows.drop(columns=[c for c in rows.columns if c.startswith("ar_") or c == "balanced_design"])
    frame = summarize(old, None)
    assert not frame.measure.str.startswith("ar_").any()
