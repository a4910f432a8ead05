"""The dataset registry: one name per data set, built by `build_dataset(name, root, split, **kw)`.

| name            | item: (image, target)                            | root                        |
|-----------------|--------------------------------------------------|-----------------------------|
| `synthetic`     | uint8 (3, S, S), int                             | none (generated)            |
| `synthetic_cls` | uint8 (3, S, S), float (20,) in {1, 0, -1}       | none                        |
| `synthetic_det` | uint8 (3, S, S), {boxes, labels, difficult, ...} | none                        |
| `cifar10`       | uint8 (3, 32, 32), int                           | holds `cifar-10-batches-py` |
| `cifar10_jpeg`  | uint8 (3, 32, 32), int                           | holds `cifar10-jpeg.zip`    |
| `cifar100`      | uint8 (3, 32, 32), int                           | holds `cifar-100-python`    |
| `imagefolder`   | uint8 (3, L, L), int; L = load_size (256)        | `<split>/<class>/<image>`   |
| `voc07_cls`     | uint8 (3, L, L), float (20,) in {1, 0, -1}       | holds `VOCdevkit`           |
| `voc_det`       | uint8 (3, H, W) original size, {boxes, ...}      | holds `VOCdevkit`           |

Classification images have one size per data set so that batches stack; random augmentation is
not done here but on whole batches by the view pipeline (the SSL crops are drawn on the device
from the stored square). Every data set exposes `num_classes`, `classes`, `split`, `name` and,
for classification, `targets`. Nothing is ever downloaded: a missing or incomplete root raises
`ConfigError`, and a partial CIFAR copy loads with a `PartialDatasetWarning`.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from common.data.cifar import CIFAR10, CIFAR100, PartialDatasetWarning
from common.data.cifar_jpeg import CIFAR10JPEG
from common.data.folder import ImageFolder
from common.data.synthetic import SyntheticClassification, SyntheticDetection, SyntheticMultiLabel
from common.data.voc import VOC_CLASSES, VOCClassification, VOCDetection
from common.errors import ConfigError

_REGISTRY: dict[str, Callable[..., Dataset]] = {
    "synthetic": SyntheticClassification,
    "synthetic_cls": SyntheticMultiLabel,
    "synthetic_det": SyntheticDetection,
    "cifar10": CIFAR10,
    "cifar10_jpeg": CIFAR10JPEG,
    "cifar100": CIFAR100,
    "imagefolder": ImageFolder,
    "voc07_cls": VOCClassification,
    "voc_det": VOCDetection,
}


def list_datasets() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def register_dataset(name: str, builder: Callable[..., Dataset]) -> None:
    """Add a data set: `builder(root, split, **kwargs)` must return a Dataset."""
    if name in _REGISTRY:
        raise ConfigError(f"dataset name {name!r}: already registered")
    _REGISTRY[name] = builder


def build_dataset(name: str, root: str | Path | None, split: str, **kwargs) -> Dataset:
    """Build the registered data set `name` from `root` (None for generated ones) and `split`."""
    if name not in _REGISTRY:
        raise ConfigError(f"dataset {name!r}: expected one of {', '.join(list_datasets())}")
    builder = _REGISTRY[name]
    try:
        inspect.signature(builder).bind(root, split, **kwargs)
    except TypeError as err:
        raise ConfigError(f"dataset {name} arguments {sorted(kwargs)}: {err}") from err
    return builder(root, split, **kwargs)


__all__ = [
    "build_dataset", "list_datasets", "register_dataset", "PartialDatasetWarning", "VOC_CLASSES",
    "CIFAR10", "CIFAR10JPEG", "CIFAR100", "ImageFolder", "VOCClassification", "VOCDetection",
    "SyntheticClassification", "SyntheticMultiLabel", "SyntheticDetection",
]
