"""The run store: a run directory's part files, its manifest, atomic writes and the code version.

A run directory ``DIR`` holds::

    DIR/manifest.json                    scenario(s), hashes, seed, code and package versions, truth, timings
    DIR/parts/cell00000_rep000000000-000000100.parquet   rows of reps [0, 100) of cell 0
    DIR/damaged/                         part files found damaged on resume, moved aside
    DIR/summary.csv                      performance measures with Monte Carlo SEs (:mod:`simulate.run_summary`)
    DIR/.lock                            the lock of the run that holds the directory (:mod:`simulate._lock`)

Every file is written to a temporary name in its folder and renamed (atomic on
POSIX), so a reader sees a whole file or none.  A part file holds the rows
(:data:`simulate.replicate.ROW_COLUMNS`) of the replications its name gives; on resume its
Parquet footer is checked against its name (:func:`part_problem`) and a damaged one is
moved to ``DIR/damaged/`` (:func:`repair_parts`).  The replications that no whole part
covers are :func:`gaps`.

This module knows nothing of how rows are computed, nor of summaries: the runner
(:mod:`simulate.runner`) and the summary (:mod:`simulate.run_summary`) both read and
write through it.
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
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from ._lock import LOCK_NAME, describe_os_error
from .errors import RunError
from .replicate import ROW_COLUMNS, estimators_for

__all__ = [
    "MANIFEST_NAME", "PARTS_DIR", "DAMAGED_DIR", "MAX_REPS", "MIN_BYTES_PER_ROW", "BIG_TEXT", "BIG_DESCRIPTION",
    "FINGERPRINT_KEYS", "part_name", "part_files", "read_rows", "write_part", "part_problem", "move_aside",
    "repair_parts", "gaps", "stored_replications", "clean_strays", "is_fresh", "write_json_atomic",
    "write_text_atomic", "json_safe", "nan_to_none", "read_manifest", "write_manifest", "fingerprint",
    "check_same_run", "new_manifest", "add_warnings", "check_disk", "code_version", "package_versions", "now",
]

MANIFEST_NAME = "manifest.json"
PARTS_DIR = "parts"
DAMAGED_DIR = "damaged"
MAX_REPS = 10**8
"""Replications per grid cell at most (the part names hold 9 digits)."""
MIN_BYTES_PER_ROW = 40
"""A low estimate of a row's size on disk (zstd Parquet): a run that needs more than the free space stops
before it starts."""
BIG_TEXT = 1_000_000
"""A scenario text longer than this is stored in the manifest as its hash and size only."""
BIG_DESCRIPTION = 4096
"""A description longer than this is stored in the manifest's cells cut to its start, with its hash and size."""
FINGERPRINT_KEYS = ("cells", "seed", "common_random_numbers", "level", "code_version")
"""The manifest entries a resume must match: the rows are a pure function of these."""
PACKAGES = ("numpy", "scipy", "numba", "pandas", "pyarrow", "joblib", "distributed")
"""The packages whose versions the manifest records."""

_PART = re.compile(r"^cell(\d{5})_rep(\d{9})-(\d{9})\.parquet$")
_WHAT = {"cells": "a different scenario (or grid)", "seed": "a different seed",
         "common_random_numbers": "a different common-random-numbers setting",
         "level": "a different confidence level", "code_version": "a different code version"}


# ---------------------------------------------------------------------------
# The code version
# ---------------------------------------------------------------------------


def code_version() -> str:
    """A hash of the package's source files: rows are a pure function of this and the inputs.

    Returns
    -------
    str
        ``"<version>+<12 hex digits>"``.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


def package_versions() -> dict[str, str]:
    """The versions of Python and of the installed packages in :data:`PACKAGES` (missing ones left out).

    Returns
    -------
    dict
        ``name -> version``.
    """
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------
# Atomic writes, JSON
# ---------------------------------------------------------------------------


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    Parameters
    ----------
    path : Path
        The file to write; a reader sees its old content or the new one, never a part.
    text : str
        The content (UTF-8).
    """
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def json_safe(x):
    """``json.dumps``'s ``default``: numpy integers and floats as numbers (non-finite as null), others as text."""
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return None if not np.isfinite(x) else float(x)
    return str(x)


