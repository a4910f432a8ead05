"""Supervised pretraining (the "Supervised Pre." rows of BURN Tables 1-4): backbone + a linear
classifier trained with cross-entropy on labelled images.

    loss = CE(W f(Aug(x)) + b, y) = - mean_b log softmax(W h_b + b)_{y_b}

Choices where the papers are silent:
- One augmented view per image: `views[0]` (e.g. `build_views("crop_flip", 224)`, the usual
  random-resized-crop + flip of supervised ImageNet training); `views[1]` is not used.
- The classifier is a single Linear(feature_dim, num_classes) with bias, PyTorch's default init.
- Labels are required: a missing batch, or any label outside [0, num_classes) (e.g. the -1 of
  unlabelled images), is a ConfigError, not a silent skip. Checking costs one device sync per step.
- No label smoothing.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.errors import ConfigError
from common.methods.base import Method, StepOutput


def check_labels(labels, num_classes: int) -> torch.Tensor:
    """The labels as a long tensor (B,), or ConfigError if missing or outside [0, num_classes)."""
    if labels is None:
        raise ConfigError("labels: the supervised method needs class labels, got None")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.is_floating_point():
        raise ConfigError(f"labels: expected integer class labels of shape (B,), got {labels.dtype} "
                          f"{tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ConfigError(f"labels: expected class indices in [0, {num_classes}), got values in "
                          f"[{int(labels.min())}, {int(labels.max())}] (missing labels are not allowed)")
    return labels.long()


class Supervised(Method):
    """Backbone + Linear classifier, cross-entropy on one augmented view."""

    name = "supervised"

    def __init__(self, backbone: nn.Module, views: tuple, num_classes: int):
        super().__init__(backbone)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
        self.views = views
        self.num_classes = num_classes
        self.classifier = nn.Linear(backbone.feature_dim, num_classes)

    def training_step(self, images, labels, generator) -> StepOutput:
        labels = check_labels(labels, self.num_classes).to(images.device)
        h = self.backbone(self.as_input(self.views[0](images, generator, slot=0)))
        logits = self.classifier(h)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return StepOutput(F.cross_entropy(logits.float(), labels), features=h, logs={"train_acc": accuracy})

    def view_slots(self) -> list:
        return [self.views[0]]

    def grad_groups(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "classifier": self.classifier}
