"""Losses against hand-computed values and direct NumPy implementations."""
import math

import numpy as np
import pytest
import torch

from common.errors import ConfigError
from common.losses import (byol_loss, cosine_distance, kl_div, l1_distance, l2_distance, nt_xent,
                           soft_cross_entropy)


# --- NumPy references -------------------------------------------------------------------------

def _unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_nt_xent(z1, z2, t):
    u = _unit_rows(np.concatenate([z1, z2]).astype(np.float64))
    n2 = len(u)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        partner = (i + n) % n2
        denom = sum(math.exp(u[i] @ u[k] / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(u[i] @ u[partner] / t) / denom)
    return total / n2


def np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_kl(t_logits, s_logits, temp):
    p, q = np_softmax(t_logits / temp), np_softmax(s_logits / temp)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))


# --- NT-Xent ----------------------------------------------------------------------------------

def test_nt_xent_hand_computed_two_pairs():
    # Views a1=(1,0), a2=(0,1); b1=(3,4) -> (0.6,0.8) after normalisation, b2=(-1,0).
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[3.0, 4.0], [-1.0, 0.0]])
    t = 0.5
    e = lambda s: math.exp(s / t)  # noqa: E731
    # anchor: -log(exp(pos/T) / sum over the three others), cosines written out by hand
    l_a1 = -math.log(e(0.6) / (e(0.0) + e(0.6) + e(-1.0)))   # others a2, b1 (pos), b2
    l_a2 = -math.log(e(0.0) / (e(0.0) + e(0.8) + e(0.0)))    # others a1, b1, b2 (pos)
    l_b1 = -math.log(e(0.6) / (e(0.6) + e(0.8) + e(-0.6)))   # others a1 (pos), a2, b2
    l_b2 = -math.log(e(0.0) / (e(-1.0) + e(0.0) + e(-0.6)))  # others a1, a2 (pos), b1
    expected = (l_a1 + l_a2 + l_b1 + l_b2) / 4
    assert nt_xent(z1, z2, temperature=t).item() == pytest.approx(expected, abs=1e-6)


def test_nt_xent_matches_numpy_random():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(8, 16)), rng.normal(size=(8, 16))
    for t in (0.1, 0.5, 1.0):
        got = nt_xent(torch.tensor(z1, dtype=torch.float32), torch.tensor(z2, dtype=torch.float32),
                      temperature=t).item()
        assert got == pytest.approx(np_nt_xent(z1, z2, t), abs=1e-5)


def test_nt_xent_is_symmetric_in_views_and_positive_matters():
    torch.manual_seed(1)
    z1, z2 = torch.randn(6, 5), torch.randn(6, 5)
    assert nt_xent(z1, z2).item() == pytest.approx(nt_xent(z2, z1).item(), abs=1e-6)
    # aligned positives give a lower loss than shuffled ones
    assert nt_xent(z1, z1 + 0.01 * z2).item() < nt_xent(z1, z1[torch.randperm(6)]).item()


def test_nt_xent_gradient_finite_and_gradcheck():
    torch.manual_seed(2)
    z1 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = nt_xent(z1, z2, temperature=0.2)
    loss.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    assert z1.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, temperature=0.2), (z1, z2))


def test_nt_xent_bad_input():
    with pytest.raises(ConfigError, match="z1 and z2"):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ConfigError, match="temperature"):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)


# --- BYOL -------------------------------------------------------------------------------------

def test_byol_loss_matches_numpy_and_stops_target_gradient():
    rng = np.random.default_rng(3)
    p_np, z_np = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    expected = np.mean(2 - 2 * np.sum(_unit_rows(p_np) * _unit_rows(z_np), axis=1))
    p = torch.tensor(p_np, requires_grad=True)
    z = torch.tensor(z_np, requires_grad=True)
    loss = byol_loss(p, z)
    assert loss.item() == pytest.approx(expected, abs=1e-10)
    loss.backward()
    assert z.grad is None
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_byol_loss_extremes():
    v = torch.tensor([[1.0, 2.0, 3.0]])
    assert byol_loss(v, 5 * v).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(v, -v).item() == pytest.approx(4.0, abs=1e-6)


# --- KL and soft cross-entropy ----------------------------------------------------------------

