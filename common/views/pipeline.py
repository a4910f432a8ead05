"""The view pipeline: ops in order on a batch, then normalization.

All arithmetic in float32 (crop geometry in float64, like torchvision's Python floats), with
autocast switched off and no autograd inside the pipeline. Input float images are not
range-checked (that would sync the GPU); values are trusted to lie in [0, 1].

A loader that cut the views' crops from the whole files (`common.data.crops`) hands over a
`ViewCrops` batch, uint8 or float (B, K, 3, S, S), one crop per view slot, and says how far the
views got there: `geometry` (the crop, resize and flip ran; the pipeline takes slot k and skips its
geometric first op, `ViewPipeline.geometry`) or `finished` (the whole pipeline ran on the CPU,
normalization included; slot k is returned as it is). A method calls
`views[k](images, generator, slot=k)` on either; plain (B, 3, H, W) images ignore `slot`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from common.errors import ConfigError
from common.views.checks import check_size
from common.views.functional import to_float_images
from common.views.normalization import IMAGENET_MEAN, IMAGENET_STD, resolve_norm
from common.views.ops import CenterCropResize, RandomResizedCrop, ViewOp

CROP_STAGES = ("geometry", "finished")  # how far a loader took the views (ViewCrops.stage)


@dataclass(frozen=True)
class ViewCrops:
    """A loader's batch of views cut from the whole files: `crops` (B, K, 3, S, S), one per view
    slot, and `stage`, how far the loader took them: "geometry" (crop, resize, flip) or
    "finished" (the whole pipeline, normalization included)."""

    crops: Tensor
    stage: str

    def __post_init__(self):
        if self.stage not in CROP_STAGES:
            raise ConfigError(f"ViewCrops.stage: expected one of {list(CROP_STAGES)}, got {self.stage!r}")
        if not isinstance(self.crops, Tensor) or self.crops.dim() != 5 or self.crops.shape[2] != 3:
            shape = tuple(self.crops.shape) if isinstance(self.crops, Tensor) else type(self.crops).__name__
            raise ConfigError(f"ViewCrops.crops: expected a tensor of shape (B, K, 3, S, S), got {shape}")

    @property
    def shape(self) -> torch.Size:
        return self.crops.shape

    def __len__(self) -> int:
        return len(self.crops)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "ViewCrops":
        return ViewCrops(self.crops.to(device, non_blocking=non_blocking), self.stage)

    def pin_memory(self) -> "ViewCrops":  # the DataLoader's pin_memory=True calls this
        return ViewCrops(self.crops.pin_memory(), self.stage)


class ViewPipeline:
    """ops applied in order to a batch, then normalization: `pipe(images, generator)` ->
    float32 (B, 3, out_size, out_size). A geometric op must produce `out_size`; a pipeline without
    one resizes the result to `out_size` (antialiased bilinear) if its side differs."""

    def __init__(self, ops: Sequence[ViewOp], out_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.ops = list(ops)
        self.out_size = check_size("out_size", out_size)
        self.mean, self.std = resolve_norm((mean, std))
        for op in self.ops:
            if not isinstance(op, ViewOp):
                raise ConfigError(f"ops: expected ViewOp instances, got {type(op).__name__}")
            if getattr(op, "size", out_size) != out_size:
                raise ConfigError(f"ops: {type(op).__name__} makes {op.size} px images but out_size is {out_size}")

    @property
    def random(self) -> bool:
        return any(op.random for op in self.ops)

    @property
    def geometry(self) -> RandomResizedCrop | CenterCropResize | None:
        """The op that makes the view's geometry (first in every recipe), which a loader can run on
        the full image instead (`common.data.crops`); None if the pipeline starts otherwise."""
        first = self.ops[0] if self.ops else None
        return first if isinstance(first, (RandomResizedCrop, CenterCropResize)) else None

    def augment(self, images: Tensor, generator: torch.Generator | None = None,
                part: tuple[int, int] | None = None, slot: int | None = None) -> Tensor:
        """The views before normalization: float32 in [0, 1]. `part=(total, start)`: `images` are
        rows start.. of a batch of `total` (a torchrun rank's share; `ViewOp.__call__`).
        `ViewCrops` at stage "geometry" (`common.data.crops`) carry one crop per view slot with the
        geometry already applied: `slot` picks this view's, the other ops follow."""
        ops = self.ops
        if isinstance(images, ViewCrops):
            if images.stage == "finished":
                raise ConfigError("ViewCrops: these views are finished (normalized); call the pipeline, not augment")
            images, ops = self._precropped(images.crops, slot), self.ops[1:]
        if any(op.random for op in ops) and not isinstance(generator, torch.Generator):
            raise ConfigError(f"generator: expected a seeded torch.Generator for random views, got {generator!r}")
        x = to_float_images(images)
        # float32 throughout, even when called inside an autocast region of the training step
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            for op in ops:
                x = op(x, generator, part)
            if tuple(x.shape[-2:]) != (self.out_size, self.out_size) and x.shape[0]:
                x = F.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear", antialias=True,
                                  align_corners=False).clamp(0.0, 1.0)
        return x

    def _precropped(self, images: Tensor, slot: int | None) -> Tensor:
        if self.geometry is None:
            raise ConfigError("ViewCrops (B, K, 3, S, S): this view pipeline does not start with a "
                              "crop the loader could have made")
        if slot is None or not 0 <= slot < images.shape[1]:
            raise ConfigError(f"pre-cropped images hold {images.shape[1]} view slots; the view asked for slot {slot!r}")
        if images.shape[-1] != self.out_size or images.shape[-2] != self.out_size:
            raise ConfigError(f"pre-cropped images of {images.shape[-1]} px for {self.out_size} px views")
        return images[:, slot]

    def normalize(self, x: Tensor) -> Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, images: Tensor, generator: torch.Generator | None = None,
                 part: tuple[int, int] | None = None, slot: int | None = None) -> Tensor:
        if isinstance(images, ViewCrops) and images.stage == "finished":
            return self._precropped(images.crops, slot)
        return self.normalize(self.augment(images, generator, part, slot))

    def __repr__(self) -> str:
        ops = ",\n  ".join(repr(op) for op in self.ops)
        return f"ViewPipeline(out_size={self.out_size}, mean={self.mean}, std={self.std}, ops=[\n  {ops}])"
