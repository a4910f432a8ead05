"""Contrastive Quant on top of SimCLR or BYOL (CQ Sec. 3.3-3.4; docs/protocols.md section 1).

`ContrastiveQuant(base, variant, precisions)` wraps a base method that supplies "NCE" through the
base class's CQ interface (`common.methods.base.Method`: `cq_encode`, `target_network`,
`cq_target`, `nce`), so any method that implements it runs under CQ. The two the paper uses:

- SimCLR: NCE(f_a, f_b) = NT-Xent of the projections of the two features (CQ Sec. 3.4).
- BYOL: NCE(f_a, f_b) = BYOL's symmetrised normalized MSE: the online network (backbone,
  projector, predictor) encodes both inputs, the EMA target encodes both inputs, and
  l(p_a, z'_b) + l(p_b, z'_a) (both inputs fed to online and target alternately, CQ Sec. 3.4).

Each iteration draws q1 != q2 from the precision set (uniformly, without replacement; a
one-member set gives q1 = q2), encodes every (view, precision) feature of the variant's plan
(`cq.objectives`) once, and sums the NCE terms of its pairs (Eqs. 4, 7, 8 are sums; CQ-B and CQ-C
therefore have 2x and 4x the loss scale of SimCLR, as the equations say).

Choices made where the paper is silent (all parameters):
- Which networks are quantized: the encoder (backbone) only; projection and prediction heads stay
  full precision. Inside the encoder, the backbone's default FP layers (`keep_fp`).
- BYOL's target: it is an EMA copy of the quantizing online encoder, so it is a quantizing
  network too. `target_precision="match"` (default): for a feature F_q(v) the target encodes v
  at the same q (the target stands for the same quantized encoder); `"fp"`: the target always
  runs in full precision.
- q1, q2 come from the method's own generator, seeded and identical on every rank (so a DDP run
  uses one precision pair per global batch), saved in the checkpoint for exact resume.
- After each step the encoder is left at full precision, so anything reading it between steps
  (evaluation, the engine's checkpoint) sees the FP network. The online linear probe reads the
  backbone features of the plan's first key.
- CQ-Quant's input is the unaugmented image: the base method's view pipelines should be the
  deterministic "none" recipe (the CLI does this); view 0 is `base.views[0]`.
- The baseline (`variant="baseline"`) runs the same code with both features at full precision and
  no precision draw: bit for bit the base method's step.
- BatchNorm is shared by all widths, so a CQ encoder ends with the running statistics of quantized
  forwards. Before the encoder is saved, `finish_training` re-estimates them at full precision on
  `bn_reestimation_batches` training batches (default 20; 0 = off) drawn with the base method's
  first view pipeline (`common.bn_reestimation`); the metrics record it under `bn_reestimation`.
"""
from __future__ import annotations

from itertools import islice
from typing import Sequence

import torch
import torch.nn as nn

from common.bn_reestimation import reestimate_batchnorm
from common.errors import ConfigError
from common.methods.base import Encoding, Method, StepOutput
from common.quant import (MAX_BITS, QuantConfig, parse_precision_set, plain_state_dict,
                          quantize_model, sample_precisions, set_precision)
from cq.objectives import Key, Plan, check_variant, needs_precisions, plan

TARGET_PRECISIONS = ("match", "fp")


BN_REESTIMATION_BATCHES = 20  # training batches of the FP BatchNorm re-estimation (finish_training)