def write_json_atomic(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON (no NaN: see :func:`nan_to_none`) to ``path``, atomically.

    Parameters
    ----------
    path : Path
        The file to write.
    obj
        A JSON-able object; numpy scalars are converted (:func:`json_safe`).
    """
    path = Path(path)
    tmp = _tmp_name(path)
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False, default=json_safe))
    os.replace(tmp, path)


def nan_to_none(x):
    """``x`` with every non-finite float (in nested dicts, lists and tuples) replaced by None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    return x


# ---------------------------------------------------------------------------
# Part files
# ---------------------------------------------------------------------------


def part_name(cell: int, start: int, stop: int) -> str:
    """The file name of the part holding replications ``[start, stop)`` of grid cell ``cell``.

    Parameters
    ----------
    cell : int
        Grid cell index (5 digits).
    start, stop : int
        The half-open replication range (9 digits each).

    Returns
    -------
    str
        ``cell{cell:05d}_rep{start:09d}-{stop:09d}.parquet``.
    """
    return f"cell{cell:05d}_rep{start:09d}-{stop:09d}.parquet"


def part_files(out: str | Path) -> list[tuple[int, int, int, Path]]:
    """(cell, start, stop, path) of every complete part file, sorted by (cell, start).

    Parameters
    ----------
    out : str or Path
        A run directory.

    Returns
    -------
    list of (int, int, int, Path)
        Temporary files of a write under way are not listed.
    """
    parts = []
    d = Path(out) / PARTS_DIR
    if d.is_dir():
        for p in d.iterdir():
            m = _PART.match(p.name)
            if m:
                parts.append((int(m.group(1)), int(m.group(2)), int(m.group(3)), p))
    return sorted(parts)


def stored_replications(out: str | Path) -> int:
    """The number of replications (over every cell) that the part files of ``out`` hold."""
    return sum(b - a for _, a, b, _ in part_files(out))


def read_rows(out: str | Path, columns: list[str] | None = None):
    """Every stored row of a run directory as one pandas DataFrame, sorted by (cell, rep, row).

    Parameters
    ----------
    out : str or Path
        A run directory.
    columns : list of str, optional
        Only these columns (default: every column of :data:`simulate.replicate.ROW_COLUMNS`).

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd
    import pyarrow.parquet as pq

    frames = [pq.read_table(p, columns=columns).to_pandas() for _, _, _, p in part_files(Path(out))]
    if not frames:
        return pd.DataFrame(columns=columns or list(ROW_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def write_part(out: Path, cell: int, start: int, stop: int, columns: dict) -> Path:
    """Write the rows of replications ``[start, stop)`` of ``cell`` as one part file, atomically and synced.

    Parameters
    ----------
    out : Path
        The run directory (its ``parts/`` must exist).
    cell, start, stop : int
        What the rows hold (the file's name, :func:`part_name`).
    columns : dict
        ``column -> array`` with every column of :data:`simulate.replicate.ROW_COLUMNS`.

    Returns
    -------
    Path
        The part file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: columns[k] for k in ROW_COLUMNS})
    final = Path(out) / PARTS_DIR / part_name(cell, start, stop)
    tmp = _tmp_name(final)
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


def part_problem(path: Path, cell: int, start: int, stop: int) -> str | None:
    """Why a part file is not whole (its footer, row count and replication range against its name), or None.

    Parameters
    ----------
    path : Path
        The part file.
    cell, start, stop : int
        What its name says it holds.

    Returns
    -------
    str or None
        A short reason, or None for a whole part.
    """
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


