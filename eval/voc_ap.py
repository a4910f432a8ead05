"""PASCAL VOC average precision for image classification (the VOC07 SVM suite's metric).

AP is the area under the monotone-interpolated precision-recall curve over ALL points, the
VOC2010+ definition (docs/protocols.md section 3), not the 11-point VOC2007 one:

    AP = sum_i (R_i - R_{i-1}) * max_{j >= i} P_j

where (R_i, P_i) are the recall and precision after the i-th ranking threshold (scores in
decreasing order) and R_0 = 0. Taking the maximum precision at any higher recall ("interpolation")
makes the curve monotone non-increasing; the area is then an exact sum of rectangles.

Labels, per image: 1 = the class is present, -1 = absent, 0 = only "difficult" instances. Images
labelled 0 are left out of that class's AP entirely (neither positive nor negative), as the VOC
devkit does. Boolean labels (True = present) are accepted too; they ignore nothing.

Choices where the definition is silent:
- Ties. Images with equal scores form one threshold: the curve gets a single point after the whole
  tied group is counted (as scikit-learn's precision-recall curve does). AP therefore does not
  depend on the input order of tied images. (A stable sort would reward whatever order the caller
  happened to use; the reference scripts used an unstable argsort, so their tie order was arbitrary.)
- No positive image (after dropping the 0s): AP is undefined and returned as NaN; `mean_ap`
  propagates it. The SVM suite refuses such data before it gets here.
"""
from __future__ import annotations

import numpy as np

from common.errors import ConfigError


def _positives_and_kept(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is_positive, kept) masks from labels in {1, 0, -1} or booleans."""
    if labels.dtype == bool:
        return labels, np.ones(labels.shape, dtype=bool)
    values = set(np.unique(labels).tolist())
    if not values <= {1, 0, -1}:
        raise ConfigError(f"average_precision: labels must be in {{1, 0, -1}} or boolean, found {sorted(values)}")
    return labels == 1, labels != 0


def average_precision(scores, labels) -> float:
    """All-points interpolated AP of one class (see the module docstring).

    ``scores``: (N,) real numbers, higher = more confident the class is present.
    ``labels``: (N,) in {1, 0, -1} (0 = difficult, ignored) or boolean.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ConfigError(f"average_precision: {scores.size} scores but {labels.size} labels")
    if not np.all(np.isfinite(scores)):
        raise ConfigError("average_precision: scores must be finite")
    positive, kept = _positives_and_kept(labels)
    scores, positive = scores[kept], positive[kept]
    num_positives = int(positive.sum())
    if num_positives == 0:
        return float("nan")

    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    true_pos = np.cumsum(positive)
    false_pos = np.cumsum(~positive)
    # One point per distinct score: the last position of each tied group.
    group_end = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    true_pos, false_pos = true_pos[group_end], false_pos[group_end]

    recall = true_pos / num_positives
    precision = true_pos / (true_pos + false_pos)
    # Interpolation: precision at recall r becomes the best precision at any recall >= r.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall_step = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_step * envelope))


def per_class_ap(scores, labels) -> np.ndarray:
    """AP of every column: ``scores`` and ``labels`` are (N, C); returns (C,)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ConfigError(f"per_class_ap: expected scores and labels of the same (N, C) shape, "
                          f"got {scores.shape} and {labels.shape}")
    return np.array([average_precision(scores[:, c], labels[:, c]) for c in range(scores.shape[1])])


def mean_ap(scores, labels) -> float:
    """mAP: the unweighted mean over classes of the per-class AP (docs/protocols.md section 3)."""
    return float(np.mean(per_class_ap(scores, labels)))
