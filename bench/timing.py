"""The step timing the CPU benchmarks share (bench/cpu_loop.py, bench/cq.py, bench/views.py).

Cases run interleaved, round by round (A, B, C, A, B, C, ...), after a warm-up of each: a load
that changes during the run then hits every case alike, and the benchmarks compare medians
over the rounds.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Hashable

import torch


def synthetic_batch(size: int, image_size: int = 32) -> torch.Tensor:
    """A uint8 batch of the generated data set (the same images every run)."""
    from common.data import build_dataset

    data = build_dataset("synthetic", None, "train", num_images=size, image_size=image_size)
    return torch.stack([data[i][0] for i in range(size)])


def training_step(method, opt, images: torch.Tensor, generator: torch.Generator,
                  threads: int | None = None) -> Callable[[], float]:
    """A timer of one full training step of `method` (views, forward, loss, backward, optimizer)
    on `images`, with `threads` intra-op threads for the step if given."""
    def run() -> float:
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            start = time.perf_counter()
            loss = method.training_step(images, None, generator).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return time.perf_counter() - start
        finally:
            torch.set_num_threads(previous)
    return run


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """A timer of any call."""
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    return run


def interleaved(cases: dict[Hashable, Callable[[], float]], rounds: int, warmup: int = 1) -> dict[Hashable, list[float]]:
    """Seconds of every case in every round, the cases taking turns."""
    for timer in cases.values():
        for _ in range(warmup):
            timer()
    times: dict[Hashable, list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, timer in cases.items():
            times[case].append(timer())
    return times


def images_per_s(times: dict[Hashable, list[float]], batch: int) -> dict[Hashable, float]:
    """Batch over the median seconds of each case."""
    return {case: batch / statistics.median(t) for case, t in times.items()}
