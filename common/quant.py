"""The quantizer of both papers' low-precision work, and quantizing Conv2d / Linear layers.

Two quantizer modes (docs/protocols.md section 1):

``floor`` (the default; Contrastive Quant, Sec. 3.4, Eq. 9)
    ``A_q = S * floor(A / S)`` with ``S = (max(A) - min(A)) / (2^q - 1)``, one range per tensor,
    for weights and activations alike, taken fresh at every forward (train and eval).
    Gradient: identity straight-through.

``cpt`` (the same lab's cyclic-precision-training code)
    asymmetric round-to-nearest ``x_q = round(clamp((x - min) / S, 0, 2^q - 1)) * S + min``;
    weights use a min/max per output channel taken fresh at every forward; the input
    activation of a layer uses the min/max of the whole batch tensor in training and an
    exponential moving average (momentum 0.9) of min and range in eval.
    Gradient: identity straight-through, no clipping mask.

Choices made where the papers are silent (each one is a parameter of `QuantConfig`):

* A tensor whose range is zero (e.g. an all-zero activation) is returned unchanged by both
  modes: Eq. 9 divides by zero there, and CPT clamps ``S`` to 1e-8, which gives the same result.
* ``q >= 32`` (or ``None``) means full precision: the layer runs the plain FP forward, bit for
  bit. float32 holds a 24-bit mantissa, so a 32-bit uniform grid would only add rounding noise.
* Biases are not quantized (ResNets' convs have none; heads stay FP in CQ anyway).
* The CPT activation EMA is one per layer, shared by all bit-widths (as BatchNorm is shared).
* ``grad_bits`` (off by default): CPT also quantized the back-propagated error to 8 bits with
  stochastic rounding; whether CQ did is unknown. Here the error arriving at a quantized
  layer's output is quantized per tensor, asymmetric, ``floor((g - min) / S + u)`` with
  ``u ~ U[0, 1)`` (unbiased), before it flows back through the layer.
* ``switchable_bn`` (off by default): one BatchNorm per bit-width (and one for FP), selected by
  the current precision, as in a related lab project; otherwise BatchNorm is shared.

Precision of the arithmetic: a quantizing layer (at q < 32 bits) always computes in true fp32,
whatever the rest of the run does. Under bf16 autocast (the engine's default on a GPU) the
quantizer would otherwise divide, floor and multiply in bf16 (8 mantissa bits) and the conv would
take bf16 operands, so q = 9..16 would all collapse to bf16 rounding; TF32 (the default of cuDNN
convolutions on Ampere and later GPUs, 10 mantissa bits) caps q the same way. ``exact_fp32`` turns
autocast and TF32 off for the forward of the layer only; layers at full precision, BatchNorm and
the heads keep the run's settings. The backward of the conv follows the run's global TF32 setting
(the straight-through gradient is not a q-bit quantity). Cost: see ``bench/quant.py``.

Speed: the per-output-channel and per-tensor CPT quantizers use torch's fused fake-quantization
kernels; the floor mode is a division, an in-place floor and an in-place multiply.
Both are custom autograd functions whose backward returns the incoming gradient untouched, so
the straight-through estimator costs no pass at all (see ``bench/quant.py``).
"""
from __future__ import annotations

import fnmatch
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import quant_codes
from common.errors import ConfigError

MODES = ("floor", "cpt")
FULL_PRECISION_BITS = 32  # q >= 32 runs the plain FP forward
MAX_BITS = 32
CPT_EMA_MOMENTUM = 0.9  # docs/protocols.md section 1: EMA of min and range, momentum 0.9
CPT_MIN_SCALE = 1e-8


# --------------------------------------------------------------------------------------------
# Precision sets
# --------------------------------------------------------------------------------------------

