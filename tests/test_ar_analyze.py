"""Issue 15: analyze's weak-instrument warning and AR output; the balanced-design identity UJIVE = MBTSLS."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _data import ak80_path, make_data

from simulate.analyze import WEAK_F, analyze, format_table, weak_instrument_warning
from simulate.cli import main as cli_main
from simulate.estimators import estimate


def run(argv):
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def ak80():
    return pd.read_csv(ak80_path())


def test_ak80_warns_of_weak_instruments_and_shows_the_ar_set(ak80):
    result = analyze(ak80, site="yob", treatment="qob", mediators=["education"], outcome="lwage")
    f = result["first_stage_f"].iloc[0]
    assert f < WEAK_F
    warn = weak_instrument_warning(result)
    assert warn.startswith("warning: weak instruments") and "\n" not in warn
    assert f"education {f:.1f}" in warn and "Anderson-Rubin" in warn
    text = format_table(result)
    assert text.splitlines()[0] == warn
    assert "95% Anderson-Rubin confidence set, conventional" in text
    assert "site-clustered" in text
    jar = result.attrs["jackknife_ar"]
    assert np.isfinite(jar["stat"]) and "jackknife AR test of no effect" in text and "jackknife AR" in warn


def test_strong_instruments_give_no_warning():
    site, arm, M, Y = make_data(8, 5, 2, 1, min_cell=40, max_cell=60, compliance_sd=0.2)
    frame = pd.DataFrame({"s": site, "t": arm, "m": M[:, 0] + 3 * arm, "y": Y})
    result = analyze(frame, "s", "t", ["m"], "y")
    assert result["first_stage_f"].iloc[0] > WEAK_F
    assert weak_instrument_warning(result) is None
    assert not format_table(result).startswith("warning")


def test_two_mediators_read_the_conditional_f_and_name_the_joint_test():
    site, arm, M, Y = make_data(3, 6, 2, 2, min_cell=10, max_cell=12, compliance_sd=0.01)
    frame = pd.DataFrame({"s": site, "t": arm, "m1": M[:, 0], "m2": M[:, 1], "y": Y})
    result = analyze(frame, "s", "t", ["m1", "m2"], "y")
    cf = result.drop_duplicates("mediator").set_index("mediator")["conditional_f"]
    warn = weak_instrument_warning(result)
    assert (warn is not None) == bool((cf[["m1", "m2"]] < WEAK_F).any())
    if warn:
        assert "conditional F" in warn and "joint Anderson-Rubin test" in warn


def test_cli_json_keeps_stdout_json_and_warns_on_stderr(tmp_path, capsys):
    site, arm, M, Y = make_data(8, 5, 2, 1, min_cell=10, max_cell=20, compliance_sd=0.01)
    path = tmp_path / "d.csv"
    pd.DataFrame({"s": site, "t": arm, "m": M[:, 0], "y": Y}).to_csv(path, index=False)
    assert run(["analyze", str(path), "--site", "s", "--treatment", "t", "--mediator", "m", "--outcome", "y",
                "--json"]) == 0
    out = capsys.readouterr()
    records = json.loads(out.out)
    assert "ar_low" in records[0] and "ar_set_kind" in records[0]
    f = records[0]["first_stage_f"]
    assert ("warning: weak instruments" in out.err) == (f < WEAK_F)


def _kclass(site, arm, x, y, kappa):
    """Plain numpy k-class with site fixed effects and the site-by-arm instruments."""
    K, A = site.max() + 1, arm.max() + 1
    W = (site[:, None] == np.arange(K)).astype(float)
    C = np.column_stack([(site == s) & (arm == a) for s in range(K) for a in range(A)]).astype(float)
    resid = lambda X, v: v - X @ np.linalg.lstsq(X, v, rcond=None)[0]  # noqa: E731
    xw, yw = resid(W, x), resid(W, y)
    xc = resid(C, x)  # M_[Z,W] x
    inst = xw - kappa * xc
    return (inst @ yw) / (inst @ xw)


def test_balanced_design_makes_ujive_and_mbtsls_the_same_k_class_estimator():
    rng = np.random.default_rng(5)
    K, A, n_c = 9, 3, 7
    site = np.repeat(np.arange(K), A * n_c)
    arm = np.tile(np.repeat(np.arange(A), n_c), K)
    x = rng.normal(0.4, 0.3, (K, A))[site, arm] * (arm > 0) + rng.normal(size=site.size)
    y = 0.5 * x + 0.4 * rng.normal(size=site.size) + 0.3 * x * rng.normal(size=site.size)
    rows = estimate(site, arm, x, y).set_index("estimator")
    n_s = A * n_c
    kappa = 1 + (A - 1) / (n_s - A)
    ref = _kclass(site, arm, x, y, kappa)
    assert rows.loc["ujive", "estimate"] == pytest.approx(rows.loc["mbtsls", "estimate"], rel=1e-12, abs=0)
    assert rows.loc["mbtsls", "estimate"] == pytest.approx(ref, rel=1e-10)
    assert rows.loc["ujive", "estimate"] == pytest.approx(ref, rel=1e-10)
    assert (rows["balanced_design"] == 1.0).all()
    # one more person in one cell: the identity and the flag are gone
    site2, arm2 = np.r_[site, 0], np.r_[arm, 1]
    x2, y2 = np.r_[x, 1.0], np.r_[y, 0.2]
    rows2 = estimate(site2, arm2, x2, y2).set_index("estimator")
    assert (rows2["balanced_design"] == 0.0).all()
    assert abs(rows2.loc["ujive", "estimate"] - rows2.loc["mbtsls", "estimate"]) > 1e-8
