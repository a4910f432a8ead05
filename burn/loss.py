"""BURN's loss (Eq. 4) and its parts: lambda(t) (Eq. 3 and the Table 7 alternatives), the KL
term between the two classifiers' softmaxes, and the feature similarity loss L_FS (Eq. 2,
Table 6), with the rule that matches differently sized feature vectors.

    L = (1 - lambda(t)) * KL(p_1, p_2) + lambda(t) * L_FS(v_1, v_2)                       (Eq. 4)

v_1 = h(x) (frozen FP trunk), v_2 = k(x) (binary trunk), p_1 = softmax(g(v_1)),
p_2 = softmax(l(v_2)).

Choices, where the paper is silent or disagrees with the public code (docs/protocols.md sec. 2):

- KL direction. Alg. 1 line 22 writes D_KL(p_2 || p_1) with p_2 the BINARY network's softmax and
  p_1 the FP target's: KL(student || teacher) = sum_c p_2 (log p_2 - log p_1). That is the default
  (``direction="student_teacher"``). The public code used KL(teacher || student) = sum_c p_1
  (log p_1 - log p_2) at T = 0.2: ``direction="teacher_student", temperature=0.2``. Neither side is
  detached: g is trained through this term (that is the paper's "moving target").
- KL temperature: the paper writes plain softmaxes, so the default is T = 1; no T^2 factor.
- lambda(t): t is the 0-based index of the optimizer step being computed (0 .. T - 1) and T the
  number of optimizer steps of the current STAGE (each stage of the multi-stage training runs its
  own schedule, as each has its own "maximum training iteration"). Eq. 3 at t = 0 is lambda_0 =
  0.9 and at t = T it is lambda_T = 0.7 (the last step computed is t = T - 1, just above 0.7).
- Constant (Table 7): lambda = 0.7 (the paper's value). The static lambda of the ablation
  (1)+(2) (Eq. 2, "a static balancing factor", value not given) is also 0.7, chosen equal to
  Table 7's constant so that (1)+(2) -> (1)+(2)+(3) changes only the dynamics.
- Heaviside step (Table 7): lambda(t) = H(-t + T/2) with H(x) = 1 for x >= 0 and 0 otherwise, i.e.
  1 (feature similarity only) for t <= T/2 and 0 (KL only) after; the two levels are options
  (``high``, ``low``) for a step between lambda_0 and lambda_T instead.
- L_FS: cosine distance 1 - cos (default, Eq. 2), L1 ||v_1 - v_2||_1, L2 ||v_1 - v_2||_2 (Table 6,
  unnormalised, not squared), and "nmse" = 2 - 2 cos (the public code's FS on L2-normalised
  outputs). Each is the mean over the batch (``common.losses``).
- Dimension match (ResNet-50's 2048-d h(x) against ReActNet-A's 1024-d k(x); the paper's cosine
  needs equal sizes and it does not say how it matched them). Default ``"pool"``, parameter-free:
  the wider vector is average-pooled down to the narrower width in equal consecutive groups
  (2048 -> 1024 averages channel pairs (0, 1), (2, 3), ...); equal widths are left as they are;
  widths that do not divide are a ConfigError (use the projection). Option ``"projection"``: a
  learnable Linear(student width -> teacher width), no bias, part of the student (the frozen
  teacher feature stays the target); the method owns that layer (see ``burn.method``).
"""
from __future__ import annotations

import math

import torch

from common.errors import ConfigError
from common.losses import cosine_distance, kl_div, l1_distance, l2_distance

LAMBDA_SCHEDULES = ("cosine", "constant", "step")
KL_DIRECTIONS = ("student_teacher", "teacher_student")
FS_LOSSES = ("cosine", "l1", "l2", "nmse")
DIM_MATCHES = ("pool", "projection")


def _check_t(t: float, total: float) -> None:
    if not total > 0:
        raise ConfigError(f"lambda(t): total steps T must be positive, got {total}")
    if not 0 <= t <= total:
        raise ConfigError(f"lambda(t): expected 0 <= t <= T = {total}, got t = {t}")


def lambda_cosine(t: float, total: float, lambda_0: float = 0.9, lambda_T: float = 0.7) -> float:
    """Eq. 3: lambda(t) = lambda_T - (lambda_T - lambda_0) * (cos(pi t / T) + 1) / 2."""
    _check_t(t, total)
    return lambda_T - (lambda_T - lambda_0) * (math.cos(math.pi * t / total) + 1) / 2


