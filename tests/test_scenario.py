"""Scenario files: validation (one line naming file, field and constraint), defaults, broadcasting,
content hashes and grids.

Every file in ``tests/invalid/`` starts with ``# expect: <substring of the error>``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulate import cli
from simulate.scenario import SCHEMA, Field, ScenarioError, expand_grid, from_dict, load, loads, validate_file

ROOT = Path(__file__).resolve().parent.parent
INVALID = sorted((ROOT / "tests" / "invalid").glob("*.toml"))
BUNDLED = sorted((ROOT / "scenarios").glob("*.toml"))
TRACEBACK = re.compile(r"Traceback|File \".*\", line \d+|^\s+raise ", re.MULTILINE)


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Invalid files: one line, naming the file, the field and the constraint
# ---------------------------------------------------------------------------


def test_enough_invalid_files():
    assert len(INVALID) >= 35
    # every file checks a different message
    assert len({_expected(p) for p in INVALID}) >= len(INVALID) - 2


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_file_error(path):
    expected = _expected(path)
    with pytest.raises(ScenarioError) as info:
        validate_file(path)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg
    assert msg.startswith(str(path))
    assert expected in msg


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_file_cli(path, capsys):
    code = cli.main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert err.endswith("\n")
    assert _expected(path) in lines[0]
    assert lines[0].startswith(str(path))
    assert not TRACEBACK.search(err)


def test_invalid_file_cli_subprocess():
    # one real process: nothing but the one line reaches the terminal
    path = ROOT / "tests" / "invalid" / "05_typo_site.toml"
    res = subprocess.run([sys.executable, "-m", "simulate.cli", "validate", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        f"{path}: site.complience_mean: unknown key; did you mean 'site.compliance_mean'?"]


def test_grid_cell_error_names_cell(tmp_path):
    path = _write(tmp_path, """
        [grid]
        "n_sites" = [10, 20]
        "site.effect_sd" = [0.1, -1.0]
    """)
    with pytest.raises(ScenarioError) as info:
        validate_file(path)
    # cartesian order: n_sites slowest, so the first bad cell is number 2
    assert str(info.value) == (f"{path} [grid cell 2: n_sites = 10, site.effect_sd = -1.0]: "
                               "site.effect_sd: must be >= 0, got -1")


def test_load_ignores_grid_but_validates_base(tmp_path):
    path = _write(tmp_path, """
        n_sites = 12
        [grid]
        "n_sites" = [10, 20]
    """)
    assert load(path).n_sites == 12
    with pytest.raises(ScenarioError, match=r"grid: use expand_grid"):
        from_dict(tomllib.loads(path.read_text()), "x")


def test_missing_file():
    with pytest.raises(ScenarioError) as info:
        validate_file("/nonexistent/scenario.toml")
    assert str(info.value) == "/nonexistent/scenario.toml: file not found"


def test_loads_error_uses_source():
    with pytest.raises(ScenarioError) as info:
        loads("n_sites = -3\n", source="mine.toml")
    assert str(info.value) == "mine.toml: n_sites: must be >= 1, got -3"


# ---------------------------------------------------------------------------
# New-user stories: a typo, an invalid correlation matrix, fewer sites than mediators
# ---------------------------------------------------------------------------


def test_typo_suggests_nearest_name():
    with pytest.raises(ScenarioError) as info:
        loads("[person]\nconfounding = 0.3\neffct_sd = 0.2\n", source="f.toml")
    assert str(info.value) == "f.toml: person.effct_sd: unknown key; did you mean 'person.effect_sd'?"


def test_unknown_key_without_near_name_lists_valid_keys():
    with pytest.raises(ScenarioError) as info:
        loads("[spillover]\nzzzzzz = 1\n", source="f.toml")
    assert str(info.value) == ("f.toml: spillover.zzzzzz: unknown key; valid keys here: mediator, outcome, "
                               "treated_mediator, treated_outcome")


def test_convenience_fields_can_make_matrix_not_psd():
    # corr(gamma_1, gamma_2) = -0.9 by the convenience field, plus two pairs: not PSD
    text = """
        [mediators]
        count = 2
        [site]
        compliance_correlation = -0.9
        compliance_effect_correlation = [-0.9, 0.0]
        [site.correlations]
        "compliance_2:effect_1" = -0.9
    """
    expected = r"^f: site\.correlations: .* not positive semi-definite \(smallest eigenvalue -0\.8\)$"
    with pytest.raises(ScenarioError, match=expected):
        loads(textwrap.dedent(text), source="f")


def test_fewer_sites_than_mediators_is_a_warning_not_an_error():
    sc = loads("n_sites = 2\n[mediators]\ncount = 3\n")
    assert sc.n_sites == 2 and sc.n_mediators == 3
    assert len(sc.warnings) == 1
    assert "2 instrument(s) for 3 mediators" in sc.warnings[0]
    assert "\n" not in sc.warnings[0]
    # a 3-arm treatment gives two contrasts per site: 4 instruments, enough for 3 mediators
    assert loads("n_sites = 2\n[treatment]\narms = 3\n[mediators]\ncount = 3\n").warnings == ()


# ---------------------------------------------------------------------------
# Defaults: every dial at zero
# ---------------------------------------------------------------------------


def test_defaults_every_dial_zero():
    sc = loads("")
    assert sc.n_sites == 50 and sc.n_per_site == (200,) * 50 and sc.n_per_site_range is None
    assert sc.arms == 2 and sc.binary_treatment
    assert sc.arm_shares == ((0.5, 0.5),) * 50
    assert sc.assignment == "complete"
    assert sc.mediator_names == ("M1",) and sc.mediator_kind == ("continuous",)
    assert sc.curvature == (0.0,) and sc.outcome_curvature == (0.0,)
    assert sc.site_mean == (1.0, 0.5, 0.0)  # compliance, effect, direct effect
    assert sc.site_sd == (0.3, 0.0, 0.0)
    np.testing.assert_array_equal(np.array(sc.site_correlation), np.eye(3))
    np.testing.assert_array_equal(np.array(sc.person_correlation), np.eye(4))
    assert sc.nonlinear_dependence == (0.0,)
    assert sc.compliance_sd == (0.0,) and sc.effect_sd == (0.0,)
    assert sc.defier_share == (0.0,)
    assert sc.paths == ()
    assert sc.selection_strength == 0.0 and sc.selection_mediator == 0
    assert sc.spillover_outcome == 0.0 and sc.spillover_mediator == (0.0,)
    assert sc.warnings == ()
    np.testing.assert_array_equal(sc.dose(0), [0.0, 1.0])


def test_defaults_three_mediators_identity_correlations():
    sc = loads("[mediators]\ncount = 3\n")
    assert sc.mediator_names == ("M1", "M2", "M3")
    np.testing.assert_array_equal(np.array(sc.site_correlation), np.eye(7))
    np.testing.assert_array_equal(np.array(sc.person_correlation), np.eye(10))


def test_multi_arm_default_shares_equal():
    sc = loads("n_sites = 4\n[treatment]\narms = 4\n")
    assert sc.arm_shares == ((0.25,) * 4,) * 4
    assert not sc.binary_treatment


def test_curvature_with_three_arms_is_allowed():
    sc = loads("[treatment]\narms = 3\n[mediators]\ncurvature = 0.5\n")
    np.testing.assert_allclose(sc.dose(0), [0.0, 1.0, 3.0])


# ---------------------------------------------------------------------------
# Broadcasting and sizes
# ---------------------------------------------------------------------------


def test_scalars_broadcast_to_every_mediator():
    sc = loads(textwrap.dedent("""
        [mediators]
        names = ["a", "b", "c"]
        [site]
        effect_sd = 0.2
        compliance_mean = [1.0, 0.5, 0.25]
        compliance_effect_correlation = 0.3
        [person]
        confounding = 0.4
    """))
    assert sc.site_sd[3:6] == (0.2, 0.2, 0.2)
    assert sc.site_mean[:3] == (1.0, 0.5, 0.25)
    R = np.array(sc.site_correlation)
    for p in range(3):
        assert R[p, 3 + p] == R[3 + p, p] == 0.3
    assert R[0, 4] == 0.0  # only own-mediator pairs
    Rp = np.array(sc.person_correlation)
    for p in range(3):
        assert Rp[6 + p, 9] == 0.4


def test_pairs_override_convenience_fields():
    sc = loads(textwrap.dedent("""
        [mediators]
        count = 2
        [site]
        compliance_correlation = 0.2
        [site.correlations]
        "compliance_2:compliance_1" = 0.5
        "effect_2:direct_effect" = -0.1
    """))
    R = np.array(sc.site_correlation)
    assert R[0, 1] == R[1, 0] == 0.5
    assert R[3, 4] == R[4, 3] == -0.1


def test_treatment_share_per_site():
    sc = loads("n_sites = 3\n[treatment]\nshare = [0.5, 0.25, 0.75]\n")
    assert sc.arm_shares == ((0.5, 0.5), (0.75, 0.25), (0.25, 0.75))


@pytest.mark.parametrize("text, sizes, rng", [
    ("n_sites = 3\nn_per_site = 40\n", (40, 40, 40), None),
    ("n_sites = 3\nn_per_site = [40, 50, 60]\n", (40, 50, 60), None),
    ("n_sites = 3\nn_per_site = {min = 40, max = 60}\n", None, (40, 60)),
    ("n_sites = 3\nn_per_site = {min = 40, max = 40}\n", None, (40, 40)),
    ("n_sites = 3\nn_per_site = 40.0\n", (40, 40, 40), None),
])
def test_n_per_site_forms(text, sizes, rng):
    sc = loads(text)
    assert sc.n_per_site == sizes
    assert sc.n_per_site_range == rng


def test_range_checks_its_smallest_site():
    # the minimum of a range must leave 2 persons per arm
    with pytest.raises(ScenarioError, match=r"^x: n_per_site: the smallest site \(3 persons\)"):
        loads("n_per_site = {min = 3, max = 300}\n", source="x")


# ---------------------------------------------------------------------------
# Content hash
# ---------------------------------------------------------------------------

_BASE = """\
name = "h"
n_sites = 30
n_per_site = 120
[mediators]
names = ["a", "b"]
[site]
compliance_mean = [1.0, 0.6]
effect_mean = 0.5
[person]
compliance_sd = 0.2
effect_sd = 0.1
within_site_correlation = 0.3
"""

_REORDERED = """\
# the same scenario, written another way
[person]
within_site_correlation = 0.3   # a comment
effect_sd = [0.1, 0.1]          # a broadcast written out
compliance_sd = 0.2
mediator_sd = 1                 # an explicit default (as an integer)

