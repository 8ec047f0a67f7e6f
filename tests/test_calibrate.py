"""Calibration: moments recovered from data drawn from a known scenario; ak80 round trip; input errors."""

import math
import os

import numpy as np
import pandas as pd
import pytest
from _data import ak80_path

from simulate import cli
from simulate.calibrate import calibrate, calibrate_statistics, nearest_correlation, to_toml
from simulate.dgp import draw
from simulate.estimators import cell_statistics
from simulate.scenario import loads, validate_file
from simulate.truth import truth

AK80 = ak80_path()

KNOWN = """
name = "known"
n_sites = 2000
n_per_site = 500
[mediators]
names = ["income", "hours"]
[site]
compliance_mean = [1.0, 0.6]
compliance_sd = [0.4, 0.3]
compliance_correlation = 0.2
effect_mean = [0.5, 0.25]
effect_sd = [0.1, 0.1]
[person]
mediator_mean = [2.0, 1.0]
compliance_sd = [0.3, 0.3]
confounding = 0.3
"""


def _calibrate_draw(text, seed, names):
    sc = loads(text)
    tr = draw(sc, seed)
    count, mean, cross = cell_statistics(tr.site, tr.treatment, tr.mediators, tr.outcome)
    return sc, calibrate_statistics(count, mean, cross, mediators=names)


@pytest.fixture(scope="module")
def known():
    return _calibrate_draw(KNOWN, 11, ["income", "hours"])


def test_compliance_moments_recovered(known):
    sc, cal = known
    K, n = 2000, 500
    for p, (mu, sd) in enumerate([(1.0, 0.4), (0.6, 0.3)]):
        assert abs(cal.compliance_mean[p] - mu) < 4 * cal.compliance_mean_se[p]
        # sampling variance of a site ITT: sd(M)^2 (2/n + 2/n) + person compliance variance / (n/2)
        samp = 4.0 / n + 0.09 * 2 / n
        se_sd = math.sqrt(2.0 / (K - 1)) * (sd ** 2 + samp) / (2 * sd)
        assert abs(cal.compliance_sd[p] - sd) < 4 * se_sd, (p, cal.compliance_sd[p], se_sd)
    r = cal.compliance_correlation[0][1]
    assert abs(r - 0.2) < 4 * 1.2 * (1 - 0.2 ** 2) / math.sqrt(K)
    # without the sampling-error correction the SDs would be inflated: the correction is real
    assert cal.compliance_sd[1] < math.sqrt(0.3 ** 2 + samp)


def test_effect_moments_recovered(known):
    sc, cal = known
    for p, mu in enumerate([0.5, 0.25]):
        assert abs(cal.effect_mean[p] - mu) < 4 * cal.effect_mean_se[p], (p, cal.effect_mean, cal.effect_mean_se)
        assert cal.effect_mean_se[p] < 0.02
    assert abs(cal.effect_sd - 0.1) < 0.02
    assert not math.isnan(cal.direct_effect_mean) and abs(cal.direct_effect_mean) < 0.05


def test_person_moments_recovered(known):
    _, cal = known
    np.testing.assert_allclose(cal.mediator_mean, [2.0, 1.0], atol=0.02)
    np.testing.assert_allclose(cal.mediator_sd, [1.0, 1.0], atol=0.01)
    np.testing.assert_allclose(cal.person_compliance_sd, [0.3, 0.3], atol=0.03)
    np.testing.assert_allclose(cal.outcome_sd, 1.0, atol=0.03)
    np.testing.assert_allclose(cal.confounding, [0.3, 0.3], atol=0.05)


def test_calibrated_toml_mirrors_the_calibration(known):
    _, cal = known
    text = to_toml(cal, name="roundtrip", command="test", truth_sites=None)
    sc = loads(text)
    assert sc.n_sites == 2000 and sc.n_per_site == (500,) * 2000
    np.testing.assert_allclose(sc.site_mean[:2], cal.compliance_mean, rtol=1e-5)
    np.testing.assert_allclose(sc.site_mean[2:4], cal.effect_mean, rtol=1e-5)
    np.testing.assert_allclose(sc.site_sd[:2], cal.compliance_sd, rtol=1e-5)
    np.testing.assert_allclose(sc.site_correlation[0][1], cal.compliance_correlation[0][1], rtol=1e-5)
    np.testing.assert_allclose([sc.person_correlation[4][6], sc.person_correlation[5][6]], cal.confounding, rtol=1e-5)
    # the scenario's truth is the calibrated effect (assumptions hold in the calibrated scenario)
    tr = truth(sc, n_sites=20000)
    np.testing.assert_allclose(tr.ate, cal.effect_mean, rtol=1e-5)
    np.testing.assert_allclose(tr.limit_2sls, cal.effect_mean, rtol=1e-4)
    small = to_toml(cal, name="small", truth_sites=None, n_sites=30, n_per_site=100)
    assert loads(small).n_sites == 30 and loads(small).n_per_site == (100,) * 30


