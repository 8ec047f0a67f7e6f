"""Real-data analysis: published Angrist-Krueger values, input errors, the command line."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from _data import ak80_path, make_data

from simulate.analyze import AnalysisError, analyze, format_table
from simulate.cli import main as cli_main

AK80 = ak80_path()

# Published values for Angrist & Krueger (1991, QJE) Table V columns (1)-(2): log weekly
# wage on education with year-of-birth dummies, instruments quarter-of-birth x
# year-of-birth (30 instruments), men born 1930-39, 1980 Census, n = 329,509.
# Source: Kolesar's ManyIV R package, tests/testthat/test_stata.R ("Match Stata output",
# values produced by Stata's ivregress, data-raw/ak.do), https://github.com/kolesarm/ManyIV.
# (estimate, conventional SE, robust SE). The 2SLS row is also AK's own Table V, col. 2:
# .0891 (.0161). ManyIV's OLS SEs use n - K - 1 degrees of freedom (Stata regress).
PUBLISHED_AK80 = {
    "ols": (0.0710810458, 0.0003390067, 0.0003814625),
    "2sls": (0.0891154613, 0.0161098202, 0.0162120317),
    "liml": (0.0928764165, 0.0177441446, 0.0196323640),
    "mbtsls": (0.0937333665, 0.0180984698, 0.0204147326),  # MBTSLS
}


@pytest.fixture(scope="module")
def ak80():
    if not os.path.exists(AK80):
        pytest.skip("ak80 data not available")
    return pd.read_csv(AK80)


def test_ak80_matches_published_values(ak80):
    # its speed ("in seconds") is for a benchmark, not a timed assertion: a cold Numba cache compiles first
    result = analyze(ak80, site="yob", treatment="qob", mediators=["education"], outcome="lwage")
    n, K = len(ak80), 10
    assert n == 329509
    assert result.attrs["arms"] == ["Q1", "Q2", "Q3", "Q4"]
    for name, (b, se, se_r) in PUBLISHED_AK80.items():
        row = result[result.estimator == name].iloc[0]
        assert row.status == "ok"
        np.testing.assert_allclose(row.estimate, b, rtol=1e-8)
        if name == "ols":
            np.testing.assert_allclose(row.se_conventional * np.sqrt(n / (n - K - 1)), se, rtol=1e-7)
            np.testing.assert_allclose(row.se_hc1, se_r, rtol=1e-6)  # published to 7 digits
        else:
            np.testing.assert_allclose(row.se_conventional, se, rtol=1e-8)
            np.testing.assert_allclose(row.se_robust, se_r, rtol=1e-8)
    # Fuller(1) lies between 2SLS and LIML here; UJIVE is near LIML
    est = result.set_index("estimator").estimate
    assert est["2sls"] < est["fuller"] < est["liml"]
    assert abs(est["ujive"] - est["liml"]) < 0.005
    first = result.iloc[0]
    assert first.overid_df == 29
    assert 4.0 < first.first_stage_f < 6.0  # weak: the many-weak-instrument example


def test_analyze_errors(ak80):
    small = ak80.iloc[:5000].copy()
    with pytest.raises(AnalysisError, match="'educ' not found"):
        analyze(small, site="yob", treatment="qob", mediators=["educ"], outcome="lwage")
    bad = small.copy()
    bad["education"] = bad["education"].astype(object)
    bad.loc[bad.index[3], "education"] = "twelve"
    with pytest.raises(AnalysisError, match="'education' is not numeric: value 'twelve' in row 4"):
        analyze(bad, site="yob", treatment="qob", mediators="education", outcome="lwage")
    nan = small.copy()
    nan.loc[nan.index[[2, 7]], "lwage"] = np.nan
    with pytest.raises(AnalysisError, match="'lwage' has 2 missing value"):
        analyze(nan, site="yob", treatment="qob", mediators="education", outcome="lwage")
    one = small.copy()
    one = one[~((one.yob == one.yob.iloc[0]) & (one.qob != "Q1"))]
    with pytest.raises(AnalysisError, match=r"site .* has a single treatment arm \('Q1'\)"):
        analyze(one, site="yob", treatment="qob", mediators="education", outcome="lwage")
    gap = small[~((small.yob == small.yob.iloc[0]) & (small.qob == "Q3"))]
    with pytest.raises(AnalysisError, match="has no persons in arm"):
        analyze(gap, site="yob", treatment="qob", mediators="education", outcome="lwage")
    flat = small.assign(qob="Q1")
    with pytest.raises(AnalysisError, match="single value"):
        analyze(flat, site="yob", treatment="qob", mediators="education", outcome="lwage")
    assert issubclass(AnalysisError, ValueError)


def test_analyze_labels_any_order():
    """Shuffled rows, string sites, numeric arms with gaps give the coded estimate."""
    from simulate.estimators import estimate

    site, arm, M, Y = make_data(4, 6, 3, 2, min_cell=5, max_cell=20)
    frame = pd.DataFrame({"school": np.array(list("ABCDEF"))[site], "dose": np.array([0, 10, 25])[arm],
                          "m1": M[:, 0], "m2": M[:, 1], "y": Y})
    frame = frame.sample(frac=1.0, random_state=1)
    result = analyze(frame, site="school", treatment="dose", mediators=["m1", "m2"], outcome="y")
    direct = estimate(site, arm, M, Y, mediator_names=["m1", "m2"])
    np.testing.assert_allclose(result.estimate.to_numpy(), direct.estimate.to_numpy(), rtol=1e-10)
    text = format_table(result)
    assert "mbtsls" in text and "Sanderson-Windmeijer" in text and "m2" in text


def run(argv):
    """``simulate ARGV`` through the one CLI (parser and error handler); the exit code."""
    return cli_main(argv)


def test_cli_json(tmp_path, capsys):
    site, arm, M, Y = make_data(8, 5, 2, 1, min_cell=10, max_cell=20)
    path = tmp_path / "d.csv"
    pd.DataFrame({"s": site, "t": arm, "m": M[:, 0], "y": Y}).to_csv(path, index=False)
    code = run(["analyze", str(path), "--site", "s", "--treatment", "t", "--mediator", "m",
                      "--outcome", "y", "--json"])
    assert code == 0
    records = json.loads(capsys.readouterr().out)
    for field in ("estimator", "mediator", "estimate", "se_conventional", "se_robust",
                  "conf_low", "conf_high", "p_value"):
        assert field in records[0]
    tsls = [r for r in records if r["estimator"] == "2sls"][0]
    from simulate.estimators import estimate
    ref = estimate(site, arm, M, Y)
    np.testing.assert_allclose(tsls["estimate"], ref.loc[ref.estimator == "2sls", "estimate"].iloc[0],
                               rtol=1e-12)


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "d.csv"
    pd.DataFrame({"s": [1, 1, 2, 2], "t": [0, 1, 0, 0], "m": [1.0, 2, 3, 4], "y": [1.0, 2, 3, 5]}).to_csv(
        path, index=False)
    code = run(["analyze", str(path), "--site", "s", "--treatment", "t", "--mediator", "m",
                      "--outcome", "y"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "site 2 has a single treatment arm" in err
    code = run(["analyze", str(tmp_path / "none.csv"), "--site", "s", "--treatment", "t",
                      "--mediator", "m", "--outcome", "y"])
    err = capsys.readouterr().err
    assert code == 2 and "file not found" in err and err.count("\n") == 1


def test_cli_subprocess_no_traceback(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("s,t,m,y\n1,0,1,2\n1,1,x,3\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    out = subprocess.run([sys.executable, "-m", "simulate.cli", "analyze", str(path), "--site", "s",
                          "--treatment", "t", "--mediator", "m", "--outcome", "y"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == "simulate analyze: error: column 'm' is not numeric: value 'x' in row 2"


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("command", ["analyze", "calibrate"])
def test_duplicate_column_names_are_one_line_errors(tmp_path, capsys, command, gz):
    # pandas would read the second 'm' as 'm.1' and the second 'y' as 'y.1', silently
    import gzip

    text = "s,t,m,m,y,y,y\n" + "".join(f"{k},{i % 2},{i},{i + 1},{i},{i},{i}\n" for k in range(4) for i in range(6))
    path = tmp_path / ("d.csv.gz" if gz else "d.csv")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    code = cli_main([command, str(path), "--site", "s", "--treatment", "t", "--mediator", "m", "--outcome", "y"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{path}: duplicate column names: 'm' (2 times), 'y' (3 times)" in err


def test_read_csv_keeps_distinct_names_that_look_like_renames(tmp_path):
    from simulate.analyze import read_csv

    path = tmp_path / "d.csv"
    path.write_text("x,x.1,1,1.0\n1,2,3,4\n")
    assert list(read_csv(path).columns) == ["x", "x.1", "1", "1.0"]
    with pytest.raises(AnalysisError, match="file not found"):
        read_csv(tmp_path / "none.csv")
