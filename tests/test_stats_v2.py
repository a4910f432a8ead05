"""reports.stats for the second claims study: the hierarchical bootstrap, Holm, the power calculation."""
import numpy as np
import pytest

from reports.stats import hierarchical_bootstrap, holm, paired_t_power, seeds_for_power


def correctness(rate, seeds, images, rng):
    return (rng.random((seeds, images)) < rate).astype(np.uint8)


def test_bootstrap_interval_matches_the_binomial_error_of_one_seed():
    """One seed, two independent arms: the test-image bootstrap's standard error is the binomial
    one of a difference of two proportions."""
    rng = np.random.default_rng(0)
    a, b = correctness(0.60, 1, 10_000, rng), correctness(0.55, 1, 10_000, rng)
    out = hierarchical_bootstrap(a, b, replicates=2_000)
    binomial = np.sqrt(0.6 * 0.4 / 10_000 + 0.55 * 0.45 / 10_000)
    assert out["se"] == pytest.approx(binomial, rel=0.1)
    assert out["low"] < out["effect"] < out["high"] and out["low"] > 0 and out["p"] < 0.01


def test_pairing_shrinks_the_interval_when_the_arms_agree_on_most_images():
    rng = np.random.default_rng(1)
    a = correctness(0.6, 3, 5_000, rng)
    b = a.copy()
    flip = rng.random(a.shape) < 0.05  # the arms differ on 5 % of the images
    b[flip] = 1 - b[flip]
    paired = hierarchical_bootstrap(a, b, replicates=1_000)
    shuffled = hierarchical_bootstrap(a, b[:, rng.permutation(b.shape[1])], replicates=1_000)  # pairing broken
    assert paired["se"] < 0.6 * shuffled["se"]


def test_seed_variance_widens_the_interval():
    """Three seeds whose accuracies differ by several points: the interval covers that spread,
    far wider than the test images alone would give."""
    rng = np.random.default_rng(2)
    a = np.stack([correctness(r, 1, 10_000, rng)[0] for r in (0.50, 0.56, 0.62)])
    b = correctness(0.56, 3, 10_000, rng)
    out = hierarchical_bootstrap(a, b, replicates=2_000)
    images_only = hierarchical_bootstrap(a.reshape(1, -1), b.reshape(1, -1), replicates=2_000)
    assert out["high"] - out["low"] > 4 * (images_only["high"] - images_only["low"])
    assert out["low"] < 0 < out["high"] and out["p"] > 0.05


def test_no_difference_is_not_significant_and_the_result_is_reproducible():
    rng = np.random.default_rng(3)
    a = correctness(0.5, 3, 2_000, rng)
    b = correctness(0.5, 3, 2_000, rng)
    one, two = hierarchical_bootstrap(a, b, replicates=500), hierarchical_bootstrap(a, b, replicates=500)
    assert one == two
    with pytest.raises(ValueError, match="equal"):
        hierarchical_bootstrap(a, b[:, :10])


def test_holm_by_hand():
    adjusted = holm({"x": 0.01, "y": 0.04, "z": 0.03, "w": 0.5})
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1, then made monotone
    assert adjusted == pytest.approx({"x": 0.04, "z": 0.09, "y": 0.09, "w": 0.5})
    assert holm({}) == {}


def test_power_of_the_paired_t_test():
    # a textbook value: effect size 1 (effect = sd), n = 10, two-sided 5 %: power about 0.80
    assert paired_t_power(1.0, 1.0, 10) == pytest.approx(0.803, abs=0.01)
    assert seeds_for_power(1.0, 1.0) == 10
    assert seeds_for_power(5.0, 1.0) == 3  # never fewer than 3
    assert seeds_for_power(0.1, 1.0, maximum=20) is None