def test_three_arms_curvature_recovered():
    text = """
name = "arms3"
n_sites = 1500
n_per_site = 300
[treatment]
arms = 3
arm_shares = [0.4, 0.3, 0.3]
[mediators]
curvature = 0.5
[site]
compliance_mean = 0.8
compliance_sd = 0.3
effect_mean = 0.4
effect_sd = 0.05
[person]
confounding = 0.4
"""
    _, cal = _calibrate_draw(text, 3, ["M1"])
    assert abs(cal.curvature[0] - 0.5) < 0.05
    assert abs(cal.compliance_mean[0] - 0.8) < 4 * cal.compliance_mean_se[0]
    assert abs(cal.compliance_sd[0] - 0.3) < 0.03
    assert abs(cal.effect_mean[0] - 0.4) < 4 * cal.effect_mean_se[0]
    assert abs(cal.effect_sd - 0.05) < 0.03
    assert len(cal.contrast_mean) == 2
    # contrast 2 moves M by g(2) = 2 + 2c = 3 times the compliance
    assert abs(cal.contrast_mean[1][0] / cal.contrast_mean[0][0] - 3.0) < 0.1
    sc = loads(to_toml(cal, truth_sites=None))
    assert sc.arms == 3 and abs(sc.curvature[0] - cal.curvature[0]) < 1e-5


def test_direct_effect_option():
    text = KNOWN.replace("n_sites = 2000", "n_sites = 1000").replace("[person]", "direct_effect_mean = 0.3\n[person]")
    sc = loads(text)
    tr = draw(sc, 5)
    count, mean, cross = cell_statistics(tr.site, tr.treatment, tr.mediators, tr.outcome)
    plain = calibrate_statistics(count, mean, cross, mediators=["a", "b"])
    withd = calibrate_statistics(count, mean, cross, mediators=["a", "b"], direct_effect=True)
    assert abs(withd.direct_effect_mean - 0.3) < 0.06
    assert abs(withd.effect_mean[0] - 0.5) < 4 * withd.effect_mean_se[0]
    assert plain.effect_mean[0] > 0.55  # through the origin the direct effect is credited to the mediators
    assert "direct_effect_mean = " in to_toml(withd, truth_sites=None)
    assert "direct_effect_mean" not in to_toml(plain, truth_sites=None).split("\n\n", 1)[1]


def test_nearest_correlation_clips():
    C = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    R, clipped = nearest_correlation(C)
    assert clipped
    assert np.linalg.eigvalsh(R).min() >= -1e-12
    np.testing.assert_allclose(np.diag(R), 1.0)
    R2, clipped2 = nearest_correlation(np.eye(3))
    assert not clipped2 and np.array_equal(R2, np.eye(3))


def test_negative_net_variance_is_clipped_and_noted():
    # no between-site compliance variation: the net variance is sampling noise, often negative
    text = KNOWN.replace("n_sites = 2000", "n_sites = 200").replace("n_per_site = 500", "n_per_site = 60") \
        .replace("compliance_sd = [0.4, 0.3]", "compliance_sd = [0.0, 0.3]")
    sc, cal = _calibrate_draw(text, 1, ["income", "hours"])
    assert cal.compliance_sd[0] < 0.1
    if cal.compliance_sd[0] == 0.0:
        assert any("SD is set to 0" in n for n in cal.notes)
    loads(to_toml(cal, truth_sites=None))  # still a valid scenario


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def _calibrate(argv) -> int:
    """``simulate calibrate ARGV`` through the command's parser and error handler; the exit code."""
    return cli.main(["calibrate", *map(str, argv)])


