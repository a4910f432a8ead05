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
import sys
from pathlib import Path

# This file is named after the package it measures; keep bench/ off the import path so that
# `import cq` finds the package, not this script.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: bench.timing

import torch  # noqa: E402

from bench.timing import images_per_s, interleaved, synthetic_batch, training_step  # noqa: E402
from common.backbones import build_backbone  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    images = synthetic_batch(args.batch)
    runs = {v: make(v, args.backbone, 32) for v in VARIANTS}
    times = interleaved({v: training_step(*runs[v], images, torch.Generator().manual_seed(0)) for v in VARIANTS},
                        args.rounds)
    ips = images_per_s(times, args.batch)
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
