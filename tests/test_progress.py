"""What a user sees during a run: the estimate from the first replication, lines without a terminal, the warm-up."""

import io
import re
import time

import pandas as pd
import pytest

from simulate import runner as rn
from simulate.progress import Progress, clock_text
from simulate.runner import RunConfig, run
from simulate.store import read_rows

SMALL = """
name = "small"
n_sites = 6
n_per_site = 30
[mediators]
count = 1
[site]
compliance_sd = 0.4
effect_sd = 0.1
"""


class Clock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def test_the_estimate_starts_with_the_first_replication():
    clock = Clock(100.0)  # say 100 s of compilation and start-up went before
    p = Progress(100, tty=False, stream=io.StringIO(), clock=clock)
    p.started = clock()
    assert p.eta() is None and "ETA ?" in p.line()
    clock.t = 105.0
    p.update(10, seconds=1.0)  # the first batch began at 104
    clock.t = 106.0
    assert p.eta() == pytest.approx(2.0 / 10 * 90)
    clock.t = 114.0
    p.update(40, seconds=8.0)
    assert p.eta() == pytest.approx(10.0 / 50 * 50)
    assert p.line() == "simulate: progress: 50/100 replications (50%), 0:00:14 elapsed, ETA 0:00:10"
    p.update(50)
    assert p.eta() == 0.0


def test_the_clock_never_starts_before_the_progress():
    clock = Clock(10.0)
    p = Progress(10, tty=False, stream=io.StringIO(), clock=clock)
    p.started = clock()
    clock.t = 11.0
    p.update(5, seconds=30.0)  # a batch that says it took longer than the run so far
    assert p.origin == 10.0


def test_clock_text():
    assert clock_text(None) == "?" and clock_text(float("inf")) == "?"
    assert clock_text(3725.4) == "1:02:05" and clock_text(-1) == "0:00:00"


def test_lines_at_a_steady_interval_without_a_terminal():
    stream = io.StringIO()
    with Progress(40, tty=False, stream=stream, interval=0.05) as p:
        p.update(10, seconds=0.01)
        time.sleep(0.4)  # no batch finishes meanwhile: the lines come all the same
        p.update(30, seconds=0.01)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3
    assert all(re.fullmatch(r"simulate: progress: [\d,]+/40 replications \(\d+%\), \d:\d\d:\d\d elapsed, "
                            r"ETA (\?|\d:\d\d:\d\d)", line) for line in lines), lines
    assert lines[0].startswith("simulate: progress: 10/40") and lines[-1].startswith("simulate: progress: 40/40")


def test_quiet_or_nothing_to_do_shows_nothing():
    for p in (Progress(40, quiet=True, tty=False, stream=io.StringIO(), interval=0.01),
              Progress(0, tty=False, stream=io.StringIO(), interval=0.01)):
        with p:
            time.sleep(0.05)
            p.update(0)
        assert p.stream.getvalue() == "" and p.mode == "off"


def test_a_short_run_without_a_terminal_prints_no_line():
    stream = io.StringIO()
    with Progress(4, tty=False, stream=stream, interval=30) as p:
        p.update(4, seconds=0.1)
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_bar_with_the_estimate():
    stream = io.StringIO()
    with Progress(20, tty=True, stream=stream) as p:
        p.update(10, seconds=0.5)
        time.sleep(0.15)
        p.update(5, seconds=0.5)
    text = stream.getvalue()
    assert "replications" in text and "15/20" in text and re.search(r"ETA \d\d:\d\d, [\d.]+ rep/s", text), text


# ---------------------------------------------------------------------------
# Through the runner
# ---------------------------------------------------------------------------


def _scenario(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SMALL)
    return path


def _slow_parts(monkeypatch, seconds=0.1):
    real = rn._write_part

    def slow(*a, **k):
        time.sleep(seconds)
        return real(*a, **k)

    monkeypatch.setattr(rn, "_write_part", slow)


