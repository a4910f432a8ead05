"""The base methods by name: `build_method(name, backbone, views, **hyperparameters)`.

| name         | class                                        | needs            |
|--------------|----------------------------------------------|------------------|
| `simclr`     | `common.methods.simclr.SimCLR`               |                  |
| `byol`       | `common.methods.byol.BYOL`                   |                  |
| `mocov2`     | `common.methods.mocov2.MoCoV2`               |                  |
| `swav`       | `common.methods.swav.SwAV`                   |                  |
| `supervised` | `common.methods.supervised.Supervised`       | `num_classes=`   |

Hyperparameters are the constructor's keyword arguments (the papers' defaults when left out);
an unknown name or argument is a ConfigError naming what is accepted. CQ and BURN build their
own methods in cq/ and burn/ (common must not import them).
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn

from common.errors import ConfigError
from common.methods.base import Method
from common.methods.byol import BYOL
from common.methods.mocov2 import MoCoV2
from common.methods.simclr import SimCLR
from common.methods.supervised import Supervised
from common.methods.swav import SwAV

METHODS: dict[str, Callable[..., Method]] = {
    "simclr": SimCLR,
    "byol": BYOL,
    "mocov2": MoCoV2,
    "swav": SwAV,
    "supervised": Supervised,
}


def list_methods() -> list[str]:
    """The registered names, sorted."""
    return sorted(METHODS)


def build_method(name: str, backbone: nn.Module, views: tuple, **kw) -> Method:
    """The method `name` on `backbone` with the (view 1, view 2) pipelines `views`."""
    if name not in METHODS:
        raise ConfigError(f"method {name!r}: expected one of {', '.join(list_methods())}")
    cls = METHODS[name]
    signature = inspect.signature(cls)
    try:
        signature.bind(backbone, views, **kw)
    except TypeError as err:
        accepted = sorted(set(signature.parameters) - {"backbone", "views"})
        raise ConfigError(f"method {name} arguments {sorted(kw)}: {err}; accepted: {accepted}") from None
    if not isinstance(views, (tuple, list)) or len(views) != 2:
        raise ConfigError(f"views: expected a (view 1, view 2) pair of pipelines, got {type(views).__name__}")
    return cls(backbone, tuple(views), **kw)
