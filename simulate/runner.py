"""The replication engine: many replications of a scenario or a grid, on every core or a cluster.

A run is a pure function of (scenario file, seed, code version): replication
``rep`` of grid cell ``cell`` draws from ``SeedSequence(seed, spawn_key=(cell_key,
rep))`` (see :mod:`simulate.replicate`), whatever the number of workers, the
backend, the batch size, or an interruption and resume.

Storage (``DIR``, see :mod:`simulate.store`)::

    DIR/manifest.json                    scenario(s), hashes, seed, code and package versions, truth, timings
    DIR/parts/cell00000_rep000000000-000000100.parquet   rows of reps [0, 100) of cell 0
    DIR/summary.csv                      performance measures with Monte Carlo SEs

    DIR/.lock                            the lock of the run that holds the directory (its PID)

Before any worker starts, the kernels are compiled (or loaded from Numba's cache) in
this process by one tiny replication of a small scenario, with a one-line message when
compiling will happen, so that workers load them from the cache instead of compiling
them in parallel, and the progress (:mod:`simulate.progress`) counts from the first
replication.  The dask backend needs the optional ``dask`` extra.

Reliability.  A run holds an exclusive OS lock on ``DIR/.lock`` (``flock``) from
before it touches anything in the directory until it ends; the kernel releases it
when the process ends, however it ends, and a second run or resume on a held
directory stops at once with one line naming the holder's PID.  The manifest is
written (atomically) before ``parts/`` exists, part files are written to a
temporary name and renamed (atomic on POSIX), so a run killed at any moment
(SIGKILL included, start-up and summary too) leaves a directory that ``--resume``
finishes: it runs exactly the replications that have no whole part, so each is
stored once.  A directory holding nothing but the lock and an empty ``parts/`` (a
kill during the start-up of an older version) is taken as new.  On resume every
part's Parquet footer is read and checked against its name (row count, replication
range); a damaged part is moved to ``DIR/damaged/`` and its replications run
again, with a one-line note.  A run refuses to resume into a directory made from
another scenario, seed or code version.  Worker processes die with the run's
process (:mod:`simulate._lifeline`).  numpy's RuntimeWarnings (overflow, invalid
values from extreme inputs) are not printed; their number is a note in the
manifest.

Test hook: the environment variable ``SIMULATE_TEST_PAUSE_AT`` (a comma-separated
list of ``startup``, ``manifest``, ``running``, ``summary``) makes the run stop at
those points, print ``simulate: test hook: paused at POINT`` on stderr and wait
while the file named by ``SIMULATE_TEST_PAUSE_FILE`` exists (or
``SIMULATE_TEST_PAUSE_SECONDS``, default 60, without it).  The fault-injection tests
(``tests/test_faults.py``) kill runs there; it is not meant for anything else.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from dataclasses import replace as _dc_replace
from pathlib import Path

from . import store
from . import warmup as _warmup
from ._lock import DirectoryLock, describe_os_error
from .errors import RunError
from .progress import INTERVAL, Progress
from .replicate import run_replications
from .scenario import GridCell, Scenario, validate_file
from .store import MAX_REPS, code_version, part_files
from .store import gaps as _gaps
from .store import nan_to_none as _nan_to_none
from .store import write_part as _write_part

__all__ = ["RunConfig", "RunError", "run", "config_from_args", "BACKENDS", "MAX_CHUNK", "JOBS_PER_CORE", "MAX_SEED",
           "DASK_EXTRA", "COMPILE_SECONDS"]

BACKENDS = ("loky", "threads", "dask")
MAX_CHUNK = 10_000
"""Replications per task at most (a task's rows are held in memory)."""
JOBS_PER_CORE = 4
"""--jobs at most this many times os.cpu_count()."""
MAX_SEED = 2**63
SCHEDULER_TIMEOUT = 10.0
"""Seconds to wait for a --scheduler to answer (environment: SIMULATE_SCHEDULER_TIMEOUT)."""
PAUSE_POINTS = ("startup", "manifest", "running", "summary")
DASK_EXTRA = "the dask backend needs the dask extra: pip install 'simulate[dask]'"
"""The one line a run with --backend dask stops with when dask or distributed is not installed."""
COMPILE_SECONDS = _warmup.COMPILE_SECONDS
"""About how long the first compilation of the kernels takes (:data:`simulate.warmup.COMPILE_SECONDS`)."""
TASK_PERSONS = 2_000_000
"""Persons drawn per task at least, where the run has that many (about 0.2 s of kernel time)."""
MAX_AUTO_CHUNK = 2_000
"""Replications per task at most without --chunk."""


def _num(x) -> str:
    """A number for a one-line message (a huge integer by its number of digits)."""
    text = str(x)
    if isinstance(x, int) and len(text) > 24:
        return f"a {len(text.lstrip('-'))}-digit {'negative ' if x < 0 else ''}integer"
    return text[:40]


@dataclass(frozen=True)
class RunConfig:
    """How to run: everything except the scenario.

    Attributes
    ----------
    reps : int
        Replications per grid cell.
    seed : int
        The run seed (0 <= seed < 2**63).
    jobs : int
        Worker processes (or threads, or Dask workers of a local cluster).
    backend : {"loky", "threads", "dask"}
    scheduler : str, optional
        Address of a running Dask scheduler; without it a local cluster is started.
    chunk : int, optional
        Replications per task (default: enough tasks to balance the workers, 10..200).
    common_random_numbers : bool
        The same random numbers in every grid cell (replication r of every cell uses
        spawn key (0, r)); False gives each cell its own stream (cell + 1, r).
    resume : bool
        Continue a run in an existing directory.
    quiet : bool
        No progress bar.
    level : float
        Confidence level of the intervals.
    progress_interval : float
        Seconds between two progress lines when stderr is not a terminal (:mod:`simulate.progress`).
    """

    reps: int
    seed: int = 0
    jobs: int = 1
    backend: str = "loky"
    scheduler: str | None = None
    chunk: int | None = None
    common_random_numbers: bool = True
    resume: bool = False
    quiet: bool = False
    level: float = 0.95
    progress_interval: float = INTERVAL

    def check(self) -> None:
        """Raise :class:`RunError` (one line naming the option) for a setting out of its range."""
        if not isinstance(self.reps, int) or self.reps < 1:
            raise RunError(f"--reps: must be a positive integer, got {_num(self.reps)}")
        if self.reps > MAX_REPS:
            raise RunError(f"--reps: at most {MAX_REPS:,} replications per grid cell, got {_num(self.reps)}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < MAX_SEED:
            raise RunError(f"--seed: must be an integer in [0, 2^63), got {_num(self.seed)}")
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise RunError(f"--jobs: must be a positive integer, got {_num(self.jobs)}")
        if self.backend not in BACKENDS:
            raise RunError(f"--backend: must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.scheduler is not None and self.backend != "dask":
            raise RunError("--scheduler: only with --backend dask")
        cores = os.cpu_count() or 1
        if self.scheduler is None and self.jobs > JOBS_PER_CORE * cores:
            raise RunError(f"--jobs: at most {JOBS_PER_CORE} per core, {JOBS_PER_CORE * cores} on this machine's "
                           f"{cores} core(s), got {_num(self.jobs)}")
        if self.chunk is not None and (not isinstance(self.chunk, int) or self.chunk < 1):
            raise RunError(f"--chunk: must be a positive integer, got {_num(self.chunk)}")
        if self.chunk is not None and self.chunk > MAX_CHUNK:
            raise RunError(f"--chunk: at most {MAX_CHUNK:,} replications per task, got {_num(self.chunk)}")
        if not 0 < self.level < 1:
            raise RunError(f"--level: must be in (0, 1), got {self.level}")
        if not isinstance(self.progress_interval, (int, float)) or not self.progress_interval > 0:
            raise RunError(f"progress interval: must be a positive number of seconds, got {self.progress_interval}")


# ---------------------------------------------------------------------------
# numpy's RuntimeWarnings: counted, never printed
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _counting_warnings(counter: list):
    """Within the block, RuntimeWarnings are counted into ``counter[0]`` instead of printed."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", RuntimeWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, RuntimeWarning):
                counter[0] += 1
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield counter


def _task(scenario: Scenario, cell: int, cell_key: int, seed: int, start: int, stop: int, level: float,
          own_warnings: bool = False):
    """One batch of replications in a worker: returns (cell, start, stop, columns, seconds, warnings).

    ``own_warnings``: count (and hide) this batch's RuntimeWarnings here (a worker process);
    otherwise the caller's process counts them.
    """
    t0 = time.perf_counter()
    counter = [0]
    with _counting_warnings(counter) if own_warnings else contextlib.nullcontext():
        cols = run_replications(scenario, cell, cell_key, seed, range(start, stop), level)
    return cell, start, stop, cols, time.perf_counter() - t0, counter[0]


def _cut(gaps: list[tuple[int, int]], chunk: int) -> Iterable[tuple[int, int]]:
    """The gaps cut into pieces of at most ``chunk`` replications."""
    for a, b in gaps:
        for s in range(a, b, chunk):
            yield s, min(s + chunk, b)


def _load_cells(source) -> tuple[list[GridCell], str, str]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        cells = validate_file(path)
        return cells, path.read_text(encoding="utf-8"), str(path)
    if isinstance(source, Scenario):
        return [GridCell(0, (), source)], "", source.name
    cells = list(source)
    return cells, "", "<cells>"


# ---------------------------------------------------------------------------
# The test hook (see the module docstring)
# ---------------------------------------------------------------------------


def _pause(point: str) -> None:
    wanted = os.environ.get("SIMULATE_TEST_PAUSE_AT")
    if not wanted or point not in [w.strip() for w in wanted.split(",")]:
        return
    print(f"simulate: test hook: paused at {point}", file=sys.stderr, flush=True)
    hold = os.environ.get("SIMULATE_TEST_PAUSE_FILE")
    limit = time.monotonic() + float(os.environ.get("SIMULATE_TEST_PAUSE_SECONDS", "60"))
    while time.monotonic() < limit and (hold is None or os.path.exists(hold)):
        time.sleep(0.02)


# ---------------------------------------------------------------------------
# The kernels: compiled (or loaded from the cache) once, in the parent, before any worker starts
# ---------------------------------------------------------------------------


def _kernels_cached() -> bool:
    """Whether the on-disk cache holds the compiled kernels (:func:`simulate.warmup.kernels_cached`)."""
    return _warmup.kernels_cached()


def _kernels_loaded() -> bool:
    """Whether this process has the entry kernel compiled or loaded already (a second run in one process).

    True, too, under ``NUMBA_DISABLE_JIT=1``: the kernels are plain Python, nothing compiles.
    """
    from .kernels.replicate_nb import replicate_batch

    signatures = getattr(replicate_batch, "signatures", None)
    return signatures is None or bool(signatures)


def _warm_up(cells, quiet: bool = False) -> dict:
    """Compile (or load from the cache) the kernels in this process, timed (:func:`simulate.warmup.warm_up`).

    The mediator kinds (continuous, binary) are the grid's.  Prints ``compiling kernels (first run only,
    about N s)`` first when the cache holds no compiled kernels (and not ``quiet``).  The
    replication's rows are thrown away: they are a pure function of their own scenario, seed and
    replication, and nothing of them reaches the run's rows.

    Returns
    -------
    dict
        ``{"compiled": bool, "seconds": float}`` for the run's entry in the manifest.
    """
    compiling = not (_kernels_loaded() or _kernels_cached())
    if compiling and not quiet:
        print(f"simulate: compiling kernels (first run only, about {COMPILE_SECONDS} s)", file=sys.stderr,
              flush=True)
    t0 = time.perf_counter()
    binary = [b for c in cells for b in c.scenario.is_binary]
    with _counting_warnings([0]):  # not this run's warnings
        _warmup.warm_up(continuous=not all(binary), binary=any(binary))
    return {"compiled": compiling, "seconds": round(time.perf_counter() - t0, 3)}


# ---------------------------------------------------------------------------
# The optional dask backend
# ---------------------------------------------------------------------------


def _require_dask() -> None:
    """Stop with :data:`DASK_EXTRA` when dask or distributed cannot be imported."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise RunError(DASK_EXTRA) from None


def _connect(config: RunConfig):
    """A client of the --scheduler, connected before the directory is touched."""
    from distributed import Client

    timeout = float(os.environ.get("SIMULATE_SCHEDULER_TIMEOUT", SCHEDULER_TIMEOUT))
    try:
        return Client(config.scheduler, timeout=f"{timeout}s")
    except Exception as exc:  # no scheduler there: refused, timed out, a bad address
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RunError(f"--scheduler {config.scheduler}: no Dask scheduler answered within {timeout:g} s ({why}); "
                       "start one or leave out --scheduler for a local cluster") from None


def _note(msg: str) -> None:
    print(f"simulate: note: {' '.join(msg.splitlines())}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def run(source, out: str | Path, config: RunConfig, *, truth_sites: int | None = None) -> dict:
    """Run every replication of every grid cell; stream rows to ``out``; write the summary.

    Parameters
    ----------
    source : path of a scenario file, a Scenario, or a list of GridCells
    out : run directory
    config : RunConfig
    truth_sites : int, optional
        Simulated sites for the truth of each cell (default: :data:`simulate.truth.TRUTH_SITES`).

    Returns
    -------
    dict
        The manifest as written.

    Raises
    ------
    RunError
        One line, for everything a user can cause or fix: bad settings, a directory that
        is held by another run, in the way, damaged or made by another scenario, a full
        disk, a dead worker or scheduler, the dask backend without the dask extra.  Where
        the run can be finished it says to rerun with ``--resume``.
    KeyboardInterrupt
        With the number of replications stored and the ``--resume`` hint.
    """
    config.check()
    if config.backend == "dask":
        _require_dask()
    cells, text, label = _load_cells(source)
    out = Path(out)
    store.check_disk(cells, config.reps, out)
    code = code_version()
    client = _connect(config) if config.backend == "dask" and config.scheduler else None
    counter = [0]
    try:
        with _counting_warnings(counter), DirectoryLock(out) as lock:
            return _run_locked(cells, text, label, out, config, code, truth_sites, client, counter, lock)
    finally:
        if client is not None:
            client.close()


@dataclass
class _Outcome:
    """What the replication loop did: for the run's entry in the manifest and the stop message."""

    replications: int = 0
    worker_seconds: float = 0.0
    warnings: int = 0
    wall: float = 0.0
    interrupted: bool = False
    failure: str | None = None
    warm_up: dict = field(default_factory=dict)


def _run_locked(cells, text, label, out: Path, config: RunConfig, code: str, truth_sites, client, counter,
                lock) -> dict:
    """The run under the directory's lock: the directory, the replications, their record, the summary."""
    _pause("startup")
    manifest, notes = _open_directory(cells, text, label, out, config, code)
    for n in ([lock.note] if lock.note else []) + notes:
        _note(n)
    cell_keys = _cell_keys(cells, config)
    tasks, n_missing, chunk = _plan(cells, out, config)
    outcome = _Outcome()
    if n_missing and config.scheduler is None:  # workers of a --scheduler compile where they run
        outcome.warm_up = _warm_up(cells, config.quiet)
    _replicate(outcome, tasks, n_missing, cells, cell_keys, config, client, out)
    _close(out, cells, manifest, outcome, config, chunk, truth_sites, counter)
    return manifest


def _close(out: Path, cells, manifest: dict, outcome: _Outcome, config: RunConfig, chunk: int, truth_sites,
           counter: list) -> None:
    """Record the run in the manifest; stop with the resume hint if it was cut short; else truth and summary."""
    _record(manifest, outcome, config, chunk, counter)
    if outcome.interrupted or outcome.failure is not None:
        _stop(out, manifest, outcome, config.reps * len(cells))
    try:
        store.write_manifest(out, manifest)
        parts = part_files(out)  # every replication exactly once
        for c in cells:
            if _gaps(parts, c.index, config.reps):
                raise RunError(f"{out}: cell {c.index} is missing replications after the run; rerun with --resume")
        _finish(out, cells, manifest, truth_sites, config.quiet, counter)
    except OSError as exc:
        raise RunError(describe_os_error(exc) + f"; the replications are stored in {out}; "
                       "rerun with --resume to finish") from None


# ---------------------------------------------------------------------------
# A batch: several runs through one pool of workers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRun:
    """One run of a batch (:func:`run_batch`): cells, directory, replications per cell.

    ``cells`` is what :func:`run` takes as its source: a scenario file, a Scenario or GridCells.
    """

    cells: object
    out: Path
    reps: int


@dataclass
class _Open:
    """A run of a batch with its directory open: what is left to run, and what it did."""

    out: Path
    cells: list
    config: RunConfig
    manifest: dict
    chunk: int
    tasks: list
    left: int
    outcome: _Outcome = field(default_factory=_Outcome)
    closed: bool = False


def _batch_task(tag: int, *args):
    """:func:`_task` with the index of its run in the batch, so that its result finds its directory."""
    return tag, _task(*args)


def run_batch(runs, config: RunConfig, *, truth_sites: int | None = None) -> list[dict]:
    """Several runs, each in its own directory, through one pool of workers and one warm-up.

    Each run stores exactly what :func:`run` would store for ``(run.cells, run.out)`` with
    ``config`` at ``run.reps`` replications (the same rows, parts, manifest fields and
    summary; a directory that holds a manifest is resumed).  Shared are the workers, the
    kernels' warm-up and the progress line; a run's truth and summary are written as soon as
    its last replication is in, while the workers go on with the others' replications, so a
    sweep of many small cells keeps every core busy.  An interruption or a failure leaves
    every directory resumable, like :func:`run`.

    Parameters
    ----------
    runs : iterable of BatchRun
    config : RunConfig
        Settings of every run; its ``reps`` and ``resume`` are each run's own.
    truth_sites : int, optional
        As in :func:`run`.

    Returns
    -------
    list of dict
        The manifests as written, in the order of ``runs``.
    """
    runs = list(runs)
    configs = [_dc_replace(config, reps=r.reps, resume=(Path(r.out) / store.MANIFEST_NAME).exists()) for r in runs]
    for c in configs:
        c.check()
    if config.backend == "dask":
        _require_dask()
    loaded = [_load_cells(r.cells) for r in runs]
    for (cells, _, _), r, c in zip(loaded, runs, configs):
        store.check_disk(cells, c.reps, Path(r.out))
    code = code_version()
    client = _connect(config) if config.backend == "dask" and config.scheduler else None
    counter = [0]
    try:
        with _counting_warnings(counter), contextlib.ExitStack() as stack:
            locks = [stack.enter_context(DirectoryLock(r.out)) for r in runs]
            _pause("startup")
            opened = []
            for r, (cells, text, label), c, lock in zip(runs, loaded, configs, locks):
                manifest, notes = _open_directory(cells, text, label, Path(r.out), c, code)
                for n in ([lock.note] if lock.note else []) + notes:
                    _note(n)
                tasks, left, chunk = _plan(cells, Path(r.out), c)
                opened.append(_Open(Path(r.out), cells, c, manifest, chunk, list(tasks), left))
            _run_batch(opened, config, truth_sites, client, counter)
            return [o.manifest for o in opened]
    finally:
        if client is not None:
            client.close()


def _run_batch(opened: list[_Open], config: RunConfig, truth_sites, client, counter: list) -> None:
    """The replications of every open run, each run closed (truth, summary) as its last one comes in."""
    total = sum(o.left for o in opened)
    if total and config.scheduler is None:
        opened[0].outcome.warm_up = _warm_up([c for o in opened for c in o.cells], config.quiet)
    for o in opened:  # nothing to run: only the truth and summary (a resumed, finished run)
        if o.left == 0:
            _close_open(o, truth_sites, counter)
    own = _own_warnings(config)
    maps = [({c.index: c for c in o.cells}, _cell_keys(o.cells, o.config)) for o in opened]
    args = ((j, maps[j][0][c].scenario, c, maps[j][1][c], config.seed, a, b, config.level, own)
            for j, o in enumerate(opened) for c, a, b in o.tasks)
    dead_worker = _worker_death_errors(config)
    t0 = time.perf_counter()
    failure, interrupted = None, False
    with Progress(total, quiet=config.quiet, interval=config.progress_interval) as progress:
        try:
            for j, (cell, start, stop, cols, secs, nwarn) in _dispatch(_batch_task, args, total, config, client):
                o = opened[j]
                _write_part(o.out, cell, start, stop, cols)
                o.outcome.worker_seconds += secs
                o.outcome.warnings += nwarn
                o.outcome.replications += stop - start
                o.left -= stop - start
                progress.update(stop - start, secs)
                if o.left == 0:
                    o.outcome.wall = time.perf_counter() - t0
                    _close_open(o, truth_sites, counter)
        except KeyboardInterrupt:
            interrupted = True
        except dead_worker:
            failure = "a worker process died (killed or out of memory)"
        except MemoryError:
            failure = "out of memory (use fewer --jobs or a smaller --chunk)"
        except OSError as exc:
            failure = describe_os_error(exc)
    if not (interrupted or failure):
        return
    wall = time.perf_counter() - t0
    for o in opened:
        if not o.closed:
            o.outcome.wall, o.outcome.interrupted, o.outcome.failure = wall, interrupted, failure
            _record(o.manifest, o.outcome, o.config, o.chunk, counter)
            with contextlib.suppress(OSError):
                store.write_manifest(o.out, o.manifest)
    stored = sum(store.stored_replications(o.out) for o in opened)
    want = sum(o.config.reps * len(o.cells) for o in opened)
    where = f"{stored} of {want} replications are stored; rerun with --resume to finish"
    if interrupted:
        raise KeyboardInterrupt(where)
    raise RunError(f"{failure}; {where}")


def _close_open(o: _Open, truth_sites, counter: list) -> None:
    o.closed = True
    _close(o.out, o.cells, o.manifest, o.outcome, o.config, o.chunk, truth_sites, counter)


def _cell_keys(cells, config: RunConfig) -> list[int]:
    """The spawn key of each cell, by cell index: 0 for common random numbers, else the cell's index + 1."""
    return [0 if config.common_random_numbers else c.index + 1 for c in cells]


def _open_directory(cells, text: str, label: str, out: Path, config: RunConfig, code: str) -> tuple[dict, list]:
    """The manifest, new or resumed (checked against this run), written before ``parts/`` exists; notes."""
    manifest_path = out / store.MANIFEST_NAME
    identity = store.fingerprint(cells, config.seed, config.common_random_numbers, config.level, code)
    notes: list[str] = []
    try:
        store.clean_strays(out)
        if manifest_path.exists():
            if not config.resume:
                raise RunError(f"{out}: already holds a run; add --resume to continue it or choose another --out")
            manifest = store.read_manifest(out)
            store.check_same_run(manifest, identity, out)
            notes += store.repair_parts(out)
            held = max((b for _, _, b, _ in part_files(out)), default=0)
            if held > config.reps:
                raise RunError(f"{out}: holds {held} replications per cell, more than --reps {config.reps}")
        else:
            if not store.is_fresh(out):
                raise RunError(f"{out}: exists and is not a run directory; choose an empty or new --out")
            manifest, more = store.new_manifest(identity, cells, _cell_keys(cells, config), label, text)
            notes += more
        manifest["reps"] = config.reps
        manifest.pop("complete", None)  # until this run's summary is written
        store.write_manifest(out, manifest)
        _pause("manifest")
        (out / store.PARTS_DIR).mkdir(exist_ok=True)
    except OSError as exc:
        raise RunError(describe_os_error(exc, out) + ("; free space and rerun with --resume"
                                                      if manifest_path.exists() else "")) from None
    return manifest, notes


def _plan(cells, out: Path, config: RunConfig) -> tuple[Iterable[tuple[int, int, int]], int, int]:
    """The tasks (cell, start, stop) that cover exactly the replications no part holds; their number; the chunk."""
    parts = part_files(out)
    gaps = {c.index: _gaps(parts, c.index, config.reps) for c in cells}
    n_missing = sum(b - a for g in gaps.values() for a, b in g)
    chunk = config.chunk or _auto_chunk(cells, n_missing, config.jobs)
    tasks = ((c.index, a, b) for c in cells for a, b in _cut(gaps[c.index], chunk))
    return tasks, n_missing, chunk


def _persons(sc: Scenario) -> float:
    """Persons per replication (the expected number when site sizes are drawn from a range)."""
    if sc.n_per_site:
        return float(sum(sc.n_per_site))
    lo, hi = sc.n_per_site_range
    return sc.n_sites * (lo + hi) / 2.0


def _auto_chunk(cells, n_missing: int, jobs: int) -> int:
    """Replications per task without ``--chunk``.

    About four tasks per worker, 10 to 200 replications each, but at least :data:`TASK_PERSONS`
    persons per task (at most :data:`MAX_AUTO_CHUNK` replications, and not so many that a worker
    is left without a task): each task costs a Parquet part, its fsync, a dispatch to a worker and a
    read by the summary, which small scenarios in small tasks paid more for than for their kernel
    time.  The tasks are then evened out to a multiple of the workers.
    """
    jobs = max(1, jobs)
    if n_missing <= 0:
        return 1
    balance = min(200, max(10, math.ceil(n_missing / (4 * jobs))))
    persons = max(1.0, max(_persons(c.scenario) for c in cells))
    least = min(MAX_AUTO_CHUNK, math.ceil(TASK_PERSONS / persons), math.ceil(n_missing / jobs))
    chunk = max(balance, least)
    tasks = math.ceil(math.ceil(n_missing / chunk) / jobs) * jobs
    return int(max(1, math.ceil(n_missing / tasks)))


def _replicate(outcome: _Outcome, tasks, n_missing: int, cells, cell_keys, config: RunConfig, client,
               out: Path) -> None:
    """Run the tasks, write each one's part as it completes, show the progress; failures into ``outcome``."""
    by_index = {c.index: c for c in cells}
    dead_worker = _worker_death_errors(config)
    t0 = time.perf_counter()
    with Progress(n_missing, quiet=config.quiet, interval=config.progress_interval) as progress:
        try:
            for cell, start, stop, cols, secs, nwarn in _execute(tasks, n_missing, by_index, cell_keys, config,
                                                                 client):
                _write_part(out, cell, start, stop, cols)
                outcome.worker_seconds += secs
                outcome.warnings += nwarn
                outcome.replications += stop - start
                progress.update(stop - start, secs)
                if outcome.replications == stop - start:
                    _pause("running")
        except KeyboardInterrupt:
            outcome.interrupted = True
        except dead_worker:
            outcome.failure = "a worker process died (killed or out of memory)"
        except MemoryError:
            outcome.failure = "out of memory (use fewer --jobs or a smaller --chunk)"
        except OSError as exc:  # disk full, permissions, a lost scheduler
            outcome.failure = describe_os_error(exc)
    outcome.wall = time.perf_counter() - t0


def _record(manifest: dict, outcome: _Outcome, config: RunConfig, chunk: int, counter: list) -> None:
    """This run's entry in the manifest (not written yet) and the warnings counted so far."""
    wall, done = outcome.wall, outcome.replications
    entry = {"started": store.now(), "backend": config.backend, "jobs": config.jobs, "chunk": chunk,
             "replications": done, "wall_seconds": round(wall, 3),
             "worker_seconds": round(outcome.worker_seconds, 3),
             "replications_per_second": round(done / wall, 3) if wall > 0 else None,
             "interrupted": outcome.interrupted or outcome.failure is not None}
    if outcome.warm_up:
        entry["kernels_compiled"] = outcome.warm_up["compiled"]
        entry["warm_up_seconds"] = outcome.warm_up["seconds"]
    if outcome.failure is not None:
        entry["error"] = outcome.failure
    manifest["runs"].append(entry)
    store.add_warnings(manifest, entry, counter[0] + outcome.warnings)
    counter[0] = 0  # counted so far: in the manifest (the truth's and the summary's come later)


def _stop(out: Path, manifest: dict, outcome: _Outcome, total: int) -> None:
    """An interrupted or failed run: its entry kept if the manifest can be written; raises with the resume hint."""
    with contextlib.suppress(OSError):  # the manifest is already valid without this run's entry
        store.write_manifest(out, manifest)
    where = (f"{store.stored_replications(out)} of {total} replications are stored in {out}; "
             "rerun with --resume to finish")
    if outcome.interrupted:
        raise KeyboardInterrupt(where)
    raise RunError(f"{outcome.failure}; {where}")


def _finish(out: Path, cells, manifest: dict, truth_sites, quiet: bool, counter: list | None = None) -> None:
    """Truth per cell (cached in the manifest), then the summary."""
    # imported here, at the last stage: the summary reads the store, never the runner
    from . import run_summary as summary
    from .truth import TRUTH_SITES, truth

    for entry, cell in zip(manifest["cells"], cells):
        if "truth" not in entry:
            tr = truth(cell.scenario, n_sites=truth_sites or TRUTH_SITES)
            entry["truth"] = _nan_to_none(tr.to_dict())
            store.write_manifest(out, manifest)
    _pause("summary")
    try:
        summary.write_summary(out)
    except summary.SummaryError as exc:
        damaged = [p for *_, p in part_files(out) if str(p) in str(exc)]
        if damaged and "unreadable part" in str(exc):
            dest = store.move_aside(out, damaged[0])
            raise RunError(f"{damaged[0]}: damaged part file ({'moved to ' + str(dest) if dest else 'deleted'}); "
                           "rerun with --resume to run its replications again") from None
        raise RunError(str(exc)) from None
    if counter is not None and counter[0] > 0:
        store.add_warnings(manifest, manifest["runs"][-1] if manifest["runs"] else None, counter[0])
        counter[0] = 0
    manifest["complete"] = True
    store.write_manifest(out, manifest)


def _worker_death_errors(config: RunConfig) -> tuple:
    """The exceptions by which a backend says that one of its worker processes died."""
    from concurrent.futures import BrokenExecutor

    errs = [BrokenExecutor]
    if config.backend == "dask":
        with contextlib.suppress(ImportError):
            from distributed.scheduler import KilledWorker

            errs.append(KilledWorker)
    return tuple(errs)


def _own_warnings(config: RunConfig) -> bool:
    """Whether the tasks run in worker processes (which then count their own warnings)."""
    return config.jobs > 1 and config.backend == "loky" or config.backend == "dask"


def _execute(tasks, n_tasks_hint: int, cells: dict[int, GridCell], cell_keys: list[int], config: RunConfig,
             client=None) -> Iterable:
    """Yield task results as they complete, on the configured backend."""
    own = _own_warnings(config)
    args = ((cells[c].scenario, c, cell_keys[c], config.seed, a, b, config.level, own) for c, a, b in tasks)
    yield from _dispatch(_task, args, n_tasks_hint, config, client)


def _dispatch(fn, args, n_tasks_hint: int, config: RunConfig, client=None) -> Iterable:
    """Yield ``fn(*a)`` for every ``a`` of ``args`` as they complete, on the configured backend."""
    if n_tasks_hint == 0:
        return
    if config.backend == "dask":
        yield from _execute_dask(fn, args, config, client)
        return
    if config.jobs == 1:
        for a in args:
            yield fn(*a)
        return
    from joblib import Parallel, delayed, parallel_config

    from ._lifeline import die_with_parent

    if config.backend == "loky":
        with parallel_config(backend="loky", initializer=die_with_parent, initargs=(os.getpid(),)):
            par = Parallel(n_jobs=config.jobs, return_as="generator_unordered", pre_dispatch="2*n_jobs")
    else:
        par = Parallel(n_jobs=config.jobs, backend="threading", return_as="generator_unordered",
                       pre_dispatch="2*n_jobs")
    yield from par(delayed(fn)(*a) for a in args)


def _execute_dask(fn, args, config: RunConfig, client=None):
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    own_client = client is None
    if own_client:
        cluster = LocalCluster(n_workers=config.jobs, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    try:
        pending = as_completed()
        window = 4 * max(1, config.jobs) if own_client else 256
        for a in args:  # a bounded window of submitted tasks (a huge run is not submitted at once)
            pending.add(client.submit(fn, *a, pure=False))
            if pending.count() >= window:
                fut = next(pending)
                yield fut.result()
                fut.release()
        for fut in pending:
            yield fut.result()
            fut.release()
    finally:
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()


def config_from_args(args) -> RunConfig:
    """The :class:`RunConfig` of ``simulate run``'s parsed arguments (``progress_interval`` where the CLI has it).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments of ``simulate run``.

    Returns
    -------
    RunConfig
    """
    return RunConfig(reps=args.reps, seed=args.seed, jobs=args.jobs, backend=args.backend,
                     scheduler=args.scheduler, chunk=args.chunk,
                     common_random_numbers=not args.independent_cells, resume=args.resume,
                     quiet=args.quiet, level=args.level,
                     progress_interval=getattr(args, "progress_interval", None) or INTERVAL)
