"""ImageNet-style ResNet-18/34/50 backbones (torchvision), returning pooled features.

The CQ paper trains ResNet-18/34 on ImageNet and CIFAR-100; BURN's frozen FP teacher is a
ResNet-50 (MoCo v2). We keep torchvision's module names exactly (`conv1`, `bn1`, `layer1` ..
`layer4`, `avgpool`, `fc`) so that a torchvision or MoCo state dict loads with strict key
matching, the detection suite can cut the network at `layer3` (the "C4" backbone) and the
detectron2 exporter can rename keys by rule.

Choices made where the papers are silent:
- `fc` is replaced by `nn.Identity`, so `forward` returns the (B, 512 * expansion) average-pooled
  features; the owner of a head adds its own.
- `cifar_stem=True` (for 32 px images): `conv1` becomes a 3x3 stride-1 convolution with padding 1
  and `maxpool` becomes `nn.Identity`, so a 32x32 image is still 32x32 after the stem (the usual
  CIFAR adaptation of SimCLR-style code; the CQ paper does not say how it adapted ResNet-18/34).
- `width` multiplies every channel count (stem and the four stages; rounded, at least 1). It
  exists for the tiny `smoke` profile. `width=1` returns torchvision's own model unchanged (apart
  from `fc` and the optional CIFAR stem); other widths use `WidthScaledResNet`, a torchvision
  `ResNet` subclass with the same module names and the same weight initialisation.
- Full-precision layers kept by the quantizer by default (docs/protocols.md sec. 1, "which layers"):
  with the ImageNet stem, the stem conv, the 1x1 downsample convs and a user-added `fc`; with the
  CIFAR stem the network is run on 32 px CIFAR data, so it follows the CIFAR rule: stem and
  downsample convs are quantized, only a user-added `fc` stays FP.
"""
from __future__ import annotations

import torch.nn as nn
from torchvision.models import resnet as tv_resnet

from common.errors import ConfigError

# fnmatch patterns over `named_modules()` names, see `common.backbones.fp_layer_names`.
IMAGENET_FP_LAYERS = ("conv1", "*.downsample.0", "fc")
CIFAR_FP_LAYERS = ("fc",)

# Block type and blocks per stage (He et al. 2016, Table 1).
RESNET_LAYOUTS = {
    18: (tv_resnet.BasicBlock, (2, 2, 2, 2)),
    34: (tv_resnet.BasicBlock, (3, 4, 6, 3)),
    50: (tv_resnet.Bottleneck, (3, 4, 6, 3)),
}
_TORCHVISION_CONSTRUCTORS = {
    18: tv_resnet.resnet18,
    34: tv_resnet.resnet34,
    50: tv_resnet.resnet50,
}


def scale_channels(channels: int, width: float) -> int:
    """Channel count under a width multiplier: rounded, never below 1."""
    return max(1, int(round(channels * width)))


def check_width(width: float, name: str = "width") -> float:
    """Reject a non-positive or non-numeric width multiplier with a ConfigError."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ConfigError(f"backbone argument {name}={width!r}: expected a positive number")
    return float(width)


def check_flag(value: bool, name: str) -> bool:
    """Reject a non-boolean switch (e.g. the string "false" from a config) with a ConfigError."""
    if not isinstance(value, bool):
        raise ConfigError(f"backbone argument {name}={value!r}: expected true or false")
    return value


def _init_conv(conv: nn.Conv2d) -> None:
    # torchvision's ResNet initialisation for convolutions.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")


class WidthScaledResNet(tv_resnet.ResNet):
    """torchvision's ResNet with every channel count multiplied by `width`.

    Same module names as torchvision's ResNet (so key-renaming code works for every width);
    stage widths are 64, 128, 256, 512 times `width`, and the stem has 64 * `width` channels.
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], width: float) -> None:
        nn.Module.__init__(self)  # torchvision's __init__ hard-codes the 64..512 widths
        self._norm_layer = nn.BatchNorm2d
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # Bottleneck inner width = planes * base_width / 64 = planes
        self.inplanes = scale_channels(64, width)
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        planes = [scale_channels(c, width) for c in (64, 128, 256, 512)]
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _init_conv(m)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def _use_cifar_stem(model: tv_resnet.ResNet) -> None:
    """3x3 stride-1 stem conv and no max-pool: 32x32 input stays 32x32 after the stem."""
    out_channels = model.conv1.out_channels
    model.conv1 = nn.Conv2d(3, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    _init_conv(model.conv1)
    model.maxpool = nn.Identity()


def build_resnet(depth: int, cifar_stem: bool = False, width: float = 1.0) -> tv_resnet.ResNet:
    """ResNet-`depth` (18, 34 or 50) returning pooled features of size `model.feature_dim`."""
    if depth not in RESNET_LAYOUTS:
        raise ConfigError(f"resnet depth={depth!r}: expected one of {sorted(RESNET_LAYOUTS)}")
    width = check_width(width)
    cifar_stem = check_flag(cifar_stem, "cifar_stem")
    block, layers = RESNET_LAYOUTS[depth]
    if width == 1.0:
        model = _TORCHVISION_CONSTRUCTORS[depth](weights=None)
        model.fc = nn.Identity()
    else:
        model = WidthScaledResNet(block, layers, width)
    if cifar_stem:
        _use_cifar_stem(model)
    model.feature_dim = scale_channels(512, width) * block.expansion
    model.default_fp_layers = CIFAR_FP_LAYERS if cifar_stem else IMAGENET_FP_LAYERS
    return model


def resnet18(cifar_stem: bool = False, width: float = 1.0) -> tv_resnet.ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2), 512 * width features."""
    return build_resnet(18, cifar_stem=cifar_stem, width=width)


def resnet34(cifar_stem: bool = False, width: float = 1.0) -> tv_resnet.ResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3), 512 * width features."""
    return build_resnet(34, cifar_stem=cifar_stem, width=width)


def resnet50(cifar_stem: bool = False, width: float = 1.0) -> tv_resnet.ResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3), 2048 * width features."""
    return build_resnet(50, cifar_stem=cifar_stem, width=width)
