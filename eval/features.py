"""Frozen features of a checkpoint, cached per (checkpoint, data set, split, layer, transform).

Every suite that works on frozen features (linear, kNN, VOC07 SVM, transfer, t-SNE) goes
through `FeatureExtractor`, so the same checkpoint is run over the same data once.

    fx = FeatureExtractor("runs/cq/x/encoder.pt", cache_dir="runs/features")
    train = fx.features(DataSpec("cifar10", "../shared/data/cifar10", "train"))
    train.features  # (N, D) float32     train.targets  # (N,) int or (N, 20) VOC labels

Backbone: rebuilt from the encoder file (`{"backbone": name, "backbone_kwargs": {...},
"state_dict": ...}`, written by the training engine) with `common.backbones.build_backbone`; the
weights load strictly (a missing or unexpected key is a ConfigError). Extraction runs the
backbone in eval mode (BatchNorm uses its running statistics) under no_grad.

Layers:
- "pooled" (default): the backbone's own output, i.e. the globally average-pooled last stage
  (for ReActNet with `fp_head`, after that FP layer; these are the "pre-projection" features);
- "last_stage_pool2": the last stage's feature map average-pooled to 2x2 and flattened, the VOC07
  SVM input of BURN ("average pooling to match the feature vector dimension to be 4,096" from
  ReActNet's 1024-channel last stage: 1024 x 2 x 2). The map comes from `forward_features` where
  a backbone has it (ReActNet-A), from stem..layer4 (torchvision ResNets), stem..layer3 (CIFAR
  ResNets), or `features` (MobileNetV2).

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
- `limit` keeps the first N images of a split, in data set order (the smoke and mini profiles
  use it for speed; it is part of the cache key). CIFAR and synthetic data come in mixed class
  order; image folders are sorted by class, so there a limit keeps only the first classes.

SVM input file (`write_svm_features`): {"trainval": {"features": (N, D) float32, "labels": (N, 20)
int8 in {1, 0, -1}}, "test": {...}, "classes": [...]}: the format `eval.svm` reads, built from
`voc07_cls` (or `synthetic_cls` in the smoke profile), labels from the data set's `voc_labels`.

CLI (writes the SVM input file):
    python -m eval.features --encoder runs/.../encoder.pt --dataset voc07_cls --root ROOT \
        --out FEATS.pt [--layer last_stage_pool2] [--cache-dir DIR] [--options '{...}']
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from torch.utils.data import Dataset

from common.backbones import build_backbone
from common.checkpoint import load_checkpoint, save_checkpoint
from common.config import cli_main
from common.data import build_dataset
from common.errors import ConfigError
from common.features import extract_features, rank_world
from common import runs
from common.binary import set_binary_stage
from common.runs import METRICS, OK, pretraining_metrics
from common.views import ViewPipeline, eval_transform

LAYERS = ("pooled", "last_stage_pool2")
CACHE_VERSION = 1  # bump when the extraction itself changes meaning
DEFAULT_NORMS = {"cifar10": "cifar10", "cifar10_jpeg": "cifar10", "cifar100": "cifar100", "synthetic": "cifar10",
                 "synthetic_cls": "cifar10", "synthetic_det": "cifar10"}


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataSpec:
    """One split of a registered data set: `build_dataset(name, root, split, **options)`."""

    name: str
    root: str | None
    split: str
    options: dict = field(default_factory=dict, hash=False)
    limit: int | None = None

    def with_split(self, split: str) -> "DataSpec":
        return DataSpec(self.name, self.root, split, dict(self.options), self.limit)

    def build(self) -> Dataset:
        dataset = build_dataset(self.name, self.root, self.split, **self.options)
        if self.limit is not None:
            if isinstance(self.limit, bool) or int(self.limit) < 1:
                raise ConfigError(f"--limit {self.limit!r}: expected a positive integer")
            if self.limit < len(dataset):
                dataset = FirstN(dataset, int(self.limit))
        return dataset

    def record(self) -> dict:
        """What identifies the data (cache key, metrics): the root resolved to an absolute path."""
        root = str(Path(self.root).expanduser().resolve()) if self.root is not None else None
        return {"name": self.name, "root": root, "split": self.split,
                "options": dict(sorted(self.options.items())), "limit": self.limit}


class FirstN(Dataset):
    """The first `n` items of a data set, keeping its label attributes."""

    def __init__(self, dataset: Dataset, n: int):
        self.dataset, self.n = dataset, n
        for attr in ("name", "split", "classes", "num_classes", "root"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))
        for attr in ("targets", "voc_labels", "samples"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr)[:n])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.dataset[index]


def parse_options(text: str | dict | None, what: str = "--options") -> dict:
    """A YAML/JSON mapping given on the command line ('{num_images: 256}'); {} for None."""
    if text is None or isinstance(text, dict):
        return dict(text or {})
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if value is None and text.strip() in ("", "{}"):
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {text!r}: expected a mapping such as '{{num_images: 256}}'")
    return value


# --------------------------------------------------------------------------------------------
# Backbones from encoder files
# --------------------------------------------------------------------------------------------

def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (the checkpoint's identity in cache keys and metrics)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--encoder {path}: file not found")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_backbone(encoder_path: str | Path, device: str | torch.device = "cpu",
                  ignore_suffixes: tuple[str, ...] = ()) -> tuple[nn.Module, dict]:
    """(backbone with the file's weights loaded strictly, the file's metadata without weights).

    Every way an encoder file can be unusable is one ConfigError naming the file: not an encoder,
    weights of another network (names or shapes), non-finite weights, or a pretraining run whose
    metrics.json (beside the file) says it did not end ok (e.g. diverged: its features are NaN).
    ``ignore_suffixes``: state-dict keys ending so are dropped first (e.g. quantizer statistics)."""
    where = f"--encoder {encoder_path}"
    check_run_status(encoder_path)
    ckpt = runs.read_encoder(encoder_path)
    kwargs, state = ckpt["backbone_kwargs"], ckpt["state_dict"]
    try:
        model = build_backbone(ckpt["backbone"], **kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: backbone {ckpt['backbone']!r} does not take {kwargs} ({err})") from None
    state = {k: v for k, v in state.items() if not k.endswith(ignore_suffixes)} if ignore_suffixes else state
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of the wrong shape
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise ConfigError(f"{where}: weights do not fit backbone {ckpt['backbone']!r} {kwargs} "
                          f"({lines[0] if lines else 'shape mismatch'})") from None
    if missing or unexpected:
        raise ConfigError(f"{where}: weights do not fit backbone {ckpt['backbone']!r} "
                          f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ConfigError(f"{where}: non-finite weights ({bad[:3]}): the run that wrote it diverged")
    if ckpt.get("binary_stage") is not None:  # a stage-1 run evaluates with FP weights, as it trained
        set_binary_stage(model, ckpt["binary_stage"])
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(device).eval(), meta


def check_run_status(encoder_path: str | Path) -> None:
    """A ConfigError when the metrics.json beside ``encoder_path`` says the run did not end ok."""
    metrics = pretraining_metrics(encoder_path)
    if metrics is None:
        return  # an imported or hand-made encoder file: nothing to check
    status = metrics.get("status")
    if status not in (None, OK):
        raise ConfigError(f"--encoder {encoder_path}: its run ended {status!r} "
                          f"({Path(encoder_path).with_name(METRICS)}); evaluate a run that ended ok")


def last_feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last stage's (B, C, H, W) map, before global pooling (see the module docstring)."""
    if hasattr(backbone, "forward_features"):
        return backbone.forward_features(x)
    if all(hasattr(backbone, n) for n in ("conv1", "bn1", "relu", "layer1", "layer2", "layer3")):
        x = backbone.relu(backbone.bn1(backbone.conv1(x)))
        if hasattr(backbone, "maxpool"):
            x = backbone.maxpool(x)
        x = backbone.layer3(backbone.layer2(backbone.layer1(x)))
        return backbone.layer4(x) if hasattr(backbone, "layer4") else x
    if isinstance(getattr(backbone, "features", None), nn.Module):
        return backbone.features(x)
    raise ConfigError(f"layer 'last_stage_pool2': backbone {type(backbone).__name__} has no "
                      "known last stage (forward_features, layer1..4 or features)")


