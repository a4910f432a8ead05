"""Parameter groups, LARS against a NumPy step, the optimizer factory and the lr schedules."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from common.errors import ConfigError
from common.optim import (LARS, apply_schedule, build_optimizer, linear_decay, make_schedule,
                          param_groups, step_decay, warmup_cosine)


def _tiny_model():
    # one conv weight, its bias, one BN weight and bias
    return nn.Sequential(nn.Conv2d(1, 2, 3, bias=True), nn.BatchNorm2d(2)).double()


# --- param_groups -----------------------------------------------------------------------------

def test_param_groups_puts_exactly_norm_and_bias_params_in_no_decay():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 2, bias=False))
    model[5].weight.requires_grad_(False)  # frozen: in neither group
    groups = param_groups(model, weight_decay=1e-4)
    assert len(groups) == 2
    decay, no_decay = groups
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == {id(model[0].weight), id(model[3].weight)}
    assert ids(no_decay["params"]) == {id(model[1].weight), id(model[1].bias), id(model[3].bias),
                                       id(model[4].weight), id(model[4].bias)}
    assert decay["weight_decay"] == 1e-4 and not decay.get("lars_exclude", False)
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"] is True


def test_param_groups_from_named_parameters_and_shaped_bias():
    class Shift(nn.Module):  # ReActNet-style learnable shift: 4-d, named bias
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
    model = nn.Sequential(Shift(), nn.Conv2d(3, 3, 1))
    decay, no_decay = param_groups(model.named_parameters(), weight_decay=0.5)
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 3, 1, 1])]
    assert {tuple(p.shape) for p in no_decay["params"]} == {(1, 3, 1, 1), (3,)}


# --- LARS -------------------------------------------------------------------------------------

def np_lars_step(w, g, v, lr, wd, eta, m, exclude):
    """SimCLR's LARS, written out: d = g + wd w; trust = eta |w| / |d|; v = m v + lr trust d; w -= v."""
    if exclude:
        d, trust = g, 1.0
    else:
        d = g + wd * w
        wn, dn = np.linalg.norm(w), np.linalg.norm(d)
        trust = eta * wn / dn if wn > 0 and dn > 0 else 1.0
    v = m * v + lr * trust * d
    return w - v, v


def test_lars_two_steps_match_numpy():
    torch.manual_seed(0)
    model = _tiny_model()
    with torch.no_grad():  # BN starts at weight 1, bias 0: make every parameter non-trivial
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    wd, eta, m = 0.1, 0.02, 0.9
    opt = LARS(param_groups(model, wd), lr=0.5, momentum=m, eta=eta)
    excluded = {id(p) for g in opt.param_groups if g["lars_exclude"] for p in g["params"]}
    assert len(excluded) == 3

    params = list(model.parameters())
    ws = [p.detach().numpy().copy() for p in params]
    vs = [np.zeros_like(w) for w in ws]
    rng = np.random.default_rng(0)
    for lr in (0.5, 0.25):  # the lr changes between steps: lr sits inside the momentum buffer
        for group in opt.param_groups:
            group["lr"] = lr
        grads = [rng.normal(size=w.shape) for w in ws]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
        for i, p in enumerate(params):
            ws[i], vs[i] = np_lars_step(ws[i], grads[i], vs[i], lr, wd, eta, m, id(p) in excluded)
            np.testing.assert_allclose(p.detach().numpy(), ws[i], rtol=0, atol=1e-12)


def test_lars_excluded_step_is_plain_momentum_sgd_and_adapted_step_is_scaled():
    w = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))      # ||w|| = 5
    b = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    opt = LARS([{"params": [w], "weight_decay": 0.0},
                {"params": [b], "weight_decay": 0.0, "lars_exclude": True}], lr=1.0)
    w.grad = torch.tensor([0.0, 10.0], dtype=torch.float64)             # ||g|| = 10
    b.grad = torch.tensor([0.0, 10.0], dtype=torch.float64)
    opt.step()
    # trust = 0.001 * 5 / 10 = 5e-4  ->  step = 5e-4 * (0, 10)
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0 - 0.005], dtype=torch.float64))
    assert torch.allclose(b.detach(), torch.tensor([3.0, -6.0], dtype=torch.float64))


def test_lars_trust_ratio_is_one_for_zero_weight():
    w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = LARS([w], lr=0.1, weight_decay=0.5)
    w.grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    opt.step()
    assert torch.allclose(w.detach(), -0.1 * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))