class ContrastiveQuant(Method):
    """CQ-A / CQ-B / CQ-C / CQ-Quant (or the plain baseline) over a SimCLR or BYOL instance."""

    name = "cq"

    def __init__(self, base: Method, variant: str, precisions: str | Sequence[int] = "6-16",
                 quant: QuantConfig | None = None, keep_fp: Sequence[str] | None = None,
                 target_precision: str = "match", seed: int = 0,
                 bn_reestimation_batches: int = BN_REESTIMATION_BATCHES):
        nn.Module.__init__(self)  # the backbone belongs to `base`; not registered twice
        if not base.supports_cq():
            raise ConfigError(f"cq base method: {type(base).__name__} has no NCE for Contrastive Quant "
                              "(Method.cq_encode / nce); SimCLR and BYOL have")
        if target_precision not in TARGET_PRECISIONS:
            raise ConfigError(f"cq target_precision: expected one of {TARGET_PRECISIONS}, got {target_precision!r}")
        self.base = base
        self.variant = check_variant(variant)
        self.precisions = parse_precision_set(precisions)
        self.target_precision = target_precision
        self.channels_last = False
        quant = quant or QuantConfig()
        self.quantized = [base.backbone] + ([base.target_network()] if base.target_network() is not None else [])
        for net in self.quantized:
            quantize_model(net, keep_fp=keep_fp, config=quant, precisions=self.precisions)
        if isinstance(bn_reestimation_batches, bool) or not isinstance(bn_reestimation_batches, int) \
                or bn_reestimation_batches < 0:
            raise ConfigError(f"cq bn_reestimation.batches: expected an integer >= 0 (0 = off), "
                              f"got {bn_reestimation_batches!r}")
        self.bn_reestimation_batches = bn_reestimation_batches
        self.bn_reestimation: dict = {"done": False}
        self.precision_rng = torch.Generator().manual_seed(seed)
        self.register_buffer("precision_counts", torch.zeros(MAX_BITS + 1, dtype=torch.long))

    # -- the parts the engine reads -----------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        return self.base.backbone

    def encoder(self) -> nn.Module:
        return self.base.backbone

    def encoder_state_dict(self) -> dict:
        """The encoder as a plain (unconverted) backbone state dict, for evaluation."""
        return plain_state_dict(self.base.backbone)

    def input_norm(self):
        return self.base.input_norm()

    def grad_groups(self) -> dict[str, nn.Module]:
        return self.base.grad_groups()

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        self.base.after_optimizer_step(step, total_steps)  # BYOL's EMA; nothing for SimCLR

    def finish_training(self, batches, generator) -> None:
        """Re-estimate the encoder's BatchNorm statistics at full precision before it is saved
        (``common.bn_reestimation``): a CQ encoder only ever ran quantized forwards, and every
        evaluation reads it at FP. The baseline ran FP forwards only and is left as it is."""
        if self.variant == "baseline" or self.bn_reestimation_batches == 0:
            reason = "baseline: FP forwards only" if self.variant == "baseline" else "off"
            self.bn_reestimation = {"done": False, "reason": reason}
            return
        set_precision(self.base.backbone, None)
        view, images_seen = self.base.views[0], []

        def inputs():
            for images in islice(batches(), self.bn_reestimation_batches):
                images_seen.append(images.shape[0])
                yield self.base.as_input(view(images, generator, slot=0))

        used = reestimate_batchnorm(self.base.backbone, inputs())
        self.bn_reestimation = {"done": True, "precision": "fp", "batches": used, "images": sum(images_seen)}

    def get_extra_state(self):
        return {"precision_rng": self.precision_rng.get_state()}

    def set_extra_state(self, state) -> None:
        self.precision_rng.set_state(state["precision_rng"])

    def summary(self) -> dict:
        counts = {q: int(self.precision_counts[q]) for q in self.precisions}
        return {"variant": self.variant, "base": self.base.name,
                "precision_set": list(self.precisions), "precision_counts": counts,
                "target_precision": self.target_precision, "bn_reestimation": self.bn_reestimation}

    # -- one step -----------------------------------------------------------------------------
    def draw(self) -> tuple[int | None, int | None]:
        """q1, q2 for this iteration (None, None for the baseline)."""
        if not needs_precisions(self.variant):
            return None, None
        q1, q2 = sample_precisions(self.precisions, 2, self.precision_rng)
        self.precision_counts[q1] += 1
        self.precision_counts[q2] += 1
        return q1, q2

    def _pipes(self) -> dict[int, object]:
        """The pipeline of each view of cq/objectives.py: 0 (x, CQ-Quant: the base's views are then
        the "none" recipe) and 1 (Aug1) from the base's first pipeline, 2 (Aug2) from its second."""
        return {0: self.base.views[0], 1: self.base.views[0], 2: self.base.views[1]}

    def view_slots(self) -> list:
        """One slot per view the variant uses (the same views every step), in order of first use."""
        pipes = self._pipes()
        return [pipes[v] for v in plan(self.variant, 1, 2).views]

    def make_views(self, the_plan: Plan, images: torch.Tensor, generator) -> dict[int, torch.Tensor]:
        pipes, slots = self._pipes(), plan(self.variant, 1, 2).views
        return {v: pipes[v](images, generator, slot=slots.index(v)) for v in the_plan.views}

    def encode_online(self, x: torch.Tensor, bits: int | None) -> Encoding:
        set_precision(self.base.backbone, bits)
        return self.base.cq_encode(x)

    def encode_target(self, x: torch.Tensor, bits: int | None) -> torch.Tensor:
        set_precision(self.base.target_network(), bits if self.target_precision == "match" else None)
        return self.base.cq_target(x)

    def nce(self, a: Encoding, b: Encoding) -> torch.Tensor:
        """One NCE term of the plan: the base method's loss between two (view, precision) features."""
        return self.base.nce(a, b)

    def training_step(self, images, labels, generator) -> StepOutput:
        self.base.channels_last = self.channels_last
        q1, q2 = self.draw()
        the_plan = plan(self.variant, q1, q2)
        views = self.make_views(the_plan, images, generator)
        try:
            encoded = {key: self.encode_online(views[key.view], key.bits) for key in the_plan.keys}
            if self.base.target_network() is not None:
                for key in the_plan.keys:
                    encoded[key].target = self.encode_target(views[key.view], key.bits)
        finally:
            for net in self.quantized:
                set_precision(net, None)
        loss = sum(self.nce(encoded[a], encoded[b]) for a, b in the_plan.pairs)
        logs = {} if q1 is None else {"q1": float(q1), "q2": float(q2)}
        return StepOutput(loss, features=encoded[the_plan.keys[0]].features, logs=logs)


def forwards_per_step(variant: str, base: str = "simclr") -> int:
    """Encoder forwards of one step (the benchmark's ideal cost ratio): keys x (1 or 2 for BYOL)."""
    return len(plan(variant, 8, 6).keys) * (2 if base == "byol" else 1)


__all__ = ["ContrastiveQuant", "Key", "forwards_per_step", "TARGET_PRECISIONS"]
