"""A fast random-number generator for the kernels: xoshiro256++ with a 256-layer ziggurat.

Why not numpy's ``Generator`` inside the kernels: Numba calls its bit generator
through a function pointer for every number, which costs more than drawing the
numbers themselves.  Here the state is four ``uint64`` in an array and every draw
is inlined.

- xoshiro256++ (Blackman & Vigna 2021, "Scrambled linear pseudorandom number
  generators", ACM TOMS 47(4)): period 2^256 - 1, passes BigCrush.
- Doubles in [0, 1): the top 53 bits, ``(x >> 11) * 2^-53``.
- Standard normals: the ziggurat of Marsaglia & Tsang (2000, J. Stat. Softw. 5(8))
  with 256 layers and 52-bit mantissas, in the form numpy uses (8 bits choose the
  layer, 1 the sign, 52 the abscissa; the tail from r = 3.6541528853610088 by
  Marsaglia's exponential method).  The tables are computed here from r and the
  layer area v = 0.00492867323399.
- Seeding: four words from ``SeedSequence.generate_state(4, uint64)`` (never all
  zero).

``tests/naive_rng.py`` is an independent pure-Python implementation that must
give the same numbers.
"""

import math

import numpy as np
from numba import njit

ZIGGURAT_R = 3.6541528853610088
ZIGGURAT_V = 0.00492867323399


def ziggurat_tables():
    """(ki uint64[256], wi float64[256], fi float64[256]) for 52-bit abscissas."""
    m1 = 2.0 ** 52
    dn = tn = ZIGGURAT_R
    vn = ZIGGURAT_V
    ki = np.zeros(256, np.uint64)
    wi = np.zeros(256)
    fi = np.zeros(256)
    q = vn / math.exp(-0.5 * dn * dn)
    ki[0] = np.uint64((dn / q) * m1)
    ki[1] = 0
    wi[0] = q / m1
    wi[255] = dn / m1
    fi[0] = 1.0
    fi[255] = math.exp(-0.5 * dn * dn)
    for i in range(254, 0, -1):
        dn = math.sqrt(-2.0 * math.log(vn / dn + math.exp(-0.5 * dn * dn)))
        ki[i + 1] = np.uint64((dn / tn) * m1)
        tn = dn
        fi[i] = math.exp(-0.5 * dn * dn)
        wi[i] = dn / m1
    return ki, wi, fi


KI, WI, FI = ziggurat_tables()
_INV_R = 1.0 / ZIGGURAT_R
_MASK52 = np.uint64(0x000FFFFFFFFFFFFF)


def seed_states(seed_sequences) -> np.ndarray:
    """(S, 4) uint64 states, one per SeedSequence."""
    out = np.empty((len(seed_sequences), 4), np.uint64)
    for i, ss in enumerate(seed_sequences):
        st = ss.generate_state(4, np.uint64)
        if not st.any():  # the all-zero state is a fixed point
            st[0] = np.uint64(1)
        out[i] = st
    return out


