"""Pure-Python xoshiro256++ and ziggurat normals: the reference of simulate/kernels/rng_nb.py.

Written from Blackman & Vigna's reference C code (xoshiro256plusplus.c) and the
ziggurat's description, with Python integers masked to 64 bits, sharing only the
tables (which tests check against their defining equations separately).
"""

import math

from simulate.kernels.rng_nb import FI, KI, WI, ZIGGURAT_R

M64 = (1 << 64) - 1


class Xoshiro:
    def __init__(self, state):
        self.s = [int(x) for x in state]

    def next(self):
        s = self.s

        def rotl(x, k):
            return ((x << k) | (x >> (64 - k))) & M64

        result = (rotl((s[0] + s[3]) & M64, 23) + s[0]) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def double(self):
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)

    def normal(self):
        ki = [int(k) for k in KI]
        while True:
            r = self.next()
            idx = r & 0xFF
            r >>= 8
            sign = r & 1
            rabs = (r >> 1) & 0x000FFFFFFFFFFFFF
            x = rabs * float(WI[idx])
            if sign:
                x = -x
            if rabs < ki[idx]:
                return x
            if idx == 0:
                while True:
                    xx = -(1.0 / ZIGGURAT_R) * math.log1p(-self.double())
                    yy = -math.log1p(-self.double())
                    if yy + yy > xx * xx:
                        return -(ZIGGURAT_R + xx) if (rabs >> 8) & 1 else ZIGGURAT_R + xx
            elif (float(FI[idx - 1]) - float(FI[idx])) * self.double() + float(FI[idx]) < math.exp(-0.5 * x * x):
                return x

    def normals(self, n):
        return [self.normal() for _ in range(n)]

    def doubles(self, n):
        return [self.double() for _ in range(n)]
