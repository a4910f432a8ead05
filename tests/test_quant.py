"""common/quant.py against direct NumPy implementations of CQ Eq. 9 and the CPT formula."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from common.errors import ConfigError
from common import quant_codes
from common.quant import (
    QuantConfig, QuantConv2d, QuantLinear, SwitchableBatchNorm2d, cpt_quantize,
    cpt_quantize_per_channel, floor_quantize, get_precision, parse_precision_set, precision,
    quant_layers, quantize_model, quantize_ste, sample_precisions, set_precision,
    stochastic_quantize,
)

BITS = range(2, 17)


def numpy_eq9(a: np.ndarray, q: int) -> tuple[np.ndarray, float, np.ndarray]:
    """CQ Eq. 9 in float64: S * floor(A / S), S = (max - min) / (2^q - 1)."""
    a = a.astype(np.float64)
    s = (a.max() - a.min()) / (2 ** q - 1)
    return s * np.floor(a / s), s, a / s


def numpy_cpt(x: np.ndarray, q: int, lo, hi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CPT: round(clamp((x - min) / S, 0, 2^q - 1)) * S + min (lo/hi broadcast per channel)."""
    x = x.astype(np.float64)
    s = np.maximum((hi - lo) / (2 ** q - 1), 1e-8)
    v = np.clip((x - lo) / s, 0, 2 ** q - 1)
    return np.round(v) * s + lo, s, v


def assert_on_reference(ours, ref, step, position, boundary):
    """Equal to the float64 reference up to float32 rounding; an element may sit one step away
    only where its position on the grid is within float32 rounding of a rounding boundary."""
    ours = ours.detach().numpy().astype(np.float64)
    step = np.broadcast_to(step, ref.shape)
    atol = 1e-6 * (np.abs(ref).max() + step)  # float32 arithmetic on values of this size
    close = np.abs(ours - ref) <= atol
    frac = position - np.floor(position)
    tol = 1e-5 + 1e-6 * np.abs(position)  # a few float32 ulps of x / S
    dist = np.abs(frac - boundary) if boundary == 0.5 else np.minimum(frac, 1 - frac)
    near = dist < tol
    flipped = ~close
    assert np.all(near[flipped]), "an element off the reference grid away from a boundary"
    assert np.all(np.abs(np.abs(ours - ref) - step)[flipped] <= atol[flipped])  # one step away
    assert flipped.mean() < 0.05  # float32 ambiguity grows with 2^q, but stays a small share


@pytest.mark.parametrize("q", BITS)
@pytest.mark.parametrize("kind", ["weight", "activation"])
def test_floor_mode_matches_numpy_eq9(q, kind):
    g = torch.Generator().manual_seed(q)
    a = torch.randn(64, 16, 3, 3, generator=g) * 0.1
    if kind == "activation":
        a = F.relu(torch.randn(8, 16, 12, 12, generator=g) * 3)
    ref, s, pos = numpy_eq9(a.numpy(), q)
    assert_on_reference(floor_quantize(a, q), ref, s, pos, boundary=0.0)


@pytest.mark.parametrize("q", BITS)
def test_cpt_activation_matches_numpy(q):
    g = torch.Generator().manual_seed(100 + q)
    x = torch.randn(8, 16, 12, 12, generator=g) * 2 + 0.3
    lo, hi = torch.aminmax(x)
    ref, s, v = numpy_cpt(x.numpy(), q, float(lo), float(hi))
    assert_on_reference(cpt_quantize(x, q, lo, hi), ref, s, v, boundary=0.5)


@pytest.mark.parametrize("q", BITS)
def test_cpt_weight_per_output_channel_matches_numpy(q):
    g = torch.Generator().manual_seed(200 + q)
    w = torch.randn(32, 8, 3, 3, generator=g) * torch.linspace(0.01, 1, 32).view(-1, 1, 1, 1)
    wn = w.numpy().reshape(32, -1)
    lo, hi = wn.min(1, keepdims=True).astype(np.float64), wn.max(1, keepdims=True).astype(np.float64)
    ref, s, v = numpy_cpt(wn, q, lo, hi)
    assert_on_reference(cpt_quantize_per_channel(w, q).reshape(32, -1), ref, s, v, boundary=0.5)


@pytest.mark.parametrize("q", [1, 2, 3, 4, 6, 8])
def test_distinct_values_at_most_two_to_the_q(q):
    x = torch.randn(4096, generator=torch.Generator().manual_seed(q))
    assert len(torch.unique(floor_quantize(x, q))) <= 2 ** q
    lo, hi = torch.aminmax(x)
    assert len(torch.unique(cpt_quantize(x, q, lo, hi))) <= 2 ** q
    w = torch.randn(8, 512)
    wq = cpt_quantize_per_channel(w, q)
    assert all(len(torch.unique(row)) <= 2 ** q for row in wq)
    # and the grid is really used: far more than 2^q values before quantizing
    assert len(torch.unique(x)) > 2 ** q


