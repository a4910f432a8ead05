"""Loss functions shared by the SSL methods, Contrastive Quant and BURN: pure functions of tensors.

Each function returns a scalar: the mean over the batch of a per-sample loss. None of them keeps
state; the only one that talks to other processes is `nt_xent` (negatives from the global batch).

Choices where the papers are silent (each also stated at the function):
- `nt_xent`: similarities are cosine (embeddings L2-normalised inside); default temperature 0.5
  (SimCLR's CIFAR setting; ImageNet runs pass their own).
- `kl_div` and `soft_cross_entropy` do NOT detach the teacher: BURN trains its FP classifier g
  through the KL term (docs/protocols.md section 2), and S2-BNN's fixed teacher is run under no_grad by
  its caller. `byol_loss` does detach its target (BYOL's stop-gradient).
- `kl_div` does not multiply by T^2 unless asked (`scale_by_t2=True`): the BURN paper writes a plain
  KL, and T^2 is a knowledge-distillation convention that keeps gradient scale independent of T.
- `l1_distance` / `l2_distance` (BURN Table 6 ablation: ||v1 - v2||_1 and ||v1 - v2||_2, not
  squared) default to `normalize=False`, the paper's unbounded distances, which is exactly what the
  ablation shows to explode; `normalize=True` compares L2-normalised features instead.
- `soft_cross_entropy` takes logits as given; S2-BNN feeds it L2-normalised 128-d embeddings, and
  that normalisation is the caller's job. Its default temperature is S2-BNN's 0.2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.distributed import gather_with_grad, is_distributed, rank
from common.errors import ConfigError


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.dim() != 2 or a.shape != b.shape or a.shape[0] == 0:
        raise ConfigError(
            f"{name_a} and {name_b}: expected two non-empty (batch, dim) tensors of the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ConfigError(f"temperature: expected a positive number, got {temperature}")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
            gather: bool = True) -> torch.Tensor:
    """SimCLR's NT-Xent (normalized temperature-scaled cross-entropy) over 2N embeddings.

    With u_k the L2-normalised rows of [z1; z2] (k = 1..2N), sim(i, k) = u_i . u_k and p(i) the
    partner of i (the other view of the same image):

        l_i = -log( exp(sim(i, p(i)) / T) / sum_{k != i} exp(sim(i, k) / T) )
        loss = 1/(2N) * sum_i l_i

    so each anchor has one positive and 2N-2 negatives, same-view ones included (SimCLR Eq. 1,
    both directions).

    Distributed with `gather=True`: the keys are the global batch [Z1; Z2] (Z1 = every rank's z1
    in rank order, gathered with gradient), the anchors are this rank's 2B rows of it (offset
    rank*B in each half) and the loss is the mean over them. The mean of that over ranks, which
    is what DDP's gradient averaging optimises, equals the single-process loss on the global batch.
    With `gather=False` (or not distributed) the negatives are this rank's batch only.
    """
    _check_pair("z1", z1, "z2", z2)
    _check_temperature(temperature)
    z1 = F.normalize(z1, dim=1)
    z2 = F.normalize(z2, dim=1)
    n = z1.shape[0]
    if gather and is_distributed():
        all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
        offset = rank() * n
    else:
        all1, all2, offset = z1, z2, 0
    m = all1.shape[0]  # global batch size per view
    keys = torch.cat([all1, all2], dim=0)  # (2M, D)

    local = torch.arange(offset, offset + n, device=z1.device)
    anchor_idx = torch.cat([local, local + m])  # this rank's anchors inside `keys`
    positive_idx = torch.cat([local + m, local])  # each anchor's partner view

    logits = keys[anchor_idx] @ keys.t() / temperature  # (2n, 2M)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(2 * n, device=z1.device), anchor_idx] = True
    logits = logits.masked_fill(self_mask, float("-inf"))  # k != i in the denominator
    return F.cross_entropy(logits, positive_idx)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalized MSE: ||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z), mean over the batch.

    `p` is the online prediction, `z` the target projection; `z` is detached here (stop-gradient).
    """
    _check_pair("p", p, "z", z)
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def kl_div(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0,
           scale_by_t2: bool = False) -> torch.Tensor:
    """KL(teacher || student) of tempered softmaxes, mean over the batch:

        P = softmax(t / T), Q = softmax(s / T),
        KL = sum_c P_c (log P_c - log Q_c)      [times T^2 if scale_by_t2]

    The teacher is NOT detached (BURN trains its classifier through this term); detach it in the
    caller for a fixed teacher. T^2 scaling is off by default: BURN's paper writes a plain KL.
    """
    _check_pair("teacher_logits", teacher_logits, "student_logits", student_logits)
    _check_temperature(temperature)
    log_p = F.log_softmax(teacher_logits / temperature, dim=1)
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()
    return kl * temperature ** 2 if scale_by_t2 else kl


def soft_cross_entropy(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                       temperature: float = 0.2) -> torch.Tensor:
    """S2-BNN's soft cross-entropy, mean over the batch:

        CE = - sum_c softmax(t / T)_c * log softmax(s / T)_c

    It equals kl_div(t, s, T) plus the teacher's entropy (constant for a fixed teacher). The
    teacher is not detached; S2-BNN's teacher is fixed, so its caller runs it under no_grad.
    """
    _check_pair("teacher_logits", teacher_logits, "student_logits", student_logits)
    _check_temperature(temperature)
    p = F.softmax(teacher_logits / temperature, dim=1)
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    return -(p * log_q).sum(dim=1).mean()


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """BURN's feature similarity loss (Eq. 2): L_FS = 1 - <a, b> / (||a|| ||b||), mean over the batch."""
    _check_pair("a", a, "b", b)
    return (1 - F.cosine_similarity(a, b, dim=1)).mean()


def _maybe_normalize(a: torch.Tensor, b: torch.Tensor, normalize: bool):
    return (F.normalize(a, dim=1), F.normalize(b, dim=1)) if normalize else (a, b)


def l1_distance(a: torch.Tensor, b: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """BURN Table 6 ablation: ||a - b||_1 per sample, mean over the batch.

    normalize=False (default, as in the paper) compares the raw features; True L2-normalises each
    row of `a` and `b` first.
    """
    _check_pair("a", a, "b", b)
    a, b = _maybe_normalize(a, b, normalize)
    return (a - b).abs().sum(dim=1).mean()


def l2_distance(a: torch.Tensor, b: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """BURN Table 6 ablation: ||a - b||_2 per sample (the Euclidean norm, not squared), mean over
    the batch. Its gradient at a == b is taken as 0.

    normalize=False (default, as in the paper) compares the raw features; True L2-normalises each
    row of `a` and `b` first.
    """
    _check_pair("a", a, "b", b)
    a, b = _maybe_normalize(a, b, normalize)
    return torch.linalg.vector_norm(a - b, dim=1).mean()
