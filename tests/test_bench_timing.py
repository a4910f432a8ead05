"""bench/timing.py: the CPU benchmarks' shared step timing takes the cases in turns, round by
round, after a warm-up of each, and times a real training step."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import images_per_s, interleaved, synthetic_batch, timed, training_step  # noqa: E402
from common.backbones import build_backbone  # noqa: E402
from common.methods.simclr import SimCLR  # noqa: E402
from common.optim import LARS, param_groups  # noqa: E402
from common.views import build_views  # noqa: E402


def test_cases_take_turns_after_their_warm_up():
    calls = []
    cases = {name: timed(lambda name=name: calls.append(name)) for name in "abc"}
    times = interleaved(cases, rounds=3, warmup=2)
    assert calls == list("aabbcc") + list("abc") * 3
    assert all(len(t) == 3 and all(s >= 0 for s in t) for t in times.values())
    assert images_per_s({"x": [2.0, 1.0, 4.0]}, 8) == {"x": 4.0}  # the median round


def test_a_training_step_trains_and_keeps_the_thread_count():
    torch.manual_seed(0)
    method = SimCLR(build_backbone("cifar_resnet20", width=0.25), build_views("simclr", 16, strength=0.5, blur=False,
                                                                              norm="cifar10"))
    opt = LARS(param_groups(method, 1e-6), lr=0.1)
    before = [p.detach().clone() for p in method.parameters()]
    threads = torch.get_num_threads()
    step = training_step(method, opt, synthetic_batch(8, 16), torch.Generator().manual_seed(0), threads=1)
    assert step() > 0 and torch.get_num_threads() == threads
    assert any(not torch.equal(a, b) for a, b in zip(before, method.parameters()))
