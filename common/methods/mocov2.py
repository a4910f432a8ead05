"""MoCo v2 (Chen et al. 2020, "Improved baselines with momentum contrastive learning"; MoCo:
He et al. 2020): a query encoder, a momentum key encoder and a queue of negative keys.

Networks: query encoder f_q = backbone -> MLP head Linear(2048) -> ReLU -> Linear(128) (MoCo v2
Sec. 2: a 2-layer MLP head, hidden 2048, no BatchNorm in it: `MLPHead(hidden_bn=False)`); key
encoder f_k = a momentum copy of f_q (backbone and head), `requires_grad=False`, never trained by
gradients.

Loss (MoCo Eq. 1, InfoNCE): q = normalize(f_q(v_1)), k_+ = normalize(f_k(v_2)) (no gradient),
queue = K stored keys u_j (unit vectors),
    logits = [q . k_+, q . u_1, ..., q . u_K] / T,     loss = CE(logits, label 0)
with T = 0.2 (MoCo v2 Sec. 2). After the loss, the batch's keys are enqueued replacing the
oldest ones (a ring buffer with a pointer).

Key encoder update (MoCo Eq. 2), after every optimizer step: theta_k <- m theta_k + (1 - m) theta_q,
m = 0.999. MoCo's code updates the key encoder at the start of each forward instead; updating
after the optimizer step and before the next forward is the same sequence of weights.

Defaults and choices:
- `num_negatives` K (the queue length): the paper uses 65536 on ImageNet (1.28M images); the
  default here is 4096, a scale-down for CIFAR-size data sets: the queue must stay well below the
  data set size, or it holds stale keys of the very images being queried (false negatives).
  K must be at least the global batch size.
- The queue is a registered buffer (K, dim), initialised with random unit vectors as in MoCo's
  code, and its pointer a long buffer: both are checkpointed, so a resumed run continues the
  same queue.
- Distributed: the keys of ALL ranks are gathered (all_gather, no gradient) and enqueued in rank
  order, so every rank holds the same queue; the positives stay local. Single process: the
  local keys.
- Shuffle-BN (MoCo Sec. 3.3: keys shuffled across GPUs so that a query and its key are not
  normalised with the statistics of the same images) is emulated INSIDE each process, without
  communication: the query batch is encoded in contiguous groups of about `bn_group_size`
  images, and the key batch is shuffled (a permutation drawn from the view generator), encoded in
  the same number of groups and un-shuffled. Default 32, MoCo's images per GPU (8 GPUs x 32 =
  256): a batch of 256 per process gives 8 groups; a batch below 2 x bn_group_size gives one
  group, i.e. no shuffling; `bn_group_size=None` turns it off. Cross-process shuffling as in
  MoCo's code is not implemented: under DDP each rank shuffles its own batch.
- `symmetric=True` (off by default, as in MoCo v2) also contrasts q(v_2) with k(v_1); the loss is
  then the MEAN of the two directions (same scale as the asymmetric loss) and both key batches
  are enqueued.
- Buffers of the key encoder (BatchNorm statistics) are copied from the query encoder at each
  momentum update (`common.methods.byol.momentum_update`, buffers="copy").
- Logits are computed in float32 (also under bf16 autocast); the queue is float32.
- Stronger augmentation (InfoMin) is a different `views` recipe, nothing in this module.

Small-scale behaviour seen in this project's smoke runs (16 px synthetic images, quarter-width
ResNet-20, 40-80 steps): a tiny network starts with nearly parallel embeddings, the loss sits near
log(K + 1), and with colour-jittered views the queries of a batch drift together towards the
current key encoder's output (q . k_+ = q . k_j of other current keys > q . queue): the model
separates "this step's keys" from the older queue, which shuffle-BN does not prevent. Crop + flip
views, a queue of one batch and m = 0.99 learn instance features in a few dozen steps
(tests/test_methods.py); the paper's settings are the defaults.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.distributed import gather_no_grad
from common.errors import ConfigError
from common.heads import MLPHead
from common.methods.base import Method, StepOutput
from common.methods.byol import frozen_copy, momentum_update


def moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
                 ) -> torch.Tensor:
    """MoCo's InfoNCE (MoCo Eq. 1), mean over the batch; label 0 is the positive.

    ``q`` (B, D) queries and ``k`` (B, D) positive keys, both L2-normalised by the caller;
    ``queue`` (K, D) negative keys. k and queue are detached (no gradient flows to keys).
    """
    if q.dim() != 2 or q.shape != k.shape or queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ConfigError(f"q, k, queue: expected (B, D), (B, D), (K, D); got {tuple(q.shape)}, "
                          f"{tuple(k.shape)}, {tuple(queue.shape)}")
    if not temperature > 0:
        raise ConfigError(f"temperature: expected a positive number, got {temperature}")
    q = q.float()
    positive = (q * k.detach().float()).sum(dim=1, keepdim=True)  # (B, 1)
    # a copy: the caller's queue is overwritten in place (enqueue) before backward runs
    negative = q @ queue.detach().to(torch.float32, copy=True).t()  # (B, K)
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


class MoCoV2(Method):
    """MoCo v2. Defaults: head 2048 -> 128 (no hidden BN), T = 0.2, m = 0.999 (MoCo v2 Sec. 2);
    queue 4096 (paper: 65536, see the module docstring)."""

    name = "mocov2"

    def __init__(self, backbone: nn.Module, views: tuple, proj_dim: int = 128, hidden_dim: int = 2048,
                 num_negatives: int = 4096, momentum: float = 0.999, temperature: float = 0.2,
                 symmetric: bool = False, bn_group_size: int | None = 32):
        super().__init__(backbone)
        if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
            raise ConfigError(f"num_negatives: expected a positive integer, got {num_negatives!r}")
        if bn_group_size is not None and (isinstance(bn_group_size, bool)
                                          or not isinstance(bn_group_size, int) or bn_group_size < 1):
            raise ConfigError(f"bn_group_size: expected a positive integer or None, got {bn_group_size!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"momentum: expected a number in [0, 1], got {momentum}")
        if not temperature > 0:
            raise ConfigError(f"temperature: expected a positive number, got {temperature}")
        self.views = views
        self.head = MLPHead(backbone.feature_dim, hidden_dim, proj_dim, hidden_bn=False)
        self.key_backbone = frozen_copy(self.backbone)
        self.key_head = frozen_copy(self.head)
        self.momentum, self.temperature, self.symmetric = momentum, temperature, symmetric
        self.bn_group_size = bn_group_size
        self.register_buffer("queue", F.normalize(torch.randn(num_negatives, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def num_negatives(self) -> int:
        return self.queue.shape[0]

    def check_batch(self, images_per_step: int) -> None:
        """Each step enqueues its keys: the queue must hold one step's keys of every process."""
        if images_per_step > self.num_negatives:
            raise ConfigError(f"num_negatives: the queue ({self.num_negatives}) must hold at least one global "
                              f"batch of keys ({images_per_step}): raise it or lower train.batch_size")

    def bn_groups(self, batch: int) -> int:
        """How many groups (separate BatchNorm batches) a batch of this size is encoded in."""
        return 1 if self.bn_group_size is None else max(1, batch // self.bn_group_size)

    def _in_groups(self, encode, x: torch.Tensor) -> torch.Tensor:
        """encode(x), each group of contiguous rows in its own forward (BatchNorm per group)."""
        groups = self.bn_groups(x.shape[0])
        return encode(x) if groups == 1 else torch.cat([encode(part) for part in x.chunk(groups)])

    def query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(backbone features h, normalised query q) of view batch x, BatchNorm per group."""
        h = self._in_groups(lambda part: self.backbone(self.as_input(part)), x)
        return h, F.normalize(self.head(h), dim=1)

    @torch.no_grad()
    def key(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised keys of view batch x from the momentum encoder (no gradient). With a
        generator and more than one group: shuffled, encoded per group, un-shuffled (shuffle-BN)."""
        def encode(part):
            return self.key_head(self.key_backbone(self.as_input(part)))

        if generator is None or self.bn_groups(x.shape[0]) == 1:
            return F.normalize(self._in_groups(encode, x), dim=1)
        perm = torch.randperm(x.shape[0], generator=generator, device=generator.device).to(x.device)
        k = torch.empty(x.shape[0], self.head.out_dim, device=x.device)
        k[perm] = self._in_groups(encode, x[perm]).float()  # row perm[j] of x came out at j
        return F.normalize(k, dim=1)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (gathered over ranks) over the oldest queue entries; advance the pointer."""
        keys = gather_no_grad(keys)
        n, size = keys.shape[0], self.num_negatives
        if n > size:
            raise ConfigError(f"num_negatives: the queue ({size}) must hold at least one global batch "
                              f"of keys ({n})")
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(n, device=self.queue.device)) % size  # ring buffer
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + n) % size)

    def training_step(self, images, labels, generator) -> StepOutput:
        v1, v2 = self.views[0](images, generator, slot=0), self.views[1](images, generator, slot=1)
        h1, q1 = self.query(v1)
        k2 = self.key(v2, generator)
        loss = moco_infonce(q1, k2, self.queue, self.temperature)
        new_keys = [k2]
        if self.symmetric:
            _, q2 = self.query(v2)
            k1 = self.key(v1, generator)
            loss = 0.5 * (loss + moco_infonce(q2, k1, self.queue, self.temperature))
            new_keys.append(k1)
        for k in new_keys:  # after the loss: the current keys are positives, not negatives
            self.enqueue(k)
        return StepOutput(loss, features=h1)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q (MoCo Eq. 2) for backbone and head."""
        momentum_update(self.key_backbone, self.backbone, self.momentum)
        momentum_update(self.key_head, self.head, self.momentum)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        self.momentum_update()

    def grad_groups(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head}
