"""Benchmark: the cost of quantization in a training step (`common/quant.py`).

In one run, on the same inputs, times forward + backward of a ResNet-18 (CIFAR stem, 32 px,
batch 128 by default) in full precision, quantized at 8 bits with this project's quantizer
(both modes), and quantized with a naive chain of elementwise ops implementing CQ Eq. 9.
Rounds are interleaved (FP, floor, cpt, naive, FP, ...) so machine noise hits all alike;
medians are reported.

Second table, under bf16 autocast (the engine's default on a GPU): the plain network in bf16; the
floor quantizer as it runs at --bits (q <= 8: the convolutions on integer codes on the device's
reduced-precision units, common/quant_codes.py; exact); the same layers in true fp32
(`common.quant.exact_fp32`, what q > 8 takes, the code path switched off); and the same layers
left to autocast (quantizer and conv in bf16: what q > 8 bits cannot survive). The ratio codes /
plain bf16 is the price of exact q-bit layers in a bf16 run; fp32 / bf16 quantizer is that of the
exact fp32 layers. Whether this CPU has native bf16 (AVX-512 BF16 or AMX) is printed: without it
oneDNN computes bf16 and the codes' convolutions in fp32 arithmetic, and the ratios measure that.

Targets (2-core CPU): floor-mode / FP <= 1.25, and the project quantizer faster than naive;
under bf16: exact fp32 layers / bf16 quantizer <= 1.5, exact layers at q <= 8 / plain bf16 <= 1.3.

    python bench/quant.py [--batch 128] [--rounds 5] [--bits 8]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from unittest import mock

import torch
import torch.nn as nn

from common.backbones import build_backbone
import common.quant
import common.quant_codes
from common.provenance import cpu_model
from common.quant import QuantConfig, QuantConv2d, QuantLinear, quantize_model, set_precision


def naive_eq9(a: torch.Tensor, bits: int) -> torch.Tensor:
    """CQ Eq. 9 written the straightforward way: separate elementwise ops, STE by detach."""
    scale = (a.max() - a.min()) / (2 ** bits - 1)
    a_q = scale * torch.floor(a / scale)
    return a + (a_q - a).detach()


class NaiveQuantMixin:
    def quantized_weight(self):
        return naive_eq9(self.weight, self.bits)

    def quantized_input(self, x):
        return naive_eq9(x, self.bits)


class NaiveQuantConv2d(NaiveQuantMixin, QuantConv2d):
    pass


class NaiveQuantLinear(NaiveQuantMixin, QuantLinear):
    pass


def make_model(kind: str, bits: int) -> nn.Module:
    torch.manual_seed(0)
    model = build_backbone("resnet18", cifar_stem=True)
    if kind == "fp":
        return model
    mode = "cpt" if kind == "cpt" else "floor"
    quantize_model(model, config=QuantConfig(mode=mode))
    if kind == "naive":
        for m in model.modules():
            if type(m) is QuantConv2d:
                m.__class__ = NaiveQuantConv2d
            elif type(m) is QuantLinear:
                m.__class__ = NaiveQuantLinear
    return set_precision(model, bits)


def step_seconds(model: nn.Module, x: torch.Tensor, amp: str = "off") -> float:
    """One forward + backward; amp: off | exact (bf16 autocast, the quantizing layers as they run:
    codes at q <= 8, fp32 above) | fp32 (bf16 autocast, quantizing layers in true fp32 at every q)
    | bf16 (autocast reaches the quantizing layers too: exact_fp32 replaced by a no-op)."""
    model.zero_grad(set_to_none=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp != "off")
    patches = contextlib.ExitStack()
    if amp in ("fp32", "bf16"):
        patches.enter_context(mock.patch.object(common.quant_codes, "active", lambda x, bits: False))
    if amp == "bf16":
        patches.enter_context(mock.patch.object(common.quant, "exact_fp32", lambda device: contextlib.nullcontext()))
    start = time.perf_counter()
    with patches:
        with autocast:
            out = model(x)
        out.float().square().mean().backward()
    return time.perf_counter() - start


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX-BF16)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_table(models: dict, x: torch.Tensor, rounds: int) -> tuple[float, float]:
    """Times under bf16 autocast; returns the median ratios (exact fp32 quantizer / bf16
    quantizer, quantizer as it runs / plain bf16 network)."""
    cases = {"fp_bf16": (models["fp"], "exact"), "floor_codes": (models["floor"], "exact"),
             "floor_fp32": (models["floor"], "fp32"), "floor_bf16": (models["floor"], "bf16")}
    for model, amp in cases.values():
        step_seconds(model, x, amp)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, (model, amp) in cases.items():
            times[k].append(step_seconds(model, x, amp))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"under bf16 autocast (CPU: {cpu_model()}, native bf16: {'yes' if native_bf16() else 'no'})")
    print(f"{'variant':<12} {'median s':>9} {'min s':>8} {'x fp_bf16':>10}")
    for k in cases:
        print(f"{k:<12} {med[k]:9.3f} {min(times[k]):8.3f} {med[k] / med['fp_bf16']:10.3f}")
    return med["floor_fp32"] / med["floor_bf16"], med["floor_codes"] / med["fp_bf16"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    kinds = ["fp", "floor", "cpt", "naive"]
    models = {k: make_model(k, args.bits).train() for k in kinds}
    x = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for model in models.values():  # warm-up (allocator, first-call overheads)
        step_seconds(model, x)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for k in kinds:
            times[k].append(step_seconds(models[k], x))

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"ResNet-18 (CIFAR stem), batch {args.batch}, 32 px, fwd+bwd, {args.bits}-bit, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds")
    print(f"{'variant':<8} {'median s':>9} {'min s':>8} {'x FP':>6}")
    for k in kinds:
        print(f"{k:<8} {med[k]:9.3f} {min(times[k]):8.3f} {med[k] / med['fp']:6.3f}")
    ratio = med["floor"] / med["fp"]
    speedup = med["naive"] / med["floor"]
    exact_cost, codes_cost = autocast_table(models, x, args.rounds)
    print(f"TARGET quantized_over_fp: {ratio:.3f} (target <= 1.25) {'PASS' if ratio <= 1.25 else 'FAIL'}")
    print(f"TARGET naive_over_quantized: {speedup:.3f} (target > 1.0) {'PASS' if speedup > 1.0 else 'FAIL'}")
    print(f"TARGET exact_fp32_over_bf16_quantizer: {exact_cost:.3f} (target <= 1.5) "
          f"{'PASS' if exact_cost <= 1.5 else 'FAIL'}")
    print(f"TARGET exact_layers_over_plain_bf16: {codes_cost:.3f} at {args.bits} bits (target <= 1.3) "
          f"{'PASS' if codes_cost <= 1.3 else 'FAIL'}")


if __name__ == "__main__":
    main()
