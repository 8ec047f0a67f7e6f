"""simulate.cell_measures: one cell's verdict numbers and check rates, recomputed from the rows with plain numpy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulate import cell_measures as cm
from simulate.runner import RunConfig, run
from simulate.store import read_rows

SMALL = """
name = "small"
n_sites = 6
n_per_site = 400
[mediators]
count = 1
[site]
compliance_mean = 0.3
compliance_sd = 0.1
effect_sd = 0.1
"""
REPS = 40


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    root = tmp_path_factory.mktemp("cell")
    (root / "s.toml").write_text(SMALL)
    run(root / "s.toml", root / "run", RunConfig(reps=REPS, seed=7, jobs=1, quiet=True), truth_sites=2000)
    return root / "run"


def test_measures_are_the_summary_values_and_the_widths_are_the_rows_mean(cell):
    measures, _ = cm.cell_measures(cell, {"m1": "continuous"})
    s = pd.read_csv(cell / "summary.csv", keep_default_na=False, na_values=[""])
    rows = read_rows(cell)
    assert "direct_effect" not in set(measures.mediator) and len(measures) > 3
    for _, r in measures.iterrows():
        assert r.target == "ate" and r.reps == REPS
        for measure in ("bias", "coverage", "rmse"):
            hit = s[(s.estimator == r.estimator) & (s.mediator == r.mediator) & (s.target == "ate")
                    & (s.measure == measure)]
            assert len(hit) == 1
            assert r[measure] == float(hit.value.iloc[0]) or (math.isnan(r[measure]) and hit.value.isna().all())
        g = rows[(rows.estimator == r.estimator) & (rows.mediator == r.mediator) & (rows.status == "ok")]
        w = (g.conf_high - g.conf_low).to_numpy(float)
        w = w[np.isfinite(w)]
        if len(w) > 1:
            assert r.width == pytest.approx(w.mean(), rel=1e-12)
            assert r.width_mcse == pytest.approx(w.std(ddof=1) / np.sqrt(len(w)), rel=1e-12)


def test_check_rates_are_the_share_of_replications_where_each_check_fires(cell):
    _, checks = cm.cell_measures(cell, {})
    rows = read_rows(cell)
    d = rows[rows.estimator == "2sls"]
    f_min = d.groupby("rep").first_stage_f.min().to_numpy(float)
    fires = {"weak_first_stage": f_min < 10}
    for name, col in (("overidentification", "overid_p"), ("nonlinearity", "nonlinearity_p"),
                      ("quadratic", "quadratic_p")):
        p = d.groupby("rep")[col].first().to_numpy(float)
        if np.isfinite(p).any():
            fires[name] = np.isfinite(p) & (np.nan_to_num(p, nan=1.0) < 0.05)
            n = int(np.isfinite(p).sum())
            rate = float((p[np.isfinite(p)] < 0.05).mean())
            assert checks[name][0] == pytest.approx(rate) and checks[name][2] == n
            assert checks[name][1] == pytest.approx(math.sqrt(rate * (1 - rate) / n))
        else:
            assert checks[name][2] == 0 and math.isnan(checks[name][0])
    assert checks["weak_first_stage"][0] == pytest.approx(fires["weak_first_stage"].mean())
    assert 0 < checks["weak_first_stage"][0] < 1  # the design is chosen so the check sometimes fires
    anyf = np.logical_or.reduce(list(fires.values()))
    assert checks["any_check"][0] == pytest.approx(anyf.mean()) and checks["any_check"][2] == REPS


def test_a_binary_mediator_is_measured_at_its_late():
    assert cm.target_name("binary") == "late" and cm.target_name("continuous") == "ate"


def test_stress_and_sensitivity_read_the_one_public_home():
    from simulate import stress
    from simulate.sensitivity import core

    assert stress.cell_measures is cm.cell_measures
    assert not hasattr(stress, "_cell_measures")
    assert "_cell_measures" not in Path(core.__file__).read_text(encoding="utf-8")
