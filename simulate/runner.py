"""The replication engine: many replications of a scenario or a grid, on every core or a cluster.

A run is a pure function of (scenario file, seed, code version): replication
``rep`` of grid cell ``cell`` draws from ``SeedSequence(seed, spawn_key=(cell_key,
rep))`` (see :mod:`simulate.replicate`), whatever the number of workers, the
backend, the batch size, or an interruption and resume.

Storage (``DIR``)::

    DIR/manifest.json                    scenario(s), hashes, seed, code and package versions, truth, timings
    DIR/parts/cell00000_rep000000000-000000100.parquet   rows of reps [0, 100) of cell 0
    DIR/summary.csv                      performance measures with Monte Carlo SEs

Part files are written to a temporary name and renamed (atomic on POSIX), so a
run killed at any moment (SIGKILL included) leaves only whole parts; ``--resume``
runs exactly the replications that have no part, so each is stored once.  A run
refuses to resume into a directory made from another scenario, seed or code
version.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from . import __version__
from .replicate import ROW_COLUMNS, run_replications
from .scenario import GridCell, Scenario, validate_file

__all__ = ["RunConfig", "RunError", "run", "code_version", "read_rows", "part_files", "config_from_args", "BACKENDS"]

BACKENDS = ("loky", "threads", "dask")
_PART = re.compile(r"^cell(\d{5})_rep(\d{9})-(\d{9})\.parquet$")


class RunError(ValueError):
    """A run that cannot start or resume; the message is one line."""


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
            raise RunError(f"--reps: must be a positive integer, got {self.reps}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise RunError(f"--seed: must be an integer in [0, 2^63), got {self.seed}")
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise RunError(f"--jobs: must be a positive integer, got {self.jobs}")
        if self.backend not in BACKENDS:
            raise RunError(f"--backend: must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.scheduler is not None and self.backend != "dask":
            raise RunError("--scheduler: only with --backend dask")
        if self.chunk is not None and (not isinstance(self.chunk, int) or self.chunk < 1):
            raise RunError(f"--chunk: must be a positive integer, got {self.chunk}")
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
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def _task(scenario: Scenario, cell: int, cell_key: int, seed: int, start: int, stop: int, level: float):
    """One batch of replications in a worker: returns (cell, start, stop, columns, seconds)."""
    t0 = time.perf_counter()
    cols = run_replications(scenario, cell, cell_key, seed, range(start, stop), level)
    return cell, start, stop, cols, time.perf_counter() - t0


def _missing(parts, cell: int, reps: int) -> list[int]:
    done = np.zeros(reps, bool)
    for c, a, b, _ in parts:
        if c == cell:
            done[a:min(b, reps)] = True
    return np.flatnonzero(~done).tolist()


def _ranges(reps: list[int], chunk: int) -> list[tuple[int, int]]:
    """Contiguous runs of the missing replications, cut into pieces of at most ``chunk``."""
    out = []
    i = 0
    while i < len(reps):
        j = i
        while j + 1 < len(reps) and reps[j + 1] == reps[j] + 1 and j + 1 - i < chunk:
            j += 1
        out.append((reps[i], reps[j] + 1))
        i = j + 1
    return out


def _load_cells(source) -> tuple[list[GridCell], str, str]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        cells = validate_file(path)
        return cells, path.read_text(encoding="utf-8"), str(path)
    if isinstance(source, Scenario):
        return [GridCell(0, (), source)], "", source.name
    cells = list(source)
    return cells, "", "<cells>"


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
    """
    config.check()
    cells, text, label = _load_cells(source)
    out = Path(out)
    code = code_version()
    manifest_path = out / "manifest.json"
    cell_keys = [0 if config.common_random_numbers else c.index + 1 for c in cells]
    fingerprint = {
        "cells": [{"index": c.index, "hash": c.hash} for c in cells],
        "seed": config.seed,
        "common_random_numbers": config.common_random_numbers,
        "level": config.level,
        "code_version": code,
    }
    if manifest_path.exists():
        if not config.resume:
            raise RunError(f"{out}: already holds a run; add --resume to continue it or choose another --out")
        old = json.loads(manifest_path.read_text())
        for key in ("cells", "seed", "common_random_numbers", "level", "code_version"):
            if old.get(key) != fingerprint[key] and not (key == "cells" and _same_cells(old.get(key), fingerprint[key])):
                what = {"cells": "a different scenario (or grid)", "seed": "a different seed",
                        "common_random_numbers": "a different common-random-numbers setting",
                        "level": "a different confidence level", "code_version": "a different code version"}[key]
                raise RunError(f"{out}: was made from {what} ({key}: {_short(old.get(key))} here, "
                               f"{_short(fingerprint[key])} now); refusing to mix results, use another --out")
        manifest = old
        held = max((b for _, _, b, _ in part_files(out)), default=0)
        if held > config.reps:
            raise RunError(f"{out}: holds {held} replications per cell, more than --reps {config.reps}")
    else:
        if out.exists() and any(out.iterdir()):
            raise RunError(f"{out}: exists and is not a run directory; choose an empty or new --out")
        manifest = None
    (out / "parts").mkdir(parents=True, exist_ok=True)
    for stray in (out / "parts").glob(".*.tmp-*"):
        stray.unlink()

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
        for entry, cell in zip(manifest["cells"], cells):
            entry["values"] = [[p, v] for p, v in cell.values]
            entry["name"] = cell.scenario.name
            entry["scenario"] = cell.scenario.to_dict()
            entry["cell_key"] = cell_keys[cell.index]
    manifest["reps"] = config.reps
    _write_json_atomic(manifest_path, manifest)

    parts = part_files(out)
    missing = {c.index: _missing(parts, c.index, config.reps) for c in cells}
    n_missing = sum(len(v) for v in missing.values())
    chunk = config.chunk or int(min(200, max(10, math.ceil(n_missing / max(1, 4 * config.jobs)))))
    tasks = [(c.index, a, b) for c in cells for a, b in _ranges(missing[c.index], chunk)]
    by_index = {c.index: c for c in cells}

    t0 = time.perf_counter()
    worker_seconds = 0.0
    done_reps = 0
    bar = _progress(n_missing, config.quiet)
    interrupted = False
    try:
        for cell, start, stop, cols, secs in _execute(tasks, by_index, cell_keys, config):
            _write_part(out, cell, start, stop, cols)
            worker_seconds += secs
            done_reps += stop - start
            if bar is not None:
                bar.update(stop - start)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    manifest["runs"].append({"started": _now(), "backend": config.backend, "jobs": config.jobs, "chunk": chunk,
                             "replications": done_reps, "wall_seconds": round(wall, 3),
                             "worker_seconds": round(worker_seconds, 3),
                             "replications_per_second": round(done_reps / wall, 3) if wall > 0 else None,
                             "interrupted": interrupted})
    _write_json_atomic(manifest_path, manifest)
    if interrupted:
        stored = sum(b - a for _, a, b, _ in part_files(out))
        raise KeyboardInterrupt(f"{stored} of {config.reps * len(cells)} replications stored in {out}; "
                                "rerun with --resume to finish")

    # every replication exactly once
    parts = part_files(out)
    for c in cells:
        if _missing(parts, c.index, config.reps):
            raise RunError(f"{out}: cell {c.index} is missing replications after the run")
    _finish(out, cells, manifest, truth_sites, config.quiet)
    return manifest


