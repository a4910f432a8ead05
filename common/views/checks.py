"""Argument checks of the view ops: one ConfigError line naming the bad option."""
from __future__ import annotations

import math

from common.errors import ConfigError

def check_prob(name: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name}: expected a probability in [0, 1], got {p!r}")
    return float(p)


def check_nonneg(name: str, value, upper: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= upper:
        raise ConfigError(f"{name}: expected a number in [0, {upper}], got {value!r}")
    return float(value)


def check_range(name: str, value, upper: float = math.inf) -> tuple[float, float]:
    """A pair (low, high) with 0 < low <= high <= upper."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a pair (low, high), got {value!r}") from None
    if not 0.0 < low <= high <= upper:
        raise ConfigError(f"{name}: expected 0 < low <= high <= {upper}, got {value!r}")
    return low, high


def check_size(name: str, size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{name}: expected a positive integer image side, got {size!r}")
    return size


def check_interpolation(interpolation: str) -> str:
    if interpolation not in ("bilinear", "bicubic"):
        raise ConfigError(f"interpolation: expected 'bilinear' or 'bicubic', got {interpolation!r}")
    return interpolation
