"""ReActNet-A (common/backbones/reactnet.py): layout, shapes, stages, gradients, block maths."""
import fnmatch

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.backbones.reactnet import ReActBlock, reactnet_a
from common.binary import BinaryConv2d, get_binary_stage, set_binary_stage
from common.errors import ConfigError

# docs/protocols.md sec. 2: stem 32, then the 13 blocks' output widths; stride 2 where the width
# changes except 32 -> 64.
BLOCK_OUT = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
BLOCK_IN = [32] + BLOCK_OUT[:-1]
STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
SMALL_STRIDES = [1, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]


def block_widths(model):
    """(in, out, stride) of every block, read from its modules."""
    rows = []
    for block in model.blocks:
        conv = block.conv_3x3
        assert conv.out_channels == conv.in_channels  # the 3x3 conv keeps the width
        rows.append((conv.in_channels, sum(c.out_channels for c in block.convs_1x1), conv.stride[0]))
    return rows


def test_full_width_layout_and_224px_shape_on_meta_device():
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = reactnet_a()
        x = torch.empty(2, 3, 224, 224)
        assert model.forward_features(x).shape == (2, 1024, 7, 7)
        assert model(x).shape == (2, 1024)
    assert model.feature_dim == 1024
    assert len(model.blocks) == 13
    assert block_widths(model) == list(zip(BLOCK_IN, BLOCK_OUT, STRIDES))
    stem = model.stem.conv
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride) == (3, 32, (3, 3), (2, 2))
    assert isinstance(model.stem.bn, nn.BatchNorm2d) and not isinstance(stem, BinaryConv2d)
    assert all(isinstance(m, BinaryConv2d) for m in model.blocks.modules() if isinstance(m, nn.Conv2d))


def test_full_width_parameter_count_matches_hand_count():
    with torch.device("meta"):
        model = reactnet_a()
    expected = 3 * 32 * 9 + 2 * 32  # stem conv + BN
    for c_in, c_out in zip(BLOCK_IN, BLOCK_OUT):
        expected += 9 * c_in * c_in + 2 * c_in + c_in + 3 * c_in  # shift, 3x3 conv, BN, RPReLU
        expected += c_in + c_in * c_out + 2 * c_out + 3 * c_out  # shift, 1x1 conv(s), BN(s), RPReLU
    assert sum(p.numel() for p in model.parameters()) == expected


def test_tiny_width_at_224px():
    model = reactnet_a(width=0.125).eval()
    assert model.channels == (8, 8, 16, 16, 32, 32, 64, 64, 64, 64, 64, 64, 128, 128)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 128) and model.feature_dim == 128
    assert [s for _, _, s in block_widths(model)] == STRIDES


def test_small_image_variant_at_32px():
    model = reactnet_a(width=0.125, small_images=True).eval()
    assert model.stem.conv.stride == (1, 1)
    assert [s for _, _, s in block_widths(model)] == SMALL_STRIDES
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 128, 4, 4)
        torch.testing.assert_close(model.pool(features).flatten(1), features.mean(dim=(2, 3)))
    assert model.feature_dim == 128
    with torch.device("meta"):
        full = reactnet_a(small_images=True)
        assert full.forward_features(torch.empty(1, 3, 32, 32)).shape == (1, 1024, 4, 4)
    assert block_widths(full) == list(zip(BLOCK_IN, BLOCK_OUT, SMALL_STRIDES))


def test_stage_switch_changes_output_not_parameters():
    model = reactnet_a(width=0.125, small_images=True).eval()
    x = torch.randn(2, 3, 16, 16)  # any size: only the values matter here
    assert get_binary_stage(model) == 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    with torch.no_grad():
        out2 = model(x)
        set_binary_stage(model, 1)
        out1 = model(x)
    assert all(not conv.binary_weights for conv in model.modules() if isinstance(conv, BinaryConv2d))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert all(a is b for a, b in zip(params, model.parameters()))
    assert not torch.allclose(out1, out2)


@pytest.mark.parametrize("stage", [1, 2])
def test_gradients_reach_every_parameter(stage):
    model = set_binary_stage(reactnet_a(width=0.125, small_images=True, fp_head=True), stage).train()
    features = model(torch.randn(2, 3, 16, 16))
    (features * torch.randn_like(features)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def direct_block(block, x):
    """ReActNet-A block computed by hand from its parameters (eval-mode BN), NumPy sign/scale."""
    def sign(t):
        return torch.from_numpy(np.where(t.numpy() >= 0, 1.0, -1.0))

    def binary_conv(conv, t):
        w = conv.weight.detach().numpy()
        w_bin = np.where(w >= 0, 1.0, -1.0) * np.abs(w).mean(axis=(1, 2, 3), keepdims=True)
        return F.conv2d(sign(t), torch.from_numpy(w_bin), stride=conv.stride, padding=conv.padding)

    def bn(m, t):
        shape = (1, -1, 1, 1)
        return ((t - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
                * m.weight.view(shape) + m.bias.view(shape))

    def rprelu(m, t):
        t = t + m.shift_in.bias
        t = torch.where(t >= 0, t, m.prelu.weight.view(1, -1, 1, 1) * t)
        return t + m.shift_out.bias

    n, c, h, w = x.shape
    if block.conv_3x3.stride[0] == 2:  # 2x2 average pool, by hand
        shortcut = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))
    else:
        shortcut = x
    y = rprelu(block.act_3x3, bn(block.bn_3x3, binary_conv(block.conv_3x3, x + block.bias_3x3.bias)) + shortcut)
    z = y + block.bias_1x1.bias
    parts = [bn(b, binary_conv(conv, z)) + y for conv, b in zip(block.convs_1x1, block.bns_1x1)]
    return rprelu(block.act_1x1, torch.cat(parts, dim=1))


