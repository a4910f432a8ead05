"""The base methods by name, the one table the pretraining CLIs read:
`build_method(name, backbone, views, **hyperparameters)`.

| name         | class                                   | defaults over the class's    | CQ |
|--------------|-----------------------------------------|------------------------------|----|
| `simclr`     | `common.methods.simclr.SimCLR`          |                              | yes |
| `simclrv2`   | `common.methods.simclr.SimCLR`          | `num_layers=3` (3-layer head) | yes |
| `byol`       | `common.methods.byol.BYOL`              |                              | yes |
| `mocov2`     | `common.methods.mocov2.MoCoV2`          |                              |    |
| `mocov2_tuned` | `common.methods.mocov2.MoCoV2`        | (S2-BNN's settings for binary networks, set in the profile) | |
| `infomin`    | `common.methods.mocov2.MoCoV2`          | (its views: the InfoMin recipe, set in the profile) | |
| `swav`       | `common.methods.swav.SwAV`              |                              |    |
| `supervised` | `common.methods.supervised.Supervised`  | (needs `num_classes=`)       |    |

`cq.pretrain` offers the methods that implement Contrastive Quant's NCE interface
(`Method.supports_cq`); `burn.pretrain` offers all of them as binary-network baselines. Adding a
method: its module under common/methods/, one line here, its settings in the profile (README
"Adding a method"). Hyperparameters are the constructor's keyword arguments (the papers' defaults
when left out); an unknown name or argument is a ConfigError naming what is accepted. CQ and BURN
themselves are built in cq/ and burn/ (common must not import them).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch.nn as nn

from common.errors import ConfigError
from common.methods.base import Method
from common.methods.byol import BYOL
from common.methods.mocov2 import MoCoV2
from common.methods.simclr import SimCLR
from common.methods.supervised import Supervised
from common.methods.swav import SwAV

@dataclass(frozen=True)
class Entry:
    cls: type[Method]
    defaults: dict = field(default_factory=dict)  # laid under the profile's hyperparameters


METHODS: dict[str, Entry] = {
    "simclr": Entry(SimCLR),
    "simclrv2": Entry(SimCLR, {"num_layers": 3}),
    "byol": Entry(BYOL),
    "mocov2": Entry(MoCoV2),
    "mocov2_tuned": Entry(MoCoV2),
    "infomin": Entry(MoCoV2),
    "swav": Entry(SwAV),
    "supervised": Entry(Supervised),
}


def list_methods() -> list[str]:
    """The registered names, sorted."""
    return sorted(METHODS)


def cq_methods() -> list[str]:
    """The registered methods Contrastive Quant can run on (they implement its NCE interface)."""
    return [name for name in list_methods() if METHODS[name].cls.supports_cq()]


def build_method(name: str, backbone: nn.Module, views: tuple, **kw) -> Method:
    """The method `name` on `backbone` with the (view 1, view 2) pipelines `views`."""
    if name not in METHODS:
        raise ConfigError(f"method {name!r}: expected one of {', '.join(list_methods())}")
    cls, kw = METHODS[name].cls, {**METHODS[name].defaults, **kw}
    signature = inspect.signature(cls)
    try:
        signature.bind(backbone, views, **kw)
    except TypeError as err:
        accepted = sorted(set(signature.parameters) - {"backbone", "views"})
        raise ConfigError(f"method {name} arguments {sorted(kw)}: {err}; accepted: {accepted}") from None
    if not isinstance(views, (tuple, list)) or len(views) != 2:
        raise ConfigError(f"views: expected a (view 1, view 2) pair of pipelines, got {type(views).__name__}")
    _check_kinds(name, signature, kw)
    return cls(backbone, tuple(views), **kw)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_kinds(name: str, signature: inspect.Signature, kw: dict) -> None:
    """An argument whose default is a number, a flag or a name takes a value of that kind (a
    setting of another kind would fail later, at the first step, or silently)."""
    for arg, value in kw.items():
        parameter = signature.parameters[arg]
        default = parameter.default
        if value is None and "None" in str(parameter.annotation):  # `int | None`: null allowed
            continue
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, float):
            ok, kind = _is_number(value), "a number"
        elif _is_number(default):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a name"
        else:
            continue
        if not ok:
            raise ConfigError(f"method {name} argument {arg}: expected {kind}, got {value!r}")