def test_zero_range_tensor_is_unchanged():
    for c in (0.0, -1.5, 3.25):
        x = torch.full((5, 5), c)
        assert torch.equal(floor_quantize(x, 4), x)
        assert torch.equal(cpt_quantize(x, 4, *torch.aminmax(x)), x)


@pytest.mark.parametrize("mode", ["floor", "cpt"])
def test_gradient_is_identity(mode):
    x = torch.randn(3, 7, requires_grad=True)
    upstream = torch.randn(3, 7)
    if mode == "floor":
        y = quantize_ste(x, floor_quantize, 3)
    else:
        y = quantize_ste(x, cpt_quantize, 3, *torch.aminmax(x.detach()))
    assert not torch.equal(y, x)
    y.backward(upstream)
    assert torch.equal(x.grad, upstream)


@pytest.mark.parametrize("mode", ["floor", "cpt"])
def test_quant_conv_gradients_are_straight_through(mode):
    conv = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 8, 8)
    quantize_model(nn.Sequential(conv), keep_fp=(), config=QuantConfig(mode=mode))
    net = nn.Sequential(conv)
    quantize_model(net, keep_fp=(), config=QuantConfig(mode=mode))
    layer = net[0]
    set_precision(net, 4)
    xin = x.clone().requires_grad_(True)
    out = layer(xin)
    out.square().sum().backward()
    # the same computation with the quantized tensors as leaves
    xq = layer.quantized_input(x).detach().requires_grad_(True)
    wq = layer.quantized_weight().detach().requires_grad_(True)
    ref = F.conv2d(xq, wq, layer.bias, padding=1)
    assert torch.allclose(out, ref, atol=1e-6)
    ref.square().sum().backward()
    assert torch.allclose(layer.weight.grad, wq.grad, atol=1e-5)
    assert torch.allclose(xin.grad, xq.grad, atol=1e-5)


def cifar_resnet18():
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


@pytest.mark.parametrize("mode", ["floor", "cpt"])
def test_converted_resnet_fp_outputs_match_and_switching_restores(mode):
    torch.manual_seed(0)
    model = cifar_resnet18().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fp = model(x)
        quantize_model(model, config=QuantConfig(mode=mode))
        assert (model(x) - fp).abs().max() <= 1e-6
        set_precision(model, 32)
        assert torch.equal(model(x), fp)  # 32 bits = FP, bit for bit
        set_precision(model, 4)
        q4 = model(x)
        assert (q4 - fp).abs().max() > 1e-3
        set_precision(model, 8)
        q8 = model(x)
        assert not torch.equal(q8, q4)
        assert (q8 - fp).abs().max() < (q4 - fp).abs().max()
        set_precision(model, None)
        assert torch.equal(model(x), fp)
        set_precision(model, 4)
        assert torch.equal(model(x), q4)


def test_none_matches_plain_layers_bit_for_bit():
    torch.manual_seed(1)
    conv, lin = nn.Conv2d(3, 5, 3), nn.Linear(7, 4)
    x, v = torch.randn(2, 3, 9, 9), torch.randn(3, 7)
    ref_c, ref_l = conv(x), lin(v)
    net = nn.Sequential(conv, lin)
    quantize_model(net, keep_fp=())
    assert isinstance(net[0], QuantConv2d) and isinstance(net[1], QuantLinear)
    for bits in (None, 32, 40):
        set_precision(net, bits)
        assert torch.equal(net[0](x), ref_c) and torch.equal(net[1](v), ref_l)


def test_default_fp_layers_and_kept_weights():
    model = torchvision.models.resnet18()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    weight = model.layer1[0].conv1.weight
    quantize_model(model)
    plain = sorted(n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear))
    assert plain == ["conv1", "fc", "layer2.0.downsample.0", "layer3.0.downsample.0",
                     "layer4.0.downsample.0"]
    assert model.layer1[0].conv1.weight is weight  # same Parameter: optimizers keep working
    set_precision(model, 6)
    before = weight.detach().clone()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    sgd.step()
    assert not torch.equal(weight, before)


def test_explicit_keep_fp_and_typos():
    model = cifar_resnet18()
    quantize_model(model, keep_fp=["fc"])
    assert type(model.fc) is nn.Linear and isinstance(model.conv1, QuantConv2d)
    assert isinstance(model.layer2[0].downsample[0], QuantConv2d)
    with pytest.raises(ConfigError, match="'layer9'"):
        quantize_model(cifar_resnet18(), keep_fp=["layer9"])