@njit(inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(inline="always")
def _step(s0, s1, s2, s3):
    """One xoshiro256++ step of a state held in four values: (64 random bits, s0, s1, s2, s3)."""
    result = _rotl(s0 + s3, 23) + s0
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return result, s0, s1, s2, s3


@njit(inline="always")
def _to_double(r):
    """The top 53 bits of r as a uniform on [0, 1)."""
    return float(r >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def _candidate(r):
    """A ziggurat candidate from 64 bits: 8 choose the layer, 1 the sign, 52 the abscissa.

    Returns (layer, 52-bit abscissa, signed candidate x).
    """
    idx = r & np.uint64(0xFF)
    r >>= np.uint64(8)
    rabs = (r >> np.uint64(1)) & _MASK52
    x = float(rabs) * WI[idx]
    if r & np.uint64(1):
        x = -x
    return idx, rabs, x


@njit(cache=True)
def next_uint64(s):
    """xoshiro256++: advance the state row ``s`` (4 uint64) and return 64 random bits."""
    result, s[0], s[1], s[2], s[3] = _step(s[0], s[1], s[2], s[3])
    return result


@njit(cache=True)
def next_double(s):
    """Uniform on [0, 1) with 53 random bits."""
    return _to_double(next_uint64(s))


@njit(cache=True)
def _ziggurat_rest(s, idx, rabs, x):
    """Finish a ziggurat draw whose first candidate fell outside its layer's rectangle (about 1.2%).

    ``idx``, ``rabs`` and ``x`` are that candidate (:func:`_candidate`); what follows is
    exactly what :func:`standard_normal` does next.
    """
    while True:
        if idx == 0:
            while True:
                xx = -_INV_R * math.log1p(-next_double(s))
                yy = -math.log1p(-next_double(s))
                if yy + yy > xx * xx:
                    if (rabs >> np.uint64(8)) & np.uint64(1):
                        return -(ZIGGURAT_R + xx)
                    return ZIGGURAT_R + xx
        elif (FI[idx - 1] - FI[idx]) * next_double(s) + FI[idx] < math.exp(-0.5 * x * x):
            return x
        idx, rabs, x = _candidate(next_uint64(s))
        if rabs < KI[idx]:
            return x


@njit(cache=True)
def standard_normal(s):
    """A standard normal by the 256-layer ziggurat."""
    idx, rabs, x = _candidate(next_uint64(s))
    if rabs < KI[idx]:
        return x
    return _ziggurat_rest(s, idx, rabs, x)


@njit(cache=True)
def standard_gamma(s, shape):
    """A Gamma(shape, 1) variate, shape >= 1 (Marsaglia & Tsang 2000: one normal and one uniform per try)."""
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = standard_normal(s)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = next_double(s)
        if u < 1.0 - 0.0331 * x * x * x * x:
            return d * v
        if u > 0.0 and math.log(u) < 0.5 * x * x + d * (1.0 - v + math.log(v)):
            return d * v


@njit(cache=True)
def fill_normal(s, out):
    """Fill ``out`` (1-d, contiguous) with standard normals from state row ``s``.

    The same numbers as ``out[i] = standard_normal(s)`` in order, about twice as fast
    inside a larger kernel: the state stays in registers on the fast path and is written
    back only around the rare rejections.
    """
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    for i in range(out.shape[0]):
        r, s0, s1, s2, s3 = _step(s0, s1, s2, s3)
        idx, rabs, x = _candidate(r)
        if rabs < KI[idx]:
            out[i] = x
        else:
            s[0], s[1], s[2], s[3] = s0, s1, s2, s3
            out[i] = _ziggurat_rest(s, idx, rabs, x)
            s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3


@njit(cache=True)
def fill_double(s, out):
    """Fill ``out`` (1-d, contiguous) with uniforms on [0, 1): the numbers of ``next_double`` in order."""
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    for i in range(out.shape[0]):
        r, s0, s1, s2, s3 = _step(s0, s1, s2, s3)
        out[i] = _to_double(r)
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3


# ------------------------------------------------------------------ SeedSequence, batched
# numpy's SeedSequence (bit_generator.pyx, after M. E. O'Neill's seed_seq_fe): the same
# constants and steps on 32-bit words, so that one kernel call gives the states of a
# whole batch of replications (numpy's object costs about 20 us per replication).
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = 0xCA01F9DD
_MIX_MULT_R = 0x4973F715
_M32 = 0xFFFFFFFF
_POOL_SIZE = 4


@njit(inline="always")
def _hash(value, h, mult):
    """seed_seq_fe's hashmix of a 32-bit value with the running constant h: (hashed, next h)."""
    value ^= h
    h = (h * mult) & _M32
    value = (value * h) & _M32
    return value ^ (value >> 16), h


@njit(inline="always")
def _mix(x, y):
    """seed_seq_fe's mix of two 32-bit values."""
    r = ((_MIX_MULT_L * x) - (_MIX_MULT_R * y)) & _M32
    return r ^ (r >> 16)


@njit(cache=True)
def _int_words(x, out, k):
    """Append the 32-bit words of x >= 0 (little end first; 0 is one word) to out at k."""
    if x == 0:
        out[k] = 0
        return k + 1
    while x > 0:
        out[k] = x & _M32
        x >>= 32
        k += 1
    return k


@njit(cache=True)
def seed_sequence_words(entropy, spawn_key, n_words):
    """``SeedSequence(entropy, spawn_key=spawn_key).generate_state(n_words, np.uint64)``.

    ``entropy``: the run seed as uint32 words (int64 array, little end first, as numpy
    coerces an int); ``spawn_key``: int64 array of non-negative keys.  Returns uint64 (n_words,).
    """
    ent = np.zeros(entropy.shape[0] + _POOL_SIZE + 2 * spawn_key.shape[0], np.int64)
    k = 0
    for i in range(entropy.shape[0]):
        ent[k] = entropy[i]
        k += 1
    if spawn_key.shape[0] > 0 and k < _POOL_SIZE:
        k = _POOL_SIZE  # the run entropy is padded with zeros to the pool size
    for i in range(spawn_key.shape[0]):
        k = _int_words(spawn_key[i], ent, k)
    # mix the entropy into the pool
    pool = np.zeros(_POOL_SIZE, np.int64)
    h = _INIT_A
    for i in range(_POOL_SIZE):
        pool[i], h = _hash(ent[i] if i < k else 0, h, _MULT_A)
    for i_src in range(_POOL_SIZE):
        for i_dst in range(_POOL_SIZE):
            if i_src != i_dst:
                v, h = _hash(pool[i_src], h, _MULT_A)
                pool[i_dst] = _mix(pool[i_dst], v)
    for i_src in range(_POOL_SIZE, k):
        for i_dst in range(_POOL_SIZE):
            v, h = _hash(ent[i_src], h, _MULT_A)
            pool[i_dst] = _mix(pool[i_dst], v)
    # generate_state: 2 n_words 32-bit words, paired little end first into uint64
    out = np.empty(n_words, np.uint64)
    h = _INIT_B
    lo = 0
    for i in range(2 * n_words):
        v, h = _hash(pool[i % _POOL_SIZE], h, _MULT_B)
        if i % 2 == 0:
            lo = v
        else:
            out[i // 2] = np.uint64(lo) | (np.uint64(v) << np.uint64(32))
    return out


@njit(cache=True)
def replication_states(entropy, cell_key, reps, n_streams):
    """The (R, n_streams, 4) xoshiro states of the replications in reps.

    Replication reps[r] is seeded by
    ``SeedSequence(seed, spawn_key=(cell_key, reps[r])).generate_state(4 n_streams, np.uint64)``,
    with an all-zero stream state (a fixed point) replaced by (1, 0, 0, 0).
    """
    R = reps.shape[0]
    out = np.empty((R, n_streams, 4), np.uint64)
    key = np.empty(2, np.int64)
    key[0] = cell_key
    for r in range(R):
        key[1] = reps[r]
        w = seed_sequence_words(entropy, key, 4 * n_streams)
        for i in range(n_streams):
            zero = True
            for j in range(4):
                out[r, i, j] = w[4 * i + j]
                if w[4 * i + j] != 0:
                    zero = False
            if zero:
                out[r, i, 0] = np.uint64(1)
    return out