class LayerFeatures(nn.Module):
    """A backbone read at one of `LAYERS`."""

    def __init__(self, backbone: nn.Module, layer: str = "pooled"):
        super().__init__()
        check_layer(layer)
        self.backbone, self.layer = backbone, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer == "pooled":
            return self.backbone(x)
        fmap = last_feature_map(self.backbone, x)
        return F.adaptive_avg_pool2d(fmap, 2).flatten(1)  # BURN: C x 2 x 2 (4,096 for ReActNet)


def check_layer(layer: str) -> str:
    if layer not in LAYERS:
        raise ConfigError(f"--layer {layer!r}: expected one of {', '.join(LAYERS)}")
    return layer


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ConfigError(f"--device {device!r}: expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no GPU is visible")
    return torch.device(device)


# --------------------------------------------------------------------------------------------
# Extraction with a cache
# --------------------------------------------------------------------------------------------

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
        if path is not None and is_main_process():  # under torchrun every rank holds them all; one writes
            save_checkpoint({"features": feats, "targets": targets,
                             "meta": json.dumps(self.key_record(spec, layer, transform), default=str)}, path)
        return Features(feats, targets, key, False)


# --------------------------------------------------------------------------------------------
# The VOC07 SVM suite's input
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Command-line helpers shared by the eval CLIs
# --------------------------------------------------------------------------------------------

def add_data_args(parser: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    parser.add_argument("--dataset", required=dataset_required, help="a registered data set name")
    parser.add_argument("--root", default=None, help="data root (none for synthetic data)")
    parser.add_argument("--options", default=None, help="data set options as YAML, e.g. '{num_images: 256}'")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N images of each split")


def add_extractor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", required=True, help="encoder.pt written by a pretraining stage")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default: no cache)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--extract-batch", type=int, default=256, help="batch size of the extraction")
    parser.add_argument("--workers", type=int, default=0, help="loader processes decoding the images")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--resize", type=int, default=None)
    parser.add_argument("--norm", default=None, help="imagenet | cifar10 | cifar100")


@contextlib.contextmanager
def eval_process(args: argparse.Namespace):
    """One evaluation CLI's process. Under torchrun (WORLD_SIZE > 1) it joins the process group
    (gloo on CPU, NCCL on GPU; `args.device` becomes this rank's device) for the suite's feature
    extraction, which the ranks share (`common.features.extract_features`), and leaves it at the
    end; rank 0 writes the results. One process: nothing changes."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield
        return
    from common.distributed import setup_runtime

    rt = setup_runtime(args.device)
    args.device = str(rt.device)
    try:
        yield
    finally:
        if rt.started_process_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def is_main_process() -> bool:
    """Rank 0 under torchrun, or a single process: the one that writes files."""
    return rank_world()[0] == 0


def spec_from_args(args: argparse.Namespace, split: str) -> DataSpec:
    return DataSpec(args.dataset, args.root, split, parse_options(args.options), args.limit)


def extractor_from_args(args: argparse.Namespace) -> FeatureExtractor:
    return FeatureExtractor(args.encoder, args.cache_dir, resolve_device(args.device), args.extract_batch,
                            TransformSpec(args.image_size, args.resize, args.norm), args.workers)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.features",
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
