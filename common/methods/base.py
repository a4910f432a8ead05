"""What a training method is: its networks, its views, and a loss that is a pure function.

The engine (`common.engine`) owns everything else: devices, DDP, AMP, optimizer and schedule,
checkpoints and resume, logging, the online linear classifier. A method subclasses `Method`
and implements `training_step`; methods with momentum networks also implement
`after_optimizer_step`.

Contrastive Quant (cq/method.py) runs on any method that supplies its "NCE" (CQ Sec. 3.4): how
one input is encoded (`cq_encode`, and `cq_target` for a method with a target network) and the
loss between two such encodings (`nce`). SimCLR and BYOL implement them; `supports_cq` tells.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn as nn


@dataclass
class StepOutput:
    """What one training step of a method returns.

    ``loss``: the scalar to minimise. ``features``: backbone (pre-projection) features of one
    view, which the engine's online linear classifier reads detached (None: no online probe).
    ``logs``: extra scalars for the curves.
    """

    loss: torch.Tensor
    features: torch.Tensor | None = None
    logs: dict[str, float | torch.Tensor] = field(default_factory=dict)


@dataclass
class Encoding:
    """One input encoded for Contrastive Quant's NCE: backbone features h, the online output (SimCLR:
    projection z; BYOL: prediction p) and, for a method with a target network, its output."""

    features: torch.Tensor
    online: torch.Tensor
    target: torch.Tensor | None = None


class Method(nn.Module):
    """Base class of every training method (SimCLR, BYOL, MoCo v2, SwAV, supervised, CQ, BURN)."""

    name = "method"

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.channels_last = False  # set by the engine on GPU

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    def as_input(self, x: torch.Tensor) -> torch.Tensor:
        """Views leave the view pipeline in the engine's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def training_step(self, images: torch.Tensor, labels: torch.Tensor,
                      generator: torch.Generator) -> StepOutput:
        """One step's loss on a batch of uint8 images (B, 3, H, W); views drawn from ``generator``."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator) -> StepOutput:
        return self.training_step(images, labels, generator)

    def view_slots(self) -> list:
        """The view pipelines one training step calls, by slot: ``views[k](images, generator,
        slot=k)``. A loader that crops from the full image makes one crop per slot with that
        pipeline's geometry (``common.data.crops``). Default: every pipeline in ``views``."""
        return list(getattr(self, "views", None) or [])

    def check_batch(self, images_per_step: int) -> None:
        """Refuse (ConfigError naming the setting) a batch this method cannot train on, before the
        run folder exists. ``images_per_step``: one forward's images over every process. Default:
        any."""

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called after every optimizer step (momentum / EMA updates). Default: nothing."""

    def finish_training(self, batches: Callable[[], Iterator[torch.Tensor]],
                        generator: torch.Generator) -> None:
        """Called once after the last optimizer step of a run that ended ok, before ``encoder.pt``
        is written. ``batches()`` yields training batches (uint8 images on the device, a fixed
        order); ``generator`` draws their views. Default: nothing (CQ re-estimates BatchNorm)."""

    def grad_groups(self) -> dict[str, nn.Module]:
        """Named module groups whose gradient norms are logged (default: every child)."""
        return dict(self.named_children())

    def summary(self) -> dict:
        """Method-specific facts for the run's metrics JSON (default: none)."""
        return {}

    def encoder(self) -> nn.Module:
        """The network that downstream evaluation uses."""
        return self.backbone

    def encoder_state_dict(self) -> dict:
        """What ``encoder.pt`` stores: a state dict that loads into a plain backbone."""
        return self.encoder().state_dict()

    def input_norm(self) -> str | list | None:
        """The input normalization the encoder trains with (its first view pipeline's), which
        ``encoder.pt`` records for the evaluations; None if the method has no views."""
        from common.views import norm_label

        views = getattr(self, "views", None)
        return norm_label(views[0]) if views else None

    # -- Contrastive Quant's interface (optional) --------------------------------------------
    def cq_encode(self, x: torch.Tensor) -> Encoding:
        """One batch of views through the online network (for CQ, at the precision it has set)."""
        raise NotImplementedError

    def target_network(self) -> nn.Module | None:
        """The backbone of a target (momentum) network that encodes too; None: there is none."""
        return None

    def cq_target(self, x: torch.Tensor) -> torch.Tensor:
        """The target network's output for one batch of views (only if `target_network()`)."""
        raise NotImplementedError

    def nce(self, a: Encoding, b: Encoding) -> torch.Tensor:
        """The method's symmetric loss between two encodings: CQ's NCE(f_a, f_b)."""
        raise NotImplementedError

    @classmethod
    def supports_cq(cls) -> bool:
        return cls.nce is not Method.nce and cls.cq_encode is not Method.cq_encode
