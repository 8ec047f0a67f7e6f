"""The stress test: verdict logic on known answers, the report, and its rendering in a browser.

The exact breakdown values checked here are derived by hand from the model (not read from
the code): with a continuous mediator, compliance gamma_s ~ N(1, 0.5^2) and effect delta = 0.5,

- a direct effect kappa moves the 2SLS limit E[gamma kappa] / E[gamma^2] = kappa / 1.25 and the
  pooled Wald limit kappa / E[gamma] = kappa, so with tolerance 0.05 (10% of 0.5) 2SLS breaks at
  kappa = 0.0625 and Wald at 0.05;
- a within-site correlation rho of Gamma and Delta (person SDs 0.5 and 0.5) adds cov / gamma_s
  to each site's IV ratio: 2SLS limit delta + rho 0.25 E[gamma] / E[gamma^2] = delta + 0.2 rho,
  Wald delta + 0.25 rho: 2SLS breaks at rho = 0.25, Wald at 0.2.
"""

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulate import cli
from simulate.stress import (
    VERDICTS,
    Comparison,
    StressError,
    compare,
    decide,
    exact_breakdown,
    plan_sweeps,
    read_design,
    stress_test,
)

ROOT = Path(__file__).parent.parent


# ---------------------------------------------------------------------------
# The pure pieces
# ---------------------------------------------------------------------------


def test_a_comparison_is_decided_only_outside_its_monte_carlo_interval():
    # |bias| 0.08 +- 1.96 x 0.02 contains the tolerance 0.05: undecided, with the replications that would tell
    c = compare(0.08, 0.02, 0.05, True, 100, "bias")
    assert c.state == "undecided"
    assert c.needed == pytest.approx(100 * (1.959963984540054 * 0.02 / 0.03) ** 2)
    assert compare(0.2, 0.02, 0.05, True, 100, "bias").state == "fail"
    assert compare(0.01, 0.02, 0.05, True, 100, "bias").state == "ok"
    # coverage fails below the floor
    assert compare(0.80, 0.02, 0.90, False, 100, "coverage").state == "fail"
    assert compare(0.87, 0.02, 0.90, False, 100, "coverage").state == "undecided"
    assert compare(0.95, 0.02, 0.90, False, 100, "coverage").state == "ok"
    assert compare(math.nan, 0.02, 0.90, False, 100, "coverage").state == "na"


def test_exact_breakdown_interpolates_and_says_when_it_cannot_decide():
    v = np.linspace(0, 1, 11)
    # |bias| = 0.3 v crosses 0.1 at v = 1/3, between grid values 0.3 and 0.4
    assert exact_breakdown(v, 0.3 * v, np.zeros(11), 0.1, 3.18) == ("breaks", pytest.approx(1 / 3))
    assert exact_breakdown(v, -0.3 * v, np.zeros(11), 0.1, 3.18) == ("breaks", pytest.approx(1 / 3))
    assert exact_breakdown(v, 0.05 * v, np.zeros(11), 0.1, 3.18) == ("holds", None)
    # the bias at the end is 0.1 +- 0.01: neither within nor beyond
    assert exact_breakdown(v, 0.1 * v, np.full(11, 0.01), 0.1, 3.18)[0] == "undecided"
    assert exact_breakdown(v, 0.2 + 0 * v, np.zeros(11), 0.1, 3.18) == ("breaks", 0.0)
    assert exact_breakdown(v, np.full(11, np.nan), np.zeros(11), 0.1, 3.18) == ("unavailable", None)


OK = [Comparison("bias", "ok"), Comparison("coverage", "ok")]


