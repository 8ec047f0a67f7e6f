"""The measurements behind ``benchmarks/run.py``: each function times one thing and returns plain numbers.

Nothing here prints or writes files; ``run.py`` turns the returned dicts into the report.
Every timing is wall-clock ``time.perf_counter``; every ratio is a ratio of medians over
repetitions, and repetitions of the two things compared are interleaved (A B, B A, A B, ...)
so that a load that comes and goes on a shared machine falls on both sides.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

import simulate
from simulate import runner, store
from simulate.replicate import replication_seed, run_replications
from simulate.scenario import Scenario, from_dict

SEED = 20240607
"""The run seed of every benchmark (the data do not matter for the timings, but they are reproducible)."""

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference.toml"
MEMORY_SCENARIO = HERE / "memory.toml"


# --------------------------------------------------------------------------- scenarios
def load_raw(path: Path = REFERENCE) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def variant(raw: dict, *, n_sites: int | None = None, n_per_site: int | None = None,
            n_mediators: int | None = None) -> Scenario:
    """The reference with one size changed; per-mediator lists are cycled to the new length."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    if n_sites is not None:
        raw["n_sites"] = n_sites
    if n_per_site is not None:
        raw["n_per_site"] = n_per_site
    if n_mediators is not None:
        P0 = len(raw["mediators"]["names"])
        raw["mediators"]["names"] = [f"m{p + 1}" for p in range(n_mediators)]
        for table in ("site", "person"):
            for key, value in list(raw.get(table, {}).items()):
                if isinstance(value, list) and len(value) == P0:
                    raw[table][key] = [value[p % P0] for p in range(n_mediators)]
    return from_dict(raw, source=f"{REFERENCE.name} (variant)")


def persons(sc: Scenario) -> int:
    """Persons per replication (the expected number when site sizes are a range)."""
    if sc.n_per_site:
        return int(sum(sc.n_per_site))
    lo, hi = sc.n_per_site_range
    return int(round(sc.n_sites * (lo + hi) / 2))


def normals_per_replication(sc: Scenario) -> int:
    """Normal variates one replication draws (continuous mediators, no paths).

    persons x (3P + 1)   compliance, effect, mediator and outcome errors
    + persons            assignment keys
    + sites x (3P + 2)   2P + 1 site effects and P + 1 baselines
    """
    P, n, K = sc.n_mediators, persons(sc), sc.n_sites
    return n * (3 * P + 1) + n + K * (3 * P + 2)


# --------------------------------------------------------------------------- timing helpers
def _time_pipeline(sc: Scenario, start: int, batch: int) -> float:
    """Seconds per replication of ``run_replications`` on reps [start, start + batch)."""
    t0 = time.perf_counter()
    run_replications(sc, 0, 0, SEED, range(start, start + batch))
    return (time.perf_counter() - t0) / batch


def _time_numpy(rng: np.random.Generator, n: int, batch: int) -> float:
    """Seconds per call of ``rng.standard_normal(n, out=buffer)`` over ``batch`` calls.

    Into one preallocated buffer, as the kernels reuse theirs: a fresh 0.9 MB array per call
    costs the allocator's time too, which varied from nothing to 0.4 ms per call between
    runs with the allocator's state (the pipeline seemed 0.60 of the floor in one run, 0.84
    in another).
    """
    out = np.empty(n)
    t0 = time.perf_counter()
    for _ in range(batch):
        rng.standard_normal(n, out=out)
    return (time.perf_counter() - t0) / batch


def _time_kernel_normals(out: np.ndarray, batch: int) -> float:
    """Seconds per fill of ``out`` with the kernels' own normals (``rng_nb.fill_normal``) over ``batch`` fills."""
    from simulate.kernels.rng_nb import fill_normal

    state = np.array([1, 2, 3, 4], np.uint64)
    t0 = time.perf_counter()
    for _ in range(batch):
        fill_normal(state, out)
    return (time.perf_counter() - t0) / batch


def _time_kernel_batch(sc: Scenario, start: int, batch: int) -> float:
    """Seconds per replication inside the fused kernel alone (``replicate_batch``), same replications."""
    from simulate.dgp import plan
    from simulate.kernels.replicate_nb import replicate_batch
    from simulate.replicate import replication_states

    states = replication_states(SEED, 0, range(start, start + batch))
    c = plan(sc).kernel()
    t0 = time.perf_counter()
    replicate_batch(states, c, 1.0)
    return (time.perf_counter() - t0) / batch


def median(xs) -> float:
    return float(np.median(np.asarray(xs, float)))


