"""Quantizing layers at q <= 8 bits on integer codes: exact results at reduced-precision speed.

A q-bit tensor is ``x_q = S * c + o``: a scale S (one per tensor, or one per output channel for
CPT's weights), an offset o (a grid point in the middle of the tensor's range) and integer codes
``c = round((x_q - o) / S)`` in ``[-2^(q-1), 2^(q-1)]``. For q <= 8 a code is an integer of at
most 128 in magnitude, exact in bf16 (8 significant bits) and TF32 (11): a convolution of codes can
take the reduced-precision paths (tensor cores on a GPU through TF32, the CPU's native bf16
through oneDNN's bf16 math mode) with no rounding of its operands, and they accumulate in fp32.
With zero padding only the codes' products need the big convolution; the offsets add sums that
are cheap to take (per output position, over the valid part of the window):

    conv(x_q, w_q)[o] = Sx Sw[o] conv(cx, cw)[o] + Sx ow[o] box(cx) + ox Sw[o] conv(1, cw)[o]
                        + ox ow[o] box(1) * C_in

``box(t)``: the sum of ``t`` over the input channels and the window (a one-channel convolution
with a window of ones); ``conv(1, .)``: the kernel over a plane of ones, which counts the
padding out. The result equals the exact fp32 layer's (common/quant.py `exact_fp32`) up to the
order of fp32 accumulation.

The backward is the straight-through one of the exact layer (the gradient of ``conv(x_q, w_q)``
with respect to x_q and w_q), computed in bf16 like a plain layer's under autocast: the error
is not a q-bit quantity.

Used only where a run asked for bf16 (autocast on) and for grouped-free convolutions and linear
layers at q <= CODE_BITS; everything else takes the exact fp32 path.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

CODE_BITS = 8  # codes of q <= 8 bits fit TF32 and bf16 exactly (at most 2^8 = 256)


def active(x: torch.Tensor, bits: int | None) -> bool:
    """Whether a quantizing layer at `bits` takes the code path for this input."""
    device = x.device.type
    return (bits is not None and bits <= CODE_BITS and x.numel() > 0 and torch.is_autocast_enabled(device)
            and torch.get_autocast_dtype(device) == torch.bfloat16)


def codes(q: torch.Tensor, scale: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer codes in [-2^(q-1), 2^(q-1)], offset) of a quantized tensor; a scale with one
    value per output channel (shape [C, 1, ...]) gives one offset per channel. The offset is the
    grid point in the middle of the tensor's codes: centred codes keep the offset terms small,
    so little cancels when they are added back."""
    q = q.detach()
    low = q.amin() if scale.numel() == 1 else q.flatten(1).amin(dim=1).view(scale.shape)
    offset = low + scale * 2 ** (bits - 1)
    return (q - low).div_(scale).round_().sub_(2 ** (bits - 1)), offset


def _switches(device_type: str, reduced: bool) -> list[tuple[object, str, object]]:
    """(object, attribute, value) of the switches of fp32 convolutions and matmuls on this device:
    `reduced` lets them run on reduced-precision units (exact for codes, never for arbitrary
    values), else true fp32."""
    b = torch.backends
    if device_type == "cuda":
        if hasattr(b.cudnn, "conv") and hasattr(b.cudnn.conv, "fp32_precision"):
            value = "tf32" if reduced else "ieee"
            return [(b.cudnn.conv, "fp32_precision", value), (b.cuda.matmul, "fp32_precision", value)]
        return [(b.cudnn, "allow_tf32", reduced), (b.cuda.matmul, "allow_tf32", reduced)]
    if device_type == "cpu" and hasattr(b.mkldnn, "conv") and hasattr(b.mkldnn.conv, "fp32_precision"):
        value = "bf16" if reduced else "ieee"
        return [(b.mkldnn.conv, "fp32_precision", value), (b.mkldnn.matmul, "fp32_precision", value)]
    return []


@contextmanager
def fp32_math(device_type: str, reduced: bool) -> Iterator[None]:
    """Autocast off (codes stay fp32 tensors, results fp32), fp32 math on the device's
    reduced-precision units or in true fp32; the previous settings come back afterwards."""
    switches = _switches(device_type, reduced)
    saved = [getattr(obj, name) for obj, name, _ in switches]
    try:
        for obj, name, value in switches:
            setattr(obj, name, value)
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        for (obj, name, _), value in zip(switches, saved):
            setattr(obj, name, value)


