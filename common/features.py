"""Frozen-backbone feature extraction and the weighted kNN monitor.

kNN (Wu et al. 2018, the instance-discrimination monitor most SSL code uses): features are
L2-normalised; each test feature takes its k most cosine-similar training features, each
neighbour votes for its class with weight exp(sim / T), and the class with the largest total
vote wins. Defaults k = 200, T = 0.07 (the papers do not give theirs; both are parameters).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from common.errors import ConfigError


def rank_world() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) in a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Dataset, transform, batch_size: int = 256,
                     device: str | torch.device = "cpu", num_workers: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D) float32 on CPU, targets) of a frozen model in eval mode, in dataset order.

    ``transform``: a deterministic view pipeline (``common.views.eval_transform``) applied to
    each uint8 batch on ``device``; images are decoded by ``num_workers`` loader processes (pinned
    memory on CUDA). Under torchrun (a process group is up) each rank extracts a contiguous
    share of the data set and every rank returns all of it, gathered in dataset order (eval mode:
    a feature does not depend on its batch). The model's train/eval mode is restored afterwards.
    """
    rank, world = rank_world()
    n = len(dataset)
    share = Subset(dataset, range(rank * n // world, (rank + 1) * n // world)) if world > 1 else dataset
    was_training = model.training
    model.eval()
    feats, targets = [], []
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=torch.device(device).type == "cuda")
    try:
        for images, target in loader:
            x = transform(images.to(device, non_blocking=True))
            feats.append(model(x).float().cpu())
            targets.append(torch.as_tensor(target))
    finally:
        model.train(was_training)
    mine = (torch.cat(feats) if feats else torch.empty(0), torch.cat(targets) if targets else torch.empty(0))
    if world == 1:
        return mine
    shares: list = [None] * world
    dist.all_gather_object(shares, mine)
    return torch.cat([f for f, _ in shares if f.numel()]), torch.cat([t for _, t in shares if t.numel()])


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                num_classes: int, k: int = 200, temperature: float = 0.07,
                chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN class scores (N_test, num_classes); see the module docstring."""
    if k < 1 or temperature <= 0:
        raise ConfigError(f"knn: expected k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    train = F.normalize(train_feats.float(), dim=1)
    k = min(k, train.shape[0])
    scores = []
    for start in range(0, test_feats.shape[0], chunk):
        test = F.normalize(test_feats[start:start + chunk].float(), dim=1)
        sim, idx = (test @ train.t()).topk(k, dim=1)
        votes = torch.zeros(test.shape[0], num_classes)
        votes.scatter_add_(1, train_labels[idx].long(), (sim / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes: int,
                 k: int = 200, temperature: float = 0.07) -> float:
    """Top-1 accuracy (in [0, 1]) of the weighted kNN classifier."""
    scores = knn_predict(train_feats, train_labels, test_feats, num_classes, k, temperature)
    return (scores.argmax(1) == test_labels.long()).float().mean().item()
