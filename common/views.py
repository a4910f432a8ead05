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

Definitions follow torchvision's tensor functionals (transforms.v2.functional):
- RandomResizedCrop: torchvision's box sampler (area fraction uniform in `scale`, aspect ratio
  log-uniform in `ratio`, 10 trials then a center-crop fallback) vectorized by drawing all 10
  candidates for every sample and keeping the first valid one. Boxes are integer pixel boxes as in
  torchvision. Crop, resize and horizontal flip are ONE per-sample affine map applied with
  `affine_grid` + `grid_sample` (align_corners=False, so a full-image box is the identity and a
  flip is an exact mirror) straight to out_size. Choices: no antialiasing (grid_sample has none;
  the crops here are upsampled, or downscaled by at most load/out, e.g. 256/224, so aliasing is
  small; torchvision antialiases downscaling); samples falling just outside the box read the
  neighbouring image pixels (torchvision clamps at the box edge; only the outermost output pixels
  of an upsampled crop differ); `padding_mode="border"` at the image edges (torchvision's resize
  clamps the same way); bicubic output is clamped to [0, 1].
- ColorJitter (brightness, contrast, saturation, hue), applied as a whole with probability `p`
  (RandomApply): factors uniform in [max(0, 1 - s), 1 + s] (hue: [-h, h]); brightness multiplies;
  contrast blends with the per-image mean of the grayscale; saturation blends with the grayscale
  (weights 0.2989, 0.587, 0.114); hue shifts H in HSV (a vectorized rgb <-> hsv); each result is
  clamped to [0, 1]. Order: torchvision draws a random order of the four PER IMAGE, and so does
  this module (one random permutation per sample, uniform over the 24 orders). It is applied with
  masks, not a loop over images: brightness, contrast and saturation are all "blend with a target"
  (black, mean gray, gray), so one masked blend per slot does whichever of the three each sample
  has there; the costly hue step runs ONCE, with the other three split into the slots before and
  after it (3 + 1 + 3 stages instead of 4 x 4).
