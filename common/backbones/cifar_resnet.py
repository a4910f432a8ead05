"""The 6n+2 "CIFAR ResNet" family (He et al. 2016, "Deep Residual Learning", Sec. 4.2).

The CQ paper trains ResNet-74/110/152 on CIFAR-100; docs/protocols.md says these are this family with
n = 12, 18, 25 (depth = 6n + 2). Layout (Sec. 4.2): a 3x3 stem conv with 16 channels, then three
stages of n BasicBlocks (two 3x3 convs each) with 16 / 32 / 64 channels and strides 1 / 2 / 2,
then global average pooling. 6n + 1 convolutions are in the main path (1 stem + 6n in blocks),
plus one shortcut conv at each of the two stage transitions.

Choices made where the papers are silent:
- Shortcut when the shape changes: a 1x1 strided conv + BN ("option B" projection). He et al.
  used zero-padded identity ("option A") on CIFAR, but docs/protocols.md says the downsample convs
  of CIFAR ResNets are quantized, so the reference code had real downsample convs.
- Blocks are torchvision's `BasicBlock` and module names follow torchvision's ResNet (`conv1`,
  `bn1`, `layer1` .. `layer3`, `layerK.i.downsample.0/1`, `fc`), so the same key-renaming and
  layer-selection rules work for both families.
- `fc` is `nn.Identity`: `forward` returns the (B, 64 * width) pooled features.
- `width` multiplies every channel count (16 / 32 / 64; rounded, at least 1).
- Initialisation as torchvision's ResNet: Kaiming-normal (fan_out) convs, BN weight 1, bias 0.
- Full-precision layers by default (docs/protocols.md sec. 1): on CIFAR ResNets the stem and
  downsample convs are quantized, so only a user-added `fc` stays FP.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock

from common.backbones.resnet import CIFAR_FP_LAYERS, check_width, scale_channels
from common.errors import ConfigError

# Depths named in the CQ paper's CIFAR experiments and the classic ones of He et al. Table 6.
NAMED_DEPTHS = (20, 32, 44, 56, 74, 110, 152)


def blocks_per_stage(depth: int) -> int:
    """n of depth = 6n + 2 (Sec. 4.2); ConfigError for any other depth."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"cifar_resnet depth={depth!r}: expected 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...)")
    return (depth - 2) // 6


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2): stem 3x3/16, stages of n BasicBlocks at 16/32/64 channels."""

    def __init__(self, depth: int, width: float = 1.0) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        width = check_width(width)
        channels = [scale_channels(c, width) for c in (16, 32, 64)]
        self.depth = depth
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_stage(channels[0], channels[0], n, stride=1)
        self.layer2 = _make_stage(channels[0], channels[1], n, stride=2)
        self.layer3 = _make_stage(channels[1], channels[2], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()
        self.feature_dim = channels[2]
        self.default_fp_layers = CIFAR_FP_LAYERS
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    """`blocks` BasicBlocks; the first one strides and, if the shape changes, projects (option B)."""
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers = [BasicBlock(in_channels, out_channels, stride, downsample)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def cifar_resnet(*, depth: int, width: float = 1.0) -> CifarResNet:
    """CIFAR ResNet of any depth 6n+2."""
    return CifarResNet(depth, width)


def _fixed_depth_builder(depth: int):
    """A builder `f(width=1.0)` for one named depth, e.g. `cifar_resnet110`."""

    def build(width: float = 1.0) -> CifarResNet:
        return CifarResNet(depth, width)

    build.__name__ = build.__qualname__ = f"cifar_resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} (n = {blocks_per_stage(depth)} blocks per stage)."
    return build


cifar_resnet20 = _fixed_depth_builder(20)
cifar_resnet32 = _fixed_depth_builder(32)
cifar_resnet44 = _fixed_depth_builder(44)
cifar_resnet56 = _fixed_depth_builder(56)
cifar_resnet74 = _fixed_depth_builder(74)
cifar_resnet110 = _fixed_depth_builder(110)
cifar_resnet152 = _fixed_depth_builder(152)
