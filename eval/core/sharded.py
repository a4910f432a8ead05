"""Training an evaluation's layers on the global batch split over torchrun ranks (augmented linear
evaluation, fine-tuning), so that N ranks train what one process trains.

Every rank holds the same generator: it draws each epoch's order and each batch's view parameters
for the WHOLE batch, exactly as one process does, and keeps its own contiguous block of rows
(`ViewPipeline(..., part=(total, start))`). Its loader decodes only those rows, in `num_workers`
processes. The loss of a rank is the SUM over its rows divided by the global batch size, and the
gradients are summed over ranks: the step is the one of the mean loss over the global batch,
whatever the split. Layers whose statistics span the batch (BatchNorm in train mode) must be
synchronized by the caller (`common.syncbn.convert_sync_batchnorm`); a quantizer's per-tensor
range stays per rank, as in any data-parallel quantized training.
Image folders with `crops: full` cut each item's crop from the whole file in the loader
(`common.data.crops`), keyed by (index, epoch): the same crops whatever the split over ranks.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from common.data.crops import collate_fn, training_source
from common import distributed


def crop_source(dataset: Dataset, view, seed: int):
    """What an augmented evaluation reads, and `order(epoch, generator)`, its epoch order as loader
    keys: for an image folder with `crops: full`, items (index, epoch) whose crop + flip the loader
    cuts from the whole file (`view`'s geometry); otherwise the stored images, cropped on the device."""
    source = training_source(dataset, [view], seed)
    keyed = source is not dataset

    def order(epoch: int, generator: torch.Generator) -> list:
        perm = torch.randperm(len(dataset), generator=generator).tolist()
        return [(i, epoch) for i in perm] if keyed else perm
    return source, order


def row_block(total: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [start, end) of a batch of `total` that `rank` of `world` takes: contiguous, sizes
    differing by at most one (a rank gets none when total < world)."""
    base, extra = divmod(total, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class _Rows:
    """Batch sampler: this rank's block of every global batch of `order`."""

    def __init__(self, order: Sequence[int], batch_size: int, rank: int, world: int):
        self.blocks = []
        for first in range(0, len(order), batch_size):
            batch = order[first:first + batch_size]
            start, end = row_block(len(batch), rank, world)
            self.blocks.append((len(batch), start, list(batch[start:end])))

    def __iter__(self):
        return (rows for _, _, rows in self.blocks if rows)

    def __len__(self) -> int:
        return sum(1 for _, _, rows in self.blocks if rows)


class _EpochRows:
    """Batch sampler of a loader that serves many epochs: the rows of the epoch set last."""

    def __init__(self):
        self.rows = _Rows([], 1, 0, 1)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class EpochLoader:
    """This rank's batches of each epoch's order, from one DataLoader whose worker processes start
    once (`persistent_workers`): starting them again every epoch would be most of an epoch on a
    small labelled split. The main process hands the workers each epoch's rows."""

    def __init__(self, dataset: Dataset, batch_size: int, device: torch.device, num_workers: int = 0):
        self.dataset, self.batch_size, self.device = dataset, batch_size, device
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.sampler = _EpochRows()
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=num_workers,
                                 pin_memory=device.type == "cuda", collate_fn=collate_fn(dataset),
                                 persistent_workers=num_workers > 0)

    def epoch(self, order: Sequence) -> Iterator[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]:
        """(images, labels, (global batch size, first row)) of this rank for every global batch of
        `order`; a rank with no rows in a batch gets zero-row tensors (it still joins the collectives)."""
        rows = self.sampler.rows = _Rows(order, self.batch_size, self.rank, self.world)
        loader = iter(self.loader)
        shape = None
        for total, start, block in rows.blocks:
            if block:
                images, labels = next(loader)
                shape = images.shape[1:]
                labels = torch.as_tensor(labels).long()
            else:
                shape = shape if shape is not None else torch.as_tensor(self.dataset[order[0]][0]).shape
                images, labels = torch.empty((0, *shape), dtype=torch.uint8), torch.empty(0, dtype=torch.long)
            yield images.to(self.device, non_blocking=True), labels.to(self.device), (total, start)


def batch_loss(logits: torch.Tensor, labels: torch.Tensor, total: int) -> torch.Tensor:
    """This rank's share of the mean cross-entropy over the global batch of `total`."""
    return F.cross_entropy(logits, labels, reduction="sum") / total


def sum_over_ranks(params: Sequence[torch.nn.Parameter], loss: torch.Tensor) -> float:
    """Sum the gradients (and the loss, returned) over the ranks; one process: the loss."""
    if distributed.world_size() == 1:
        return loss.item()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
    total = loss.detach().clone()
    dist.all_reduce(total)
    return total.item()