[site]
effect_mean = [0.5, 0.5]        # a broadcast written out
compliance_mean = [1, 0.6]

[mediators]
names = ["a", "b"]
kind = "continuous"

[treatment]
share = 0.5
assignment = "complete"
"""


def test_hash_stable_across_layout_comments_and_defaults():
    a = loads(_BASE)
    b = loads('n_per_site = 120\nn_sites = 30\nname = "h"\n' + _REORDERED)
    assert a.hash == b.hash
    assert re.fullmatch(r"[0-9a-f]{16}", a.hash)
    assert a.spec == b.spec
    assert loads(_BASE).hash == a.hash  # pure function of the content


def test_hash_changes_with_a_number():
    a = loads(_BASE)
    assert loads(_BASE.replace("within_site_correlation = 0.3", "within_site_correlation = 0.31")).hash != a.hash
    assert loads(_BASE.replace("n_sites = 30", "n_sites = 31")).hash != a.hash
    assert loads(_BASE.replace('compliance_mean = [1.0, 0.6]', 'compliance_mean = [1.0, 0.61]')).hash != a.hash


def test_hash_is_the_same_in_another_process(tmp_path):
    path = _write(tmp_path, _BASE)
    code = "import sys; from simulate.scenario import load; print(load(sys.argv[1]).hash)"
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == load(path).hash


def test_to_dict_holds_every_default():
    d = loads(_BASE).to_dict()
    assert set(d) >= {"name", "n_sites", "n_per_site", "treatment", "mediators", "site", "person",
                      "paths", "selection", "spillover"}
    assert "binary" not in d  # no binary mediator: the [binary] table does not apply
    assert from_dict(d).hash == loads(_BASE).hash  # the normalised table reads back as the same scenario
    assert d["site"]["effect_sd"] == [0.0, 0.0]
    assert d["selection"]["strength"] == 0.0
    assert d["person"]["within_site_correlation"] == [0.3, 0.3]


# ---------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------


def test_grid_cartesian_product_count_and_order():
    raw = tomllib.loads(textwrap.dedent("""
        [grid]
        "n_sites" = [20, 40, 60]
        "site.effect_sd" = [0.0, 0.1]
    """))
    cells = expand_grid(raw, "g")
    assert len(cells) == 6
    assert [c.index for c in cells] == list(range(6))
    assert [(c.scenario.n_sites, c.scenario.site_sd[1]) for c in cells] == [
        (20, 0.0), (20, 0.1), (40, 0.0), (40, 0.1), (60, 0.0), (60, 0.1)]
    assert cells[3].values == (("n_sites", 40), ("site.effect_sd", 0.1))
    assert len({c.hash for c in cells}) == 6


def test_grid_zip_moves_paths_together():
    raw = tomllib.loads(textwrap.dedent("""
        [grid]
        "site.effect_sd" = [0.0, 0.1, 0.2]
        "n_sites" = [20, 40, 60]
        "person.confounding" = [0.0, 0.5]
        zip = [["site.effect_sd", "n_sites"]]
    """))
    cells = expand_grid(raw, "g")
    assert len(cells) == 6
    got = [(c.scenario.site_sd[1], c.scenario.n_sites, c.scenario.person_correlation[2][3]) for c in cells]
    assert got == [(0.0, 20, 0.0), (0.0, 20, 0.5), (0.1, 40, 0.0), (0.1, 40, 0.5), (0.2, 60, 0.0), (0.2, 60, 0.5)]


def test_grid_index_path_per_mediator():
    raw = tomllib.loads(textwrap.dedent("""
        [mediators]
        names = ["a", "b", "c"]
        [site]
        compliance_mean = 0.8
        [grid]
        "site.compliance_mean[2]" = [0.2, 0.4]
    """))
    cells = expand_grid(raw, "g")
    assert [c.scenario.site_mean[:3] for c in cells] == [(0.8, 0.2, 0.8), (0.8, 0.4, 0.8)]


def test_grid_index_path_per_site():
    raw = tomllib.loads('n_sites = 3\n[grid]\n"treatment.share[3]" = [0.25, 0.75]\n')
    cells = expand_grid(raw, "g")
    assert [c.scenario.arm_shares[2] for c in cells] == [(0.75, 0.25), (0.25, 0.75)]
    assert all(c.scenario.arm_shares[:2] == ((0.5, 0.5),) * 2 for c in cells)


def test_grid_pair_path():
    raw = tomllib.loads(textwrap.dedent("""
        [mediators]
        count = 2
        [site]
        effect_sd = 0.1
        [person]
        compliance_sd = 0.2
        effect_sd = 0.1
        [grid]
        "person.correlations.compliance_1:effect_1" = [0.0, 0.3]
        "site.correlations.compliance_2:effect_1" = [-0.2]
    """))
    cells = expand_grid(raw, "g")
    assert len(cells) == 2
    assert [c.scenario.person_correlation[0][2] for c in cells] == [0.0, 0.3]
    assert all(c.scenario.site_correlation[1][2] == -0.2 for c in cells)


def test_grid_path_into_paths_table():
    raw = tomllib.loads(textwrap.dedent("""
        [mediators]
        count = 2
        [[paths]]
        from = 1
        to = 2
        mean = 0.1
        [grid]
        "paths[1].mean" = [0.0, 0.2, 0.4]
    """))
    cells = expand_grid(raw, "g")
    assert [c.scenario.paths[0].mean for c in cells] == [0.0, 0.2, 0.4]
    assert cells[0].scenario.paths[0].source == 0 and cells[0].scenario.paths[0].target == 1


def test_grid_cell_hash_equals_hand_written_scenario():
    raw = tomllib.loads('n_sites = 30\n[grid]\n"site.effect_sd" = [0.0, 0.25]\n')
    cells = expand_grid(raw, "g")
    assert cells[1].hash == loads("n_sites = 30\n[site]\neffect_sd = 0.25\n").hash
    assert cells[0].hash == loads("n_sites = 30\n").hash


def test_no_grid_gives_one_cell(tmp_path):
    path = _write(tmp_path, "n_sites = 10\n")
    cells = validate_file(path)
    assert len(cells) == 1 and cells[0].values == () and cells[0].scenario.n_sites == 10


def test_grid_does_not_mutate_input():
    raw = tomllib.loads('[grid]\n"site.effect_sd" = [0.0, 0.1]\n')
    before = repr(raw)
    expand_grid(raw, "g")
    assert repr(raw) == before


# ---------------------------------------------------------------------------
# Bundled scenarios
# ---------------------------------------------------------------------------


def test_some_bundled_scenarios_exist():
    assert len(BUNDLED) >= 3
    assert (ROOT / "scenarios" / "baseline.toml") in BUNDLED


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_scenario_validates(path):
    cells = validate_file(path)
    assert len(cells) >= 1
    sc = cells[0].scenario
    assert sc.name == path.stem
    if path.stem != "rank_fewer_sites_than_mediators":  # that one shows the warning on purpose
        assert all(c.scenario.warnings == () for c in cells)
    else:
        assert any("assumption viii" in w for c in cells for w in c.scenario.warnings)
    assert len({c.hash for c in cells}) == len(cells)


def test_bundled_grid_sizes():
    assert len(validate_file(ROOT / "scenarios" / "binary_defiers.toml")) == 3
    assert len(validate_file(ROOT / "scenarios" / "within_site_correlation.toml")) == 4


# ---------------------------------------------------------------------------
# Properties: in-range numbers validate; out-of-range numbers fail naming the field
# ---------------------------------------------------------------------------

# every bounded float field of the simple tables (site, person, selection, spillover)
_BOUNDED = [
    (table, key, f)
    for table in ("site", "person", "selection")
    for key, f in SCHEMA[table].items()
    if isinstance(f, Field) and f.kind == "float" and (f.low is not None or f.high is not None)
]


def test_bounded_fields_found():
    assert len(_BOUNDED) >= 10


def _in_range(f: Field):
    lo = f.low if f.low is not None else -5.0
    hi = f.high if f.high is not None else lo + 5.0
    return st.floats(lo, hi, exclude_min=f.low_open, exclude_max=f.high_open, allow_nan=False)


def _out_of_range(f: Field):
    options = []
    if f.low is not None:
        options.append(st.floats(f.low - 100.0, f.low, exclude_max=not f.low_open, allow_nan=False))
    if f.high is not None:
        options.append(st.floats(f.high, f.high + 100.0, exclude_min=not f.high_open, allow_nan=False))
    return st.one_of(options)


_VARYING = {"site": {"effect_sd": 0.2, "direct_effect_sd": 0.1}, "person": {"compliance_sd": 0.2, "effect_sd": 0.2}}


def _scenario_text(table: str, key: str, value: float) -> str:
    # a single mediator keeps correlations from combining into a non-PSD matrix (two for the
    # correlation of two mediators' compliances); every SD above 0, so that no correlation is a no-op
    tables = {t: dict(v) for t, v in _VARYING.items()}
    tables.setdefault(table, {})[key] = value
    text = f"n_sites = 10\nn_per_site = 20\n[mediators]\ncount = {2 if key == 'compliance_correlation' else 1}\n"
    for t, entries in tables.items():
        text += f"[{t}]\n" + "".join(f"{k} = {v!r}\n" for k, v in entries.items())
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_in_range_values_validate(data):
    table, key, f = data.draw(st.sampled_from(_BOUNDED))
    value = data.draw(_in_range(f))
    sc = loads(_scenario_text(table, key, value))
    assert sc.n_sites == 10
    assert sc.to_dict()[table][key] in (value, [value])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_out_of_range_values_fail_naming_the_field(data):
    table, key, f = data.draw(st.sampled_from(_BOUNDED))
    value = data.draw(_out_of_range(f))
    with pytest.raises(ScenarioError) as info:
        loads(_scenario_text(table, key, value), source="p.toml")
    msg = str(info.value)
    assert msg.startswith(f"p.toml: {table}.{key}: must be ")
    assert "\n" not in msg


@settings(max_examples=100, deadline=None)
@given(share=st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
       n=st.integers(2, 400))
def test_property_share_and_size_either_validate_or_name_n_per_site(share, n):
    text = f"n_sites = 2\nn_per_site = {n}\n[treatment]\nshare = {share!r}\n"
    try:
        sc = loads(text, source="q")
    except ScenarioError as exc:
        assert str(exc).startswith("q: n_per_site: the smallest site")
        treated = n * share
        # an arm below 2 persons is the only reason to fail
        assert min(treated, n - treated) < 2.0 + 1e-6
    else:
        assert sc.arm_shares[0] == (1.0 - share, share)
        treated = n * share
        assert min(treated, n - treated) > 1.0


@settings(max_examples=100, deadline=None)
@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20))
def test_property_unknown_site_keys_rejected(key):
    if key in SCHEMA["site"]:
        return
    with pytest.raises(ScenarioError) as info:
        loads(f"[site]\n{key} = 0.1\n", source="u")
    msg = str(info.value)
    assert msg.startswith(f"u: site.{key}: unknown key; ")
    assert "\n" not in msg


@settings(max_examples=60, deadline=None)
@given(rho=st.floats(-1.0, 1.0))
def test_property_three_equal_correlations_psd_iff_rho_at_least_minus_half(rho):
    # an exchangeable 3x3 correlation matrix is PSD exactly when rho >= -1/2
    text = (f'[person]\ncompliance_sd = 0.2\neffect_sd = 0.2\n'
            f'[person.correlations]\n"compliance_1:effect_1" = {rho!r}\n"effect_1:outcome" = {rho!r}\n'
            f'"compliance_1:outcome" = {rho!r}\n')
    if rho >= -0.5 + 1e-9:
        sc = loads(text)
        assert sc.person_correlation[0][1] == rho
    elif rho < -0.5 - 1e-9:
        with pytest.raises(ScenarioError, match="not positive semi-definite"):
            loads(text)


# ---------------------------------------------------------------------------
# Bounds before any work (issue 12)
# ---------------------------------------------------------------------------


def test_integer_beyond_the_conversion_limit_is_one_line(tmp_path):
    # tomllib raises ValueError for an integer of more than 4,300 digits; it is invalid TOML for us
    path = _write(tmp_path, "[site]\neffect_mean = 1" + "0" * 4999 + "\n")
    with pytest.raises(ScenarioError) as info:
        validate_file(path)
    assert str(info.value).startswith(f"{path}: not valid TOML (Exceeds the limit")
    assert "\n" not in str(info.value)


def test_replication_memory_is_checked_against_the_machine(monkeypatch):
    import simulate.scenario as S
    import simulate.scenario.validation as V  # where the check looks the machine's memory up

    monkeypatch.setattr(V, "physical_memory", lambda: 8 * 2**30)
    with pytest.raises(ScenarioError) as info:
        loads("n_sites = 1000\nn_per_site = 40000\n[mediators]\ncount = 3\n", source="m")
    msg = str(info.value)
    assert msg.startswith("m: n_per_site: one replication of 1,000 sites x 40,000 persons needs about ")
    assert "GiB of working buffers, more than half of this machine's 8.0 GiB" in msg
    need = S.replication_bytes(1000, 40_000_000, 40_000, 3, 2, 0)
    assert f"{need / 2**30:.1f} GiB" in msg
    monkeypatch.setattr(V, "physical_memory", lambda: 0)  # unknown memory: only the persons cap applies
    assert loads("n_sites = 1000\nn_per_site = 40000\n[mediators]\ncount = 3\n").n_sites == 1000


@pytest.mark.parametrize("text", ["n_per_site = 1_000_000_000_000\nn_sites = 1\n", "n_per_site = 1e30\n",
                                  "n_sites = 1_000_000\nn_per_site = 100_000\n"])
def test_huge_designs_are_rejected_at_once(text):
    import time

    start = time.perf_counter()
    with pytest.raises(ScenarioError, match="n_per_site: "):
        loads(text)
    assert time.perf_counter() - start < 1.0


def test_grid_of_800_cells_validates_in_seconds_and_a_huge_grid_fails_at_once(tmp_path):
    import time

    values = ", ".join(str(round(i / 400, 4)) for i in range(200))
    text = (f"n_sites = 30\nn_per_site = 100\n[mediators]\nnames = ['a', 'b']\n[site]\neffect_sd = 0.2\n[person]\n"
            f"compliance_sd = 0.3\neffect_sd = 0.3\n[grid]\n\"site.effect_mean[1]\" = [0.1, 0.2, 0.3, 0.4]\n"
            f"\"person.within_site_correlation\" = [{values}]\n")
    start = time.perf_counter()
    cells = validate_file(_write(tmp_path, text))
    assert len(cells) == 800 and time.perf_counter() - start < 10.0  # about 1.5 s on the project's machine
    huge = text + "".join(f"\"person.{k}\" = [{values}]\n" for k in ("mediator_sd", "outcome_sd"))
    start = time.perf_counter()
    with pytest.raises(ScenarioError, match=r"grid: 4 x 200 x 200 x 200 = 32,000,000 cells; at most 10,000"):
        validate_file(_write(tmp_path, huge, "huge.toml"))
    assert time.perf_counter() - start < 1.0


def test_many_sites_do_not_make_cells_slow():
    import time

    raw = {"n_sites": 20_000, "n_per_site": 20, "grid": {"site.effect_mean": [0.1 * i for i in range(50)]}}
    start = time.perf_counter()
    cells = expand_grid(raw, "g")
    assert len(cells) == 50 and cells[0].scenario.arm_shares[-1] == (0.5, 0.5)
    assert time.perf_counter() - start < 10.0  # per-site work is one row object, not one per site


@pytest.mark.parametrize("loader", ["loads", "from_dict", "expand_grid", "validate_file"])
def test_a_stress_table_is_accepted_and_ignored(loader, tmp_path):
    # issue 11: a stress-test design is the user's scenario; its [stress] table is the stress test's
    text = "n_sites = 12\n[site]\neffect_sd = 0.2\n[stress]\nreps = 10\nsteps = 3\n[stress.dials]\nselection = 1.5\n"
    plain = loads("n_sites = 12\n[site]\neffect_sd = 0.2\n")
    if loader == "loads":
        sc = loads(text)
    elif loader == "from_dict":
        sc = from_dict(tomllib.loads(text))
    elif loader == "expand_grid":
        sc = expand_grid(tomllib.loads(text))[0].scenario
    else:
        sc = validate_file(_write(tmp_path, text))[0].scenario
    assert sc.hash == plain.hash
    assert load(_write(tmp_path, text, "d.toml")).hash == plain.hash


def test_bundled_design_loads_as_a_scenario():
    sc = load(ROOT / "scenarios" / "designs" / "flagship.toml")
    assert sc.n_sites == 30 and sc.mediator_names == ("takeup", "hours")


def test_a_correlation_at_zero_or_with_varying_components_is_never_a_no_op_error():
    loads("[person]\nwithin_site_correlation = 0.0\n[site]\ncompliance_effect_correlation = 0.0\n")
    # one value for all mediators: an error only when it moves none of them
    sc = loads("[mediators]\ncount = 2\n[person]\ncompliance_sd = [0.3, 0.0]\neffect_sd = 0.2\n"
               "within_site_correlation = 0.4\n")
    assert sc.person_correlation[0][2] == 0.4
    # a binary mediator's latent compliance always matters; selection on a constant index that
    # correlates with the effect does something
    loads("[mediators]\nkind = 'binary'\n[person]\nwithin_site_correlation = 0.3\n")
    loads("[person]\neffect_sd = 0.2\nwithin_site_correlation = 0.5\n[selection]\nstrength = 1.0\non = 'compliance'\n")


def test_newline_in_a_grid_value_or_key_stays_on_one_line():
    raw = {"grid": {"name": ["a\nb"], "n_sites": [0]}}
    with pytest.raises(ScenarioError) as info:
        expand_grid(raw, "g")
    assert "\n" not in str(info.value) and "name = 'a\\nb'" in str(info.value)
    with pytest.raises(ScenarioError) as info:
        loads('[site]\n"effect\\nsd" = 1\n', source="k")
    assert "\n" not in str(info.value) and str(info.value).startswith("k: site.'effect\\nsd': unknown key")


# ---------------------------------------------------------------------------
# nested read-only views mirroring the TOML tables
# ---------------------------------------------------------------------------

VIEWS = """\
name = "views"
n_sites = 30
n_per_site = 40
[treatment]
arms = 3
[mediators]
names = ["income", "hours"]
curvature = [0.1, -0.2]
[site]
compliance_mean = [1.0, 0.6]
compliance_sd = [0.4, 0.3]
effect_mean = [0.5, 0.25]
effect_sd = [0.1, 0.2]
compliance_effect_correlation = [0.3, 0.0]
compliance_correlation = 0.2
[site.correlations]
"effect_1:effect_2" = -0.1
[person]
compliance_sd = 0.3
effect_sd = [0.2, 0.1]
within_site_correlation = [0.4, 0.1]
confounding = 0.3
[person.correlations]
"compliance_1:effect_2" = 0.05
[selection]
strength = 0.5
on = "compliance"
mediator = 2
[spillover]
mediator = [0.0, 0.1]
"""


def test_nested_views_mirror_the_toml_tables():
    sc = loads(VIEWS)
    assert sc.person.within_site_correlation == (0.4, 0.1)
    assert sc.person.confounding == (0.3, 0.3) and sc.person.compliance_sd == (0.3, 0.3)
    assert sc.person.correlations == {"compliance_1:effect_2": 0.05}
    assert sc.site.correlations == {"effect_1:effect_2": -0.1}
    assert sc.site.compliance_effect_correlation == (0.3, 0.0) and sc.site.compliance_correlation == 0.2
    assert sc.site.effect_sd == (0.1, 0.2) and sc.site.direct_effect_mean == 0.0
    assert sc.mediators.names == ("income", "hours") and sc.mediators.curvature == (0.1, -0.2)
    assert sc.mediators.count == 2 and sc.mediators.kind == ("continuous", "continuous")
    assert sc.treatment.arms == 3 and sc.treatment.assignment == "complete"
    assert sc.selection.strength == 0.5 and sc.selection.on == "compliance"
    assert sc.selection.mediator == 2 and sc.selection_mediator == 1  # from 1 as in the file; the flat one from 0
    assert sc.spillover.mediator == (0.0, 0.1) and sc.spillover.outcome == 0.0
    assert sc.binary.complier_share == (0.6, 0.6)  # the schema's defaults: no mediator is binary


def test_nested_views_agree_with_the_flat_attributes():
    sc = loads(VIEWS)
    assert sc.site.mean == sc.site_mean and sc.site.sd == sc.site_sd
    assert sc.site.correlation == sc.site_correlation and sc.person.correlation == sc.person_correlation
    assert sc.site.mean == (*sc.site.compliance_mean, *sc.site.effect_mean, sc.site.direct_effect_mean)
    assert sc.site.names == ("compliance_1", "compliance_2", "effect_1", "effect_2", "direct_effect")
    names = sc.person.names
    assert names[-1] == "outcome" and len(names) == len(sc.person_correlation) == 7
    # each named correlation is the matrix entry of its pair, the convenience fields where no pair overrides
    for view in (sc.site, sc.person):
        idx = {n: i for i, n in enumerate(view.names)}
        for pair, value in view.correlations.items():
            a, b = pair.split(":")
            assert view.correlation[idx[a]][idx[b]] == value
    p = sc.person
    assert [p.correlation[k][2 + k] for k in range(2)] == list(p.within_site_correlation)
    assert [p.correlation[4 + k][6] for k in range(2)] == list(p.confounding)
    assert sc.person.mediator_sd == sc.mediator_sd and sc.person.effect_sd == sc.effect_sd
    assert sc.treatment.arm_shares == sc.arm_shares and sc.mediators.outcome_curvature == sc.outcome_curvature


def test_nested_views_are_read_only_picklable_and_leave_the_hash_alone():
    import dataclasses
    import pickle

    sc = loads(VIEWS)
    before = (sc.hash, sc.spec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.person.within_site_correlation = (0.0, 0.0)
    with pytest.raises(TypeError):
        sc.site.correlations["effect_1:effect_2"] = 0.0
    with pytest.raises(AttributeError):
        sc.site.correlations.extra = 1
    back = pickle.loads(pickle.dumps(sc))  # the views travel to worker processes with the scenario
    assert back == sc and back.person == sc.person and back.site.correlations == sc.site.correlations
    assert (sc.hash, sc.spec) == before and hash(sc.site) == hash(back.site)
    assert loads(VIEWS) == sc  # a view once read does not make two equal scenarios differ


def test_every_schema_key_of_a_table_is_in_its_view():
    import dataclasses

    sc = loads(VIEWS)
    for table in ("site", "person", "binary", "selection", "spillover", "mediators", "treatment"):
        view = {f.name for f in dataclasses.fields(getattr(sc, table))}
        keys = {k for k, f in SCHEMA[table].items() if k != "correlations"}
        if table == "treatment":
            keys -= {"share"}  # the per-site shares are in arm_shares
        assert keys <= view, (table, keys - view)


def test_views_of_binary_mediators_hold_the_values_the_engine_reads():
    text = ("n_sites = 20\nn_per_site = 50\n[mediators]\nkind = \"binary\"\n[binary]\ncomplier_share = 0.5\n"
            "always_share = 0.3\nnever_share = 0.2\n")
    sc = loads(text)
    assert sc.binary.complier_share == sc.complier_share == (0.5,)
    assert sc.binary.always_share == sc.always_share and sc.binary.never_share == sc.never_share
    assert sc.site.compliance_mean == sc.site_mean[:1] and sc.person.mediator_sd == sc.mediator_sd