def test_each_verdict_state_from_its_inputs():
    vals, reps = [0.0, 0.5, 1.0], [100, 100, 100]
    assert decide(vals, [OK] * 3, ("holds", None), [False] * 3, False, reps)["verdict"] == "holds"
    r = decide(vals, [OK] * 3, ("breaks", 0.7), [False, False, True], False, reps)
    assert (r["verdict"], r["breakdown"], r["driver"]) == ("breaks_at", 0.7, "identification")
    fs = [OK, [Comparison("bias", "fail"), Comparison("coverage", "ok")], OK]
    r = decide(vals, fs, ("holds", None), [False] * 3, False, reps)
    assert (r["verdict"], r["breakdown"], r["driver"]) == ("breaks_at", 0.5, "finite_sample")
    cov = [OK, OK, [Comparison("bias", "ok"), Comparison("coverage", "fail")]]
    assert decide(vals, cov, ("holds", None), [False] * 3, False, reps)["driver"] == "coverage"
    zero = [[Comparison("bias", "fail")], OK, OK]
    assert decide(vals, zero, ("holds", None), [False] * 3, False, reps)["verdict"] == "fails_at_zero"
    und = [OK, [Comparison("bias", "undecided", 2500.0)], OK]
    r = decide(vals, und, ("holds", None), [False] * 3, False, reps)
    assert r["verdict"] == "cannot_tell" and "about 2,500 needed" in r["note"] and "0.5 (100 replications)" in r["note"]
    assert decide(vals, [OK] * 3, ("holds", None), [False] * 3, True, reps)["verdict"] == "not_applicable"
    # a flat truth does not hide a Monte Carlo failure
    assert decide(vals, fs, ("holds", None), [False] * 3, True, reps)["verdict"] == "breaks_at"
    # an exact breakdown the replications cannot decide earlier is still a break, with a note
    r = decide(vals, und, ("breaks", 0.8), [False, False, True], False, reps)
    assert r["verdict"] == "breaks_at" and r["breakdown"] == 0.8 and "may break earlier" in r["note"]


measure = st.floats(-1, 1, allow_nan=False)
spread = st.floats(0.0001, 0.5)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(measure, spread, st.floats(0, 1), st.floats(0.001, 0.1)), min_size=2, max_size=5),
       st.floats(0.01, 0.5))
def test_holds_only_when_every_bias_is_demonstrably_within_the_tolerance(points, tol):
    mc = [[compare(abs(b), s, tol, True, 100, "bias"), compare(c, cs, 0.9, False, 100, "coverage")]
          for b, s, c, cs in points]
    r = decide([i / 4 for i in range(len(points))], mc, ("holds", None), [False] * len(points), False,
               [100] * len(points))
    if r["verdict"] == "holds":
        for b, s, c, cs in points:
            assert abs(b) + 1.959963984540054 * s < tol
            assert c - 1.959963984540054 * cs > 0.9


# ---------------------------------------------------------------------------
# Stress tests of small designs whose answers are known
# ---------------------------------------------------------------------------

DESIGN = """
name = "small design"
n_sites = 40
n_per_site = 200
[site]
compliance_mean = 1.0
compliance_sd = 0.5
effect_mean = 0.5
[person]
compliance_sd = 0.5
effect_sd = 0.5
confounding = 0.3
[stress]
reps = 60
max_reps = 200
seed = 3
steps = 3
truth_sites = 20000
[stress.dials]
spillover = false
outcome_curvature = false
selection = false
rank = false
between_site_correlation = false
nonlinear_dependence = false
spillover_treated = false
mediator_interaction = false
path_site_correlation = false
site_skew = false
site_heavy_tails = false
cross_dependence = false
within_site_correlation = 0.8
"""

# a lenient design: wide thresholds and a small direct effect, so that 2SLS demonstrably holds
LENIENT = DESIGN.replace("reps = 60", "reps = 100\ntolerance = 0.5\ncoverage_floor = 0.5\nrmse_ratio = 100") \
    .replace("within_site_correlation = 0.8", "within_site_correlation = false\ndirect_effect = 0.05")

# binary take-up whose defiers gain what compliers gain: nothing can move
DEFIERS = """
name = "defiers that cannot matter"
n_sites = 40
n_per_site = 300
[mediators]
kind = "binary"
[binary]
complier_share = 0.6
always_share = 0.1
never_share = 0.3
complier_share_site_sd = 0.5
[site]
effect_mean = 0.5
[stress]
reps = 60
max_reps = 60
seed = 5
steps = 2
truth_sites = 20000
defier_effect_shift = 0
[stress.dials]
spillover = false
direct_effect = false
outcome_curvature = false
selection = false
rank = false
within_site_correlation = false
between_site_correlation = false
nonlinear_dependence = false
spillover_treated = false
mediator_interaction = false
path_site_correlation = false
site_skew = false
site_heavy_tails = false
cross_dependence = false
defiers = 0.15
"""

