"""Fault injection: runs killed, crowded, starved and damaged must leave a directory that ``--resume`` finishes.

Each test ends by finishing the run and comparing its rows with an uninterrupted run's
(bit-identical, :func:`simulate.store.read_rows`).  Runs to be killed are real
processes (``python -m simulate.cli``, each in its own session so that the whole
process group can be cleaned up); they stop at a named point through the runner's
test hook ``SIMULATE_TEST_PAUSE_AT`` (see :mod:`simulate.runner`) and wait there while
a pause file exists.  Resumes run in-process through :func:`simulate.cli.main` (fast).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from simulate import cli
from simulate import runner as rn
from simulate.replicate import ROW_COLUMNS
from simulate.runner import RunConfig, RunError, run
from simulate.store import part_files, read_rows

TINY = """\
name = "tiny"
n_sites = 6
n_per_site = 30
[mediators]
count = 1
[site]
compliance_sd = 0.4
effect_sd = 0.1
"""
REPS = 40
SEED = 3
TRUTH = "10000"
ONE_LINE_2 = "exit 2 with one line"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference(scenario, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    run(scenario, out, RunConfig(reps=REPS, seed=SEED, quiet=True, chunk=REPS), truth_sites=int(TRUTH))
    return out


def _rows(out) -> pd.DataFrame:
    d = read_rows(out)
    return d.sort_values(["cell", "rep", "estimator", "mediator"], kind="stable").reset_index(drop=True)


def assert_same_rows(a, b) -> None:
    ra, rb = _rows(a), _rows(b)
    assert list(ra.columns) == list(ROW_COLUMNS)
    pd.testing.assert_frame_equal(ra, rb, check_exact=True)
    counts = rb.groupby("rep").size()
    assert len(counts) == REPS and counts.nunique() == 1  # every replication exactly once


def _argv(scenario, out, *extra) -> list[str]:
    return ["run", str(scenario), "--reps", str(REPS), "--seed", str(SEED), "--out", str(out),
            "--truth-sites", TRUTH, "--quiet", *extra]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def resume_and_check(capsys, scenario, out, reference) -> str:
    """Finish the run in ``out`` with ``--resume``; its rows must be the reference's; returns stderr."""
    code, _, err = _cli(capsys, *_argv(scenario, out, "--resume"))
    assert code == 0, err
    assert_same_rows(reference, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and (out / "summary.csv").is_file()
    assert _cli(capsys, "summarize", str(out), "--format", "csv")[0] == 0
    return err


class Child:
    """A ``simulate run`` process in its own session, its stderr collected by a thread."""

    def __init__(self, argv, *, pause_at=None, hold: Path | None = None, stdout=subprocess.DEVNULL):
        env = dict(os.environ)
        env.pop("SIMULATE_TEST_PAUSE_AT", None)
        if pause_at:
            env["SIMULATE_TEST_PAUSE_AT"] = pause_at
            env["SIMULATE_TEST_PAUSE_SECONDS"] = "120"
            if hold is not None:
                hold.write_text("hold")
                env["SIMULATE_TEST_PAUSE_FILE"] = str(hold)
        self.proc = subprocess.Popen([sys.executable, "-m", "simulate.cli", *argv], stdout=stdout,
                                     stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                self._reader.join(5)
                if any(text in line for line in self.lines):
                    return
                raise AssertionError(f"exited {self.proc.returncode} before {text!r}: {self.lines}")
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} within {timeout} s: {self.lines}")

    def finish(self, timeout: float = 180) -> tuple[int, list[str]]:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code, self.lines

    def kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(60)


@pytest.fixture
def children():
    made: list[Child] = []
    yield made
    for c in made:  # no process of a test outlives it
        c.kill_group()


def _alive_in_group(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes of a process group."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(d.name))
    return out


def _children_of(pid: int) -> list[tuple[int, str]]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append((int(d.name), cmd))
    return out


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "internal error" not in lines[0] and "Traceback" not in lines[0]
    return lines[0]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")


# ---------------------------------------------------------------------------
# 1. two runs on one directory
# ---------------------------------------------------------------------------


def test_two_resumes_started_together_one_runs_the_other_exits_2(scenario, reference, tmp_path, capsys, children):
    out = tmp_path / "run"
    half = RunConfig(reps=REPS // 2, seed=SEED, quiet=True, chunk=5)
    run(scenario, out, half, truth_sites=int(TRUTH))
    hold = tmp_path / "hold"
    # both stop just after taking the lock: whichever gets it holds it until the pause file goes
    a = Child(_argv(scenario, out, "--resume", "--chunk", "3"), pause_at="startup", hold=hold)
    b = Child(_argv(scenario, out, "--resume", "--chunk", "7"), pause_at="startup", hold=hold)
    children += [a, b]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and a.proc.poll() is None and b.proc.poll() is None:
        time.sleep(0.05)
    loser, winner = (a, b) if a.proc.poll() is not None else (b, a)
    code, lines = loser.finish()
    assert code == 2, lines
    assert len(lines) == 1 and f"another run (PID {winner.pid}) holds this directory" in lines[0], lines
    winner.wait_for("paused at startup")
    hold.unlink()
    code, lines = winner.finish()
    assert code == 0, lines
    assert_same_rows(reference, out)
    assert _cli(capsys, "summarize", str(out), "--format", "csv")[0] == 0
    resume_and_check(capsys, scenario, out, reference)


def test_a_second_run_waits_for_the_holders_pid(tmp_path):
    # the holder writes its PID just after it takes the lock: a second run started in between waits for it
    from simulate._lock import DirectoryBusy, DirectoryLock

    out = tmp_path / "run"
    with DirectoryLock(out):
        os.truncate(out / ".lock", 0)  # as if the holder had not written its PID yet
        late = threading.Timer(0.3, lambda: (out / ".lock").write_text(f"{os.getpid()}\n"))
        late.start()
        with pytest.raises(DirectoryBusy, match=rf"another run \(PID {os.getpid()}\) holds this directory"):
            DirectoryLock(out).acquire()
        late.join()
    assert (out / ".lock").read_text() == ""  # no stale PID once released


def test_a_run_started_on_a_busy_directory_touches_nothing(scenario, reference, tmp_path, capsys, children):
    out = tmp_path / "run"
    hold = tmp_path / "hold"
    a = Child(_argv(scenario, out, "--chunk", "4"), pause_at="running", hold=hold)
    children.append(a)
    a.wait_for("paused at running")
    stray = out / "parts" / ".cell00000_rep000000036-000000040.parquet.tmp-999999"
    stray.write_bytes(b"in progress")  # stands for the holder's temporary file
    before = sorted(p.name for p in (out / "parts").iterdir())
    for extra in (["--resume"], []):
        code, _, err = _cli(capsys, *_argv(scenario, out, *extra))
        assert code == 2
        assert f"another run (PID {a.pid}) holds this directory" in _one_line(err)
    assert sorted(p.name for p in (out / "parts").iterdir()) == before and stray.exists()
    stray.unlink()
    hold.unlink()
    code, lines = a.finish()
    assert code == 0, lines
    assert_same_rows(reference, out)


def test_parts_repeating_replications_are_repaired_on_resume(scenario, reference, tmp_path, capsys):
    # the state concurrent resumes left before the lock: two parts holding the same replications
    out, other = tmp_path / "run", tmp_path / "other"
    run(scenario, out, RunConfig(reps=REPS, seed=SEED, quiet=True, chunk=5), truth_sites=int(TRUTH))
    run(scenario, other, RunConfig(reps=REPS, seed=SEED, quiet=True, chunk=4), truth_sites=int(TRUTH))
    shutil.copy(other / "parts" / "cell00000_rep000000004-000000008.parquet", out / "parts")
    err = resume_and_check(capsys, scenario, out, reference)
    assert "repeating replications of other parts removed" in err


# ---------------------------------------------------------------------------
# 3. workers die with their parent
# ---------------------------------------------------------------------------


@needs_proc
def test_sigkill_of_the_parent_takes_its_workers_and_the_pipe(scenario, reference, tmp_path, capsys, children):
    out = tmp_path / "run"
    hold = tmp_path / "hold"
    a = Child(_argv(scenario, out, "--jobs", "2", "--chunk", "2"), pause_at="running", hold=hold,
              stdout=subprocess.PIPE)  # the `simulate run ... | cat` of the issue
    children.append(a)
    a.wait_for("paused at running")
    assert len(_alive_in_group(a.pid)) >= 3  # the run, two loky workers (and resource trackers)
    eof = threading.Event()
    threading.Thread(target=lambda: (a.proc.stdout.read(), eof.set()), daemon=True).start()
    t0 = time.monotonic()
    os.kill(a.pid, signal.SIGKILL)  # the parent alone
    a.proc.wait(30)
    while _alive_in_group(a.pid) and time.monotonic() - t0 < 15:
        time.sleep(0.05)
    gone = time.monotonic() - t0
    assert not _alive_in_group(a.pid), f"still alive after {gone:.1f} s: {_alive_in_group(a.pid)}"
    assert eof.wait(5), "the run's stdout is still held open"
    assert gone < 5, gone
    print(f"workers and resource trackers gone {gone:.2f} s after SIGKILL of the parent")
    resume_and_check(capsys, scenario, out, reference)


# ---------------------------------------------------------------------------
# 5. kills at every stage
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["startup", "manifest", "running", "summary"])
def test_sigkill_at_any_stage_leaves_a_resumable_directory(point, scenario, reference, tmp_path, capsys, children):
    out = tmp_path / "run"
    a = Child(_argv(scenario, out, "--chunk", "5"), pause_at=point, hold=tmp_path / "hold")
    children.append(a)
    a.wait_for(f"paused at {point}")
    a.kill_group()
    assert out.is_dir() and (out / ".lock").exists()
    if point == "startup":  # nothing but the lock: a new run may use the directory as well
        code, _, err = _cli(capsys, *_argv(scenario, out))
        assert code == 0, err
        assert_same_rows(reference, out)
        return
    err = resume_and_check(capsys, scenario, out, reference)
    assert err == ""


def test_a_startup_leftover_of_an_older_version_is_taken_as_new(scenario, reference, tmp_path, capsys):
    # killed after parts/ was made, before manifest.json: nothing but an empty parts/ (and a lock)
    for resume in (True, False):
        out = tmp_path / f"run{resume}"
        (out / "parts").mkdir(parents=True)
        (out / "parts" / ".cell00000_rep000000000-000000005.parquet.tmp-12345").write_bytes(b"PAR1")
        (out / ".manifest.json.tmp-12345").write_text("{")
        (out / ".lock").write_text("12345\n")
        code, _, err = _cli(capsys, *_argv(scenario, out, *(["--resume"] if resume else [])))
        assert code == 0, err
        assert_same_rows(reference, out)


# ---------------------------------------------------------------------------
# 6. user conditions: one line, exit 2, the --resume hint
# ---------------------------------------------------------------------------


@needs_proc
def test_a_killed_worker_is_one_line_with_the_resume_hint(scenario, reference, tmp_path, capsys, children):
    out = tmp_path / "run"
    hold = tmp_path / "hold"
    a = Child(_argv(scenario, out, "--jobs", "2", "--chunk", "2"), pause_at="running", hold=hold)
    children.append(a)
    a.wait_for("paused at running")
    workers = [pid for pid, cmd in _children_of(a.pid) if "LokyProcess" in cmd]
    assert workers, _children_of(a.pid)
    os.kill(workers[0], signal.SIGKILL)
    time.sleep(0.5)
    hold.unlink()
    code, lines = a.finish()
    lines = [line for line in lines if "paused at" not in line]
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("a worker process died (killed or out of memory); ")
    assert f"of {REPS} replications are stored in {out}; rerun with --resume to finish" in lines[0]
    resume_and_check(capsys, scenario, out, reference)


def test_disk_full_is_one_line_and_resumable(scenario, reference, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real = rn._write_part
    calls = []

    def full(*args, **kw):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kw)

    monkeypatch.setattr(rn, "_write_part", full)
    code, _, err = _cli(capsys, *_argv(scenario, out, "--chunk", "5"))
    assert code == 2
    line = _one_line(err)
    assert line == (f"no space left on device (disk full); 15 of {REPS} replications are stored in {out}; "
                    "rerun with --resume to finish")
    monkeypatch.setattr(rn, "_write_part", real)
    resume_and_check(capsys, scenario, out, reference)


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    try:
        res = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                             capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux mount namespaces")
def test_a_really_full_file_system_is_one_line_and_resumable(scenario, reference, tmp_path, capsys):
    if not _can_mount_tmpfs():
        pytest.skip("cannot mount a small tmpfs here (needs root and a mount namespace: unshare -m)")
    mnt, saved = tmp_path / "mnt", tmp_path / "saved"
    mnt.mkdir()
    # a 96 KiB file system in a private mount namespace: it vanishes with the shell, the directory is copied out
    script = ('mount -t tmpfs -o size=96k tmpfs "$1" || exit 99; '
              '"$2" -m simulate.cli run "$3" --reps 40 --seed 3 --chunk 2 --truth-sites 10000 --quiet --out "$1/run"; '
              'rc=$?; cp -a "$1/run" "$4"; exit $rc')
    res = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(mnt), sys.executable, str(scenario),
                          str(saved)], capture_output=True, text=True, timeout=300)
    if res.returncode == 0:
        pytest.skip("the run fitted into the small file system")
    assert res.returncode == 2, res.stderr
    line = _one_line(res.stderr)
    assert "no space left on device (disk full)" in line and "rerun with --resume" in line, line
    resume_and_check(capsys, scenario, saved, reference)