def randomize(block):
    """Non-trivial values for every parameter and BN statistic, so the check sees them all."""
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 and p.numel() > 0 else 0.0))
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return block.eval()


@pytest.mark.parametrize("c_in,c_out,stride", [(8, 16, 2), (8, 8, 1), (8, 16, 1)])
def test_block_equals_direct_computation(c_in, c_out, stride):
    block = randomize(ReActBlock(c_in, c_out, stride).double())
    x = torch.randn(2, c_in, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), direct_block(block, x), rtol=1e-10, atol=1e-10)


def test_strided_block_shortcut_is_2x2_average_pool():
    model = reactnet_a(width=0.125)
    block = model.blocks[1]
    assert block.conv_3x3.stride == (2, 2)
    pool = block.shortcut_3x3
    assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 2 and pool.stride == 2
    assert all(isinstance(model.blocks[i].shortcut_3x3, nn.Identity) for i in range(13) if STRIDES[i] == 1)
    # with the 3x3 branch silenced (BN weight and bias 0), RPReLU's input is the pooled input
    seen = {}
    with torch.no_grad():
        block.bn_3x3.weight.zero_()
        block.bn_3x3.bias.zero_()
    block.act_3x3.register_forward_hook(lambda m, inp, out: seen.setdefault("in", inp[0]))
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        block.double().eval()(x)
    expected = x.numpy().reshape(2, 8, 3, 2, 3, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(seen["in"].numpy(), expected, rtol=1e-12)


def test_doubling_block_has_two_concatenated_1x1_convs():
    with torch.device("meta"):
        model = reactnet_a()
    for i, block in enumerate(model.blocks):
        doubles = BLOCK_OUT[i] == 2 * BLOCK_IN[i]
        assert block.doubles_width == doubles
        assert len(block.convs_1x1) == (2 if doubles else 1)
        for conv in block.convs_1x1:
            assert conv.kernel_size == (1, 1) and conv.in_channels == BLOCK_IN[i]
            assert conv.out_channels == (BLOCK_IN[i] if doubles else BLOCK_OUT[i])
    # concatenation order: silence BN of branch 1 -> its half of the output is RPReLU(y)
    block = randomize(ReActBlock(8, 16, 1).double())
    with torch.no_grad():
        block.bns_1x1[1].weight.zero_()
        block.bns_1x1[1].bias.zero_()
        block.act_1x1.prelu.weight.fill_(1.0)
        block.act_1x1.shift_in.bias.zero_()
        block.act_1x1.shift_out.bias.zero_()
        block.act_3x3.prelu.weight.fill_(1.0)
        block.act_3x3.shift_in.bias.zero_()
        block.act_3x3.shift_out.bias.zero_()
        x = torch.randn(2, 8, 4, 4, dtype=torch.float64)
        out = block(x)
        y = block.bn_3x3(block.conv_3x3(block.bias_3x3(x))) + x  # identity RPReLU
        torch.testing.assert_close(out[:, 8:], y, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out[:, :8], block.bns_1x1[0](block.convs_1x1[0](y + block.bias_1x1.bias)) + y)


def test_fp_head_and_default_fp_layers():
    plain = reactnet_a(width=0.125, small_images=True)
    assert plain.default_fp_layers == ("stem.conv",)
    assert not hasattr(plain, "head") or plain.head is None
    model = reactnet_a(width=0.125, small_images=True, fp_head=True).eval()
    assert isinstance(model.head.fc, nn.Linear) and isinstance(model.head.relu, nn.ReLU)
    assert (model.head.fc.in_features, model.head.fc.out_features) == (128, 128)
    with torch.device("meta"):
        full = reactnet_a(fp_head=True)
    assert (full.head.fc.in_features, full.head.fc.out_features) == (1024, 1024)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        pooled = model.pool(model.forward_features(x)).flatten(1)
        torch.testing.assert_close(out, torch.relu(model.head.fc(pooled)))
    assert out.shape == (2, model.feature_dim) and (out >= 0).all()
    names = dict(model.named_modules())
    matched = {n for n in names for pat in model.default_fp_layers if fnmatch.fnmatchcase(n, pat)}
    assert matched == {"stem.conv", "head.fc"}
    assert not any(isinstance(names[n], BinaryConv2d) for n in matched)


@pytest.mark.parametrize("kwargs,field", [
    ({"width": 0}, "width"), ({"width": -1.0}, "width"), ({"width": "1"}, "width"),
    ({"width": True}, "width"), ({"width": 0.3}, "width"),
    ({"small_images": "yes"}, "small_images"), ({"fp_head": 1}, "fp_head"),
])
def test_bad_arguments(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        reactnet_a(**kwargs)
