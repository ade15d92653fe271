"""Numbers with units for people: bit counts as ``3.24 kbit``, durations as ``1m05s``.

One helper for the console (``runtime.results``) and the figures (``plot``), so a
count reads the same in both. Prefixes are decimal (k = 10^3, M = 10^6, G = 10^9,
T = 10^12), as for network rates.
"""
import math

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value, digits=3):
    """``value`` with a decimal prefix and ``digits`` significant digits: ``si(3244) == "3.24 k"``."""
    if not math.isfinite(value):
        return f"{value} "
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale * (1 - 0.5 * 10 ** -digits):  # 999.96 k rounds to 1 M, not to 1e+03 k
            return f"{value / scale:.{digits}g} {prefix}"
    return f"{value:.{digits}g} "


def bits(value, digits=3):
    """A bit count: ``bits(3244) == "3.24 kbit"``, ``bits(5) == "5 bit"``."""
    return f"{si(value, digits)}bit"


def duration(seconds):
    """A duration: ``"42.0s"``, ``"3m05s"``, ``"2h07m"``; ``"?"`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