def parse_precision_set(spec: str | int | Sequence[int]) -> tuple[int, ...]:
    """Parse a precision set: ``"4-16"`` (every integer width 4..16), ``"4,8,16"``, ``8``.

    Returns the sorted, de-duplicated widths. Widths must lie in 1..32; a range must ascend.
    """
    if isinstance(spec, bool):
        raise ConfigError(f"precision: expected a set like '6-16' or '4,8,16', got {spec!r}")
    if isinstance(spec, int):
        widths = [spec]
    elif isinstance(spec, str):
        widths = _parse_precision_string(spec)
    elif isinstance(spec, Sequence) and all(isinstance(w, int) and not isinstance(w, bool) for w in spec):
        widths = list(spec)
    else:
        raise ConfigError(f"precision: expected a set like '6-16' or '4,8,16', got {spec!r}")
    if not widths:
        raise ConfigError(f"precision: the set {spec!r} is empty")
    for w in widths:
        if not 1 <= w <= MAX_BITS:
            raise ConfigError(f"precision: bit-width {w} in {spec!r} is outside 1..{MAX_BITS}")
    return tuple(sorted(set(widths)))


def _parse_precision_string(spec: str) -> list[int]:
    text = spec.replace(" ", "")
    ranged = re.fullmatch(r"(\d+)-(\d+)", text)
    if ranged:
        lo, hi = int(ranged.group(1)), int(ranged.group(2))
        if lo > hi:
            raise ConfigError(f"precision: range {spec!r} descends; write it as '{hi}-{lo}'")
        for w in (lo, hi):
            if not 1 <= w <= MAX_BITS:
                raise ConfigError(f"precision: bit-width {w} in {spec!r} is outside 1..{MAX_BITS}")
        return list(range(lo, hi + 1))
    if re.fullmatch(r"\d+(,\d+)*", text):
        return [int(t) for t in text.split(",")]
    raise ConfigError(f"precision: cannot parse {spec!r}; expected 'LO-HI' like '6-16' or a list like '4,8,16'")


def sample_precisions(precisions: Sequence[int], n: int = 2, generator: torch.Generator | None = None,
                      distinct: bool = True) -> list[int]:
    """Draw ``n`` bit-widths uniformly from the set (CQ: q1, q2 each iteration).

    With ``distinct`` and a set of at least ``n`` members, the draws differ (sampling without
    replacement); a one-member set returns that member ``n`` times.
    """
    if not precisions:
        raise ConfigError("precision: cannot draw from an empty precision set")
    pool = list(precisions)
    device = generator.device if generator is not None else "cpu"
    if distinct and len(pool) >= n:
        idx = torch.randperm(len(pool), generator=generator, device=device)[:n]
    else:
        idx = torch.randint(len(pool), (n,), generator=generator, device=device)
    return [pool[i] for i in idx.tolist()]


def is_full_precision(bits: int | None) -> bool:
    return bits is None or bits >= FULL_PRECISION_BITS


def _check_bits(bits: int | None) -> int | None:
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ConfigError(f"bits: expected None (full precision) or an integer >= 1, got {bits!r}")
    return None if bits >= FULL_PRECISION_BITS else bits


# --------------------------------------------------------------------------------------------
# Quantizer functions (forward only; the autograd wrappers below add the straight-through grad)
# --------------------------------------------------------------------------------------------

def floor_scale(x: torch.Tensor, bits: int) -> torch.Tensor:
    """CQ Eq. 9's step ``S = (max - min) / (2^q - 1)`` of one tensor."""
    lo, hi = torch.aminmax(x.detach())
    scale = (hi - lo) / (2 ** bits - 1)
    # Zero range: use S = |x| (or 1 at zero) so that floor(x / S) * S == x exactly.
    fallback = torch.where(lo != 0, lo.abs(), torch.ones_like(lo))
    return torch.where(scale > 0, scale, fallback)


