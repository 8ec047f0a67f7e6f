"""simulate.sensitivity: each setting outside its bounds is a one-line error before any work starts."""

from __future__ import annotations

import pandas as pd
import pytest

from simulate.sensitivity import SensitivityError, sensitivity

NOT_A_STUDY = pd.DataFrame({"s": [0], "t": [0], "m": [0.0], "y": [0.0]})  # analyze would refuse it


@pytest.mark.parametrize(("name", "value", "bounds"), [
    ("reps", -1, "0..100000"), ("reps", 100_001, "0..100000"), ("grid", 2, "3..401"), ("grid", 2.5, "3..401"),
    ("contour_grid", 102, "3..101"), ("jobs", 0, "1..256"), ("truth_batches", 1, "2..100"),
    ("truth_batch_sites", 499, "500..1000000"), ("jobs", True, "1..256"),
])
def test_a_setting_out_of_bounds_names_the_setting_and_its_bounds(name, value, bounds):
    with pytest.raises(SensitivityError) as info:
        sensitivity(NOT_A_STUDY, "s", "t", "m", "y", **{name: value})
    assert str(info.value) == f"{name} must be an integer in {bounds}, got {value!r}"


def test_one_replication_is_refused_with_the_two_allowed_choices():
    with pytest.raises(SensitivityError, match=r"^reps must be 0 \(no Monte Carlo\) or at least 2, got 1$"):
        sensitivity(NOT_A_STUDY, "s", "t", "m", "y", reps=1)