def test_kl_direction_and_numpy_value():
    t = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    s = np.array([[0.0, 1.0, 0.0], [1.0, -2.0, 0.0]])
    tt, st = torch.tensor(t), torch.tensor(s)
    forward, reverse = kl_div(tt, st).item(), kl_div(st, tt).item()
    assert forward == pytest.approx(np_kl(t, s, 1.0), abs=1e-10)
    assert reverse == pytest.approx(np_kl(s, t, 1.0), abs=1e-10)
    assert abs(forward - reverse) > 1e-2  # asymmetric example: the direction matters


def test_kl_temperature_and_t2_scaling():
    t = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    s = np.array([[0.0, 1.0, 0.0], [1.0, -2.0, 0.0]])
    tt, st = torch.tensor(t), torch.tensor(s)
    at_02 = kl_div(tt, st, temperature=0.2).item()
    at_4 = kl_div(tt, st, temperature=4.0).item()
    assert at_02 == pytest.approx(np_kl(t, s, 0.2), abs=1e-10)
    assert at_4 == pytest.approx(np_kl(t, s, 4.0), abs=1e-10)
    assert at_4 < kl_div(tt, st).item() < at_02  # a higher T flattens both distributions
    scaled = kl_div(tt, st, temperature=4.0, scale_by_t2=True).item()
    assert scaled == pytest.approx(16.0 * at_4, rel=1e-12)
    assert kl_div(tt, tt, temperature=0.5).item() == pytest.approx(0.0, abs=1e-12)


def test_kl_teacher_receives_gradient():
    # BURN trains its FP classifier through the KL term: the teacher must not be detached.
    t = torch.randn(4, 5, requires_grad=True)
    s = torch.randn(4, 5, requires_grad=True)
    kl_div(t, s, temperature=0.2).backward()
    assert t.grad.abs().sum() > 0 and s.grad.abs().sum() > 0


def test_soft_cross_entropy_matches_numpy():
    rng = np.random.default_rng(4)
    t, s = rng.normal(size=(6, 10)), rng.normal(size=(6, 10))
    temp = 0.2
    p, q = np_softmax(t / temp), np_softmax(s / temp)
    expected = float(np.mean(-np.sum(p * np.log(q), axis=1)))
    got = soft_cross_entropy(torch.tensor(t), torch.tensor(s), temperature=temp).item()
    assert got == pytest.approx(expected, abs=1e-10)
    # CE = KL + teacher entropy
    entropy = float(np.mean(-np.sum(p * np.log(p), axis=1)))
    assert got == pytest.approx(np_kl(t, s, temp) + entropy, abs=1e-10)


# --- feature distances ------------------------------------------------------------------------

def test_cosine_l1_l2_distances():
    a_np = np.array([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]])
    b_np = np.array([[2.0, 1.0, 2.0], [0.0, -3.0, -4.0]])
    a, b = torch.tensor(a_np), torch.tensor(b_np)
    cos = np.sum(_unit_rows(a_np) * _unit_rows(b_np), axis=1)  # [8/9, -1]
    assert cosine_distance(a, b).item() == pytest.approx(np.mean(1 - cos), abs=1e-12)
    assert cosine_distance(a, b).item() == pytest.approx(((1 - 8 / 9) + 2) / 2, abs=1e-12)
    # raw features (the paper's ||v1 - v2||_1 and ||v1 - v2||_2)
    assert l1_distance(a, b).item() == pytest.approx((2 + 14) / 2, abs=1e-12)
    assert l2_distance(a, b).item() == pytest.approx((math.sqrt(2) + 10) / 2, abs=1e-12)
    # normalised first
    an, bn = _unit_rows(a_np), _unit_rows(b_np)
    assert l1_distance(a, b, normalize=True).item() == pytest.approx(
        np.mean(np.abs(an - bn).sum(axis=1)), abs=1e-12)
    assert l2_distance(a, b, normalize=True).item() == pytest.approx(
        np.mean(np.linalg.norm(an - bn, axis=1)), abs=1e-12)


def test_l2_distance_gradient_finite_at_zero():
    a = torch.ones(2, 3, requires_grad=True)
    l2_distance(a, torch.ones(2, 3)).backward()
    assert torch.equal(a.grad, torch.zeros(2, 3))