def test_ak80_round_trip(tmp_path, capsys):
    code = _calibrate([AK80, "--site", "yob", "--treatment", "qob", "--mediator", "education",
                      "--outcome", "lwage", "--no-truth"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.startswith("# Calibrated from a real multisite trial: 10 sites, 4 arms")
    assert "# produced by: simulate calibrate" in out.out
    path = tmp_path / "ak80.toml"
    path.write_text(out.out)
    (cell,) = validate_file(path)
    sc = cell.scenario
    assert sc.n_sites == 10 and sc.arms == 4 and sum(sc.n_per_site) == 329509
    tr = truth(sc, n_sites=20000)
    # the between-site effect is close to AK's 2SLS (0.0891) and is the scenario's ATE
    assert abs(tr.ate[0] - 0.0891) < 0.005
    assert abs(tr.limit_2sls[0] - tr.ate[0]) < 1e-3


@pytest.fixture()
def small_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"school": np.repeat(["a", "b", "c", "d"], n // 4),
                          "arm": np.tile([0, 1], n // 2),
                          "m": rng.normal(size=n), "y": rng.normal(size=n)})
    frame["m"] += frame["arm"] * (1 + frame["school"].map({"a": 0.0, "b": 0.5, "c": 1.0, "d": 1.5}))
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    return frame, path


def test_cli_small_file_validates(small_csv, capsys):
    _, path = small_csv
    assert _calibrate([str(path), "--site", "school", "--treatment", "arm", "--mediator", "m", "--outcome", "y",
                      "--name", "tiny", "--no-truth"]) == 0
    text = capsys.readouterr().out
    sc = loads(text)
    assert sc.name == "tiny" and sc.n_sites == 4 and sc.n_per_site == (100,) * 4


@pytest.mark.parametrize("change, argv_change, message", [
    (None, {"--outcome": "nope"}, "column(s) 'nope' not found"),
    ("text", {}, "column 'y' is not numeric: value 'x' in row 3"),
    ("nan", {}, "column 'm' has 1 missing value(s) (first in row 5)"),
    ("one_arm", {}, "site 'd' has a single treatment arm (0); every site needs every arm"),
    ("single_treatment", {}, "treatment column 'arm' has a single value 0"),
    (None, {"--n-sites": "1"}, "--n-sites must be at least 2"),
])
def test_cli_errors_are_one_line(small_csv, tmp_path, capsys, change, argv_change, message):
    frame, path = small_csv
    frame = frame.copy()
    if change == "text":
        frame["y"] = frame["y"].astype(object)
        frame.loc[2, "y"] = "x"
    elif change == "nan":
        frame.loc[4, "m"] = np.nan
    elif change == "one_arm":
        frame.loc[frame.school == "d", "arm"] = 0
    elif change == "single_treatment":
        frame["arm"] = 0
    if change:
        path = tmp_path / "bad.csv"
        frame.to_csv(path, index=False)
    argv = {"--site": "school", "--treatment": "arm", "--mediator": "m", "--outcome": "y", **argv_change}
    flat = [str(path)] + [x for kv in argv.items() for x in kv]
    assert _calibrate(flat) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simulate calibrate: error: ")
    assert message in err, err


def test_cli_missing_file(capsys):
    assert _calibrate(["/nonexistent.csv", "--site", "s", "--treatment", "t", "--mediator", "m",
                      "--outcome", "y"]) == 2
    assert "file not found: /nonexistent.csv" in capsys.readouterr().err


def test_calibrate_frame_api(small_csv):
    frame, _ = small_csv
    cal = calibrate(frame, site="school", treatment="arm", mediators="m", outcome="y")
    assert cal.site_labels == ("a", "b", "c", "d") and cal.arm_labels == ("0", "1")
    # site compliances 1, 1.5, 2, 2.5 (+ noise): mean near 1.75
    assert abs(cal.compliance_mean[0] - 1.75) < 0.4


@pytest.mark.slow
def test_calibration_is_unbiased_over_many_draws():
    """Mean calibrated moments over 40 draws of 500 sites of 200 sit on the known values (4 MCSE)."""
    text = KNOWN.replace("n_sites = 2000", "n_sites = 500").replace("n_per_site = 500", "n_per_site = 200")
    keys = ("compliance_mean", "compliance_sd", "effect_mean")
    known = {"compliance_mean": (1.0, 0.6), "compliance_sd": (0.4, 0.3), "effect_mean": (0.5, 0.25)}
    draws = {k: [] for k in keys}
    corr, esd = [], []
    for seed in range(40):
        _, cal = _calibrate_draw(text, 1000 + seed, ["income", "hours"])
        for k in keys:
            draws[k].append(getattr(cal, k))
        corr.append(cal.compliance_correlation[0][1])
        esd.append(cal.effect_sd)
    for k in keys:
        x = np.array(draws[k])
        mcse = x.std(axis=0, ddof=1) / math.sqrt(len(x))
        assert np.all(np.abs(x.mean(axis=0) - known[k]) < 4 * mcse + 1e-3), (k, x.mean(axis=0), mcse)
    corr = np.array(corr)
    assert abs(corr.mean() - 0.2) < 4 * corr.std(ddof=1) / math.sqrt(len(corr)) + 0.01
    esd = np.array(esd)
    assert abs(esd.mean() - 0.1) < 4 * esd.std(ddof=1) / math.sqrt(len(esd)) + 0.01


# ---------------------------------------------------------------------------
# the TOML is built with tomlkit: the text of the string-built version, parsed back to the same scenario
# ---------------------------------------------------------------------------

REFERENCE = os.path.join(os.path.dirname(__file__), "reference_calibrate")


def _reference(name: str) -> str:
    """A calibrated scenario as the string-built ``to_toml`` wrote it before tomlkit (tests/reference_calibrate/)."""
    with open(os.path.join(REFERENCE, name), encoding="utf-8") as fh:
        return fh.read()


def _two_mediators_three_arms():
    text = KNOWN.replace("n_sites = 2000", "n_sites = 60").replace("n_per_site = 500", "n_per_site = 80")
    _, cal = _calibrate_draw(text + "[treatment]\narms = 3\n", 5, ["income", "hours"])
    return cal


def _assert_round_trip(text: str, reference: str):
    import tomllib

    import tomlkit

    assert loads(text).hash == loads(reference).hash  # the same scenario as the string-built file
    assert tomllib.loads(text) == tomllib.loads(reference)
    doc = tomlkit.parse(text)
    assert tomlkit.dumps(doc) == text  # comments and quoting survive a parse and a dump
    assert loads(tomlkit.dumps(doc)).hash == loads(reference).hash
    assert doc.unwrap() == tomllib.loads(text)


def test_toml_of_two_mediators_is_the_string_built_one():
    cal = _two_mediators_three_arms()
    text = to_toml(cal, name="two", command="a test", truth_sites=None)
    reference = _reference("two_mediators_three_arms.toml")
    _assert_round_trip(text, reference)
    assert text == reference  # tomlkit writes the same text, comments included
    assert '"compliance_1:compliance_2" = ' in text and "[person.correlations]" in text


@pytest.mark.skipif(not os.path.exists(AK80), reason="ak80 data not available")
def test_toml_of_ak80_is_the_string_built_one():
    frame = pd.read_csv(AK80)
    cal = calibrate(frame, site="yob", treatment="qob", mediators="education", outcome="lwage")
    text = to_toml(cal, name="ak80", truth_sites=None)
    _assert_round_trip(text, _reference("ak80.toml"))
    assert text == _reference("ak80.toml")
    cal = calibrate(frame, site="yob", treatment="qob", mediators="education", outcome="lwage", direct_effect=True)
    text = to_toml(cal, name="ak80_direct", n_sites=30, truth_sites=None)
    _assert_round_trip(text, _reference("ak80_direct_30_sites.toml"))
    assert text == _reference("ak80_direct_30_sites.toml")
    assert "n_per_site = {min = 30583, max = 35805}  # the study's range of site sizes" in text


def test_toml_quotes_names_and_descriptions_correctly():
    # a name with quotes, backslashes and a newline: the string-built file was not valid TOML for the newline
    import dataclasses

    import tomlkit

    cal = dataclasses.replace(_two_mediators_three_arms(), outcome='wage "hourly"\\log')
    name = 'a "quoted"\\name\nwith a second line'
    text = to_toml(cal, name=name, truth_sites=None)
    sc = loads(text)
    assert sc.name == name and sc.description == 'Calibrated from 60 sites: income, hours -> wage "hourly"\\log'
    assert tomlkit.parse(text)["name"] == name
