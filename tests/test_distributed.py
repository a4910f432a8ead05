"""The multi-process path: two gloo processes on the CPU must reproduce one process on the global
batch (NT-Xent loss and DDP-averaged gradients), and gather_with_grad must gather in rank order
and send gradients back summed over ranks."""
import os
import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common import distributed
from common.losses import nt_xent

WORLD = 2
LOCAL_BATCH = 3
TEMPERATURE = 0.5
DEADLINE_S = 60  # hard stop for the spawned processes; a normal run takes a few seconds


def _encoder() -> nn.Module:
    torch.manual_seed(0)  # same initial weights in every process
    return nn.Linear(8, 4).double()


def _global_views():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(WORLD * LOCAL_BATCH, 8, generator=g, dtype=torch.float64),
            torch.randn(WORLD * LOCAL_BATCH, 8, generator=g, dtype=torch.float64))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=30))
    try:
        result = {"world_size": distributed.world_size(), "rank": distributed.rank(),
                  "is_main": distributed.is_main_process()}
        # gather_with_grad: forward order, and backward = sum over ranks of the incoming gradient
        x = torch.full((2, 3), float(rank), requires_grad=True)
        gathered = distributed.gather_with_grad(x)
        weights = torch.arange(12, dtype=torch.float32).reshape(4, 3) + 100 * rank
        (gathered * weights).sum().backward()
        result["gathered"], result["gather_grad"] = gathered.detach(), x.grad

        # NT-Xent with negatives from the global batch, under DDP
        model = DistributedDataParallel(_encoder())
        v1, v2 = _global_views()
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        z = model(torch.cat([v1[rows], v2[rows]]))
        loss = nt_xent(z[:LOCAL_BATCH], z[LOCAL_BATCH:], temperature=TEMPERATURE, gather=True)
        loss.backward()
        result["loss"] = loss.detach()
        result["grads"] = {n: p.grad.clone() for n, p in model.module.named_parameters()}
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _run_two_ranks(out_dir) -> list[dict]:
    context = mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + DEADLINE_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            pytest.fail(f"the {WORLD} gloo processes did not finish within {DEADLINE_S} s")
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.ddp
def test_two_gloo_ranks_equal_one_process_on_global_batch(tmp_path):
    results = _run_two_ranks(tmp_path)

    # helpers
    assert [(r["world_size"], r["rank"], r["is_main"]) for r in results] == [(2, 0, True),
                                                                             (2, 1, False)]
    # gather_with_grad forward: rank 0's rows, then rank 1's
    expected_gather = torch.cat([torch.zeros(2, 3), torch.ones(2, 3)])
    for r in results:
        assert torch.equal(r["gathered"], expected_gather)
    # backward: rank k gets sum over ranks r of weights_r[k-th slice]
    base = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    for k, r in enumerate(results):
        rows = base[2 * k:2 * k + 2]
        assert torch.equal(r["gather_grad"], (rows + 0) + (rows + 100))

    # single process on the whole global batch, same encoder
    encoder = _encoder()
    v1, v2 = _global_views()
    single = nt_xent(encoder(v1), encoder(v2), temperature=TEMPERATURE)
    single.backward()

    mean_loss = sum(r["loss"] for r in results) / WORLD
    assert mean_loss.item() == pytest.approx(single.item(), abs=1e-5)
    assert abs(results[0]["loss"].item() - results[1]["loss"].item()) > 1e-4  # ranks see different anchors
    for name, p in encoder.named_parameters():
        for r in results:  # DDP-averaged gradients, identical on every rank
            torch.testing.assert_close(r["grads"][name], p.grad, rtol=0, atol=1e-5)


def test_helpers_without_a_process_group():
    assert not distributed.is_distributed()
    assert (distributed.world_size(), distributed.rank(), distributed.is_main_process()) == (1, 0, True)
    x = torch.randn(3, 2)
    assert distributed.gather_with_grad(x) is x
