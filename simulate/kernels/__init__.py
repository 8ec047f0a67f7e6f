"""Numba kernels: arrays in, arrays out, status codes instead of exceptions.

Numba's on-disk cache checks only the source file of each cached function, not the
files of the kernels it calls and inlines, so a stale compiled ``replicate_batch``
could survive an edit of ``fit_nb.py``.  The cache therefore lives in a folder named
after a hash of every kernel source (every ``*_nb.py`` here): any edit gives a fresh
cache (one compilation, see :data:`simulate.warmup.COMPILE_SECONDS`), never stale machine code.
Importing the kernels deletes nothing; the folders of earlier sources (about 8-15 MB
each) stay until :func:`prune_cache` removes them.  Set ``NUMBA_CACHE_DIR`` to choose
the place yourself (:func:`prune_cache` then removes nothing).

:mod:`simulate.warmup` compiles (or loads) the fused kernel once, in the calling process,
before worker processes start.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numba

_HERE = Path(__file__).resolve().parent


def _cache_dir() -> str:
    """The cache folder of the current kernel sources: ``__pycache__/numba-<hash of every *_nb.py>``."""
    h = hashlib.sha256()
    for path in sorted(_HERE.glob("*_nb.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return str(_HERE / "__pycache__" / f"numba-{h.hexdigest()[:12]}")


def _remove_stale(current: str) -> list[str]:
    """Delete the ``numba-*`` folders beside ``current`` other than ``current``; return their paths.

    A process still using a removed folder recompiles what it needs.
    """
    removed = []
    for old in sorted(Path(current).parent.glob("numba-*")):
        if str(old) != current and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            removed.append(str(old))
    return removed


_CACHE_DIR: str | None = None
"""This package's own cache folder, or None when the user chose one with ``NUMBA_CACHE_DIR``."""

if not os.environ.get("NUMBA_CACHE_DIR"):
    _CACHE_DIR = _cache_dir()
    numba.config.CACHE_DIR = _CACHE_DIR


def prune_cache() -> list[str]:
    """Remove the cache folders of other (earlier) kernel sources.

    Only this package's own ``__pycache__/numba-*`` folders are touched, and never the
    one of the current sources; with ``NUMBA_CACHE_DIR`` set nothing is removed.

    Returns
    -------
    list of str
        The folders removed (empty when there were none).
    """
    if _CACHE_DIR is None:
        return []
    return _remove_stale(_CACHE_DIR)


__all__ = ["prune_cache"]
