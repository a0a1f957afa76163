"""What bench.py and scale.py share (standard library only).

Imports point one way: bench.py and scale.py import this module, bench.py imports
scale.py (for the report's scale sections), and nothing here imports either of them.
"""

import math


def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return None
    if n % 2:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) / 2


def p95(xs):
    """Nearest-rank 95th percentile: the smallest sample >= 95% of samples."""
    s = sorted(xs)
    if not s:
        return None
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