def move_aside(out: Path, path: Path) -> Path | None:
    """Move a damaged part to ``DIR/damaged/`` (deleted when that fails).

    Parameters
    ----------
    out : Path
        The run directory.
    path : Path
        The damaged part file.

    Returns
    -------
    Path or None
        Where it went, or None when it was deleted.
    """
    dest = Path(out) / DAMAGED_DIR / path.name
    try:
        dest.parent.mkdir(exist_ok=True)
        os.replace(path, dest)
        return dest
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def repair_parts(out: Path) -> list[str]:
    """Move damaged parts aside and remove parts repeating replications of others (a concurrent run before locking).

    Parameters
    ----------
    out : Path
        The run directory (held under its lock).

    Returns
    -------
    list of str
        One note per damaged part, and one for the repeating parts if any.
    """
    notes = []
    overlapping = []
    kept_stop: dict[int, int] = {}
    for c, a, b, p in part_files(out):
        why = part_problem(p, c, a, b)
        if why is not None:
            dest = move_aside(out, p)
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


def gaps(parts: Iterable[tuple[int, int, int, Path]], cell: int, reps: int) -> list[tuple[int, int]]:
    """The half-open ranges of ``[0, reps)`` that no part of ``cell`` covers, in order.

    Parameters
    ----------
    parts : iterable of (cell, start, stop, path)
        As :func:`part_files` gives them.
    cell : int
        The grid cell.
    reps : int
        Replications the cell must hold.

    Returns
    -------
    list of (int, int)
    """
    spans = sorted((a, min(b, reps)) for c, a, b, _ in parts if c == cell and a < reps)
    out, pos = [], 0
    for a, b in spans:
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < reps:
        out.append((pos, reps))
    return out


# ---------------------------------------------------------------------------
# The directory at start-up
# ---------------------------------------------------------------------------


def clean_strays(out: Path) -> None:
    """Remove temporary files of killed runs (only under the lock: no other run writes here)."""
    for stray in [*out.glob(f".{MANIFEST_NAME}.tmp-*"), *(out / PARTS_DIR).glob(".*.tmp-*")]:
        with contextlib.suppress(FileNotFoundError):
            stray.unlink()


def is_fresh(out: Path) -> bool:
    """True when ``out`` holds nothing but what a run killed before its manifest leaves (the lock, empty parts/)."""
    for p in out.iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.name == PARTS_DIR and p.is_dir() and not any(p.iterdir()):
            continue
        return False
    return True


def _rows_per_rep(sc) -> int:
    P = len(sc.mediator_names)
    return len(estimators_for(P)) * P + 1


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} TB"


def check_disk(cells: Sequence, reps: int, out: Path) -> None:
    """Stop before anything is written when the rows cannot fit on the disk (a low estimate).

    Parameters
    ----------
    cells : sequence of GridCell
        The grid cells of the run.
    reps : int
        Replications per cell.
    out : Path
        The run directory (it may not exist yet).

    Raises
    ------
    RunError
        When the rows need more than the free space.
    """
    need = sum(_rows_per_rep(c.scenario) for c in cells) * reps * MIN_BYTES_PER_ROW
    probe = Path(out).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return  # a file in the way: the lock says so
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if need > free:
        raise RunError(f"--reps {reps:,}: the rows of {len(cells)} grid cell(s) take at least "
                       f"{_size(need)} on disk, {_size(free)} are free at {probe}; use fewer --reps or another --out")


# ---------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------


def read_manifest(out: Path) -> dict:
    """The manifest of a run directory, checked to be one.

    Parameters
    ----------
    out : Path
        The run directory.

    Returns
    -------
    dict
        With a ``runs`` list.

    Raises
    ------
    RunError
        One line for an unreadable or damaged manifest.
    """
    path = Path(out) / MANIFEST_NAME
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


def write_manifest(out: Path, manifest: dict) -> None:
    """Write the manifest of a run directory, atomically.

    Parameters
    ----------
    out : Path
        The run directory.
    manifest : dict
        The manifest.
    """
    write_json_atomic(Path(out) / MANIFEST_NAME, manifest)


