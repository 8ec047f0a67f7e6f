"""Store the reference rows the refactor must reproduce bit for bit (issue 13).

Run once, before a structural change, from the project root::

    python tests/reference_rows/make.py

For every bundled scenario (and every grid cell's first and last), three replications
of rows from :func:`simulate.replicate.run_replications` are written to
``tests/reference_rows/rows.parquet``; ``tests/test_reference_rows.py`` recomputes
them with the code of the day and compares every column exactly (NaN equal to NaN).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from simulate.datasets import scenario_dir  # noqa: E402
from simulate.replicate import run_replications  # noqa: E402
from simulate.scenario import validate_file  # noqa: E402

REPS = (0, 1, 2)
SEED = 20261202
# scenarios whose replication is large (hundreds of thousands of persons) get one replication
LARGE_PERSONS = 200_000


def cases():
    """(scenario file name, cell index, scenario) for every bundled scenario."""
    for path in sorted(scenario_dir().rglob("*.toml")):
        cells = validate_file(path)
        picks = sorted({0, len(cells) - 1})
        for i in picks:
            yield path.relative_to(scenario_dir()).as_posix(), i, cells[i].scenario


def rows_of(name: str, cell: int, sc) -> pd.DataFrame:
    persons = sc.n_sites * (max(sc.n_per_site) if sc.n_per_site else sc.n_per_site_range[1])
    reps = REPS if persons <= LARGE_PERSONS else REPS[:1]
    df = pd.DataFrame(run_replications(sc, cell, cell + 1, SEED, reps))
    df.insert(0, "scenario", name)
    return df


def main() -> None:
    frames = [rows_of(name, cell, sc) for name, cell, sc in cases()]
    out = pd.concat(frames, ignore_index=True)
    out.to_parquet(HERE / "rows.parquet", index=False)
    print(f"{len(out)} rows from {len(frames)} cells -> {HERE / 'rows.parquet'}")


if __name__ == "__main__":
    main()