def floor_quantize(x: torch.Tensor, bits: int, scale: torch.Tensor | None = None) -> torch.Tensor:
    """CQ Eq. 9 on one tensor: ``S * floor(x / S)``, ``S = (max - min) / (2^q - 1)`` (`scale`:
    S already taken by `floor_scale`)."""
    scale = floor_scale(x, bits) if scale is None else scale
    # true division + in-place floor: ~5x faster on CPU than div(rounding_mode="floor"), which
    # corrects for the exact quotient; the two differ only where x / S is within one float32
    # ulp of an integer.
    return torch.div(x, scale).floor_().mul_(scale)


def cpt_scale(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """CPT's step ``S = max((hi - lo) / (2^q - 1), 1e-8)`` (per tensor or per channel)."""
    return ((hi - lo) / (2 ** bits - 1)).clamp_min(CPT_MIN_SCALE).float()


def cpt_channel_range(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of each output channel (dim 0) of a weight."""
    flat = w.detach().reshape(w.shape[0], -1)
    return flat.amin(dim=1), flat.amax(dim=1)


def cpt_quantize(x: torch.Tensor, bits: int, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """CPT asymmetric quantizer over the range [lo, hi] of the whole tensor.

    ``round(clamp((x - lo) / S, 0, 2^q - 1)) * S + lo`` with ``S = max((hi - lo) / (2^q - 1), 1e-8)``.
    Clamping after rounding (the fused kernel) equals clamping before, since the bounds are integers.
    """
    qmax = 2 ** bits - 1
    scale = cpt_scale(lo, hi, bits).reshape(1)
    zero = torch.zeros(1, dtype=torch.int32, device=x.device)
    shifted = x - lo
    out = torch.fake_quantize_per_tensor_affine(shifted, scale, zero, 0, qmax)
    return out.add_(lo)


def cpt_quantize_per_channel(w: torch.Tensor, bits: int) -> torch.Tensor:
    """CPT weight quantizer: min/max per output channel (dim 0), taken fresh at every forward."""
    qmax = 2 ** bits - 1
    lo, hi = cpt_channel_range(w)
    scale = cpt_scale(lo, hi, bits)
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    view = (-1,) + (1,) * (w.dim() - 1)
    lo_b = lo.view(view)
    out = torch.fake_quantize_per_channel_affine(w - lo_b, scale, zero, 0, 0, qmax)
    return out.add_(lo_b)


class _StraightThrough(torch.autograd.Function):
    """Forward: a quantizer; backward: the identity (straight-through, no clipping mask)."""

    @staticmethod
    def forward(ctx, x, fn, *args):
        with torch.no_grad():
            return fn(x, *args)

    @staticmethod
    def backward(ctx, grad):
        return (grad, None) + (None,) * (len(ctx.needs_input_grad) - 2)


def quantize_ste(x: torch.Tensor, fn, *args) -> torch.Tensor:
    """Apply quantizer ``fn(x, *args)`` with an identity gradient."""
    return _StraightThrough.apply(x, fn, *args)


def stochastic_quantize(g: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Per-tensor asymmetric quantization with stochastic rounding (unbiased in expectation)."""
    lo, hi = torch.aminmax(g)
    scale = ((hi - lo) / (2 ** bits - 1)).clamp_min(CPT_MIN_SCALE)
    noise = torch.rand_like(g)
    return torch.floor((g - lo) / scale + noise).clamp_(0, 2 ** bits - 1).mul_(scale).add_(lo)


class _QuantizeGrad(torch.autograd.Function):
    """Identity forward; the back-propagated error is quantized to ``bits`` (CPT's option)."""

    @staticmethod
    def forward(ctx, x, bits):
        ctx.bits = bits
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return stochastic_quantize(grad, ctx.bits), None


# --------------------------------------------------------------------------------------------
# Quantizing layers
# --------------------------------------------------------------------------------------------

def _tf32_switches() -> list[tuple[object, str]]:
    """(object, attribute) of every TF32 switch this torch has: the per-backend fp32_precision
    settings (torch >= 2.9) or else the legacy allow_tf32 flags (never both: torch refuses a mix)."""
    conv, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(getattr(conv, "conv", None), "fp32_precision") and hasattr(matmul, "fp32_precision"):
        return [(conv.conv, "fp32_precision"), (matmul, "fp32_precision")]
    return [(conv, "allow_tf32"), (matmul, "allow_tf32")]


_EXACT = {"fp32_precision": "ieee", "allow_tf32": False}


@contextmanager
def exact_fp32(device_type: str) -> Iterator[None]:
    """True fp32 for the body: autocast off, TF32 off for cuDNN convolutions and CUDA matmuls.
    The previous settings are restored afterwards (also after an exception)."""
    switches = _tf32_switches()
    saved = [getattr(obj, name) for obj, name in switches]
    try:
        for obj, name in switches:
            setattr(obj, name, _EXACT[name])
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        for (obj, name), value in zip(switches, saved):
            setattr(obj, name, value)


@dataclass(frozen=True)
class QuantConfig:
    """How a converted model quantizes. ``mode``: 'floor' (CQ Eq. 9) or 'cpt'."""

    mode: str = "floor"
    grad_bits: int | None = None  # CPT's 8-bit stochastic error quantization; None = off
    switchable_bn: bool = False  # one BatchNorm per bit-width

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"quant mode: expected one of {MODES}, got {self.mode!r}")
        if self.grad_bits is not None and not (isinstance(self.grad_bits, int) and 1 <= self.grad_bits < 32):
            raise ConfigError(f"grad_bits: expected None or an integer in 1..31, got {self.grad_bits!r}")


class _QuantLayer:
    """Mixin for Conv2d / Linear that quantize their weight and input at ``self.bits``."""

    bits: int | None
    config: QuantConfig

    def _init_quant(self, config: QuantConfig) -> None:
        self.bits = None
        self.config = config
        if config.mode == "cpt":  # EMA of the input's min and range, used in eval
            self.register_buffer("act_min", torch.zeros(()))
            self.register_buffer("act_range", torch.zeros(()))
            self.register_buffer("act_tracked", torch.zeros((), dtype=torch.long))

    def quantized_weight(self) -> torch.Tensor:
        if self.config.mode == "floor":
            return quantize_ste(self.weight, floor_quantize, self.bits)
        return quantize_ste(self.weight, cpt_quantize_per_channel, self.bits)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == 0:  # no range to take (a torchrun rank with no rows of a batch, eval.core.sharded)
            return x
        if self.config.mode == "floor":
            return quantize_ste(x, floor_quantize, self.bits)
        lo, hi = self._activation_range(x)
        return quantize_ste(x, cpt_quantize, self.bits, lo, hi)

    def quantized_with_scales(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_q, its scale, w_q, its scale): the same quantized tensors as quantized_input and
        quantized_weight, with the steps the code path needs (common/quant_codes.py)."""
        if self.config.mode == "floor":
            sx, sw = floor_scale(x, self.bits), floor_scale(self.weight, self.bits)
            return (quantize_ste(x, floor_quantize, self.bits, sx), sx,
                    quantize_ste(self.weight, floor_quantize, self.bits, sw), sw)
        lo, hi = self._activation_range(x)
        w_lo, w_hi = cpt_channel_range(self.weight)
        sw = cpt_scale(w_lo, w_hi, self.bits).view(-1, *([1] * (self.weight.dim() - 1)))
        return (quantize_ste(x, cpt_quantize, self.bits, lo, hi), cpt_scale(lo, hi, self.bits),
                quantize_ste(self.weight, cpt_quantize_per_channel, self.bits), sw)

    def _activation_range(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            lo, hi = torch.aminmax(x.detach())
            self._update_ema(lo, hi - lo)
            return lo, hi
        if int(self.act_tracked) == 0:  # never trained: no EMA yet, use the batch range
            return torch.aminmax(x.detach())
        return self.act_min, self.act_min + self.act_range

    @torch.no_grad()
    def _update_ema(self, lo: torch.Tensor, rng: torch.Tensor) -> None:
        # The first batch initializes the EMA; torch.where keeps the GPU free of host syncs.
        first = self.act_tracked == 0
        m = CPT_EMA_MOMENTUM
        self.act_min.copy_(torch.where(first, lo, m * self.act_min + (1 - m) * lo))
        self.act_range.copy_(torch.where(first, rng, m * self.act_range + (1 - m) * rng))
        self.act_tracked += 1

    def _maybe_quantize_grad(self, out: torch.Tensor) -> torch.Tensor:
        if self.config.grad_bits is None or not out.requires_grad:
            return out
        return _QuantizeGrad.apply(out, self.config.grad_bits)

    def extra_repr(self) -> str:
        bits = "fp" if self.bits is None else f"{self.bits}-bit"
        return f"{super().extra_repr()}, {bits}, mode={self.config.mode}"


class QuantConv2d(_QuantLayer, nn.Conv2d):
    """A Conv2d that quantizes its weight and input activation at the current bit-width."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return nn.Conv2d.forward(self, x)
        if quant_codes.active(x, self.bits) and self.groups == 1 and self.padding_mode == "zeros":
            with exact_fp32(x.device.type):  # quantizers in fp32; the conv on codes, reduced units
                xq, sx, wq, sw = self.quantized_with_scales(x.float())
                out = quant_codes.from_codes(xq, sx, wq, sw, self.bits, self.bias, (self.stride, self.padding, self.dilation))
            return self._maybe_quantize_grad(out)
        with exact_fp32(x.device.type):  # q bits must survive bf16 autocast and TF32
            out = self._conv_forward(self.quantized_input(x.float()), self.quantized_weight(), self.bias)
        return self._maybe_quantize_grad(out)


class QuantLinear(_QuantLayer, nn.Linear):
    """A Linear that quantizes its weight and input activation at the current bit-width."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return nn.Linear.forward(self, x)
        if quant_codes.active(x, self.bits):
            with exact_fp32(x.device.type):
                xq, sx, wq, sw = self.quantized_with_scales(x.float())
                out = quant_codes.from_codes(xq, sx, wq, sw, self.bits, self.bias, None)
            return self._maybe_quantize_grad(out)
        with exact_fp32(x.device.type):
            out = F.linear(self.quantized_input(x.float()), self.quantized_weight(), self.bias)
        return self._maybe_quantize_grad(out)


class SwitchableBatchNorm2d(nn.Module):
    """One BatchNorm2d per bit-width (key 'fp' for full precision), chosen by ``self.bits``."""

    def __init__(self, source: nn.BatchNorm2d, precisions: Iterable[int]):
        super().__init__()
        keys = ["fp"] + [str(q) for q in precisions if not is_full_precision(q)]
        self.bns = nn.ModuleDict()
        for key in keys:
            bn = nn.BatchNorm2d(source.num_features, source.eps, source.momentum, source.affine,
                                source.track_running_stats)
            bn.load_state_dict(source.state_dict())
            self.bns[key] = bn
        self.bits: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = "fp" if self.bits is None else str(self.bits)
        if key not in self.bns:
            raise ConfigError(f"switchable BatchNorm has no copy for {self.bits} bits; "
                              f"it was built for {sorted(self.bns.keys())}")
        return self.bns[key](x)


_QUANT_CLASSES = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}


def _to_quant(module: nn.Module, config: QuantConfig) -> nn.Module:
    """A quantizing copy of a plain Conv2d / Linear that shares its Parameter objects."""
    cls = _QUANT_CLASSES[type(module)]
    new = cls.__new__(cls)
    # Same attributes and the same weight / bias tensors, so an optimizer built before the
    # conversion still updates them.
    new.__dict__.update(module.__dict__)
    new._parameters = dict(module._parameters)
    new._buffers = dict(module._buffers)
    new._modules = dict(module._modules)
    new._init_quant(config)
    return new


def default_fp_layers(model: nn.Module) -> tuple[str, ...]:
    """The layers a model keeps in FP unless told otherwise (docs/protocols.md section 1).

    A backbone of this project declares them in ``default_fp_layers``. For any other torch
    model the ImageNet-ResNet rule is used: the stem ``conv1``, the downsample 1x1 convs and the
    final ``fc`` stay FP.
    """
    declared = getattr(model, "default_fp_layers", None)
    if declared is not None:
        return tuple(declared)
    return ("conv1", "*.downsample.0", "fc")


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def quantize_model(model: nn.Module, keep_fp: Sequence[str] | None = None,
                   config: QuantConfig | None = None,
                   precisions: Iterable[int] | None = None) -> nn.Module:
    """Convert every plain Conv2d / Linear of ``model`` in place into a quantizing layer.

    ``keep_fp``: fnmatch patterns over ``named_modules()`` names of layers left in FP
    (default: ``default_fp_layers(model)``); an explicit pattern that matches no module is an
    error, so a typo cannot silently quantize everything. Weights are kept (the same Parameter
    objects). The model starts at full precision; ``set_precision`` switches it.
    ``precisions``: the widths a switchable BatchNorm needs copies for (``switchable_bn`` only).
    """
    config = config or QuantConfig()
    names = [n for n, _ in model.named_modules()]
    if keep_fp is None:
        keep_fp = default_fp_layers(model)
    else:
        keep_fp = tuple(keep_fp)
        for pattern in keep_fp:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ConfigError(f"keep_fp: pattern {pattern!r} matches no layer of {type(model).__name__}")
    if config.switchable_bn and precisions is None:
        raise ConfigError("switchable_bn: needs the precision set to build one BatchNorm per bit-width")
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) in _QUANT_CLASSES and not _matches(full, keep_fp):
                setattr(parent, child_name, _to_quant(child, config))
            elif config.switchable_bn and type(child) is nn.BatchNorm2d:
                setattr(parent, child_name, SwitchableBatchNorm2d(child, precisions))
    return model


def plain_state_dict(model: nn.Module) -> dict:
    """A converted model's state dict as the unconverted model would have it: the CPT
    activation statistics dropped and a switchable BatchNorm represented by its FP copy."""
    plain = {}
    for key, value in model.state_dict().items():
        if key.rsplit(".", 1)[-1] in ("act_min", "act_range", "act_tracked"):
            continue
        if ".bns." in key:
            head, _, rest = key.partition(".bns.")
            width, _, leaf = rest.partition(".")
            if width != "fp":
                continue
            key = f"{head}.{leaf}"
        plain[key] = value
    return plain


def quant_layers(model: nn.Module) -> Iterator[nn.Module]:
    """The quantizing layers (and switchable BatchNorms) of a model."""
    for m in model.modules():
        if isinstance(m, (_QuantLayer, SwitchableBatchNorm2d)):
            yield m


def set_precision(model: nn.Module, bits: int | None) -> nn.Module:
    """Set the bit-width of every quantizing layer for the next forwards (None or >= 32: FP)."""
    bits = _check_bits(bits)
    for m in quant_layers(model):
        m.bits = bits
    return model


def get_precision(model: nn.Module) -> int | None:
    """The current bit-width of a converted model (None: full precision)."""
    widths = {m.bits for m in quant_layers(model)}
    if len(widths) > 1:
        raise ConfigError(f"model layers are at mixed bit-widths {sorted(widths, key=str)}")
    return widths.pop() if widths else None


@contextmanager
def precision(model: nn.Module, bits: int | None):
    """``with precision(model, 8): ...`` runs the block at 8 bits and restores the old width."""
    old = get_precision(model)
    set_precision(model, bits)
    try:
        yield model
    finally:
        set_precision(model, old)
