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


# --------------------------------------------------------------------------------------------
# The claims study, second edition: intervals over seeds and test images, many claims at once
# --------------------------------------------------------------------------------------------

BOOTSTRAP_REPLICATES = 10_000
BOOTSTRAP_SEED = 20261206  # fixed: the interval of record is a pure function of the stored predictions


def hierarchical_bootstrap(a, b, replicates: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED,
                           confidence: float = CONFIDENCE, chunk: int = 500) -> dict:
    """The paired hierarchical bootstrap of mean(a) - mean(b) over seeds and test images.

    `a`, `b`: arrays (seeds, images) of per-image scores (0/1 correctness for an accuracy) of the
    two arms, row s of both from seed s, column i of both the same test image. One replicate
    draws the seeds with replacement (the training runs' variance), then the test images with
    replacement (the test set's sampling variance), the same images for every seed and both arms
    (the pairing), and takes the mean over the drawn seeds of each seed's difference of means on
    the drawn images. Returns the observed difference, the percentile interval, the bootstrap
    standard error and a two-sided p-value of "no difference" (twice the smaller tail share of
    replicates at or beyond zero, with the usual +1 correction; at least 2 / (replicates + 1)).
    A single seed gives the test-image bootstrap alone."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"hierarchical_bootstrap: expected two equal (seeds, images) arrays, got {a.shape}, {b.shape}")
    diff = a - b
    seeds, images = diff.shape
    rng = np.random.default_rng(seed)
    effects = np.empty(replicates)
    for start in range(0, replicates, chunk):
        n = min(chunk, replicates - start)
        rows = rng.integers(0, seeds, size=(n, seeds))
        cols = rng.integers(0, images, size=(n, images))
        per_seed = np.stack([diff[s][cols].mean(axis=1) for s in range(seeds)], axis=1)  # (n, seeds)
        effects[start:start + n] = np.take_along_axis(per_seed, rows, axis=1).mean(axis=1)
    tail = (1 - confidence) / 2
    below, above = (effects <= 0).sum(), (effects >= 0).sum()
    p = min(1.0, 2 * (min(below, above) + 1) / (replicates + 1))
    return {"effect": float(diff.mean()), "low": float(np.quantile(effects, tail)),
            "high": float(np.quantile(effects, 1 - tail)), "se": float(effects.std(ddof=1)), "p": p,
            "replicates": replicates, "seeds": seeds, "images": images}


def holm(pvalues: dict) -> dict:
    """Holm's step-down adjustment (Holm 1979): {name: adjusted p}. Controls the family-wise error
    rate over every claim tested; a claim holds after correction when its adjusted p < 0.05."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m, running, out = len(order), 0.0, {}
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[name]))
        out[name] = running
    return out


def paired_t_power(effect: float, sd: float, n: int, alpha: float = 1 - CONFIDENCE) -> float:
    """Power of the two-sided paired t test with n pairs to detect a true mean difference `effect`
    when the differences have standard deviation `sd` (the noncentral t distribution)."""
    from scipy.stats import nct, t

    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0
    df, shift = n - 1, abs(effect) * math.sqrt(n) / sd
    crit = t.ppf(1 - alpha / 2, df)
    power = float(nct.sf(crit, df, shift) + nct.cdf(-crit, df, shift))
    return power if math.isfinite(power) else 1.0  # scipy's nct gives nan far in the tail (shift >> crit)


def seeds_for_power(effect: float, sd: float, power: float = 0.80, minimum: int = 3, maximum: int = 50) -> int | None:
    """The smallest n >= minimum with paired_t_power >= power, or None when even `maximum` seeds fall short."""
    for n in range(minimum, maximum + 1):
        if paired_t_power(effect, sd, n) >= power:
            return n
    return None
