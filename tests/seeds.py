"""The seeds of the tests, shifted by the environment variable TEST_SEED_OFFSET (default 0).

A learning test ("trained beats random", "the loss falls", "AP rises") must hold on any float
trajectory, not only on the one a seed gives on one CPU. Every seed such a test uses (weights,
synthetic data, data order, augmentation) goes through `seed()`, so

    TEST_SEED_OFFSET=7 python -m pytest -m learning

runs every learning test on other initialisations, other synthetic images and another data order.
The suite-wide `torch.manual_seed` of conftest.py is shifted too. Tests of exact values (a loss
against a hand computation, same seed twice gives the same weights) do not depend on the offset.
"""
from __future__ import annotations

import os


def _offset() -> int:
    raw = os.environ.get("TEST_SEED_OFFSET", "0").strip() or "0"
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"TEST_SEED_OFFSET={raw!r}: expected an integer (e.g. 0, 1, 7)") from None
    if value < 0:
        raise SystemExit(f"TEST_SEED_OFFSET={raw!r}: expected an integer >= 0")
    return value


OFFSET = _offset()


def seed(base: int = 0) -> int:
    """The seed a test spells `base`, shifted by TEST_SEED_OFFSET."""
    return base + OFFSET

