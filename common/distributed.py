"""Small helpers around `torch.distributed`: who am I, how many are we, and an all-gather
that carries gradients.

Every helper also works in a plain single-process run (no process group initialised): then
`world_size() == 1`, `rank() == 0` and `gather_with_grad(x)` returns `x` itself.

Choices where the papers are silent:
- `gather_with_grad` needs the same batch size on every rank (the engine's DistributedSampler
  drops the last incomplete batch); all_gather itself refuses tensors of different shapes.
- The backend does not matter here: the helpers use only all_gather and all_reduce, which both
  gloo (CPU) and NCCL (GPU) provide.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from common.errors import ConfigError


def is_distributed() -> bool:
    """True when a torch.distributed process group has been initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """True on rank 0: the process that logs, writes checkpoints and metrics."""
    return rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends every rank's gradient back to the rank that owns the rows.

    Derivation. Rank r holds a local batch z_r (B, D) and computes a loss L_r on the gathered
    Z = [z_0; ...; z_{W-1}] (W*B, D). DDP averages parameter gradients over ranks, so training
    follows the gradient of L = (1/W) * sum_r L_r. The gradient of L with respect to rank k's
    local rows is

        dL/dz_k = (1/W) * sum_r dL_r/dZ[k*B:(k+1)*B]

    (every rank's loss sees z_k through its own copy of Z). Rank r's autograd only knows
    G_r = dL_r/dZ. So backward all-reduces (sums) G_r over ranks and keeps rows k*B:(k+1)*B: rank k
    then holds sum_r dL_r/dz_k, back-propagates it into its parameters, and DDP's division by W
    supplies the 1/W. When each L_r is the mean over rank r's anchors (B per view), L equals the
    mean over all W*B anchors, i.e. the single-process loss on the global batch, and so do the
    gradients.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        pieces = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(pieces, x)
        ctx.rows = x.shape[0]
        return torch.cat(pieces, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()  # all_reduce works in place; never touch autograd's buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `x` (B, ...) in rank order into (W*B, ...), keeping gradients.

    Backward sums the incoming gradients over all ranks and returns this rank's slice (see
    `_GatherWithGrad` for why that reproduces single-process training under DDP averaging).
    Not distributed (or one process): returns `x` unchanged.
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


class _AllReduceWithGrad(torch.autograd.Function):
    """Sum over ranks; backward sums the gradients over ranks (same reasoning as above)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of `x` over ranks (e.g. BatchNorm statistics of the global batch)."""
    if world_size() == 1:
        return x
    return _AllReduceWithGrad.apply(x)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` (B, ...) concatenated in rank order, without gradient (MoCo's queue
    keys, SwAV's queue); ``x`` itself in one process."""
    if world_size() == 1:
        return x
    pieces = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(pieces, x.contiguous())
    return torch.cat(pieces, dim=0)


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_process_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_runtime(device: str = "auto") -> Runtime:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no GPU is visible")
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    started = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        started = True
    return Runtime(dev, rank, world, local_rank, started)