def test_a_damaged_part_is_run_again_on_resume(scenario, reference, tmp_path, capsys):
    out = tmp_path / "run"
    run(scenario, out, RunConfig(reps=REPS, seed=SEED, quiet=True, chunk=5), truth_sites=int(TRUTH))
    parts = part_files(out)
    truncated, emptied = parts[2][3], parts[5][3]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    emptied.write_bytes(b"")
    err = resume_and_check(capsys, scenario, out, reference)
    notes = err.splitlines()
    assert len(notes) == 2 and all(n.startswith("simulate: note: damaged part ") for n in notes), notes
    assert f"{truncated.name}" in notes[0] and "its replications are run again" in notes[0]
    assert sorted(p.name for p in (out / "damaged").iterdir()) == sorted([truncated.name, emptied.name])


def test_a_damaged_manifest_is_one_line(scenario, tmp_path, capsys):
    out = tmp_path / "run"
    run(scenario, out, RunConfig(reps=5, seed=SEED, quiet=True), truth_sites=int(TRUTH))
    (out / "manifest.json").write_text('{"cells": [')
    code, _, err = _cli(capsys, *_argv(scenario, out, "--resume"))
    assert code == 2
    assert _one_line(err).startswith(f"{out / 'manifest.json'}: damaged manifest (")


