"""Rows stay bit-identical across refactors (issue 13).

``tests/reference_rows/rows.parquet`` was written by ``tests/reference_rows/make.py``
before the house was restructured: three replications (one for very large scenarios)
of the first and last grid cell of every bundled scenario.  Here the same rows are
recomputed by the code of the day and compared column by column, exactly: a float
that differs in its last bit fails, NaN equals NaN.  A deliberate change of numbers
(a new estimator formula, a changed draw) must regenerate the file in its own commit
and say why.

New estimators add rows and new columns add fields; neither breaks the comparison: the
recomputed rows are matched to the stored ones by (rep, estimator, mediator), with
renamed estimators read through ``RENAMED``, and only stored columns are compared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent / "reference_rows"
sys.path.insert(0, str(HERE))

import make  # noqa: E402

STORED = pd.read_parquet(HERE / "rows.parquet")
CASES = sorted(set(zip(STORED["scenario"], STORED["cell"])))
KEYS = ["rep", "estimator", "mediator"]
# old estimator name -> its name today (a rename keeps the numbers)
RENAMED: dict[str, str] = {"bias_corrected_2sls": "mbtsls"}


@pytest.mark.parametrize(("name", "cell"), CASES, ids=[f"{n}[{c}]" for n, c in CASES])
def test_rows_bit_identical(name, cell):
    from simulate.datasets import scenario_dir
    from simulate.scenario import validate_file

    stored = STORED[(STORED["scenario"] == name) & (STORED["cell"] == cell)].reset_index(drop=True)
    sc = validate_file(scenario_dir() / name)[cell].scenario
    now = make.rows_of(name, int(cell), sc)
    wanted = stored[KEYS].assign(estimator=stored["estimator"].replace(RENAMED))
    now = wanted.merge(now, on=KEYS, how="left", indicator=True)
    missing = wanted[(now["_merge"] != "both").to_numpy()]
    assert missing.empty, f"rows are gone: {missing.drop_duplicates('estimator').to_dict('records')}"
    now = now.drop(columns="_merge").assign(estimator=stored["estimator"])
    for col in stored.columns:
        assert col in now.columns, f"column {col} is gone"
        a, b = stored[col].to_numpy(), now[col].to_numpy()
        assert len(a) == len(b), f"{col}: {len(b)} rows, stored {len(a)}"
        if a.dtype.kind == "f":
            same = (a.view(np.int64) == b.astype(np.float64).view(np.int64)) | (np.isnan(a) & np.isnan(b))
            assert same.all(), f"{col}: {int((~same).sum())} values differ, first at row {int(np.argmin(same))}"
        else:
            assert (a == b).all(), f"{col} differs"
