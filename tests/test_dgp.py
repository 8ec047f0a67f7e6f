"""The data-generating process: reference agreement, invariants, dials at zero."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simulate as sm
from simulate.dgp import cell_counts, plan

sys.path.insert(0, str(Path(__file__).parent))
from naive_dgp import draw_reference  # noqa: E402

EVERY_DIAL = """
name = "every dial"
n_sites = 12
n_per_site = {min = 40, max = 90}
[treatment]
arms = 3
arm_shares = [0.4, 0.3, 0.3]
[mediators]
count = 3
kind = ["binary", "continuous", "continuous"]
curvature = [0.2, 0.3, -0.1]
outcome_curvature = [0.0, 0.1, 0.2]
[site]
compliance_sd = [0.0, 0.4, 0.3]
effect_sd = [0.2, 0.1, 0.1]
compliance_effect_correlation = [0.3, 0.2, -0.2]
compliance_correlation = 0.2
direct_effect_mean = 0.1
direct_effect_sd = 0.2
direct_effect_compliance_correlation = [0.0, 0.3, 0.0]
nonlinear_dependence = [0.5, 0.5, 0.0]
mediator_baseline_sd = [0.0, 0.5, 0.5]
outcome_baseline_sd = 1.0
[person]
compliance_sd = [0.0, 0.3, 0.3]
effect_sd = [0.3, 0.2, 0.2]
within_site_correlation = [0.4, 0.3, 0.2]
confounding = 0.3
[binary]
complier_share = 0.5
always_share = 0.15
never_share = 0.25
defier_share = 0.1
complier_share_site_sd = 0.4
always_effect_shift = 0.2
defier_effect_shift = -0.3
[[paths]]
from = 1
to = 3
mean = 0.4
site_sd = 0.1
person_sd = 0.2
effect_correlation = 0.3
[[paths]]
from = 2
to = 3
mean = -0.2
person_sd = 0.1
[selection]
strength = 0.6
on = "compliance"
mediator = 2
[spillover]
outcome = 0.3
mediator = [0.0, 0.2, 0.1]
"""

BERNOULLI = """
n_sites = 9
n_per_site = [30, 40, 50, 60, 70, 80, 90, 100, 110]
[treatment]
assignment = "bernoulli"
share = [0.3, 0.4, 0.5, 0.6, 0.7, 0.3, 0.4, 0.5, 0.6]
[selection]
strength = -0.8
[site]
direct_effect_sd = 0.3
"""

FIELDS = ["site", "treatment", "mediators", "outcome", "effect", "compliance", "complier_type", "n_per_site",
          "arm_counts", "site_compliance", "site_effect", "site_direct_effect", "share_treated"]


def assert_identical(a, b):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.shape == y.shape, f
        assert np.array_equal(x, y, equal_nan=True), f"{f} differs"


@pytest.mark.parametrize("text", [EVERY_DIAL, BERNOULLI], ids=["every_dial", "bernoulli"])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_numba_matches_numpy_reference_bit_for_bit(text, seed):
    sc = sm.loads(text)
    assert_identical(sm.draw(sc, seed), draw_reference(sc, seed))


@st.composite
def scenarios(draw):
    """Random valid scenarios over the structural choices and every dial."""
    P = draw(st.integers(1, 3))
    arms = draw(st.integers(2, 4))
    kinds = [draw(st.sampled_from(["continuous", "binary"])) for _ in range(P)]
    num = lambda lo, hi: draw(st.floats(lo, hi, allow_nan=False).map(lambda x: round(x, 3)))  # noqa: E731
    lines = [f"n_sites = {draw(st.integers(2, 8))}",
             f"n_per_site = {{min = {10 * arms}, max = {10 * arms + draw(st.integers(0, 40))}}}",
             "[treatment]", f"arms = {arms}",
             f"assignment = \"{draw(st.sampled_from(['complete', 'bernoulli']))}\"",
             "[mediators]", f"count = {P}", f"kind = {kinds}".replace("'", '"')]
    if arms > 2:
        lines.append(f"curvature = {[num(0, 0.3) for _ in range(P)]}")
    lines.append(f"outcome_curvature = {[0.0 if k == 'binary' else num(-0.2, 0.2) for k in kinds]}")
    all_binary = "continuous" not in kinds
    lines += ["[site]"] + ([] if all_binary else [f"compliance_sd = {[num(0.1, 0.5) for _ in range(P)]}"]) + [
              f"effect_sd = {num(0.01, 0.3)}", f"compliance_effect_correlation = {num(-0.5, 0.5)}",
              f"direct_effect_sd = {num(0, 0.3)}", f"nonlinear_dependence = {num(-1, 1)}",
              "[person]", f"within_site_correlation = {num(-0.5, 0.5)}", f"effect_sd = {num(0.01, 0.3)}",
              ] + ([] if all_binary else [f"compliance_sd = {num(0.01, 0.3)}"]) + [f"confounding = {num(-0.5, 0.5)}",
              "[selection]", f"strength = {num(-1, 1)}",
              "[spillover]", f"outcome = {num(-0.5, 0.5)}", f"mediator = {num(-0.5, 0.5)}"]
    if "binary" in kinds:
        lines += ["[binary]", "complier_share = 0.5", "always_share = 0.2", "never_share = 0.2",
                  "defier_share = 0.1", f"complier_share_site_sd = {num(0.1, 0.5)}"]
    cont = [p + 1 for p, k in enumerate(kinds) if k == "continuous"]
    if P >= 2 and cont and cont[-1] > 1 and draw(st.booleans()):
        lines += ["[[paths]]", "from = 1", f"to = {cont[-1]}", f"mean = {num(-0.5, 0.5)}",
                  f"person_sd = {num(0, 0.3)}", f"effect_correlation = {num(-0.5, 0.5)}"]
    return "\n".join(lines) + "\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_random_scenarios_match_reference_and_invariants(text, seed):
    sc = sm.loads(text)
    tr = sm.draw(sc, seed)
    assert_identical(tr, draw_reference(sc, seed))
    n = int(tr.n_per_site.sum())
    P = sc.n_mediators
    # shapes
    assert tr.mediators.shape == (n, P) and tr.outcome.shape == (n,) and tr.effect.shape == (n, P)
    assert tr.arm_counts.shape == (sc.n_sites, sc.arms)
    # sites sorted, sizes within range, arms within range
    assert np.all(np.diff(tr.site) >= 0)
    lo, hi = sc.n_per_site_range
    assert tr.n_per_site.min() >= lo and tr.n_per_site.max() <= hi
    assert tr.treatment.min() >= 0 and tr.treatment.max() < sc.arms
    # complete randomization: exact counts per site and arm
    if sc.assignment == "complete":
        assert np.array_equal(tr.arm_counts, cell_counts(tr.n_per_site, plan(sc).shares))
    # binary mediators are 0/1, with a type for every person
    for p in range(P):
        if sc.is_binary[p]:
            assert set(np.unique(tr.mediators[tr.treatment > 0, p])) <= {0.0, 1.0} or sc.spillover_mediator[p] != 0
            assert tr.complier_type[:, p].min() >= 0
        else:
            assert (tr.complier_type[:, p] == -1).all()
    assert np.isfinite(tr.outcome).all()


def test_same_seed_same_data_and_other_seed_other_data():
    sc = sm.loads(EVERY_DIAL)
    a, b, c = sm.draw(sc, 7), sm.draw(sc, 7), sm.draw(sc, 8)
    assert_identical(a, b)
    assert not np.array_equal(a.outcome[:50], c.outcome[:50])
    seq = np.random.SeedSequence(99, spawn_key=(3, 4))
    assert_identical(sm.draw(sc, seq), sm.draw(sc, np.random.SeedSequence(99, spawn_key=(3, 4))))


def test_kernel_under_numba_disable_jit_matches_reference():
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "import numpy as np, simulate as sm\n"
        "from naive_dgp import draw_reference\n"
        "from test_dgp import EVERY_DIAL, BERNOULLI, assert_identical\n"
        "for text in (EVERY_DIAL, BERNOULLI):\n"
        "    sc = sm.loads(text.replace('n_sites = 12', 'n_sites = 3'))\n"
        "    assert_identical(sm.draw(sc, 5), draw_reference(sc, 5))\n"
        "from simulate.dgp import streams\n"
        "from simulate.replicate import replication_seed, replication_states, run_replications\n"
        "want = np.stack([streams(replication_seed(2**40 + 3, 1, r)) for r in (0, 5)])\n"
        "assert np.array_equal(replication_states(2**40 + 3, 1, [0, 5]), want)\n"
        "rows = run_replications(sm.loads(EVERY_DIAL.replace('n_sites = 12', 'n_sites = 3')), 0, 0, 3, range(1))\n"
        "from numba import config; assert config.DISABLE_JIT\n"
        "print('pure-python kernel ok')\n"
        "print(json.dumps([float(x) for x in rows['estimate']] + [float(x) for x in rows['sample_ate']]))\n"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = Path(__file__).parent.parent
    res = subprocess.run([sys.executable, "-c", "import json\n" + code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "pure-python kernel ok" in res.stdout
    # the fused batch kernel (and the batched seeding) in pure Python equals the compiled one
    from simulate.replicate import run_replications

    rows = run_replications(sm.loads(EVERY_DIAL.replace("n_sites = 12", "n_sites = 3")), 0, 0, 3, range(1))
    compiled = np.concatenate([rows["estimate"], rows["sample_ate"]])
    py = np.array(json.loads(res.stdout.strip().splitlines()[-1]), float)
    np.testing.assert_allclose(py, compiled, rtol=1e-10, atol=1e-12, equal_nan=True)
    assert np.isfinite(compiled).sum() > len(compiled) // 2


# ---------------------------------------------------------------------------
# Each dial at zero leaves the data exactly as without it; on, it moves only what it should
# ---------------------------------------------------------------------------

BASE = """
n_sites = 6
n_per_site = 60
[treatment]
arms = 3
[mediators]
count = 2
[site]
effect_sd = 0.2
[person]
compliance_sd = 0.3
effect_sd = 0.2
confounding = 0.3
"""

ZERO_DIALS = {
    "spillover": "[spillover]\noutcome = 0.0\nmediator = 0.0\n",
    "direct effect": "[site]\ndirect_effect_mean = 0.0\ndirect_effect_sd = 0.0\n",
    "mediator curvature": "[mediators]\ncount = 2\ncurvature = 0.0\n",
    "outcome curvature": "[mediators]\ncount = 2\noutcome_curvature = 0.0\n",
    "paths": "[[paths]]\nfrom = 1\nto = 2\nmean = 0.0\nsite_sd = 0.0\nperson_sd = 0.0\n",
    "selection": "[selection]\nstrength = 0.0\n",
    "within-site correlation": "[person]\nwithin_site_correlation = 0.0\n",
    "between-site correlation": "[site]\ncompliance_effect_correlation = 0.0\n",
    "nonlinear dependence": "[site]\nnonlinear_dependence = 0.0\n",
}


def _merge(base: str, extra: str) -> str:
    """Append `extra`'s keys into base's tables (TOML forbids repeating a table header)."""
    import tomllib

    raw = tomllib.loads(base)
    add = tomllib.loads(extra)
    for k, v in add.items():
        if isinstance(v, dict):
            raw.setdefault(k, {}).update(v)
        else:
            raw[k] = v
    return raw


@pytest.mark.parametrize("dial", list(ZERO_DIALS))
def test_dial_at_zero_leaves_data_unchanged(dial):
    base = sm.scenario.from_dict(_merge(BASE, ""))
    zero = sm.scenario.from_dict(_merge(BASE, ZERO_DIALS[dial]))
    for seed in (0, 3):
        assert_identical(sm.draw(base, seed), sm.draw(zero, seed))


ON_DIALS = {
    # dial: (extra, what may change)
    "spillover on Y": ("[spillover]\noutcome = 0.4\n", {"outcome"}),
    "spillover on M": ("[spillover]\nmediator = [0.3, 0.0]\n", {"mediators", "outcome"}),
    "direct effect": ("[site]\ndirect_effect_mean = 0.2\ndirect_effect_sd = 0.1\n",
                      {"outcome", "site_direct_effect"}),
    "outcome curvature": ("[mediators]\ncount = 2\noutcome_curvature = 0.2\n", {"outcome"}),
    "mediator curvature": ("[mediators]\ncount = 2\ncurvature = 0.3\n", {"mediators", "outcome", "compliance"}),
    "path": ("[[paths]]\nfrom = 1\nto = 2\nmean = 0.5\nperson_sd = 0.2\n", {"mediators", "outcome", "compliance"}),
    "selection": ("[selection]\nstrength = 1.0\n", {"treatment", "mediators", "outcome"}),
    "within-site correlation": ("[person]\nwithin_site_correlation = 0.5\n",
                                {"mediators", "outcome", "effect", "compliance"}),
}


@pytest.mark.parametrize("dial", list(ON_DIALS))
def test_dial_on_moves_only_its_variables(dial):
    extra, allowed = ON_DIALS[dial]
    base = sm.scenario.from_dict(_merge(BASE, ""))
    on = sm.scenario.from_dict(_merge(BASE, extra))
    a, b = sm.draw(base, 11), sm.draw(on, 11)
    changed = {f for f in FIELDS if not np.array_equal(getattr(a, f), getattr(b, f))}
    assert changed, f"{dial} changed nothing"
    assert changed <= allowed, f"{dial} also changed {changed - allowed}"
    if dial == "spillover on Y":
        treated = a.treatment > 0
        assert np.array_equal(a.outcome[treated], b.outcome[treated])
        share = a.share_treated[a.site]
        np.testing.assert_allclose(b.outcome[~treated] - a.outcome[~treated], 0.4 * share[~treated], atol=1e-12)
    if dial == "direct effect":
        np.testing.assert_allclose(b.outcome - a.outcome, b.site_direct_effect[b.site] * b.treatment, atol=1e-12)


def test_arm_counts_exact_and_bernoulli_share_close():
    sc = sm.loads("n_sites = 4\nn_per_site = [101, 37, 250, 64]\n[treatment]\narms = 3\narm_shares = [0.5, 0.3, 0.2]\n")
    tr = sm.draw(sc, 1)
    assert tr.arm_counts.tolist() == [[51, 30, 20], [19, 11, 7], [125, 75, 50], [32, 19, 13]]
    sc = sm.loads("n_sites = 2\nn_per_site = 40000\n[treatment]\nassignment = 'bernoulli'\nshare = 0.3\n")
    tr = sm.draw(sc, 2)
    share = tr.arm_counts[:, 1] / 40000
    assert np.all(np.abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 40000))
    assert len(set(tr.arm_counts[:, 1])) == 2  # not exact: Bernoulli


def test_binary_type_shares_match_the_scenario():
    sc = sm.loads("n_sites = 1\nn_per_site = 200000\n[mediators]\nkind = 'binary'\n"
                  "[binary]\ncomplier_share = 0.45\nalways_share = 0.2\nnever_share = 0.25\ndefier_share = 0.1\n"
                  "[person]\nconfounding = 0.4\nwithin_site_correlation = 0.3\n")
    tr = sm.draw(sc, 3)
    shares = np.bincount(tr.complier_type[:, 0], minlength=4) / 200000
    expected = np.array([0.45, 0.2, 0.25, 0.1])
    se = np.sqrt(expected * (1 - expected) / 200000)
    assert np.all(np.abs(shares - expected) < 4 * se), shares
    # potential mediator values: compliers take up only when treated, defiers only when not
    t = tr.treatment
    m = tr.mediators[:, 0]
    ty = tr.complier_type[:, 0]
    assert np.all(m[(ty == 0) & (t == 1)] == 1) and np.all(m[(ty == 0) & (t == 0)] == 0)
    assert np.all(m[(ty == 3) & (t == 1)] == 0) and np.all(m[(ty == 3) & (t == 0)] == 1)
    assert np.all(m[ty == 1] == 1) and np.all(m[ty == 2] == 0)


def test_memory_is_one_replication():
    sc = sm.loads("n_sites = 50\nn_per_site = 200\n[mediators]\ncount = 3\n")
    tr = sm.draw(sc, 0)
    nbytes = sum(getattr(tr, f).nbytes for f in FIELDS)
    # persons x (site, arm, 3 M, Y, 3 effect, 3 compliance, 3 type) x 8 bytes, plus site arrays
    assert nbytes < 10_000 * 15 * 8 + 50 * 20 * 8


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300, unique=True),
                 st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=60)), st.data())
def test_selection_finds_the_same_order_statistic_as_numpy_partition(values, data):
    # distinct keys (as drawn) and heavy ties (which the partition must also handle)
    from simulate.kernels.dgp_nb import kth_smallest

    a = np.array(values)
    k = data.draw(st.integers(0, len(a) - 1))
    work = a.copy()
    assert kth_smallest(work, len(a), k) == np.partition(a, k)[k]
    assert sorted(work) == sorted(a)  # a permutation, nothing lost


def test_a_mediator_that_nothing_moves_is_a_status_not_a_crash():
    from simulate.replicate import run_replications

    sc = sm.loads("n_sites = 10\nn_per_site = 40\n[mediators]\ncount = 2\n[site]\ncompliance_mean = [1.0, 0.0]\n"
                  "compliance_sd = [0.3, 0.0]\n")
    cols = run_replications(sc, 0, 0, 1, range(2))
    status = set(cols["status"])
    assert not any(s.startswith("error") for s in status), status
    m2 = cols["mediator"] == "M2"
    assert np.isnan(cols["sample_compliance_weighted"][m2]).all()  # no one is moved: no such estimand
    # the population first stage of M2 is zero: only sampling noise moves it, so its F is small
    assert (cols["first_stage_f"][m2 & (cols["estimator"] == "2sls")] < 10).all()


def test_the_kernel_cache_is_keyed_on_every_kernel_source_and_old_folders_go(tmp_path):
    import simulate.kernels as kernels

    name = Path(kernels._cache_dir()).name
    assert name.startswith("numba-") and len(name) == len("numba-") + 12
    for d in ("numba-aaaaaaaaaaaa", "numba-bbbbbbbbbbbb", "keep-me"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f.nbi").write_text("x")
    kernels._remove_stale(str(tmp_path / "numba-aaaaaaaaaaaa"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep-me", "numba-aaaaaaaaaaaa"]


def test_kernels_take_the_named_plan_and_a_second_process_loads_them_from_the_cache():
    """KernelPlan is a NamedTuple; Numba caches kernels typed on it, so a new process compiles nothing."""
    from simulate.dgp import KernelPlan
    from simulate.kernels.dgp_nb import draw_trial
    from simulate.kernels.replicate_nb import replicate_batch
    from simulate.replicate import run_replications

    sc = sm.loads(EVERY_DIAL.replace("n_sites = 12", "n_sites = 3"))
    pl = plan(sc)
    assert isinstance(pl, KernelPlan) and pl.kernel() is pl
    sm.draw(sc, 1, pl)  # compiled or loaded here, so the cache now holds both kernels for this signature
    run_replications(sc, 0, 0, 1, range(1))
    assert draw_trial.signatures and replicate_batch.signatures
    code = (
        "import simulate as sm\n"
        "from simulate.kernels.dgp_nb import draw_trial\n"
        "from simulate.kernels.replicate_nb import replicate_batch\n"
        "from simulate.replicate import run_replications\n"
        "from test_dgp import EVERY_DIAL\n"
        "sc = sm.loads(EVERY_DIAL.replace('n_sites = 12', 'n_sites = 3'))\n"
        "sm.draw(sc, 1)\n"
        "run_replications(sc, 0, 0, 1, range(1))\n"
        "for f in (draw_trial, replicate_batch):\n"
        "    print(f.__name__, sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))\n"
    )
    root = Path(__file__).parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "tests"),
                                                       os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    counts = {name: (int(h), int(m)) for name, h, m in (line.split() for line in res.stdout.strip().splitlines())}
    assert counts == {"draw_trial": (1, 0), "replicate_batch": (1, 0)}, res.stdout
