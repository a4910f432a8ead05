"""SwAV (Caron et al. 2020, "Unsupervised learning of visual features by contrasting cluster
assignments"): swapped prediction of online cluster codes.

Networks: backbone -> projection MLP Linear(2048) -> BN -> ReLU -> Linear(128) -> L2-normalise,
then the prototypes C: a bias-free Linear(128, 3000) whose rows (one unit vector per prototype)
are re-normalised after every optimizer step (SwAV Sec. 4 / appendix A: 3000 prototypes, 128-d,
hidden 2048; the normalisation of C as in Sec. 3.1).

Codes (SwAV Sec. 3.1, Eq. 3, solved with Sinkhorn-Knopp): for the B scores s_b = C z_b of a view,
    Q = exp(S / eps),                          eps = 0.05
    repeat 3 times: scale each prototype's row of Q to total 1/K, then each sample's column to 1/B
and each sample's code q_b = B * (its column), so codes are non-negative, sum to 1 per sample,
and every prototype gets (about) B/K of the batch. Codes carry no gradient.

Loss (SwAV Eq. 1-2): with p_b = softmax(s_b / T), T = 0.1, and codes q of view 1 and 2,
    l(z, q) = - sum_k q_k log p_k,     loss = ( l(z_1, q_2) + l(z_2, q_1) ) / 2,  mean over the batch
(swapped prediction: each view predicts the other's code; the mean over the two terms follows
SwAV's code).

Defaults and choices:
- Multi-crop (Sec. 3.2) is not implemented: two views only (the 2 x 224 setting of the paper's
  ablations). `views` gives the two pipelines.
- Distributed: the Sinkhorn sums (total, per prototype) are all_reduced over ranks and B is the
  global batch, so the codes equal those of one process on the global batch; the exp is shifted
  by the global maximum score for numerical safety (a constant shift cancels in the first
  normalisation). Sinkhorn runs in float32 with autocast off.
- Feature queue (Sec. 4 / appendix: used when the batch is small, 3840 features, started at
  epoch 15): off by default (`queue_length=0`). When on, the queue holds the last `queue_length`
  projected features of each view from ALL ranks (gathered without gradient, newest first; a
  registered buffer, so checkpointed and identical on every rank); once it is full, each rank adds
  its 1/world share of it to its Sinkhorn input (queue_length must divide by the world size), so
  every queued feature enters the global sums exactly once, and keeps only its batch's codes.
  `queue_start_step` delays the filling (the paper's epoch 15, in optimizer steps).
- Prototype freezing: the paper freezes the prototypes during the first epoch (its code: 313
  iterations at batch 4096). Default here `freeze_prototypes_steps=0` (off), since smoke runs
  are a few dozen steps; set it for `paper` runs. While frozen, the prototypes get a ZERO
  gradient rather than none (DDP needs every parameter in the graph); weight decay and momentum
  then act only along each prototype's own direction, which the re-normalisation after the step
  undoes, so the prototypes stay fixed.
- The step counter used for freezing and the queue start is a buffer (`iteration`), set after
  every optimizer step, so it survives resume.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from common.distributed import gather_no_grad, is_distributed, rank, world_size
from common.errors import ConfigError
from common.heads import MLPHead
from common.methods.base import Method, StepOutput


def _all_reduce(x: torch.Tensor, op=None) -> torch.Tensor:
    if is_distributed() and world_size() > 1:
        dist.all_reduce(x, op=op or dist.ReduceOp.SUM)
    return x


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's codes (Sec. 3.1, Eq. 3) of prototype scores (B, K): non-negative, rows sum to 1.

    Q = exp(scores / epsilon), then `iterations` times: each prototype (column here) is scaled to
    total 1/K, then each sample (row) to total 1/B; finally multiplied by B. Sums over samples and
    B are global when distributed (all_reduce), so every rank gets its rows of the global result.
    """
    if scores.dim() != 2 or scores.shape[0] == 0:
        raise ConfigError(f"scores: expected a non-empty (batch, prototypes) tensor, "
                          f"got {tuple(scores.shape)}")
    if not epsilon > 0 or iterations < 1:
        raise ConfigError(f"sinkhorn: expected epsilon > 0 and iterations >= 1, got {epsilon}, {iterations}")
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores.float()
        shift = _all_reduce(s.max().clone(), dist.ReduceOp.MAX)  # same constant on every rank
        q = torch.exp((s - shift) / epsilon)
        num_prototypes = q.shape[1]
        batch = _all_reduce(torch.tensor(float(q.shape[0]), device=q.device))
        q /= _all_reduce(q.sum())
        for _ in range(iterations):
            q /= _all_reduce(q.sum(dim=0, keepdim=True))  # each prototype's mass -> 1 ...
            q /= num_prototypes  # ... -> 1/K
            q /= q.sum(dim=1, keepdim=True)  # each sample's mass -> 1 ...
            q /= batch  # ... -> 1/B
        return q * batch


