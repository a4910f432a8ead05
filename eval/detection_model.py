"""The detector of the detection suite (eval/detection.py, whose docstring gives the protocol and
the choices): an encoder's network split into a C4 backbone and a res5 box head (or, for
torchvision-named ResNets, an FPN), inside torchvision's Faster R-CNN with the reference
protocol's RoI pooling and heads.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from common.errors import ConfigError
from common.views.normalization import resolve_norm
from eval.core.encoders import load_backbone

if TYPE_CHECKING:
    from eval.detection_config import DetectionConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's RGB mean / std (inputs in [0, 1])
IMAGENET_STD = (0.229, 0.224, 0.225)
# Activation statistics of quantizing layers (common/quant.py): not weights, not loaded.
QUANT_STAT_SUFFIXES = (".act_min", ".act_range", ".act_tracked")


def load_encoder_network(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the backbone of an encoder.pt and load its weights (strictly, quantizer
    statistics aside; `eval.core.encoders.load_backbone`). Returns (network, checkpoint metadata)."""
    net, meta = load_backbone(path, "cpu", ignore_suffixes=QUANT_STAT_SUFFIXES)
    return net.train(), meta


def split_network(net: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """(backbone up to "res4", box-head stage "res5"), sharing the network's modules; the
    children keep their names, so their state-dict keys are the checkpoint's."""
    if hasattr(net, "c4_split"):  # a backbone that names its own split (ReActNet-A)
        trunk, head = net.c4_split()
        return _dotted_sequential(trunk), _dotted_sequential(head)
    stages = sorted((name for name, _ in net.named_children() if name.startswith("layer")),
                    key=lambda n: int(n[5:]))
    if not hasattr(net, "conv1") or len(stages) < 2:
        raise ConfigError(f"backbone {type(net).__name__}: no detection split known "
                          "(expected a ResNet with conv1 and layerN stages, or ReActNet-A)")
    trunk = OrderedDict()
    for name in ("conv1", "bn1", "relu", "maxpool", *stages[:-1]):
        if hasattr(net, name):
            trunk[name] = getattr(net, name)
    return nn.Sequential(trunk), nn.Sequential(OrderedDict([(stages[-1], getattr(net, stages[-1]))]))


class _DottedSequential(nn.Sequential):
    """A Sequential whose children may be called "blocks.3": registered under "blocks_3" (module
    names cannot hold dots) and mapped back to the dotted names in `original_state_dict`."""

    def original_state_dict(self) -> dict:
        return {k.replace("_", ".", 1) if k.startswith("blocks_") else k: v
                for k, v in self.state_dict().items()}


def _dotted_sequential(children: OrderedDict) -> _DottedSequential:
    return _DottedSequential(OrderedDict((k.replace(".", "_"), v) for k, v in children.items()))


def module_state_dict(module: nn.Module) -> dict:
    """State dict under the source network's names (see `_DottedSequential`)."""
    return module.original_state_dict() if isinstance(module, _DottedSequential) else module.state_dict()


@torch.no_grad()
def probe_split(trunk: nn.Module, stage: nn.Module, size: int = 64) -> tuple[int, int, int]:
    """(feature stride, trunk channels, head channels), measured by a forward of one size x size
    image in eval mode (no BatchNorm statistics change; the modes are restored)."""
    modes = [m.training for m in (trunk, stage)]
    trunk.eval(), stage.eval()
    features = trunk(torch.zeros(1, 3, size, size))
    head = stage(features)
    trunk.train(modes[0]), stage.train(modes[1])
    return size // features.shape[-1], features.shape[1], head.shape[1]


class C4Backbone(nn.Module):
    """The network up to res4; returns {"0": the single feature map}."""

    def __init__(self, trunk: nn.Module, channels: int):
        super().__init__()
        self.body = trunk
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return OrderedDict([("0", self.body(x))])


class AlignedRoIPool(MultiScaleRoIAlign):
    """RoIAlign of the single C4 map with aligned=True (detectron2's ROIAlignV2), adaptive
    sampling, at the trunk's measured stride. A MultiScaleRoIAlign subclass only because
    torchvision's FasterRCNN accepts no other pooler type."""

    def __init__(self, output_size: int, stride: int):
        super().__init__(["0"], output_size, sampling_ratio=0)
        self.output_size = output_size
        self.spatial_scale = 1.0 / stride

    def forward(self, features: dict, proposals: list, image_shapes: list) -> torch.Tensor:
        return roi_align(features["0"], proposals, self.output_size, self.spatial_scale,
                         sampling_ratio=0, aligned=True)


class Res5BoxHead(nn.Module):
    """res5 on the pooled RoIs, the reference's extra BatchNorm, global average pooling."""

    def __init__(self, stage: nn.Module, channels: int):
        super().__init__()
        self.res5 = stage
        self.norm = nn.BatchNorm2d(channels)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.res5(x)).mean(dim=(2, 3))


