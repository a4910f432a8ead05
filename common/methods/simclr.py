"""SimCLR (Chen et al. 2020): two augmented views, a projection head, NT-Xent over the batch.

loss = NT-Xent(g(f(Aug1 x)), g(f(Aug2 x))) with f the backbone and g the projection MLP
(2 layers in SimCLR; 3 in SimCLRv2, `num_layers=3`). The two views are encoded by separate
forwards (BatchNorm sees each view's batch alone), matching f = F(Aug1 x), f+ = F(Aug2 x) of
CQ Eq. 2. Under DDP the negatives are the global batch (`common.losses.nt_xent`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from common.heads import MLPHead
from common.losses import nt_xent
from common.methods.base import Encoding, Method, StepOutput


class SimCLR(Method):
    name = "simclr"

    def __init__(self, backbone: nn.Module, views: tuple, proj_dim: int = 128, hidden_dim: int = 2048,
                 num_layers: int = 2, temperature: float = 0.5):
        super().__init__(backbone)
        self.projector = MLPHead(backbone.feature_dim, hidden_dim, proj_dim, num_layers=num_layers)
        self.views = views  # (view 1, view 2) pipelines, e.g. common.views.build_views("simclr", 32)
        self.temperature = temperature

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(backbone features, projection) of one batch of views."""
        h = self.backbone(self.as_input(x))
        return h, self.projector(h)

    def training_step(self, images, labels, generator) -> StepOutput:
        h1, z1 = self.embed(self.views[0](images, generator, slot=0))
        _, z2 = self.embed(self.views[1](images, generator, slot=1))
        return StepOutput(nt_xent(z1, z2, self.temperature), features=h1)

    def cq_encode(self, x: torch.Tensor) -> Encoding:
        return Encoding(*self.embed(x))

    def nce(self, a: Encoding, b: Encoding) -> torch.Tensor:
        """NT-Xent of the two projections (CQ Sec. 3.4)."""
        return nt_xent(a.online, b.online, self.temperature)
