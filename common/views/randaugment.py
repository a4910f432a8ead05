"""RandAugment for whole batches (InfoMin's "stronger augmentation", see `recipes.infomin_views`).

The 15 ops and magnitude rules of the RandAugment used by InfoMin's public code (PyContrast, itself
timm's), re-implemented for batches on [0, 1] floats: geometric ops in one affine warp (bilinear;
PIL picked bilinear or bicubic at random; fill = ImageNet mean colour), 8-bit semantics for
equalize / posterize / solarize thresholds, no rounding to 8 bits between ops, and the enhance ops
reuse the jitter kernels (luma weights 0.2989 where PIL's "Color" uses 0.299).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from common.errors import ConfigError
from common.views.checks import check_nonneg, check_prob, check_size
from common.views.functional import (adjust_brightness, adjust_contrast, adjust_saturation, adjust_sharpness, autocontrast,
                                     draw_uniform01, equalize, per_sample, pixel_affine_to_theta, posterize, solarize, warp)
from common.views.normalization import IMAGENET_MEAN
from common.views.ops import ViewOp

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
        self.num_ops = check_size("num_ops", num_ops)
        self.magnitude = check_nonneg("magnitude", magnitude, upper=10.0)
        self.magnitude_std = check_nonneg("magnitude_std", magnitude_std)
        self.op_p = check_prob("op_p", op_p)
        self.fill = tuple(float(v) for v in fill)

    def sample(self, batch, height, width, generator):
        n = self.num_ops
        op = torch.randint(len(RANDAUGMENT_OPS), (batch, n), generator=generator, device=generator.device)
        on = draw_uniform01(generator, batch, n) < self.op_p
        noise = torch.randn((batch, n), generator=generator, device=generator.device)
        level = (self.magnitude + self.magnitude_std * noise).clamp(0.0, 10.0) / 10.0
        sign = torch.where(draw_uniform01(generator, batch, n) < 0.5, -1.0, 1.0)
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
                                                (x + per_sample(torch.floor(110.0 * level) / 255.0)).clamp(max=1.0), x),
            "color": lambda: adjust_saturation(x, enhance),
            "contrast": lambda: adjust_contrast(x, enhance),
            "brightness": lambda: adjust_brightness(x, enhance),
            "sharpness": lambda: adjust_sharpness(x, enhance),
        }
        out = x
        for name, fn in pixel_ops.items():
            out = torch.where(per_sample(on & (op == _RA[name])), fn(), out)
        geometric = torch.stack([op == _RA[n] for n in ("rotate", "shear_x", "shear_y", "translate_x",
                                                        "translate_y")]).any(dim=0) & on
        theta = pixel_affine_to_theta(self._geometry(op, level, sign, height, width), height, width)
        warped = warp(x, theta, height, fill=self.fill)
        return torch.where(per_sample(geometric), warped, out)

    def apply(self, images, params):
        if images.shape[-1] != images.shape[-2]:
            raise ConfigError(f"images: RandAugment expects square images, got {tuple(images.shape[-2:])}")
        x = images
        for i in range(self.num_ops):
            x = self._layer(x, params["op"][:, i], params["apply"][:, i], params["level"][:, i],
                            params["sign"][:, i])
        return x
