"""Frozen features of a checkpoint, cached per (checkpoint, data set, split, layer, transform).

Every suite that works on frozen features (linear, kNN, VOC07 SVM, transfer, t-SNE) goes
through `FeatureExtractor`, so the same checkpoint is run over the same data once.

    fx = FeatureExtractor("runs/cq/x/encoder.pt", cache_dir="runs/features")
    train = fx.features(DataSpec("cifar10", "../shared/data/cifar10", "train"))
    train.features  # (N, D) float32     train.targets  # (N,) int or (N, 20) VOC labels

Extraction runs the backbone (`eval.core.encoders`) in eval mode under no_grad; under torchrun
the ranks share it (`extract_features`).

Cache: `<cache_dir>/<key>.pt` holding {"features", "targets", "meta"}. The key is the sha256 of a
JSON record of: the sha256 of the encoder file's bytes (so a retrained or edited checkpoint gets
a new key even at the same path), the data set name, resolved root, split, options and `limit`,
the layer and the evaluation transform (size, resize, normalization). Written atomically; read
back with `weights_only=True`. A second request for the same key loads the file and runs no
forward pass. Stale files of old checkpoints are not deleted (they are small; remove the folder
to reclaim space).

Choices where the papers are silent:
- Evaluation transform: centre crop to `image_size`; default: the stored image side when it is
  at most 64 px (CIFAR, synthetic: the identity), else 224 from the 256 px load (the usual
  Resize(256) + CenterCrop(224)). Normalization: the encoder file's "norm" entry if it has one,
  else "cifar10" / "cifar100" for those data sets and the synthetic ones (as params.yaml's smoke
  pretraining views) and ImageNet's mean/std otherwise.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Subset

from common import runs
from common.checkpoint import load_checkpoint, save_checkpoint
from common import distributed
from common.views import ViewPipeline, eval_transform
from eval.core.data import DataSpec
from eval.core.encoders import LayerFeatures, check_layer, file_sha256, load_backbone

CACHE_VERSION = 1  # bump when the extraction itself changes meaning


DEFAULT_NORMS = {"cifar10": "cifar10", "cifar10_jpeg": "cifar10", "cifar100": "cifar100", "synthetic": "cifar10",
                 "synthetic_cls": "cifar10", "synthetic_det": "cifar10"}


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Dataset, transform, batch_size: int = 256,
                     device: str | torch.device = "cpu", num_workers: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D) float32 on CPU, targets) of a frozen model in eval mode, in dataset order.

    ``transform``: a deterministic view pipeline (``common.views.eval_transform``) applied to
    each uint8 batch on ``device``; images are decoded by ``num_workers`` loader processes (pinned
    memory on CUDA). Under torchrun (a process group is up) each rank extracts a contiguous
    share of the data set and every rank returns all of it, gathered in dataset order (eval mode:
    a feature does not depend on its batch). The model's train/eval mode is restored afterwards.
    """
    rank, world = distributed.rank(), distributed.world_size()
    n = len(dataset)
    share = Subset(dataset, range(rank * n // world, (rank + 1) * n // world)) if world > 1 else dataset
    was_training = model.training
    model.eval()
    feats, targets = [], []
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=torch.device(device).type == "cuda")
    try:
        for images, target in loader:
            x = transform(images.to(device, non_blocking=True))
            feats.append(model(x).float().cpu())
            targets.append(torch.as_tensor(target))
    finally:
        model.train(was_training)
    mine = (torch.cat(feats) if feats else torch.empty(0), torch.cat(targets) if targets else torch.empty(0))
    if world == 1:
        return mine
    shares: list = [None] * world
    dist.all_gather_object(shares, mine)
    return torch.cat([f for f, _ in shares if f.numel()]), torch.cat([t for _, t in shares if t.numel()])


class Features(NamedTuple):
    features: torch.Tensor  # (N, D) float32
    targets: torch.Tensor   # (N,) int64, or (N, C) VOC-style labels
    key: str
    from_cache: bool


@dataclass
class TransformSpec:
    """The deterministic evaluation transform (see the module docstring for the defaults)."""

    image_size: int | None = None
    resize: int | None = None
    norm: str | None = None

    def resolve(self, dataset: Dataset, spec: DataSpec, meta) -> dict:
        """Concrete settings; `meta()` (the encoder's metadata) is read only when needed."""
        side = int(dataset[0][0].shape[-1])
        size = self.image_size or (side if side <= 64 else 224)
        norm = self.norm or meta().get("norm") or DEFAULT_NORMS.get(spec.name, "imagenet")
        return {"image_size": int(size), "resize": self.resize, "norm": norm}

    @staticmethod
    def build(resolved: dict) -> ViewPipeline:
        return eval_transform(resolved["image_size"], resolved["resize"], norm=resolved["norm"])


class FeatureExtractor:
    """Frozen features of one encoder file; the backbone is built only when a cache misses."""

    def __init__(self, encoder_path: str | Path, cache_dir: str | Path | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 256,
                 transform: TransformSpec | None = None, num_workers: int = 0):
        self.encoder_path = Path(encoder_path)
        self.num_workers = int(num_workers)
        self.sha256 = file_sha256(self.encoder_path)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.transform = transform or TransformSpec()
        self._backbone: nn.Module | None = None
        self._meta: dict | None = None

    @property
    def backbone(self) -> nn.Module:
        if self._backbone is None:
            self._backbone, self._meta = load_backbone(self.encoder_path, self.device)
        return self._backbone

    @property
    def meta(self) -> dict:
        if self._meta is None:
            self._meta = {k: v for k, v in runs.read_encoder(self.encoder_path).items() if k != "state_dict"}
        return self._meta

    def key_record(self, spec: DataSpec, layer: str, transform: dict) -> dict:
        return {"version": CACHE_VERSION, "encoder_sha256": self.sha256, "data": spec.record(),
                "layer": layer, "transform": transform}

    def cache_key(self, spec: DataSpec, layer: str, transform: dict) -> str:
        text = json.dumps(self.key_record(spec, layer, transform), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def features(self, spec: DataSpec, layer: str = "pooled", dataset: Dataset | None = None) -> Features:
        """Features and targets of `spec` at `layer`, from the cache when it has them."""
        check_layer(layer)
        dataset = dataset if dataset is not None else spec.build()
        transform = self.transform.resolve(dataset, spec, lambda: self.meta)
        key = self.cache_key(spec, layer, transform)
        path = self.cache_dir / f"{key}.pt" if self.cache_dir is not None else None
        if path is not None and path.is_file():
            obj = load_checkpoint(path)
            return Features(obj["features"], obj["targets"], key, True)
        feats, targets = extract_features(LayerFeatures(self.backbone, layer), dataset,
                                          TransformSpec.build(transform), self.batch_size, self.device,
                                          self.num_workers)
        if path is not None and distributed.is_main_process():  # under torchrun every rank holds them all; one writes
            save_checkpoint({"features": feats, "targets": targets,
                             "meta": json.dumps(self.key_record(spec, layer, transform), default=str)}, path)
        return Features(feats, targets, key, False)
