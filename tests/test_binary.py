"""Binary layers (common/binary.py): sign, ApproxSign / STE gradients, binary weights, stages."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from common.binary import (BinaryConv2d, LearnableBias, RPReLU, binarize_weight, binary_sign,
                           get_binary_stage, set_activation_grad, set_binary_stage)
from common.errors import ConfigError

GRAD_POINTS = [-1.5, -1.0, -0.5, 0.0, 0.5, 0.99, 1.0, 2.0]


def np_sign(a):
    return np.where(a >= 0, 1.0, -1.0)


def np_conv2d(x, w, stride=1, padding=0):
    """Direct cross-correlation, (N, C, H, W) * (O, C, k, k) -> (N, O, H', W'), zero padding."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    k = w.shape[-1]
    h_out = (x.shape[2] - k) // stride + 1
    w_out = (x.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out


def input_grad(x_values, grad, upstream=1.0):
    x = torch.tensor(x_values, dtype=torch.float64, requires_grad=True)
    (binary_sign(x, grad) * upstream).sum().backward()
    return x.grad.numpy()


# ----------------------------------------------------------------------------- binary_sign

def test_sign_forward_is_two_valued_with_zero_to_plus_one():
    x = torch.tensor([-2.0, -0.5, -1e-8, -0.0, 0.0, 1e-8, 0.5, 3.0])
    out = binary_sign(x)
    assert out.tolist() == [-1, -1, -1, 1, 1, 1, 1, 1]
    assert out.dtype == x.dtype
    assert set(binary_sign(torch.randn(1000)).unique().tolist()) == {-1.0, 1.0}


def test_approx_sign_gradient_exact_values():
    # 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere.
    expected = [0.0, 0.0, 1.0, 2.0, 1.0, 2 - 2 * 0.99, 0.0, 0.0]
    np.testing.assert_allclose(input_grad(GRAD_POINTS, "approx"), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(input_grad(GRAD_POINTS, "approx", upstream=-3.0),
                               -3.0 * np.array(expected), rtol=0, atol=1e-12)


def test_approx_sign_gradient_is_derivative_of_the_quadratic_approximation():
    # ReActNet's ApproxSign: -1 | 2x + x^2 | 2x - x^2 | 1 on x < -1 | [-1, 0) | [0, 1) | x >= 1.
    def approx(a):
        return np.where(a < -1, -1.0, np.where(a < 0, 2 * a + a * a, np.where(a < 1, 2 * a - a * a, 1.0)))
    pts = np.array([-1.7, -0.8, -0.3, 0.2, 0.6, 0.9, 1.4])
    eps = 1e-6
    numeric = (approx(pts + eps) - approx(pts - eps)) / (2 * eps)
    np.testing.assert_allclose(input_grad(pts.tolist(), "approx"), numeric, atol=1e-6)


def test_ste_gradient_mask():
    assert input_grad(GRAD_POINTS, "ste").tolist() == [0, 1, 1, 1, 1, 1, 1, 0]


def test_bad_activation_gradient_name():
    with pytest.raises(ConfigError, match="act_grad"):
        binary_sign(torch.zeros(2), "approxsign")
    with pytest.raises(ConfigError, match="act_grad"):
        BinaryConv2d(1, 1, 1, act_grad="identity")


# ----------------------------------------------------------------------------- binarize_weight

def test_weight_binarization_scale_per_output_channel():
    w_np = np.random.default_rng(0).normal(scale=0.8, size=(4, 3, 2, 2))
    w_np[0, 0, 0, 0] = 0.0
    out = binarize_weight(torch.tensor(w_np)).numpy()
    scale = np.abs(w_np).mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(out, np_sign(w_np) * scale, rtol=1e-12, atol=0)
    assert out[0, 0, 0, 0] == pytest.approx(scale[0, 0, 0, 0], rel=1e-12)  # W == 0 -> +scale
    for c in range(4):  # exactly two values per output channel: +-scale_c
        assert np.unique(out[c]).size == 2
        np.testing.assert_allclose(np.abs(out[c]), scale[c, 0, 0, 0], rtol=1e-12)


def test_weight_gradient_is_masked_straight_through():
    w_np = np.random.default_rng(1).normal(scale=1.0, size=(3, 2, 3, 3))
    w_np[0, 0, 0, :3] = [1.0, -1.0, 1.0001]
    w = torch.tensor(w_np, requires_grad=True)
    upstream = torch.tensor(np.random.default_rng(2).normal(size=w_np.shape))
    (binarize_weight(w) * upstream).sum().backward()
    mask = np.abs(w_np) <= 1
    assert 0 < mask.sum() < mask.size  # the test data has entries on both sides of the clip
    np.testing.assert_array_equal(w.grad.numpy(), upstream.numpy() * mask)  # no scale term: detached
    assert w.grad[0, 0, 0, :3].tolist() == [upstream[0, 0, 0, 0].item(), upstream[0, 0, 0, 1].item(), 0.0]


def test_weight_binarization_of_linear_weight_and_bad_shape():
    w = torch.tensor([[0.5, -1.5], [-0.25, -0.25]])
    assert binarize_weight(w).tolist() == [[1.0, -1.0], [-0.25, -0.25]]
    with pytest.raises(ConfigError, match="binarize_weight"):
        binarize_weight(torch.ones(3))


# ----------------------------------------------------------------------------- LearnableBias, RPReLU

def test_learnable_bias_and_rprelu():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    shift = LearnableBias(3).double()
    assert shift.bias.shape == (1, 3, 1, 1) and shift.bias.abs().sum() == 0
    b = np.array([0.5, -1.0, 2.0])
    with torch.no_grad():
        shift.bias.copy_(torch.tensor(b).view(1, 3, 1, 1))
    np.testing.assert_array_equal(shift(x).detach().numpy(), x.numpy() + b.reshape(1, 3, 1, 1))

    act = RPReLU(3).double()
    assert act.prelu.weight.tolist() == [0.25, 0.25, 0.25]
    b1, a, b2 = np.array([0.1, -0.2, 0.3]), np.array([0.25, 0.5, -0.1]), np.array([1.0, 0.0, -1.0])
    with torch.no_grad():
        act.shift_in.bias.copy_(torch.tensor(b1).view(1, 3, 1, 1))
        act.prelu.weight.copy_(torch.tensor(a))
        act.shift_out.bias.copy_(torch.tensor(b2).view(1, 3, 1, 1))
    v = x.numpy() + b1.reshape(1, 3, 1, 1)
    expected = np.where(v >= 0, v, a.reshape(1, 3, 1, 1) * v) + b2.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(act(x).detach().numpy(), expected, rtol=1e-12)


# ----------------------------------------------------------------------------- BinaryConv2d

def make_conv(*args, **kwargs):
    conv = BinaryConv2d(*args, **kwargs).double()
    with torch.no_grad():
        conv.weight.normal_(0, 0.7)
    return conv


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_binary_conv_equals_direct_computation(stride, padding):
    conv = make_conv(3, 4, 3, stride=stride, padding=padding)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    w = conv.weight.detach().numpy()
    w_bin = np_sign(w) * np.abs(w).mean(axis=(1, 2, 3), keepdims=True)
    expected = np_conv2d(np_sign(x.numpy()), w_bin, stride, padding)
    np.testing.assert_allclose(conv(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    conv.binary_weights = False  # stage 1: binary activations, FP weights
    np.testing.assert_allclose(conv(x).detach().numpy(), np_conv2d(np_sign(x.numpy()), w, stride, padding),
                               rtol=1e-12, atol=1e-12)


def test_binary_conv_output_takes_values_implied_by_binary_inputs():
    c_in = 5
    conv = make_conv(c_in, 3, 3, padding=1)
    x = torch.randn(4, c_in, 5, 5, dtype=torch.float64) * 3
    w = conv.weight.detach()
    scale = w.abs().mean(dim=(1, 2, 3)).view(1, 3, 1, 1)
    counts = (conv(x).detach() / scale).numpy()  # sums of +-1 products
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    counts = np.round(counts).astype(int)
    fan_in = 9 * c_in
    interior = counts[:, :, 1:-1, 1:-1]  # zero padding adds 0 on the border
    assert np.all(interior % 2 == fan_in % 2)
    assert np.abs(counts).max() <= fan_in
    # 1x1, no padding: every output is scale_c times an odd integer in [-5, 5]
    conv1 = make_conv(c_in, 2, 1)
    s1 = conv1.weight.detach().abs().mean(dim=(1, 2, 3)).view(1, 2, 1, 1)
    k = (conv1(x).detach() / s1).numpy()
    assert set(np.round(k).astype(int).ravel()) <= {-5, -3, -1, 1, 3, 5}
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)


def test_binary_conv_gradients():
    conv = make_conv(2, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = 1.5  # outside the |W| <= 1 window
    x = (torch.randn(2, 2, 4, 4, dtype=torch.float64) * 1.2).requires_grad_()
    upstream = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    (conv(x) * upstream).sum().backward()
    # reference: the same conv on leaf tensors holding the binarized input and weight
    w = conv.weight.detach()
    w_bin = (torch.where(w >= 0, 1.0, -1.0).double() * w.abs().mean(dim=(1, 2, 3), keepdim=True)).requires_grad_()
    x_bin = torch.where(x.detach() >= 0, 1.0, -1.0).double().requires_grad_()
    (nn.functional.conv2d(x_bin, w_bin, padding=1) * upstream).sum().backward()
    torch.testing.assert_close(conv.weight.grad, w_bin.grad * (w.abs() <= 1), rtol=1e-12, atol=1e-12)
    assert conv.weight.grad[0, 0, 0, 0] == 0
    approx = (2 - 2 * x.detach().abs()).clamp(min=0)
    torch.testing.assert_close(x.grad, x_bin.grad * approx, rtol=1e-12, atol=1e-12)


def test_set_activation_grad_switches_every_conv():
    model = nn.Sequential(make_conv(1, 1, 1), nn.Identity(), make_conv(1, 1, 1))
    assert set_activation_grad(model, "ste") is model
    assert [m.act_grad for m in model if isinstance(m, BinaryConv2d)] == ["ste", "ste"]
    conv = model[0]
    set_binary_stage(conv, 1)
    with torch.no_grad():
        conv.weight.fill_(0.5)
    x = torch.tensor(GRAD_POINTS, dtype=torch.float64).view(1, 1, 1, -1).requires_grad_()
    conv(x).sum().backward()
    assert (x.grad.flatten() / 0.5).tolist() == [0, 1, 1, 1, 1, 1, 1, 0]
    with pytest.raises(ConfigError, match="act_grad"):
        set_activation_grad(model, "STE")


# ----------------------------------------------------------------------------- stages

def small_binary_net():
    return nn.Sequential(make_conv(2, 4, 3, padding=1), nn.BatchNorm2d(4).double(), make_conv(4, 4, 1))


def test_stage_switch_keeps_parameters_and_changes_output():
    model = small_binary_net().eval()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    assert get_binary_stage(model) == 2  # new layers are fully binary
    before = model.state_dict()
    params = list(model.parameters())
    out2 = model(x)
    assert set_binary_stage(model, 1) is model
    assert get_binary_stage(model) == 1
    assert [m.binary_weights for m in model if isinstance(m, BinaryConv2d)] == [False, False]
    after = model.state_dict()
    assert list(before) == list(after)
    for key in before:
        assert after[key] is before[key] or after[key].data_ptr() == before[key].data_ptr()
        assert torch.equal(after[key], before[key])
    assert all(a is b for a, b in zip(params, model.parameters()))
    out1 = model(x)
    assert not torch.allclose(out1, out2)
    set_binary_stage(model, 2)
    torch.testing.assert_close(model(x), out2, rtol=0, atol=0)


@pytest.mark.parametrize("stage", [0, 3, True, "2", 1.5])
def test_bad_stage(stage):
    with pytest.raises(ConfigError, match="stage"):
        set_binary_stage(small_binary_net(), stage)


def test_stage_on_a_network_without_binary_convs():
    with pytest.raises(ConfigError, match="no BinaryConv2d"):
        set_binary_stage(nn.Sequential(nn.Conv2d(1, 1, 1)), 1)


def test_mixed_stages_are_reported():
    model = small_binary_net()
    model[0].binary_weights = False
    with pytest.raises(ConfigError, match="different stages"):
        get_binary_stage(model)