def swapped_prediction_loss(scores1: torch.Tensor, scores2: torch.Tensor, codes1: torch.Tensor,
                            codes2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SwAV Eq. 1-2: ( l(s_1, q_2) + l(s_2, q_1) ) / 2 with l(s, q) = - sum_k q_k log softmax(s / T)_k,
    mean over the batch. Codes are detached (no gradient through the assignment)."""
    if not temperature > 0:
        raise ConfigError(f"temperature: expected a positive number, got {temperature}")

    def cross_entropy(scores, codes):
        return -(codes.detach() * F.log_softmax(scores.float() / temperature, dim=1)).sum(dim=1).mean()

    return 0.5 * (cross_entropy(scores1, codes2) + cross_entropy(scores2, codes1))


class SwAV(Method):
    """SwAV with two views. Defaults (SwAV Sec. 4 and appendix A): projection 2048 -> 128, 3000
    prototypes, T = 0.1, eps = 0.05, 3 Sinkhorn iterations; queue and freezing off (see above)."""

    name = "swav"

    def __init__(self, backbone: nn.Module, views: tuple, proj_dim: int = 128, hidden_dim: int = 2048,
                 num_prototypes: int = 3000, temperature: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, queue_length: int = 0, queue_start_step: int = 0,
                 freeze_prototypes_steps: int = 0):
        super().__init__(backbone)
        for name, value, low in (("num_prototypes", num_prototypes, 1),
                                 ("sinkhorn_iterations", sinkhorn_iterations, 1),
                                 ("queue_length", queue_length, 0), ("queue_start_step", queue_start_step, 0),
                                 ("freeze_prototypes_steps", freeze_prototypes_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")
        for name, value in (("temperature", temperature), ("epsilon", epsilon)):
            if not value > 0:
                raise ConfigError(f"{name}: expected a positive number, got {value}")
        self.views = views
        self.projector = MLPHead(backbone.feature_dim, hidden_dim, proj_dim)
        self.prototypes = nn.Linear(proj_dim, num_prototypes, bias=False)
        self.temperature, self.epsilon, self.sinkhorn_iterations = temperature, epsilon, sinkhorn_iterations
        self.queue_start_step, self.freeze_prototypes_steps = queue_start_step, freeze_prototypes_steps
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue", torch.zeros(2, queue_length, proj_dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.normalize_prototypes()

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Each prototype (row of C) -> unit L2 norm."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(backbone features h, normalised projection z, prototype scores C z) of view batch x."""
        h = self.backbone(self.as_input(x))
        z = F.normalize(self.projector(h), dim=1)
        weight = self.prototypes.weight
        if int(self.iteration) < self.freeze_prototypes_steps:
            # zero gradient, not None: DDP needs every parameter in the graph
            weight = weight.detach() + 0.0 * weight
        return h, z, F.linear(z, weight)

    @torch.no_grad()
    def codes(self, scores: torch.Tensor, view: int) -> torch.Tensor:
        """Sinkhorn codes of this batch's scores, with this rank's share of the full queue added."""
        queue_length = self.queue.shape[1]
        if queue_length and int(self.queue_filled) == queue_length:
            world = world_size()
            if queue_length % world:
                raise ConfigError(f"queue_length: {queue_length} must be divisible by the {world} processes")
            share = queue_length // world
            mine = self.queue[view, rank() * share:(rank() + 1) * share]
            extra = mine @ self.prototypes.weight.detach().t()
            return sinkhorn_knopp(torch.cat([scores, extra.to(scores.dtype)]), self.epsilon,
                                  self.sinkhorn_iterations)[:scores.shape[0]]
        return sinkhorn_knopp(scores, self.epsilon, self.sinkhorn_iterations)

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor, view: int) -> None:
        """Put the (gathered) features first in the view's queue; the oldest fall off the end."""
        length = self.queue.shape[1]
        z = gather_no_grad(z).to(self.queue.dtype)
        self.queue[view] = torch.cat([z, self.queue[view]])[:length]
        if view == 0:
            self.queue_filled.fill_(min(length, int(self.queue_filled) + z.shape[0]))

    def training_step(self, images, labels, generator) -> StepOutput:
        h1, z1, s1 = self.embed(self.views[0](images, generator, slot=0))
        _, z2, s2 = self.embed(self.views[1](images, generator, slot=1))
        q1, q2 = self.codes(s1.detach(), 0), self.codes(s2.detach(), 1)
        loss = swapped_prediction_loss(s1, s2, q1, q2, self.temperature)
        if self.queue.shape[1] and int(self.iteration) >= self.queue_start_step:
            self.enqueue(z1.detach(), 0)
            self.enqueue(z2.detach(), 1)
        return StepOutput(loss, features=h1)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        self.normalize_prototypes()
        self.iteration.fill_(step + 1)

    def grad_groups(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "projector": self.projector, "prototypes": self.prototypes}
