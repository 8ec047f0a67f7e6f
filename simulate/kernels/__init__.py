"""Numba kernels: arrays in, arrays out, status codes instead of exceptions.

Numba's on-disk cache checks only the source file of each cached function, not the
files of the kernels it calls and inlines, so a stale compiled ``replicate_batch``
could survive an edit of ``estimators_nb.py``.  The cache therefore lives in a folder
named after a hash of every kernel source: any edit gives a fresh cache (one
compilation, about a minute), never stale machine code, and the folders of earlier
sources (15-20 MB each) are removed.  Set ``NUMBA_CACHE_DIR`` to choose the place
yourself (nothing is then removed).
"""

import hashlib
import os
import shutil
from pathlib import Path

import numba


def _cache_dir() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(here.glob("*_nb.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return str(here / "__pycache__" / f"numba-{h.hexdigest()[:12]}")


def _remove_stale(current: str) -> None:
    """Delete the cache folders of other kernel sources (a process still using one recompiles)."""
    for old in Path(current).parent.glob("numba-*"):
        if str(old) != current:
            shutil.rmtree(old, ignore_errors=True)


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = _cache_dir()
    _remove_stale(numba.config.CACHE_DIR)