def test_set_precision_and_context_manager():
    model = quantize_model(cifar_resnet18())
    assert get_precision(model) is None
    with precision(model, 5):
        assert {m.bits for m in quant_layers(model)} == {5}
    assert get_precision(model) is None
    for bad in (0, -3, 2.5, "8"):
        with pytest.raises(ConfigError):
            set_precision(model, bad)


@pytest.mark.parametrize("spec,expected", [
    ("4-16", tuple(range(4, 17))), ("6-16", tuple(range(6, 17))), ("8-16", tuple(range(8, 17))),
    ("4,8,16", (4, 8, 16)), ("16, 4,8", (4, 8, 16)), (8, (8,)), ([6, 6, 2], (2, 6)), ("32", (32,)),
])
def test_parse_precision_set(spec, expected):
    assert parse_precision_set(spec) == expected


@pytest.mark.parametrize("spec,word", [
    ("16-4", "descends"), ("0-8", "outside"), ("abc", "cannot parse"), ("4-33", "outside"),
    ("4,40", "outside"), ("", "cannot parse"), ([], "empty"), (True, "expected"),
])
def test_parse_precision_set_errors(spec, word):
    with pytest.raises(ConfigError, match=word):
        parse_precision_set(spec)


def test_sample_precisions_members_and_distinct():
    pset = parse_precision_set("6-16")
    g = torch.Generator().manual_seed(0)
    draws = [sample_precisions(pset, 2, g) for _ in range(200)]
    assert all(q in pset for d in draws for q in d)
    assert all(d[0] != d[1] for d in draws)
    assert len({q for d in draws for q in d}) == len(pset)  # every member gets drawn
    assert sample_precisions((8,), 2, g) == [8, 8]


def test_cpt_activation_ema_train_and_eval():
    net = nn.Sequential(nn.Conv2d(2, 3, 1))
    quantize_model(net, keep_fp=(), config=QuantConfig(mode="cpt"))
    layer = net[0]
    set_precision(net, 4)
    xs = [torch.randn(4, 2, 5, 5) * (i + 1) for i in range(3)]
    lo, rng = None, None
    for x in xs:
        net(x)
        b_lo, b_hi = float(x.min()), float(x.max())
        lo = b_lo if lo is None else 0.9 * lo + 0.1 * b_lo
        rng = b_hi - b_lo if rng is None else 0.9 * rng + 0.1 * (b_hi - b_lo)
    assert layer.act_min.item() == pytest.approx(lo, rel=1e-5)
    assert layer.act_range.item() == pytest.approx(rng, rel=1e-5)
    assert "0.act_min" in net.state_dict()
    probe = torch.randn(4, 2, 5, 5) * 10
    net.eval()
    xq = layer.quantized_input(probe)
    lo_t = torch.tensor(lo, dtype=torch.float32)
    expected = cpt_quantize(probe, 4, layer.act_min, layer.act_min + layer.act_range)
    assert torch.equal(xq, expected)
    assert xq.min() >= lo_t - 1e-5  # clamped to the EMA range, not the probe's wider one
    net.train()
    assert not torch.equal(layer.quantized_input(probe), xq)


def test_stochastic_error_quantization():
    g = torch.randn(1000)
    q = stochastic_quantize(g, 8)
    lo, hi = g.min(), g.max()
    s = (hi - lo) / 255
    levels = (q - lo) / s
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert len(torch.unique(q)) <= 256
    mean = torch.stack([stochastic_quantize(g, 2) for _ in range(400)]).mean(0)
    assert (mean - g).abs().max() < 0.25 * float((hi - lo) / 3)  # unbiased: averages back to g
    # in a layer: the weight gradient changes, but only slightly at 8 bits
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(3, 4, 3))
    twin = nn.Sequential(nn.Conv2d(3, 4, 3))
    twin.load_state_dict(base.state_dict())
    quantize_model(base, keep_fp=())
    quantize_model(twin, keep_fp=(), config=QuantConfig(grad_bits=8))
    x = torch.randn(2, 3, 8, 8)
    for net in (base, twin):
        set_precision(net, 8)
        net(x).pow(3).sum().backward()
    ga, gb = base[0].weight.grad, twin[0].weight.grad
    assert not torch.equal(ga, gb)
    assert torch.allclose(ga, gb, rtol=0.05, atol=0.05 * ga.abs().max().item())


