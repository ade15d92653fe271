"""Per-bucket statistics for codecs that send one scale per ``bucket`` coordinates.

Bucketing (Alistarh et al., "QSGD", 2017, section 5: buckets of 512) bounds a
quantizer's variance by the bucket size instead of ``d``. ``bucket = 0``
means one bucket for the whole vector. The reductions accumulate in float64
over eight interleaved partial sums in a fixed order: deterministic on every
machine, and eight independent add chains instead of one long one.
"""
import numpy as np
from numba import njit

F32_MAX = float(np.finfo(np.float32).max)
SAFE_MAGNITUDE = 64  # range_shift brings the largest magnitude below 2^64: far from float32's 2^128


def bucket_size(d, bucket):
    """The effective bucket length for ``d`` coordinates (``bucket = 0``: all of them)."""
    return max(1, d) if bucket == 0 else min(bucket, max(1, d))


def bucket_count(d, bucket):
    """Number of buckets that cover ``d`` coordinates."""
    b = bucket_size(d, bucket)
    return -(-d // b)


def check_bucket(bucket):
    """Validate a ``bucket`` hyperparameter (0 or a positive length)."""
    if not isinstance(bucket, (int, np.integer)) or bucket < 0:
        raise ValueError(f"bucket must be 0 (whole vector) or a positive length, got {bucket=}")


@njit(cache=True)
def _sum8(x, square):
    """Sum of |x| (or x^2) in float64 over eight interleaved partial sums."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n = x.shape[0]
    full = n - n % 8
    for i in range(0, full, 8):
        a0 = np.float64(x[i])
        a1 = np.float64(x[i + 1])
        a2 = np.float64(x[i + 2])
        a3 = np.float64(x[i + 3])
        a4 = np.float64(x[i + 4])
        a5 = np.float64(x[i + 5])
        a6 = np.float64(x[i + 6])
        a7 = np.float64(x[i + 7])
        if square:
            s0 += a0 * a0
            s1 += a1 * a1
            s2 += a2 * a2
            s3 += a3 * a3
            s4 += a4 * a4
            s5 += a5 * a5
            s6 += a6 * a6
            s7 += a7 * a7
        else:
            s0 += abs(a0)
            s1 += abs(a1)
            s2 += abs(a2)
            s3 += abs(a3)
            s4 += abs(a4)
            s5 += abs(a5)
            s6 += abs(a6)
            s7 += abs(a7)
    for i in range(full, n):
        a = np.float64(x[i])
        s0 += a * a if square else abs(a)
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True)
def abs_sum(x):
    """``||x||_1`` in float64."""
    return _sum8(x, False)


@njit(cache=True)
def sq_sum(x):
    """``||x||_2^2`` in float64."""
    return _sum8(x, True)


@njit(cache=True)
def bucket_l2(x, b):
    """float64 L2 norm of each ``b``-long bucket of ``x`` (the last may be shorter)."""
    nb = (x.shape[0] + b - 1) // b
    out = np.empty(nb, np.float64)
    for k in range(nb):
        out[k] = np.sqrt(_sum8(x[k * b:(k + 1) * b], True))
    return out


def bucket_l2_f32(x, b):
    """``bucket_l2`` as float32 scales, saturated at the largest float32.

    A bucket of finite entries near float32's maximum has a norm float32 cannot hold; its saturated
    scale is still >= every entry of the bucket, which is all a scale of levels in [0, 1] needs.
    """
    return np.minimum(bucket_l2(x, b), F32_MAX).astype(np.float32)


def range_shift(x):
    """The ``k >= 0`` for which ``x * 2^-k`` has no magnitude above ``2^SAFE_MAGNITUDE`` (0 for most inputs).

    Sums of many entries near float32's maximum (a rotation's, a dot product's) overflow; scaling by a
    power of two first is exact and keeps them in range, and the caller scales its result back.
    """
    if x.shape[0] == 0:
        return 0
    top = float(bucket_maxabs(x, x.shape[0])[0])
    return max(0, np.frexp(top)[1] - SAFE_MAGNITUDE) if np.isfinite(top) else 0


@njit(cache=True)
def bucket_maxabs(x, b):
    """Largest magnitude in each ``b``-long bucket of ``x``, as float32."""
    n = x.shape[0]
    nb = (n + b - 1) // b
    out = np.zeros(nb, np.uint32)
    u = x.view(np.uint32)
    for k in range(nb):
        # a slice indexed from 0: numba then knows the index is non-negative and the loop vectorises
        seg = u[k * b:min((k + 1) * b, n)]
        m = np.uint32(0)
        for i in range(seg.shape[0]):
            m = max(m, seg[i] & np.uint32(0x7FFFFFFF))  # integer order = magnitude order for finite floats
        out[k] = m
    return out.view(np.float32)
