"""Weighted kNN on frozen, cached features: the fast monitor of every checkpoint.

The classifier (`knn_predict`, Wu et al. 2018, the instance-discrimination monitor most SSL code
uses): features are L2-normalised; each test feature takes its k most cosine-similar training
features, each neighbour votes for its class with weight exp(sim / T), and the class with the
largest total vote wins. k and T are parameters (defaults 200 and 0.07: the papers give none).
Features come from `eval.core.extraction.FeatureExtractor` (the backbone's pooled output, the
evaluation transform, cached),
so a kNN run after a linear run on the same checkpoint extracts nothing.

Output: top-1 and top-5 (fractions in [0, 1]; top-5 ranks the classes by their total vote), and
every test image's top-1 prediction (`common.predictions`).

CLI:
    python -m eval.knn --encoder runs/.../encoder.pt --dataset cifar10 --root ROOT --out DIR \
        [--k 200] [--temperature 0.07] [--cache-dir DIR] [--limit N] ...
writes DIR/metrics.json atomically, with provenance.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn.functional as F

from common import predictions
from common.config import ArgumentParser, cli_main, positive_int, positive_number
from common.errors import ConfigError
from eval.core.cli import add_data_args, add_extractor_args, eval_process, extractor_from_args, finish, spec_from_args
from eval.core.data import DataSpec
from eval.core.extraction import FeatureExtractor
from eval.core.records import evaluation_record, int_labels, sizes, topk_accuracy

HEADLINE = "top1"  # the number `dvc exp show` lists per run (eval.pipeline's summary)


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                num_classes: int, k: int = 200, temperature: float = 0.07,
                chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN class scores (N_test, num_classes); see the module docstring."""
    if k < 1 or temperature <= 0:
        raise ConfigError(f"knn: expected k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    train = F.normalize(train_feats.float(), dim=1)
    k = min(k, train.shape[0])
    scores = []
    for start in range(0, test_feats.shape[0], chunk):
        test = F.normalize(test_feats[start:start + chunk].float(), dim=1)
        sim, idx = (test @ train.t()).topk(k, dim=1)
        votes = torch.zeros(test.shape[0], num_classes)
        votes.scatter_add_(1, train_labels[idx].long(), (sim / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes: int,
                 k: int = 200, temperature: float = 0.07) -> float:
    """Top-1 accuracy (in [0, 1]) of the weighted kNN classifier."""
    scores = knn_predict(train_feats, train_labels, test_feats, num_classes, k, temperature)
    return (scores.argmax(1) == test_labels.long()).float().mean().item()


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
    measured = {"mode": "cached", "k": int(k), "temperature": float(temperature), **accuracy,
                **sizes(num_classes, train.features.shape[0], test.features)}
    return evaluation_record("knn", measured, extractor.encoder_path, extractor.sha256, train_spec, test_spec, started)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.knn", description=__doc__.splitlines()[0])
    add_extractor_args(parser)
    add_data_args(parser)
    parser.add_argument("--k", type=positive_int, default=200)
    parser.add_argument("--temperature", type=positive_number, default=0.07)
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
