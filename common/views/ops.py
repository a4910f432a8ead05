"""The view ops: each draws every random parameter of a batch per sample, then applies them.

Each op has `sample(batch, height, width, generator) -> dict of tensors` (all the randomness) and
`apply(images, params)` (a pure tensor function), so tests can set parameters by hand. Every op
draws a fixed number of values per sample, whatever the data, so the stream is reproducible;
`p = 0` leaves a sample bit-for-bit unchanged (results are selected with `torch.where`).

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
- CenterCropResize: the deterministic evaluation geometry.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from common.errors import ConfigError
from common.views.checks import check_interpolation, check_nonneg, check_prob, check_range, check_size
from common.views.functional import (adjust_hue, blend, blur_kernel_size, draw_uniform, draw_uniform01, gaussian_blur,
                                     per_sample, rgb_to_grayscale, solarize, warp)

Params = dict[str, Tensor]

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
        self.size = check_size("size", size)
        self.scale = check_range("scale", scale, upper=1.0)
        self.ratio = check_range("ratio", ratio)
        self.flip_p = check_prob("flip_p", flip_p)
        self.interpolation = check_interpolation(interpolation)
        self.trials = check_size("trials", trials)

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
        area = draw_uniform(generator, *self.scale, batch, self.trials, dtype=f64) * (height * width)
        log_ratio = draw_uniform(generator, math.log(self.ratio[0]), math.log(self.ratio[1]), batch, self.trials,
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
        u = draw_uniform01(generator, batch, 2, dtype=f64)
        # randint(0, n - h + 1) as floor(u * (n - h + 1)); the fallback box is centred instead
        top = torch.minimum(torch.floor(u[:, 0] * (height - h + 1)), height - h)
        left = torch.minimum(torch.floor(u[:, 1] * (width - w + 1)), width - w)
        top = torch.where(found, top, torch.full_like(top, (height - fallback_h) // 2))
        left = torch.where(found, left, torch.full_like(left, (width - fallback_w) // 2))
        flip = draw_uniform01(generator, batch) < self.flip_p
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
        self.brightness = check_nonneg("brightness", brightness)
        self.contrast = check_nonneg("contrast", contrast)
        self.saturation = check_nonneg("saturation", saturation)
        self.hue = check_nonneg("hue", hue, upper=0.5)
        self.p = check_prob("p", p)

    def sample(self, batch, height, width, generator):
        on = draw_uniform01(generator, batch) < self.p

        def factor(strength, neutral):  # torchvision: uniform [max(0, 1 - s), 1 + s]; hue: [-h, h]
            low, high = (max(0.0, 1.0 - strength), 1.0 + strength) if neutral == 1.0 else (-strength, strength)
            drawn = draw_uniform(generator, low, high, batch)
            return torch.where(on, drawn, torch.full_like(drawn, neutral))

        return {
            "apply": on,
            "brightness": factor(self.brightness, 1.0),
            "contrast": factor(self.contrast, 1.0),
            "saturation": factor(self.saturation, 1.0),
            "hue": factor(self.hue, 0.0),
            "order": torch.argsort(draw_uniform01(generator, batch, 4), dim=1),  # a uniform random permutation per row
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
        op = per_sample(op)
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
        self.p = check_prob("p", p)

    def sample(self, batch, height, width, generator):
        return {"apply": draw_uniform01(generator, batch) < self.p}

    def apply(self, images, params):
        return torch.where(per_sample(params["apply"]), rgb_to_grayscale(images).expand_as(images), images)


class GaussianBlur(ViewOp):
    """With probability p, a Gaussian blur with sigma uniform in `sigma` per sample; kernel_size
    None -> `blur_kernel_size` of the image side (10%, SimCLR)."""

    def __init__(self, p: float = 0.5, sigma=(0.1, 2.0), kernel_size: int | None = None):
        self.p = check_prob("p", p)
        self.sigma = check_range("sigma", sigma)
        if kernel_size is not None and (check_size("kernel_size", kernel_size) % 2 == 0):
            raise ConfigError(f"kernel_size: expected an odd number, got {kernel_size}")
        self.kernel_size = kernel_size

    def sample(self, batch, height, width, generator):
        return {"apply": draw_uniform01(generator, batch) < self.p, "sigma": draw_uniform(generator, *self.sigma, batch)}

    def apply(self, images, params):
        k = self.kernel_size or blur_kernel_size(min(images.shape[-2:]))
        return torch.where(per_sample(params["apply"]), gaussian_blur(images, params["sigma"], k), images)


class Solarize(ViewOp):
    """With probability p, invert the pixels >= threshold (BYOL: threshold 0.5 on [0, 1])."""

    def __init__(self, p: float = 0.2, threshold: float = 0.5):
        self.p = check_prob("p", p)
        self.threshold = check_nonneg("threshold", threshold, upper=1.0)

    def sample(self, batch, height, width, generator):
        return {"apply": draw_uniform01(generator, batch) < self.p}

    def apply(self, images, params):
        return torch.where(per_sample(params["apply"]), solarize(images, self.threshold), images)

class CenterCropResize(ViewOp):
    """Deterministic evaluation geometry: optionally resize the shorter side to `resize`
    (antialiased bilinear), centre-crop `size` x `size` (torchvision's rounding), and when the
    image is smaller than `size`, centre-crop the largest square and resize it up to `size`."""

    random = False

    def __init__(self, size: int, resize: int | None = None):
        self.size = check_size("size", size)
        self.resize = None if resize is None else check_size("resize", resize)

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
