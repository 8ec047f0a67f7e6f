"""Layout: the one owner of the site and person vector indices (issue 13)."""

import itertools

import numpy as np
import pytest

import simulate as sm
from simulate.dgp import KernelPlan, Plan, plan
from simulate.layout import Layout

# every component has a spread, so that no named correlation is refused as inert
SPREAD = """
n_sites = 8
[mediators]
count = {P}
[site]
compliance_sd = 0.3
effect_sd = 0.2
direct_effect_sd = 0.2
[person]
compliance_sd = 0.4
effect_sd = 0.3
[{level}.correlations]
"{a}:{b}" = 0.25
"""


def test_names_are_the_scenario_files_names():
    # the names a scenario file's [site.correlations] / [person.correlations] use (README, SCHEMA docs);
    # validation reads them from Layout, so this is the one check of their spelling and order
    from simulate.scenario.schema import _component_names

    L = Layout(2)
    assert L.site_names == ("compliance_1", "compliance_2", "effect_1", "effect_2", "direct_effect")
    assert L.person_names == ("compliance_1", "compliance_2", "effect_1", "effect_2", "mediator_1", "mediator_2",
                              "outcome")
    assert _component_names("site", 2) == list(L.site_names)


@pytest.mark.parametrize("P", [1, 2, 4])
def test_accessors_name_the_component_they_index(P):
    L = Layout(P, n_paths=2)
    for p in range(P):
        assert L.site_names[L.site_compliance(p)] == f"compliance_{p + 1}"
        assert L.site_names[L.site_effect(p)] == f"effect_{p + 1}"
        assert L.person_names[L.person_compliance(p)] == f"compliance_{p + 1}"
        assert L.person_names[L.person_effect(p)] == f"effect_{p + 1}"
        assert L.person_names[L.person_mediator(p)] == f"mediator_{p + 1}"
    assert L.site_names[L.site_direct] == "direct_effect"
    assert L.person_names[L.person_outcome] == "outcome"
    assert (L.site_size, L.person_size, L.extended_size) == (2 * P + 1, 3 * P + 1, 3 * P + 3)
    assert list(range(L.site_size))[L.site_compliances] == [L.site_compliance(p) for p in range(P)]
    assert list(range(L.site_size))[L.site_effects] == [L.site_effect(p) for p in range(P)]
    assert [L.path_normal(r) for r in range(2)] == list(range(L.extended_size))[L.path_part]
    assert list(range(L.extended_size))[L.person_part] == list(range(L.person_size))


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("level", ["site", "person"])
def test_index_and_component_round_trip(P, level):
    L = Layout(P)
    names = L.names(level)
    assert len(set(names)) == len(names)
    for i, name in enumerate(names):
        assert L.index(level, name) == i
        block, p = L.component(level, i)
        assert name == (block if p is None else f"{block}_{p + 1}")
    with pytest.raises(KeyError, match="components are"):
        L.index(level, "effect_0")
    with pytest.raises(IndexError):
        L.component(level, len(names))


def test_draw_columns_partition_the_draws():
    L = Layout(3, n_paths=2)
    cols = np.concatenate([np.arange(L.truth_site_draws)[s] for s in L.truth_site_columns])
    assert np.array_equal(cols, np.arange(L.truth_site_draws))
    assert L.site_baseline_mediator(0) == L.site_size
    assert L.site_baseline_outcome == L.site_draws - 1 == L.site_size + L.P


@pytest.mark.parametrize("level", ["site", "person"])
def test_named_correlations_land_at_the_layout_indices(level):
    P = 2
    L = Layout(P)
    for a, b in itertools.combinations(L.names(level), 2):
        sc = sm.loads(SPREAD.format(P=P, level=level, a=a, b=b))
        R = np.array(sc.site_correlation if level == "site" else sc.person_correlation)
        i, j = L.index(level, a), L.index(level, b)
        assert R[i, j] == R[j, i] == 0.25, (a, b)
        off = R - np.eye(len(R))
        off[i, j] = off[j, i] = 0.0
        assert not off.any(), (a, b)


def test_plan_offsets_come_from_the_layout():
    sc = sm.loads("n_sites = 4\n[mediators]\ncount = 3\n[selection]\nstrength = 0.5\non = 'compliance'\n"
                  "mediator = 2\n[person]\ncompliance_sd = 0.3\n")
    L = Layout.of(sc)
    pl = plan(sc)
    assert isinstance(pl, KernelPlan) and Plan is KernelPlan and pl.kernel() is pl
    assert (pl.site_effect_at, pl.site_direct_at) == (L.site_effect(0), L.site_direct)
    assert (pl.person_effect_at, pl.person_mediator_at, pl.person_outcome_at) == (
        L.person_effect(0), L.person_mediator(0), L.person_outcome)
    assert (pl.baseline_at, pl.baseline_outcome_at, pl.site_draws) == (
        L.site_baseline_mediator(0), L.site_baseline_outcome, L.site_draws)
    assert pl.sel_index == L.person_compliance(1)
    assert pl.F_site.shape == (L.site_size,) * 2 and pl.F_person.shape == (L.person_size,) * 2
    on_y = plan(sm.loads("n_sites = 4\n[selection]\nstrength = 0.5\n[person]\nconfounding = 0.3\n"))
    assert on_y.sel_index == Layout(1).person_outcome


def test_a_layout_needs_a_mediator():
    with pytest.raises(ValueError, match="P >= 1"):
        Layout(0)
