"""Batched image kernels of the view ops, on float images in [0, 1], (B, 3, H, W).

Every factor is a tensor with one entry per sample (or a number). The definitions follow
torchvision's tensor functionals (transforms.v2.functional); the differences are noted where they
are made. Random draws happen on the generator's device (a CPU generator gives the same
parameters whatever device the images are on).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from common.errors import ConfigError

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (ITU-R 601 luma)


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



def draw_uniform01(generator: torch.Generator, *shape: int, dtype=torch.float32) -> Tensor:
    """Uniform [0, 1) on the generator's device (moved to the images' device by the op)."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)


def draw_uniform(generator: torch.Generator, low: float, high: float, *shape: int, dtype=torch.float32) -> Tensor:
    return low + (high - low) * draw_uniform01(generator, *shape, dtype=dtype)


def per_sample(t: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1), to broadcast a per-sample value over an image batch."""
    return t.view(-1, 1, 1, 1)


# Every factor below is a tensor with one entry per sample (or a number); images are float [0, 1].

def rgb_to_grayscale(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma, torchvision's weights."""
    r, g, b = x.unbind(dim=1)
    return (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).unsqueeze(1)


def _as_factor(factor, x: Tensor) -> Tensor:
    f = torch.as_tensor(factor, dtype=x.dtype, device=x.device)
    return per_sample(f) if f.ndim == 1 else f


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
