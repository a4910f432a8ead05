"""BatchNorm re-estimation: a network's running statistics recomputed from scratch on given batches.

Why: Contrastive Quant trains its encoder only through quantized forwards (CQ-A/B/C/Quant), with
BatchNorm shared by all bit-widths. Eq. 9's floor quantizer shifts values down by S/2 on average,
so the running means and variances the encoder ends with describe quantized inputs, while every
frozen-feature evaluation (linear, kNN, SVM, t-SNE, detection init) runs the encoder at full
precision (after a 20-step CQ-C run of the mini profile the two sets of running means differed by
0.08 sigma on average). The plain SimCLR / BYOL baselines have no such mismatch. Re-estimating the
statistics at full precision on training images before the encoder is saved removes it (the "BN
calibration" of switchable / once-for-all networks does the same per width).

How: the running statistics of every BatchNorm the forward reaches are reset and re-accumulated
as a cumulative average (momentum None) over the batches, in train mode and without gradients;
weights are not touched.
Under torch.distributed the per-rank estimates are averaged over the ranks (each rank sees its
own equally sized batches). The result does not depend on the statistics before the call.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from common.distributed import is_distributed, world_size


def batchnorms(model: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm of `model` that keeps running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Recompute the running mean / variance of the BatchNorms of `model` that the forwards use,
    from `batches` (model inputs, already transformed); returns the number of batches used.

    A BatchNorm is reset when it is first called, so layers the forward does not reach (e.g. the
    per-width copies of a switchable BatchNorm at full precision) keep their statistics. The
    model's train/eval mode and the BatchNorms' momenta are restored afterwards."""
    used_norms: dict[_BatchNorm, float | None] = {}  # BatchNorm -> its momentum

    def reset_on_first_call(module, _inputs):
        if module not in used_norms:
            used_norms[module] = module.momentum
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the batches

    hooks = [m.register_forward_pre_hook(reset_on_first_call) for m in batchnorms(model)]
    was_training = model.training
    model.train()
    count = 0
    try:
        for x in batches:
            model(x)
            count += 1
    finally:
        for h in hooks:
            h.remove()
        for m, momentum in used_norms.items():
            m.momentum = momentum
        model.train(was_training)
    if is_distributed() and world_size() > 1:
        for m in used_norms:
            for stat in (m.running_mean, m.running_var):
                dist.all_reduce(stat)
                stat.div_(world_size())
    return count