# many sites of few persons with barely varying compliance: 2SLS is pulled toward OLS where everything holds
WEAK = """
name = "many weak instruments"
n_sites = 150
n_per_site = 20
[site]
compliance_mean = 0.3
compliance_sd = 0.05
effect_mean = 0.5
[person]
confounding = 0.8
[stress]
reps = 40
max_reps = 40
seed = 2
steps = 2
truth_sites = 20000
[stress.dials]
spillover = false
outcome_curvature = false
selection = false
rank = false
within_site_correlation = false
between_site_correlation = false
nonlinear_dependence = false
spillover_treated = false
mediator_interaction = false
path_site_correlation = false
site_skew = false
site_heavy_tails = false
cross_dependence = false
direct_effect = 0.01
"""


def _stress(tmp_path_factory, text, name):
    d = tmp_path_factory.mktemp(name)
    design = d / "design.toml"
    design.write_text(text)
    out = d / "out"
    report = stress_test(design, out, jobs=2, quiet=True)
    return out, report, pd.read_csv(out / "tables" / "verdicts.csv")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _stress(tmp_path_factory, DESIGN, "small")


@pytest.fixture(scope="module")
def lenient(tmp_path_factory):
    return _stress(tmp_path_factory, LENIENT, "lenient")


def _row(v, dial, est, med="M1"):
    return v[(v.dial == dial) & (v.estimator == est) & (v.mediator == med)].iloc[0]


def test_exact_breakdowns_agree_with_the_hand_derivation(small):
    _, _, v = small
    severe = 0.25  # the direct effect's default: half the ITT (E[gamma] delta = 0.5)
    step = severe / 40
    assert _row(v, "direct_effect", "2sls").breakdown_exact == pytest.approx(0.0625, abs=step / 10)
    assert _row(v, "direct_effect", "wald").breakdown_exact == pytest.approx(0.05, abs=step / 10)
    assert _row(v, "direct_effect", "2sls").verdict == "breaks_at"
    assert _row(v, "direct_effect", "2sls").driver == "identification"
    assert _row(v, "within_site_correlation", "2sls").breakdown_exact == pytest.approx(0.25, abs=0.02 / 10)
    assert _row(v, "within_site_correlation", "wald").breakdown_exact == pytest.approx(0.2, abs=0.02 / 10)
    # the intercept absorbs a constant direct effect: no exact breakdown for it
    assert math.isnan(_row(v, "direct_effect", "between_intercept").breakdown_exact)
    assert _row(v, "direct_effect", "ols").verdict == "fails_at_zero"


def test_the_verdict_table_has_the_documented_columns_and_states(small, lenient):
    for _, _, v in (small, lenient):
        for col in ("dial", "assumption", "estimator", "mediator", "target", "verdict", "breakdown_exact",
                    "breakdown_mc", "driver", "severe", "target_value", "tolerance", "identification_bias_at_severe",
                    "bias_at_severe", "bias_mcse_at_severe", "coverage_at_severe", "reps_at_severe"):
            assert col in v.columns, col
        assert set(v.verdict) <= set(VERDICTS)
        # never "holds" with a bias at the severe value within 1.96 MCSE of the tolerance or beyond it
        h = v[v.verdict == "holds"]
        assert (h.bias_at_severe.abs() + 1.96 * h.bias_mcse_at_severe < h.tolerance).all()


def test_a_lenient_design_holds_demonstrably(lenient):
    _, _, v = lenient
    r = _row(v, "direct_effect", "2sls")
    assert r.verdict == "holds", r.to_dict()
    assert abs(r.identification_bias_at_severe) == pytest.approx(0.04, abs=1e-6)  # 0.05 / 1.25
    assert r.tolerance == pytest.approx(0.25)


def test_a_dial_that_cannot_move_the_truth_is_not_applicable(tmp_path_factory):
    out, _, v = _stress(tmp_path_factory, DEFIERS, "defiers")
    iv = v[(v.dial == "defiers") & (v.estimator == "2sls")].iloc[0]
    assert iv.verdict == "not_applicable", iv.to_dict()
    assert "flat along the dial" in iv.note
    exact = pd.read_csv(out / "tables" / "exact.csv")
    e = exact[(exact.dial == "defiers") & (exact.estimator == "2sls")]
    assert np.allclose(e.limit, 0.5, atol=1e-3) and np.allclose(e.target_value, 0.5)


