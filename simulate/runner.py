"""The replication engine: many replications of a scenario or a grid, on every core or a cluster.

A run is a pure function of (scenario file, seed, code version): replication
``rep`` of grid cell ``cell`` draws from ``SeedSequence(seed, spawn_key=(cell_key,
rep))`` (see :mod:`simulate.replicate`), whatever the number of workers, the
backend, the batch size, or an interruption and resume.

Storage (``DIR``)::

    DIR/manifest.json                    scenario(s), hashes, seed, code and package versions, truth, timings
    DIR/parts/cell00000_rep000000000-000000100.parquet   rows of reps [0, 100) of cell 0
    DIR/summary.csv                      performance measures with Monte Carlo SEs

    DIR/.lock                            the lock of the run that holds the directory (its PID)

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
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from ._lock import LOCK_NAME, DirectoryLock, describe_os_error
from .errors import RunError
from .replicate import ROW_COLUMNS, estimators_for, run_replications
from .scenario import GridCell, Scenario, validate_file

__all__ = ["RunConfig", "RunError", "run", "code_version", "read_rows", "part_files", "config_from_args", "BACKENDS",
           "MAX_REPS", "MAX_CHUNK", "JOBS_PER_CORE", "MAX_SEED"]

BACKENDS = ("loky", "threads", "dask")
_PART = re.compile(r"^cell(\d{5})_rep(\d{9})-(\d{9})\.parquet$")

MAX_REPS = 10**8
"""Replications per grid cell at most (the part names hold 9 digits)."""
MAX_CHUNK = 10_000
"""Replications per task at most (a task's rows are held in memory)."""
JOBS_PER_CORE = 4
"""--jobs at most this many times os.cpu_count()."""
MAX_SEED = 2**63
MIN_BYTES_PER_ROW = 40
"""A low estimate of a row's size on disk (zstd Parquet): a run that needs more than the free space stops
before it starts."""
BIG_TEXT = 1_000_000
"""A scenario text longer than this is stored in the manifest as its hash and size only."""
BIG_DESCRIPTION = 4096
"""A description longer than this is stored in the manifest's cells cut to its start, with its hash and size."""
SCHEDULER_TIMEOUT = 10.0
"""Seconds to wait for a --scheduler to answer (environment: SIMULATE_SCHEDULER_TIMEOUT)."""
PAUSE_POINTS = ("startup", "manifest", "running", "summary")


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

    def check(self) -> None:
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


def code_version() -> str:
    """A hash of the package's source files: rows are a pure function of this and the inputs."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


def _packages() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "numba", "pandas", "pyarrow", "joblib", "distributed"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def part_files(out: Path) -> list[tuple[int, int, int, Path]]:
    """(cell, start, stop, path) of every complete part file, sorted by (cell, start)."""
    parts = []
    d = Path(out) / "parts"
    if d.is_dir():
        for p in d.iterdir():
            m = _PART.match(p.name)
            if m:
                parts.append((int(m.group(1)), int(m.group(2)), int(m.group(3)), p))
    return sorted(parts)


def read_rows(out: str | Path, columns: list[str] | None = None):
    """Every stored row of a run directory as one pandas DataFrame, sorted by (cell, rep, row)."""
    import pandas as pd
    import pyarrow.parquet as pq

    frames = [pq.read_table(p, columns=columns).to_pandas() for _, _, _, p in part_files(Path(out))]
    if not frames:
        return pd.DataFrame(columns=columns or list(ROW_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False, default=_json_safe))
    os.replace(tmp, path)


def _json_safe(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return None if not np.isfinite(x) else float(x)
    return str(x)


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def _write_part(out: Path, cell: int, start: int, stop: int, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: columns[k] for k in ROW_COLUMNS})
    final = out / "parts" / f"cell{cell:05d}_rep{start:09d}-{stop:09d}.parquet"
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return final


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


def _gaps(parts, cell: int, reps: int) -> list[tuple[int, int]]:
    """The half-open ranges of [0, reps) that no part of ``cell`` covers, in order."""
    spans = sorted((a, min(b, reps)) for c, a, b, _ in parts if c == cell and a < reps)
    out, pos = [], 0
    for a, b in spans:
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < reps:
        out.append((pos, reps))
    return out


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
# Checks before the directory is touched
# ---------------------------------------------------------------------------


def _rows_per_rep(sc: Scenario) -> int:
    P = len(sc.mediator_names)
    return len(estimators_for(P)) * P + 1


def _check_disk(cells, config: RunConfig, out: Path) -> None:
    """Stop before anything is written when the rows cannot fit on the disk (a low estimate)."""
    need = sum(_rows_per_rep(c.scenario) for c in cells) * config.reps * MIN_BYTES_PER_ROW
    probe = out.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return  # a file in the way: the lock says so
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if need > free:
        raise RunError(f"--reps {config.reps:,}: the rows of {len(cells)} grid cell(s) take at least "
                       f"{_size(need)} on disk, {_size(free)} are free at {probe}; use fewer --reps or another --out")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} TB"


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


# ---------------------------------------------------------------------------
# The directory: its state at start-up, damaged parts
# ---------------------------------------------------------------------------


def _clean_strays(out: Path) -> None:
    """Temporary files of killed runs (only under the lock: no other run writes here)."""
    for stray in [*out.glob(".manifest.json.tmp-*"), *(out / "parts").glob(".*.tmp-*")]:
        with contextlib.suppress(FileNotFoundError):
            stray.unlink()


def _fresh(out: Path) -> bool:
    """True when ``out`` holds nothing but what a run killed before its manifest leaves (the lock, empty parts/)."""
    for p in out.iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.name == "parts" and p.is_dir() and not any(p.iterdir()):
            continue
        return False
    return True


def _read_manifest(out: Path) -> dict:
    path = out / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise RunError(f"{path}: damaged manifest ({why}); the parts cannot be checked against it: "
                       "start again in another --out") from None
    except OSError as exc:
        raise RunError(describe_os_error(exc, path)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cells"), list) \
            or not isinstance(manifest.get("runs", []), list):
        raise RunError(f"{path}: damaged manifest (not a run's manifest); start again in another --out")
    manifest.setdefault("runs", [])
    return manifest


def _part_problem(path: Path, cell: int, start: int, stop: int) -> str | None:
    """Why a part file is not whole (its footer, row count and replication range against its name), or None."""
    import pyarrow.parquet as pq

    try:
        md = pq.read_metadata(path)
        names = list(md.schema.names)
        if names != list(ROW_COLUMNS):
            return "not the row format"
        n = md.num_rows
        if n <= 0 or n % (stop - start):
            return f"{n} rows for {stop - start} replications"
        irep, icell = names.index("rep"), names.index("cell")
        lo, hi, clo, chi = None, None, None, None
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(irep).statistics
            cs = md.row_group(g).column(icell).statistics
            if st is None or not st.has_min_max or cs is None or not cs.has_min_max:
                return None  # no statistics to check against: the footer was read
            lo = st.min if lo is None else min(lo, st.min)
            hi = st.max if hi is None else max(hi, st.max)
            clo = cs.min if clo is None else min(clo, cs.min)
            chi = cs.max if chi is None else max(chi, cs.max)
        if (lo, hi) != (start, stop - 1) or (clo, chi) != (cell, cell):
            return f"holds cell {clo}-{chi}, replications {lo}-{hi}, not its name's"
    except Exception as exc:  # a truncated or foreign file
        return (str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
    return None


def _move_aside(out: Path, path: Path) -> Path | None:
    """Move a damaged part to DIR/damaged/ (deleted when that fails); returns where it went."""
    dest = out / "damaged" / path.name
    try:
        dest.parent.mkdir(exist_ok=True)
        os.replace(path, dest)
        return dest
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def _repair_parts(out: Path) -> list[str]:
    """Damaged parts moved aside and overlapping parts (of a concurrent run before locking) removed; notes."""
    notes = []
    damaged, overlapping = [], []
    kept_stop: dict[int, int] = {}
    for c, a, b, p in part_files(out):
        why = _part_problem(p, c, a, b)
        if why is not None:
            dest = _move_aside(out, p)
            damaged.append(p.name)
            notes.append(f"damaged part {p.name} ({why}) {'moved to ' + str(dest) if dest else 'deleted'}; "
                         "its replications are run again")
            continue
        if a < kept_stop.get(c, 0):  # the same replications in two parts: rows are the same, keep one
            with contextlib.suppress(OSError):
                p.unlink()
            overlapping.append(p.name)
            continue
        kept_stop[c] = b
    if overlapping:
        notes.append(f"{len(overlapping)} part file(s) repeating replications of other parts removed "
                     f"(first {overlapping[0]}); any replications they alone held are run again")
    return notes


def _note(msg: str) -> None:
    print(f"simulate: note: {' '.join(msg.splitlines())}", file=sys.stderr, flush=True)


def _compact(text: str, limit: int) -> str:
    """A long text cut to its start, with its size and hash."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:1000]} ... [cut: {len(text):,} characters, sha256 {digest}]"


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
        disk, a dead worker or scheduler.  Where the run can be finished it says to rerun
        with ``--resume``.
    KeyboardInterrupt
        With the number of replications stored and the ``--resume`` hint.
    """
    config.check()
    cells, text, label = _load_cells(source)
    out = Path(out)
    _check_disk(cells, config, out)
    code = code_version()
    client = _connect(config) if config.backend == "dask" and config.scheduler else None
    counter = [0]
    try:
        with _counting_warnings(counter), DirectoryLock(out) as lock:
            return _run_locked(cells, text, label, out, config, code, truth_sites, client, counter, lock)
    finally:
        if client is not None:
            client.close()


def _run_locked(cells, text, label, out: Path, config: RunConfig, code: str, truth_sites, client, counter,
                lock) -> dict:
    _pause("startup")
    notes = [lock.note] if lock.note else []
    manifest_path = out / "manifest.json"
    cell_keys = [0 if config.common_random_numbers else c.index + 1 for c in cells]
    fingerprint = {
        "cells": [{"index": c.index, "hash": c.hash} for c in cells],
        "seed": config.seed,
        "common_random_numbers": config.common_random_numbers,
        "level": config.level,
        "code_version": code,
    }
    try:
        _clean_strays(out)
        if manifest_path.exists():
            if not config.resume:
                raise RunError(f"{out}: already holds a run; add --resume to continue it or choose another --out")
            old = _read_manifest(out)
            for key in ("cells", "seed", "common_random_numbers", "level", "code_version"):
                same = key == "cells" and _same_cells(old.get(key), fingerprint[key])
                if old.get(key) != fingerprint[key] and not same:
                    what = {"cells": "a different scenario (or grid)", "seed": "a different seed",
                            "common_random_numbers": "a different common-random-numbers setting",
                            "level": "a different confidence level", "code_version": "a different code version"}[key]
                    raise RunError(f"{out}: was made from {what} ({key}: {_short(old.get(key))} here, "
                                   f"{_short(fingerprint[key])} now); refusing to mix results, use another --out")
            manifest = old
            notes += _repair_parts(out)
            held = max((b for _, _, b, _ in part_files(out)), default=0)
            if held > config.reps:
                raise RunError(f"{out}: holds {held} replications per cell, more than --reps {config.reps}")
        else:
            if not _fresh(out):
                raise RunError(f"{out}: exists and is not a run directory; choose an empty or new --out")
            manifest = None

        if manifest is None:
            manifest = {
                "simulate": __version__,
                **fingerprint,
                "scenario_file": label,
                "scenario_text": text,
                "packages": _packages(),
                "created": _now(),
                "runs": [],
            }
            if len(text) > BIG_TEXT:
                manifest["scenario_text"] = None
                manifest["scenario_text_chars"] = len(text)
                manifest["scenario_text_sha256"] = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
                notes.append(f"the scenario file has {len(text):,} characters: the manifest keeps its hash; "
                             "each cell's scenario is stored (its description cut)")
            for entry, cell in zip(manifest["cells"], cells):
                entry["values"] = [[p, v] for p, v in cell.values]
                entry["name"] = cell.scenario.name
                entry["scenario"] = cell.scenario.to_dict()
                if isinstance(entry["scenario"].get("description"), str):
                    entry["scenario"]["description"] = _compact(entry["scenario"]["description"], BIG_DESCRIPTION)
                entry["cell_key"] = cell_keys[cell.index]
        manifest["reps"] = config.reps
        manifest.pop("complete", None)  # until this run's summary is written
        _write_json_atomic(manifest_path, manifest)
        _pause("manifest")
        (out / "parts").mkdir(exist_ok=True)
    except OSError as exc:
        raise RunError(describe_os_error(exc, out) + ("; free space and rerun with --resume"
                                                      if manifest_path.exists() else "")) from None
    for n in notes:
        _note(n)

    parts = part_files(out)
    gaps = {c.index: _gaps(parts, c.index, config.reps) for c in cells}
    n_missing = sum(b - a for g in gaps.values() for a, b in g)
    total = config.reps * len(cells)
    chunk = config.chunk or int(min(200, max(10, math.ceil(n_missing / max(1, 4 * config.jobs)))))
    tasks = ((c.index, a, b) for c in cells for a, b in _cut(gaps[c.index], chunk))
    by_index = {c.index: c for c in cells}

    t0 = time.perf_counter()
    worker_seconds = 0.0
    done_reps = 0
    bar = _progress(n_missing, config.quiet)
    interrupted = False
    failure = None
    worker_warnings = 0
    dead_worker = _worker_death_errors(config)
    try:
        for cell, start, stop, cols, secs, nwarn in _execute(tasks, n_missing, by_index, cell_keys, config, client):
            _write_part(out, cell, start, stop, cols)
            worker_seconds += secs
            worker_warnings += nwarn
            done_reps += stop - start
            if bar is not None:
                bar.update(stop - start)
            if done_reps == stop - start:
                _pause("running")
    except KeyboardInterrupt:
        interrupted = True
    except dead_worker:
        failure = "a worker process died (killed or out of memory)"
    except MemoryError:
        failure = "out of memory (use fewer --jobs or a smaller --chunk)"
    except OSError as exc:  # disk full, permissions, a lost scheduler
        failure = describe_os_error(exc)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    entry = {"started": _now(), "backend": config.backend, "jobs": config.jobs, "chunk": chunk,
             "replications": done_reps, "wall_seconds": round(wall, 3),
             "worker_seconds": round(worker_seconds, 3),
             "replications_per_second": round(done_reps / wall, 3) if wall > 0 else None,
             "interrupted": interrupted or failure is not None}
    if failure is not None:
        entry["error"] = failure
    manifest["runs"].append(entry)
    _add_warnings(manifest, entry, counter[0] + worker_warnings)
    counter[0] = 0  # counted so far: in the manifest (the truth's and the summary's come later)
    if interrupted or failure is not None:
        with contextlib.suppress(OSError):  # the manifest is already valid without this run's entry
            _write_json_atomic(manifest_path, manifest)
        stored = sum(b - a for _, a, b, _ in part_files(out))
        where = f"{stored} of {total} replications are stored in {out}; rerun with --resume to finish"
        if interrupted:
            raise KeyboardInterrupt(where)
        raise RunError(f"{failure}; {where}")
    try:
        _write_json_atomic(manifest_path, manifest)
        # every replication exactly once
        parts = part_files(out)
        for c in cells:
            if _gaps(parts, c.index, config.reps):
                raise RunError(f"{out}: cell {c.index} is missing replications after the run; rerun with --resume")
        _finish(out, cells, manifest, truth_sites, config.quiet, counter)
    except OSError as exc:
        raise RunError(describe_os_error(exc) + f"; the replications are stored in {out}; "
                       "rerun with --resume to finish") from None
    return manifest


def _add_warnings(manifest: dict, entry: dict | None, n: int) -> None:
    if n <= 0:
        return
    if entry is not None:
        entry["numerical_warnings"] = entry.get("numerical_warnings", 0) + n
    manifest["numerical_warnings"] = manifest.get("numerical_warnings", 0) + n
    note = (f"{manifest['numerical_warnings']:,} numerical warning(s) from numpy (overflow or invalid values, "
            "usually from extreme inputs) were counted and not printed; affected estimates are NaN or "
            "infinite in the rows")
    manifest["notes"] = [x for x in manifest.get("notes", []) if "numerical warning" not in x] + [note]


def _finish(out: Path, cells, manifest: dict, truth_sites, quiet: bool, counter: list | None = None) -> None:
    """Truth per cell (cached in the manifest), then the summary."""
    import importlib

    truth_mod = importlib.import_module("simulate.truth")
    for entry, cell in zip(manifest["cells"], cells):
        if "truth" not in entry:
            tr = truth_mod.truth(cell.scenario, n_sites=truth_sites or truth_mod.TRUTH_SITES)
            entry["truth"] = _nan_to_none(tr.to_dict())
            _write_json_atomic(out / "manifest.json", manifest)
    try:
        from . import summary
    except ImportError:  # the summary stage is optional until it lands
        return
    _pause("summary")
    try:
        summary.write_summary(out)
    except summary.SummaryError as exc:
        damaged = [p for *_, p in part_files(out) if str(p) in str(exc)]
        if damaged and "unreadable part" in str(exc):
            dest = _move_aside(out, damaged[0])
            raise RunError(f"{damaged[0]}: damaged part file ({'moved to ' + str(dest) if dest else 'deleted'}); "
                           "rerun with --resume to run its replications again") from None
        raise RunError(str(exc)) from None
    if counter is not None and counter[0] > 0:
        _add_warnings(manifest, manifest["runs"][-1] if manifest["runs"] else None, counter[0])
        counter[0] = 0
    manifest["complete"] = True
    _write_json_atomic(out / "manifest.json", manifest)


def _same_cells(a, b) -> bool:
    return [(x["index"], x["hash"]) for x in (a or [])] == [(x["index"], x["hash"]) for x in (b or [])]


def _short(x) -> str:
    if isinstance(x, list):
        return ",".join(str(e.get("hash", e)) if isinstance(e, dict) else str(e) for e in x)[:40]
    return str(x)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _progress(total: int, quiet: bool):
    if quiet or total == 0 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rep", desc="replications", file=sys.stderr, smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")


def _worker_death_errors(config: RunConfig) -> tuple:
    """The exceptions by which a backend says that one of its worker processes died."""
    from concurrent.futures import BrokenExecutor

    errs = [BrokenExecutor]
    if config.backend == "dask":
        with contextlib.suppress(ImportError):
            from distributed.scheduler import KilledWorker

            errs.append(KilledWorker)
    return tuple(errs)


def _execute(tasks, n_tasks_hint: int, cells: dict[int, GridCell], cell_keys: list[int], config: RunConfig,
             client=None) -> Iterable:
    """Yield task results as they complete, on the configured backend."""
    if n_tasks_hint == 0:
        return
    own = config.jobs > 1 and config.backend == "loky" or config.backend == "dask"
    args = ((cells[c].scenario, c, cell_keys[c], config.seed, a, b, config.level, own) for c, a, b in tasks)
    if config.backend == "dask":
        yield from _execute_dask(args, config, client)
        return
    if config.jobs == 1:
        for a in args:
            yield _task(*a)
        return
    from joblib import Parallel, delayed, parallel_config

    from ._lifeline import die_with_parent

    if config.backend == "loky":
        with parallel_config(backend="loky", initializer=die_with_parent, initargs=(os.getpid(),)):
            par = Parallel(n_jobs=config.jobs, return_as="generator_unordered", pre_dispatch="2*n_jobs")
    else:
        par = Parallel(n_jobs=config.jobs, backend="threading", return_as="generator_unordered",
                       pre_dispatch="2*n_jobs")
    yield from par(delayed(_task)(*a) for a in args)


def _execute_dask(args, config: RunConfig, client=None):
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
            pending.add(client.submit(_task, *a, pure=False))
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
    return RunConfig(reps=args.reps, seed=args.seed, jobs=args.jobs, backend=args.backend,
                     scheduler=args.scheduler, chunk=args.chunk,
                     common_random_numbers=not args.independent_cells, resume=args.resume,
                     quiet=args.quiet, level=args.level)

