"""BURN's target network, FP side: the frozen FP feature extractor h (Sec. 3.1), and loading it.

``FrozenTrunk`` wraps h: every parameter has ``requires_grad=False`` (so it is in no optimizer
group), its forward runs under ``torch.no_grad()`` and returns a tensor without a graph, and its
BatchNorm runs in EVAL mode (running statistics, nothing updated: h is bit-identical after
training) whatever the mode of the surrounding model. ``bn_mode="train"`` is the public code's
choice (docs/protocols.md sec. 2: "the teacher trunk's BatchNorm ran in train mode"): batch statistics
in the forward, and, as in that code, the running statistics buffers are updated (the weights
never are). The trainable FP classifier g lives in the method (``burn.method``), not here.

Where h comes from (``load_fp_trunk(path, ...)``), three formats, recognised by their keys:
- this project's ``encoder.pt`` (a pretraining stage run through the engine, e.g.
  ``python -m burn.pretrain --method mocov2 --backbone resnet18``): ``state_dict`` plus the meta
  ``backbone`` / ``backbone_kwargs`` that say how to rebuild the network; a run FOLDER means its
  ``encoder.pt``;
- a MoCo v2 checkpoint: ``state_dict`` with ``module.encoder_q.``-prefixed keys; the prefix is
  stripped, the momentum encoder (``module.encoder_k.``), the queue and the query encoder's MLP
  head (``fc.*``) are dropped;
- a torchvision-format ResNet state dict (flat ``conv1.weight`` ... keys, or the same under
  ``state_dict``); ``fc.*`` (the ImageNet classifier) is dropped and a ``module.`` prefix (DDP)
  is stripped. For the last two the architecture is an argument (default ``resnet50``).
Every other key must match the rebuilt network exactly: a missing or unexpected key or a wrong
shape is a ConfigError naming the file, never a silent skip. Files are read with
``weights_only=True`` (``common.checkpoint.load_checkpoint``); a truncated file is one clear error.

S2-BNN's fixed teacher also needs the MoCo v2 projection head (an MLP to 128-d):
``load_fp_head(path)`` reads it from a MoCo v2 checkpoint (``module.encoder_q.fc.0`` / ``fc.2``)
or from this project's MoCo v2 run (its ``checkpoint.pt``: ``model`` -> ``method.head.net.*``;
a run folder means that file) into ``MLPHead(hidden_bn=False)``, MoCo v2's head shape.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from common import runs
from common.backbones import build_backbone
from common.checkpoint import load_checkpoint
from common.errors import ConfigError
from common.heads import MLPHead

MOCO_PREFIX = "module.encoder_q."
BN_MODES = ("eval", "train")


class FrozenTrunk(nn.Module):
    """A frozen FP feature extractor: no gradients, no optimizer, BN in eval mode by default."""

    def __init__(self, trunk: nn.Module, bn_mode: str = "eval"):
        super().__init__()
        if bn_mode not in BN_MODES:
            raise ConfigError(f"teacher_bn={bn_mode!r}: expected one of {BN_MODES}")
        self.trunk, self.bn_mode = trunk, bn_mode
        self.feature_dim = trunk.feature_dim
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "FrozenTrunk":
        super().train(mode)
        if self.bn_mode == "eval":  # the surrounding model's .train() must not switch h's BN
            self.trunk.eval()
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


def _resolve(path: str | Path, name: str) -> Path:
    path = Path(path)
    return path / name if path.is_dir() else path


def _all_tensors(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in d.items())


def read_trunk_state(path: str | Path) -> tuple[dict, str, dict]:
    """(state dict for the trunk, format name, meta) of a teacher file or run folder."""
    path = _resolve(path, runs.ENCODER)
    obj = load_checkpoint(path)
    if runs.is_encoder(obj):  # this project's encoder.pt
        encoder = runs.check_encoder(obj, f"teacher {path}")
        return dict(encoder["state_dict"]), "project", {k: encoder[k] for k in runs.ENCODER_FIELDS}
    inner = obj.get("state_dict") if isinstance(obj.get("state_dict"), dict) else None
    sd = inner if inner is not None else obj
    if not _all_tensors(sd):
        raise ConfigError(f"teacher {path}: expected a state dict of tensors (torchvision), a MoCo v2 "
                          "checkpoint or this project's encoder.pt")
    if any(k.startswith(MOCO_PREFIX) for k in sd):
        trunk = {k[len(MOCO_PREFIX):]: v for k, v in sd.items() if k.startswith(MOCO_PREFIX)}
        return {k: v for k, v in trunk.items() if not k.startswith("fc.")}, "mocov2", {}
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    return {k: v for k, v in sd.items() if not k.startswith("fc.")}, "torchvision", {}


def load_state_strict(module: nn.Module, state: dict, path: Path | str, what: str) -> None:
    """Load ``state`` into ``module``; any missing/unexpected key or wrong shape is a ConfigError."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ConfigError(f"{what} {path}: keys do not fit {type(module).__name__} "
                          f"({len(missing)} missing, e.g. {missing[:3]}; {len(unexpected)} unexpected, "
                          f"e.g. {unexpected[:3]})")
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise ConfigError(f"{what} {path}: {len(wrong)} tensor(s) of the wrong shape, e.g. {k} "
                          f"{tuple(state[k].shape)} where {tuple(own[k].shape)} is expected")
    module.load_state_dict(state, strict=True)