def test_switchable_batchnorm_keeps_one_bn_per_width():
    model = cifar_resnet18()
    quantize_model(model, config=QuantConfig(switchable_bn=True), precisions=[4, 8])
    bn = model.layer1[0].bn1
    assert isinstance(bn, SwitchableBatchNorm2d) and sorted(bn.bns.keys()) == ["4", "8", "fp"]
    x = torch.randn(4, 3, 32, 32)
    set_precision(model, 4)
    model(x)
    assert bn.bns["4"].num_batches_tracked == 1 and bn.bns["8"].num_batches_tracked == 0
    set_precision(model, 8)
    model(x)
    assert not torch.equal(bn.bns["4"].running_mean, bn.bns["8"].running_mean)
    set_precision(model, 6)
    with pytest.raises(ConfigError, match="6 bits"):
        model(x)
    with pytest.raises(ConfigError, match="precision set"):
        quantize_model(cifar_resnet18(), config=QuantConfig(switchable_bn=True))


def test_bad_config():
    with pytest.raises(ConfigError, match="mode"):
        QuantConfig(mode="log")
    with pytest.raises(ConfigError, match="grad_bits"):
        QuantConfig(grad_bits=0)


def test_plain_state_dict_loads_into_the_unconverted_model():
    from common.quant import plain_state_dict
    model = cifar_resnet18()
    quantize_model(model, config=QuantConfig(mode="cpt", switchable_bn=True), precisions=[4, 8])
    set_precision(model, 4)
    model(torch.randn(2, 3, 32, 32))  # fills the 4-bit BN and the activation EMAs
    plain = cifar_resnet18()
    plain.load_state_dict(plain_state_dict(model))  # strict: same keys as the plain model
    fp_bn = model.layer1[0].bn1.bns["fp"]
    assert torch.equal(plain.layer1[0].bn1.running_mean, fp_bn.running_mean)


# --------------------------------------------------------------------------------------------
# Quantizing layers compute in true fp32 under bf16 autocast (the engine's GPU default)
# --------------------------------------------------------------------------------------------

def _layer_outputs(layer, x, bits_list, autocast: bool):
    outs = {}
    for bits in bits_list:
        layer.bits = bits
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), torch.no_grad():
            outs[bits] = layer(x)
    return outs


@pytest.mark.parametrize("mode", ["floor", "cpt"])
@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_high_bit_widths_survive_bf16_autocast(kind, mode):
    torch.manual_seed(0)
    plain = nn.Conv2d(16, 16, 3, padding=1) if kind == "conv" else nn.Linear(64, 32)
    layer = quantize_model(nn.Sequential(plain), keep_fp=(), config=QuantConfig(mode=mode))[0]
    layer.eval()  # CPT: batch range (no EMA yet) in both runs
    x = torch.randn(4, 16, 8, 8) if kind == "conv" else torch.randn(8, 64)
    bits_list = (12, 14, 16)
    fp32 = _layer_outputs(layer, x, bits_list, autocast=False)
    under_bf16 = _layer_outputs(layer, x, bits_list, autocast=True)
    for bits in bits_list:
        assert under_bf16[bits].dtype == torch.float32
        rel = ((under_bf16[bits] - fp32[bits]).norm() / fp32[bits].norm()).item()
        assert rel <= 1e-4, f"{bits} bits: relative error {rel:.2e} against the fp32 quantizer"
    # the widths stay distinct (bf16 rounding would make 12, 14 and 16 bits nearly the same)
    for a, b in ((12, 14), (14, 16)):
        assert not torch.equal(under_bf16[a], under_bf16[b])
        diff = (under_bf16[a] - under_bf16[b]).norm() / fp32[b].norm()
        assert diff > 1e-5
    # a plain layer in the same context does run in bf16: autocast was really on
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert plain(x).dtype == torch.bfloat16


def test_exact_fp32_turns_tf32_and_autocast_off_and_restores_them():
    from common.quant import _tf32_switches, exact_fp32
    switches = _tf32_switches()
    before = [getattr(obj, name) for obj, name in switches]
    layer = quantize_model(nn.Sequential(nn.Conv2d(3, 4, 3)), keep_fp=())[0]
    layer.bits = 12  # above the code path's widths: the exact fp32 conv
    seen = {}
    conv = layer._conv_forward

    def recording_conv(*args):  # the conv call inside the quantizing layer's forward
        seen["switches"] = [getattr(obj, name) for obj, name in switches]
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return conv(*args)

    layer._conv_forward = recording_conv
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(1, 3, 5, 5)).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")
    assert seen["autocast"] is False and all(v in ("ieee", False) for v in seen["switches"])
    assert [getattr(obj, name) for obj, name in switches] == before
    with pytest.raises(RuntimeError), exact_fp32("cpu"):
        raise RuntimeError("restored after an exception too")
    assert [getattr(obj, name) for obj, name in switches] == before


