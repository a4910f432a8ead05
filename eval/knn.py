"""Weighted kNN on frozen, cached features: the fast monitor of every checkpoint.

The classifier is `common.features.knn_predict` (Wu et al. 2018): cosine similarity of
L2-normalised features, the k nearest training features vote with weight exp(sim / T).
k and T are parameters (defaults 200 and 0.07: the papers give none). Features come from
`eval.features.FeatureExtractor` (the backbone's pooled output, evaluation transform, cached),
so a kNN run after a linear run on the same checkpoint extracts nothing.

Output: top-1 and top-5 (fractions in [0, 1]; top-5 ranks the classes by their total vote), and
every test image's top-1 prediction (`common.predictions`).

CLI:
    python -m eval.knn --encoder runs/.../encoder.pt --dataset cifar10 --root ROOT --out DIR \
        [--k 200] [--temperature 0.07] [--cache-dir DIR] [--limit N] ...
writes DIR/metrics.json atomically, with provenance.
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

import torch

from common.config import cli_main
from common.errors import ConfigError
from common.features import knn_predict
from eval.features import (DataSpec, FeatureExtractor, add_data_args, add_extractor_args, eval_process,
                           extractor_from_args, spec_from_args)
from common import predictions
from eval.linear import finish, int_labels, topk_accuracy

HEADLINE = "top1"  # the number `dvc exp show` lists per run (eval.pipeline's summary)


def knn_topk(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
             num_classes: int, k: int = 200, temperature: float = 0.07) -> dict[str, float]:
    """{"top1", "top5"} of the weighted kNN classifier."""
    train_y, test_y = int_labels(train_y, "knn"), int_labels(test_y, "knn")
    scores = knn_predict(train_x, train_y, test_x, num_classes, k, temperature)
    return topk_accuracy(scores, test_y)


def run_knn(extractor: FeatureExtractor, train_spec: DataSpec, test_spec: DataSpec, k: int = 200,
            temperature: float = 0.07) -> dict:
    if isinstance(k, bool) or int(k) < 1 or not float(temperature) > 0:
        raise ConfigError(f"--k {k} / --temperature {temperature}: expected k >= 1 and temperature > 0")
    started = time.time()
    train_set, test_set = train_spec.build(), test_spec.build()
    num_classes = int(getattr(train_set, "num_classes", 0))
    train = extractor.features(train_spec, "pooled", dataset=train_set)
    test = extractor.features(test_spec, "pooled", dataset=test_set)
    test_y = int_labels(test.targets, "knn")
    scores = knn_predict(train.features, int_labels(train.targets, "knn"), test.features, num_classes, k, temperature)
    accuracy = {**topk_accuracy(scores, test_y), **predictions.encode(scores, test_y)}
    return {
        "suite": "knn", "mode": "cached", "k": int(k), "temperature": float(temperature), **accuracy,
        "num_classes": num_classes, "num_train": int(train.features.shape[0]),
        "num_test": int(test.features.shape[0]), "feature_dim": int(train.features.shape[1]),
        "encoder": str(extractor.encoder_path), "encoder_sha256": extractor.sha256,
        "data": {"train": train_spec.record(), "test": test_spec.record()},
        "seconds": round(time.time() - started, 3),
    }


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.knn", description=__doc__.splitlines()[0])
    add_extractor_args(parser)
    add_data_args(parser)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.07)
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with eval_process(args):
        extractor = extractor_from_args(args)
        metrics = run_knn(extractor, spec_from_args(args, args.train_split), spec_from_args(args, args.test_split),
                          args.k, args.temperature)
        finish(args, metrics, extractor.device, "eval.knn")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
