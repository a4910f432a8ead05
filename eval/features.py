"""The VOC07 SVM suite's input: frozen features of a checkpoint on trainval and test.

File (`write_svm_features`): {"trainval": {"features": (N, D) float32, "labels": (N, 20) int8 in
{1, 0, -1}}, "test": {...}, "classes": [...]}: the format `eval.svm` reads, built from `voc07_cls`
(or `synthetic_cls` in the smoke profile) at the layer BURN's SVM reads ("last_stage_pool2",
`eval.core.encoders`), labels from the data set's `voc_labels`. The features come from the
evaluation core's cached extraction (`eval.core.extraction`).

CLI (writes the SVM input file):
    python -m eval.features --encoder runs/.../encoder.pt --dataset voc07_cls --root ROOT \
        --out FEATS.pt [--layer last_stage_pool2] [--cache-dir DIR] [--options '{...}']
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from common.checkpoint import save_checkpoint
from common.config import ArgumentParser, cli_main
from common.errors import ConfigError
from eval.core.cli import add_data_args, add_extractor_args, spec_from_args
from eval.core.data import DataSpec
from eval.core.encoders import LAYERS, resolve_device
from eval.core.extraction import FeatureExtractor, TransformSpec


def svm_labels(dataset: Dataset, targets: torch.Tensor) -> torch.Tensor:
    """(N, C) int8 in {1, 0, -1}: the data set's `voc_labels`, else the extracted targets."""
    labels = getattr(dataset, "voc_labels", None)
    labels = torch.as_tensor(np.asarray(labels)) if labels is not None else targets
    if labels.dim() != 2:
        raise ConfigError(f"data set {getattr(dataset, 'name', '?')}: expected (N, C) VOC-style "
                          "labels in {1, 0, -1} (voc07_cls or synthetic_cls)")
    return labels.to(torch.int8)


def write_svm_features(encoder_path: str | Path, data: str | Path | DataSpec, out_path: str | Path,
                       layer: str = "last_stage_pool2", cache_dir: str | Path | None = None,
                       device: str | torch.device = "cpu", batch_size: int = 256,
                       transform: TransformSpec | None = None) -> Path:
    """Write `eval.svm`'s input file for `encoder_path`.

    `data`: a VOC root (the folder holding VOCdevkit; `voc07_cls` is used) or a DataSpec of a
    multi-label data set (its split is replaced by trainval and test).
    """
    spec = data if isinstance(data, DataSpec) else DataSpec("voc07_cls", str(data), "trainval")
    fx = FeatureExtractor(encoder_path, cache_dir, device, batch_size, transform)
    out: dict[str, Any] = {}
    for split in ("trainval", "test"):
        split_spec = spec.with_split(split)
        dataset = split_spec.build()
        got = fx.features(split_spec, layer, dataset=dataset)
        out[split] = {"features": got.features.float(), "labels": svm_labels(dataset, got.targets)}
        out["classes"] = list(getattr(dataset, "classes", []))
    return save_checkpoint(out, out_path)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.features",
                                     description="Write the VOC07 SVM suite's feature file.")
    add_extractor_args(parser)
    add_data_args(parser, dataset_required=False)
    parser.set_defaults(dataset="voc07_cls")
    parser.add_argument("--layer", default="last_stage_pool2", choices=LAYERS)
    parser.add_argument("--out", required=True, help="the features file to write")
    args = parser.parse_args(argv)
    spec = spec_from_args(args, "trainval")
    path = write_svm_features(args.encoder, spec, args.out, args.layer, args.cache_dir,
                              resolve_device(args.device), args.extract_batch,
                              TransformSpec(args.image_size, args.resize, args.norm))
    print(f"{path}: trainval and test features ({args.layer})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