# --------------------------------------------------------------------------- 1. floor
def floor(sc: Scenario, *, batch: int, warmup: int, repeats: int) -> dict:
    """Pipeline seconds per replication against numpy drawing the same number of normals."""
    n_normals = normals_per_replication(sc)
    t0 = time.perf_counter()
    warm_rows = run_replications(sc, 0, 0, SEED, range(warmup))  # compiles (or loads cached) kernels
    warm_seconds = time.perf_counter() - t0
    rows_per_rep = len(warm_rows["rep"]) // max(1, warmup)
    estimators = sorted(set(warm_rows["estimator"].tolist()))
    rng = np.random.default_rng()
    rng.standard_normal(n_normals)
    buffer = np.empty(n_normals)
    _time_kernel_normals(buffer, 1)
    pipeline, numpy_, kernel, inside = [], [], [], []
    start = warmup
    for i in range(repeats):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                inside.append(_time_kernel_batch(sc, start, batch))
                pipeline.append(_time_pipeline(sc, start, batch))
                start += batch
            else:
                numpy_.append(_time_numpy(rng, n_normals, batch))
        kernel.append(_time_kernel_normals(buffer, batch))
    t_pipe, t_np = median(pipeline), median(numpy_)
    return {
        "n_sites": sc.n_sites, "n_per_site": persons(sc) // sc.n_sites, "n_mediators": sc.n_mediators,
        "persons": persons(sc), "normals_per_replication": n_normals,
        "rows_per_replication": rows_per_rep, "estimators": estimators,
        "batch": batch, "warmup_replications": warmup, "warmup_seconds": warm_seconds, "repeats": repeats,
        "pipeline_seconds_per_replication": t_pipe, "numpy_seconds_per_draw": t_np,
        "pipeline_samples": pipeline, "numpy_samples": numpy_,
        "ratio": t_pipe / t_np,
        # context, not a target: the kernels' own generator drawing the same normals
        "kernel_normals_seconds_per_draw": median(kernel), "kernel_normals_samples": kernel,
        # the fused kernel alone on the same replications: the rest of the pipeline is Python
        # (stream states, rows as numpy columns)
        "kernel_seconds_per_replication": median(inside), "kernel_samples": inside,
    }


# --------------------------------------------------------------------------- 2. linearmodels
def _linearmodels_fit(sc: Scenario, rep: int):
    """What a user does today: a numpy-equivalent draw, dummies, IV2SLS and IVLIML (robust)."""
    import pandas as pd
    from linearmodels.iv import IV2SLS, IVLIML

    trial = simulate.draw(sc, replication_seed(SEED, 0, rep))
    K, n = sc.n_sites, trial.site.shape[0]
    sites = np.zeros((n, K))
    sites[np.arange(n), trial.site] = 1.0
    exog = pd.DataFrame(sites, columns=[f"site_{k}" for k in range(K)])
    # site-by-treatment instruments: one per site and non-control arm
    cols, names = [], []
    for arm in range(1, sc.arms):
        cols.append(sites * (trial.treatment == arm)[:, None])
        names += [f"site_{k}_x_arm_{arm}" for k in range(K)]
    instruments = pd.DataFrame(np.hstack(cols), columns=names)
    endog = pd.DataFrame(trial.mediators, columns=list(sc.mediator_names))
    y = pd.Series(trial.outcome, name="outcome")
    res_2sls = IV2SLS(y, exog, endog, instruments).fit(cov_type="robust")
    res_liml = IVLIML(y, exog, endog, instruments).fit(cov_type="robust")
    return trial, res_2sls, res_liml


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def linearmodels_loop(sc: Scenario, *, reps: int, batch: int, warmup: bool = True, rtol: float = 1e-8) -> dict:
    """linearmodels per replication against the pipeline per replication, interleaved; estimates compared."""
    from simulate.estimators import estimate

    names = list(sc.mediator_names)
    if warmup:
        _linearmodels_fit(sc, 10**6)  # imports and first calls
    lm_times, pipe_times = [], []
    diff_est = diff_se = diff_rows = 0.0
    start = 10**6 + 1
    for r in range(reps):
        t0 = time.perf_counter()
        trial, r2, rl = _linearmodels_fit(sc, r)
        lm_times.append(time.perf_counter() - t0)
        pipe_times.append(_time_pipeline(sc, start, batch))
        start += batch
        ours = estimate(trial.site, trial.treatment, trial.mediators, trial.outcome, mediator_names=names,
                        n_sites=sc.n_sites, n_arms=sc.arms, estimators=("2sls", "liml"),
                        include_direct_effect=False).set_index(["estimator", "mediator"])
        rows = run_replications(sc, 0, 0, SEED, [r])
        for est_name, res in (("2sls", r2), ("liml", rl)):
            lm_est = np.asarray(res.params[names])
            lm_se = np.asarray(res.std_errors[names])
            mine = ours.loc[est_name].loc[names]
            diff_est = max(diff_est, _rel(mine["estimate"], lm_est))
            diff_se = max(diff_se, _rel(mine["se_robust"], lm_se))
            sel = rows["estimator"] == est_name
            row_est = dict(zip(rows["mediator"][sel], rows["estimate"][sel]))
            diff_rows = max(diff_rows, _rel([row_est[m] for m in names], lm_est))
    t_lm, t_pipe = median(lm_times), median(pipe_times)
    return {
        "replications": reps, "pipeline_batch": batch, "warmup": warmup,
        "linearmodels_seconds_per_replication": t_lm, "pipeline_seconds_per_replication": t_pipe,
        "linearmodels_samples": lm_times, "pipeline_samples": pipe_times,
        "ratio": t_lm / t_pipe,
        "rtol": rtol,
        "max_rel_diff_estimate": diff_est,  # simulate.estimate vs linearmodels
        "max_rel_diff_se_robust": diff_se,  # HC0, informative
        "max_rel_diff_pipeline_rows": diff_rows,  # run_replications rows vs linearmodels
        "estimates_equal": bool(diff_est <= rtol and diff_rows <= rtol),
    }


