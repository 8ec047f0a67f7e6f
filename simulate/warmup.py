"""Compile the kernels once, visibly: :func:`kernels_cached` before, :func:`warm_up` to do it.

A runner that is about to start worker processes calls :func:`warm_up` first, in the
parent: the fused kernel is then compiled once (or loaded from the cache) and written to
the on-disk cache, and the workers load it instead of compiling it each at the same time.
When :func:`kernels_cached` is false it can say so first, e.g.
``f"compiling kernels (first run only, about {COMPILE_SECONDS} s)"``.

It sits above the kernels and :mod:`simulate.replicate` (it runs a replication through
the public path), so that the kernels package imports nothing of the stages above it.
"""

from __future__ import annotations

import time
from pathlib import Path

from .datasets import scenario_dir
from .replicate import run_replications
from .scenario import validate_file

COMPILE_SECONDS = 75
"""About how long the cold compile of the kernels of a replication takes on a quiet 2-core
machine (one core compiles): measured 72 s of CPU for ``baseline`` and 74 s for
``binary_defiers``, each from an empty cache; the two compile the same specialisations, so
the second after the first compiles nothing.  A loaded machine takes longer in wall time."""

# the bundled scenarios warm_up runs, one replication each: a few milliseconds once compiled
_CONTINUOUS = "baseline.toml"  # two continuous mediators
_BINARY = "binary_defiers.toml"  # a binary mediator


def _main_kernels() -> tuple:
    """The dispatchers a replication calls from Python (their callees are compiled into them)."""
    from .kernels import replicate_nb, rng_nb

    return replicate_nb.replicate_batch, rng_nb.replication_states


def _has_cached_overload(dispatcher) -> bool:
    """Whether the on-disk cache holds a compiled version of ``dispatcher`` for its current source."""
    cache = getattr(dispatcher, "_cache", None)
    index = getattr(getattr(cache, "_cache_file", None), "_load_index", None)
    if index is not None:  # Numba's own check: the index exists and its source stamp is current
        try:
            return len(index()) > 0
        except Exception:  # an unreadable index: Numba would recompile
            return False
    path = dispatcher.stats.cache_path  # fallback if Numba's internals move: an index file exists
    name = dispatcher.py_func.__qualname__
    module = dispatcher.py_func.__module__.rsplit(".", 1)[-1]
    return any(Path(path).glob(f"{module}.{name}-*.nbi"))


def kernels_cached() -> bool:
    """Whether the cache for the current kernel sources already holds the compiled kernels.

    True when the fused replication kernel and the seeding kernel each have a compiled
    version on disk, so that a run loads them instead of compiling (a process that has
    already compiled or loaded them in memory needs neither).  It does not tell one
    argument type from another: with one cached for continuous mediators only, a
    scenario whose plan has other types still compiles.

    Returns
    -------
    bool
    """
    kernels = _main_kernels()
    if not all(hasattr(d, "stats") for d in kernels):  # NUMBA_DISABLE_JIT: plain Python, nothing to compile
        return True
    return all(_has_cached_overload(d) for d in kernels)


def warm_up(continuous: bool = True, binary: bool = False) -> float | None:
    """Compile (or load from the cache) the kernels of a replication, in this process.

    Runs one replication of a small bundled scenario through the public path
    (:func:`simulate.replicate.run_replications`) for each kind of mediator asked for.
    Whether that compiled is read from Numba's cache-miss counters of the kernels called
    from Python (a miss is a compilation; a hit, or a kernel already in memory, is none).

    Parameters
    ----------
    continuous : bool
        Warm up with continuous mediators (``baseline``).
    binary : bool
        Warm up with a binary mediator (``binary_defiers``).

    Returns
    -------
    float or None
        The seconds spent when something was compiled, None when everything was loaded
        from the cache or already in memory.
    """
    kernels = _main_kernels()
    if not all(hasattr(d, "stats") for d in kernels):  # NUMBA_DISABLE_JIT: plain Python, nothing to compile
        return None

    def misses() -> int:
        return sum(sum(d.stats.cache_misses.values()) for d in kernels)

    names = [n for n, wanted in ((_CONTINUOUS, continuous), (_BINARY, binary)) if wanted]
    before = misses()
    t0 = time.perf_counter()
    for name in names:
        sc = validate_file(scenario_dir() / name)[0].scenario
        run_replications(sc, 0, 0, 0, [0])
    seconds = time.perf_counter() - t0
    return seconds if misses() > before else None
