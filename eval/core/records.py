"""Accuracies, and the metrics record every evaluation suite writes.

A suite builds its record with `evaluation_record` (what it measured, then the encoder, the data
and the seconds, the same keys in every suite) and writes it with `write_record`, which adds the
provenance block and writes `metrics.json` (the run contract's name) atomically on the main
process only (under torchrun every rank holds the same record).
Accuracies are fractions in [0, 1]; top-5 is top-min(5, classes).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from common.checkpoint import write_json
from common.distributed import is_main_process
from common.errors import ConfigError
from common.provenance import provenance
from common.runs import METRICS
from eval.core.data import DataSpec


def topk_accuracy(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{"top1": ..., "top5": ...}: fraction of rows whose target is among the k highest scores
    (k capped at the number of classes). Non-finite scores rank lowest."""
    scores = torch.nan_to_num(scores.float(), nan=-math.inf)
    targets = targets.long().view(-1, 1)
    out = {}
    for k in ks:
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices
        out[f"top{k}"] = (top == targets).any(dim=1).float().mean().item()
    return out


def int_labels(targets: torch.Tensor, what: str) -> torch.Tensor:
    if targets.dim() != 1 or targets.dtype.is_floating_point:
        raise ConfigError(f"{what}: expected a single-label data set with int targets "
                          f"(got targets of shape {tuple(targets.shape)})")
    return targets.long()


def sizes(num_classes: int, num_train: int, test_features: torch.Tensor) -> dict[str, int]:
    """The sizes a frozen-feature suite reports: classes, training and test images, feature width."""
    return {"num_classes": int(num_classes), "num_train": int(num_train),
            "num_test": int(test_features.shape[0]), "feature_dim": int(test_features.shape[1])}


def evaluation_record(suite: str, measured: dict, encoder: str | Path, encoder_sha256: str,
                      train: DataSpec, test: DataSpec, started: float) -> dict:
    """{"suite", *measured, "encoder", "encoder_sha256", "data", "seconds"}: the record of one
    evaluation of one encoder (`started`: its time.time() at the start)."""
    return {"suite": suite, **measured, "encoder": str(encoder), "encoder_sha256": encoder_sha256,
            "data": {"train": train.record(), "test": test.record()}, "seconds": round(time.time() - started, 3)}


def write_record(out_dir: str | Path, metrics: dict, device: torch.device | str, params: Any,
                 **provenance_extra: Any) -> dict:
    """Add the provenance block (`params` hashed) and write out_dir/metrics.json atomically on the
    main process; returns the record."""
    metrics["provenance"] = provenance(params, torch.device(device), **provenance_extra)
    if is_main_process():
        write_json(metrics, Path(out_dir) / METRICS)
    return metrics
