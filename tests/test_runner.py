"""The replication engine: identical rows whatever the workers, backend, chunking or interruption."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import simulate as sm
from simulate.replicate import ROW_COLUMNS, replication_seed, run_replications
from simulate.runner import RunConfig, RunError, run
from simulate.store import part_files, read_rows

SMALL = """
name = "small"
n_sites = 8
n_per_site = 40
[mediators]
count = 2
[site]
compliance_sd = [0.4, 0.3]
effect_sd = 0.1
[person]
confounding = 0.3
compliance_sd = 0.2
"""

GRID = SMALL + """
[grid]
"site.effect_mean[1]" = [0.5, 0.8]
"""


def _file(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _rows(out):
    d = read_rows(out)
    return d.sort_values(["cell", "rep", "estimator", "mediator"], kind="stable").reset_index(drop=True)


def _run(tmp_path, name, text=SMALL, **kw):
    out = tmp_path / name
    cfg = RunConfig(reps=kw.pop("reps", 24), seed=kw.pop("seed", 11), quiet=True, **kw)
    run(_file(tmp_path, text), out, cfg, truth_sites=10_000)
    return out


def assert_same_rows(a, b):
    ra, rb = _rows(a), _rows(b)
    assert list(ra.columns) == list(ROW_COLUMNS)
    pd.testing.assert_frame_equal(ra, rb, check_exact=True)


def test_rows_identical_for_jobs_backends_and_chunks(tmp_path):
    ref = _run(tmp_path, "ref", jobs=1, chunk=24)
    assert_same_rows(ref, _run(tmp_path, "loky2", jobs=2, chunk=5))
    assert_same_rows(ref, _run(tmp_path, "threads2", jobs=2, backend="threads", chunk=7))
    assert_same_rows(ref, _run(tmp_path, "chunk1", jobs=1, chunk=1))
    # every replication exactly once, and the rows are the ones a replication gives alone
    rows = _rows(ref)
    assert sorted(rows.rep.unique()) == list(range(24))
    assert (rows.groupby(["rep", "estimator", "mediator"]).size() == 1).all()
    sc = sm.load(tmp_path / "s.toml")
    alone = pd.DataFrame(run_replications(sc, 0, 0, 11, [17]))
    mine = rows[rows.rep == 17].reset_index(drop=True)
    np.testing.assert_array_equal(np.sort(alone.estimate.dropna().to_numpy()),
                                  np.sort(mine.estimate.dropna().to_numpy()))


def test_dask_local_cluster_gives_the_same_rows(tmp_path):
    pytest.importorskip("distributed")
    ref = _run(tmp_path, "ref", jobs=1)
    assert_same_rows(ref, _run(tmp_path, "dask", jobs=2, backend="dask", chunk=6))


def test_extending_a_run_equals_running_it_at_once(tmp_path):
    once = _run(tmp_path, "once", reps=30)
    ext = tmp_path / "ext"
    run(_file(tmp_path, SMALL), ext, RunConfig(reps=12, seed=11, quiet=True), truth_sites=10_000)
    run(_file(tmp_path, SMALL), ext, RunConfig(reps=30, seed=11, quiet=True, resume=True, chunk=4),
        truth_sites=10_000)
    assert_same_rows(once, ext)
    manifest = json.loads((ext / "manifest.json").read_text())
    assert manifest["reps"] == 30 and len(manifest["runs"]) == 2


def test_resume_refuses_another_scenario_seed_or_a_used_directory(tmp_path):
    out = _run(tmp_path, "a", reps=5)
    with pytest.raises(RunError, match="already holds a run"):
        run(_file(tmp_path, SMALL), out, RunConfig(reps=5, seed=11, quiet=True))
    other = _file(tmp_path, SMALL.replace("n_per_site = 40", "n_per_site = 41"), "other.toml")
    with pytest.raises(RunError, match="different scenario") as err:
        run(other, out, RunConfig(reps=5, seed=11, quiet=True, resume=True))
    assert "\n" not in str(err.value)
    with pytest.raises(RunError, match="different seed"):
        run(_file(tmp_path, SMALL), out, RunConfig(reps=5, seed=12, quiet=True, resume=True))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(RunError, match="not a run directory"):
        run(_file(tmp_path, SMALL), tmp_path / "junk", RunConfig(reps=5, quiet=True))


@pytest.mark.parametrize("bad, message", [
    (dict(reps=0), "--reps"), (dict(reps=3, jobs=0), "--jobs"), (dict(reps=3, backend="mpi"), "--backend"),
    (dict(reps=3, scheduler="tcp://127.0.0.1:1"), "--scheduler"), (dict(reps=3, seed=-1), "--seed"),
    (dict(reps=3, chunk=0), "--chunk"), (dict(reps=3, level=1.5), "--level"),
])
def test_bad_run_settings_fail_before_any_work(tmp_path, bad, message):
    out = tmp_path / "never"
    with pytest.raises(RunError, match=message):
        run(_file(tmp_path, SMALL), out, RunConfig(quiet=True, **bad))
    assert not out.exists()


def test_common_random_numbers_across_grid_cells(tmp_path):
    crn = _rows(_run(tmp_path, "crn", text=GRID, reps=4))
    ind = _rows(_run(tmp_path, "ind", text=GRID, reps=4, common_random_numbers=False))
    # the grid changes only effect_mean of M1, so with common random numbers the first stage is the same
    def first_stage(d, c):
        return d[(d.cell == c) & (d.estimator == "2sls")].first_stage_f.to_numpy()

    np.testing.assert_array_equal(first_stage(crn, 0), first_stage(crn, 1))
    assert not np.array_equal(first_stage(ind, 0), first_stage(ind, 1))
    assert not np.array_equal(first_stage(crn, 0), first_stage(ind, 0))  # cell 0 has its own stream
    assert set(crn.cell_key) == {0} and set(ind.cell_key) == {1, 2}


def test_a_failing_replication_is_a_row_not_the_end(tmp_path, monkeypatch):
    import simulate.replicate as rp

    real = rp._batch_arrays
    bad = rp.replication_states(1, 0, [2])[0]

    def flaky(sc, states):
        if any(np.array_equal(s, bad) for s in states):  # the batch holding replication 2 fails, then rep 2 alone
            raise FloatingPointError("boom")
        return real(sc, states)

    monkeypatch.setattr(rp, "_batch_arrays", flaky)
    cols = run_replications(sm.loads(SMALL), 0, 0, 1, range(4))
    status = pd.Series(cols["status"])
    rep = pd.Series(cols["rep"])
    assert (status[rep == 2] == "error: FloatingPointError: boom").all()
    by_design = {"site_underidentified"}  # rciv_meta with P = 2 and one contrast per site: a status, not an error
    assert status[rep != 2].isin({"ok"} | by_design).all()
    assert np.isnan(pd.Series(cols["estimate"])[rep == 2]).all()
    # the other replications are exactly what an undisturbed batch gives
    monkeypatch.setattr(rp, "_batch_arrays", real)
    clean = run_replications(sm.loads(SMALL), 0, 0, 1, range(4))
    keep = (rep != 2).to_numpy()
    np.testing.assert_array_equal(np.asarray(cols["estimate"])[keep], np.asarray(clean["estimate"])[keep])


def test_batch_rows_equal_the_validated_person_level_api():
    sc = sm.loads(SMALL.replace("count = 2", "count = 2\nkind = ['binary', 'continuous']")
                  .replace("compliance_sd = [0.4, 0.3]", "compliance_sd = [0.0, 0.3]").replace(
                      "compliance_sd = 0.2", "compliance_sd = [0.0, 0.2]"))
    cols = pd.DataFrame(run_replications(sc, 0, 0, 9, range(3)))
    trial = sm.draw(sc, replication_seed(9, 0, 1))
    ref = sm.estimate(trial.site, trial.treatment, trial.mediators, trial.outcome, mediator_names=sc.mediator_names)
    got = cols[cols.rep == 1].merge(ref, on=["estimator", "mediator"], suffixes=("", "_ref"))
    assert len(got) == len(cols[cols.rep == 1])
    for c in ("estimate", "std_error", "se_robust", "se_cluster", "conf_low", "conf_high", "p_value", "first_stage_f"):
        np.testing.assert_array_equal(got[c].to_numpy(float), got[f"{c}_ref"].to_numpy(float), err_msg=c)
    samp = trial.sample_estimands()
    row = cols[(cols.rep == 1) & (cols.estimator == "2sls")]
    np.testing.assert_allclose(row.sample_ate, samp["ate"], rtol=1e-12)
    np.testing.assert_allclose(row.sample_compliance_weighted, samp["compliance_weighted"], rtol=1e-12)
    np.testing.assert_allclose(row.sample_late, samp["late"], rtol=1e-12)


def test_seed_information_replays_a_replication(tmp_path):
    rows = _rows(_run(tmp_path, "r", reps=3))
    r = rows[(rows.rep == 2) & (rows.estimator == "2sls")].iloc[0]
    sc = sm.load(tmp_path / "s.toml")
    trial = sm.draw(sc, replication_seed(int(r.seed), int(r.cell_key), int(r.rep)))
    est = sm.estimate(trial.site, trial.treatment, trial.mediators, trial.outcome,
                      mediator_names=sc.mediator_names, estimators=["2sls"])
    assert est[est.mediator == r.mediator].estimate.iloc[0] == r.estimate


def test_sigkill_then_resume_stores_every_replication_once(tmp_path):
    text = SMALL.replace("n_sites = 8", "n_sites = 30").replace("n_per_site = 40", "n_per_site = 300")
    path = _file(tmp_path, text)
    reps = 400
    ref = tmp_path / "ref"
    run(path, ref, RunConfig(reps=reps, seed=5, quiet=True, chunk=50), truth_sites=10_000)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "simulate.cli", "run", str(path), "--reps", str(reps), "--seed", "5",
           "--out", str(out), "--jobs", "2", "--chunk", "4", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(part_files(out)) < 5:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = sum(b - a for _, a, b, _ in part_files(out))
    assert 0 < stored < reps, stored
    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert_same_rows(ref, out)
    counts = _rows(out).groupby("rep").size()
    assert len(counts) == reps and counts.nunique() == 1


def test_tasks_cover_exactly_the_missing_replications():
    from simulate.runner import _cut
    from simulate.store import gaps as _gaps

    rng = np.random.default_rng(1)
    for _ in range(200):
        reps = int(rng.integers(1, 60))
        parts, pos = [], 0
        while pos < reps + 10:  # parts, some beyond --reps, with holes
            a = pos + int(rng.integers(0, 4))
            b = a + int(rng.integers(1, 8))
            if rng.random() < 0.6:
                parts.append((0, a, b, None))
            pos = b
        chunk = int(rng.integers(1, 9))
        tasks = list(_cut(_gaps(parts, 0, reps), chunk))
        done = np.zeros(reps, bool)
        for _, a, b, _ in parts:
            done[a:min(b, reps)] = True
        covered = [r for a, b in tasks for r in range(a, b)]
        assert covered == np.flatnonzero(~done).tolist()
        assert all(0 < b - a <= chunk for a, b in tasks)


@pytest.mark.parametrize("bad, message", [
    (dict(reps=10**8 + 1), "--reps: at most 100,000,000"), (dict(reps=3, jobs=10**6), "--jobs: at most 4 per core"),
    (dict(reps=3, chunk=10**6), "--chunk: at most 10,000"), (dict(reps=10**400), "a 401-digit integer"),
])
def test_bounds_fail_before_the_directory(tmp_path, bad, message):
    out = tmp_path / "never"
    with pytest.raises(RunError, match=message):
        run(_file(tmp_path, SMALL), out, RunConfig(quiet=True, **bad))
    assert not out.exists()


def test_a_held_directory_is_refused_with_the_holders_pid(tmp_path):
    from simulate._lock import DirectoryLock

    out = tmp_path / "held"
    with DirectoryLock(out):  # flock conflicts between two opens, even in one process
        with pytest.raises(RunError, match=rf"another run \(PID {os.getpid()}\) holds this directory"):
            run(_file(tmp_path, SMALL), out, RunConfig(reps=3, quiet=True))
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    run(_file(tmp_path, SMALL), out, RunConfig(reps=3, quiet=True), truth_sites=10_000)  # released
    assert (out / "summary.csv").exists()


def test_a_part_holding_other_replications_than_its_name_is_run_again(tmp_path):
    ref = _run(tmp_path, "ref", reps=12, chunk=4)
    out = _run(tmp_path, "out", reps=12, chunk=4)
    parts = out / "parts"
    # the rows of 4-8 under the name of 8-12 (and 8-12 gone): the footer is whole, the range is not
    os.replace(parts / "cell00000_rep000000004-000000008.parquet", parts / "cell00000_rep000000008-000000012.parquet")
    run(_file(tmp_path, SMALL), out, RunConfig(reps=12, seed=11, quiet=True, resume=True), truth_sites=10_000)
    assert_same_rows(ref, out)
    assert [p.name for p in (out / "damaged").iterdir()] == ["cell00000_rep000000008-000000012.parquet"]


@pytest.mark.parametrize("missing", ["distributed", "dask"])
def test_the_dask_backend_without_the_extra_is_one_line(tmp_path, monkeypatch, missing):
    from simulate.runner import DASK_EXTRA

    monkeypatch.setitem(sys.modules, missing, None)  # import of it raises ImportError, as when not installed
    out = tmp_path / "never"
    with pytest.raises(RunError) as info:
        run(_file(tmp_path, SMALL), out, RunConfig(reps=3, backend="dask", quiet=True))
    assert str(info.value) == DASK_EXTRA == "the dask backend needs the dask extra: pip install 'simulate[dask]'"
    assert not out.exists()


def test_the_dask_backend_without_the_extra_through_the_cli(tmp_path, capsys, monkeypatch):
    import builtins

    from simulate import cli
    from simulate.runner import DASK_EXTRA

    real = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    code = cli.main(["run", str(_file(tmp_path, SMALL)), "--reps", "3", "--backend", "dask", "--out",
                     str(tmp_path / "never"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and [line for line in err.splitlines() if line] == [DASK_EXTRA], err
    assert not (tmp_path / "never").exists()


def test_default_tasks_are_not_tiny_and_even_over_the_workers():
    from simulate.runner import TASK_PERSONS, _auto_chunk
    from simulate.scenario import GridCell, from_dict

    def cells(n_sites, n_per_site):
        return [GridCell(0, (), from_dict({"n_sites": n_sites, "n_per_site": n_per_site, "mediators": {"count": 2}}))]

    small, reference, big = cells(30, 150), cells(50, 200), cells(1000, 1000)
    assert _auto_chunk(small, 150, 1) == 150  # one part, not eight of 19 replications
    assert _auto_chunk(small, 150, 2) == 75  # every worker has a task
    assert _auto_chunk(reference, 2000, 1) == 200 == TASK_PERSONS // 10_000
    assert _auto_chunk(big, 1000, 2) == 125  # about four tasks per worker, as before
    for jobs in (1, 2, 3):
        for n in (1, 7, 150, 1001, 10**6):
            chunk = _auto_chunk(small, n, jobs)
            tasks = -(-n // chunk)
            assert 1 <= chunk <= 2000 and tasks >= min(n, jobs)  # no worker left without a task


def test_a_batch_stores_what_separate_runs_store_and_resumes(tmp_path, monkeypatch):
    """run_batch: each directory holds exactly the rows and summary of its own run (issue 17)."""
    from simulate.runner import BatchRun, run_batch
    from simulate.scenario import validate_file

    grid = validate_file(_file(tmp_path, GRID, "g.toml"))
    alone = []
    for i, cell in enumerate(grid):
        out = tmp_path / f"alone{i}"
        run([cell.__class__(0, cell.values, cell.scenario)], out,
            RunConfig(reps=12 + 6 * i, seed=5, quiet=True), truth_sites=10_000)
        alone.append(out)
    batch = [BatchRun([cell.__class__(0, cell.values, cell.scenario)], tmp_path / f"batch{i}", 12 + 6 * i)
             for i, cell in enumerate(grid)]
    manifests = run_batch(batch, RunConfig(reps=1, seed=5, jobs=2, quiet=True), truth_sites=10_000)
    assert [m["reps"] for m in manifests] == [12, 18] and all(m["complete"] for m in manifests)
    for a, b in zip(alone, batch):
        assert_same_rows(a, b.out)
        assert (a / "summary.csv").read_text() == (b.out / "summary.csv").read_text()
    # a batch with more replications resumes both directories and runs only the missing ones
    more = [BatchRun(b.cells, b.out, b.reps + 6) for b in batch]
    manifests = run_batch(more, RunConfig(reps=1, seed=5, quiet=True), truth_sites=10_000)
    assert [m["runs"][-1]["replications"] for m in manifests] == [6, 6]
    full = tmp_path / "full"
    run([grid[1].__class__(0, grid[1].values, grid[1].scenario)], full, RunConfig(reps=24, seed=5, quiet=True),
        truth_sites=10_000)
    assert_same_rows(full, more[1].out)
