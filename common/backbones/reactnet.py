"""ReActNet-A, BURN's binary backbone (Liu et al., "ReActNet", ECCV 2020; docs/protocols.md sec. 2).

ReActNet-A is MobileNet-v1 with every depthwise 3x3 conv replaced by a full binary 3x3 conv and
every layer given a real-valued shortcut. Layout (ReActNet paper Fig. 2 / Table 1):

- `stem`: FP 3x3 conv, stride 2, 3 -> 32 channels, + BatchNorm (no activation after it).
- `blocks.0` .. `blocks.12`: 13 blocks with output widths
  64, 128, 128, 256, 256, 512 x6, 1024, 1024 (input 32 for the first); stride 2 wherever the
  width changes except 32 -> 64, i.e. at blocks 1, 3, 5 and 11 (224 px -> 7x7 at the end).
- `pool`: global average pooling; `forward` returns (B, `feature_dim`) features.

One block (`ReActBlock`), x the block input, c_in / c_out its widths:
  1. y = RPReLU(BN(BinaryConv3x3(LearnableBias(x))) + shortcut(x)): the 3x3 conv keeps c_in
     channels and carries the block's stride; shortcut(x) is x, or a 2x2 average pool
     (stride 2) when the block is strided.
  2. z = LearnableBias(y); out = RPReLU(BN(BinaryConv1x1(z)) + y) when c_out == c_in; when the
     width doubles (c_out == 2 c_in), two parallel binary 1x1 convs c_in -> c_in, each with its
     own BN and each added to the same identity y, are concatenated along channels.
Binary convs binarize their input (after the block's learnable bias) and, in stage 2, their
weights; see `common.binary`. `set_binary_stage(model, 1 | 2)` switches the multi-stage mode.

Choices made where the papers are silent (or where the public code is not the paper):
- `fp_head=False` (default): no head. `fp_head=True` appends `head` = FP Linear(1024, 1024) +
  ReLU after pooling, as the public BURN code did (docs/protocols.md sec. 2); the papers do not
  mention it. The ImageNet classifier of ReActNet is not part of the backbone.
- `small_images=True` (32 px images, e.g. CIFAR): the stem has stride 1 and the first stride-2
  transition (block 1, 64 -> 128) has stride 1; the last three transitions (blocks 3, 5, 11)
  keep stride 2. The network then downsamples 8x instead of 32x, so 32 px ends at 4x4, as the
  CIFAR ResNet-18 and the 32 px MobileNetV2 of this repository do. Keeping only the last two
  transitions (8x8 at the end) would run the six 512-wide blocks at 16x16: about 5.5 G
  multiply-adds per image instead of 1.5 (the ImageNet network at 224 px: 4.8 G), too slow for
  the CPU `mini` profile.
- `width` multiplies every channel count (for the tiny `smoke` profile): each width is
  rounded to the nearest multiple of 8, at least 8. Each block must then keep or double its
  width; a width that breaks this (e.g. 0.3: 16 -> 40) is a ConfigError. At width 0.125 the
  first block becomes 8 -> 8 (the 32 -> 64 doubling disappears under the floor of 8).
- Initialisation: the FP stem conv is Kaiming-normal (fan_out, ReLU), as torchvision's ResNet;
  binary convs keep PyTorch's default Conv2d init (Kaiming-uniform, a = sqrt(5), bound
  1/sqrt(fan_in) <= 1) so every weight starts inside the straight-through window |W| <= 1 and
  receives a gradient (the reference code used U[0, 0.001), all positive). Binary weights'
  magnitude only sets the per-channel scale, which the following BN removes. BatchNorm weight 1,
  bias 0; learnable biases 0; PReLU slopes 0.25.
- A new model is fully binary (stage 2); BURN's stage 1 calls `set_binary_stage(model, 1)`.
- `default_fp_layers` (fnmatch patterns over module names, for code that keeps layers FP):
  the stem conv, and the head's Linear when there is one. CQ does not quantize this network.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from common.binary import BinaryConv2d, LearnableBias, RPReLU
from common.errors import ConfigError

# ReActNet-A widths: stem output, then the output of each of the 13 blocks.
BASE_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
# Stride of each block: 2 where the width changes, except 32 -> 64 (224 px -> 7x7).
IMAGENET_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
# 32 px variant: the first stride-2 transition (block 1) also runs at stride 1 (32 px -> 4x4).
SMALL_IMAGE_STRIDES = (1, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
CHANNEL_DIVISOR = 8


def scaled_channels(width: float) -> tuple[int, ...]:
    """BASE_CHANNELS times `width`, each rounded to a multiple of 8 and at least 8."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ConfigError(f"reactnet_a width={width!r}: expected a positive number")
    channels = tuple(max(CHANNEL_DIVISOR, int(c * width / CHANNEL_DIVISOR + 0.5) * CHANNEL_DIVISOR)
                     for c in BASE_CHANNELS)
    for c_in, c_out in zip(channels, channels[1:]):
        if c_out not in (c_in, 2 * c_in):
            raise ConfigError(f"reactnet_a width={width!r} gives a block {c_in} -> {c_out} channels; "
                              "expected each block to keep or double its width (e.g. width 0.125, 0.25, 0.5, 1)")
    return channels


