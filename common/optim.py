"""Optimizers and learning-rate schedules: decay / no-decay parameter groups, LARS as in SimCLR,
one factory for every optimizer the protocols name, and step-wise schedules.

LARS (docs/protocols.md section 4; SimCLR's LARS). For a parameter w with gradient g, in a group with
learning rate lr, weight decay wd, momentum m and trust coefficient eta:

    d     = g + wd * w                                     (decay added BEFORE the trust ratio)
    trust = eta * ||w|| / ||d||    (1 when ||w|| == 0 or ||d|| == 0)
    v     = m * v + lr * trust * d                         (lr inside the momentum buffer)
    w     = w - v

Groups flagged `lars_exclude=True` (BatchNorm parameters and biases, see `param_groups`) use
d = g and trust = 1: neither weight decay nor layer adaptation, plain momentum SGD.
This is SimCLR's own formula. Popular PyTorch ports differ in two ways: (1) they keep lr outside
the buffer, torch-SGD style (v = m * v + trust * d; w -= lr * v), which gives the same steps while
lr is constant but not while a schedule changes it; (2) some use the original LARS paper's
denominator ||g|| + wd * ||w|| instead of ||g + wd * w||, or clip the ratio (LARC).

Schedules are plain functions of the step returning a learning rate; `make_schedule` turns one
into a multiplier of 1.0 and `apply_schedule` sets every param group's lr to its own base lr
times that multiplier, so a head trained with 10x the backbone's lr keeps its 10x throughout.

Choices where the protocols are silent:
- No-decay parameters: every parameter of a normalisation layer (BatchNorm, SyncBatchNorm,
  GroupNorm, LayerNorm, InstanceNorm), every parameter named `*bias` (e.g. ReActNet's learnable
  shifts, whatever their shape), and every parameter with fewer than 2 dimensions (biases, PReLU
  slopes). Frozen parameters (requires_grad False) are left out of both groups.
- Warm-up is linear from 0: lr(0) = 0 and lr(warmup_steps) = base_lr; the optimizer's first step
  thus has lr 0, as in SimCLR's code.
- Milestones and all step counts are in optimizer steps; callers convert epochs to steps.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from common.errors import ConfigError

_NORM_LAYERS = (_NormBase, nn.GroupNorm, nn.LayerNorm)  # _NormBase covers BatchNorm/InstanceNorm


def _check_range(name: str, value: float, low: float, high: float, high_open: bool = False) -> None:
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{name}: expected a number in [{low}, {high}{bracket}, got {value}")


# --- parameter groups -------------------------------------------------------------------------

def _norm_parameter_ids(model: nn.Module) -> set[int]:
    return {id(p) for module in model.modules() if isinstance(module, _NORM_LAYERS)
            for p in module.parameters(recurse=False)}


def param_groups(model_or_named_params, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decay group and a no-decay group.

    Accepts an `nn.Module` or an iterable of (name, parameter) pairs (e.g. `named_parameters()`;
    without modules, norm layers are recognised only by being 1-d). Returns up to two groups
    (an empty one is left out):
      {"params": [...], "weight_decay": weight_decay}
      {"params": [...], "weight_decay": 0.0, "lars_exclude": True}
    """
    if weight_decay < 0:
        raise ConfigError(f"weight_decay: expected a number >= 0, got {weight_decay}")
    if isinstance(model_or_named_params, nn.Module):
        norm_ids = _norm_parameter_ids(model_or_named_params)
        named = model_or_named_params.named_parameters()
    else:
        norm_ids, named = set(), model_or_named_params
    decay, no_decay, seen = [], [], set()
    for name, p in named:
        if not isinstance(p, torch.Tensor):
            raise ConfigError(f"model_or_named_params: expected (name, parameter) pairs, got {name!r}")
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in norm_ids or p.dim() < 2 or name.endswith("bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True})
    return groups


# --- LARS -------------------------------------------------------------------------------------

class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling, SimCLR's formula (see the module docstring).

    Per-group options: lr, momentum (0.9), weight_decay (0), eta (trust coefficient, 0.001),
    lars_exclude (False; True = no weight decay, no adaptation).
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001):
        _check_range("lr", lr, 0.0, math.inf)
        _check_range("momentum", momentum, 0.0, 1.0, high_open=True)
        _check_range("weight_decay", weight_decay, 0.0, math.inf)
        _check_range("eta", eta, 0.0, math.inf)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                        lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not group["lars_exclude"]:
                    d = d.add(p, alpha=group["weight_decay"])
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = torch.where((w_norm > 0) & (d_norm > 0),
                                        group["eta"] * w_norm / d_norm, torch.ones_like(w_norm))
                    d = d * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                v = state["momentum_buffer"]
                v.mul_(group["momentum"]).add_(d, alpha=group["lr"])
                p.sub_(v)
        return loss


# --- factory ----------------------------------------------------------------------------------

