"""Benchmark: is augmentation off the critical path? (`common/views.py`)

In one run, on the same batch of CIFAR-sized uint8 images, times (a) the SimCLR view pipeline
producing both views of the batch and (b) one full SimCLR training step (both views, two
forwards, NT-Xent, backward, LARS step) on a CIFAR ResNet-20, interleaved round by round, and
prints images/s of each and their ratio.

Target (2-core CPU, batch 256): the views at least 3x faster than the step they feed.

    python bench/views.py [--batch 256] [--rounds 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
import statistics

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: bench.timing

import torch  # noqa: E402

from bench.timing import interleaved, synthetic_batch, timed, training_step  # noqa: E402
from common.backbones import build_backbone  # noqa: E402
from common.methods.simclr import SimCLR  # noqa: E402
from common.optim import LARS, param_groups  # noqa: E402
from common.views import build_views  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    images = synthetic_batch(args.batch)
    views = build_views("simclr", 32, strength=0.5, blur=False, norm="cifar10")
    torch.manual_seed(0)
    method = SimCLR(build_backbone("cifar_resnet20"), views)
    opt = LARS(param_groups(method, 1e-6), lr=0.1)
    g_views = torch.Generator().manual_seed(0)
    times = interleaved({"views": timed(lambda: (views[0](images, g_views), views[1](images, g_views))),
                         "step": training_step(method, opt, images, torch.Generator().manual_seed(0))}, args.rounds)
    t_views, t_step = times["views"], times["step"]
    ips_views = args.batch / statistics.median(t_views)
    ips_step = args.batch / statistics.median(t_step)
    ratio = ips_views / ips_step
    print(f"batch {args.batch} CIFAR 32 px uint8, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'what':<40} {'median s':>9} {'images/s':>9}")
    print(f"{'SimCLR views (both views of the batch)':<40} {statistics.median(t_views):9.3f} {ips_views:9.1f}")
    print(f"{'SimCLR training step, CIFAR ResNet-20':<40} {statistics.median(t_step):9.3f} {ips_step:9.1f}")
    print(f"TARGET views_over_step: {ratio:.2f} (target >= 3.0) {'PASS' if ratio >= 3.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