# --------------------------------------------------------------------------- 3. workers
def _timed_run(source, out: Path, **config) -> dict:
    cfg = runner.RunConfig(seed=SEED, quiet=True, **config)
    manifest = runner.run(source, out, cfg, truth_sites=20000)
    last = manifest["runs"][-1]
    # wall_seconds: the replication loop of runner.run (rows computed, Parquet parts written);
    # the truth and the summary come after it and are not included
    return {"backend": cfg.backend, "jobs": cfg.jobs, "replications": last["replications"],
            "chunk": last["chunk"], "wall_seconds": last["wall_seconds"], "worker_seconds": last["worker_seconds"],
            "replications_per_second": last["replications"] / last["wall_seconds"]}


def workers(path: Path, *, reps: int, warmup_reps: int, jobs: int = 2) -> dict:
    """Replications per second with 1 and ``jobs`` loky workers and a Dask local cluster of ``jobs``.

    Each configuration first does a short warm-up run, so that the worker pool is up and
    the workers have loaded the compiled kernels: the rates are steady-state rates.
    """
    from distributed import Client, LocalCluster

    out = {}
    with tempfile.TemporaryDirectory(prefix="simulate-bench-") as tmp:
        tmp = Path(tmp)
        _timed_run(path, tmp / "warm1", reps=warmup_reps, jobs=1)
        out["loky_1"] = _timed_run(path, tmp / "loky1", reps=reps, jobs=1)
        _timed_run(path, tmp / "warm2", reps=warmup_reps, jobs=jobs)
        out[f"loky_{jobs}"] = _timed_run(path, tmp / "loky2", reps=reps, jobs=jobs)
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
        startup = time.perf_counter() - t0
        try:
            addr = cluster.scheduler_address
            _timed_run(path, tmp / "warmd", reps=warmup_reps, jobs=jobs, backend="dask", scheduler=addr)
            out[f"dask_{jobs}"] = _timed_run(path, tmp / "dask", reps=reps, jobs=jobs, backend="dask",
                                             scheduler=addr)
        finally:
            client.close()
            cluster.close()
        out[f"dask_{jobs}"]["cluster_startup_seconds"] = startup
    r1, r2, rd = out["loky_1"], out[f"loky_{jobs}"], out[f"dask_{jobs}"]
    return {"runs": out, "replications": reps, "warmup_replications": warmup_reps, "jobs": jobs,
            "speedup": r2["replications_per_second"] / r1["replications_per_second"],
            "dask_vs_loky": rd["replications_per_second"] / r2["replications_per_second"]}


# --------------------------------------------------------------------------- 4. memory
# The child runs the CLI exactly as the `simulate` console script does, then reads its own
# high-water mark.  (The parent's rusage of a child is no good here: Linux carries the RSS of the
# forking parent, which holds numba, pandas and dask, into the child's ru_maxrss across exec.)
_CHILD = """
import json, sys
from simulate.cli import main
try:
    rc = main(sys.argv[2:])
finally:
    hwm = None
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith('VmHWM:'):
                hwm = int(line.split()[1]) * 1024
    with open(sys.argv[1], 'w') as fh:
        json.dump({'vmhwm_bytes': hwm}, fh)
sys.exit(rc)
"""
_TIME = Path("/usr/bin/time")