# --------------------------------------------------------------------------------------------
# q <= 8 under bf16 autocast: the layer computes on integer codes (common/quant_codes.py)
# --------------------------------------------------------------------------------------------

def _quant_layer(kind: str, mode: str) -> nn.Module:
    plain = {"conv": nn.Conv2d(12, 20, 3, padding=1), "conv_s2": nn.Conv2d(12, 20, 3, stride=2, padding=1, bias=False),
             "conv_1x1": nn.Conv2d(12, 20, 1, bias=False), "linear": nn.Linear(48, 24)}[kind]
    return quantize_model(nn.Sequential(plain), keep_fp=(), config=QuantConfig(mode=mode))[0].eval()


def _float64_reference(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's output from its own quantized tensors, in float64."""
    xq, wq = layer.quantized_input(x).double(), layer.quantized_weight().double()
    bias = None if layer.bias is None else layer.bias.double()
    if isinstance(layer, nn.Linear):
        return torch.nn.functional.linear(xq, wq, bias)
    return torch.nn.functional.conv2d(xq, wq, bias, layer.stride, layer.padding, layer.dilation)


@pytest.mark.parametrize("mode", ["floor", "cpt"])
@pytest.mark.parametrize("kind", ["conv", "conv_s2", "conv_1x1", "linear"])
@pytest.mark.parametrize("shift", [0.0, 0.8, "relu"])
def test_code_domain_layers_equal_the_fp32_quantizer_for_every_width(kind, mode, shift):
    """Under bf16 autocast, q = 2..8 takes the code path and gives the exact fp32 layer's output
    up to fp32 accumulation order (its error against float64 is of the same size as the fp32
    layer's own); q = 9..16 takes the fp32 path, bit for bit the same as without autocast."""
    torch.manual_seed(0)
    layer = _quant_layer(kind, mode)
    x = torch.randn(4, 12, 9, 9) if kind != "linear" else torch.randn(10, 48)
    x = x.relu() if shift == "relu" else x + shift
    for bits in range(2, 17):
        layer.bits = bits
        with torch.no_grad():
            fp32 = layer(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert quant_codes.active(x, bits) == (bits <= quant_codes.CODE_BITS)
                mixed = layer(x)
            ref = _float64_reference(layer, x)
        assert mixed.dtype == torch.float32
        if bits > quant_codes.CODE_BITS:
            assert torch.equal(mixed, fp32), f"{bits} bits"
            continue
        err = ((mixed.double() - ref).norm() / ref.norm()).item()
        own = ((fp32.double() - ref).norm() / ref.norm()).item()
        assert err <= max(10 * own, 1e-6), f"{bits} bits: {err:.1e} against float64 (the fp32 layer: {own:.1e})"
        assert ((mixed - fp32).norm() / fp32.norm()).item() <= 2e-6


@pytest.mark.parametrize("mode", ["floor", "cpt"])
def test_code_domain_layers_keep_the_straight_through_gradient(mode):
    """The gradients of the code path are the exact layer's (straight-through) up to bf16 rounding,
    and a CPT layer in training updates its activation range once per forward."""
    torch.manual_seed(0)
    layer = _quant_layer("conv", mode).train()
    x = torch.randn(3, 12, 7, 7) + 0.3
    grads = {}
    for amp in (False, True):
        layer.zero_grad()
        xi = x.clone().requires_grad_(True)
        layer.bits = 6
        tracked = int(layer.act_tracked) if mode == "cpt" else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = layer(xi)
        out.float().square().mean().backward()
        if mode == "cpt":
            assert int(layer.act_tracked) == tracked + 1
        grads[amp] = (xi.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
    for exact, mixed in zip(grads[False], grads[True]):
        assert ((mixed - exact).norm() / exact.norm()).item() < 2e-2


def test_the_code_path_needs_bf16_autocast_and_plain_zero_padding():
    x = torch.randn(2, 12, 5, 5)
    assert not quant_codes.active(x, 8)  # no autocast: the run is fp32 throughout
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert quant_codes.active(x, 8) and not quant_codes.active(x, 9) and not quant_codes.active(x, None)
        assert not quant_codes.active(x[:0], 8)
    layer = quantize_model(nn.Sequential(nn.Conv2d(12, 12, 3, padding=1, groups=3)), keep_fp=())[0].eval()
    layer.bits = 8
    with torch.no_grad():
        fp32 = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(layer(x), fp32)  # grouped: the exact fp32 path
