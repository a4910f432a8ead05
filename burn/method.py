"""BURN (Kim & Choi, "Unsupervised Representation Learning for Binary Networks by Joint
Classifier Learning"): Sec. 3, Alg. 1.

Networks
    target  = frozen FP feature extractor h (``burn.teacher.FrozenTrunk``, pretrained, no
              gradient) + FP classifier g, randomly initialised and TRAINED (the moving target);
    student = binary feature extractor k (ReActNet-A, ``self.backbone``) + classifier l.
Loss (Eq. 4, ``burn.loss``): (1 - lambda(t)) KL(p_1, p_2) + lambda(t) L_FS(h x, k x), with
p_1 = softmax(g(h x)), p_2 = softmax(l(k x)). One optimizer updates g, k and l (Alg. 1 lines
7-8 / 17-18: theta and phi both receive the gradient of the same loss); h is in no optimizer group.

Multi-stage (Sec. 3.4): ``stage=1`` binarizes activations only (FP weights), ``stage=2`` is fully
binary (``common.binary.set_binary_stage``). Stage 2 starts from stage 1: ``init_from_stage1``
loads k and l (and the FS projection if any) and, in the "modified" scheme (BURN's, the
default), g too; the "unmodified" scheme (ablations (1)-(3)) leaves g freshly initialised.

Gradient curves (Figs. 3 and 5): ``grad_groups()`` names ``binary_feature_extractor`` (k),
``binary_classifier`` (l) and ``fp_classifier`` (g) (+ ``fs_projection``), so the engine logs
``grad_norm/<group>`` per logged step (``log_every=1`` for every iteration).

Choices where the paper is silent (see also ``burn.loss``):
- Classifiers g and l: one Linear each (``classifier="linear"``, the "classifier" of the
  supervised-KL methods BURN builds on), ``classifier_dim`` outputs, default 1000 (the number
  of ImageNet classes of the supervised classifiers of ResNet-50 / ReActNet-A; BURN trains
  without labels, so this is just the size of the softmax). ``classifier="mlp"`` is the public
  code's fc -> BN -> ReLU -> fc (hidden ``hidden_dim``, default 2000; use ``classifier_dim=2000``).
  g and l start from the same init distribution (PyTorch's default Linear init), not the same values.
- Views: Alg. 1 feeds the SAME sample x to h and k. Default ``pairing="same"``: one augmented
  view (``views[0]``) for both. ``pairing="crossed"`` (public code): teacher on view 2 vs student
  on view 1 and teacher on view 1 vs student on view 2; the loss is the MEAN of the two.
- ``fs_on="features"`` (paper): L_FS on h(x) and k(x), widths matched by ``dim_match`` ("pool",
  parameter-free, default; or "projection", a learnable Linear(k width -> h width) without bias
  on the student side). ``fs_on="outputs"`` (public code): L_FS on g(h x) and l(k x).
- ``PUBLIC_CODE`` lists the options of the public code's variant: 2000-d MLP heads, KL(teacher ||
  student) at T = 0.2, FS = 2 - 2 cos on the 2000-d outputs, crossed views.
- lambda(t) uses t = the number of optimizer steps already taken in this stage (a buffer, so a
  resumed run continues the schedule) and T = the stage's total steps (given, or learnt from the
  engine's ``after_optimizer_step``; lambda(0) does not depend on T for any of the schedules).
- The student backbone's features k(x) are what the engine's online linear probe reads.
- The teacher trunk's weights are part of the method's state dict (checkpointed with the run),
  but ``init_from_stage1`` never copies them: h always comes from the teacher file given.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from burn.loss import (DIM_MATCHES, FS_LOSSES, KL_DIRECTIONS, LambdaSchedule, burn_loss,
                       feature_similarity, kl_term, match_widths)
from burn.teacher import FrozenTrunk, load_state_strict
from common import runs
from common.binary import set_binary_stage
from common.errors import ConfigError
from common.heads import MLPHead
from common.methods.base import Method, StepOutput

SCHEMES = ("modified", "unmodified")
PAIRINGS = ("same", "crossed")
CLASSIFIERS = ("linear", "mlp")

PUBLIC_CODE = {"classifier": "mlp", "classifier_dim": 2000, "hidden_dim": 2000,
               "kl_direction": "teacher_student", "kl_temperature": 0.2, "fs_loss": "nmse",
               "fs_on": "outputs", "pairing": "crossed"}


def make_classifier(in_dim: int, kind: str, out_dim: int, hidden_dim: int) -> nn.Module:
    """A randomly initialised classifier: Linear, or the public code's fc -> BN -> ReLU -> fc."""
    if kind not in CLASSIFIERS:
        raise ConfigError(f"classifier={kind!r}: expected one of {CLASSIFIERS}")
    if kind == "linear":
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 2:
            raise ConfigError(f"classifier_dim: expected an integer >= 2, got {out_dim!r}")
        return nn.Linear(in_dim, out_dim)
    return MLPHead(in_dim, hidden_dim, out_dim, num_layers=2)


