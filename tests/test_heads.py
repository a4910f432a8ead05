"""MLPHead: layer structure for each method's head, output shape, bad input."""
import pytest
import torch
from torch import nn

from common.errors import ConfigError
from common.heads import MLPHead


def _kinds(head):
    return [type(m).__name__ for m in head.net]


def test_simclr_two_layer_structure_and_shape():
    head = MLPHead(16, 32, 8)
    assert _kinds(head) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    first, last = head.net[0], head.net[3]
    assert (first.in_features, first.out_features) == (16, 32)
    assert (last.in_features, last.out_features) == (32, 8)
    assert first.bias is None and last.bias is not None  # no bias right before BN
    assert head(torch.randn(5, 16)).shape == (5, 8)


def test_simclrv2_three_layers_with_last_bn():
    head = MLPHead(16, 32, 8, num_layers=3, last_bn=True)
    assert _kinds(head) == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU",
                            "Linear", "BatchNorm1d"]
    assert head.net[6].bias is None
    assert head.net[7].num_features == 8
    assert head(torch.randn(4, 16)).shape == (4, 8)


def test_moco_v2_head_has_no_hidden_bn():
    head = MLPHead(16, 16, 4, hidden_bn=False)
    assert _kinds(head) == ["Linear", "ReLU", "Linear"]
    assert head.net[0].bias is not None


def test_single_layer_is_linear_and_computes_wx_plus_b():
    head = MLPHead(3, 99, 2, num_layers=1)
    assert _kinds(head) == ["Linear"]
    x = torch.randn(4, 3)
    lin = head.net[0]
    assert torch.allclose(head(x), x @ lin.weight.t() + lin.bias)


def test_two_layer_forward_matches_manual_computation():
    head = MLPHead(6, 5, 3).eval()  # eval: BN uses running stats (0 mean, 1 var at init)
    x = torch.randn(7, 6)
    lin1, bn, lin2 = head.net[0], head.net[1], head.net[3]
    hidden = torch.relu((x @ lin1.weight.t()) / torch.sqrt(torch.tensor(1.0 + bn.eps)))
    assert torch.allclose(head(x), hidden @ lin2.weight.t() + lin2.bias, atol=1e-6)


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_layers=0), "num_layers"),
    (dict(out_dim=0), "out_dim"),
    (dict(hidden_dim=-3), "hidden_dim"),
])
def test_bad_sizes_raise_config_error(kwargs, field):
    args = dict(in_dim=4, hidden_dim=8, out_dim=2)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=field):
        MLPHead(**args)


def test_is_an_nn_module_with_dims():
    head = MLPHead(4, 8, 2)
    assert isinstance(head, nn.Module) and (head.in_dim, head.out_dim) == (4, 2)
