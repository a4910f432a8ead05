"""MobileNetV2 backbone (torchvision), returning pooled features.

The CQ paper trains MobileNetV2 on CIFAR-100 (Table 2) without saying how it adapted the network
to 32 px images. torchvision's model is used as is (`mobilenet_v2(weights=None, width_mult=...)`),
with its module names (`features.0.0` is the stem conv, `features.18` the last 1x1 conv).

Choices made where the paper is silent:
- `classifier` is replaced by `nn.Identity`, so `forward` returns the (B, last_channel)
  average-pooled features; `feature_dim` = torchvision's `last_channel`
  (1280 * max(1, width_mult), rounded to a multiple of 8).
- `small_images=True` (the 32 px variant): the stem conv has stride 1 instead of 2 and the first
  stride-2 inverted-residual stage (t=6, c=24) has stride 1, so the network downsamples 8x
  instead of 32x and a 32x32 image ends at 4x4 before pooling (the usual CIFAR adaptation).
- Full-precision layers by default (docs/protocols.md sec. 1 names them for ResNets only): the
  ImageNet variant keeps the stem conv FP, like an ImageNet ResNet; the 32 px variant follows
  the CIFAR ResNet rule and quantizes every conv of the backbone. In both, a user-added
  `classifier` (the FC) stays FP.
"""
from __future__ import annotations

import torch.nn as nn
from torchvision.models import mobilenet_v2 as tv_mobilenet_v2
from torchvision.models.mobilenetv2 import MobileNetV2

from common.backbones.resnet import check_flag, check_width

IMAGENET_FP_LAYERS = ("features.0.0", "classifier", "classifier.*")
SMALL_IMAGE_FP_LAYERS = ("classifier", "classifier.*")

# torchvision's (and the MobileNetV2 paper's Table 2) stages: expansion t, channels c,
# repeats n, stride s of the first block.
IMAGENET_STAGES = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                   [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def small_image_stages() -> list[list[int]]:
    """The stage table with the first stride-2 stage (t=6, c=24) set to stride 1."""
    stages = [list(row) for row in IMAGENET_STAGES]
    first_strided = next(row for row in stages if row[3] == 2)
    first_strided[3] = 1
    return stages


def mobilenet_v2(small_images: bool = False, width_mult: float = 1.0) -> MobileNetV2:
    """MobileNetV2 returning pooled features of size `model.feature_dim`."""
    small_images = check_flag(small_images, "small_images")
    width_mult = check_width(width_mult, "width_mult")
    stages = small_image_stages() if small_images else IMAGENET_STAGES
    model = tv_mobilenet_v2(weights=None, width_mult=width_mult, inverted_residual_setting=stages)
    if small_images:
        model.features[0][0].stride = (1, 1)  # 3x3 stem, padding 1: keeps 32x32
    model.classifier = nn.Identity()
    model.feature_dim = model.last_channel
    model.default_fp_layers = SMALL_IMAGE_FP_LAYERS if small_images else IMAGENET_FP_LAYERS
    return model