def _per_output(t: torch.Tensor, dims: int) -> torch.Tensor:
    """A per-tensor or per-output-channel value shaped to broadcast over an output whose
    channels are dim 1 (conv) or the last dim (linear, dims == 2)."""
    if t.numel() == 1:
        return t.reshape(())
    return t.reshape(-1) if dims == 2 else t.reshape(1, -1, *([1] * (dims - 2)))


def conv_from_codes(cx, sx, ox, cw, sw, ow, stride, padding, dilation) -> torch.Tensor:
    """conv(x_q, w_q) from codes (module docstring); fp32 result. Only the products of codes
    take the reduced-precision units; the sums of the offset terms (up to 2^8 x C_in, too wide for
    them) are cheap one-channel convolutions in true fp32."""
    args = (None, stride, padding, dilation)
    device = cx.device.type
    with fp32_math(device, reduced=True):
        main = F.conv2d(cx, cw, *args)
    with fp32_math(device, reduced=False):
        ones_k = cw.new_ones(1, 1, *cw.shape[2:])
        plane = cx.new_ones(1, 1, *cx.shape[2:])
        box_x = F.conv2d(cx.sum(1, keepdim=True), ones_k, *args)             # [N, 1, Ho, Wo]
        box_w = F.conv2d(plane, cw.sum(1, keepdim=True), *args)              # [1, C_out, Ho, Wo]
        box_1 = F.conv2d(plane, ones_k, *args) * cw.shape[1]                 # [1, 1, Ho, Wo]
        sw, ow = _per_output(sw, 4), _per_output(ow, 4)
        return (sx * sw) * main + (sx * ow) * box_x + (ox * sw) * box_w + (ox * ow) * box_1


def linear_from_codes(cx, sx, ox, cw, sw, ow) -> torch.Tensor:
    """x_q @ w_q^T from codes; fp32 result."""
    device = cx.device.type
    with fp32_math(device, reduced=True):
        main = cx @ cw.t()
    with fp32_math(device, reduced=False):
        sw, ow = _per_output(sw, 2), _per_output(ow, 2)
        return ((sx * sw) * main + (sx * ow) * cx.sum(-1, keepdim=True) + (ox * sw) * cw.sum(1)
                + (ox * ow) * cw.shape[1])


class _FromCodes(torch.autograd.Function):
    """Forward: the layer's output from codes (exact); backward: straight-through gradients of
    conv / linear at (x_q, w_q), in bf16."""

    @staticmethod
    def forward(ctx, xq, wq, bias, cx, cw, sx, ox, sw, ow, conv):
        ctx.conv = conv  # (stride, padding, dilation), or None for a linear layer
        ctx.has_bias = bias is not None
        ctx.save_for_backward(xq.to(torch.bfloat16), wq.to(torch.bfloat16))
        out = (conv_from_codes(cx, sx, ox, cw, sw, ow, *conv) if conv is not None
               else linear_from_codes(cx, sx, ox, cw, sw, ow))
        if bias is not None:
            out = out + (bias.view(1, -1, *([1] * (out.dim() - 2))) if conv is not None else bias)
        return out

    @staticmethod
    def backward(ctx, grad):
        xq, wq = ctx.saved_tensors
        g = grad.to(torch.bfloat16)
        if ctx.conv is not None:
            stride, padding, dilation = ctx.conv
            gx, gw, _ = torch.ops.aten.convolution_backward(
                g, xq, wq, None, stride, padding, dilation, False, [0, 0], 1, [True, True, False])
            gb = grad.sum((0, 2, 3)) if ctx.has_bias else None
        else:
            gx = g @ wq
            gw = g.reshape(-1, g.shape[-1]).t() @ xq.reshape(-1, xq.shape[-1])
            gb = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.has_bias else None
        return gx.float(), gw.float(), gb, None, None, None, None, None, None, None


def from_codes(xq, sx, wq, sw, bits: int, bias, conv: tuple | None) -> torch.Tensor:
    """The layer's output for quantized input `xq` (scale `sx`) and weight `wq` (scale `sw`,
    per tensor or per output channel); `conv`: (stride, padding, dilation), None for linear."""
    cx, ox = codes(xq, sx, bits)
    cw, ow = codes(wq, sw, bits)
    return _FromCodes.apply(xq, wq, bias, cx, cw, sx, ox, sw, ow, conv)