def test_defiers_with_an_effect_of_their_own_move_the_2sls_limit():
    raw, settings = read_design(_design_file(DEFIERS.replace("defier_effect_shift = 0\n", "")))
    sw = {s.dial.key: s for s in plan_sweeps(raw, settings, "d")}["defiers"]
    assert any("defiers' effect" in c for c in sw.changes)
    from simulate.scenario import from_dict
    from simulate.truth import truth

    tr = truth(from_dict(sw.raw_at(1.0), "d"), n_sites=20000)
    # defiers who gain nothing: each site's ratio is delta pi_c / (pi_c - pi_d) > delta (pi_d = 0.15 taken from
    # the never-takers), 0.667 where pi_c = 0.6; 2SLS weights sites by (pi_c - pi_d)^2, which pulls it below that
    assert tr.late[0] == pytest.approx(0.5)
    assert 0.5 * 1.1 < tr.limit_2sls[0] < 0.5 * 0.6 / 0.45 + 0.01


def _design_file(text: str) -> Path:
    import tempfile

    p = Path(tempfile.mkdtemp()) / "design.toml"
    p.write_text(text)
    return p


def test_an_estimator_failing_where_everything_holds_fails_at_zero(tmp_path_factory):
    _, report, v = _stress(tmp_path_factory, WEAK, "weak")
    r = _row(v, "direct_effect", "2sls")
    assert r.verdict == "fails_at_zero" and r.driver == "finite_sample", r.to_dict()
    assert "already failing where every assumption holds" in (report.parent / "report.md").read_text()


def test_an_undecidable_comparison_reads_cannot_tell(small):
    _, _, v = small
    r = _row(v, "direct_effect", "between_intercept")
    # the intercept's own bias is near zero, but its Monte Carlo error at <= 200 replications cannot show it
    assert r.verdict == "cannot_tell" and "needed" in r.note


def test_a_rerun_gives_identical_tables(small, tmp_path):
    out, _, v = small
    before = {p.name: p.read_bytes() for p in (out / "tables").glob("*.csv")}
    stress_test(out.parent / "design.toml", out, jobs=1, quiet=True)
    after = {p.name: p.read_bytes() for p in (out / "tables").glob("*.csv")}
    assert before == after


def test_report_shows_numbers_and_embeds_every_figure(small):
    out, report, _ = small
    text = report.read_text()
    assert "simulate stress-test" in text and "seed" in text and "simulate 0." in text
    assert "Baseline: every assumption holds" in text and "2SLS" in text and "MBTSLS" in text
    assert "Would the data have warned you?" in text
    n_imgs = text.count("<img ")
    assert n_imgs == 4  # bias and coverage of the two swept dials
    assert text.count("data:image/png;base64,") == n_imgs
    md = (out / "report.md").read_text()
    for f in re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", md):
        assert (out / f).exists()
    assert "has no effect with a binary treatment" in md  # mediator curvature, 2 arms
    assert "applies to binary mediators only" in md  # defiers
    assert "needs a second, continuous mediator" in md  # paths with P = 1
    assert "left out in [stress.dials]" in md
    assert "2SLS breaks" in md or "Pooled Wald breaks first" in md
    assert not list((out / "figures").glob("*.pdf"))  # PNG only unless --pdf


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("needs a headless Chromium: install Debian's 'chromium' package (.ci/run does)")
    return path


