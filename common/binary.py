"""Binary layers of BURN's binary network (ReActNet, Liu et al. ECCV 2020; docs/protocols.md sec. 2).

Binary activations ``binary_sign``
    forward: +1 where x >= 0 and -1 where x < 0. ``torch.sign`` returns 0 at x == 0 (and the
    ReActNet reference code used it); a binary network must output exactly two values, so 0
    maps to +1 here.
    backward, ``grad="approx"`` (the default): ApproxSign (from Bi-Real Net, Liu et al. ECCV
    2018; used by the ReActNet code), the derivative of a piecewise-quadratic approximation of
    sign: 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere, i.e. ``max(0, 2 - 2|x|)``.
    ``grad="ste"``: the clipped identity, 1 where |x| <= 1 else 0.

Binary weights ``binarize_weight``
    ``sign(W) * mean(|W|)``, the mean taken per output channel (over every dim but 0) and
    DETACHED, so no gradient flows through the scale. Gradient to W: the incoming gradient where
    |W| <= 1, zero elsewhere (straight-through, clipped). W == 0 maps to +1, as for activations.

Layers
    ``LearnableBias`` (ReActNet's RSign shift, one value per channel, init 0), ``RPReLU``
    (shift -> PReLU with a per-channel slope, init 0.25 -> shift), ``BinaryConv2d``.

Multi-stage training (BURN Sec. 3.4): stage 1 binarizes activations only (FP weights), stage 2
binarizes weights too. The stage is a plain attribute of every ``BinaryConv2d`` (not in the
state dict), switched for a whole model by ``set_binary_stage``; the parameters are the same
tensors in both stages, so stage 2 starts from stage 1's weights by construction.

Choices made where the papers are silent:
- A new ``BinaryConv2d`` is fully binary (stage 2, the deployed network); BURN's stage 1 must
  call ``set_binary_stage(model, 1)``.
- ``BinaryConv2d`` has no bias by default (a BatchNorm follows it in ReActNet).
- Zero padding is applied AFTER binarizing the input, so border positions add 0, not +-1 (as in
  the ReActNet reference code); an XNOR/popcount kernel would have to treat borders alike.
- Both custom autograd functions save only their input and compute the gradient mask in
  backward: one forward op, one backward op, no detach arithmetic.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from common.errors import ConfigError

ACT_GRADS = ("approx", "ste")  # backward of binary_sign: ReActNet's ApproxSign or clipped STE
BINARY_STAGES = (1, 2)  # 1: binary activations, FP weights; 2: binary activations and weights


def _check_act_grad(grad: str) -> str:
    if grad not in ACT_GRADS:
        raise ConfigError(f"act_grad={grad!r}: expected one of {ACT_GRADS}")
    return grad


def _two_valued_sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0, -1 elsewhere, in x's dtype."""
    return (x >= 0).to(x.dtype).mul_(2).sub_(1)


class _BinarySign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, grad: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.grad = grad
        return _two_valued_sign(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        if ctx.grad == "approx":
            # ApproxSign: 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere.
            return grad_out * (2 - 2 * x.abs()).clamp_(min=0), None
        return grad_out * (x.abs() <= 1).to(grad_out.dtype), None  # clipped identity


def binary_sign(x: torch.Tensor, grad: str = "approx") -> torch.Tensor:
    """Binarize activations to {-1, +1} (x == 0 -> +1); `grad`: 'approx' (ApproxSign) or 'ste'."""
    return _BinarySign.apply(x, _check_act_grad(grad))


class _BinarizeWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        scale = w.detach().abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
        return _two_valued_sign(w).mul_(scale)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (w,) = ctx.saved_tensors
        return grad_out * (w.abs() <= 1).to(grad_out.dtype)  # straight-through, clipped


def binarize_weight(w: torch.Tensor) -> torch.Tensor:
    """sign(W) * mean|W| per output channel (scale detached); gradient masked to |W| <= 1."""
    if w.dim() < 2:
        raise ConfigError(f"binarize_weight: expected a weight of 2+ dims (output channels first), "
                          f"got shape {tuple(w.shape)}")
    return _BinarizeWeight.apply(w)


class LearnableBias(nn.Module):
    """A learnable per-channel shift of an (N, C, H, W) tensor, initialised to 0 (ReActNet RSign)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class RPReLU(nn.Module):
    """ReActNet's RPReLU: shift -> PReLU (per-channel slope, init 0.25) -> shift."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift_in = LearnableBias(channels)
        self.prelu = nn.PReLU(channels, init=0.25)
        self.shift_out = LearnableBias(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift_out(self.prelu(self.shift_in(x)))


class BinaryConv2d(nn.Conv2d):
    """A Conv2d on binary activations, with binary (stage 2) or FP (stage 1) weights.

    The input is binarized by `binary_sign` (any learnable shift before it belongs to the
    block); the weight by `binarize_weight` when `binary_weights` is True. Both modes use the
    same parameters. `act_grad` picks the activation gradient ('approx' or 'ste').
    """

    def __init__(self, *args, bias: bool = False, binary_weights: bool = True,
                 act_grad: str = "approx", **kwargs) -> None:
        super().__init__(*args, bias=bias, **kwargs)
        self.binary_weights = bool(binary_weights)
        self.act_grad = _check_act_grad(act_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = binarize_weight(self.weight) if self.binary_weights else self.weight
        return self._conv_forward(binary_sign(x, self.act_grad), weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, binary_weights={self.binary_weights}, act_grad={self.act_grad}"


def binary_convs(model: nn.Module) -> list[BinaryConv2d]:
    """Every BinaryConv2d in `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, BinaryConv2d)]


def _binary_convs_or_error(model: nn.Module) -> list[BinaryConv2d]:
    convs = binary_convs(model)
    if not convs:
        raise ConfigError(f"model ({type(model).__name__}): expected a binary network, found no BinaryConv2d")
    return convs


def set_binary_stage(model: nn.Module, stage: int) -> nn.Module:
    """Multi-stage training (BURN Sec. 3.4): 1 = binary activations only, 2 = fully binary."""
    if isinstance(stage, bool) or stage not in BINARY_STAGES:
        raise ConfigError(f"binary stage={stage!r}: expected 1 (binary activations) or 2 (fully binary)")
    for conv in _binary_convs_or_error(model):
        conv.binary_weights = stage == 2
    return model


def get_binary_stage(model: nn.Module) -> int:
    """The stage every BinaryConv2d of `model` is in; ConfigError if they disagree."""
    modes = {conv.binary_weights for conv in _binary_convs_or_error(model)}
    if len(modes) > 1:
        raise ConfigError(f"model ({type(model).__name__}): its BinaryConv2d layers are in different stages")
    return 2 if modes.pop() else 1


def set_activation_grad(model: nn.Module, grad: str) -> nn.Module:
    """Choose the activation gradient of every BinaryConv2d: 'approx' (ApproxSign) or 'ste'."""
    _check_act_grad(grad)
    for conv in _binary_convs_or_error(model):
        conv.act_grad = grad
    return model