def load_fp_trunk(path: str | Path, backbone: str = "resnet50", backbone_kwargs: dict | None = None
                  ) -> tuple[nn.Module, dict]:
    """The FP feature extractor h stored at ``path`` and a description of where it came from.

    ``backbone`` / ``backbone_kwargs`` name the architecture of a torchvision or MoCo v2 file;
    this project's encoder.pt names its own in its meta, which is used instead.
    """
    state, kind, meta = read_trunk_state(path)
    if kind == "project":
        backbone, backbone_kwargs = meta["backbone"], meta["backbone_kwargs"]
    if backbone is None:
        raise ConfigError(f"teacher {path}: a {kind} state dict; give the teacher backbone (e.g. resnet50)")
    trunk = build_backbone(backbone, **(backbone_kwargs or {}))
    if any(isinstance(m, nn.Conv2d) and type(m) is not nn.Conv2d for m in trunk.modules()):
        raise ConfigError(f"teacher backbone {backbone!r}: expected a full-precision network")
    load_state_strict(trunk, state, _resolve(path, runs.ENCODER), "teacher")
    return trunk, {"path": str(path), "format": kind, "backbone": backbone,
                   "backbone_kwargs": dict(backbone_kwargs or {})}


def read_head_state(path: str | Path) -> dict:
    """MoCo v2's projection head (``net.0`` / ``net.2`` keys of MLPHead) from a MoCo v2 checkpoint
    or this project's MoCo v2 run (its checkpoint.pt)."""
    path = _resolve(path, runs.CHECKPOINT)
    obj = load_checkpoint(path)
    if isinstance(obj.get(runs.MODEL), dict):  # this project's engine checkpoint
        state = runs.method_state_of(obj, "head")
    elif isinstance(obj.get("state_dict"), dict):  # MoCo v2: fc.0 -> net.0, fc.2 -> net.2
        prefix = MOCO_PREFIX + "fc."
        state = {"net." + k[len(prefix):]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)}
    else:
        state = {}
    if not state:
        raise ConfigError(f"teacher head {path}: no MoCo v2 projection head found (expected "
                          f"'{MOCO_PREFIX}fc.*' keys or this project's MoCo v2 checkpoint.pt)")
    return state


def load_fp_head(path: str | Path) -> MLPHead:
    """MoCo v2's 2-layer head (Linear -> ReLU -> Linear, no BN) with the stored weights, frozen."""
    state = read_head_state(path)
    try:
        (hidden, in_dim), (out_dim, _) = state["net.0.weight"].shape, state["net.2.weight"].shape
    except (KeyError, ValueError):
        raise ConfigError(f"teacher head {path}: expected a 2-layer MLP head (net.0, net.2), "
                          f"found keys {sorted(state)[:4]}") from None
    head = MLPHead(in_dim, hidden, out_dim, hidden_bn=False)
    load_state_strict(head, state, path, "teacher head")
    for p in head.parameters():
        p.requires_grad_(False)
    return head.eval()
