"""Deterministic vector kernels shared by server and workers (fixed summation order)."""
import numpy as np
from numba import njit


@njit(cache=True)
def axpy(acc, w, x):
    """``acc += w * x`` in float32, coordinate by coordinate."""
    w = np.float32(w)
    for i in range(acc.shape[0]):
        acc[i] += w * x[i]


@njit(cache=True)
def sqdist(a, b):
    """``||a - b||^2`` accumulated in float64 in index order."""
    s = 0.0
    for i in range(a.shape[0]):
        t = np.float64(a[i]) - np.float64(b[i])
        s += t * t
    return s


@njit(cache=True)
def all_finite(x):
    """Whether every entry of ``x`` is finite: one read, no ``d``-sized temporary (unlike ``np.isfinite``)."""
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return False
    return True