def test_lars_defaults_follow_simclr():
    opt = LARS([nn.Parameter(torch.zeros(2))], lr=1.0)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["eta"] == 0.001


# --- factory ----------------------------------------------------------------------------------

def test_build_optimizer_kinds_and_options():
    model = _tiny_model()
    lars = build_optimizer("lars", model, lr=0.6, weight_decay=1e-6)
    assert isinstance(lars, LARS)
    assert [g["weight_decay"] for g in lars.param_groups] == [1e-6, 0.0]
    sgd = build_optimizer("sgd", model.parameters(), lr=0.1, nesterov=True)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"] is True
    adam = build_optimizer("adam", model, lr=3e-4, betas=(0.8, 0.99))
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.8, 0.99)
    assert isinstance(build_optimizer("adamw", model, lr=1e-3, weight_decay=0.05), torch.optim.AdamW)


def test_build_optimizer_bad_input():
    model = _tiny_model()
    with pytest.raises(ConfigError, match="optimizer"):
        build_optimizer("rmsprop", model, lr=0.1)
    with pytest.raises(ConfigError, match="nesterov"):
        build_optimizer("sgd", model, lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ConfigError, match="lr"):
        build_optimizer("sgd", model, lr=-1.0)


def test_sgd_nesterov_step_matches_hand_computation():
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = build_optimizer("sgd", [w], lr=0.1, momentum=0.9, nesterov=True)
    w.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    # buf = g = 2; nesterov direction = g + m * buf = 3.8; w = 1 - 0.1 * 3.8
    assert w.item() == pytest.approx(1 - 0.38, abs=1e-12)


# --- schedules --------------------------------------------------------------------------------

def test_warmup_cosine_key_points():
    kw = dict(total_steps=100, warmup_steps=10, base_lr=2.0, final_lr=0.2)
    assert warmup_cosine(0, **kw) == 0.0
    assert warmup_cosine(5, **kw) == pytest.approx(1.0)
    assert warmup_cosine(10, **kw) == pytest.approx(2.0)
    assert warmup_cosine(55, **kw) == pytest.approx(0.2 + 1.8 * 0.5)          # halfway: cos = 0
    assert warmup_cosine(32.5, **kw) == pytest.approx(0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine(100, **kw) == pytest.approx(0.2)
    assert warmup_cosine(150, **kw) == pytest.approx(0.2)


def test_warmup_cosine_without_warmup_starts_at_base():
    assert warmup_cosine(0, total_steps=10, warmup_steps=0, base_lr=0.6) == pytest.approx(0.6)


def test_step_and_linear_decay():
    assert [step_decay(s, (12, 16), 0.2, 1.0) for s in (0, 11, 12, 15, 16, 19)] == pytest.approx(
        [1.0, 1.0, 0.2, 0.2, 0.04, 0.04])
    assert step_decay(50, (18000, 22000), 0.1, 0.02, warmup_steps=100) == pytest.approx(0.01)
    assert [linear_decay(s, 10, 3e-4) for s in (0, 5, 10, 12)] == pytest.approx(
        [3e-4, 1.5e-4, 0.0, 0.0])


def test_schedules_bad_input():
    with pytest.raises(ConfigError, match="warmup_steps"):
        warmup_cosine(0, total_steps=10, warmup_steps=11, base_lr=1.0)
    with pytest.raises(ConfigError, match="milestones"):
        step_decay(0, (16, 12), 0.2, 1.0)
    with pytest.raises(ConfigError, match="schedule"):
        make_schedule("poly", total_steps=10)


def test_apply_schedule_keeps_each_group_ratio():
    backbone, head = nn.Linear(2, 2), nn.Linear(2, 1)
    opt = torch.optim.SGD([{"params": backbone.parameters(), "lr": 0.1},
                           {"params": head.parameters(), "lr": 1.0}], lr=0.1)
    sched = make_schedule("cosine", total_steps=20, warmup_steps=4, final_ratio=0.1)
    assert apply_schedule(opt, sched, 2) == pytest.approx([0.05, 0.5])
    assert apply_schedule(opt, sched, 12) == pytest.approx([0.055, 0.55])
    assert apply_schedule(opt, sched, 20) == pytest.approx([0.01, 0.1])
    # the base lr survives a state_dict round trip (resume)
    opt2 = torch.optim.SGD([{"params": backbone.parameters()}, {"params": head.parameters()}], lr=7.0)
    opt2.load_state_dict(opt.state_dict())
    assert apply_schedule(opt2, make_schedule("constant", total_steps=1), 0) == pytest.approx([0.1, 1.0])
