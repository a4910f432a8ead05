"""S2-BNN (Shen et al. CVPR 2021), the BURN paper's strongest baseline (docs/protocols.md sec. 2).

A FIXED FP teacher, trunk + MLP head to 128-d, both frozen (no gradient, in no optimizer, BN in
eval mode); a binary student, trunk + its own MLP head to the same width. On the SAME view x:

    t = normalize(head_T(h(x))),  s = normalize(head_S(k(x)))       (L2-normalised 128-d)
    loss = - sum_c softmax(t / 0.2)_c log softmax(s / 0.2)_c          (soft cross-entropy)

Choices where the sources are silent:
- The teacher head is MoCo v2's projection head of the same MoCo v2 run as the trunk (the
  S2-BNN teacher is "a MoCo v2 teacher, trunk + MLP head to 128-d"): loaded from a MoCo v2
  checkpoint or from this project's MoCo v2 teacher stage (``burn.teacher.load_fp_head``).
- The student head has MoCo v2's head shape (Linear -> ReLU -> Linear, no BN), hidden width
  ``hidden_dim`` (default: the teacher head's hidden width), output = the teacher head's width.
- One view per step (``views[0]``) for both networks; the student's trunk features feed the
  engine's online probe.
- The binary student trains fully binary (``stage=2``) by default, in a single stage (the
  other baselines of BURN's tables are single-stage runs too); ``stage=1`` is allowed.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from burn.teacher import FrozenTrunk
from common.binary import set_binary_stage
from common.errors import ConfigError
from common.heads import MLPHead
from common.losses import soft_cross_entropy
from common.methods.base import Method, StepOutput


class S2BNN(Method):
    """Fixed FP teacher (trunk + head), binary student + head, soft CE at T = 0.2 on the same view."""

    name = "s2bnn"

    def __init__(self, backbone: nn.Module, teacher_trunk: nn.Module, teacher_head: nn.Module, views: tuple,
                 hidden_dim: int | None = None, temperature: float = 0.2, teacher_bn: str = "eval",
                 stage: int = 2):
        super().__init__(backbone)
        if not temperature > 0:
            raise ConfigError(f"temperature: expected a positive number, got {temperature}")
        out_dim = getattr(teacher_head, "out_dim", None)
        if getattr(teacher_head, "in_dim", None) != teacher_trunk.feature_dim or not out_dim:
            raise ConfigError(f"teacher head: expected an MLPHead on the trunk's {teacher_trunk.feature_dim}-d "
                              f"features, got in_dim={getattr(teacher_head, 'in_dim', None)}")
        set_binary_stage(self.backbone, stage)
        self.stage, self.views, self.temperature = stage, views, temperature
        self.teacher = FrozenTrunk(teacher_trunk, teacher_bn)
        self.teacher_head = _FrozenHead(teacher_head)
        hidden = hidden_dim or teacher_head.net[0].out_features
        self.head = MLPHead(backbone.feature_dim, hidden, out_dim, hidden_bn=False)

    def view_slots(self) -> list:
        return [self.views[0]]

    def training_step(self, images, labels, generator) -> StepOutput:
        x = self.as_input(self.views[0](images, generator, slot=0))
        t = F.normalize(self.teacher_head(self.teacher(x)).float(), dim=1)  # fixed, no grad
        h = self.backbone(x)
        s = F.normalize(self.head(h).float(), dim=1)
        return StepOutput(soft_cross_entropy(t, s, self.temperature), features=h)

    def grad_groups(self) -> dict[str, nn.Module]:
        return {"binary_feature_extractor": self.backbone, "binary_head": self.head}

    def summary(self) -> dict:
        return {"name": "s2bnn", "stage": self.stage, "temperature": self.temperature,
                "embedding_dim": self.head.out_dim, "teacher_bn": self.teacher.bn_mode}


class _FrozenHead(nn.Module):
    """The teacher's projection head: no gradient, always in eval mode."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head
        for p in head.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "_FrozenHead":
        super().train(mode)
        self.head.eval()
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)
