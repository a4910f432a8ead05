"""Self-supervised views: seeded augmentation of WHOLE BATCHES on the training device.

A view pipeline takes a batch of images, uint8 `(B, 3, H, W)` or float in [0, 1], and returns
float32 `(B, 3, out_size, out_size)` normalized with a mean/std. Every random op draws its
parameters PER SAMPLE, as tensors, from the `torch.Generator` passed in (same seed -> same views;
each image gets its own crop, factors, ...), then applies them with vectorized tensor code: no
Python loop over the batch and no per-image PIL work, so on a GPU the views never hold a training
step back.

    pipe = simclr_views(32, strength=0.5, blur=False, norm="cifar100")
    g = torch.Generator().manual_seed(0)
    v1, v2 = pipe(images, g), pipe(images, g)        # two views = the same pipeline called twice
    view1, view2 = build_views("byol", 224)           # any recipe by name, as a (view 1, view 2) pair

Each op has `sample(batch, height, width, generator) -> dict of tensors` (all the randomness) and
`apply(images, params)` (a pure tensor function), so tests can set parameters by hand.

Pre-cropped input: for image folders the loader cuts each view's crop from the whole file
(`common.data.crops`) and hands over uint8 (B, K, 3, S, S), one crop per view slot; a method calls
`views[k](images, generator, slot=k)`, and the pipeline then takes slot k and skips its geometric
first op (`ViewPipeline.geometry`), which already ran. A float (B, K, 3, S, S) batch holds views
the loader finished (CPU training): slot k is returned as it is. Plain (B, 3, H, W) images ignore
`slot`.

The package, one module per concern (every public name is re-exported here):
- `normalization`: the mean/std presets (`resolve_norm`, `norm_label`);
- `functional`: the batched kernels (colour, blur, equalize, the affine warp);
- `ops`: the random ops (crop + flip, colour jitter, grayscale, blur, solarize) and the centre crop;
- `randaugment`: InfoMin's RandAugment;
- `pipeline`: `ViewPipeline`, the ops in order then normalization;
- `recipes`: the methods' recipes by name (`build_views`).
"""
from common.views.normalization import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, IMAGENET_MEAN,
                                        IMAGENET_STD, NORMALIZATIONS, Norm, norm_label, resolve_norm)
from common.views.functional import (GRAY_WEIGHTS, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation,
                                     adjust_sharpness, autocontrast, blend, blur_kernel_size, equalize, gaussian_blur,
                                     hsv_to_rgb, pixel_affine_to_theta, posterize, rgb_to_grayscale, rgb_to_hsv, solarize,
                                     to_float_images, warp)
from common.views.ops import (CenterCropResize, ColorJitter, GaussianBlur, Params, RandomGrayscale, RandomResizedCrop,
                              Solarize, ViewOp)
from common.views.randaugment import RANDAUGMENT_FILL, RANDAUGMENT_OPS, RandAugment
from common.views.pipeline import CROP_STAGES, ViewCrops, ViewPipeline
from common.views.recipes import (VIEW_RECIPES, build_views, burn_views, byol_views, crop_flip_views, eval_transform,
                                  infomin_views, mocov2_views, simclr_views)

__all__ = [  # the public names, as before the package
    "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "IMAGENET_MEAN", "IMAGENET_STD",
    "NORMALIZATIONS", "Norm", "norm_label", "resolve_norm", "GRAY_WEIGHTS", "adjust_brightness",
    "adjust_contrast", "adjust_hue", "adjust_saturation", "adjust_sharpness", "autocontrast", "blend",
    "blur_kernel_size", "equalize", "gaussian_blur", "hsv_to_rgb", "pixel_affine_to_theta", "posterize",
    "rgb_to_grayscale", "rgb_to_hsv", "solarize", "to_float_images", "warp", "CenterCropResize",
    "ColorJitter", "GaussianBlur", "Params", "RandomGrayscale", "RandomResizedCrop", "Solarize", "ViewOp",
    "RANDAUGMENT_FILL", "RANDAUGMENT_OPS", "RandAugment", "ViewPipeline", "ViewCrops", "CROP_STAGES", "VIEW_RECIPES", "build_views",
    "burn_views", "byol_views", "crop_flip_views", "eval_transform", "infomin_views", "mocov2_views",
    "simclr_views",
]
