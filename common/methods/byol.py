"""BYOL (Grill et al. 2020, "Bootstrap your own latent"): an online network predicts an EMA target.

Networks (BYOL Sec. 3.1 and 3.3):
  online  = backbone f_theta -> projector g_theta -> predictor q_theta
  target  = backbone f_xi    -> projector g_xi         (an EMA copy of the online f, g)
Projector and predictor are MLPs Linear(4096) -> BN -> ReLU -> Linear(256) (Sec. 3.3: hidden 4096,
output 256); `MLPHead` with its defaults is exactly that.

Loss (BYOL Eq. 2 and the symmetrisation after it): with p_i = q(g(f(v_i))) the online predictions
and z'_i = g_xi(f_xi(v_i)) the target projections of the two views,
    l(p, z') = || p/||p|| - z'/||z'|| ||^2 = 2 - 2 cos(p, z')          (`common.losses.byol_loss`)
    loss     = l(p_1, z'_2) + l(p_2, z'_1)                             (both views go through both)
The target gets no gradient: its parameters have `requires_grad=False` and are run under no_grad
(the stop-gradient of Eq. 2).

Target update (BYOL Sec. 3.1 and 3.3), after every optimizer step k of K:
    tau_k = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2,   tau_base = 0.996
    xi   <- tau_k * xi + (1 - tau_k) * theta                   (every parameter)
so tau goes 0.996 -> 1 over training. k is the engine's 0-based step index of the optimizer step
just taken (the first update uses tau_0 = tau_base), K the run's total optimizer steps.

Choices where the paper is silent:
- Buffers (BatchNorm running mean / var / num_batches_tracked) are COPIED from the online network
  at every update (`momentum_update(..., buffers="copy")`), not averaged: the running statistics
  are only read when the target runs in eval mode, and integer counters cannot be averaged. In
  training the target's BatchNorm uses the statistics of its own batch (train mode), as in BYOL's
  code. `buffers="ema"` (average floating buffers, copy the rest) is offered as an option.
- The target is a deep copy of the online backbone and projector at construction (identical
  initial weights, BYOL Sec. 3.1), stored as sub-modules (so it is checkpointed) but left out of
  the optimizer (frozen parameters) and of `grad_groups`.
- Each view is encoded by its own forward (BatchNorm sees one view's batch at a time), as in
  `SimCLR`.
- Under DDP every rank computes the same EMA from the same (averaged) online weights, so the
  targets stay identical without communication.

Reusable pieces (Contrastive Quant's BYOL variants, cq/): `online_embed(x) -> (h, p)`,
`target_embed(x) -> z'`, the pure `byol_pair_loss((p1, p2), (z1, z2))`, `momentum_update` and
`cosine_tau`.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

from common.errors import ConfigError
from common.heads import MLPHead
from common.losses import byol_loss
from common.methods.base import Encoding, Method, StepOutput

BUFFER_MODES = ("copy", "ema")


def cosine_tau(step: int, total_steps: int, tau_base: float = 0.996) -> float:
    """BYOL's EMA schedule (Sec. 3.3): tau_k = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2."""
    if total_steps < 1:
        raise ConfigError(f"total_steps: expected a positive integer, got {total_steps}")
    k = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


