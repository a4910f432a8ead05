"""Projection and prediction heads: one configurable MLP.

    MLPHead(in, hidden, out, num_layers=L):  [Linear -> BN -> ReLU] x (L-1) -> Linear [-> BN]

covers the heads of the methods this project uses:
- SimCLR projection head: 2 layers (SimCLR Sec. 2.1, g(h) = W2 ReLU(W1 h)), BN as in its code;
- SimCLRv2 projection head: 3 layers;
- BYOL projector and predictor: 2 layers, hidden 4096, out 256, BN in the hidden layer;
- MoCo v2 head: 2 layers without BN (`hidden_bn=False`);
- BURN's public-code classifiers g and l: fc -> BN -> ReLU -> fc with 2000 outputs.

Choices where the papers are silent:
- A Linear followed by BatchNorm has no bias (BN's mean subtraction would cancel it); every other
  Linear has one. So the hidden Linears have a bias only when `hidden_bn=False`, and the last one
  only when `last_bn=False`.
- `last_bn=True` appends an affine BatchNorm1d(out_dim) (SimCLRv2 / MoCo v3 style).
- `num_layers=1` is a single Linear (plus the optional last BN).
"""
from __future__ import annotations

import torch
from torch import nn

from common.errors import ConfigError


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")


class MLPHead(nn.Module):
    """[Linear -> BN -> ReLU] x (num_layers - 1) -> Linear (-> BN if last_bn); input (B, in_dim)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                 last_bn: bool = False, hidden_bn: bool = True):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim),
                            ("num_layers", num_layers)):
            _check_positive_int(name, value)
        self.in_dim, self.out_dim = in_dim, out_dim
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden_dim, bias=not hidden_bn))
            if hidden_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim, bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