class BURN(Method):
    """BURN on a binary student ``backbone`` (k) and a frozen FP ``teacher_trunk`` (h)."""

    name = "burn"

    def __init__(self, backbone: nn.Module, teacher_trunk: nn.Module, views: tuple, stage: int = 1,
                 classifier: str = "linear", classifier_dim: int = 1000, hidden_dim: int = 2000,
                 kl_direction: str = "student_teacher", kl_temperature: float = 1.0,
                 fs_loss: str = "cosine", fs_on: str = "features", dim_match: str = "pool",
                 lambda_schedule: str = "cosine", lambda_0: float = 0.9, lambda_T: float = 0.7,
                 lambda_constant: float = 0.7, lambda_step_high: float = 1.0, lambda_step_low: float = 0.0,
                 pairing: str = "same", teacher_bn: str = "eval", scheme: str = "modified",
                 total_steps: int | None = None):
        super().__init__(backbone)
        for name, value, allowed in (("fs_loss", fs_loss, FS_LOSSES), ("fs_on", fs_on, ("features", "outputs")),
                                     ("dim_match", dim_match, DIM_MATCHES), ("pairing", pairing, PAIRINGS),
                                     ("scheme", scheme, SCHEMES), ("kl_direction", kl_direction, KL_DIRECTIONS)):
            if value not in allowed:
                raise ConfigError(f"{name}={value!r}: expected one of {allowed}")
        if not kl_temperature > 0:
            raise ConfigError(f"kl_temperature: expected a positive number, got {kl_temperature}")
        self.views = views
        self.stage = stage
        set_binary_stage(self.backbone, stage)
        self.teacher = FrozenTrunk(teacher_trunk, teacher_bn)
        self.classifier_options = (classifier, classifier_dim, hidden_dim)
        self.teacher_classifier = make_classifier(self.teacher.feature_dim, *self.classifier_options)  # g
        self.student_classifier = make_classifier(backbone.feature_dim, *self.classifier_options)  # l
        self.fs_projection = None
        if fs_on == "features" and dim_match == "projection":
            self.fs_projection = nn.Linear(backbone.feature_dim, self.teacher.feature_dim, bias=False)
        self.kl_direction, self.kl_temperature = kl_direction, kl_temperature
        self.fs_loss, self.fs_on, self.dim_match = fs_loss, fs_on, dim_match
        self.pairing, self.scheme = pairing, scheme
        self.schedule = LambdaSchedule(lambda_schedule, lambda_0, lambda_T, lambda_constant,
                                       lambda_step_high, lambda_step_low)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("total_steps", torch.tensor(int(total_steps or 0), dtype=torch.long))

    # --- the loss ------------------------------------------------------------------------------
    def current_lambda(self) -> float:
        """lambda(t) at the step about to be computed (t = optimizer steps taken in this stage)."""
        t, total = int(self.iteration), int(self.total_steps)
        if total <= 0:
            if t > 0:
                raise ConfigError("BURN: total_steps is unknown after the first step")
            total = 1  # lambda(0) is the same for every T
        return self.schedule(min(t, total), total)

    def fs_pair(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(teacher, student) vectors of equal width for L_FS on features (see dim_match)."""
        if self.fs_projection is not None:
            return v1, self.fs_projection(v2)
        return match_widths(v1, v2)

    def pair_loss(self, teacher_x: torch.Tensor, student_x: torch.Tensor, lam: float,
                  teacher_v: torch.Tensor | None = None) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Eq. 4 for the teacher on ``teacher_x`` and the student on ``student_x``."""
        v1 = self.teacher(self.as_input(teacher_x)) if teacher_v is None else teacher_v  # h(x), no grad
        v2 = self.backbone(self.as_input(student_x))  # k(x)
        z1, z2 = self.teacher_classifier(v1), self.student_classifier(v2)  # g(h x), l(k x)
        kl = kl_term(z1, z2, self.kl_direction, self.kl_temperature)
        a, b = self.fs_pair(v1, v2) if self.fs_on == "features" else (z1, z2)
        fs = feature_similarity(a, b, self.fs_loss)
        return burn_loss(kl, fs, lam), {"kl": kl.detach(), "fs": fs.detach()}, v2

    def view_slots(self) -> list:
        return [self.views[0]] if self.pairing == "same" else [self.views[0], self.views[1]]

    def training_step(self, images, labels, generator) -> StepOutput:
        lam = self.current_lambda()
        x1 = self.views[0](images, generator, slot=0)
        if self.pairing == "same":  # Alg. 1: h and k see the same sample
            loss, logs, features = self.pair_loss(x1, x1, lam)
        else:  # public code: crossed views, mean of both directions
            x2 = self.views[1](images, generator, slot=1)
            loss_a, logs_a, features = self.pair_loss(x2, x1, lam)
            loss_b, logs_b, _ = self.pair_loss(x1, x2, lam)
            loss = 0.5 * (loss_a + loss_b)
            logs = {k: 0.5 * (logs_a[k] + logs_b[k]) for k in logs_a}
        return StepOutput(loss, features=features, logs={**logs, "lambda": lam})

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        self.iteration.add_(1)
        if int(self.total_steps) <= 0:
            self.total_steps.fill_(int(total_steps))

    # --- multi-stage ---------------------------------------------------------------------------
    def student_modules(self) -> dict[str, nn.Module]:
        """What stage 2 takes over from stage 1 in both schemes: k, l and the FS projection."""
        mods = {"backbone": self.backbone, "student_classifier": self.student_classifier}
        if self.fs_projection is not None:
            mods["fs_projection"] = self.fs_projection
        return mods

    def init_from_stage1(self, path, scheme: str | None = None) -> dict:
        """Stage 2 start (Sec. 3.4): k, l (+ projection) and, if 'modified', g from stage 1's run
        (its folder or checkpoint.pt). Returns what was loaded. Mismatches are ConfigErrors."""
        scheme = scheme or self.scheme
        if scheme not in SCHEMES:
            raise ConfigError(f"scheme={scheme!r}: expected one of {SCHEMES}")
        path = runs.checkpoint_file(path)
        if not runs.method_state(path, "teacher_classifier"):
            raise ConfigError(f"--init {path}: not the checkpoint.pt of a BURN stage-1 run")
        mods = dict(self.student_modules())
        if scheme == "modified":
            mods["teacher_classifier"] = self.teacher_classifier
        for name, module in mods.items():
            load_state_strict(module, runs.method_state(path, name), path, f"--init ({name})")
        self.scheme = scheme
        return {"path": str(path), "scheme": scheme, "loaded": sorted(mods)}

    # --- engine hooks --------------------------------------------------------------------------
    def grad_groups(self) -> dict[str, nn.Module]:
        groups = {"binary_feature_extractor": self.backbone, "binary_classifier": self.student_classifier,
                  "fp_classifier": self.teacher_classifier}
        if self.fs_projection is not None:
            groups["fs_projection"] = self.fs_projection
        return groups

    def summary(self) -> dict:
        return {"name": "burn", "stage": self.stage, "scheme": self.scheme, "lambda": self.schedule.describe(),
                "kl_direction": self.kl_direction, "kl_temperature": self.kl_temperature,
                "fs_loss": self.fs_loss, "fs_on": self.fs_on, "dim_match": self.dim_match,
                "pairing": self.pairing, "classifier": list(self.classifier_options),
                "teacher_bn": self.teacher.bn_mode, "teacher_dim": self.teacher.feature_dim,
                "student_dim": self.backbone.feature_dim}
