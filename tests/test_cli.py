"""The ``simulate`` command as a new user meets it: validate, truth, draw, list, show.

Most tests call :func:`simulate.cli.main` in-process (fast); a few run the real console
command to check exit codes and that no traceback reaches the terminal.
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simulate import cli
from simulate.scenario import load, validate_file

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted(p.stem for p in (ROOT / "scenarios").glob("*.toml"))
TRACEBACK = re.compile(r"Traceback|File \".*\", line \d+")
SITES = "20000"  # enough for the site moments in a test, far fewer than the default million


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _strict_json(text: str):
    """Parse JSON as RFC 8259 does: NaN and Infinity are not JSON."""
    def reject(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=reject)


TWO_MEDIATORS = """\
name = "two"
n_sites = 20
n_per_site = 60
[mediators]
names = ["income", "hours"]
[site]
compliance_mean = [1.0, 0.6]
compliance_sd = [0.4, 0.3]
effect_mean = [0.5, 0.25]
[person]
confounding = 0.3
"""


# ---------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------


def test_validate_ok(tmp_path, capsys):
    path = _write(tmp_path, TWO_MEDIATORS)
    code, out, err = _run(capsys, "validate", str(path))
    assert (code, out, err) == (0, "ok\n", "")


def test_validate_grid_counts_cells(capsys):
    code, out, err = _run(capsys, "validate", str(ROOT / "scenarios" / "binary_defiers.toml"))
    assert (code, out, err) == (0, "ok (3 grid cells)\n", "")


def test_validate_fewer_sites_than_mediators_warns(tmp_path, capsys):
    path = _write(tmp_path, "n_sites = 2\n[mediators]\ncount = 3\n")
    code, out, err = _run(capsys, "validate", str(path))
    assert code == 0
    assert out == "ok\n"
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: warning: n_sites: ")
    assert "3 mediators" in lines[0] and "assumption viii" in lines[0]


def test_validate_warns_for_a_grid_cell_with_fewer_sites_than_mediators(tmp_path, capsys):
    # the first cell is identified, the second is not: its warning must reach the user too
    path = _write(tmp_path, """
        n_sites = 4
        [mediators]
        count = 3
        [grid]
        "n_sites" = [4, 2]
    """)
    code, out, err = _run(capsys, "validate", str(path))
    assert code == 0
    assert out == "ok (2 grid cells)\n"
    assert "warning" in err and "3 mediators" in err


def test_validate_typo_real_process(tmp_path):
    path = _write(tmp_path, "n_sites = 20\n[site]\neffect_sdd = 0.1\n")
    res = subprocess.run([sys.executable, "-m", "simulate.cli", "validate", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr == f"{path}: site.effect_sdd: unknown key; did you mean 'site.effect_sd'?\n"


def test_validate_invalid_correlation_matrix(tmp_path, capsys):
    path = _write(tmp_path, """
        [mediators]
        count = 2
        [site.correlations]
        "compliance_1:compliance_2" = 0.9
        "compliance_1:effect_1" = 0.9
        "compliance_2:effect_1" = -0.9
    """)
    code, out, err = _run(capsys, "validate", str(path))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"{path}: site.correlations: the correlation matrix of ")
    assert "not positive semi-definite" in err


@pytest.mark.parametrize("command", ["validate", "truth", "draw"])
def test_unknown_file_one_line_exit_2(command, tmp_path, capsys):
    missing = str(tmp_path / "nope.toml")
    code, out, err = _run(capsys, command, missing)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(missing)
    assert not TRACEBACK.search(err)


def test_missing_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["validate"])
    assert info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_console_command_missing_argument_and_no_command():
    for argv in (["truth"], []):
        res = subprocess.run([sys.executable, "-m", "simulate.cli", *argv], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 2
        assert res.stdout == ""
        assert len(res.stderr.splitlines()) == 1, res.stderr  # one line naming the problem, not the usage
        assert "required" in res.stderr and "--help" in res.stderr
        assert not TRACEBACK.search(res.stderr)


# ---------------------------------------------------------------------------
# truth
# ---------------------------------------------------------------------------


def test_truth_json_fields_and_ate(tmp_path, capsys):
    path = _write(tmp_path, TWO_MEDIATORS)
    code, out, err = _run(capsys, "truth", str(path), "--json", "--sites", SITES)
    assert code == 0, err
    rec = json.loads(out)
    assert rec["scenario"] == "two"
    assert rec["hash"] == load(path).hash
    assert rec["grid"] == {}
    # every assumption holds: the limits are exact (quadrature of polynomials), no site simulated, error 0
    assert rec["n_sites_simulated"] == 0 and rec["limit_method"] == "closed form"
    assert all(m[f"{lim}_se"] == 0.0 for m in rec["mediators"] for lim in ("limit_2sls", "limit_liml"))
    meds = rec["mediators"]
    assert [m["mediator"] for m in meds] == ["income", "hours"]
    for m in meds:
        assert {"ate", "late", "compliance_weighted", "limit_2sls"} <= set(m)
    assert [m["ate"] for m in meds] == [0.5, 0.25]
    # every assumption holds: the compliance-weighted estimand and the 2SLS limit are the ATE
    for m, ate in zip(meds, (0.5, 0.25)):
        assert m["compliance_weighted"] == pytest.approx(ate, abs=1e-9)
        assert m["limit_2sls"] == pytest.approx(ate, abs=1e-6)


def test_truth_json_is_strict_json(tmp_path, capsys):
    # continuous mediators have no LATE; a missing value must be written as null, not as NaN,
    # which strict JSON readers (jq, JavaScript, ...) reject
    path = _write(tmp_path, TWO_MEDIATORS)
    code, out, _ = _run(capsys, "truth", str(path), "--json", "--sites", SITES)
    assert code == 0
    rec = _strict_json(out)
    assert rec["mediators"][0]["late"] is None


def test_truth_late_for_a_binary_mediator(capsys):
    code, out, err = _run(capsys, "truth", "binary_defiers", "--json", "--sites", SITES)
    assert code == 0, err
    recs = json.loads(out)
    assert isinstance(recs, list) and len(recs) == 3
    for rec in recs:
        m = rec["mediators"][0]
        # persons weighted equally: the ATE is effect_mean plus the defiers' share times their shift
        assert m["ate"] == pytest.approx(0.4 - 0.3 * rec["grid"]["binary.defier_share"], abs=1e-12)
        assert math.isfinite(m["late"])
    assert [r["grid"]["binary.defier_share"] for r in recs] == [0.0, 0.05, 0.1]
    # within-site correlation 0.3: compliers gain more, LATE above the ATE without defiers
    assert recs[0]["mediators"][0]["late"] > 0.4


def test_truth_grid_one_record_per_cell(tmp_path, capsys):
    path = _write(tmp_path, """
        name = "g"
        n_sites = 20
        [site]
        effect_mean = 0.5
        [grid]
        "site.effect_mean" = [0.1, 0.2, 0.3]
        "n_sites" = [20, 40]
    """)
    code, out, err = _run(capsys, "truth", str(path), "--json", "--sites", SITES)
    assert code == 0, err
    recs = json.loads(out)
    assert len(recs) == 6
    assert [r["grid"] for r in recs] == [{"site.effect_mean": e, "n_sites": k}
                                        for e in (0.1, 0.2, 0.3) for k in (20, 40)]
    assert [r["mediators"][0]["ate"] for r in recs] == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]
    assert [r["hash"] for r in recs] == [c.hash for c in validate_file(path)]
    assert len({r["hash"] for r in recs}) == 6


def test_truth_table_output(capsys):
    code, out, err = _run(capsys, "truth", "within_site_correlation", "--sites", SITES)
    assert code == 0, err
    # one block per grid cell, each headed by the scenario name and its hash
    heads = [line for line in out.splitlines() if line.startswith("within_site_correlation [")]
    assert len(heads) == 4
    assert "person.within_site_correlation = 0.75" in heads[3]
    assert len(re.findall(r"\bATE\b", out)) == 4


def test_truth_too_few_sites_is_a_usage_error(capsys):
    code, out, err = _run(capsys, "truth", "baseline", "--sites", "10")
    assert code == 2 and out == ""
    assert err == "--sites: must be at least 1000, got 10\n"


def test_truth_invalid_file_one_line(capsys):
    path = ROOT / "tests" / "invalid" / "38_site_correlations_not_psd.toml"
    code, out, err = _run(capsys, "truth", str(path), "--sites", SITES)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "not positive semi-definite" in err


# ---------------------------------------------------------------------------
# list and show
# ---------------------------------------------------------------------------


def test_list_names_bundled(capsys):
    code, out, err = _run(capsys, "list")
    assert code == 0 and err == ""
    names = [line.split()[0] for line in out.splitlines()]
    assert names == BUNDLED
    assert "baseline" in names
    assert "Every assumption holds" in out


def test_show_baseline(capsys):
    code, out, err = _run(capsys, "show", "baseline", "--sites", SITES)
    assert code == 0, err
    text = (ROOT / "scenarios" / "baseline.toml").read_text(encoding="utf-8").rstrip()
    assert out.startswith(text)
    assert f"baseline [{load(ROOT / 'scenarios' / 'baseline.toml').hash}]" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  income")
            or line.startswith("  hours")}
    assert float(rows["income"][1]) == 0.5 and float(rows["hours"][1]) == 0.25


def test_show_unknown_name(capsys):
    code, out, err = _run(capsys, "show", "no_such_scenario")
    assert code == 2 and out == ""
    assert err == "no_such_scenario: no bundled scenario of that name (simulate list names them)\n"


# ---------------------------------------------------------------------------
# draw
# ---------------------------------------------------------------------------


def test_draw_writes_csv_and_is_reproducible(tmp_path, capsys):
    path = _write(tmp_path, TWO_MEDIATORS)
    out1, out2, out3 = tmp_path / "x.csv", tmp_path / "y.csv", tmp_path / "z.csv"
    code, _, err = _run(capsys, "draw", str(path), "--seed", "1", "--out", str(out1))
    assert code == 0
    assert err == f"wrote 1,200 persons in 20 sites to {out1}\n"
    with out1.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["site", "treatment", "income", "hours", "outcome"]
    assert len(rows) == 1 + 20 * 60
    assert all(len(r) == 5 for r in rows)
    assert {int(r[0]) for r in rows[1:]} == set(range(20))
    # complete randomization, share 0.5: exactly 30 treated in each site
    treated = [sum(int(r[1]) for r in rows[1:] if int(r[0]) == s) for s in range(20)]
    assert treated == [30] * 20
    assert all(math.isfinite(float(x)) for r in rows[1:] for x in r[2:])

    assert _run(capsys, "draw", str(path), "--seed", "1", "--out", str(out2))[0] == 0
    assert out1.read_bytes() == out2.read_bytes()
    assert _run(capsys, "draw", str(path), "--seed", "2", "--out", str(out3))[0] == 0
    assert out1.read_bytes() != out3.read_bytes()


def test_draw_to_stdout_matches_file(tmp_path, capsys):
    path = _write(tmp_path, TWO_MEDIATORS)
    code, out, _ = _run(capsys, "draw", str(path), "--seed", "7")
    assert code == 0
    target = tmp_path / "x.csv"
    _run(capsys, "draw", str(path), "--seed", "7", "--out", str(target))
    assert out.replace("\r\n", "\n") == target.read_text().replace("\r\n", "\n")
    assert len(out.splitlines()) == 1 + 1200


def test_draw_bundled_by_name_with_sizes_range(tmp_path, capsys):
    path = _write(tmp_path, "n_sites = 5\nn_per_site = {min = 10, max = 30}\n")
    target = tmp_path / "r.csv"
    code, _, err = _run(capsys, "draw", str(path), "--seed", "3", "--out", str(target))
    assert code == 0, err
    with target.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    per_site = [sum(1 for r in rows if int(r[0]) == s) for s in range(5)]
    assert all(10 <= n <= 30 for n in per_site)
    assert err == f"wrote {len(rows):,} persons in 5 sites to {target}\n"


def test_draw_grid_file_is_a_usage_error(capsys):
    path = ROOT / "scenarios" / "within_site_correlation.toml"
    code, out, err = _run(capsys, "draw", str(path), "--seed", "1")
    assert code == 2 and out == ""
    assert err == f"{path}: has a grid of 4 cells; draw takes a scenario without [grid]\n"


def test_draw_real_process(tmp_path):
    path = _write(tmp_path, "n_sites = 3\nn_per_site = 10\n")
    target = tmp_path / "p.csv"
    res = subprocess.run([sys.executable, "-m", "simulate.cli", "draw", str(path), "--seed", "1", "--out",
                          str(target)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = target.read_text().splitlines()
    assert lines[0] == "site,treatment,M1,outcome"
    assert len(lines) == 31


# ---------------------------------------------------------------------------
# errors: one line, exit 2 for what the user can fix, "internal error" only for bugs
# ---------------------------------------------------------------------------

TINY_RUN = "n_sites = 4\nn_per_site = 20\n[site]\ncompliance_sd = 0.4\n"
HUGE = str(10**400)


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert "internal error" not in lines[0] and not TRACEBACK.search(lines[0])
    return lines[0]


@pytest.mark.parametrize("argv, start", [
    (["--reps", "10000000000"], "--reps: at most 100,000,000 replications per grid cell, got 10000000000"),
    (["--reps", HUGE], "--reps: at most 100,000,000 replications per grid cell, got a 401-digit integer"),
    (["--reps", "3", "--jobs", "999"], "--jobs: at most 4 per core"),
    (["--reps", "3", "--jobs", HUGE], "--jobs: at most 4 per core"),
    (["--reps", "3", "--seed", "-1"], "--seed: must be an integer in [0, 2^63), got -1"),
    (["--reps", "3", "--seed", HUGE], "--seed: must be an integer in [0, 2^63), got a 401-digit integer"),
    (["--reps", "3", "--chunk", HUGE], "--chunk: at most 10,000 replications per task"),
    (["--reps", "3", "--truth-sites", HUGE], "--truth-sites: must be at most 100,000,000, got a 401-digit"),
])
def test_run_bounds_are_checked_before_the_directory_is_made(tmp_path, capsys, argv, start):
    path = _write(tmp_path, TINY_RUN)
    out = tmp_path / "never"
    t0 = __import__("time").monotonic()
    code, _, err = _run(capsys, "run", str(path), "--out", str(out), "--quiet", *argv)
    assert code == 2
    assert _one_error_line(err).startswith(start), err
    assert not out.exists()
    assert __import__("time").monotonic() - t0 < 10  # no process started, no memory taken


def test_draw_and_truth_bounds(tmp_path, capsys):
    path = _write(tmp_path, TINY_RUN)
    for argv, msg in ((["draw", str(path), "--seed", "-1"], "--seed: must be an integer in [0, 2^63), got -1"),
                      (["draw", str(path), "--seed", HUGE], "--seed: must be an integer in [0, 2^63), got a 401"),
                      (["truth", str(path), "--sites", HUGE], "--sites: must be at most 100,000,000, got a 401")):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and out == ""
        assert _one_error_line(err).startswith(msg)


def test_run_out_is_a_file_or_under_a_file(tmp_path, capsys):
    path = _write(tmp_path, TINY_RUN)
    for out, msg in ((path, f"{path}: is a file, not a directory; choose another --out"),
                     (path / "sub", f"{path / 'sub'}: a part of the path is a file, not a directory; choose another")):
        code, _, err = _run(capsys, "run", str(path), "--reps", "2", "--out", str(out), "--quiet")
        assert code == 2
        assert _one_error_line(err).startswith(msg)


def test_run_out_not_writable(tmp_path, capsys, monkeypatch):
    # as root chmod does not stop a write: the refusal is emulated where the directory is made
    import errno

    path = _write(tmp_path, TINY_RUN)
    out = tmp_path / "ro" / "run"
    real = Path.mkdir

    def refuse(self, *a, **kw):
        if self == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, _, err = _run(capsys, "run", str(path), "--reps", "2", "--out", str(out), "--quiet")
    assert code == 2
    assert _one_error_line(err) == f"{out}: permission denied; choose another --out"


def test_draw_to_a_missing_directory_is_one_line(tmp_path, capsys):
    path = _write(tmp_path, TINY_RUN)
    target = tmp_path / "no" / "x.csv"
    code, _, err = _run(capsys, "draw", str(path), "--out", str(target))
    assert code == 2
    line = _one_error_line(err)
    assert "no such file or directory" in line or "non-existent directory" in line


@pytest.mark.parametrize("command", ["validate", "truth", "run", "draw"])
def test_toml_nested_too_deeply_is_one_line_naming_the_file(tmp_path, capsys, command):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 3000 + "]" * 3000 + "\n")
    extra = ["--reps", "2", "--out", str(tmp_path / "o")] if command == "run" else []
    code, _, err = _run(capsys, command, str(path), *extra)
    assert code == 2
    line = _one_error_line(err)
    assert line.startswith(f"{path}: ") and "deep" in line


def test_a_newline_in_a_grid_path_stays_on_one_line(tmp_path, capsys):
    path = _write(tmp_path, TINY_RUN + '[grid]\n"site.effect\\nmean" = [0.1, 0.2]\n')
    for argv in (["validate", str(path)], ["run", str(path), "--reps", "2", "--out", str(tmp_path / "o")]):
        code, _, err = _run(capsys, *argv)
        assert code == 2
        assert "\\n" in _one_error_line(err)


def test_an_internal_error_says_it_is_a_bug(capsys, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("line one\nline two")

    monkeypatch.setattr(cli.scenarios, "cmd_list", broken)
    code, _, err = _run(capsys, "list")
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("simulate: internal error: ZeroDivisionError: line one\\nline two (a bug: please report")
    assert "simulate --version" in lines[0]


def test_every_user_error_class_is_handled_as_one():
    from simulate.errors import RunError, SimulateError
    from simulate.runner import RunError as RunnerRunError

    assert RunnerRunError is RunError and issubclass(RunError, SimulateError)
    assert issubclass(cli.UsageError, SimulateError) and issubclass(SimulateError, ValueError)
    # one handler over the one base class: every stage's user-facing error subclasses it
    assert cli.user_errors() == (SimulateError,)
    from simulate.analyze import AnalysisError
    from simulate.calibrate import CalibrationError
    from simulate.estimators import EstimationError
    from simulate.measures import SummaryError
    from simulate.plots import PlotError
    from simulate.scenario import ScenarioError
    from simulate.stress import StressError

    for cls in (ScenarioError, SummaryError, PlotError, StressError, AnalysisError, EstimationError,
                CalibrationError):
        assert issubclass(cls, SimulateError), cls


def test_validate_takes_bundled_names_like_the_other_verbs(capsys):
    code, out, _ = _run(capsys, "validate", "baseline")
    assert code == 0 and out.strip() == "ok"
    code, out, _ = _run(capsys, "validate", "flagship")  # a stress-test design, found under designs/
    assert code == 0 and out.startswith("ok (a stress-test design: 15 dials")
    code, _, err = _run(capsys, "validate", "no_such_scenario")
    assert code == 2 and "no such file or bundled scenario" in err


# ---------------------------------------------------------------------------
# usage errors: one line naming the problem, exit 2; --help is argparse's
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("argv, prog, words", [
    ([], "simulate", "required: COMMAND"),
    (["validate"], "simulate validate", "required: file"),
    (["no-such-command"], "simulate", "invalid choice: 'no-such-command'"),
    (["run", "baseline"], "simulate run", "required: --reps, --out"),
    (["run", "baseline", "--reps", "many", "--out", "o"], "simulate run", "--reps: invalid int value: 'many'"),
    (["truth", "baseline", "--bogus"], "simulate", "unrecognized arguments: --bogus"),
    (["summarize", "d", "--format", "xml"], "simulate summarize", "argument --format: invalid choice: 'xml'"),
    (["calibrate", "f.csv", "--site", "s"], "simulate calibrate", "required: --treatment, --mediator, --outcome"),
])
def test_a_usage_error_is_one_line(capsys, argv, prog, words):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{prog}: error: ") and words in err, err
    assert err.rstrip().endswith(f"(see {prog} --help)")
    assert "usage:" not in err


def test_help_is_unchanged(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: simulate [-h] [--version] COMMAND ...")
    for command in ("validate", "truth", "draw", "run", "list", "show", "analyze", "plot", "summarize", "calibrate",
                    "stress-test", "cache"):
        assert re.search(rf"^    {re.escape(command)}(\s|$)", out, re.M), command
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: simulate run [-h] --reps REPS")


def test_python_dash_m_simulate_is_the_command():
    res = subprocess.run([sys.executable, "-m", "simulate", "list"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert set(BUNDLED) <= {line.split()[0] for line in res.stdout.splitlines()}
    res = subprocess.run([sys.executable, "-m", "simulate", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("simulate ")
    import simulate

    assert res.stdout.strip() == f"simulate {simulate.__version__}"


def test_version_comes_from_the_package_metadata():
    from importlib import metadata

    import simulate

    try:
        expected = metadata.version("simulate")
    except metadata.PackageNotFoundError:  # a source tree without an install: the fallback
        expected = "0+unknown"
    assert simulate.__version__ == expected


def test_cache_prune(capsys, monkeypatch):
    from simulate import kernels

    code, _, err = _run(capsys, "cache")
    assert code == 2 and "give --prune" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(kernels, "prune_cache", lambda: ["a", "b"])
    code, out, _ = _run(capsys, "cache", "--prune")
    assert code == 0 and out.splitlines() == ["removed 2 stale kernel cache folder(s)", "  a", "  b"]


def test_commands_of_other_stages_keep_their_error_prefix(tmp_path, capsys):
    code, out, err = _run(capsys, "plot", str(tmp_path / "nowhere"))
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("simulate plot: error: ") and "no such directory" in err
    code, _, err = _run(capsys, "summarize", str(tmp_path / "nowhere"), "--alpha", "2")
    assert code == 2 and err.strip() == "simulate summarize: error: --alpha must be in (0, 1), got 2.0"
    code, _, err = _run(capsys, "analyze", str(tmp_path / "none.csv"), "--site", "s", "--treatment", "t",
                        "--mediator", "m", "--outcome", "y")
    assert code == 2 and err.startswith("simulate analyze: error: file not found")


def test_stress_test_help_lists_every_dial_of_the_catalogue(capsys):
    from simulate.assumptions import ASSUMPTIONS

    with pytest.raises(SystemExit):
        cli.main(["stress-test", "--help"])
    out = capsys.readouterr().out
    for a in ASSUMPTIONS:
        assert f"{a.key}" in out and f"({a.numeral}) {a.title}" in out, a.key