def _detector_kwargs(cfg: DetectionConfig, norm: str | list | None = None) -> dict:
    mean, std = resolve_norm(cfg.norm or norm) if (cfg.norm or norm) else (IMAGENET_MEAN, IMAGENET_STD)
    return dict(min_size=tuple(cfg.train_sizes), max_size=cfg.max_size,
                image_mean=list(mean), image_std=list(std),
                rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_train, rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_test,
                rpn_post_nms_top_n_train=cfg.rpn_post_nms_train, rpn_post_nms_top_n_test=cfg.rpn_post_nms_test,
                rpn_batch_size_per_image=cfg.rpn_batch_per_image,
                box_batch_size_per_image=cfg.roi_batch_per_image,
                box_positive_fraction=cfg.roi_positive_fraction, box_score_thresh=cfg.score_thresh,
                box_nms_thresh=cfg.nms_thresh, box_detections_per_img=cfg.detections_per_image)


def build_c4_detector(net: nn.Module, num_classes: int, cfg: DetectionConfig, norm=None) -> FasterRCNN:
    """Faster R-CNN C4 on `net`'s modules (shared, not copied); num_classes without background."""
    trunk, stage = split_network(net)
    stride, trunk_channels, head_channels = probe_split(trunk, stage)
    backbone = C4Backbone(trunk, trunk_channels)
    anchors = AnchorGenerator(sizes=(tuple(cfg.anchor_sizes),), aspect_ratios=(tuple(cfg.aspect_ratios),))
    model = FasterRCNN(backbone, num_classes=None, rpn_anchor_generator=anchors,
                       box_roi_pool=AlignedRoIPool(cfg.pooler_resolution, stride),
                       box_head=Res5BoxHead(stage, head_channels),
                       box_predictor=FastRCNNPredictor(head_channels, num_classes + 1),
                       **_detector_kwargs(cfg, norm))
    model.feature_stride = stride
    return model


def build_fpn_detector(net: nn.Module, num_classes: int, cfg: DetectionConfig, norm=None) -> FasterRCNN:
    """Faster R-CNN with torchvision's FPN on layer1..layer4 of a torchvision-named ResNet."""
    names = [f"layer{i}" for i in range(1, 5)]
    if not all(hasattr(net, n) for n in names):
        raise ConfigError(f"layout=fpn: backbone {type(net).__name__} has no layer1..layer4 "
                          "(expected resnet18/34/50; use layout=c4)")
    stem = nn.Sequential(*(getattr(net, n) for n in ("conv1", "bn1", "relu", "maxpool")))
    channels = [probe_split(nn.Sequential(stem, *(getattr(net, n) for n in names[:i])),
                            getattr(net, names[i]))[2] for i in range(4)]
    backbone = BackboneWithFPN(net, {n: str(i) for i, n in enumerate(names)}, channels, 256,
                               extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(sizes=tuple((s,) for s in cfg.anchor_sizes),
                              aspect_ratios=(tuple(cfg.aspect_ratios),) * len(cfg.anchor_sizes))
    pool = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=pool,
                      box_head=TwoMLPHead(256 * 7 * 7, 1024),
                      box_predictor=FastRCNNPredictor(1024, num_classes + 1), **_detector_kwargs(cfg, norm))


def build_detector(net: nn.Module, num_classes: int, cfg: DetectionConfig, norm=None) -> FasterRCNN:
    """`norm`: the input normalization the encoder trained with (its encoder.pt's), used unless
    the config sets `norm`; neither: ImageNet's."""
    build = build_c4_detector if cfg.layout == "c4" else build_fpn_detector
    return build(net, num_classes, cfg, norm)