def _child_peak(cli_args: list[str], report: Path) -> dict:
    """Peak RSS of one child running ``simulate <cli_args>``.

    ``vmhwm_bytes``: the child's VmHWM (/proc/self/status) read at its end.
    ``time_maxrss_bytes``: the max RSS that GNU time (``/usr/bin/time -v``) reports for it, when present.
    ``peak_rss_bytes``: the latter when present, else the former.
    """
    args = [sys.executable, "-c", _CHILD, str(report), *cli_args]
    timed = _TIME.exists() and sys.platform.startswith("linux")
    if timed:
        args = [str(_TIME), "-v", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"simulate {' '.join(cli_args)} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    import json

    hwm = json.loads(report.read_text())["vmhwm_bytes"]
    maxrss = None
    if timed:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        maxrss = int(m.group(1)) * 1024 if m else None
    return {"peak_rss_bytes": maxrss if maxrss is not None else hwm, "time_maxrss_bytes": maxrss,
            "vmhwm_bytes": hwm, "wall_seconds": wall}


def memory(path: Path, sizes: list[int]) -> dict:
    """Peak RSS of ``simulate run FILE --reps N --jobs 1`` (one process: the whole run) for each N."""
    import json

    rows = []
    with tempfile.TemporaryDirectory(prefix="simulate-bench-mem-") as tmp:
        tmp = Path(tmp)
        base = _child_peak(["list"], tmp / "base.json")  # the interpreter with the package imported
        for n in sizes:
            out = tmp / f"reps{n}"
            r = _child_peak(["run", str(path), "--reps", str(n), "--seed", str(SEED), "--jobs", "1",
                             "--out", str(out), "--quiet"], tmp / f"reps{n}.json")
            last = json.loads((out / "manifest.json").read_text())["runs"][-1]
            rows.append({"replications": n, **r, "replication_seconds": last["wall_seconds"]})
    for r in rows:
        r["ratio_to_smallest"] = r["peak_rss_bytes"] / rows[0]["peak_rss_bytes"]
    return {"scenario": path.name, "baseline_rss_bytes": base["peak_rss_bytes"],
            "measured_by": "/usr/bin/time -v" if rows[0]["time_maxrss_bytes"] is not None else "VmHWM",
            "runs": rows, "ratio_largest_to_smallest": rows[-1]["ratio_to_smallest"]}


# --------------------------------------------------------------------------- 5. scaling
def _cost(sc: Scenario, *, target_seconds: float, min_batch: int, max_batch: int, repeats: int) -> dict:
    run_replications(sc, 0, 0, SEED, range(1))  # warm-up (new shapes, first touch of memory)
    probe = _time_pipeline(sc, 1, min_batch)
    batch = int(min(max_batch, max(min_batch, math.ceil(target_seconds / max(probe, 1e-9)))))
    n = normals_per_replication(sc)
    rng = np.random.default_rng()
    pipe, nump = [], []
    start = 1 + min_batch
    for _ in range(repeats):
        pipe.append(_time_pipeline(sc, start, batch))
        start += batch
        nump.append(_time_numpy(rng, n, batch))
    t, f = median(pipe), median(nump)
    return {"batch": batch, "seconds_per_replication": t, "numpy_floor_seconds": f, "floor_ratio": t / f,
            "normals_per_replication": n}


def slope(x, y) -> float:
    """Least-squares slope of log y on log x."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


SERIES = {  # name -> (the varied size, its values)
    "sites": ("n_sites", (10, 20, 50, 100, 200)),
    "persons": ("n_per_site", (50, 100, 200, 400, 800)),
    "mediators": ("n_mediators", (1, 2, 3, 4)),
}


def scaling(raw: dict, *, target_seconds: float, min_batch: int, max_batch: int, repeats: int) -> dict:
    """Cost per replication against one size at a time, the others at the reference."""
    ref = variant(raw)
    reference = {"n_sites": ref.n_sites, "n_per_site": persons(ref) // ref.n_sites, "n_mediators": ref.n_mediators}
    rows, slopes = [], {}
    for name, (key, values) in SERIES.items():
        xs, ys = [], []
        for v in values:
            sc = variant(raw, **{key: v})
            c = _cost(sc, target_seconds=target_seconds, min_batch=min_batch, max_batch=max_batch, repeats=repeats)
            rows.append({"series": name, "varied": key, "value": v, "n_sites": sc.n_sites,
                         "n_per_site": persons(sc) // sc.n_sites, "n_mediators": sc.n_mediators,
                         "persons": persons(sc), **c})
            xs.append(v)
            ys.append(c["seconds_per_replication"])
        slopes[name] = slope(xs, ys)
    return {"reference": reference, "rows": rows, "slopes": slopes, "repeats": repeats}


# --------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    import importlib.metadata as md

    packages = {}
    for name in ("simulate", "numpy", "scipy", "numba", "pandas", "pyarrow", "joblib", "loky", "dask",
                 "distributed", "linearmodels", "matplotlib"):
        try:
            packages[name] = md.version(name)
        except md.PackageNotFoundError:
            packages[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
        "memory_bytes": _mem_total(), "platform": platform.platform(),
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "packages": packages, "simulate_code_version": store.code_version(),
        "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
    }


# --------------------------------------------------------------------------- 6. CLI marginal cost
_CONSOLE = "import sys; from simulate.cli import main; sys.exit(main(sys.argv[1:]))"
"""What the ``simulate`` console script runs."""


def _cli(args: list[str], *, env: dict | None = None, cpu: int | None = None, timeout: float = 3600) -> float:
    """Wall seconds of one ``simulate <args>`` child (pinned to ``cpu`` when given)."""
    pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None and hasattr(os, "sched_setaffinity") else None
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CONSOLE, *args], capture_output=True, text=True,
                          env=env, preexec_fn=pre, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"simulate {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def cli_marginal(path: Path, *, short: int, long: int, repeats: int, truth_sites: int = 20000) -> dict:
    """Marginal wall time per replication of ``simulate run PATH --jobs 1`` from two run lengths.

    Each run is a fresh child process on one pinned core (the first usable one), the whole
    command a user types: start-up, replications, Parquet parts, truth (``truth_sites``
    fixed, so its cost cancels) and the summary.  The two lengths are interleaved
    (short, long, long, short, ...) ``repeats`` times each; marginal cost =
    (median long - median short) / (long - short), so start-up, truth and compilation cancel.
    """
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    times: dict[int, list[float]] = {short: [], long: []}
    with tempfile.TemporaryDirectory(prefix="simulate-bench-cli-") as tmp:
        _cli(["run", str(path), "--reps", "2", "--jobs", "1", "--quiet", "--truth-sites", str(truth_sites),
              "--out", str(Path(tmp) / "warm")], cpu=cpu)  # kernels compiled or loaded once before timing
        order = [short, long, long, short] * math.ceil(repeats / 2)
        for i, reps in enumerate(order[: 2 * repeats]):
            times[reps].append(_cli(["run", str(path), "--reps", str(reps), "--jobs", "1", "--quiet",
                                     "--seed", str(SEED), "--truth-sites", str(truth_sites),
                                     "--out", str(Path(tmp) / f"r{i}")], cpu=cpu))
    t_short, t_long = median(times[short]), median(times[long])
    return {"short": short, "long": long, "repeats": repeats, "cpu": cpu, "truth_sites": truth_sites,
            "samples": {str(k): v for k, v in times.items()}, "short_seconds": t_short, "long_seconds": t_long,
            "seconds_per_replication": (t_long - t_short) / (long - short),
            "startup_seconds": t_short - short * (t_long - t_short) / (long - short)}


# --------------------------------------------------------------------------- 7. the main job
def main_job(design: str, *, jobs: int = 2, extra: list[str] | None = None, cold: bool = True) -> dict:
    """Wall seconds of the README's main job, ``simulate stress-test DESIGN --jobs 2``, cold then warm.

    Cold: an empty Numba cache directory (``NUMBA_CACHE_DIR`` set to a new temporary folder),
    so every kernel is compiled, as on a user's first run.  Warm: the same command again with
    that cache now filled and a new output folder, as on any later run.  With ``cold=False``
    (quick mode) the first run uses the usual cache too, so both runs are warm.
    """
    extra = list(extra or [])
    with tempfile.TemporaryDirectory(prefix="simulate-bench-main-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp / "numba-cache")) if cold else None
        args = ["stress-test", design, "--jobs", str(jobs), "--quiet", *extra]
        first = _cli([*args, "--out", str(tmp / "cold")], env=env)
        warm = _cli([*args, "--out", str(tmp / "warm")], env=env)
    return {"design": design, "jobs": jobs, "extra_args": extra, "cold_seconds": first, "warm_seconds": warm,
            "cold_to_warm": first / warm, "cold_cache_emptied": cold}