def lambda_constant(t: float, total: float, value: float = 0.7) -> float:
    """Table 7 "Constant": lambda(t) = 0.7 (also the static lambda of Eq. 2, see module docstring)."""
    _check_t(t, total)
    return value


def lambda_step(t: float, total: float, high: float = 1.0, low: float = 0.0) -> float:
    """Table 7 "Heaviside step": H(-t + T/2), H(x) = 1 for x >= 0 -> ``high`` up to T/2, ``low`` after."""
    _check_t(t, total)
    return high if -t + total / 2 >= 0 else low


class LambdaSchedule:
    """lambda(t) by name: 'cosine' (Eq. 3), 'constant' or 'step' (Table 7); values in [0, 1]."""

    def __init__(self, kind: str = "cosine", lambda_0: float = 0.9, lambda_T: float = 0.7,
                 constant: float = 0.7, step_high: float = 1.0, step_low: float = 0.0):
        if kind not in LAMBDA_SCHEDULES:
            raise ConfigError(f"lambda_schedule={kind!r}: expected one of {LAMBDA_SCHEDULES}")
        for name, value in (("lambda_0", lambda_0), ("lambda_T", lambda_T), ("lambda_constant", constant),
                            ("lambda_step_high", step_high), ("lambda_step_low", step_low)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"{name}={value!r}: expected a number in [0, 1]")
        self.kind, self.lambda_0, self.lambda_T = kind, float(lambda_0), float(lambda_T)
        self.constant, self.step_high, self.step_low = float(constant), float(step_high), float(step_low)

    def __call__(self, t: float, total: float) -> float:
        if self.kind == "cosine":
            return lambda_cosine(t, total, self.lambda_0, self.lambda_T)
        if self.kind == "constant":
            return lambda_constant(t, total, self.constant)
        return lambda_step(t, total, self.step_high, self.step_low)

    def describe(self) -> dict:
        if self.kind == "cosine":
            return {"kind": "cosine", "lambda_0": self.lambda_0, "lambda_T": self.lambda_T}
        if self.kind == "constant":
            return {"kind": "constant", "value": self.constant}
        return {"kind": "step", "high": self.step_high, "low": self.step_low}


def kl_term(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
            direction: str = "student_teacher", temperature: float = 1.0) -> torch.Tensor:
    """The KL term of Eq. 4 between p_1 = softmax(g(h x) / T) and p_2 = softmax(l(k x) / T).

    'student_teacher' (default, Alg. 1 line 22): D_KL(p_2 || p_1);
    'teacher_student' (the public code, with T = 0.2): D_KL(p_1 || p_2). Mean over the batch.
    """
    if direction not in KL_DIRECTIONS:
        raise ConfigError(f"kl_direction={direction!r}: expected one of {KL_DIRECTIONS}")
    t, s = teacher_logits.float(), student_logits.float()
    # common.losses.kl_div(a, b) = KL(softmax(a/T) || softmax(b/T)); nothing is detached.
    return kl_div(s, t, temperature) if direction == "student_teacher" else kl_div(t, s, temperature)


def pool_to_width(x: torch.Tensor, width: int) -> torch.Tensor:
    """Average (B, D) down to (B, width) in equal consecutive groups of D / width channels."""
    d = x.shape[1]
    if d == width:
        return x
    if d < width or d % width:
        raise ConfigError(f"feature widths {d} and {width}: pooling needs one to divide the other; "
                          "use dim_match=projection")
    return x.reshape(x.shape[0], width, d // width).mean(dim=2)


def match_widths(teacher: torch.Tensor, student: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The parameter-free default dimension match: pool the wider of the two to the narrower width."""
    width = min(teacher.shape[1], student.shape[1])
    return pool_to_width(teacher, width), pool_to_width(student, width)


def feature_similarity(teacher: torch.Tensor, student: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """L_FS between equally sized (B, D) vectors: 'cosine' 1 - cos (Eq. 2), 'l1', 'l2' (Table 6),
    'nmse' 2 - 2 cos (the public code). Mean over the batch."""
    if kind not in FS_LOSSES:
        raise ConfigError(f"fs_loss={kind!r}: expected one of {FS_LOSSES}")
    t, s = teacher.float(), student.float()
    if kind == "cosine":
        return cosine_distance(t, s)
    if kind == "nmse":
        return 2 * cosine_distance(t, s)
    return l1_distance(t, s) if kind == "l1" else l2_distance(t, s)


def burn_loss(kl: torch.Tensor, fs: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 4: (1 - lambda) * KL + lambda * L_FS."""
    return (1 - lam) * kl + lam * fs
