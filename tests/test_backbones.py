"""Backbone registry and the full-precision backbones: shapes, torchvision key compatibility,
CIFAR ResNet structure against He et al. Sec. 4.2, default FP layers, bad input."""
import pytest
import torch
import torch.nn as nn
import torchvision

from common.backbones import build_backbone, describe_backbones, fp_layer_names, list_backbones
from common.errors import ConfigError


# name -> (kwargs at 32 px, expected feature_dim at 32 px,
#          kwargs at native size, native size, expected feature_dim at native size)
SHAPE_CASES = {
    "resnet18": ({"cifar_stem": True, "width": 0.5}, 256, {}, 224, 512),
    "resnet34": ({"cifar_stem": True, "width": 0.25}, 128, {"width": 0.25}, 224, 128),
    "resnet50": ({"cifar_stem": True, "width": 0.125}, 256, {"width": 0.25}, 224, 512),
    "cifar_resnet": ({"depth": 8}, 64, {"depth": 14, "width": 0.5}, 40, 32),
    "cifar_resnet20": ({}, 64, {"width": 2.0}, 40, 128),
    "cifar_resnet32": ({"width": 0.5}, 32, {"width": 0.5}, 40, 32),
    "cifar_resnet44": ({"width": 0.5}, 32, {"width": 0.5}, 40, 32),
    "cifar_resnet56": ({"width": 0.5}, 32, {"width": 0.5}, 40, 32),
    "cifar_resnet74": ({"width": 0.25}, 16, {"width": 0.25}, 40, 16),
    "cifar_resnet110": ({"width": 0.25}, 16, {"width": 0.25}, 40, 16),
    "cifar_resnet152": ({"width": 0.25}, 16, {"width": 0.25}, 40, 16),
    "mobilenet_v2": ({"small_images": True}, 1280, {"width_mult": 0.5}, 224, 1280),
    "reactnet_a": ({"small_images": True, "width": 0.25}, 256, {"width": 0.25}, 224, 256),
}


def test_every_registered_backbone_has_a_shape_case():
    assert list_backbones() == list(SHAPE_CASES)
    descriptions = describe_backbones()
    assert all(descriptions[name] and "\n" not in descriptions[name] for name in SHAPE_CASES)


@pytest.mark.parametrize("name", list(SHAPE_CASES))
def test_output_shape_and_feature_dim(name):
    kwargs32, dim32, kwargs_native, size, dim_native = SHAPE_CASES[name]
    for kwargs, px, dim in ((kwargs32, 32, dim32), (kwargs_native, size, dim_native)):
        model = build_backbone(name, **kwargs).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, px, px))
        assert model.feature_dim == dim, (name, kwargs)
        assert out.shape == (2, dim), (name, kwargs, px)
        assert torch.isfinite(out).all()
        assert isinstance(model.default_fp_layers, tuple)
        assert all(isinstance(p, str) for p in model.default_fp_layers)


def test_resnet50_full_width_at_224():
    model = build_backbone("resnet50").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert model.feature_dim == 2048 and out.shape == (1, 2048)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_width_one_resnet_is_torchvision_minus_fc(name):
    ours = build_backbone(name).eval()
    reference = getattr(torchvision.models, name)(weights=None).eval()
    reference_state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert len(reference_state) == len(reference.state_dict()) - 2  # fc.weight, fc.bias
    assert list(ours.state_dict()) == list(reference_state)
    ours.load_state_dict(reference_state, strict=True)
    reference.fc = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)


def test_width_scaled_resnet_keeps_names_and_scales_every_shape():
    reference = torchvision.models.resnet50(weights=None).state_dict()
    scaled = build_backbone("resnet50", width=0.5).state_dict()
    assert list(scaled) == [k for k in reference if not k.startswith("fc.")]
    for key, tensor in scaled.items():
        # every channel dimension halves, except the 3 image channels of the stem
        expected = [d if (i == 1 and d == 3) or i >= 2 else d // 2 for i, d in enumerate(reference[key].shape)]
        assert list(tensor.shape) == expected, key


def _stem(model, x):
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


def test_cifar_stem_keeps_32x32():
    x = torch.randn(2, 3, 32, 32)
    cifar = build_backbone("resnet18", cifar_stem=True)
    imagenet = build_backbone("resnet18")
    assert _stem(cifar, x).shape == (2, 64, 32, 32)
    assert _stem(imagenet, x).shape == (2, 64, 8, 8)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    assert _stem(build_backbone("resnet50", cifar_stem=True, width=0.25), x).shape == (2, 16, 32, 32)


def test_mobilenet_small_images_ends_at_4x4():
    x = torch.randn(2, 3, 32, 32)
    small = build_backbone("mobilenet_v2", small_images=True).eval()
    imagenet = build_backbone("mobilenet_v2").eval()
    assert small.features(x[:1]).shape == (1, 1280, 4, 4)
    assert imagenet.features(x[:1]).shape == (1, 1280, 1, 1)
    assert small.features[0][0].stride == (1, 1)
    # exactly three stride-2 convs remain in the small variant (32 -> 16 -> 8 -> 4), five in ImageNet's
    strided = lambda m: [n for n, c in m.named_modules() if isinstance(c, nn.Conv2d) and c.stride == (2, 2)]
    assert strided(small) == ["features.4.conv.1.0", "features.7.conv.1.0", "features.14.conv.1.0"]
    assert len(strided(imagenet)) == 5


def _cifar_resnet_param_count(n, c=(16, 32, 64)):
    """Direct count for the 6n+2 network: convs (no bias), BN weight + bias, option-B shortcuts."""
    conv = lambda cin, cout, k: cin * cout * k * k
    bn = lambda ch: 2 * ch
    total = conv(3, c[0], 3) + bn(c[0])
    cin = c[0]
    for cout in c:
        for block in range(n):
            total += conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout)
            if block == 0 and cin != cout:
                total += conv(cin, cout, 1) + bn(cout)
            cin = cout
    return total