def test_a_run_without_a_terminal_prints_progress_lines_after_the_warm_up(tmp_path, capsys, monkeypatch):
    def warm_up(cells, quiet=False):  # stands for a compilation of 1.5 s
        time.sleep(1.5)
        return {"compiled": True, "seconds": 1.5}

    monkeypatch.setattr(rn, "_warm_up", warm_up)
    _slow_parts(monkeypatch)
    cfg = RunConfig(reps=20, seed=1, chunk=2, progress_interval=0.1)
    manifest = run(_scenario(tmp_path), tmp_path / "run", cfg, truth_sites=10_000)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("simulate: progress:")]
    assert len(lines) >= 3, lines
    assert lines[0].split(", ")[1] == "0:00:00 elapsed"  # the warm-up's 1.5 s are not in it
    assert lines[-1].startswith("simulate: progress: 20/20 replications (100%)")
    assert manifest["runs"][-1]["kernels_compiled"] is True
    assert manifest["runs"][-1]["warm_up_seconds"] == 1.5


def test_the_compile_message_only_when_compiling(tmp_path, capsys, monkeypatch):
    message = "simulate: compiling kernels (first run only, about"
    monkeypatch.setattr(rn, "_kernels_loaded", lambda: False)
    for cached, quiet, shown in [(False, False, True), (True, False, False), (False, True, False)]:
        monkeypatch.setattr(rn, "_kernels_cached", lambda cached=cached: cached)
        out = tmp_path / f"run-{cached}-{quiet}"
        manifest = run(_scenario(tmp_path), out, RunConfig(reps=3, quiet=quiet), truth_sites=10_000)
        err = capsys.readouterr().err
        assert (message in err) is shown, err
        assert manifest["runs"][-1]["kernels_compiled"] is (not cached)
        assert manifest["runs"][-1]["warm_up_seconds"] >= 0


def test_the_warm_up_changes_no_row(tmp_path, monkeypatch):
    path = _scenario(tmp_path)
    run(path, tmp_path / "warm", RunConfig(reps=8, seed=4, quiet=True), truth_sites=10_000)
    monkeypatch.setattr(rn, "_warm_up", lambda cells, quiet=False: {})
    run(path, tmp_path / "cold", RunConfig(reps=8, seed=4, quiet=True), truth_sites=10_000)
    pd.testing.assert_frame_equal(read_rows(tmp_path / "warm"), read_rows(tmp_path / "cold"), check_exact=True)


def test_the_warm_up_compiles_the_grids_mediator_kinds(monkeypatch):
    from simulate import warmup
    from simulate.scenario import GridCell, from_dict

    def cell(i, kinds):
        sc = from_dict({"name": "c", "n_sites": 6, "n_per_site": 20,
                        "mediators": {"count": len(kinds), "kind": kinds}})
        return GridCell(i, (), sc)

    asked = []
    monkeypatch.setattr(warmup, "warm_up", lambda continuous, binary: asked.append((continuous, binary)))
    rn._warm_up([cell(0, ["continuous"]), cell(1, ["binary", "binary"])], quiet=True)
    rn._warm_up([cell(0, ["continuous", "continuous"])], quiet=True)
    rn._warm_up([cell(0, ["binary"])], quiet=True)
    assert asked == [(True, True), (True, False), (False, True)]

def test_kernels_loaded_in_this_process_are_not_compiled_again(tmp_path, capsys, monkeypatch):
    run(_scenario(tmp_path), tmp_path / "first", RunConfig(reps=2, quiet=True), truth_sites=10_000)
    monkeypatch.setattr(rn, "_kernels_cached", lambda: False)  # say, a cache folder that cannot be written
    assert rn._kernels_loaded()
    manifest = run(_scenario(tmp_path), tmp_path / "second", RunConfig(reps=2), truth_sites=10_000)
    assert "compiling kernels" not in capsys.readouterr().err
    assert manifest["runs"][-1]["kernels_compiled"] is False

