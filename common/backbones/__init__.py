"""Backbone registry: every network trunk of the project, built by name.

Contract for every backbone (checked by `build_backbone`):
- an `nn.Module` whose `forward` maps (B, 3, H, W) float images to pooled features (B, feature_dim);
- `feature_dim: int`;
- `default_fp_layers: tuple[str, ...]`: `fnmatch` patterns (case-sensitive, whole-name match)
  over the backbone's own `named_modules()` names, selecting the Conv2d / Linear layers that the
  quantizer keeps in full precision by default (docs/protocols.md sec. 1, "which layers"). A pattern
  may name a layer the backbone does not have (e.g. `fc`, replaced by `nn.Identity`) so that a
  head added under that name stays FP too. `fp_layer_names` applies the patterns.

To add a backbone: write a builder function whose keyword arguments are the backbone's options
(validate values with `ConfigError`) and call `register_backbone(name, builder, description)`
below. Unknown names and arguments are rejected here, from the builder's signature.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Callable, Iterable

import torch.nn as nn

from common.backbones import cifar_resnet as _cifar
from common.backbones.mobilenet import mobilenet_v2
from common.backbones.reactnet import reactnet_a
from common.backbones.resnet import resnet18, resnet34, resnet50
from common.errors import ConfigError

__all__ = ["build_backbone", "list_backbones", "describe_backbones", "register_backbone",
           "fp_layer_names"]


@dataclass(frozen=True)
class BackboneEntry:
    builder: Callable[..., nn.Module]
    description: str


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(name: str, builder: Callable[..., nn.Module], description: str) -> None:
    """Make `builder` available as `build_backbone(name, **kwargs)`."""
    if name in _REGISTRY:
        raise ValueError(f"backbone {name!r} is already registered")
    _REGISTRY[name] = BackboneEntry(builder, description)


def list_backbones() -> list[str]:
    """Registered names, in registration order (ResNets, CIFAR ResNets, MobileNetV2, ReActNet)."""
    return list(_REGISTRY)


def describe_backbones() -> dict[str, str]:
    """Name -> one-line description, for help texts."""
    return {name: _REGISTRY[name].description for name in list_backbones()}


def build_backbone(name: str, **kwargs) -> nn.Module:
    """Build the backbone registered as `name` with its keyword options."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"backbone {name!r} is unknown; expected one of: {', '.join(list_backbones())}")
    signature = inspect.signature(entry.builder)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        accepted = ", ".join(signature.parameters) or "none"
        raise ConfigError(f"backbone {name!r}: bad arguments {sorted(kwargs)} ({err}); accepted: {accepted}") from None
    model = entry.builder(**kwargs)
    _check_contract(name, model)
    return model


def fp_layer_names(model: nn.Module, patterns: Iterable[str] | None = None) -> list[str]:
    """Names of the Conv2d / Linear modules of `model` matching `patterns`
    (default: `model.default_fp_layers`), in `named_modules()` order."""
    patterns = tuple(model.default_fp_layers if patterns is None else patterns)
    return [name for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear))
            and any(fnmatchcase(name, pattern) for pattern in patterns)]


def _check_contract(name: str, model: nn.Module) -> None:
    # A programming error in a newly added builder, not bad user input: plain TypeError.
    feature_dim = getattr(model, "feature_dim", None)
    fp_layers = getattr(model, "default_fp_layers", None)
    if not isinstance(model, nn.Module) or not isinstance(feature_dim, int) or not isinstance(fp_layers, tuple):
        raise TypeError(f"backbone {name!r} breaks the contract: need an nn.Module with "
                        "feature_dim: int and default_fp_layers: tuple[str, ...]")


register_backbone("resnet18", resnet18, "torchvision ResNet-18, 512*width features; options cifar_stem, width")
register_backbone("resnet34", resnet34, "torchvision ResNet-34, 512*width features; options cifar_stem, width")
register_backbone("resnet50", resnet50, "torchvision ResNet-50, 2048*width features; options cifar_stem, width")
register_backbone("cifar_resnet", _cifar.cifar_resnet,
                  "CIFAR ResNet of depth 6n+2 (He et al. Sec. 4.2), 64*width features; options depth, width")
for _depth in _cifar.NAMED_DEPTHS:
    register_backbone(f"cifar_resnet{_depth}", getattr(_cifar, f"cifar_resnet{_depth}"),
                      f"CIFAR ResNet-{_depth} (n={_cifar.blocks_per_stage(_depth)}), 64*width features; option width")
register_backbone("mobilenet_v2", mobilenet_v2,
                  "torchvision MobileNetV2, last_channel features; options small_images (32 px), width_mult")
register_backbone("reactnet_a", reactnet_a,
                  "ReActNet-A binary network (BURN's student), 1024*width features; options width, small_images, fp_head")
