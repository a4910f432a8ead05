"""The methods' view recipes by name: `build_views(name, out_size, **options)` -> (view 1, view 2).

simclr, byol, burn, mocov2, infomin, crop_flip (crop + flip only) and none (eval geometry, no
augmentation: the CQ-Quant ablation). Each recipe function names the source of its numbers.
"""
from __future__ import annotations

import inspect
from typing import Callable

from common.errors import ConfigError
from common.views.checks import check_nonneg
from common.views.normalization import Norm, resolve_norm
from common.views.ops import CenterCropResize, ColorJitter, GaussianBlur, RandomGrayscale, RandomResizedCrop, Solarize
from common.views.pipeline import ViewPipeline
from common.views.randaugment import RandAugment

def _pipeline(ops, out_size, norm):
    mean, std = resolve_norm(norm)
    return ViewPipeline(ops, out_size, mean, std)


def simclr_views(out_size: int, strength: float = 1.0, blur: bool = True, crop_scale=(0.08, 1.0),
                 interpolation: str = "bilinear", norm: Norm = "imagenet") -> ViewPipeline:
    """SimCLR (Chen et al. 2020, appendix A): random resized crop (0.08, 1) + flip, colour jitter
    (0.8s, 0.8s, 0.8s, 0.2s) with p 0.8, grayscale p 0.2, Gaussian blur p 0.5 sigma (0.1, 2.0) with
    a 10% kernel. s = 1 on ImageNet, 0.5 is common on CIFAR; SimCLR left blur out on CIFAR (blur=False).
    No solarize. Two views = this pipeline called twice."""
    s = check_nonneg("strength", strength)
    ops = [RandomResizedCrop(out_size, scale=crop_scale, interpolation=interpolation),
           ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.2 * s, 0.5), p=0.8),
           RandomGrayscale(0.2)]
    if blur:
        ops.append(GaussianBlur(0.5, sigma=(0.1, 2.0)))
    return _pipeline(ops, out_size, norm)


def byol_views(out_size: int, crop_scale=(0.08, 1.0), interpolation: str = "bilinear",
               norm: Norm = "imagenet") -> tuple[ViewPipeline, ViewPipeline]:
    """BYOL (Grill et al. 2020, Table 6): two ASYMMETRIC pipelines. Both: crop (0.08, 1) + flip,
    colour jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2, blur sigma (0.1, 2.0); blur p 1.0
    (view 1) / 0.1 (view 2); solarize p 0.0 (view 1) / 0.2 (view 2)."""
    def one(blur_p, solarize_p):
        return _pipeline([RandomResizedCrop(out_size, scale=crop_scale, interpolation=interpolation),
                          ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8),
                          RandomGrayscale(0.2),
                          GaussianBlur(blur_p, sigma=(0.1, 2.0)),
                          Solarize(solarize_p, threshold=0.5)], out_size, norm)

    return one(1.0, 0.0), one(0.1, 0.2)


def burn_views(out_size: int, interpolation: str = "bicubic", norm: Norm = "imagenet") -> ViewPipeline:
    """BURN's public code (docs/protocols.md section 2): RandomResizedCrop (default scale (0.08, 1),
    bicubic) + flip, ColorJitter (0.4, 0.4, 0.4, 0.1) p 0.6, grayscale p 0.2, Gaussian blur p 0.2
    sigma (0.1, 2), no solarize. Both views use it."""
    return _pipeline([RandomResizedCrop(out_size, scale=(0.08, 1.0), interpolation=interpolation),
                      ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.6),
                      RandomGrayscale(0.2),
                      GaussianBlur(0.2, sigma=(0.1, 2.0))], out_size, norm)


def mocov2_views(out_size: int, interpolation: str = "bilinear", norm: Norm = "imagenet") -> ViewPipeline:
    """MoCo v2 (Chen et al. 2020, "Improved baselines", its released augmentation): crop (0.2, 1) +
    flip, ColorJitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, Gaussian blur p 0.5 sigma (0.1, 2)."""
    return _pipeline([RandomResizedCrop(out_size, scale=(0.2, 1.0), interpolation=interpolation),
                      ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
                      RandomGrayscale(0.2),
                      GaussianBlur(0.5, sigma=(0.1, 2.0))], out_size, norm)


def infomin_views(out_size: int, magnitude: float = 10.0, interpolation: str = "bilinear",
                  norm: Norm = "imagenet") -> ViewPipeline:
    """InfoMin's "stronger augmentation" (Tian et al. 2020; BURN appendix B calls InfoMin "MoCo with
    stronger augmentations"), taken to be InfoMin's released RGB recipe (PyContrast, aug 'D'):
    crop (0.2, 1) + flip, ColorJitter (0.8, 0.8, 0.8, 0.2) p 0.8, Gaussian blur p 0.5 sigma
    (0.1, 2), RandAugment 2 ops at magnitude 10 (std 0.5), grayscale p 0.2, in that order."""
    return _pipeline([RandomResizedCrop(out_size, scale=(0.2, 1.0), interpolation=interpolation),
                      ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8),
                      GaussianBlur(0.5, sigma=(0.1, 2.0)),
                      RandAugment(num_ops=2, magnitude=magnitude, magnitude_std=0.5),
                      RandomGrayscale(0.2)], out_size, norm)


def crop_flip_views(out_size: int, crop_scale=(0.08, 1.0), interpolation: str = "bilinear",
                    norm: Norm = "imagenet") -> ViewPipeline:
    """Random resized crop + flip only (the usual supervised / linear-probe training views)."""
    return _pipeline([RandomResizedCrop(out_size, scale=crop_scale, interpolation=interpolation)], out_size, norm)


def eval_transform(out_size: int, resize: int | None = None, norm: Norm = "imagenet") -> ViewPipeline:
    """Deterministic evaluation views (no randomness, no generator needed): optional shorter-side
    resize, centre crop `out_size`, normalize. A 256 px load -> 224 is the usual Resize(256) +
    CenterCrop(224); 32 px CIFAR -> 32 is the identity."""
    return _pipeline([CenterCropResize(out_size, resize)], out_size, norm)


VIEW_RECIPES: dict[str, Callable[..., ViewPipeline | tuple[ViewPipeline, ViewPipeline]]] = {
    "simclr": simclr_views,
    "byol": byol_views,
    "burn": burn_views,
    "mocov2": mocov2_views,
    "infomin": infomin_views,
    "crop_flip": crop_flip_views,
    "none": eval_transform,  # no input augmentation (CQ-Quant, CQ Table 8)
}


def build_views(name: str, out_size: int, **kw) -> tuple[ViewPipeline, ViewPipeline]:
    """The (view 1, view 2) pipelines of a recipe by name; symmetric recipes give the same
    pipeline twice. Keyword arguments go to the recipe function."""
    if name not in VIEW_RECIPES:
        raise ConfigError(f"views: expected one of {sorted(VIEW_RECIPES)}, got {name!r}")
    recipe = VIEW_RECIPES[name]
    accepted = set(inspect.signature(recipe).parameters) - {"out_size"}
    for key in kw:
        if key not in accepted:
            raise ConfigError(f"views.{key}: not an option of the {name!r} views; expected one of {sorted(accepted)}")
    views = recipe(out_size, **kw)
    return views if isinstance(views, tuple) else (views, views)
