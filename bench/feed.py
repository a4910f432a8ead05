"""The pretraining feed alone: the engine's own loader for a data set and a method's views, iterated
with no training step, so a benchmark can say whether the loader or the step bounds a run.

The loader is built by the engine's own functions (common/engine.py `_sampler`, `_loader`, and
`training_source`), as a run on `device_type` builds it: on CUDA the workers decode and crop
(the device finishes the views; with a folder's `decode: gpu`, the default there, the workers
only read bytes and draw boxes, and the device decodes), on a CPU with workers they also finish
the views. The rate is
taken in the steady state: the first round of batches (one per worker, all built at once while
the workers start) is left out, and the window runs from its last batch to the end.

    rate = loader_alone(dataset, views, batch=256, workers=14, device_type="cuda")
    rate.images_per_s, rate.per_worker
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch.utils.data import Dataset

from common.data.crops import training_source
from common.engine import _loader, _sampler


@dataclass
class FeedRate:
    images_per_s: float
    per_worker: float | None   # None: the main process loads (no workers)
    workers: int
    batches: int               # batches in the timed window
    epoch_batches: int         # batches in one epoch of this data set at this batch


def folder_images(workers: int, batch: int, batches_per_worker: int = 4) -> int:
    """Images a generated folder needs so that one epoch keeps every worker busy: a worker builds
    whole batches, and an epoch of fewer batches than workers leaves some of them idle."""
    return max(1, workers) * batch * batches_per_worker


def loader_alone(dataset: Dataset, views: list, batch: int, workers: int, device_type: str = "cuda",
                 seed: int = 0, epochs: int = 1, finish_views: bool | None = None,
                 on_device: bool = False) -> FeedRate:
    """Images/s of the engine's loader over `epochs` epochs (workers kept across them, as the
    engine keeps them), nothing done with the batches. `finish_views` None: as the engine on
    `device_type`; False on a CPU: the workers' share of a CUDA run, measured without a GPU.
    `on_device`: each batch is also moved to the device, where a `decode: gpu` batch is decoded
    and cut (the GPU path's rate, workers and device together)."""
    rt = SimpleNamespace(device=torch.device(device_type), world=1, rank=0)
    if finish_views is None:
        finish_views = device_type == "cpu" and workers > 0
    source = training_source(dataset, views, seed, finish_views=finish_views, device_type=device_type)
    sampler = _sampler(source, batch, seed, rt)
    loader = _loader(source, sampler, SimpleNamespace(num_workers=workers), rt, persistent_workers=workers > 0)
    skip = max(1, workers)  # the first round: built while the workers start
    if sampler.batches_per_epoch * epochs <= skip:
        raise ValueError(f"{sampler.batches_per_epoch} batches per epoch x {epochs} epochs: no steady state "
                         f"with {workers} workers (a folder of {folder_images(workers, batch)} images gives one)")
    seen, images, start = 0, 0, None
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for x, _ in loader:
            if on_device:  # the device's share too: a batch of bytes decoded and cut there
                x = x.to(rt.device, non_blocking=True)
            seen += 1
            if seen == skip:
                start = time.perf_counter()
            elif seen > skip:
                images += len(x)
    if on_device and device_type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rate = images / seconds
    return FeedRate(rate, rate / workers if workers else None, workers, seen - skip, sampler.batches_per_epoch)