- RandomGrayscale: grayscale copied to the 3 channels.
- GaussianBlur: per-sample sigma uniform in `sigma`, separable kernel applied with grouped
  convolutions, reflect padding. Kernel size: SimCLR's rule, about 10% of the image side, made odd
  (`blur_kernel_size`: 23 at 224, 7 at 64, 3 at 32). MoCo v2 and the BURN code blurred with PIL
  (radius = sigma, no fixed kernel); at these sigmas (<= 2) a 23-tap kernel on 224 px is an
  untruncated Gaussian, on 32 px images the 3-tap kernel truncates it (as SimCLR's rule does).
- Solarize: x -> 1 - x where x >= threshold (0.5 on [0, 1]), as torchvision and BYOL.
- RandAugment (InfoMin's "stronger augmentation", see `infomin_views`): the 15 ops and
  magnitude rules of the RandAugment used by InfoMin's public code (PyContrast, itself timm's),
  re-implemented for batches on [0, 1] floats: geometric ops in one affine warp (bilinear; PIL
  picked bilinear or bicubic at random; fill = ImageNet mean colour), 8-bit semantics for equalize
  / posterize / solarize thresholds, no rounding to 8 bits between ops, and the enhance ops reuse
  the jitter kernels (luma weights 0.2989 where PIL's "Color" uses 0.299).

Recipes (`build_views(name, out_size, **options)`, always a (view 1, view 2) pair): simclr, byol,
burn, mocov2, infomin, crop_flip (crop + flip only) and none (eval geometry, no augmentation: the
CQ-Quant ablation). Each recipe function names the source of its numbers.

Other choices where the sources are silent:
- All arithmetic in float32 (crop geometry in float64, like torchvision's Python floats), with
  autocast switched off and no autograd inside the pipeline.
- Random draws happen on the generator's device and move to the images' device: a CPU generator
  gives the same parameters whatever device the images are on. Every op draws a fixed number of
  values per sample, whatever the data, so the stream is reproducible.
- Input float images are not range-checked (that would sync the GPU); values are trusted to lie
  in [0, 1].
- `p = 0` leaves a sample bit-for-bit unchanged (results are selected with `torch.where`).
- Normalization presets: ImageNet's usual mean/std; CIFAR-10 (0.4914, 0.4822, 0.4465) /
  (0.2470, 0.2435, 0.2616) and CIFAR-100 (0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762), the
  per-channel mean and std over all training pixels (not the often-quoted per-image std average).
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from common.errors import ConfigError

Params = dict[str, Tensor]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
NORMALIZATIONS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
}
Norm = Union[str, tuple[Sequence[float], Sequence[float]]]

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (ITU-R 601 luma)


# --------------------------------------------------------------------------- argument checks

def _check_prob(name: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name}: expected a probability in [0, 1], got {p!r}")
    return float(p)


def _check_nonneg(name: str, value, upper: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= upper:
        raise ConfigError(f"{name}: expected a number in [0, {upper}], got {value!r}")
    return float(value)


def _check_range(name: str, value, upper: float = math.inf) -> tuple[float, float]:
    """A pair (low, high) with 0 < low <= high <= upper."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a pair (low, high), got {value!r}") from None
    if not 0.0 < low <= high <= upper:
        raise ConfigError(f"{name}: expected 0 < low <= high <= {upper}, got {value!r}")
    return low, high


def _check_size(name: str, size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{name}: expected a positive integer image side, got {size!r}")
    return size


def _check_interpolation(interpolation: str) -> str:
    if interpolation not in ("bilinear", "bicubic"):
        raise ConfigError(f"interpolation: expected 'bilinear' or 'bicubic', got {interpolation!r}")
    return interpolation


def norm_label(pipe: "ViewPipeline") -> str | list[list[float]]:
    """A pipeline's normalization as an encoder file records it: the preset's name, else [mean, std]."""
    pair = (tuple(pipe.mean), tuple(pipe.std))
    return next((name for name, preset in NORMALIZATIONS.items() if tuple(map(tuple, preset)) == pair),
                [list(pair[0]), list(pair[1])])


def resolve_norm(norm: Norm) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A normalization preset name ('imagenet', 'cifar10', 'cifar100') or a (mean, std) pair."""
    if isinstance(norm, str):
        if norm not in NORMALIZATIONS:
            raise ConfigError(f"norm: expected one of {sorted(NORMALIZATIONS)} or (mean, std), got {norm!r}")
        return NORMALIZATIONS[norm]
    try:
        mean, std = (tuple(float(v) for v in part) for part in norm)
    except (TypeError, ValueError):
        raise ConfigError(f"norm: expected a preset name or a (mean, std) pair, got {norm!r}") from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f"norm: expected 3 means and 3 positive stds, got {norm!r}")
    return mean, std


def to_float_images(images: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 / 255; a float batch (taken to lie in [0, 1]) -> float32."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ConfigError(f"images: expected a tensor of shape (B, 3, H, W), got {shape}")
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / 255.0
    if images.is_floating_point():
        return images.to(torch.float32)
    raise ConfigError(f"images: expected dtype uint8 or a float dtype in [0, 1], got {images.dtype}")


# --------------------------------------------------------------------------- random draws

def _rand(generator: torch.Generator, *shape: int, dtype=torch.float32) -> Tensor:
    """Uniform [0, 1) on the generator's device (moved to the images' device by the op)."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)


def _uniform(generator: torch.Generator, low: float, high: float, *shape: int, dtype=torch.float32) -> Tensor:
    return low + (high - low) * _rand(generator, *shape, dtype=dtype)


def _per_sample(t: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1), to broadcast a per-sample value over an image batch."""
    return t.view(-1, 1, 1, 1)


# --------------------------------------------------------------------------- batched kernels
# Every factor below is a tensor with one entry per sample (or a number); images are float [0, 1].

def rgb_to_grayscale(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma, torchvision's weights."""
    r, g, b = x.unbind(dim=1)
    return (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).unsqueeze(1)


def _as_factor(factor, x: Tensor) -> Tensor:
    f = torch.as_tensor(factor, dtype=x.dtype, device=x.device)
    return _per_sample(f) if f.ndim == 1 else f


def blend(x: Tensor, target: Tensor, factor) -> Tensor:
    """factor * x + (1 - factor) * target, clamped to [0, 1] (torchvision's _blend), as one lerp."""
    return torch.lerp(target.expand_as(x), x, _as_factor(factor, x)).clamp_(0.0, 1.0)


def adjust_brightness(x: Tensor, factor) -> Tensor:
    return (x * _as_factor(factor, x)).clamp(0.0, 1.0)


def adjust_contrast(x: Tensor, factor) -> Tensor:
    mean_gray = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return blend(x, mean_gray, factor)


def adjust_saturation(x: Tensor, factor) -> Tensor:
    return blend(x, rgb_to_grayscale(x), factor)


def _hue_sextant(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """max, max - min, and the hue in sextants (6 H, in (-1, 5]) of RGB images; 0 for grays.
    The largest channel picks the sextant; ties resolve as r, then g, then b (as torchvision)."""
    r, g, b = x.unbind(dim=1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    # 0/1 masks as floats: arithmetic selection is cheaper than nested torch.where on CPU
    r_max = (maxc == r).to(x.dtype)
    g_max = (maxc == g).to(x.dtype) * (1.0 - r_max)
    b_max = 1.0 - r_max - g_max
    numerator = (g - b) * r_max + (b - r) * g_max + (r - g) * b_max
    base = 2.0 * g_max + 4.0 * b_max
    return maxc, delta, base + numerator / delta.clamp(min=torch.finfo(x.dtype).tiny)


def _rgb_from_hue(maxc: Tensor, delta: Tensor, h6: Tensor) -> Tensor:
    """RGB from V = max, V S = max - min and the hue in sextants: channel n = V - V S *
    clamp(min(k, 4 - k), 0, 1) with k = (n_off + 6 H) mod 6, n_off = 5, 3, 1 for R, G, B
    (the branch-free form of the usual sextant table)."""
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=maxc.dtype, device=maxc.device).view(1, 3, 1, 1)
    k = torch.remainder(offsets + h6.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(1) - delta.unsqueeze(1) * ramp


def rgb_to_hsv(x: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV with H in [0, 1) (0 for grays), S, V in [0, 1]."""
    maxc, delta, h6 = _hue_sextant(x)
    s = delta / torch.where(maxc > 0, maxc, 1.0)
    return torch.stack((torch.remainder(h6 / 6.0, 1.0), s, maxc), dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Inverse of `rgb_to_hsv`."""
    h, s, v = hsv.unbind(dim=1)
    return _rgb_from_hue(v, v * s, 6.0 * h)


def adjust_hue(x: Tensor, shift) -> Tensor:
    """Rotate the hue by `shift` turns (in [-0.5, 0.5]): torchvision's adjust_hue (rgb -> hsv,
    H + shift mod 1, hsv -> rgb), fused: V and V S = max - min are kept, so only H is computed."""
    maxc, delta, h6 = _hue_sextant(x)
    h6 = h6 + 6.0 * _as_factor(shift, x).view(-1, 1, 1)
    return _rgb_from_hue(maxc, delta, h6).clamp_(0.0, 1.0)


def blur_kernel_size(side: int) -> int:
    """SimCLR's Gaussian blur kernel: about 10% of the image side, made odd (224 -> 23, 32 -> 3),
    at least 3 taps."""
    return 2 * ((side // 10) // 2) + 1 if side >= 20 else 3


def gaussian_blur(x: Tensor, sigma, kernel_size: int) -> Tensor:
    """Per-sample Gaussian blur: separable kernels exp(-t^2 / (2 sigma^2)), t = -r..r, normalized
    to sum 1, reflect padding (torchvision's gaussian_blur with one kernel per image)."""
    b, c, height, width = x.shape
    radius = kernel_size // 2
    if kernel_size < 1 or kernel_size % 2 == 0 or radius >= min(height, width):
        raise ConfigError(
            f"kernel_size: expected an odd size with half-width below the image side {min(height, width)}, "
            f"got {kernel_size}")
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(b)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, K)
    y = F.pad(x, (radius, radius, radius, radius), mode="reflect").reshape(1, b * c, height + 2 * radius,
                                                                            width + 2 * radius)
    y = F.conv2d(y, kernel.view(b * c, 1, 1, kernel_size), groups=b * c)  # along W
    y = F.conv2d(y, kernel.view(b * c, 1, kernel_size, 1), groups=b * c)  # along H
    return y.view(b, c, height, width)


def solarize(x: Tensor, threshold) -> Tensor:
    """Invert the pixels at or above the threshold (torchvision's solarize)."""
    return torch.where(x >= _as_factor(threshold, x), 1.0 - x, x)


def autocontrast(x: Tensor) -> Tensor:
    """Stretch each channel of each image to [0, 1]; constant channels stay as they are."""
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    span = high - low
    stretched = (x - low) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, stretched, x).clamp(0.0, 1.0)


def equalize(x: Tensor) -> Tensor:
    """Histogram equalization per channel on 256 levels, PIL's ImageOps.equalize rule:
    step = (pixels - count of the top non-empty level) // 255; level i -> (cum[i-1] + step // 2)
    // step; a channel with step 0 is left unchanged."""
    b, c, height, width = x.shape
    levels = torch.round(x.clamp(0.0, 1.0) * 255.0).long().view(b * c, height * width)
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, levels, torch.ones_like(levels))
    cum = hist.cumsum(dim=1)
    top = cum.argmax(dim=1, keepdim=True)  # first level reaching the total = top non-empty level
    step = (height * width - hist.gather(1, top)) // 255
    lut = ((cum - hist + step.clamp(min=1) // 2) // step.clamp(min=1)).clamp(max=255)
    out = (lut.gather(1, levels).to(x.dtype) / 255.0).view(b, c, height, width)
    return torch.where((step > 0).view(b, c, 1, 1), out, x)


def posterize(x: Tensor, bits) -> Tensor:
    """Keep the `bits` most significant bits of each 8-bit level (PIL/torchvision uint8 rule)."""
    bits = _as_factor(bits, x)
    step = torch.pow(2.0, 8.0 - bits)
    levels = torch.round(x * 255.0)
    return torch.floor(levels / step) * step / 255.0


def adjust_sharpness(x: Tensor, factor) -> Tensor:
    """Blend with the image smoothed by [[1,1,1],[1,5,1],[1,1,1]]/13 (border pixels unsmoothed),
    PIL's ImageEnhance.Sharpness as torchvision defines it."""
    if x.shape[-1] <= 2 or x.shape[-2] <= 2:
        return x
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(3, 1, 3, 3)
    smooth = F.pad(F.conv2d(x, kernel, groups=3), (1, 1, 1, 1))
    interior = torch.zeros_like(x[:1, :1], dtype=torch.bool)
    interior[..., 1:-1, 1:-1] = True
    return blend(x, torch.where(interior, smooth, x), factor)


def warp(x: Tensor, theta: Tensor, size: int, mode: str = "bilinear", fill: Sequence[float] | None = None) -> Tensor:
    """Resample each image through its own affine map `theta` (B, 2, 3), which takes normalized
    output coordinates to normalized input coordinates (align_corners=False: -1 and 1 are the
    outer pixel EDGES). fill=None replicates the border; otherwise pixels from outside the image
    take the fill colour (bilinear edges blended with it)."""
    b, c = x.shape[:2]
    grid = F.affine_grid(theta.to(x.dtype), [b, c, size, size], align_corners=False)
    if fill is None:
        out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    else:
        ones = torch.ones_like(x[:, :1])
        sampled = F.grid_sample(torch.cat([x, ones], dim=1), grid, mode=mode, padding_mode="zeros",
                                align_corners=False)
        colour = torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
        out = sampled[:, :c] + (1.0 - sampled[:, c:]) * colour
    return out.clamp(0.0, 1.0) if mode == "bicubic" else out


def pixel_affine_to_theta(matrix: Tensor, height: int, width: int) -> Tensor:
    """Convert per-sample affine maps in pixel-EDGE coordinates (x in [0, W], output -> input,
    PIL's convention) to `warp`'s normalized theta: theta = N A N^-1, N(x) = 2 x / W - 1."""
    dtype, device = matrix.dtype, matrix.device
    n = torch.tensor([[2.0 / width, 0.0, -1.0], [0.0, 2.0 / height, -1.0], [0.0, 0.0, 1.0]], dtype=dtype,
                     device=device)
    n_inv = torch.tensor([[width / 2.0, 0.0, width / 2.0], [0.0, height / 2.0, height / 2.0], [0.0, 0.0, 1.0]],
                         dtype=dtype, device=device)
    last = torch.tensor([0.0, 0.0, 1.0], dtype=dtype, device=device).expand(matrix.shape[0], 1, 3)
    full = torch.cat([matrix, last], dim=1)
    return (n @ full @ n_inv)[:, :2]


# --------------------------------------------------------------------------- ops

class ViewOp:
    """One step of a view pipeline, applied to a whole batch at once.

    `sample` draws every random parameter of the batch (one entry per image) from the generator;
    `apply` is a pure tensor function of the float images and those parameters.
    """

    random = True

    def sample(self, batch: int, height: int, width: int, generator: torch.Generator) -> Params:
        return {}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        raise NotImplementedError

    def __call__(self, images: Tensor, generator: torch.Generator | None = None,
                 part: tuple[int, int] | None = None) -> Tensor:
        """`part=(total, start)`: `images` are rows start.. of a batch of `total`; the parameters
        are drawn for the whole batch (the same draws as one call on it) and these rows' used."""
        params, (b, _, height, width) = {}, images.shape
        if self.random:
            if not isinstance(generator, torch.Generator):
                raise ConfigError(f"generator: expected a seeded torch.Generator for {type(self).__name__}, "
                                  f"got {generator!r}")
            total, start = part or (b, 0)
            drawn = self.sample(total, height, width, generator)
            params = {k: v[start:start + b].to(images.device) for k, v in drawn.items()}
        if b == 0:  # no rows here (the draws above keep the generator in step with the other ranks)
            side = getattr(self, "size", None)
            return images if side is None else images.new_zeros((0, images.shape[1], side, side))
        return self.apply(images, params)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class RandomResizedCrop(ViewOp):
    """torchvision's RandomResizedCrop + RandomHorizontalFlip fused into one per-sample affine warp
    to `size` x `size` (see the module docstring for the sampler and the resampling choices)."""

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_p: float = 0.5,
                 interpolation: str = "bilinear", trials: int = 10):
        self.size = _check_size("size", size)
        self.scale = _check_range("scale", scale, upper=1.0)
        self.ratio = _check_range("ratio", ratio)
        self.flip_p = _check_prob("flip_p", flip_p)
        self.interpolation = _check_interpolation(interpolation)
        self.trials = _check_size("trials", trials)

    def _fallback(self, height: int, width: int) -> tuple[int, int]:
        """torchvision's box after `trials` failures: the whole image, cut to the ratio range."""
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            return width, int(round(width / self.ratio[0]))
        if in_ratio > self.ratio[1]:
            return int(round(height * self.ratio[1])), height
        return width, height

    def sample(self, batch, height, width, generator):
        f64 = torch.float64
        area = _uniform(generator, *self.scale, batch, self.trials, dtype=f64) * (height * width)
        log_ratio = _uniform(generator, math.log(self.ratio[0]), math.log(self.ratio[1]), batch, self.trials,
                             dtype=f64)
        aspect = torch.exp(log_ratio)
        w = torch.round(torch.sqrt(area * aspect))
        h = torch.round(torch.sqrt(area / aspect))
        valid = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
        first = valid.to(torch.int8).argmax(dim=1, keepdim=True)  # first valid trial (0 if none)
        found = valid.any(dim=1)
        fallback_w, fallback_h = self._fallback(height, width)
        w = torch.where(found, w.gather(1, first).squeeze(1), torch.full_like(found, fallback_w, dtype=f64))
        h = torch.where(found, h.gather(1, first).squeeze(1), torch.full_like(found, fallback_h, dtype=f64))
        u = _rand(generator, batch, 2, dtype=f64)
        # randint(0, n - h + 1) as floor(u * (n - h + 1)); the fallback box is centred instead
        top = torch.minimum(torch.floor(u[:, 0] * (height - h + 1)), height - h)
        left = torch.minimum(torch.floor(u[:, 1] * (width - w + 1)), width - w)
        top = torch.where(found, top, torch.full_like(top, (height - fallback_h) // 2))
        left = torch.where(found, left, torch.full_like(left, (width - fallback_w) // 2))
        flip = _rand(generator, batch) < self.flip_p
        return {"top": top.long(), "left": left.long(), "height": h.long(), "width": w.long(), "flip": flip}

    def apply(self, images, params):
        b, _, height, width = images.shape
        top, left, h, w = (params[k].to(torch.float64) for k in ("top", "left", "height", "width"))
        # box [left, left + w) x [top, top + h) in pixel edges -> normalized: centre and half-extent
        scale_x = torch.where(params["flip"], -w / width, w / width)
        theta = torch.zeros(b, 2, 3, dtype=torch.float64, device=images.device)
        theta[:, 0, 0] = scale_x
        theta[:, 0, 2] = (2 * left + w) / width - 1
        theta[:, 1, 1] = h / height
        theta[:, 1, 2] = (2 * top + h) / height - 1
        return warp(images, theta, self.size, self.interpolation)


class ColorJitter(ViewOp):
    """RandomApply(ColorJitter(brightness, contrast, saturation, hue), p) with per-sample factors
    and a per-sample random order of the four adjustments (module docstring)."""

    BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1,
                 p: float = 0.8):
        self.brightness = _check_nonneg("brightness", brightness)
        self.contrast = _check_nonneg("contrast", contrast)
        self.saturation = _check_nonneg("saturation", saturation)
        self.hue = _check_nonneg("hue", hue, upper=0.5)
        self.p = _check_prob("p", p)

    def sample(self, batch, height, width, generator):
        on = _rand(generator, batch) < self.p

        def factor(strength, neutral):  # torchvision: uniform [max(0, 1 - s), 1 + s]; hue: [-h, h]
            low, high = (max(0.0, 1.0 - strength), 1.0 + strength) if neutral == 1.0 else (-strength, strength)
            drawn = _uniform(generator, low, high, batch)
            return torch.where(on, drawn, torch.full_like(drawn, neutral))

        return {
            "apply": on,
            "brightness": factor(self.brightness, 1.0),
            "contrast": factor(self.contrast, 1.0),
            "saturation": factor(self.saturation, 1.0),
            "hue": factor(self.hue, 0.0),
            "order": torch.argsort(_rand(generator, batch, 4), dim=1),  # a uniform random permutation per row
        }

    @classmethod
    def schedule(cls, order: Tensor) -> tuple[Tensor, Tensor]:
        """Split each sample's order of the four adjustments at the hue step: the (B, 3) op ids
        done before hue and after it, -1 marking an empty slot."""
        slot = torch.arange(3, device=order.device)
        hue_at = (order == cls.HUE).to(torch.int8).argmax(dim=1, keepdim=True)
        before = torch.where(slot < hue_at, order[:, :3], torch.full_like(order[:, :3], -1))
        after_at = hue_at + 1 + slot
        after = torch.where(after_at <= 3, order.gather(1, after_at.clamp(max=3)), torch.full_like(after_at, -1))
        return before, after

    @classmethod
    def _blend_slot(cls, x: Tensor, op: Tensor, factors: Tensor) -> Tensor:
        """Brightness, contrast or saturation, whichever `op` names for each sample (-1: none).
        All three blend x with a target: black, the mean gray, the gray image. Only the samples
        with an op in this slot are computed (each sample has its three in six slots)."""
        rows = (op >= 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            return x
        y, op = x.index_select(0, rows), op.index_select(0, rows)
        f = factors.index_select(0, rows).gather(1, op[:, None]).squeeze(1)
        gray = rgb_to_grayscale(y)
        mean_gray = gray.mean(dim=(1, 2, 3), keepdim=True)
        op = _per_sample(op)
        target = gray * (op == cls.SATURATION) + mean_gray * (op == cls.CONTRAST)  # brightness: black
        return x.index_copy(0, rows, blend(y, target, f))

    def apply(self, images, params):
        """The jitter of the samples it applies to (`apply`, probability p), the others unchanged."""
        rows = params["apply"].nonzero().squeeze(1)
        if rows.numel() == 0:
            return images
        factors = torch.stack([params["brightness"], params["contrast"], params["saturation"]], dim=1)
        factors = factors.index_select(0, rows)
        before, after = self.schedule(params["order"].index_select(0, rows))
        x = images.index_select(0, rows)
        for slot in range(3):
            x = self._blend_slot(x, before[:, slot], factors)
        if self.hue > 0:
            x = adjust_hue(x, params["hue"].index_select(0, rows))
        for slot in range(3):
            x = self._blend_slot(x, after[:, slot], factors)
        return images.index_copy(0, rows, x)


class RandomGrayscale(ViewOp):
    """With probability p, the luma copied to the three channels."""

    def __init__(self, p: float = 0.2):
        self.p = _check_prob("p", p)

    def sample(self, batch, height, width, generator):
        return {"apply": _rand(generator, batch) < self.p}

    def apply(self, images, params):
        return torch.where(_per_sample(params["apply"]), rgb_to_grayscale(images).expand_as(images), images)


class GaussianBlur(ViewOp):
    """With probability p, a Gaussian blur with sigma uniform in `sigma` per sample; kernel_size
    None -> `blur_kernel_size` of the image side (10%, SimCLR)."""

    def __init__(self, p: float = 0.5, sigma=(0.1, 2.0), kernel_size: int | None = None):
        self.p = _check_prob("p", p)
        self.sigma = _check_range("sigma", sigma)
        if kernel_size is not None and (_check_size("kernel_size", kernel_size) % 2 == 0):
            raise ConfigError(f"kernel_size: expected an odd number, got {kernel_size}")
        self.kernel_size = kernel_size

    def sample(self, batch, height, width, generator):
        return {"apply": _rand(generator, batch) < self.p, "sigma": _uniform(generator, *self.sigma, batch)}

    def apply(self, images, params):
        k = self.kernel_size or blur_kernel_size(min(images.shape[-2:]))
        return torch.where(_per_sample(params["apply"]), gaussian_blur(images, params["sigma"], k), images)


class Solarize(ViewOp):
    """With probability p, invert the pixels >= threshold (BYOL: threshold 0.5 on [0, 1])."""

    def __init__(self, p: float = 0.2, threshold: float = 0.5):
        self.p = _check_prob("p", p)
        self.threshold = _check_nonneg("threshold", threshold, upper=1.0)

    def sample(self, batch, height, width, generator):
        return {"apply": _rand(generator, batch) < self.p}

    def apply(self, images, params):
        return torch.where(_per_sample(params["apply"]), solarize(images, self.threshold), images)


# RandAugment as in InfoMin's code (PyContrast, from timm): these 15 ops, chosen uniformly with
# replacement, `num_ops` per image, each applied with probability 0.5, magnitude ~ N(m, 0.5)
# clipped to [0, 10], level = magnitude / 10. Signed ops (rotate, shear, translate) flip sign with
# probability 0.5. Enhance ops (color, contrast, brightness, sharpness) use factor 0.1 + 1.8 level.
RANDAUGMENT_OPS = ("autocontrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add", "color",
                   "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")
_RA = {name: i for i, name in enumerate(RANDAUGMENT_OPS)}
# fill of the geometric ops: the ImageNet mean on 8-bit levels (124, 116, 104), as InfoMin's code
RANDAUGMENT_FILL = tuple(round(255 * m) / 255 for m in IMAGENET_MEAN)


class RandAugment(ViewOp):
    """Batched RandAugment ('rand-n2-m10-mstd0.5' by default): per sample and layer one op of
    `RANDAUGMENT_OPS`. Geometric ops: rotate +-30 level deg about the centre, shear +-0.3 level
    (PIL's affine about the top-left corner), translate +-0.45 level of the side; all in one
    bilinear warp filled with `fill`. Pixel ops on 8-bit levels: posterize keeps int(4 level) bits,
    solarize threshold int(256 level), solarize_add adds int(110 level) below 128."""

    def __init__(self, num_ops: int = 2, magnitude: float = 10.0, magnitude_std: float = 0.5, op_p: float = 0.5,
                 fill: Sequence[float] = RANDAUGMENT_FILL):
        self.num_ops = _check_size("num_ops", num_ops)
        self.magnitude = _check_nonneg("magnitude", magnitude, upper=10.0)
        self.magnitude_std = _check_nonneg("magnitude_std", magnitude_std)
        self.op_p = _check_prob("op_p", op_p)
        self.fill = tuple(float(v) for v in fill)

    def sample(self, batch, height, width, generator):
        n = self.num_ops
        op = torch.randint(len(RANDAUGMENT_OPS), (batch, n), generator=generator, device=generator.device)
        on = _rand(generator, batch, n) < self.op_p
        noise = torch.randn((batch, n), generator=generator, device=generator.device)
        level = (self.magnitude + self.magnitude_std * noise).clamp(0.0, 10.0) / 10.0
        sign = torch.where(_rand(generator, batch, n) < 0.5, -1.0, 1.0)
        return {"op": op, "apply": on, "level": level, "sign": sign}

    def _geometry(self, op: Tensor, level: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
        """Per-sample output -> input maps in pixel-edge coordinates (identity for non-geometric ops)."""
        b = op.shape[0]
        signed = level * sign
        m = torch.eye(2, 3, dtype=torch.float32, device=op.device).repeat(b, 1, 1)
        angle = torch.deg2rad(30.0 * signed)  # PIL rotate: counter-clockwise on screen
        cos, sin = torch.cos(angle), torch.sin(angle)
        cx, cy = width / 2.0, height / 2.0
        rot = torch.stack([torch.stack([cos, -sin, cx - cos * cx + sin * cy], dim=1),
                           torch.stack([sin, cos, cy - sin * cx - cos * cy], dim=1)], dim=1)
        m = torch.where((op == _RA["rotate"]).view(b, 1, 1), rot, m)
        m[:, 0, 1] = torch.where(op == _RA["shear_x"], 0.3 * signed, m[:, 0, 1])
        m[:, 1, 0] = torch.where(op == _RA["shear_y"], 0.3 * signed, m[:, 1, 0])
        m[:, 0, 2] = torch.where(op == _RA["translate_x"], 0.45 * signed * width, m[:, 0, 2])
        m[:, 1, 2] = torch.where(op == _RA["translate_y"], 0.45 * signed * height, m[:, 1, 2])
        return m

    def _layer(self, x: Tensor, op: Tensor, on: Tensor, level: Tensor, sign: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        enhance = 0.1 + 1.8 * level
        pixel_ops: dict[str, Callable[[], Tensor]] = {
            "autocontrast": lambda: autocontrast(x),
            "equalize": lambda: equalize(x),
            "invert": lambda: 1.0 - x,
            "posterize": lambda: posterize(x, torch.floor(4.0 * level)),
            "solarize": lambda: solarize(x, torch.floor(256.0 * level) / 255.0),
            "solarize_add": lambda: torch.where(x < 128.0 / 255.0,
                                                (x + _per_sample(torch.floor(110.0 * level) / 255.0)).clamp(max=1.0), x),
            "color": lambda: adjust_saturation(x, enhance),
            "contrast": lambda: adjust_contrast(x, enhance),
            "brightness": lambda: adjust_brightness(x, enhance),
            "sharpness": lambda: adjust_sharpness(x, enhance),
        }
        out = x
        for name, fn in pixel_ops.items():
            out = torch.where(_per_sample(on & (op == _RA[name])), fn(), out)
        geometric = torch.stack([op == _RA[n] for n in ("rotate", "shear_x", "shear_y", "translate_x",
                                                        "translate_y")]).any(dim=0) & on
        theta = pixel_affine_to_theta(self._geometry(op, level, sign, height, width), height, width)
        warped = warp(x, theta, height, fill=self.fill)
        return torch.where(_per_sample(geometric), warped, out)

    def apply(self, images, params):
        if images.shape[-1] != images.shape[-2]:
            raise ConfigError(f"images: RandAugment expects square images, got {tuple(images.shape[-2:])}")
        x = images
        for i in range(self.num_ops):
            x = self._layer(x, params["op"][:, i], params["apply"][:, i], params["level"][:, i],
                            params["sign"][:, i])
        return x


class CenterCropResize(ViewOp):
    """Deterministic evaluation geometry: optionally resize the shorter side to `resize`
    (antialiased bilinear), centre-crop `size` x `size` (torchvision's rounding), and when the
    image is smaller than `size`, centre-crop the largest square and resize it up to `size`."""

    random = False

    def __init__(self, size: int, resize: int | None = None):
        self.size = _check_size("size", size)
        self.resize = None if resize is None else _check_size("resize", resize)

    def apply(self, images, params):
        x = images
        height, width = x.shape[-2:]
        if self.resize is not None and min(height, width) != self.resize:
            short = min(height, width)
            height, width = (self.resize, int(self.resize * width / short)) if height == short else \
                (int(self.resize * height / short), self.resize)
            x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        side = min(self.size, height, width)
        top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
        x = x[..., top:top + side, left:left + side]
        if side != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x.clamp(0.0, 1.0)


# --------------------------------------------------------------------------- the pipeline

class ViewPipeline:
    """ops applied in order to a batch, then normalization: `pipe(images, generator)` ->
    float32 (B, 3, out_size, out_size). A geometric op must produce `out_size`; a pipeline without
    one resizes the result to `out_size` (antialiased bilinear) if its side differs."""

    def __init__(self, ops: Sequence[ViewOp], out_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.ops = list(ops)
        self.out_size = _check_size("out_size", out_size)
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
        Pre-cropped images, uint8 (B, K, 3, S, S) from `common.data.crops`, carry one crop per view
        slot with the geometry already applied: `slot` picks this view's, the other ops follow."""
        ops = self.ops
        if images.dim() == 5:
            images, ops = self._precropped(images, slot), self.ops[1:]
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
            raise ConfigError("pre-cropped images (B, K, 3, S, S): this view pipeline does not start with a "
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
        if images.dim() == 5 and images.is_floating_point():  # views the loader already finished
            return self._precropped(images, slot)
        return self.normalize(self.augment(images, generator, part, slot))

    def __repr__(self) -> str:
        ops = ",\n  ".join(repr(op) for op in self.ops)
        return f"ViewPipeline(out_size={self.out_size}, mean={self.mean}, std={self.std}, ops=[\n  {ops}])"


# --------------------------------------------------------------------------- recipes

def _pipeline(ops, out_size, norm):
    mean, std = resolve_norm(norm)
    return ViewPipeline(ops, out_size, mean, std)


def simclr_views(out_size: int, strength: float = 1.0, blur: bool = True, crop_scale=(0.08, 1.0),
                 interpolation: str = "bilinear", norm: Norm = "imagenet") -> ViewPipeline:
    """SimCLR (Chen et al. 2020, appendix A): random resized crop (0.08, 1) + flip, colour jitter
    (0.8s, 0.8s, 0.8s, 0.2s) with p 0.8, grayscale p 0.2, Gaussian blur p 0.5 sigma (0.1, 2.0) with
    a 10% kernel. s = 1 on ImageNet, 0.5 is common on CIFAR; SimCLR left blur out on CIFAR (blur=False).
    No solarize. Two views = this pipeline called twice."""
    s = _check_nonneg("strength", strength)
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