class ReActBlock(nn.Module):
    """One ReActNet-A block: binary 3x3 conv part, then binary 1x1 conv part (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels not in (in_channels, 2 * in_channels):
            raise ConfigError(f"ReActBlock {in_channels} -> {out_channels}: expected equal or doubled width")
        # 3x3 part: keeps the width, carries the stride.
        self.bias_3x3 = LearnableBias(in_channels)
        self.conv_3x3 = BinaryConv2d(in_channels, in_channels, 3, stride=stride, padding=1)
        self.bn_3x3 = nn.BatchNorm2d(in_channels)
        self.shortcut_3x3 = nn.AvgPool2d(kernel_size=2, stride=2) if stride == 2 else nn.Identity()
        self.act_3x3 = RPReLU(in_channels)
        # 1x1 part: one conv c_in -> c_out, or two c_in -> c_in concatenated when doubling.
        branches = 2 if out_channels == 2 * in_channels else 1
        branch_out = out_channels // branches
        self.bias_1x1 = LearnableBias(in_channels)
        self.convs_1x1 = nn.ModuleList(BinaryConv2d(in_channels, branch_out, 1) for _ in range(branches))
        self.bns_1x1 = nn.ModuleList(nn.BatchNorm2d(branch_out) for _ in range(branches))
        self.act_1x1 = RPReLU(out_channels)

    @property
    def doubles_width(self) -> bool:
        return len(self.convs_1x1) == 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act_3x3(self.bn_3x3(self.conv_3x3(self.bias_3x3(x))) + self.shortcut_3x3(x))
        z = self.bias_1x1(y)
        # When the width doubles each branch adds the same identity y (ReActNet Fig. 2).
        out = [bn(conv(z)) + y for conv, bn in zip(self.convs_1x1, self.bns_1x1)]
        return self.act_1x1(out[0] if len(out) == 1 else torch.cat(out, dim=1))


class ReActNetA(nn.Module):
    """ReActNet-A feature extractor; `forward` returns (B, feature_dim) pooled features."""

    def __init__(self, width: float = 1.0, small_images: bool = False, fp_head: bool = False) -> None:
        super().__init__()
        for name, flag in (("small_images", small_images), ("fp_head", fp_head)):
            if not isinstance(flag, bool):
                raise ConfigError(f"reactnet_a {name}={flag!r}: expected true or false")
        self.channels = scaled_channels(width)
        self.strides = SMALL_IMAGE_STRIDES if small_images else IMAGENET_STRIDES
        stem_conv = nn.Conv2d(3, self.channels[0], 3, stride=1 if small_images else 2, padding=1, bias=False)
        self.stem = nn.Sequential(OrderedDict(conv=stem_conv, bn=nn.BatchNorm2d(self.channels[0])))
        self.blocks = nn.Sequential(*(ReActBlock(c_in, c_out, s) for c_in, c_out, s
                                      in zip(self.channels, self.channels[1:], self.strides)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = self.channels[-1]
        self.head = None
        self.default_fp_layers: tuple[str, ...] = ("stem.conv",)
        if fp_head:  # the public BURN code's FP Linear(1024, 1024) + ReLU
            self.head = nn.Sequential(OrderedDict(fc=nn.Linear(self.feature_dim, self.feature_dim),
                                                  relu=nn.ReLU(inplace=True)))
            self.default_fp_layers = ("stem.conv", "head.fc")
        nn.init.kaiming_normal_(stem_conv.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's (B, C, H, W) feature map, before pooling."""
        return self.blocks(self.stem(x))

    def c4_split(self) -> tuple["OrderedDict[str, nn.Module]", "OrderedDict[str, nn.Module]"]:
        """The detection split (Faster R-CNN C4, eval/detection.py): everything up to the last
        two blocks (the stride-32 stage), and those two blocks as the box head's "res5". Named by
        their state-dict prefixes, so a split network loads this network's weights."""
        cut = len(self.blocks) - 2
        trunk = OrderedDict(stem=self.stem)
        trunk.update((f"blocks.{i}", self.blocks[i]) for i in range(cut))
        head = OrderedDict((f"blocks.{i}", self.blocks[i]) for i in range(cut, len(self.blocks)))
        return trunk, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.forward_features(x)).flatten(1)
        return features if self.head is None else self.head(features)


def reactnet_a(width: float = 1.0, small_images: bool = False, fp_head: bool = False) -> ReActNetA:
    """ReActNet-A returning pooled features of size `model.feature_dim` (1024 at width 1).

    `small_images`: the 32 px variant (stem stride 1, block 1 stride 1; 32 px -> 4x4).
    `fp_head`: append the public BURN code's FP Linear(1024, 1024) + ReLU (off by default).
    """
    return ReActNetA(width=width, small_images=small_images, fp_head=fp_head)
