"""Backbones from encoder files, and the layers the suites read them at.

Backbone: rebuilt from the encoder file (`{"backbone": name, "backbone_kwargs": {...},
"state_dict": ...}`, written by the training engine) with `common.backbones.build_backbone`; the
weights load strictly (a missing or unexpected key is a ConfigError). The suites run it in eval
mode (BatchNorm uses its running statistics).

Layers:
- "pooled" (default): the backbone's own output, i.e. the globally average-pooled last stage
  (for ReActNet with `fp_head`, after that FP layer; these are the "pre-projection" features);
- "last_stage_pool2": the last stage's feature map average-pooled to 2x2 and flattened, the VOC07
  SVM input of BURN ("average pooling to match the feature vector dimension to be 4,096" from
  ReActNet's 1024-channel last stage: 1024 x 2 x 2). The map comes from `forward_features` where
  a backbone has it (ReActNet-A), from stem..layer4 (torchvision ResNets), stem..layer3 (CIFAR
  ResNets), or `features` (MobileNetV2).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import runs
from common.backbones import build_backbone
from common.binary import set_binary_stage
from common.errors import ConfigError
from common.runs import METRICS, OK, pretraining_metrics

LAYERS = ("pooled", "last_stage_pool2")


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
