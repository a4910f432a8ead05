"""Means over seeds and their 95 % t intervals: the statistics every measured cell and claim uses."""
from __future__ import annotations

import math
from typing import Sequence

CONFIDENCE = 0.95


def t_quantile(q: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float | None, float | None]:
    """(mean, sample std, half-width of the t interval of the mean); std and half are None for one value."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval: no values")
    mean = sum(values) / n
    if n == 1:
        return mean, None, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, sd, t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