@torch.no_grad()
def momentum_update(target: nn.Module, online: nn.Module, tau: float, buffers: str = "copy") -> None:
    """target <- tau * target + (1 - tau) * online, parameter by parameter (in place).

    ``buffers``: "copy" takes the online buffers as they are; "ema" averages floating-point
    buffers like parameters and copies the others (counters). The two modules must have the same
    structure (the target is a deep copy of the online one).
    """
    if buffers not in BUFFER_MODES:
        raise ConfigError(f"buffers: expected one of {BUFFER_MODES}, got {buffers!r}")
    target_params, online_params = list(target.parameters()), list(online.parameters())
    if len(target_params) != len(online_params):
        raise ConfigError("momentum_update: target and online networks have different structures")
    for t, o in zip(target_params, online_params):
        t.mul_(tau).add_(o.detach(), alpha=1.0 - tau)  # lerp, written as the paper writes it
    for t, o in zip(target.buffers(), online.buffers()):
        if buffers == "ema" and t.is_floating_point():
            t.mul_(tau).add_(o, alpha=1.0 - tau)
        else:
            t.copy_(o)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters never take part in autograd (the momentum networks)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def byol_pair_loss(p: tuple[torch.Tensor, torch.Tensor], z: tuple[torch.Tensor, torch.Tensor]
                   ) -> torch.Tensor:
    """BYOL's symmetrised loss of one positive pair of views (Eq. 2 + its symmetric term):

        loss = l(p_1, z'_2) + l(p_2, z'_1),   l(p, z') = 2 - 2 cos(p, z'),  mean over the batch

    ``p = (p_1, p_2)``: online predictions of views 1 and 2; ``z = (z'_1, z'_2)``: target
    projections of the same views (detached inside `byol_loss`).
    """
    (p1, p2), (z1, z2) = p, z
    return byol_loss(p1, z2) + byol_loss(p2, z1)


class BYOL(Method):
    """BYOL. Defaults from the paper (Sec. 3.3): projector and predictor 4096 -> 256, tau_base 0.996."""

    name = "byol"

    def __init__(self, backbone: nn.Module, views: tuple, proj_dim: int = 256, hidden_dim: int = 4096,
                 pred_hidden_dim: int = 4096, tau_base: float = 0.996, buffers: str = "copy"):
        super().__init__(backbone)
        if not 0.0 <= tau_base <= 1.0:
            raise ConfigError(f"tau_base: expected a number in [0, 1], got {tau_base}")
        if buffers not in BUFFER_MODES:
            raise ConfigError(f"buffers: expected one of {BUFFER_MODES}, got {buffers!r}")
        self.views = views  # (view 1, view 2) pipelines, e.g. build_views("byol", 224)
        self.projector = MLPHead(backbone.feature_dim, hidden_dim, proj_dim)
        self.predictor = MLPHead(proj_dim, pred_hidden_dim, proj_dim)
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)
        self.tau_base = tau_base
        self.buffers_mode = buffers
        self.tau = tau_base  # the value used by the latest update (logged)

    def online_embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(backbone features h, prediction p = q(g(h))) of the online network on view batch x."""
        h = self.backbone(self.as_input(x))
        return h, self.predictor(self.projector(h))

    @torch.no_grad()
    def target_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Target projection z' = g_xi(f_xi(x)), without gradient (the stop-gradient)."""
        return self.target_projector(self.target_backbone(self.as_input(x)))

    def training_step(self, images, labels, generator) -> StepOutput:
        v1, v2 = self.views[0](images, generator, slot=0), self.views[1](images, generator, slot=1)
        h1, p1 = self.online_embed(v1)
        _, p2 = self.online_embed(v2)
        z1, z2 = self.target_embed(v1), self.target_embed(v2)
        loss = byol_pair_loss((p1, p2), (z1, z2))
        return StepOutput(loss, features=h1, logs={"tau": self.tau})

    @torch.no_grad()
    def ema_update(self, tau: float) -> None:
        """target <- tau * target + (1 - tau) * online, for backbone and projector."""
        momentum_update(self.target_backbone, self.backbone, tau, self.buffers_mode)
        momentum_update(self.target_projector, self.projector, tau, self.buffers_mode)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        self.tau = cosine_tau(step, total_steps, self.tau_base)
        self.ema_update(self.tau)

    def grad_groups(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "projector": self.projector, "predictor": self.predictor}

    def cq_encode(self, x: torch.Tensor) -> Encoding:
        return Encoding(*self.online_embed(x))

    def target_network(self) -> nn.Module:
        return self.target_backbone

    def cq_target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_embed(x)

    def nce(self, a: Encoding, b: Encoding) -> torch.Tensor:
        """BYOL's symmetrised loss: online of each encoding against the other's target (CQ Sec. 3.4)."""
        return byol_pair_loss((a.online, b.online), (a.target, b.target))
