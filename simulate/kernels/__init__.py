"""Numba kernels: arrays in, arrays out, status codes instead of exceptions.

Numba's on-disk cache checks only the source file of each cached function, not the
files of the kernels it calls and inlines, so a stale compiled ``replicate_batch``
could survive an edit of ``estimators_nb.py``.  The cache therefore lives in a folder
named after a hash of every kernel source: any edit gives a fresh cache (one
compilation, about a minute), never stale machine code.  Set ``NUMBA_CACHE_DIR`` to
choose the place yourself.
"""

import hashlib
import os
from pathlib import Path

import numba


def _cache_dir() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(here.glob("*_nb.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return str(here / "__pycache__" / f"numba-{h.hexdigest()[:12]}")


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = _cache_dir()