def build_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                    nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999)
                    ) -> torch.optim.Optimizer:
    """Make the optimizer `name` in {lars, sgd, adam, adamw}.

    `params`: an nn.Module (split by `param_groups(module, weight_decay)`), a list of param-group
    dicts (their own `weight_decay` / `lr` win over the arguments), or an iterable of tensors.
    momentum / nesterov apply to lars (momentum only) and sgd; betas to adam / adamw; Adam's
    weight decay is L2 added to the gradient, AdamW's is decoupled.
    """
    _check_range("lr", lr, 0.0, math.inf)
    _check_range("momentum", momentum, 0.0, 1.0, high_open=True)
    _check_range("weight_decay", weight_decay, 0.0, math.inf)
    if len(betas) != 2:
        raise ConfigError(f"betas: expected two numbers, got {betas!r}")
    for beta in betas:
        _check_range("betas", beta, 0.0, 1.0, high_open=True)
    if nesterov and (name != "sgd" or momentum == 0):
        raise ConfigError(f"nesterov: only for optimizer 'sgd' with momentum > 0 "
                          f"(got optimizer {name!r}, momentum {momentum})")
    if isinstance(params, nn.Module):
        params = param_groups(params, weight_decay)
    else:
        params = list(params)
    if not params:
        raise ConfigError("params: expected at least one parameter to optimize, got none")
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise ConfigError(f"optimizer: expected one of lars, sgd, adam, adamw, got {name!r}")


# --- schedules --------------------------------------------------------------------------------

def _check_steps(step: int, total_steps: int, warmup_steps: int = 0) -> None:
    if step < 0:
        raise ConfigError(f"step: expected a number >= 0, got {step}")
    if total_steps < 1:
        raise ConfigError(f"total_steps: expected a positive integer, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ConfigError(f"warmup_steps: expected 0..total_steps ({total_steps}), got {warmup_steps}")


def _warmup(step: int, warmup_steps: int, base_lr: float) -> float:
    return base_lr * step / warmup_steps  # linear from 0 at step 0 to base_lr at warmup_steps


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float,
                  final_lr: float = 0.0) -> float:
    """Linear warm-up from 0, then cosine decay to final_lr at total_steps (constant after):

        lr = base * step / W                                   for step < W
        lr = final + (base - final) * (1 + cos(pi * t)) / 2,   t = (step - W) / (total - W)
    """
    _check_steps(step, total_steps, warmup_steps)
    if step < warmup_steps:
        return _warmup(step, warmup_steps, base_lr)
    if total_steps == warmup_steps:
        return final_lr
    t = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def step_decay(step: int, milestones: Sequence[int], gamma: float, base_lr: float,
               warmup_steps: int = 0) -> float:
    """lr = base * gamma^(number of milestones <= step), after an optional linear warm-up
    (e.g. BURN's fine-tuning: x0.2 at epochs 12 and 16; detection: 100 warm-up iterations)."""
    if step < 0:
        raise ConfigError(f"step: expected a number >= 0, got {step}")
    if list(milestones) != sorted(milestones) or any(m < 0 for m in milestones):
        raise ConfigError(f"milestones: expected non-negative steps in increasing order, got {milestones}")
    if not gamma > 0:
        raise ConfigError(f"gamma: expected a positive number, got {gamma}")
    if warmup_steps < 0:
        raise ConfigError(f"warmup_steps: expected a number >= 0, got {warmup_steps}")
    lr = base_lr * gamma ** sum(1 for m in milestones if step >= m)
    return _warmup(step, warmup_steps, lr) if step < warmup_steps else lr


def linear_decay(step: int, total_steps: int, base_lr: float, final_lr: float = 0.0,
                 warmup_steps: int = 0) -> float:
    """Linear warm-up from 0 (optional), then a straight line from base_lr to final_lr at
    total_steps (constant after); S2-BNN's schedule."""
    _check_steps(step, total_steps, warmup_steps)
    if step < warmup_steps:
        return _warmup(step, warmup_steps, base_lr)
    if total_steps == warmup_steps:
        return final_lr
    t = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return base_lr + (final_lr - base_lr) * t


SCHEDULES = ("cosine", "step", "linear", "constant")


def make_schedule(name: str, total_steps: int, warmup_steps: int = 0,
                  milestones: Sequence[int] = (), gamma: float = 0.1,
                  final_ratio: float = 0.0) -> Callable[[int], float]:
    """A function step -> multiplier of the base lr (the schedule evaluated with base_lr = 1).

    name: cosine (warmup_cosine), step (step_decay), linear (linear_decay) or constant.
    final_ratio: the final lr as a fraction of the base lr (cosine and linear).
    """
    if name == "cosine":
        return functools.partial(warmup_cosine, total_steps=total_steps, warmup_steps=warmup_steps,
                                 base_lr=1.0, final_lr=final_ratio)
    if name == "step":
        return functools.partial(step_decay, milestones=tuple(milestones), gamma=gamma,
                                 base_lr=1.0, warmup_steps=warmup_steps)
    if name == "linear":
        return functools.partial(linear_decay, total_steps=total_steps, base_lr=1.0,
                                 final_lr=final_ratio, warmup_steps=warmup_steps)
    if name == "constant":
        return lambda step: 1.0
    raise ConfigError(f"schedule: expected one of {', '.join(SCHEDULES)}, got {name!r}")


def apply_schedule(optimizer: torch.optim.Optimizer, schedule: Callable[[int], float],
                   step: int) -> list[float]:
    """Set each param group's lr to its own base lr times schedule(step); returns the new lrs.

    A group's base lr is its lr the first time this is called, remembered under "base_lr" (so it
    survives optimizer.state_dict() / load_state_dict() on resume).
    """
    factor = schedule(step)
    lrs = []
    for group in optimizer.param_groups:
        base = group.setdefault("base_lr", group["lr"])
        group["lr"] = base * factor
        lrs.append(group["lr"])
    return lrs
