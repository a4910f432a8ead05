"""Synchronized BatchNorm that also runs on CPU (gloo), for the DDP equivalence tests and CPU runs.

torch's ``nn.SyncBatchNorm`` only works on GPU modules. This one all-reduces the per-channel
sum, sum of squares and count with a differentiable all-reduce (``common.distributed``; its
backward sums the gradients over ranks), so the normalisation uses the global batch statistics and the gradients equal single-process training on the global batch
once DDP averages them. Running statistics use the unbiased global variance, as BatchNorm does.
On GPU the engine uses torch's own ``nn.SyncBatchNorm`` instead.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from common.distributed import all_reduce_with_grad


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm (1d, 2d or 3d input) whose training statistics are those of the batch over all ranks."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of 2 or more dims, got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        dims = (0,) + tuple(range(2, x.dim()))
        count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = all_reduce_with_grad(stats)  # differentiable sum over ranks
        c = self.num_features
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c:2 * c] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm (1d/2d/3d) by a synchronized one (torch's on GPU, ours on CPU)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
            sync = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            # The same Parameter and buffer objects: frozen stays frozen, optimizers keep theirs.
            sync._parameters = child._parameters
            sync._buffers = child._buffers
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child, device)
    return module
