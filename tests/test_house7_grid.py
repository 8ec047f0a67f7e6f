"""simulate.scenario.grid.set_path: every branch, its copy semantics and each one-line error, word for word."""

from __future__ import annotations

import pytest

from simulate.scenario import ScenarioError, set_path

RAW = {
    "name": "s",
    "n_sites": 4,
    "mediators": {"count": 2},
    "site": {"effect_sd": 0.1, "compliance_mean": 0.3, "correlations": {"compliance_1:effect_1": 0.2}},
    "paths": [{"from": "m1", "to": "m2", "mean": 0.5}],
}


def _fresh():
    import copy

    return copy.deepcopy(RAW)


def test_a_scalar_field_is_set_on_a_copy_and_the_input_is_untouched():
    raw = _fresh()
    out = set_path(raw, "site.effect_sd", 0.4)
    assert out["site"]["effect_sd"] == 0.4 and raw == RAW
    assert out["site"] is not raw["site"] and out["paths"] is raw["paths"]  # only the path is copied


def test_a_per_mediator_scalar_is_expanded_before_its_entry_is_set():
    out = set_path(_fresh(), "site.compliance_mean[2]", 0.9)
    assert out["site"]["compliance_mean"] == [0.3, 0.9]
    again = set_path(out, "site.compliance_mean[1]", 0.1)
    assert again["site"]["compliance_mean"] == [0.1, 0.9] and out["site"]["compliance_mean"] == [0.3, 0.9]


def test_an_entry_of_a_list_of_tables_and_a_pair_are_set():
    raw = _fresh()
    out = set_path(raw, "paths[1].mean", 0.7)
    assert out["paths"][0]["mean"] == 0.7 and raw["paths"][0]["mean"] == 0.5
    out = set_path(raw, "site.correlations.compliance_2:effect_2", -0.3)
    assert out["site"]["correlations"] == {"compliance_1:effect_1": 0.2, "compliance_2:effect_2": -0.3}
    assert raw["site"]["correlations"] == {"compliance_1:effect_1": 0.2}


@pytest.mark.parametrize(("path", "message"), [
    ("site..effect_sd", "is not a dotted path such as site.effect_sd or site.compliance_mean[2]"),
    ("site.efect_sd", "'site.efect_sd' names no field of the scenario; did you mean 'effect_sd'?"),
    ("site.correlations", "name a pair, e.g. site.correlations.compliance_1:effect_1"),
    ("site.cross_dependence", "name a term, e.g. site.cross_dependence.effect_2:compliance_1:compliance_2"),
    ("site", "'site' is a table, not a number"),
    ("n_sites[1]", "'n_sites' is not a list"),
    ("site.compliance_mean[3]", "index 3 is outside 1..2"),
    ("paths.mean", "'paths' needs an index of an existing entry, e.g. paths[1].mean"),
    ("paths[2].mean", "'paths' needs an index of an existing entry, e.g. paths[1].mean"),
    ("n_sites.x", "'n_sites' is a number, not a table"),
])
def test_each_error_is_one_line_naming_the_grid_path(path, message):
    with pytest.raises(ScenarioError) as info:
        set_path(_fresh(), path, 1.0, source="f.toml")
    text = str(info.value)
    assert "\n" not in text and "f.toml" in text and message in text, text


def test_a_table_given_as_a_number_is_named_with_its_value():
    raw = _fresh()
    raw["site"] = 3
    with pytest.raises(ScenarioError, match=r"'site' must be a table \(\[site\]\), got 3"):
        set_path(raw, "site.effect_sd", 1.0)
