"""The Gaussian moment engine of the truth: expectations of products of linear forms.

A linear form is (c, l, alpha): c + l'x + alpha k, where x ~ N(0, S) and k (the
standardized selection index, restricted to an arm's band) is independent of x with raw
moments mom[j].  E[prod_i form_i] expands over the choice, for each factor, of its
constant, its x part or its k part; x parts pair up (Isserlis).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import special

_phi = lambda x: np.exp(-0.5 * np.square(x)) / math.sqrt(2 * math.pi)  # noqa: E731
_Phi = special.ndtr


def _xphi(x):
    """The product x phi(x), which is 0 at x = +-inf (a complier share of 1 puts the cut at infinity)."""
    x = np.asarray(x, float)
    out = np.zeros_like(x)
    f = np.isfinite(x)
    out[f] = x[f] * _phi(x[f])
    return out if out.ndim else float(out)


def _hafnian(C: np.ndarray, idx: list[int]) -> float:
    if not idx:
        return 1.0
    if len(idx) % 2:
        return 0.0
    first, rest = idx[0], idx[1:]
    total = 0.0
    for j, other in enumerate(rest):
        c = C[first, other]
        if c != 0.0:
            total += c * _hafnian(C, rest[:j] + rest[j + 1:])
    return total


def _expect(forms, S: np.ndarray, mom: np.ndarray):
    n = len(forms)
    L = np.array([f[1] for f in forms])
    C = L @ S @ L.T
    total = 0.0
    for assign in itertools.product((0, 1, 2), repeat=n):
        xs = [i for i in range(n) if assign[i] == 1]
        if len(xs) % 2:
            continue
        ks = [i for i in range(n) if assign[i] == 2]
        coef = mom[len(ks)]
        for i in ks:
            coef *= forms[i][2]
        if coef == 0.0:
            continue
        h = _hafnian(C, xs)
        if h == 0.0:
            continue
        term = coef * h
        for i in range(n):
            if assign[i] == 0:
                term = term * forms[i][0]
        total = total + term
    return total


def _band_moments(lo: float, hi: float, order: int = 6) -> np.ndarray:
    """E[k^j | lo < k < hi] for a standard normal k, j = 0..order (recursion on truncated moments)."""
    P = _Phi(hi) - _Phi(lo)
    f = lambda x: 0.0 if not np.isfinite(x) else float(_phi(x))  # noqa: E731
    pw = lambda x, j: 0.0 if not np.isfinite(x) else x ** j  # noqa: E731
    m = np.zeros(order + 1)
    m[0] = P
    if order >= 1:
        m[1] = f(lo) - f(hi)
    for j in range(2, order + 1):
        m[j] = (j - 1) * m[j - 2] + pw(lo, j - 1) * f(lo) - pw(hi, j - 1) * f(hi)
    return m / P
