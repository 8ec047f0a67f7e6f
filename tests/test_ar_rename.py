"""Issue 15: ``bias_corrected_2sls`` is ``mbtsls`` (KCFGI's MBTSLS); the old name is refused with the new one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulate.errors import SimulateError
from simulate.estimators import ESTIMATORS, RENAMED_ESTIMATORS, estimate, spec, unknown_estimator_message
from simulate.kernels import codes_nb as nb

OLD, NEW = "bias_corrected_2sls", "mbtsls"


def _data(seed=3, K=6, n_s=20):
    rng = np.random.default_rng(seed)
    site = np.repeat(np.arange(K), n_s)
    t = np.tile(np.arange(n_s) % 2, K)
    m = 0.5 * t * (1 + 0.3 * site) + rng.normal(size=site.size)
    y = 0.4 * m + rng.normal(size=site.size)
    return site, t, m, y


def test_the_new_name_is_the_kernel_row_of_mbtsls():
    assert NEW in ESTIMATORS and OLD not in ESTIMATORS
    assert RENAMED_ESTIMATORS[OLD] == NEW
    assert spec(NEW).kernel_row == nb.E_MBTSLS == nb.E_BTSLS  # the old constant is an alias


def test_the_message_names_the_new_name_on_one_line():
    msg = unknown_estimator_message([OLD])
    assert NEW in msg and OLD in msg and "\n" not in msg
    assert unknown_estimator_message(["2sls", NEW]) is None
    assert "unknown estimator" in unknown_estimator_message(["nope"])


def test_estimate_refuses_the_old_name():
    site, t, m, y = _data()
    with pytest.raises(SimulateError, match=f"renamed '{NEW}'"):
        estimate(site, t, m, y, estimators=["2sls", OLD])
    rows = estimate(site, t, m, y, estimators=["2sls", NEW])
    assert set(rows.estimator) == {"2sls", NEW}


def test_analyze_refuses_the_old_name_before_any_work():
    from simulate.analyze import analyze

    # the frame lacks every column: the name is refused first
    with pytest.raises(SimulateError, match=f"use '{NEW}'"):
        analyze(pd.DataFrame({"x": [1.0]}), "s", "t", "m", "y", estimators=[OLD])


def test_spec_refuses_the_old_name():
    with pytest.raises(KeyError, match=NEW):
        spec(OLD)
