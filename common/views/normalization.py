"""Normalization presets of the view pipelines and the evaluation transforms.

ImageNet's usual mean/std; CIFAR-10 (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616) and
CIFAR-100 (0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762): the per-channel mean and std over
all training pixels (not the often-quoted average of per-image stds). Detection and the encoder
files read their normalization from here.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

from common.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
NORMALIZATIONS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
}
Norm = Union[str, tuple[Sequence[float], Sequence[float]]]


def norm_label(pipe: Any) -> str | list[list[float]]:
    """A view pipeline's normalization (its `mean` and `std`; the pipeline module imports this one)
    as an encoder file records it: the preset's name, else [mean, std]."""
    pair = (tuple(pipe.mean), tuple(pipe.std))
    return next((name for name, preset in NORMALIZATIONS.items() if tuple(map(tuple, preset)) == pair),
                [list(pair[0]), list(pair[1])])


def resolve_norm(norm: Norm) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A normalization preset name ('imagenet', 'cifar10', 'cifar100') or a (mean, std) pair."""
    if isinstance(norm, str):
        if norm not in NORMALIZATIONS:
            raise ConfigError(f"norm: expected one of {sorted(NORMALIZATIONS)} or (mean, std), got {norm!r}")
        return NORMALIZATIONS[norm]
    try:
        mean, std = (tuple(float(v) for v in part) for part in norm)
    except (TypeError, ValueError):
        raise ConfigError(f"norm: expected a preset name or a (mean, std) pair, got {norm!r}") from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f"norm: expected 3 means and 3 positive stds, got {norm!r}")
    return mean, std
