"""Benchmark: the fastest CPU training loop for the claims study (SimCLR and CQ-C, CIFAR ResNet-20).

Full training steps (views, forwards, loss, backward, LARS step) of SimCLR and of CQ-C on SimCLR
with the study's network (CIFAR ResNet-20, width 1) and batch, under each loop setting, interleaved
round by round so that machine noise hits every setting alike:

    eager         NCHW, the engine's CPU default
    cl            channels_last memory format (the engine's `channels_last: on`)
    compile       torch.compile of the backbone (inductor, needs a C compiler)
    1 thread      eager with torch.set_num_threads(1) (two such runs can share the two cores)
    cl, 1 thread  both

Prints images/s (median over rounds) and the ratio to eager, and what two single-thread runs side
by side would give in all (2 x their images/s: an upper bound, they share memory bandwidth).
Target: channels_last, the setting the claims study uses on a CPU, is within 10 % of the best
2-thread setting measured (a FAIL names the better one).

    python bench/cpu_loop.py [--batch 256] [--rounds 5] [--no-compile]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: bench.timing

import torch  # noqa: E402

from bench.timing import images_per_s, interleaved, synthetic_batch, training_step  # noqa: E402
from common.backbones import build_backbone  # noqa: E402
from common.methods.simclr import SimCLR  # noqa: E402
from common.optim import LARS, param_groups  # noqa: E402
from common.views import build_views  # noqa: E402
from cq.method import ContrastiveQuant  # noqa: E402


def make(variant: str, setting: str):
    torch.manual_seed(0)
    net = build_backbone("cifar_resnet20", width=1.0)
    if setting == "compile":
        net = torch.compile(net)
    views = build_views("simclr", 32, strength=0.5, blur=False, norm="cifar10")
    base = SimCLR(net, views)
    method = base if variant == "simclr" else ContrastiveQuant(base, variant, "6-16")
    if setting == "cl":
        method = method.to(memory_format=torch.channels_last)
        method.channels_last = True
    return method, LARS(param_groups(method, 1e-6), lr=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()

    images = synthetic_batch(args.batch)
    threads = torch.get_num_threads()
    settings = {"eager": ("eager", threads), "cl": ("cl", threads), "1 thread": ("eager", 1), "cl, 1 thread": ("cl", 1)}
    if not args.no_compile:
        settings["compile"] = ("compile", threads)
    cases = {(v, s): make(v, kind) for v in ("simclr", "cq_c") for s, (kind, _) in settings.items()}
    timers = {case: training_step(method, opt, images, torch.Generator().manual_seed(0), settings[case[1]][1])
              for case, (method, opt) in cases.items()}
    times = interleaved(timers, args.rounds, warmup=2)  # torch.compile compiles in the warm-up
    ips = images_per_s(times, args.batch)
    print(f"cifar_resnet20 (width 1), batch {args.batch}, 32 px, full training steps, {threads} threads "
          f"unless stated, median of {args.rounds} interleaved rounds")
    print(f"{'method':<8} {'setting':<13} {'images/s':>9} {'vs eager':>9}")
    for (variant, setting), value in ips.items():
        print(f"{variant:<8} {setting:<13} {value:9.1f} {value / ips[(variant, 'eager')]:9.3f}")
    for variant in ("simclr", "cq_c"):
        pair = 2 * ips[(variant, "cl, 1 thread")]
        print(f"{variant}: two single-thread channels_last runs side by side, at most {pair:.1f} images/s in all "
              f"({pair / ips[(variant, 'cl')]:.2f}x one 2-thread run)")
    for variant in ("simclr", "cq_c"):
        best = max((s for v, s in ips if v == variant and "1 thread" not in s), key=lambda s: ips[(variant, s)])
        ratio = ips[(variant, "cl")] / ips[(variant, best)]
        verdict = "PASS" if ratio >= 0.9 else f"FAIL (use {best})"
        print(f"TARGET {variant}_channels_last_vs_best: {ratio:.3f} (target >= 0.9) {verdict}")


if __name__ == "__main__":
    main()
