"""Benchmark: the cost of Contrastive Quant's objectives.

In one run, on the same backbone, batch and views, times full training steps (views, forwards,
loss, backward, LARS step) of SimCLR and of CQ-A, CQ-B, CQ-C on SimCLR, interleaved round by
round, and reports images/s and the ratio to the ideal set by each variant's number of encoder
forwards: CQ-B and CQ-C encode four (view, precision) features where SimCLR encodes two, so
their ideal is half SimCLR's images/s. A ratio of 1.0 means quantization itself costs nothing.

Target (2-core CPU): at least 0.8 of the ideal for every variant.

    python bench/cq.py [--backbone resnet18] [--batch 64] [--rounds 5]

The default backbone is the CQ paper's CIFAR ResNet-18 (CIFAR stem). Small networks such as the
CIFAR ResNet-20 are memory-bound on a CPU: there the quantizer's elementwise passes weigh more
against the convolutions (try --backbone cifar_resnet20).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# This file is named after the package it measures; keep bench/ off the import path so that
# `import cq` finds the package, not this script.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from common.backbones import build_backbone  # noqa: E402
from common.data import build_dataset
from common.methods.simclr import SimCLR
from common.optim import LARS, param_groups
from common.views import build_views
from cq.method import ContrastiveQuant, forwards_per_step

VARIANTS = ("baseline", "cq_a", "cq_b", "cq_c")
LABEL = {"baseline": "SimCLR", "cq_a": "CQ-A", "cq_b": "CQ-B", "cq_c": "CQ-C"}


def make(variant: str, backbone: str, size: int):
    torch.manual_seed(0)
    net = build_backbone(backbone, **({"cifar_stem": True} if backbone.startswith("resnet") else {}))
    views = build_views("simclr", size, strength=0.5, blur=False, norm="cifar10")
    method = ContrastiveQuant(SimCLR(net, views), variant, "6-16")
    opt = LARS(param_groups(method, 1e-6), lr=0.1)
    return method, opt


def step_seconds(method, opt, images, generator) -> float:
    start = time.perf_counter()
    loss = method.training_step(images, None, generator).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    data = build_dataset("synthetic", None, "train", num_images=args.batch, image_size=32)
    images = torch.stack([data[i][0] for i in range(args.batch)])
    runs = {v: make(v, args.backbone, 32) for v in VARIANTS}
    gens = {v: torch.Generator().manual_seed(0) for v in VARIANTS}
    for v in VARIANTS:  # warm-up
        step_seconds(*runs[v], images, gens[v])
    times = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for v in VARIANTS:
            times[v].append(step_seconds(*runs[v], images, gens[v]))

    ips = {v: args.batch / statistics.median(times[v]) for v in VARIANTS}
    base_forwards = forwards_per_step("baseline")
    print(f"{args.backbone}, batch {args.batch}, 32 px, full training steps, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'variant':<8} {'forwards':>8} {'images/s':>9} {'ideal':>9} {'of ideal':>8}")
    ratios = {}
    for v in VARIANTS:
        fwd = forwards_per_step(v)
        ideal = ips["baseline"] * base_forwards / fwd
        ratios[v] = ips[v] / ideal
        print(f"{LABEL[v]:<8} {fwd:>8} {ips[v]:9.1f} {ideal:9.1f} {ratios[v]:8.3f}")
    for v in VARIANTS[1:]:
        verdict = "PASS" if ratios[v] >= 0.8 else "FAIL"
        print(f"TARGET {LABEL[v]}_of_ideal: {ratios[v]:.3f} (target >= 0.8) {verdict}")


if __name__ == "__main__":
    main()