def test_a_dead_scheduler_fails_fast_before_the_directory(scenario, tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setenv("SIMULATE_SCHEDULER_TIMEOUT", "1")
    out = tmp_path / "run"
    t0 = time.monotonic()
    code, _, err = _cli(capsys, *_argv(scenario, out, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"))
    assert code == 2
    assert _one_line(err).startswith("--scheduler tcp://127.0.0.1:9: no Dask scheduler answered within 1 s")
    assert time.monotonic() - t0 < 20
    assert not out.exists()


def test_in_process_run_errors_are_run_errors(scenario, tmp_path):
    # what stress-test and notebooks see: RunError (a SimulateError, a ValueError), one line
    from simulate.errors import SimulateError

    f = tmp_path / "file"
    f.write_text("x")
    for out in (f, f / "under"):
        with pytest.raises(RunError) as info:
            run(scenario, out, RunConfig(reps=3, quiet=True), truth_sites=int(TRUTH))
        assert isinstance(info.value, SimulateError) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------
# 7. warnings and huge descriptions
# ---------------------------------------------------------------------------


def test_numpy_warnings_are_counted_not_printed(tmp_path, capsys):
    extreme = tmp_path / "extreme.toml"
    extreme.write_text(TINY.replace("effect_sd = 0.1", "effect_sd = 0.1\neffect_mean = 1e200"))
    if _cli(capsys, "validate", str(extreme))[0] != 0:
        pytest.skip("the scenario bounds reject the extreme input")
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "simulate.cli", "run", str(extreme), "--reps", "6", "--jobs", "2",
                          "--chunk", "3", "--out", str(out), "--truth-sites", TRUTH],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "Warning" not in res.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["numerical_warnings"] > 0
    assert any("numerical warning" in n for n in manifest["notes"])
    assert "numerical warning(s) counted, not printed" in res.stdout


def test_a_huge_description_does_not_make_a_huge_manifest(tmp_path, capsys):
    desc = "x" * 3_000_000
    path = tmp_path / "big.toml"
    path.write_text(f'description = "{desc}"\n' + TINY)
    if _cli(capsys, "validate", str(path))[0] != 0:
        pytest.skip("the scenario bounds reject a description this long")
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "run", str(path), "--reps", "3", "--out", str(out), "--truth-sites", TRUTH, "--quiet")
    assert code == 0, err
    assert (out / "manifest.json").stat().st_size < 100_000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenario_text"] is None and manifest["scenario_text_chars"] == len(path.read_text())
    assert "3,000,000 characters" in manifest["cells"][0]["scenario"]["description"]
