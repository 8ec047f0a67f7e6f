"""What the summary and the figures read of a run directory: the part files, the rows and the manifest.

The one place the summary stage and :mod:`simulate.plots` reach into the run store
(:mod:`simulate.store`); :func:`read_manifest` raises the caller's own error class.
"""

from __future__ import annotations

import json
from pathlib import Path

from .store import MANIFEST_NAME, part_files, read_rows

__all__ = ["part_files", "read_rows", "read_manifest"]


def read_manifest(directory: Path, error: type[Exception]) -> dict:
    """``DIR/manifest.json`` of a run directory, checked to hold a list of cells.

    Parameters
    ----------
    directory : pathlib.Path
        The run directory.
    error : exception class
        Raised, with one line, when there is no such directory, no manifest, an unreadable
        one or one without a list of cells (the summary's and the figures' own error).

    Returns
    -------
    dict
    """
    if not directory.is_dir():
        raise error(f"{directory}: no such directory")
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise error(f"{directory}: no manifest.json (not a run directory)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"{path}: unreadable manifest: {str(exc).splitlines()[0]}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cells"), list):
        raise error(f"{path}: manifest has no list of cells")
    return manifest
