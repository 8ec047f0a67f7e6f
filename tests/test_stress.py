"""The stress test: verdicts on known answers, the report, and its rendering in a browser."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulate import cli
from simulate.stress import StressError, plan_sweeps, read_design, stress_test, verdicts


def _summary(bias, mcse, coverage, cov_mcse, theta=0.5, est="2sls", med="M1"):
    rows = []
    for cell, (b, m, c, cm) in enumerate(zip(bias, mcse, coverage, cov_mcse)):
        rows += [dict(cell=cell, estimator=est, mediator=med, target="none", measure="mean_estimate",
                      value=theta + b, mcse=m, n_reps=100),
                 dict(cell=cell, estimator=est, mediator=med, target="ate", measure="bias", value=b, mcse=m,
                      n_reps=100),
                 dict(cell=cell, estimator=est, mediator=med, target="ate", measure="coverage", value=c, mcse=cm,
                      n_reps=100)]
    return pd.DataFrame(rows)


def test_verdict_logic_uses_the_monte_carlo_error():
    kinds = {"M1": "continuous"}
    # bias 0.08 > 0.05 tolerance, but within 1.96 MCSE of it: not yet; 0.2 clearly beyond
    s = _summary([0.0, 0.08, 0.2], [0.02, 0.02, 0.02], [0.95, 0.93, 0.80], [0.02, 0.02, 0.02])
    v = verdicts(s, [0.0, 0.5, 1.0], kinds, tolerance=0.1, coverage_floor=0.9).iloc[0]
    assert v.bias_threshold == 1.0 and v.coverage_threshold == 1.0 and v.first_threshold == 1.0
    # coverage 0.87 +- 0.02: 0.87 + 0.039 > 0.90, not decided below the floor
    s = _summary([0.0, 0.0, 0.0], [0.02] * 3, [0.95, 0.87, 0.85], [0.02] * 3)
    v = verdicts(s, [0.0, 0.5, 1.0], kinds, tolerance=0.1, coverage_floor=0.9).iloc[0]
    assert v.bias_threshold is None and v.coverage_threshold == 1.0
    s = _summary([0.0, 0.01, -0.01], [0.02] * 3, [0.95] * 3, [0.02] * 3)
    v = verdicts(s, [0.0, 0.5, 1.0], kinds, tolerance=0.1, coverage_floor=0.9).iloc[0]
    assert v.first_threshold is None and v.verdict == "no threshold reached up to 1"
    s = _summary([0.3, 0.3, 0.3], [0.01] * 3, [0.95] * 3, [0.01] * 3)
    v = verdicts(s, [0.0, 0.5, 1.0], kinds, tolerance=0.1, coverage_floor=0.9).iloc[0]
    assert v.first_threshold == 0.0 and "already where the assumption holds" in v.verdict


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
seed = 3
steps = 3
truth_sites = 20000
[stress.dials]
spillover = false
direct_effect = false
outcome_curvature = false
selection = false
rank = false
between_site_correlation = false
nonlinear_dependence = false
within_site_correlation = 0.8
"""


@pytest.fixture(scope="module")
def stress_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("stress")
    design = d / "design.toml"
    design.write_text(DESIGN)
    out = d / "out"
    report = stress_test(design, out, jobs=2, quiet=True)
    return out, report


def test_known_answers_within_site_correlation(stress_dir):
    out, _ = stress_dir
    v = pd.read_csv(out / "tables" / "within_site_correlation_verdicts.csv")
    row = lambda est: v[v.estimator == est].iloc[0]  # noqa: E731
    # corr(Gamma, Delta) = 0.8 with sd 0.5 and 0.5 moves 2SLS by 0.2 / E[gamma] ~ 40% of the effect
    assert row("2sls").first_threshold == 0.4 or row("2sls").first_threshold == 0.8
    assert "bias beyond 10%" in row("2sls").verdict
    # the covariance is the same in every site, so the intercept absorbs it: cannot bias between_intercept
    assert row("between_intercept").verdict.startswith("no threshold reached up to 0.8")


def test_dials_that_do_not_apply_are_said_so(stress_dir):
    out, _ = stress_dir
    md = (out / "report.md").read_text()
    assert "has no effect with a binary treatment" in md  # mediator curvature, 2 arms
    assert "applies to binary mediators only" in md  # defiers
    assert "needs a second, continuous mediator" in md  # paths with P = 1
    assert "left out in [stress.dials]" in md


def test_report_states_settings_and_embeds_every_figure(stress_dir):
    out, report = stress_dir
    text = report.read_text()
    assert "simulate stress-test" in text and "seed" in text and "simulate 0." in text
    n_imgs = text.count("<img ")
    assert n_imgs == 2  # bias and coverage of the one swept dial
    assert text.count("data:image/png;base64,") == n_imgs
    for f in re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", (out / "report.md").read_text()):
        assert (out / f).exists()


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, capture_output=True,
                       timeout=1200)
        path = shutil.which("chromium")
    assert path, "chromium is needed for this test (Debian package 'chromium')"
    return path


def test_report_renders_in_headless_chromium_with_every_figure_loaded(stress_dir, tmp_path):
    _, report = stress_dir
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    res = subprocess.run([_chromium(), *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=180)
    total = re.search(r'data-figures-total="(\d+)"', res.stdout)
    loaded = re.search(r'data-figures-loaded="(\d+)"', res.stdout)
    assert total and loaded, res.stdout[-500:]
    assert int(total.group(1)) == 2 and int(loaded.group(1)) == 2
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, "--window-size=1200,1600", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page, not a blank one


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


def test_the_flagship_design_plans_every_dial():
    raw, settings = read_design(Path(__file__).parent.parent / "scenarios" / "designs" / "flagship.toml")
    sweeps = plan_sweeps(raw, settings, "flagship")
    assert [s.dial.key for s in sweeps if s.skipped is None] == [
        "spillover", "direct_effect", "mediator_curvature", "outcome_curvature", "mediator_paths", "selection",
        "within_site_correlation", "defiers", "rank", "between_site_correlation", "nonlinear_dependence"]
    for s in sweeps:
        assert s.values[0][0] == 0.0 or s.dial.key == "rank"
        assert np.all(np.diff(s.values[0]) > 0) or s.dial.key == "rank"


def test_the_paths_dial_adds_a_path_only_where_the_design_has_room(tmp_path):
    from simulate.scenario import from_dict

    root = Path(__file__).parent.parent / "scenarios"
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
    assert (sw.raw["paths"][1]["from"], sw.raw["paths"][1]["to"]) == (1, 3)
    from_dict({k: v for k, v in sw.raw.items() if k != "stress"}, "three")


def test_every_library_design_without_a_grid_plans_a_valid_stress_test():
    from simulate.stress import _cells

    root = Path(__file__).parent.parent / "scenarios"
    designs = [p for p in sorted(root.rglob("*.toml")) if "[grid]" not in p.read_text(encoding="utf-8")]
    assert len(designs) >= 5
    for path in designs:
        raw, settings = read_design(path)
        sweeps = plan_sweeps(raw, settings, str(path))
        for sw in sweeps:
            if sw.skipped is None:
                _cells(sw, str(path))  # every cell a valid scenario, before any work
        assert sum(sw.skipped is None for sw in sweeps) >= 6, path.name