def _finish(out: Path, cells, manifest: dict, truth_sites, quiet: bool) -> None:
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
    summary.write_summary(out)
    manifest["complete"] = True
    _write_json_atomic(out / "manifest.json", manifest)


def _same_cells(a, b) -> bool:
    return [(x["index"], x["hash"]) for x in (a or [])] == [(x["index"], x["hash"]) for x in (b or [])]


def _short(x) -> str:
    if isinstance(x, list):
        return ",".join(str(e.get("hash", e)) if isinstance(e, dict) else str(e) for e in x)[:40]
    return str(x)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _progress(total: int, quiet: bool):
    if quiet or total == 0 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rep", desc="replications", file=sys.stderr, smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")


def _execute(tasks, cells: dict[int, GridCell], cell_keys: list[int], config: RunConfig) -> Iterable:
    """Yield task results as they complete, on the configured backend."""
    if not tasks:
        return
    args = [(cells[c].scenario, c, cell_keys[c], config.seed, a, b, config.level) for c, a, b in tasks]
    if config.backend == "dask":
        yield from _execute_dask(args, config)
        return
    if config.jobs == 1:
        for a in args:
            yield _task(*a)
        return
    from joblib import Parallel, delayed

    backend = "loky" if config.backend == "loky" else "threading"
    par = Parallel(n_jobs=config.jobs, backend=backend, return_as="generator_unordered", pre_dispatch="2*n_jobs")
    yield from par(delayed(_task)(*a) for a in args)


def _execute_dask(args, config: RunConfig):
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if config.scheduler:
        client = Client(config.scheduler, timeout="30s")
    else:
        cluster = LocalCluster(n_workers=config.jobs, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(_task, *a, pure=False) for a in args]
        for fut in as_completed(futures):
            yield fut.result()
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def config_from_args(args) -> RunConfig:
    return RunConfig(reps=args.reps, seed=args.seed, jobs=args.jobs, backend=args.backend,
                     scheduler=args.scheduler, chunk=args.chunk,
                     common_random_numbers=not args.independent_cells, resume=args.resume,
                     quiet=args.quiet, level=args.level)

