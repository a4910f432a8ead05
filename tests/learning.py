"""Shared pieces of the learning tests ("a trained network beats an untrained one").

One run of a tiny network on synthetic data is a noisy measurement: on another CPU, or with
another seed, the same test follows another float trajectory. So a learning test here
- runs its short training on several seeds (all shifted by TEST_SEED_OFFSET, `tests.seeds`),
- evaluates on enough held-out images that the evaluation itself is not the noise,
- asserts on the MEAN margin over its seeds, with a threshold well below the mean margin measured
  over many seeds (each test's comment gives those measurements).
"""
from __future__ import annotations

import statistics
from typing import Callable

from common.data import build_dataset
from eval.core.extraction import extract_features
from eval.knn import knn_accuracy
from common.views import eval_transform
from tests.seeds import OFFSET, seed

SIZE = 16


def synthetic(split: str, num_images: int, data_seed: int, image_size: int = SIZE):
    """The synthetic classification scenes (10 classes) of one seed."""
    return build_dataset("synthetic", None, split, num_images=num_images, image_size=image_size, seed=data_seed)


def knn_top1(backbone, train_set, test_set, size: int = SIZE) -> float:
    """Weighted kNN top-1 (k = 20, T = 0.1) of frozen features, eval mode."""
    view = eval_transform(size, norm="cifar10")
    train_feats, train_labels = extract_features(backbone, train_set, view, 256)
    test_feats, test_labels = extract_features(backbone, test_set, view, 256)
    return knn_accuracy(train_feats, train_labels, test_feats, test_labels, 10, k=20, temperature=0.1)


def mean_margin(name: str, run: Callable[[int], tuple[float, float]], seeds=(0, 1, 2)) -> float:
    """Run `run(seed)` -> (trained, baseline) for each shifted seed; print and return the mean margin.

    The print (`pytest -s -m learning | grep MARGIN`) shows every seed's pair, so the margin at any
    TEST_SEED_OFFSET can be read off."""
    pairs = [run(seed(s)) for s in seeds]
    margins = [t - b for t, b in pairs]
    mean = statistics.fmean(margins)
    per_seed = ", ".join(f"{t:.3f} vs {b:.3f}" for t, b in pairs)
    print(f"MARGIN {name} offset={OFFSET}: mean {mean:+.3f} min {min(margins):+.3f} ({per_seed})")
    return mean