def fingerprint(cells: Sequence, seed: int, common_random_numbers: bool, level: float, code: str) -> dict:
    """What a resume must match (:data:`FINGERPRINT_KEYS`): the rows are a pure function of it.

    Parameters
    ----------
    cells : sequence of GridCell
        The grid cells.
    seed : int
        The run seed.
    common_random_numbers : bool
        Whether every cell uses the same random numbers.
    level : float
        Confidence level of the intervals.
    code : str
        :func:`code_version`.

    Returns
    -------
    dict
    """
    return {"cells": [{"index": c.index, "hash": c.hash} for c in cells], "seed": seed,
            "common_random_numbers": common_random_numbers, "level": level, "code_version": code}


def _same_cells(a, b) -> bool:
    return [(x["index"], x["hash"]) for x in (a or [])] == [(x["index"], x["hash"]) for x in (b or [])]


def _short(x) -> str:
    if isinstance(x, list):
        return ",".join(str(e.get("hash", e)) if isinstance(e, dict) else str(e) for e in x)[:40]
    return str(x)


def check_same_run(old: dict, new: dict, out: Path) -> None:
    """Refuse to resume into a directory made from another scenario, seed or code version.

    Parameters
    ----------
    old : dict
        The stored manifest.
    new : dict
        This run's :func:`fingerprint`.
    out : Path
        The run directory (for the message).

    Raises
    ------
    RunError
        Naming the first entry that differs.
    """
    for key in FINGERPRINT_KEYS:
        same = key == "cells" and _same_cells(old.get(key), new[key])
        if old.get(key) != new[key] and not same:
            raise RunError(f"{out}: was made from {_WHAT[key]} ({key}: {_short(old.get(key))} here, "
                           f"{_short(new[key])} now); refusing to mix results, use another --out")


def _compact(text: str, limit: int) -> str:
    """A long text cut to its start, with its size and hash."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:1000]} ... [cut: {len(text):,} characters, sha256 {digest}]"


def new_manifest(identity: dict, cells: Sequence, cell_keys: Sequence[int], label: str,
                 text: str) -> tuple[dict, list[str]]:
    """The manifest of a new run, and notes for the user.

    Parameters
    ----------
    identity : dict
        The run's :func:`fingerprint`.
    cells : sequence of GridCell
        The grid cells, in the fingerprint's order.
    cell_keys : sequence of int
        The spawn key of each cell, by cell index.
    label : str
        The scenario file's name (or a label).
    text : str
        The scenario file's text (stored whole below :data:`BIG_TEXT` characters, else by hash).

    Returns
    -------
    (dict, list of str)
    """
    notes = []
    manifest = {"simulate": __version__, **identity, "scenario_file": label, "scenario_text": text,
                "packages": package_versions(), "created": now(), "runs": []}
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
    return manifest, notes


def add_warnings(manifest: dict, entry: dict | None, n: int) -> None:
    """Count ``n`` numerical warnings into the manifest (and a run's entry), with one note saying so.

    Parameters
    ----------
    manifest : dict
        The manifest (changed in place).
    entry : dict or None
        This run's entry of ``manifest["runs"]``.
    n : int
        Warnings counted (nothing happens for n <= 0).
    """
    if n <= 0:
        return
    if entry is not None:
        entry["numerical_warnings"] = entry.get("numerical_warnings", 0) + n
    manifest["numerical_warnings"] = manifest.get("numerical_warnings", 0) + n
    note = (f"{manifest['numerical_warnings']:,} numerical warning(s) from numpy (overflow or invalid values, "
            "usually from extreme inputs) were counted and not printed; affected estimates are NaN or "
            "infinite in the rows")
    manifest["notes"] = [x for x in manifest.get("notes", []) if "numerical warning" not in x] + [note]
