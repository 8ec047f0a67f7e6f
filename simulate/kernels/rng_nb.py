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


@njit(cache=True)
def next_uint64(s):
    """xoshiro256++: advance the state row ``s`` (4 uint64) and return 64 random bits."""
    result = _rotl(s[0] + s[3], 23) + s[0]
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


@njit(cache=True)
def next_double(s):
    """Uniform on [0, 1) with 53 random bits."""
    return float(next_uint64(s) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _ziggurat_rest(s, idx, rabs, x):
    """Finish a ziggurat draw whose first 64 bits fell outside the layer's rectangle (about 1.2%).

    ``idx``, ``rabs`` and ``x`` are the layer, the 52-bit abscissa and the signed candidate of
    that first draw; what follows is exactly what :func:`standard_normal` does next.
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
        r = next_uint64(s)
        idx = r & np.uint64(0xFF)
        r >>= np.uint64(8)
        sign = r & np.uint64(1)
        rabs = (r >> np.uint64(1)) & _MASK52
        x = float(rabs) * WI[idx]
        if sign:
            x = -x
        if rabs < KI[idx]:
            return x


@njit(cache=True)
def standard_normal(s):
    """A standard normal by the 256-layer ziggurat."""
    r = next_uint64(s)
    idx = r & np.uint64(0xFF)
    r >>= np.uint64(8)
    sign = r & np.uint64(1)
    rabs = (r >> np.uint64(1)) & _MASK52
    x = float(rabs) * WI[idx]
    if sign:
        x = -x
    if rabs < KI[idx]:
        return x
    return _ziggurat_rest(s, idx, rabs, x)


@njit(cache=True)
def fill_normal(s, out):
    """Fill ``out`` (1-d, contiguous) with standard normals from state row ``s``.

    The same numbers as ``out[i] = standard_normal(s)`` in order, about twice as fast
    inside a larger kernel: the state stays in registers on the fast path and is written
    back only around the rare rejections.
    """
    s0 = s[0]
    s1 = s[1]
    s2 = s[2]
    s3 = s[3]
    n = out.shape[0]
    for i in range(n):
        r = _rotl(s0 + s3, 23) + s0
        t = s1 << np.uint64(17)
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 45)
        idx = r & np.uint64(0xFF)
        r >>= np.uint64(8)
        sign = r & np.uint64(1)
        rabs = (r >> np.uint64(1)) & _MASK52
        x = float(rabs) * WI[idx]
        if sign:
            x = -x
        if rabs < KI[idx]:
            out[i] = x
        else:
            s[0] = s0
            s[1] = s1
            s[2] = s2
            s[3] = s3
            out[i] = _ziggurat_rest(s, idx, rabs, x)
            s0 = s[0]
            s1 = s[1]
            s2 = s[2]
            s3 = s[3]
    s[0] = s0
    s[1] = s1
    s[2] = s2
    s[3] = s3


@njit(cache=True)
def fill_double(s, out):
    """Fill ``out`` (1-d, contiguous) with uniforms on [0, 1): the numbers of ``next_double`` in order."""
    s0 = s[0]
    s1 = s[1]
    s2 = s[2]
    s3 = s[3]
    for i in range(out.shape[0]):
        r = _rotl(s0 + s3, 23) + s0
        t = s1 << np.uint64(17)
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 45)
        out[i] = float(r >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    s[0] = s0
    s[1] = s1
    s[2] = s2
    s[3] = s3