def test_report_renders_in_headless_chromium_with_every_figure_loaded(small, tmp_path):
    _, report, _ = small
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    res = subprocess.run([_chromium(), *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=180)
    total = re.search(r'data-figures-total="(\d+)"', res.stdout)
    loaded = re.search(r'data-figures-loaded="(\d+)"', res.stdout)
    assert total and loaded, res.stdout[-500:]
    assert int(total.group(1)) == 4 and int(loaded.group(1)) == 4
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, "--window-size=1200,1600", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page, not a blank one


# ---------------------------------------------------------------------------
# Designs and settings
# ---------------------------------------------------------------------------


def test_bad_stress_tables_are_one_line_errors(tmp_path, capsys):
    p = tmp_path / "d.toml"
    p.write_text(DESIGN.replace("reps = 60", "repz = 60"))
    with pytest.raises(StressError, match=r"stress.repz: unknown key; did you mean 'stress.reps'\?"):
        read_design(p)
    p.write_text(DESIGN.replace("within_site_correlation = 0.8", "within_site_corelation = 0.8"))
    assert cli.main(["stress-test", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "stress.dials.within_site_corelation: unknown dial" in err
    assert not (tmp_path / "o").exists()
    p.write_text(DESIGN + '\n[grid]\n"n_sites" = [10, 20]\n')
    with pytest.raises(StressError, match="has no \\[grid\\]"):
        read_design(p)
    p.write_text(DESIGN.replace("max_reps = 200", "max_reps = 10"))
    with pytest.raises(StressError, match=r"stress.max_reps: must be in reps \(60\)"):
        read_design(p)
    with pytest.raises(StressError, match="no such file or bundled design"):
        read_design("no_such_design")


def test_bundled_designs_are_found_by_name():
    raw, settings = read_design("flagship")
    assert raw["name"] == "flagship" and settings.reps == 150


def test_the_flagship_design_plans_every_dial():
    raw, settings = read_design(ROOT / "scenarios" / "designs" / "flagship.toml")
    sweeps = plan_sweeps(raw, settings, "flagship")
    assert [s.dial.key for s in sweeps if s.skipped is None] == [
        "spillover", "spillover_treated", "direct_effect", "mediator_curvature", "outcome_curvature", "mediator_paths",
        "path_site_correlation", "selection", "within_site_correlation", "defiers", "rank", "between_site_correlation",
        "nonlinear_dependence", "cross_dependence", "curvature_heterogeneity"]
    for s in (s for s in sweeps if s.skipped is None):
        assert s.values[0][0] == 0.0 or s.dial.key == "rank"
        assert np.all(np.diff(s.values[0]) > 0) or s.dial.key == "rank"
    # the flagship's defiers gain what compliers gain: the sweep gives them an effect of their own
    d = {s.dial.key: s for s in sweeps}["defiers"]
    assert any("defiers' effect of takeup" in c for c in d.changes)


def test_the_paths_dial_adds_a_path_only_where_the_design_has_room(tmp_path):
    from simulate.scenario import from_dict

    root = ROOT / "scenarios"
    # MTO: its own path 1 -> 2 leaves no pair; the dial is skipped with the reason, every other dial plans
    raw, settings = read_design(root / "mto.toml")
    sweeps = {s.dial.key: s for s in plan_sweeps(raw, settings, "mto")}
    assert "own paths (1 -> 2) leave no pair" in sweeps["mediator_paths"].skipped
    # three continuous mediators with a path 1 -> 2: the new path goes 1 -> 3 and every cell is a valid scenario
    three = tmp_path / "three.toml"
    three.write_text('''
n_sites = 30
n_per_site = 100
[mediators]
names = ["a", "b", "c"]
[site]
compliance_mean = [1.0, 0.8, 0.6]
effect_mean = 0.3
[[paths]]
from = 1
to = 2
mean = 0.3
''', encoding="utf-8")
    raw, settings = read_design(three)
    sw = {s.dial.key: s for s in plan_sweeps(raw, settings, "three")}["mediator_paths"]
    assert sw.skipped is None and sw.paths == ["paths[2].mean", "paths[2].person_sd"]
    assert (sw.plan.raw["paths"][1]["from"], sw.plan.raw["paths"][1]["to"]) == (1, 3)
    from_dict(sw.raw_at(1.0), "three")


def test_every_library_design_without_a_grid_plans_a_valid_stress_test():
    from simulate.stress import _cells

    root = ROOT / "scenarios"
    designs = [p for p in sorted(root.rglob("*.toml")) if "[grid]" not in p.read_text(encoding="utf-8")]
    assert len(designs) >= 5
    for path in designs:
        raw, settings = read_design(path)
        sweeps = plan_sweeps(raw, settings, str(path))
        for sw in sweeps:
            if sw.skipped is None:
                _cells(sw, str(path))  # every cell a valid scenario, before any work
        assert sum(sw.skipped is None for sw in sweeps) >= 6, path.name


def test_each_assumption_is_defined_once_and_the_readme_table_names_every_one():
    from simulate.assumptions import ASSUMPTIONS

    keys = [a.key for a in ASSUMPTIONS]
    assert len(keys) == len(set(keys)) == 18
    numerals = {a.numeral for a in ASSUMPTIONS}
    assert numerals == {"i", "ii", "iii", "iv", "v", "vi", "vii.a", "vii.b", "viii", "ix"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for a in ASSUMPTIONS:
        assert f"| {a.numeral} " in readme, a.numeral
