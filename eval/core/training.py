"""What the suites that train a layer share: the new linear layer, the presets' SGD and schedule."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from common.optim import build_optimizer, make_schedule
from eval.presets import TrainPreset


def new_linear(dim: int, num_classes: int) -> nn.Linear:
    """MoCo's linear classifier initialization: weight ~ N(0, 0.01^2), bias 0."""
    layer = nn.Linear(dim, num_classes)
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.zeros_(layer.bias)
    return layer


def sgd_for(preset: TrainPreset, groups: list[dict]) -> torch.optim.Optimizer:
    return build_optimizer("sgd", groups, lr=preset.lr, momentum=preset.momentum,
                           weight_decay=preset.weight_decay, nesterov=preset.nesterov)


def schedule_for(preset: TrainPreset, steps_per_epoch: int) -> Callable[[int], float]:
    total = max(1, preset.epochs * steps_per_epoch)
    return make_schedule(preset.schedule, total, 0, [m * steps_per_epoch for m in preset.milestones],
                         preset.gamma)