@pytest.mark.parametrize("depth, n, paper_millions", [(20, 3, 0.27), (110, 18, 1.7)])
def test_cifar_resnet_structure(depth, n, paper_millions):
    model = build_backbone(f"cifar_resnet{depth}")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    shortcuts = [name for name in convs if ".downsample." in name]
    assert len(convs) - len(shortcuts) == depth - 1 == 6 * n + 1
    assert shortcuts == ["layer2.0.downsample.0", "layer3.0.downsample.0"]
    assert all(len(getattr(model, f"layer{i}")) == n for i in (1, 2, 3))
    params = sum(p.numel() for p in model.parameters())
    assert params == _cifar_resnet_param_count(n)
    assert round(params / 1e6, 2 if depth == 20 else 1) == paper_millions  # He et al. Table 6
    assert sum(p.numel() for p in build_backbone("cifar_resnet", depth=depth, width=0.5).parameters()) \
        == _cifar_resnet_param_count(n, (8, 16, 32))


@pytest.mark.parametrize("name, n", [("cifar_resnet74", 12), ("cifar_resnet152", 25)])
def test_cifar_resnet_blocks_per_stage_match_protocols(name, n):
    model = build_backbone(name, width=0.25)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [n, n, n]


def _with_fc(model, attribute="fc"):
    setattr(model, attribute, nn.Linear(model.feature_dim, 10))
    return model


def test_default_fp_layers_select_the_intended_modules():
    downsample = [f"layer{i}.0.downsample.0" for i in (2, 3, 4)]
    assert fp_layer_names(build_backbone("resnet18")) == ["conv1", *downsample]
    assert fp_layer_names(build_backbone("resnet34", width=0.25)) == ["conv1", *downsample]
    assert fp_layer_names(build_backbone("resnet50", width=0.25)) == ["conv1", "layer1.0.downsample.0", *downsample]
    assert fp_layer_names(_with_fc(build_backbone("resnet18", width=0.25))) == ["conv1", *downsample, "fc"]
    # CIFAR rule: stem and downsample convs are quantized, only an FC stays FP
    assert fp_layer_names(build_backbone("resnet18", cifar_stem=True, width=0.25)) == []
    assert fp_layer_names(_with_fc(build_backbone("resnet18", cifar_stem=True, width=0.25))) == ["fc"]
    assert fp_layer_names(build_backbone("cifar_resnet20")) == []
    assert fp_layer_names(_with_fc(build_backbone("cifar_resnet20"))) == ["fc"]
    # MobileNetV2: ImageNet variant keeps the stem conv FP, the 32 px variant quantizes everything
    assert fp_layer_names(build_backbone("mobilenet_v2")) == ["features.0.0"]
    assert fp_layer_names(build_backbone("mobilenet_v2", small_images=True)) == []
    small = build_backbone("mobilenet_v2", small_images=True)
    small.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(small.feature_dim, 10))
    assert fp_layer_names(small) == ["classifier.1"]


def test_fp_layer_patterns_are_whole_name_and_case_sensitive():
    model = build_backbone("cifar_resnet20")
    assert fp_layer_names(model, ["conv1"]) == ["conv1"]  # not layer1.0.conv1
    assert fp_layer_names(model, ["CONV1"]) == []
    assert len(fp_layer_names(model, ["*conv1"])) == 1 + 9


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="'resnet19'") as err:
        build_backbone("resnet19")
    assert all(name in str(err.value) for name in list_backbones())


@pytest.mark.parametrize("name, kwargs, words", [
    ("cifar_resnet", {"depth": 21}, "depth=21"),
    ("cifar_resnet", {"depth": 2}, "depth=2"),
    ("cifar_resnet", {"depth": 20.0}, "depth=20.0"),
    ("cifar_resnet", {}, "depth"),
    ("cifar_resnet20", {"depth": 20}, "depth"),
    ("resnet18", {"cifar": True}, "cifar_stem"),
    ("resnet18", {"width": 0}, "width=0"),
    ("resnet18", {"cifar_stem": "false"}, "cifar_stem='false'"),
    ("mobilenet_v2", {"width_mult": -1.0}, "width_mult=-1.0"),
    ("mobilenet_v2", {"small_images": 1}, "small_images=1"),
])
def test_bad_arguments_raise_config_error(name, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        build_backbone(name, **kwargs)
