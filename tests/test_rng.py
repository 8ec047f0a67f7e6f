"""The kernels' generator: xoshiro256++ and ziggurat normals."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from simulate.kernels import rng_nb as R

sys.path.insert(0, str(Path(__file__).parent))
from naive_rng import Xoshiro  # noqa: E402


def _state(seed):
    return R.seed_states([np.random.SeedSequence(seed)])[0]


def test_xoshiro_matches_the_reference_algorithm():
    s = _state(1)
    ref = Xoshiro(s.copy())
    got = [int(R.next_uint64(s)) for _ in range(1000)]
    assert got == [ref.next() for _ in range(1000)]


def test_xoshiro_matches_the_published_c_output_for_a_known_state():
    # state (1, 2, 3, 4): first outputs of xoshiro256++ from the reference C code
    s = np.array([1, 2, 3, 4], np.uint64)
    assert [int(R.next_uint64(s)) for _ in range(3)] == [41943041, 58720359, 3588806011781223]


@pytest.mark.parametrize("seed", [0, 7, 2**40])
def test_normals_match_the_pure_python_reference(seed):
    s = _state(seed)
    ref = Xoshiro(s.copy())
    a = np.empty(50_000)
    R.fill_normal(s, a)
    assert np.array_equal(a, np.array(ref.normals(50_000)))
    assert np.array_equal(s, np.array(ref.s, np.uint64))  # the same numbers consumed


def test_ziggurat_tables_satisfy_their_defining_equations():
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731
    m1 = 2.0 ** 52
    x = R.WI * m1  # right edges x_i of the layers
    # every layer i >= 1 has area x_i (f(x_{i-1}) - f(x_i)) = v, as has the base strip with its tail
    areas = [x[i] * (R.FI[i - 1] - R.FI[i]) for i in range(1, 255)]
    np.testing.assert_allclose(areas, R.ZIGGURAT_V, rtol=1e-9)
    base = R.ZIGGURAT_R * f(R.ZIGGURAT_R) + math.sqrt(math.pi / 2) * math.erfc(R.ZIGGURAT_R / math.sqrt(2))
    assert base == pytest.approx(R.ZIGGURAT_V, rel=1e-9)
    np.testing.assert_allclose(R.FI[1:], [f(v) for v in x[1:]], rtol=1e-12, atol=0)
    assert R.FI[0] == 1.0 and x[0] == pytest.approx(R.ZIGGURAT_V / f(R.ZIGGURAT_R))  # the base strip's width


def test_normals_are_standard_normal():
    s = _state(2026)
    a = np.empty(2_000_000)
    R.fill_normal(s, a)
    n = len(a)
    assert abs(a.mean()) < 4 / math.sqrt(n)
    assert abs(a.var() - 1) < 4 * math.sqrt(2 / n)
    assert abs(stats.skew(a)) < 4 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(a)) < 4 * math.sqrt(24 / n)
    assert stats.kstest(a, "norm").pvalue > 1e-4
    # the tail beyond r (idx 0 fallback) has the right mass
    tail = np.mean(np.abs(a) > R.ZIGGURAT_R)
    p = 2 * stats.norm.sf(R.ZIGGURAT_R)
    assert abs(tail - p) < 4 * math.sqrt(p / n)


def test_doubles_are_uniform_in_the_unit_interval():
    s = _state(3)
    u = np.array([R.next_double(s) for _ in range(200_000)])
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-4


def test_seeding_is_pure_and_never_all_zero():
    a = R.seed_states([np.random.SeedSequence(5, spawn_key=(1, 2))])
    b = R.seed_states([np.random.SeedSequence(5, spawn_key=(1, 2))])
    c = R.seed_states([np.random.SeedSequence(5, spawn_key=(1, 3))])
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.uint64 and a.any()


@pytest.mark.parametrize("seed", [3, 2**33])
def test_one_normal_at_a_time_equals_a_filled_block(seed):
    # the kernels use both: standard_normal for scattered draws, fill_normal for blocks
    s, s2 = _state(seed), _state(seed)
    a = np.empty(20_000)
    R.fill_normal(s, a)
    b = np.array([R.standard_normal(s2) for _ in range(20_000)])
    assert np.array_equal(a, b) and np.array_equal(s, s2)


def test_a_filled_block_of_uniforms_equals_one_at_a_time():
    s, s2 = _state(11), _state(11)
    a = np.empty(5_000)
    R.fill_double(s, a)
    assert np.array_equal(a, [R.next_double(s2) for _ in range(5_000)]) and np.array_equal(s, s2)
    assert a.min() >= 0.0 and a.max() < 1.0


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.integers(0, 2**32 + 5), st.integers(0, 2**300)), st.integers(0, 2**62),
       st.lists(st.integers(0, 2**62), max_size=5))
def test_batched_seed_sequence_equals_numpy_seed_sequence(seed, cell_key, reps):
    from simulate.dgp import streams
    from simulate.replicate import replication_seed, replication_states

    got = replication_states(seed, cell_key, reps)
    want = np.array([streams(replication_seed(seed, cell_key, r)) for r in reps], np.uint64).reshape(-1, 6, 4)
    assert got.dtype == np.uint64 and np.array_equal(got, want)
