"""The VOC all-points interpolated AP (eval/voc_ap.py) against hand computations and sklearn."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from common.errors import ConfigError
from eval.voc_ap import average_precision, mean_ap, per_class_ap


def voc_devkit_ap(scores, labels):
    """Independent reference: the devkit's loop (mrec/mpre padding, backward max), no ties."""
    order = np.argsort(-np.asarray(scores))
    pos = np.asarray(labels)[order] == 1
    tp, fp = np.cumsum(pos), np.cumsum(~pos)
    rec = tp / pos.sum()
    prec = tp / (tp + fp)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))


def test_perfect_ranking_is_one():
    labels = np.array([1, 1, 1, -1, -1, -1, -1])
    scores = np.array([9.0, 8.0, 7.0, 3.0, 2.0, 1.0, 0.0])
    assert average_precision(scores, labels) == 1.0


def test_reversed_ranking_hand_computed():
    # Ranked: N N N P P. Positives at ranks 4, 5: precision 1/4 then 2/5, recall 1/2 then 1.
    # Interpolated envelope: max(1/4, 2/5) = 0.4 at both recall steps -> AP = 0.4.
    labels = np.array([1, 1, -1, -1, -1])
    scores = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert average_precision(scores, labels) == pytest.approx(0.4, abs=1e-12)
    # The non-interpolated step sum (sklearn) is 0.5 * 1/4 + 0.5 * 2/5 = 0.325: they differ here.
    assert average_precision_score(labels == 1, scores) == pytest.approx(0.325, abs=1e-12)


def test_ties_form_one_threshold_hand_computed():
    # Groups by score: {0.9: P} -> P=1, R=1/3; {0.5: P, N, N} -> P=2/4, R=2/3; {0.1: P} -> P=3/5, R=1.
    # Envelope: [1, 0.6, 0.6] -> AP = (1 + 0.6 + 0.6) / 3.
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, -1, -1, 1])
    expected = (1.0 + 0.6 + 0.6) / 3
    assert average_precision(scores, labels) == pytest.approx(expected, abs=1e-12)
    # Order of the tied images does not matter.
    perm = np.array([0, 3, 2, 1, 4])
    assert average_precision(scores[perm], labels[perm]) == pytest.approx(expected, abs=1e-12)
    # sklearn groups ties the same way but does not interpolate: (1 + 0.5 + 0.6) / 3.
    assert average_precision_score(labels == 1, scores) == pytest.approx(2.1 / 3, abs=1e-12)


def test_matches_sklearn_when_precision_is_already_monotone():
    # Ranked P N P N N P N: precision at the positives 1, 2/3, 3/6 -- non-increasing, so the
    # interpolation changes nothing and the two definitions coincide.
    labels = np.array([1, -1, 1, -1, -1, 1, -1])
    scores = -np.arange(7.0)
    ours = average_precision(scores, labels)
    assert ours == pytest.approx((1 + 2 / 3 + 0.5) / 3, abs=1e-12)
    assert ours == pytest.approx(average_precision_score(labels == 1, scores), abs=1e-12)


def test_random_cases_against_devkit_loop_and_sklearn_bound():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 60))
        labels = np.where(rng.random(n) < 0.3, 1, -1)
        labels[0] = 1
        scores = rng.standard_normal(n)
        ours = average_precision(scores, labels)
        assert ours == pytest.approx(voc_devkit_ap(scores, labels), abs=1e-12)
        # Interpolation only raises precision: never below the step sum.
        assert ours >= average_precision_score(labels == 1, scores) - 1e-12


def test_difficult_images_are_ignored():
    rng = np.random.default_rng(1)
    labels = np.array([1, 0, -1, 1, 0, -1, -1, 1, 0, -1])
    scores = rng.standard_normal(10)
    base = average_precision(scores, labels)
    moved = scores.copy()
    moved[labels == 0] = [100.0, -100.0, 5.0]
    assert average_precision(moved, labels) == base
    kept = labels != 0
    assert base == average_precision(scores[kept], labels[kept])


def test_boolean_labels_and_mean_ap():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
    labels = np.array([[True, False], [False, False], [True, True]])
    # Class 0: ranked P N P -> (1 + 2/3) / 2; class 1: its positive is ranked first -> 1.
    expected = np.array([(1 + 2 / 3) / 2, 1.0])
    assert np.allclose(per_class_ap(scores, labels), expected)
    assert mean_ap(scores, labels) == pytest.approx(expected.mean())
    assert np.isnan(average_precision([0.1, 0.2], [-1, 0]))


def test_bad_labels_raise():
    with pytest.raises(ConfigError, match="labels"):
        average_precision([0.1, 0.2], [2, 1])
    with pytest.raises(ConfigError):
        average_precision([0.1, 0.2, 0.3], [1, -1])
